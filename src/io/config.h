/* config.h — LongCat-Flash config.json (SPEC §1): parsing, validation, writing, presets and
 * parameter counts. Knows the architecture's hyperparameters, not its tensors' storage. */
#ifndef LC_CONFIG_H
#define LC_CONFIG_H

#include "../base/base.h"

typedef struct {
    int64_t vocab_size;
    int64_t hidden_size;              /* H */
    int64_t num_layers;               /* each: 2 MLA + 2 dense FFN + 1 MoE */
    int64_t num_attention_heads;      /* nh (kv heads = heads) */
    int64_t ffn_hidden_size;          /* dense SwiGLU width */
    int64_t q_lora_rank, kv_lora_rank;
    int64_t qk_nope_head_dim, qk_rope_head_dim, v_head_dim; /* dn, dr, dv */
    int64_t n_routed_experts;         /* N FFN experts */
    int64_t zero_expert_num;          /* Z identity experts, ids N..N+Z-1 */
    int64_t moe_topk;                 /* K experts chosen per token (FFN or zero) */
    int64_t expert_ffn_hidden_size;
    double routed_scaling_factor;
    double rms_norm_eps;
    double rope_theta;
    int mla_scale_q_lora, mla_scale_kv_lora;
    int64_t max_position_embeddings;
    int64_t num_nextn_predict_layers; /* MTP layers: 0 or 1 */
    int tie_word_embeddings;
    int64_t bos_token_id, eos_token_id;
    /* FP8 block quantization (quantization_config), 0 when absent */
    int fp8;
    int64_t weight_block_size[2];
    char torch_dtype[16];
} lc_config;

/* Parses config.json text; `path` names it in messages (which give the JSON path). */
lc_status lc_config_parse(lc_config *c, const char *json, size_t len, const char *path);
lc_status lc_config_load(lc_config *c, const char *path); /* file or folder holding config.json */
lc_status lc_config_validate(const lc_config *c, const char *path);
/* Sets one key from "key=value" text (for `init --set`). */
lc_status lc_config_set(lc_config *c, const char *assignment);
lc_status lc_config_save(const lc_config *c, const char *path);

/* Named presets: "tiny", "small", "medium", "flash-chat" (the real 560B shape), "peer"
 * (the llama.cpp peer benchmark twin). Returns LC_ERR_ARG for an unknown name. */
lc_status lc_config_preset(lc_config *c, const char *name);
const char *lc_config_preset_names(void);

/* Parameter counts from the config alone. */
typedef struct {
    int64_t embed, lm_head, attention, dense_ffn, router, experts, norms, mtp;
    int64_t per_expert;  /* one FFN expert */
    int64_t total;       /* all main-model parameters incl. embeddings (MTP separate) */
    int64_t active_min;  /* per token, all k slots on zero experts; excludes the input embedding table */
    int64_t active_max;  /* per token, min(k, N) FFN experts; excludes the input embedding table */
} lc_param_count;
void lc_config_count(const lc_config *c, lc_param_count *pc);

#endif
