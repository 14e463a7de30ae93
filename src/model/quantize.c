/* quantize.c — `longcat quantize`: rewrites a checkpoint with its projection matrices (the
 * *_proj weights: attention, dense FFN, experts, MTP) in Q8_0, Q4_0 (docs/FORMATS.md) or FP8
 * e4m3 with 128x128 block scales (the native LongCat-Flash format), or back to F32
 * (dequantised: the exact values a quantized model computes with). Everything else (norms,
 * embeddings, lm_head, router) is copied as stored. The result is a safetensors checkpoint
 * that every command loads directly. Rows are dequantised from any stored dtype, so a model
 * can also be re-quantized. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const lc_model *m;
    const lc_tensor_spec *specs;
    const int64_t *spec_of; /* entry -> spec */
    const int *part;        /* entry: 0 copy, 1 quantized values, 2 their scales */
    lc_dtype type;
    void *scales;           /* the scales computed with the values of spec scales_of, for its scale entry */
    int64_t scales_of;
} quant_ctx;

#define FP8_BLOCK 128

/* Bytes of a quantized matrix's values and of its scales. */
static size_t values_bytes(const lc_mat *w, lc_dtype type) {
    return (size_t)w->rows * (size_t)(type == LC_DT_Q4_0 ? lc_q_blocks(w->cols) * (LC_QK / 2) : w->cols);
}
static size_t scales_bytes(const lc_mat *w, lc_dtype type) {
    if (type == LC_DT_F8_E4M3)
        return (size_t)(((w->rows + FP8_BLOCK - 1) / FP8_BLOCK) * ((w->cols + FP8_BLOCK - 1) / FP8_BLOCK)) * sizeof(float);
    return (size_t)(w->rows * lc_q_blocks(w->cols)) * 2;
}

/* FP8: each 128x128 block scaled by max|w| / 448 (1 for an all-zero block); scales are
 * F32 [ceil(rows/128), ceil(cols/128)] (weight_scale_inv: real = fp8 * scale). */
static lc_status quantize_fp8(const lc_mat *w, uint8_t *q, float *scales) {
    const int64_t R = w->rows, C = w->cols, sc = (C + FP8_BLOCK - 1) / FP8_BLOCK;
    float *band = lc_malloc((size_t)(FP8_BLOCK * C) * sizeof *band, "FP8 row band");
    if (!band) return LC_ERR_NOMEM;
    for (int64_t r0 = 0, bi = 0; r0 < R; r0 += FP8_BLOCK, bi++) {
        const int64_t nr = LC_MIN(FP8_BLOCK, R - r0);
        for (int64_t i = 0; i < nr; i++) lc_mat_row(band + i * C, w, r0 + i);
        for (int64_t bj = 0; bj < sc; bj++) {
            const int64_t c0 = bj * FP8_BLOCK, c1 = LC_MIN(c0 + FP8_BLOCK, C);
            float mx = 0;
            for (int64_t i = 0; i < nr; i++)
                for (int64_t c = c0; c < c1; c++) mx = fmaxf(mx, fabsf(band[i * C + c]));
            const float s = mx > 0 ? mx / 448.0f : 1.0f;
            scales[bi * sc + bj] = s;
            for (int64_t i = 0; i < nr; i++)
                for (int64_t c = c0; c < c1; c++) q[(r0 + i) * C + c] = lc_f32_to_fp8e4m3(band[i * C + c] / s);
        }
    }
    free(band);
    return LC_OK;
}

/* Q8_0 / Q4_0: row by row; q [rows, row bytes], scales F16 [rows, ceil(cols/32)]. */
static lc_status quantize_q(const lc_mat *w, lc_dtype type, uint8_t *q, uint16_t *scales) {
    const int64_t C = w->cols, nb = lc_q_blocks(C), rb = (int64_t)(values_bytes(w, type) / (size_t)w->rows);
    float *row = lc_malloc((size_t)C * sizeof *row, "quantize row");
    if (!row) return LC_ERR_NOMEM;
    for (int64_t r = 0; r < w->rows; r++) {
        lc_mat_row(row, w, r);
        if (type == LC_DT_Q8_0) lc_quantize_row_q8_0(row, C, (int8_t *)(void *)(q + r * rb), scales + r * nb);
        else lc_quantize_row_q4_0(row, C, q + r * rb, scales + r * nb);
    }
    free(row);
    return LC_OK;
}

static lc_status quantize_mat(const lc_mat *w, lc_dtype type, void *q, void *scales) {
    return type == LC_DT_F8_E4M3 ? quantize_fp8(w, q, scales) : quantize_q(w, type, q, scales);
}

static lc_status fill(void *ctx, int i, void *buf, size_t nbytes) {
    quant_ctx *x = ctx;
    const int64_t si = x->spec_of[i];
    const lc_tensor_spec *sp = &x->specs[si];
    const lc_mat *w = sp->mat;
    if (x->part[i] == 0) { /* copied as stored: the entry has the source tensor's dtype and shape */
        memcpy(buf, lc_st_find(&x->m->st, sp->name)->data, nbytes);
        return LC_OK;
    }
    if (x->type == LC_DT_F32) { /* dequantised */
        for (int64_t r = 0; r < w->rows; r++) lc_mat_row((float *)buf + r * w->cols, w, r);
        return LC_OK;
    }
    if (x->part[i] == 1) { /* values; their scales are kept for the scale entry that follows */
        lc_status s = quantize_mat(w, x->type, buf, x->scales);
        x->scales_of = s ? -1 : si;
        return s;
    }
    if (x->scales_of == si) {
        memcpy(buf, x->scales, nbytes);
        return LC_OK;
    }
    void *q = lc_malloc(values_bytes(w, x->type), "quantize values"); /* scale entry written first */
    lc_status s = q ? quantize_mat(w, x->type, q, buf) : LC_ERR_NOMEM;
    free(q);
    return s;
}

static lc_status copy_side_files(const char *src, const char *dst) {
    static const char *const files[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                        "special_tokens_map.json", "chat_template.jinja"};
    lc_status s = LC_OK;
    for (size_t i = 0; i < sizeof files / sizeof files[0] && !s; i++) {
        char *from = lc_path_join(src, files[i]), *to = lc_path_join(dst, files[i]);
        s = from && to ? lc_copy_text_file(from, to, 1) : LC_ERR_NOMEM;
        free(from);
        free(to);
    }
    return s;
}

lc_status lc_model_quantize(const char *src, const char *dst, lc_dtype type, uint64_t max_shard_bytes) {
    if (type != LC_DT_Q8_0 && type != LC_DT_Q4_0 && type != LC_DT_F8_E4M3 && type != LC_DT_F32)
        return lc_error(LC_ERR_ARG, "quantize: type must be q8_0, q4_0, fp8 or f32");
    char *rs = realpath(src, NULL), *rd = realpath(dst, NULL);
    int same = rs && rd && !strcmp(rs, rd);
    free(rs);
    free(rd);
    if (same) return lc_error(LC_ERR_ARG, "quantize: %s is the source folder; write to another one", dst);
    lc_model *m = NULL;
    lc_status s = lc_model_load(&m, src);
    if (s) return s;
    lc_config c = m->cfg;
    const int64_t n = lc_model_tensor_specs(&c, NULL, NULL);
    lc_tensor_spec *specs = lc_calloc((size_t)n, sizeof *specs, "tensor table");
    lc_st_entry *e = lc_calloc((size_t)(2 * n), sizeof *e, "entries");
    int64_t *spec_of = lc_calloc((size_t)(2 * n), sizeof *spec_of, "entries");
    int *part = lc_calloc((size_t)(2 * n), sizeof *part, "entries");
    char (*scale_names)[160] = lc_calloc((size_t)n, sizeof *scale_names, "scale names");
    if (!specs || !e || !spec_of || !part || !scale_names) s = LC_ERR_NOMEM;
    int64_t ne = 0;
    if (!s) s = lc_mkdirs(dst);
    if (!s) {
        lc_model_tensor_specs(&c, m, specs);
        for (int64_t i = 0; i < n; i++) {
            const lc_tensor_spec *sp = &specs[i];
            const lc_st_tensor *t = lc_st_find(&m->st, sp->name);
            lc_st_entry *en = &e[ne];
            en->name = sp->name;
            spec_of[ne] = i;
            if (!sp->fp8_ok) { /* copied as stored */
                en->dtype = t->dtype;
                en->ndim = t->ndim;
                for (int d = 0; d < t->ndim; d++) en->shape[d] = t->shape[d];
                ne++;
                continue;
            }
            const int64_t nb = lc_q_blocks(sp->cols);
            en->ndim = 2;
            en->shape[0] = sp->rows;
            if (type == LC_DT_F32) { /* dequantised: no scale tensor */
                en->dtype = LC_DT_F32;
                en->shape[1] = sp->cols;
                part[ne++] = 1;
                continue;
            }
            en->dtype = type == LC_DT_Q8_0 ? LC_DT_I8 : type == LC_DT_Q4_0 ? LC_DT_U8 : LC_DT_F8_E4M3;
            en->shape[1] = type == LC_DT_Q4_0 ? nb * (LC_QK / 2) : sp->cols;
            part[ne++] = 1;
            lc_st_entry *se = &e[ne];
            snprintf(scale_names[i], sizeof scale_names[i], "%s_scale%s", sp->name, type == LC_DT_F8_E4M3 ? "_inv" : "");
            se->name = scale_names[i];
            se->ndim = 2;
            se->dtype = type == LC_DT_F8_E4M3 ? LC_DT_F32 : LC_DT_F16;
            se->shape[0] = type == LC_DT_F8_E4M3 ? (sp->rows + FP8_BLOCK - 1) / FP8_BLOCK : sp->rows;
            se->shape[1] = type == LC_DT_F8_E4M3 ? (sp->cols + FP8_BLOCK - 1) / FP8_BLOCK : nb;
            spec_of[ne] = i;
            part[ne++] = 2;
        }
        size_t most = 0; /* the largest scale grid */
        for (int64_t i = 0; i < n; i++)
            if (specs[i].fp8_ok && type != LC_DT_F32) most = LC_MAX(most, scales_bytes(specs[i].mat, type));
        quant_ctx x = {m, specs, spec_of, part, type, lc_malloc(most ? most : 1, "quantize scales"), -1};
        s = x.scales ? lc_st_write_dir(dst, e, (int)ne, max_shard_bytes, fill, &x) : LC_ERR_NOMEM;
        free(x.scales);
    }
    if (!s) {
        c.fp8 = type == LC_DT_F8_E4M3;
        if (c.fp8) c.weight_block_size[0] = c.weight_block_size[1] = FP8_BLOCK;
        char *path = lc_path_join(dst, "config.json");
        s = path ? lc_config_save(&c, path) : LC_ERR_NOMEM;
        free(path);
    }
    if (!s) s = copy_side_files(src, dst);
    free(specs);
    free(e);
    free(spec_of);
    free(part);
    free(scale_names);
    lc_model_free(m);
    return s;
}
