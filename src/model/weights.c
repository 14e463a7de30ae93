/* weights.c — the one table of LongCat-Flash tensors (names verbatim from the Hugging Face
 * checkpoint, shapes from the config) and the loader that binds a mapped checkpoint to it.
 * The forward pass lives in the other files of src/model; nothing here computes. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    lc_tensor_spec *specs; /* NULL: count only */
    int64_t n;
} spec_list;

__attribute__((format(printf, 8, 9))) static void add(spec_list *l, lc_tensor_kind kind, int64_t rows, int64_t cols, int fp8_ok, lc_mat *mat,
                const float **vec, const char *fmt, ...) {
    if (l->specs) {
        lc_tensor_spec *s = &l->specs[l->n];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(s->name, sizeof s->name, fmt, ap);
        va_end(ap);
        s->kind = kind;
        s->rows = rows;
        s->cols = cols;
        s->fp8_ok = fp8_ok;
        s->mat = mat;
        s->vec = vec;
    }
    l->n++;
}

/* `P` is a name prefix such as "model.layers.3.self_attn.1". */
static void mla_specs(spec_list *l, const lc_config *c, lc_mla_weights *w, const char *P) {
    int64_t H = c->hidden_size, nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    add(l, LC_T_MAT, qr, H, 1, w ? &w->q_a_proj : NULL, NULL, "%s.q_a_proj.weight", P);
    add(l, LC_T_NORM, qr, 0, 0, NULL, w ? &w->q_a_layernorm : NULL, "%s.q_a_layernorm.weight", P);
    add(l, LC_T_MAT, nh * (dn + dr), qr, 1, w ? &w->q_b_proj : NULL, NULL, "%s.q_b_proj.weight", P);
    add(l, LC_T_MAT, kvr + dr, H, 1, w ? &w->kv_a_proj_with_mqa : NULL, NULL, "%s.kv_a_proj_with_mqa.weight", P);
    add(l, LC_T_NORM, kvr, 0, 0, NULL, w ? &w->kv_a_layernorm : NULL, "%s.kv_a_layernorm.weight", P);
    add(l, LC_T_MAT, nh * (dn + dv), kvr, 1, w ? &w->kv_b_proj : NULL, NULL, "%s.kv_b_proj.weight", P);
    add(l, LC_T_MAT, H, nh * dv, 1, w ? &w->o_proj : NULL, NULL, "%s.o_proj.weight", P);
}

static void ffn_specs(spec_list *l, int64_t H, int64_t F, lc_ffn_weights *w, const char *P) {
    add(l, LC_T_MAT, F, H, 1, w ? &w->gate_proj : NULL, NULL, "%s.gate_proj.weight", P);
    add(l, LC_T_MAT, F, H, 1, w ? &w->up_proj : NULL, NULL, "%s.up_proj.weight", P);
    add(l, LC_T_MAT, H, F, 1, w ? &w->down_proj : NULL, NULL, "%s.down_proj.weight", P);
}

int64_t lc_model_tensor_specs(const lc_config *c, lc_model *m, lc_tensor_spec *specs) {
    spec_list l = {specs, 0};
    int64_t H = c->hidden_size, V = c->vocab_size, n_all = c->n_routed_experts + c->zero_expert_num;
    char P[96];
    add(&l, LC_T_MAT, V, H, 0, m ? &m->embed_tokens : NULL, NULL, "model.embed_tokens.weight");
    for (int64_t L = 0; L < c->num_layers; L++) {
        lc_layer_weights *w = m ? &m->layers[L] : NULL;
        for (int s = 0; s < 2; s++) {
            add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->input_layernorm[s] : NULL,
                "model.layers.%lld.input_layernorm.%d.weight", (long long)L, s);
            add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->post_attention_layernorm[s] : NULL,
                "model.layers.%lld.post_attention_layernorm.%d.weight", (long long)L, s);
            snprintf(P, sizeof P, "model.layers.%lld.self_attn.%d", (long long)L, s);
            mla_specs(&l, c, w ? &w->self_attn[s] : NULL, P);
            snprintf(P, sizeof P, "model.layers.%lld.mlps.%d", (long long)L, s);
            ffn_specs(&l, H, c->ffn_hidden_size, w ? &w->mlps[s] : NULL, P);
        }
        add(&l, LC_T_MAT, n_all, H, 0, w ? &w->router_classifier : NULL, NULL,
            "model.layers.%lld.mlp.router.classifier.weight", (long long)L);
        add(&l, LC_T_BIAS, n_all, 0, 0, NULL, w ? &w->e_score_correction_bias : NULL,
            "model.layers.%lld.mlp.router.e_score_correction_bias", (long long)L);
        for (int64_t e = 0; e < c->n_routed_experts; e++) {
            snprintf(P, sizeof P, "model.layers.%lld.mlp.experts.%lld", (long long)L, (long long)e);
            ffn_specs(&l, H, c->expert_ffn_hidden_size, w ? &w->experts[e] : NULL, P);
        }
    }
    add(&l, LC_T_NORM, H, 0, 0, NULL, m ? &m->norm : NULL, "model.norm.weight");
    if (!c->tie_word_embeddings) add(&l, LC_T_MAT, V, H, 0, m ? &m->lm_head : NULL, NULL, "lm_head.weight");
    if (c->num_nextn_predict_layers > 0) {
        lc_mtp_weights *w = m ? &m->mtp : NULL;
        add(&l, LC_T_MAT, V, H, 0, w ? &w->embed_tokens : NULL, NULL, "model.mtp.embed_tokens.weight");
        add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->enorm : NULL, "model.mtp.layers.0.enorm.m.weight");
        add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->hnorm : NULL, "model.mtp.layers.0.hnorm.m.weight");
        add(&l, LC_T_MAT, H, 2 * H, 1, w ? &w->eh_proj : NULL, NULL, "model.mtp.layers.0.eh_proj.weight");
        add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->input_layernorm : NULL, "model.mtp.layers.0.input_layernorm.weight");
        add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->post_attention_layernorm : NULL,
            "model.mtp.layers.0.post_attention_layernorm.weight");
        mla_specs(&l, c, w ? &w->self_attn : NULL, "model.mtp.layers.0.self_attn");
        ffn_specs(&l, H, c->ffn_hidden_size, w ? &w->mlp : NULL, "model.mtp.layers.0.transformer_layer.mlp");
        add(&l, LC_T_NORM, H, 0, 0, NULL, w ? &w->norm : NULL, "model.mtp.norm.weight");
    }
    return l.n;
}

static int is_float(lc_dtype t) {
    return t == LC_DT_F32 || t == LC_DT_F16 || t == LC_DT_BF16 || t == LC_DT_F64;
}

/* Copies a small 1-D/2-D float tensor into the model's f32 arena. */
static lc_status convert_small(lc_model *m, const lc_st_tensor *t, const float **dst) {
    int64_t n = lc_st_numel(t);
    if (m->small_used + (size_t)n > m->small_cap)
        return lc_error(LC_ERR_NOMEM, "internal: small-tensor arena too small for %s", t->name);
    float *p = m->small + m->small_used;
    for (int64_t i = 0; i < n; i++) p[i] = lc_load_f32(t->data, t->dtype, i);
    m->small_used += (size_t)n;
    *dst = p;
    return LC_OK;
}

/* "[2, 3]" */
static const char *shape_str(const lc_st_tensor *t, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* Q8_0 (I8 [rows, cols]) or Q4_0 (U8 [rows, ceil(cols/32) * 16]) with NAME_scale F16
 * [rows, ceil(cols/32)] (docs/FORMATS.md). */
static lc_status bind_qmat(lc_model *m, const lc_tensor_spec *s, const lc_st_tensor *t) {
    const char *file = lc_st_file_path(&m->st, t);
    const int q4 = t->dtype == LC_DT_U8;
    const int64_t nb = lc_q_blocks(s->cols), want_cols = q4 ? nb * (LC_QK / 2) : s->cols;
    char sh[96], sname[160];
    if (t->ndim != 2 || t->shape[0] != s->rows || t->shape[1] != want_cols)
        return lc_error(LC_ERR_SHAPE, "%s: tensor %s (%s, read as %s) has shape %s, expected [%lld, %lld]", file, s->name,
                        lc_dtype_name(t->dtype), q4 ? "Q4_0" : "Q8_0", shape_str(t, sh, sizeof sh), (long long)s->rows,
                        (long long)want_cols);
    snprintf(sname, sizeof sname, "%s_scale", s->name);
    const lc_st_tensor *st = lc_st_find(&m->st, sname);
    if (!st) return lc_error(LC_ERR_SHAPE, "%s: %s tensor %s has no companion %s", file, q4 ? "Q4_0" : "Q8_0", s->name, sname);
    if (st->dtype != LC_DT_F16 || st->ndim != 2 || st->shape[0] != s->rows || st->shape[1] != nb)
        return lc_error(LC_ERR_SHAPE, "%s: %s must be F16 of shape [%lld, %lld], is %s %s", lc_st_file_path(&m->st, st), sname,
                        (long long)s->rows, (long long)nb, lc_dtype_name(st->dtype), shape_str(st, sh, sizeof sh));
    lc_mat *w = s->mat;
    *w = (lc_mat){t->data, q4 ? LC_DT_Q4_0 : LC_DT_Q8_0, s->rows, s->cols, NULL, 0, 0, st->data};
    return LC_OK;
}

static lc_status bind_mat(lc_model *m, const lc_tensor_spec *s, const lc_st_tensor *t) {
    const char *file = lc_st_file_path(&m->st, t);
    char sh[96];
    if (t->dtype == LC_DT_I8 || t->dtype == LC_DT_U8) return bind_qmat(m, s, t);
    if (t->ndim != 2 || t->shape[0] != s->rows || t->shape[1] != s->cols)
        return lc_error(LC_ERR_SHAPE, "%s: tensor %s has shape %s, expected [%lld, %lld]", file, s->name,
                        shape_str(t, sh, sizeof sh), (long long)s->rows, (long long)s->cols);
    lc_mat *w = s->mat;
    memset(w, 0, sizeof *w);
    w->data = t->data;
    w->dtype = t->dtype;
    w->rows = s->rows;
    w->cols = s->cols;
    if (t->dtype == LC_DT_F8_E4M3) {
        const lc_config *c = &m->cfg;
        if (!c->fp8)
            return lc_error(LC_ERR_SHAPE, "%s: tensor %s is F8_E4M3 but config.json has no fp8 quantization_config",
                            file, s->name);
        char sname[160];
        snprintf(sname, sizeof sname, "%s_scale_inv", s->name);
        const lc_st_tensor *st = lc_st_find(&m->st, sname);
        if (!st) return lc_error(LC_ERR_SHAPE, "%s: FP8 tensor %s has no companion %s", file, s->name, sname);
        int64_t br = c->weight_block_size[0], bc = c->weight_block_size[1];
        int64_t sr = (s->rows + br - 1) / br, sc = (s->cols + bc - 1) / bc;
        if (st->ndim != 2 || st->shape[0] != sr || st->shape[1] != sc || !is_float(st->dtype))
            return lc_error(LC_ERR_SHAPE, "%s: %s must be a float tensor of shape [%lld, %lld] (blocks %lldx%lld)",
                            lc_st_file_path(&m->st, st), sname, (long long)sr, (long long)sc, (long long)br,
                            (long long)bc);
        lc_status r = convert_small(m, st, &w->scale_inv);
        if (r) return r;
        for (int64_t i = 0; i < sr * sc; i++)
            if (!isfinite(w->scale_inv[i]))
                return lc_error(LC_ERR_FORMAT, "%s: %s[%lld][%lld] is %g (scales must be finite)",
                                lc_st_file_path(&m->st, st), sname, (long long)(i / sc), (long long)(i % sc),
                                (double)w->scale_inv[i]);
        w->block_rows = br;
        w->block_cols = bc;
    } else if (!lc_mat_dtype_supported(t->dtype)) {
        return lc_error(LC_ERR_SHAPE, "%s: tensor %s has dtype %s; projections must be F32, BF16, F16 or F8_E4M3",
                        file, s->name, lc_dtype_name(t->dtype));
    }
    return LC_OK;
}

static lc_status bind_vec(lc_model *m, const lc_tensor_spec *s, const lc_st_tensor *t) {
    char sh[96];
    if (t->ndim != 1 || t->shape[0] != s->rows)
        return lc_error(LC_ERR_SHAPE, "%s: tensor %s has shape %s, expected [%lld]", lc_st_file_path(&m->st, t),
                        s->name, shape_str(t, sh, sizeof sh), (long long)s->rows);
    if (!is_float(t->dtype))
        return lc_error(LC_ERR_SHAPE, "%s: tensor %s has dtype %s, expected a float type", lc_st_file_path(&m->st, t),
                        s->name, lc_dtype_name(t->dtype));
    return convert_small(m, t, s->vec);
}

lc_status lc_model_make_resident(lc_model *m) {
    for (int f = 0; f < m->st.n_files; f++) {
        lc_status s = lc_mmap_make_resident(&m->st.files[f]);
        if (s) return s;
    }
    return LC_OK;
}

void lc_model_free(lc_model *m) {
    if (!m) return;
    if (m->layers)
        for (int64_t L = 0; L < m->cfg.num_layers; L++) free(m->layers[L].experts);
    free(m->layers);
    free(m->small);
    free(m->path);
    lc_st_close(&m->st);
    free(m);
}

lc_status lc_model_load(lc_model **out, const char *dir) {
    *out = NULL;
    lc_kernels_init();
    lc_model *m = lc_calloc(1, sizeof *m, "model");
    if (!m) return LC_ERR_NOMEM;
    lc_status s = lc_config_load(&m->cfg, dir);
    if (!s) s = lc_st_open(&m->st, dir);
    const lc_config *c = &m->cfg;
    lc_tensor_spec *specs = NULL;
    int64_t n = 0;
    if (!s) {
        m->path = lc_strdup(dir);
        m->layers = lc_calloc((size_t)c->num_layers, sizeof *m->layers, "layers");
        if (!m->path || !m->layers) s = LC_ERR_NOMEM;
        for (int64_t L = 0; L < c->num_layers && !s; L++) {
            m->layers[L].experts = lc_calloc((size_t)c->n_routed_experts, sizeof(lc_ffn_weights), "experts");
            if (!m->layers[L].experts) s = LC_ERR_NOMEM;
        }
    }
    if (!s) {
        n = lc_model_tensor_specs(c, m, NULL);
        specs = lc_calloc((size_t)n, sizeof *specs, "tensor table");
        if (!specs) s = LC_ERR_NOMEM;
        else lc_model_tensor_specs(c, m, specs);
    }
    if (!s) {
        /* Arena for every 1-D tensor and every possible FP8 scale grid. */
        size_t cap = 0;
        for (int64_t i = 0; i < n; i++) {
            if (specs[i].kind != LC_T_MAT) cap += (size_t)specs[i].rows;
            else if (c->fp8 && specs[i].fp8_ok)
                cap += (size_t)(((specs[i].rows + c->weight_block_size[0] - 1) / c->weight_block_size[0]) *
                                ((specs[i].cols + c->weight_block_size[1] - 1) / c->weight_block_size[1]));
        }
        m->small_cap = cap;
        m->small = lc_calloc(cap, sizeof(float), "norms and scales");
        if (!m->small) s = LC_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n && !s; i++) {
        const lc_st_tensor *t = lc_st_find(&m->st, specs[i].name);
        if (!t) {
            s = lc_error(LC_ERR_SHAPE, "%s: tensor %s is missing (config.json implies it)", dir, specs[i].name);
            break;
        }
        if (t->dtype == LC_DT_F8_E4M3 && !specs[i].fp8_ok)
            s = lc_error(LC_ERR_SHAPE, "%s: tensor %s may not be F8_E4M3 (only *_proj weights are)",
                         lc_st_file_path(&m->st, t), specs[i].name);
        else if (specs[i].kind == LC_T_MAT) s = bind_mat(m, &specs[i], t);
        else s = bind_vec(m, &specs[i], t);
    }
    if (!s) {
        if (c->tie_word_embeddings) m->lm_head = m->embed_tokens;
        m->has_mtp = c->num_nextn_predict_layers > 0;
        *out = m;
    } else {
        lc_model_free(m);
    }
    free(specs);
    return s;
}
