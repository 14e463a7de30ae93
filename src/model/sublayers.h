/* sublayers.h — the forward functions of one LongCat-Flash layer's parts (internal to
 * src/model): MLA attention, dense SwiGLU FFN, router, MoE with identity experts. Outputs
 * first, then inputs, then weights and sizes. Shapes in comments: T tokens, H hidden. */
#ifndef LC_SUBLAYERS_H
#define LC_SUBLAYERS_H

#include "model.h"

/* Activations an MLA sublayer keeps for its backward pass (training: every sequence from
 * position 0, expanded attention). T is the sum of the sequences' T_i; rows run sequence after
 * sequence. Buffers are owned by the caller (src/train). */
typedef struct {
    float *qa;   /* [T, q_lora_rank] q_a_proj @ x, before its norm */
    float *qn;   /* [T, q_lora_rank] after q_a_layernorm */
    float *q;    /* [T, nh, dn+dr] scaled, rope applied to the last dr */
    float *ckv;  /* [T, kv_lora_rank+dr] kv_a_proj_with_mqa @ x */
    float *lat;  /* [T, kv_lora_rank] the latents (rmsnorm(ckv[:kvr]) * skv): each sequence's cache */
    float *kpe;  /* [T, dr] the roped shared keys: each sequence's cache */
    float *kv;   /* [T, nh, dn+dv] kv_b_proj @ latent */
    float *p;    /* per sequence [nh, T_i, T_i] attention probabilities (row t covers u <= t) */
    float *ctx;  /* [T, nh*dv] attention output before o_proj */
    const float *rope_cs; /* [T_max, dr] lc_rope_table rows of positions 0.. for the backward pass (set
                             by the caller, shared by every layer; NULL: each row's coefficients
                             computed where needed); the forward pass takes mla_seq.rope_cs */
} mla_acts;

/* Floats of an mla_acts for sequences of lengths seq_T[0..n_seq) (see mla_acts_carve). */
int64_t mla_acts_floats(const lc_config *c, const int64_t *seq_T, int64_t n_seq);
/* Points a's buffers into p (mla_acts_floats(...) floats); returns the end. */
float *mla_acts_carve(mla_acts *a, float *p, const lc_config *c, const int64_t *seq_T, int64_t n_seq);

/* One sequence of a batch as an MLA sublayer sees it: T consecutive rows of x/out, appended
 * to this sublayer's cache at positions p0..p0+T-1. absorbed: attend in latent space
 * (kv_b_proj folded into q and out), else expand per-head K/V. */
typedef struct {
    float *latent; /* [n_ctx, kv_lora_rank] the sequence's cache for this sublayer */
    float *rope;   /* [n_ctx, qk_rope_head_dim] */
    int64_t p0, T;
    int absorbed;
    const float *rope_cs; /* [T, qk_rope_head_dim] lc_rope_coeffs of positions p0.. (once per forward
                             pass, shared by every layer), or NULL: computed where needed */
} mla_seq;

/* MLA (SPEC §3) for the rows of n_seq sequences (T = the sum of their T): projections run once
 * over all rows; each sequence appends its tokens' latents (rmsnorm(kv_a.latent) * skv) and
 * roped shared keys to its cache, then attends causally over its own rows 0..p0+t. */
lc_status mla_forward(float *out,                 /* [T, H] */
                      const float *x,             /* [T, H] normed input */
                      const mla_seq *seqs, int64_t n_seq,
                      const lc_mla_weights *w, const lc_config *c,
                      mla_acts *acts /* NULL, or where to keep activations (every p0 = 0, expanded, and
                                        each sequence's cache = its rows of acts->lat / acts->kpe) */);

/* Gradients of mla_forward (with acts) w.r.t. its input and weights for sequences of lengths
 * seq_T[0..n_seq); parameter grads +=, dx +=. g holds gradient buffers shaped like w. */
lc_status mla_backward(float *dx, lc_mla_weights *g, const float *dout, const float *x, const int64_t *seq_T,
                       int64_t n_seq, const mla_acts *acts, const lc_mla_weights *w, const lc_config *c);

/* Gate/up products, act = silu(g) * u over n_act elements (act may be g), down products. Row-
 * kernel-sized ones (decode) run as one parallel region — items shared out with stealing, a
 * barrier after each step — instead of two regions with SwiGLU on one thread between them;
 * else step by step. Same bits either way. */
lc_status ffn_rows(const lc_matmul_job *gu, int64_t n_gu, float *act, const float *g, const float *u, int64_t n_act,
                   const lc_matmul_job *down, int64_t n_down);
/* out = down(silu(gate x) * up x), SwiGLU of width F = w->gate_proj.rows. keep: NULL, or
 * [2, T, F] where the gate and up pre-activations stay for the backward pass. */
lc_status ffn_forward(float *out,       /* [T, H] */
                      const float *x,   /* [T, H] */
                      const lc_ffn_weights *w, int64_t T, float *keep);

/* dx += d/dx, g += d/dweights of ffn_forward; kept: its keep buffer (used up: the backward
 * pass overwrites it), or NULL to recompute. */
lc_status ffn_backward(float *dx, lc_ffn_weights *g, const float *dout, const float *x, const lc_ffn_weights *w, int64_t T,
                       float *kept);

/* Router: s = softmax(classifier x); chosen = top-K of s + e_score_correction_bias (the bias
 * only selects); weight = s * routed_scaling_factor. Chosen ids come out ascending. */
lc_status router_forward(int32_t *topk_idx, /* [T, K] */
                         float *topk_w,     /* [T, K] */
                         const float *x,    /* [T, H] */
                         const lc_layer_weights *w, const lc_config *c, int64_t T);

/* What the MoE forward keeps for its backward pass (training), per FFN-expert slot in expert
 * order (each expert's tokens in token order): the expert's output and its gate/up. */
typedef struct {
    float *y;  /* [T * K, H] */
    float *gu; /* [T * K, 2 * expert_ffn_hidden_size]: per expert, [2, n_e, F_e] */
} moe_keep;

/* out = sum over chosen e of w_e * (e < N ? expert_e(x) : x). Expert-major: each FFN expert
 * runs once on the tokens routed to it (experts in parallel when there are enough of them);
 * identity experts cost one scaled add; experts no token chose are never touched. Each token
 * sums its slots in ascending expert order. *n_ffn (may be NULL) gets the FFN-expert slots used. */
lc_status moe_forward(float *out,              /* [T, H] */
                      const float *x,          /* [T, H] */
                      const int32_t *topk_idx, /* [T, K] */
                      const float *topk_w,     /* [T, K] */
                      const lc_layer_weights *w, const lc_config *c, int64_t T, int64_t *n_ffn, moe_keep *keep);
/* moe_forward, and dense_out = ffn_forward(x) of the dense FFN `dense` that reads the same x
 * (ScMoE: the MoE branch and the first dense FFN both start from the first attention's
 * output). At decode (few tokens, row kernels) the two share their parallel phases — gate/up
 * of both, SwiGLU, down of both — instead of taking turns; otherwise one after the other. The
 * same bits as the two calls. dense may be NULL (then this is moe_forward). */
lc_status moe_dense_forward(float *out, float *dense_out, const float *x, const int32_t *topk_idx, const float *topk_w,
                            const lc_layer_weights *w, const lc_config *c, int64_t T, int64_t *n_ffn, moe_keep *keep,
                            const lc_ffn_weights *dense);

/* The load-balancing loss's hook into the router (SPEC §4.2): L_LB = sum_t sum_i coef[t,i] s[t,i]
 * with s the router softmax (coef: each token's row of its sequence's coefficients); its
 * gradient goes to dwr_lb (kept apart so the trainer can compare it with the language-model
 * gradient) and into dx; lb_loss receives L_LB. */
typedef struct {
    const float *coef; /* [T, N+Z], NULL: no LB loss */
    float *dwr_lb;     /* [N+Z, H] += */
    double lb_loss;
} moe_aux;

/* Backward of router + moe_forward: dx += (experts, identity experts, router), router and
 * expert weight grads +=. Experts are recomputed; `touched[e]` is set for experts that got
 * tokens (their grads exist, as PyTorch leaves untouched experts' grads at None). */
lc_status moe_backward(float *dx, lc_layer_weights *g, unsigned char *touched, const float *dout, const float *x,
                       const int32_t *topk_idx, const float *topk_w, const lc_layer_weights *w, const lc_config *c,
                       int64_t T, moe_aux *aux, moe_keep *kept /* NULL: recompute the experts; used up */);

/* What one ScMoE layer keeps for its backward pass (buffers owned by src/train). */
typedef struct {
    float *h0, *h1, *h2, *h3;   /* [T, H] the residual stream entering / after attn0, mlp0, attn1 */
    float *x1, *x, *x3, *x4;    /* [T, H] normed inputs of attn0, mlp0 + MoE, attn1, mlp1 */
    int32_t *topk_idx;          /* [T, K] */
    float *topk_w;              /* [T, K] */
    mla_acts attn[2];
    float *ffn_keep[2];         /* [2, T, ffn_hidden_size] gate/up of mlps[0], mlps[1] */
    moe_keep moe;
} layer_acts;

/* One sequence of a forward call: T tokens appended to sess at sess->pos. */
typedef struct {
    lc_session *sess;
    int64_t T;
    int absorbed;         /* attention mode of its MLA sublayers */
    const float *rope_cs; /* as mla_seq's: [T, qk_rope_head_dim] or NULL */
} batch_seq;

/* One layer in place on h [T, H], T the sum over seqs (see layer.c); acts: NULL, or where to
 * keep activations (training: every sequence from position 0; the attention caches are then
 * acts' latent rows, and the sessions only give the model and position 0). */
lc_status scmoe_layer_forward(float *h, int32_t *topk_idx, int64_t *n_ffn, const batch_seq *seqs, int64_t n_seq,
                              int64_t layer, layer_acts *acts);
/* dh: on entry the gradient w.r.t. the layer's output, on return w.r.t. its input, for the
 * sequences of lengths seq_T[0..n_seq) the forward ran (its kept FFN/expert values are used up).
 * g: weight gradients of this layer (+=); touched[e]: expert e received tokens. */
lc_status scmoe_layer_backward(float *dh, lc_layer_weights *g, unsigned char *touched, layer_acts *acts,
                               const lc_model *m, int64_t layer, const int64_t *seq_T, int64_t n_seq, moe_aux *aux);

/* Row-wise RMSNorm of T rows of width n. */
void rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int64_t n, float eps);

#endif
