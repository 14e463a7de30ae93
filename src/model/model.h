/* model.h — the public API of the LongCat-Flash engine: load a checkpoint (lc_model, read-only
 * weights), open a conversation (lc_session: KV cache), run the forward pass and the MTP head.
 * Tokenizers, samplers, servers and the CLI use only this; they never see tensor internals. */
#ifndef LC_MODEL_H
#define LC_MODEL_H

#include "../io/config.h"
#include "../io/safetensors.h"
#include "../kernels/kernels.h"

/* ---- weights (the read-only model) ---- */

typedef struct {
    lc_mat q_a_proj;            /* [q_lora_rank, H] */
    const float *q_a_layernorm; /* [q_lora_rank] */
    lc_mat q_b_proj;            /* [nh*(dn+dr), q_lora_rank] */
    lc_mat kv_a_proj_with_mqa;  /* [kv_lora_rank+dr, H] */
    const float *kv_a_layernorm;/* [kv_lora_rank] */
    lc_mat kv_b_proj;           /* [nh*(dn+dv), kv_lora_rank] */
    lc_mat o_proj;              /* [H, nh*dv] */
} lc_mla_weights;

typedef struct {
    lc_mat gate_proj, up_proj; /* [F, H] */
    lc_mat down_proj;          /* [H, F] */
} lc_ffn_weights;

typedef struct {
    const float *input_layernorm[2];          /* [H] before attn0 / attn1 */
    const float *post_attention_layernorm[2]; /* [H] before mlp0 (and the MoE) / mlp1 */
    lc_mla_weights self_attn[2];
    lc_ffn_weights mlps[2];                   /* dense SwiGLU, ffn_hidden_size */
    lc_mat router_classifier;                 /* [N+Z, H] */
    const float *e_score_correction_bias;     /* [N+Z], selection only */
    lc_ffn_weights *experts;                  /* [N], expert_ffn_hidden_size */
} lc_layer_weights;

typedef struct {
    lc_mat embed_tokens;  /* [V, H] */
    const float *enorm, *hnorm; /* [H] */
    lc_mat eh_proj;       /* [H, 2H] */
    const float *input_layernorm, *post_attention_layernorm, *norm; /* [H] */
    lc_mla_weights self_attn;
    lc_ffn_weights mlp;   /* dense, ffn_hidden_size */
} lc_mtp_weights;

typedef struct lc_model {
    lc_config cfg;
    lc_st st;               /* the mapped checkpoint */
    char *path;
    lc_mat embed_tokens;    /* [V, H] */
    lc_mat lm_head;         /* [V, H] (the embedding when tied) */
    const float *norm;      /* [H] */
    lc_layer_weights *layers;
    int has_mtp;
    lc_mtp_weights mtp;
    float *small;           /* norms, biases and FP8 scales converted to f32 (owned) */
    size_t small_used, small_cap;
} lc_model;

/* Opens MODEL_DIR (config.json + safetensors), validating every tensor the config implies:
 * presence, shape, dtype, FP8 scales (finite). Weights stay memory-mapped. */
lc_status lc_model_load(lc_model **out, const char *dir);
/* Copies the mapped checkpoint into anonymous memory at the same addresses (lc_mmap_make_resident:
 * `--no-mmap`): the weights then stay in RAM, on huge pages, instead of following the file's
 * page cache. The model needs its size in free memory. */
lc_status lc_model_make_resident(lc_model *m);
void lc_model_free(lc_model *m);

/* ---- the table of tensors (one place that names every weight) ---- */

typedef enum { LC_T_MAT, LC_T_NORM, LC_T_BIAS } lc_tensor_kind;

typedef struct {
    char name[128];      /* Hugging Face name, e.g. model.layers.3.self_attn.1.q_a_proj.weight */
    lc_tensor_kind kind; /* MAT: 2-D projection; NORM: RMSNorm weight (init 1); BIAS: router bias (init 0) */
    int64_t rows, cols;  /* cols = 0 for 1-D tensors */
    int fp8_ok;          /* may be stored as F8_E4M3 with weight_scale_inv (projections) */
    lc_mat *mat;         /* where the loader binds it (NULL when enumerating without a model) */
    const float **vec;
} lc_tensor_spec;

/* Lists every tensor of the checkpoint the config describes, in checkpoint order. With a
 * model, the specs point at its slots. Returns the count; specs may be NULL to count only. */
int64_t lc_model_tensor_specs(const lc_config *c, lc_model *m, lc_tensor_spec *specs);

/* ---- sessions (per-conversation state) ---- */

typedef enum {
    LC_ATTN_AUTO,     /* expanded K/V for prompts (T > 1), absorbed for single tokens */
    LC_ATTN_EXPANDED, /* expand kv_b_proj @ latent into per-head K/V */
    LC_ATTN_ABSORBED, /* weight absorption: attend in the latent space */
} lc_attn_mode;

typedef struct lc_session {
    const lc_model *m;
    int64_t n_ctx;     /* capacity in tokens */
    int64_t pos;       /* tokens in the main cache */
    int64_t mtp_pos;   /* rows in the MTP cache */
    lc_attn_mode attn_mode;
    /* Compressed MLA cache, per attention sublayer a = 2*layer + s: */
    float *kv_latent;  /* [2L][n_ctx][kv_lora_rank]  normed, LoRA-scaled latent */
    float *kv_rope;    /* [2L][n_ctx][dr]            roped shared key */
    float *mtp_latent; /* [n_ctx][kv_lora_rank] */
    float *mtp_rope;   /* [n_ctx][dr] */
} lc_session;

lc_status lc_session_new(lc_session **out, const lc_model *m, int64_t n_ctx);
void lc_session_reset(lc_session *s);
void lc_session_free(lc_session *s);

/* What a forward call should return; any pointer may be NULL. */
typedef struct {
    float *logits;        /* [T, V], or [1, V] with logits_last_only */
    int logits_last_only; /* compute lm_head for the last token only (generation) */
    float *hidden;        /* [num_layers, T, H]: h after each layer (before the final norm) */
    int32_t *topk_idx;    /* [num_layers, T, K]: chosen experts, ascending */
    float *normed;        /* [T, H]: rmsnorm(h, model.norm), the lm_head input (MTP input) */
    int64_t *n_ffn_experts; /* [1]: FFN (non-identity) expert slots used, summed over layers and tokens */
} lc_forward_out;

/* Runs T tokens at positions s->pos .. s->pos+T-1 through the model, appending to the cache. */
lc_status lc_forward(lc_session *s, const int32_t *tokens, int64_t T, lc_forward_out *out);

/* Several sessions in one forward pass (continuous batching): sequence i appends its
 * n_tokens[i] tokens (consecutive in `tokens`) to sessions[i], which must be distinct. Weight
 * products run once over all rows; attention runs per sequence over its own cache. Outputs
 * are laid out over all rows in order; with logits_last_only, logits is [n_seq, V] (the last
 * row of each sequence). lc_forward is the one-sequence case. */
lc_status lc_forward_batch(lc_session *const *sessions, const int32_t *tokens, const int64_t *n_tokens, int64_t n_seq,
                           lc_forward_out *out);
/* Wall time per component of lc_forward/lc_forward_batch, accumulated while enabled (for
 * `longcat bench`; off by default, then it costs one branch per component call). */
typedef enum { LC_PROF_ATTENTION, LC_PROF_DENSE_FFN, LC_PROF_ROUTER, LC_PROF_EXPERTS, LC_PROF_LM_HEAD, LC_PROF_OTHER,
               LC_PROF_COUNT } lc_prof_part;
void lc_profile_enable(int on);   /* also zeroes the totals */
void lc_profile_read(double sec[LC_PROF_COUNT]);
const char *lc_profile_name(lc_prof_part p);

/* MTP head on T rows at MTP positions s->mtp_pos..: row t drafts the token after next from
 * normed[t] (the main model's lm_head input at some position p) and next_tokens[t] (the token
 * at p+1). Writes logits [T, V]. */
lc_status lc_mtp_forward(lc_session *s, const float *normed, const int32_t *next_tokens, int64_t T,
                         float *logits);

/* ---- quantization (`longcat quantize`) ---- */

/* Writes DST: SRC with every projection (*_proj) matrix in `type` — LC_DT_Q8_0, LC_DT_Q4_0
 * (docs/FORMATS.md), LC_DT_F8_E4M3 (128x128 block scales) or LC_DT_F32 (dequantised) — and
 * the rest copied as stored,
 * plus config.json and the tokenizer files. */
lc_status lc_model_quantize(const char *src, const char *dst, lc_dtype type, uint64_t max_shard_bytes);

/* ---- random initialisation (`longcat init`) ---- */

typedef struct {
    uint64_t seed;
    lc_dtype dtype;          /* F32, BF16, F16 or F8_E4M3 (projections FP8, rest BF16) */
    float init_std;          /* matrices ~ N(0, std^2); 0 = 0.02 */
    float hidden_std_scale;  /* multiplies std of hidden (non-embedding) matrices; 0 = 1 (width transfer) */
    uint64_t max_shard_bytes;/* 0: one model.safetensors */
} lc_init_options;

lc_status lc_model_init_write(const lc_config *c, const lc_init_options *o, const char *dir);

#endif
