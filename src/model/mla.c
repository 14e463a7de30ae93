/* mla.c — Multi-head Latent Attention forward (SPEC §3): LoRA-factored queries, compressed
 * KV cache (latent + one shared roped key per token), expanded attention for prompts and
 * weight-absorbed attention for decoding. Router/MoE/FFN live in their own files. */
#include "sublayers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MLA_NORM_EPS 1e-6f /* q_a_layernorm and kv_a_layernorm use 1e-6, not rms_norm_eps */

void rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    for (int64_t t = 0; t < T; t++) lc_rmsnorm(out + t * n, x + t * n, w, n, eps);
}

/* Expanded attention: kv = kv_b_proj @ latent for every cached row, then ordinary MHA with
 * the shared roped key. ctx [T, nh*dv]. */
static lc_status attend_expanded(float *ctx, const float *q, const float *cache_latent, const float *cache_rope,
                                 const lc_mla_weights *w, const lc_config *c, int64_t T, int64_t p0) {
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, kvr = c->kv_lora_rank, P = p0 + T, dkv = dn + dv, dq = dn + dr;
    const float scale = 1.0f / sqrtf((float)dq);
    float *kv = lc_malloc((size_t)(P * nh * dkv) * sizeof *kv, "MLA expanded K/V");
    if (!kv) return LC_ERR_NOMEM;
    lc_k.matmul(kv, nh * dkv, cache_latent, kvr, &w->kv_b_proj, 0, nh * dkv, P);
    int fail = 0;
#pragma omp parallel
    {
        float *scores = malloc((size_t)P * sizeof *scores);
        if (!scores) fail = 1;
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < nh; h++) {
                if (!scores) continue;
                const float *qh = q + (t * nh + h) * dq;
                const int64_t n = p0 + t + 1;
                for (int64_t u = 0; u < n; u++) {
                    const float *k = kv + (u * nh + h) * dkv;
                    scores[u] = (lc_dot(qh, k, dn) + lc_dot(qh + dn, cache_rope + u * dr, dr)) * scale;
                }
                lc_softmax(scores, n); /* causal: only u <= p0 + t */
                float *o = ctx + (t * nh + h) * dv;
                memset(o, 0, (size_t)dv * sizeof *o);
                for (int64_t u = 0; u < n; u++) lc_axpy(o, scores[u], kv + (u * nh + h) * dkv + dn, dv);
            }
        free(scores);
    }
    free(kv);
    return fail ? lc_error(LC_ERR_NOMEM, "out of memory for attention scores") : LC_OK;
}

/* Weight-absorbed attention: q_lat = W_kb_h^T q_nope, score = q_lat . latent + q_rope . k_rope,
 * ctx_lat = sum p latent, o_h = W_vb_h ctx_lat. Never expands per-head K/V. */
static lc_status attend_absorbed(float *ctx, const float *q, const float *cache_latent, const float *cache_rope,
                                 const lc_mla_weights *w, const lc_config *c, int64_t T, int64_t p0) {
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, kvr = c->kv_lora_rank, dkv = dn + dv, dq = dn + dr;
    const float scale = 1.0f / sqrtf((float)dq);
    int fail = 0;
#pragma omp parallel
    {
        float *scores = malloc((size_t)(p0 + T) * sizeof *scores);
        float *q_lat = malloc((size_t)kvr * sizeof *q_lat), *ctx_lat = malloc((size_t)kvr * sizeof *ctx_lat);
        int ok = scores && q_lat && ctx_lat;
        if (!ok) fail = 1;
#pragma omp for collapse(2) schedule(static)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < nh; h++) {
                if (!ok) continue;
                const float *qh = q + (t * nh + h) * dq;
                const int64_t n = p0 + t + 1;
                lc_k.matvec_t(q_lat, qh, &w->kv_b_proj, h * dkv, dn);
                for (int64_t u = 0; u < n; u++)
                    scores[u] = (lc_dot(q_lat, cache_latent + u * kvr, kvr) + lc_dot(qh + dn, cache_rope + u * dr, dr)) *
                                scale;
                lc_softmax(scores, n); /* causal: only u <= p0 + t */
                memset(ctx_lat, 0, (size_t)kvr * sizeof *ctx_lat);
                for (int64_t u = 0; u < n; u++) lc_axpy(ctx_lat, scores[u], cache_latent + u * kvr, kvr);
                lc_k.matmul(ctx + (t * nh + h) * dv, dv, ctx_lat, kvr, &w->kv_b_proj, h * dkv + dn, dv, 1);
            }
        free(scores);
        free(q_lat);
        free(ctx_lat);
    }
    return fail ? lc_error(LC_ERR_NOMEM, "out of memory for attention scratch") : LC_OK;
}

lc_status mla_forward(float *out, const float *x, float *cache_latent, float *cache_rope, const lc_mla_weights *w,
                      const lc_config *c, int64_t T, int64_t p0, int absorbed) {
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr;
    const float sq = c->mla_scale_q_lora ? sqrtf((float)H / (float)qr) : 1.0f;
    const float skv = c->mla_scale_kv_lora ? sqrtf((float)H / (float)kvr) : 1.0f;
    float *qa = lc_malloc((size_t)(T * qr) * sizeof(float), "MLA q_a");
    float *q = lc_malloc((size_t)(T * nh * dq) * sizeof(float), "MLA q");
    float *ckv = lc_malloc((size_t)(T * (kvr + dr)) * sizeof(float), "MLA kv_a");
    float *ctx = lc_malloc((size_t)(T * nh * dv) * sizeof(float), "MLA context");
    lc_status s = (qa && q && ckv && ctx) ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        /* queries: q = q_b_proj @ rmsnorm(q_a_proj @ x) * sq, rope on each head's last dr dims */
        lc_matmul(qa, x, &w->q_a_proj, T);
        rmsnorm_rows(qa, qa, w->q_a_layernorm, T, qr, MLA_NORM_EPS);
        lc_matmul(q, qa, &w->q_b_proj, T);
        for (int64_t i = 0; i < T * nh * dq; i++) q[i] *= sq;
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < nh; h++) lc_rope(q + (t * nh + h) * dq + dn, dr, p0 + t, c->rope_theta);
        /* keys/values: the compressed cache rows of these tokens */
        lc_matmul(ckv, x, &w->kv_a_proj_with_mqa, T);
        for (int64_t t = 0; t < T; t++) {
            float *lat = cache_latent + (p0 + t) * kvr, *kr = cache_rope + (p0 + t) * dr;
            const float *src = ckv + t * (kvr + dr);
            lc_rmsnorm(lat, src, w->kv_a_layernorm, kvr, MLA_NORM_EPS);
            for (int64_t i = 0; i < kvr; i++) lat[i] *= skv;
            memcpy(kr, src + kvr, (size_t)dr * sizeof *kr);
            lc_rope(kr, dr, p0 + t, c->rope_theta);
        }
        s = absorbed ? attend_absorbed(ctx, q, cache_latent, cache_rope, w, c, T, p0)
                     : attend_expanded(ctx, q, cache_latent, cache_rope, w, c, T, p0);
    }
    if (!s) lc_matmul(out, ctx, &w->o_proj, T);
    free(qa);
    free(q);
    free(ckv);
    free(ctx);
    return s;
}
