/* init.c — writes a randomly initialised checkpoint of any config in the Hugging Face layout
 * (config.json + safetensors shards + index), from the same tensor table the loader uses.
 * Values depend only on (seed, tensor name), never on write order or shard size. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const lc_config *c;
    const lc_init_options *o;
    const lc_tensor_spec *specs; /* the table */
    int64_t *spec_of;            /* entry -> spec index */
    int *is_scale;               /* entry is the FP8 scale grid of its spec */
} init_ctx;

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The f32 values of a spec: N(0, std^2) for matrices, 1 for norms, 0 for the router bias. */
static lc_status spec_values(const init_ctx *x, const lc_tensor_spec *sp, float *v) {
    int64_t n = sp->rows * (sp->cols ? sp->cols : 1);
    if (sp->kind == LC_T_NORM) {
        for (int64_t i = 0; i < n; i++) v[i] = 1.0f;
    } else if (sp->kind == LC_T_BIAS) {
        memset(v, 0, (size_t)n * sizeof *v);
    } else {
        lc_rng r;
        lc_rng_seed(&r, x->o->seed ^ name_hash(sp->name));
        float std = x->o->init_std > 0 ? x->o->init_std : 0.02f;
        int embedding = strstr(sp->name, "embed_tokens") != NULL || !strcmp(sp->name, "lm_head.weight");
        if (!embedding && x->o->hidden_std_scale > 0) std *= x->o->hidden_std_scale;
        for (int64_t i = 0; i < n; i++) v[i] = std * lc_rng_normal(&r);
    }
    return LC_OK;
}

/* FP8 block scale of block (bi, bj): max |w| / 448 (1 for an all-zero block). */
static float block_scale(const float *v, int64_t cols, int64_t rows, int64_t br, int64_t bc, int64_t bi, int64_t bj) {
    float mx = 0;
    for (int64_t r = bi * br; r < LC_MIN((bi + 1) * br, rows); r++)
        for (int64_t c = bj * bc; c < LC_MIN((bj + 1) * bc, cols); c++) mx = fmaxf(mx, fabsf(v[r * cols + c]));
    return mx > 0 ? mx / 448.0f : 1.0f;
}

static lc_status fill(void *ctx, int i, void *buf, size_t nbytes) {
    const init_ctx *x = ctx;
    const lc_tensor_spec *sp = &x->specs[x->spec_of[i]];
    int64_t rows = sp->rows, cols = sp->cols ? sp->cols : 1, n = rows * cols;
    float *v = lc_malloc((size_t)n * sizeof *v, sp->name);
    if (!v) return LC_ERR_NOMEM;
    spec_values(x, sp, v);
    int fp8 = x->o->dtype == LC_DT_F8_E4M3 && sp->fp8_ok;
    int64_t br = x->c->weight_block_size[0], bc = x->c->weight_block_size[1];
    int64_t sc = fp8 ? (cols + bc - 1) / bc : 0;
    if (x->is_scale[i]) {
        float *out = buf;
        for (int64_t bi = 0; bi < (rows + br - 1) / br; bi++)
            for (int64_t bj = 0; bj < sc; bj++) out[bi * sc + bj] = block_scale(v, cols, rows, br, bc, bi, bj);
    } else if (fp8) {
        uint8_t *out = buf;
        for (int64_t bi = 0; bi < (rows + br - 1) / br; bi++)
            for (int64_t bj = 0; bj < sc; bj++) {
                float s = block_scale(v, cols, rows, br, bc, bi, bj);
                for (int64_t r = bi * br; r < LC_MIN((bi + 1) * br, rows); r++)
                    for (int64_t c = bj * bc; c < LC_MIN((bj + 1) * bc, cols); c++)
                        out[r * cols + c] = lc_f32_to_fp8e4m3(v[r * cols + c] / s);
            }
    } else {
        lc_dtype dt = sp->kind == LC_T_BIAS ? LC_DT_F32 : (x->o->dtype == LC_DT_F8_E4M3 ? LC_DT_BF16 : x->o->dtype);
        for (int64_t k = 0; k < n; k++) {
            if (dt == LC_DT_F32) memcpy((char *)buf + 4 * k, &v[k], 4);
            else {
                uint16_t h = dt == LC_DT_BF16 ? lc_f32_to_bf16(v[k]) : lc_f32_to_f16(v[k]);
                memcpy((char *)buf + 2 * k, &h, 2);
            }
        }
    }
    (void)nbytes;
    free(v);
    return LC_OK;
}

lc_status lc_model_init_write(const lc_config *cfg, const lc_init_options *o, const char *dir) {
    lc_config c = *cfg;
    if (o->dtype != LC_DT_F32 && o->dtype != LC_DT_BF16 && o->dtype != LC_DT_F16 && o->dtype != LC_DT_F8_E4M3)
        return lc_error(LC_ERR_ARG, "init: dtype %s is not one of F32, BF16, F16, F8_E4M3", lc_dtype_name(o->dtype));
    if (o->dtype == LC_DT_F8_E4M3) {
        c.fp8 = 1;
        if (c.weight_block_size[0] <= 0) c.weight_block_size[0] = c.weight_block_size[1] = 128;
    } else c.fp8 = 0;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s", o->dtype == LC_DT_F32 ? "float32" : o->dtype == LC_DT_F16 ? "float16" : "bfloat16");
    lc_status s = lc_config_validate(&c, "init");
    if (s) return s;
    s = lc_mkdirs(dir);
    if (s) return s;
    int64_t n = lc_model_tensor_specs(&c, NULL, NULL);
    lc_tensor_spec *specs = lc_calloc((size_t)n, sizeof *specs, "tensor table");
    lc_st_entry *e = lc_calloc((size_t)(2 * n), sizeof *e, "entries");
    int64_t *spec_of = lc_calloc((size_t)(2 * n), sizeof *spec_of, "entries");
    int *is_scale = lc_calloc((size_t)(2 * n), sizeof *is_scale, "entries");
    char (*scale_names)[160] = lc_calloc((size_t)n, sizeof *scale_names, "scale names");
    if (!specs || !e || !spec_of || !is_scale || !scale_names) s = LC_ERR_NOMEM;
    int64_t ne = 0;
    if (!s) {
        lc_model_tensor_specs(&c, NULL, specs);
        for (int64_t i = 0; i < n; i++) {
            const lc_tensor_spec *sp = &specs[i];
            int fp8 = o->dtype == LC_DT_F8_E4M3 && sp->fp8_ok;
            lc_st_entry *en = &e[ne];
            en->name = sp->name;
            en->ndim = sp->cols ? 2 : 1;
            en->shape[0] = sp->rows;
            en->shape[1] = sp->cols;
            en->dtype = fp8 ? LC_DT_F8_E4M3
                            : sp->kind == LC_T_BIAS ? LC_DT_F32
                                                    : (o->dtype == LC_DT_F8_E4M3 ? LC_DT_BF16 : o->dtype);
            spec_of[ne++] = i;
            if (fp8) {
                snprintf(scale_names[i], sizeof scale_names[i], "%s_scale_inv", sp->name);
                lc_st_entry *se = &e[ne];
                se->name = scale_names[i];
                se->ndim = 2;
                se->dtype = LC_DT_F32;
                se->shape[0] = (sp->rows + c.weight_block_size[0] - 1) / c.weight_block_size[0];
                se->shape[1] = (sp->cols + c.weight_block_size[1] - 1) / c.weight_block_size[1];
                is_scale[ne] = 1;
                spec_of[ne++] = i;
            }
        }
        init_ctx x = {&c, o, specs, spec_of, is_scale};
        s = lc_st_write_dir(dir, e, (int)ne, o->max_shard_bytes, fill, &x);
    }
    if (!s) {
        char *path = lc_path_join(dir, "config.json");
        s = path ? lc_config_save(&c, path) : LC_ERR_NOMEM;
        free(path);
    }
    free(specs);
    free(e);
    free(spec_of);
    free(is_scale);
    free(scale_names);
    return s;
}
