/* sublayers.h — the forward functions of one LongCat-Flash layer's parts (internal to
 * src/model): MLA attention, dense SwiGLU FFN, router, MoE with identity experts. Outputs
 * first, then inputs, then weights and sizes. Shapes in comments: T tokens, H hidden. */
#ifndef LC_SUBLAYERS_H
#define LC_SUBLAYERS_H

#include "model.h"

/* MLA for T tokens at positions p0..p0+T-1 (SPEC §3). Appends each token's latent
 * (rmsnorm(kv_a.latent) * skv) and roped shared key to cache rows p0.., then attends causally
 * over cache rows 0..p0+t. absorbed: attend in latent space (kv_b_proj folded into q and out). */
lc_status mla_forward(float *out,                 /* [T, H] */
                      const float *x,             /* [T, H] normed input */
                      float *cache_latent,        /* [n_ctx, kv_lora_rank] */
                      float *cache_rope,          /* [n_ctx, qk_rope_head_dim] */
                      const lc_mla_weights *w, const lc_config *c, int64_t T, int64_t p0, int absorbed);

/* out = down(silu(gate x) * up x), SwiGLU of width w->gate_proj.rows. */
lc_status ffn_forward(float *out,       /* [T, H] */
                      const float *x,   /* [T, H] */
                      const lc_ffn_weights *w, int64_t T);

/* Router: s = softmax(classifier x); chosen = top-K of s + e_score_correction_bias (the bias
 * only selects); weight = s * routed_scaling_factor. Chosen ids come out ascending. */
lc_status router_forward(int32_t *topk_idx, /* [T, K] */
                         float *topk_w,     /* [T, K] */
                         const float *x,    /* [T, H] */
                         const lc_layer_weights *w, const lc_config *c, int64_t T);

/* out = sum over chosen e of w_e * (e < N ? expert_e(x) : x). Expert-major: each FFN expert
 * runs once on the tokens routed to it; identity experts cost one scaled add; experts no token
 * chose are never touched. *n_ffn (may be NULL) gets the number of FFN-expert slots used. */
lc_status moe_forward(float *out,              /* [T, H] */
                      const float *x,          /* [T, H] */
                      const int32_t *topk_idx, /* [T, K] */
                      const float *topk_w,     /* [T, K] */
                      const lc_layer_weights *w, const lc_config *c, int64_t T, int64_t *n_ffn);

/* Row-wise RMSNorm of T rows of width n. */
void rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int64_t n, float eps);

#endif
