/* config.c — config.json keys of SPEC §1 driven by one table: parse, validate, set, save,
 * presets and parameter counts. Tensor names and shapes live in src/model/weights.c. */
#define _POSIX_C_SOURCE 200809L
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { K_INT, K_FLOAT, K_BOOL } key_type;

/* One row per scalar key: name, type, field, required. */
#define CONFIG_KEYS(X)                                         \
    X(vocab_size, K_INT, 1)                                    \
    X(hidden_size, K_INT, 1)                                   \
    X(num_layers, K_INT, 1)                                    \
    X(num_attention_heads, K_INT, 1)                           \
    X(ffn_hidden_size, K_INT, 1)                               \
    X(q_lora_rank, K_INT, 1)                                   \
    X(kv_lora_rank, K_INT, 1)                                  \
    X(qk_nope_head_dim, K_INT, 1)                              \
    X(qk_rope_head_dim, K_INT, 1)                              \
    X(v_head_dim, K_INT, 1)                                    \
    X(n_routed_experts, K_INT, 1)                              \
    X(zero_expert_num, K_INT, 1)                               \
    X(moe_topk, K_INT, 1)                                      \
    X(expert_ffn_hidden_size, K_INT, 1)                        \
    X(routed_scaling_factor, K_FLOAT, 1)                       \
    X(rms_norm_eps, K_FLOAT, 1)                                \
    X(rope_theta, K_FLOAT, 1)                                  \
    X(mla_scale_q_lora, K_BOOL, 0)                             \
    X(mla_scale_kv_lora, K_BOOL, 0)                            \
    X(max_position_embeddings, K_INT, 1)                       \
    X(num_nextn_predict_layers, K_INT, 0)                      \
    X(tie_word_embeddings, K_BOOL, 0)                          \
    X(bos_token_id, K_INT, 0)                                  \
    X(eos_token_id, K_INT, 0)

typedef struct {
    const char *name;
    key_type type;
    size_t offset;
    int required;
} key_info;

#define ROW(n, t, r) {#n, t, offsetof(lc_config, n), r},
static const key_info k_keys[] = {CONFIG_KEYS(ROW)};
#undef ROW
#define N_KEYS ((int)(sizeof k_keys / sizeof k_keys[0]))

static void set_defaults(lc_config *c) {
    memset(c, 0, sizeof *c);
    c->bos_token_id = 1;
    c->eos_token_id = 2;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
}

static lc_status set_key(lc_config *c, const key_info *k, const cJSON *v, const char *path) {
    char *field = (char *)c + k->offset;
    switch (k->type) {
    case K_INT: {
        double d = v->valuedouble;
        if (!cJSON_IsNumber(v) || d != floor(d) || fabs(d) > 9.0e15)
            return lc_error(LC_ERR_CONFIG, "%s: $.%s must be an integer", path, k->name);
        *(int64_t *)field = (int64_t)d;
        return LC_OK;
    }
    case K_FLOAT:
        if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
            return lc_error(LC_ERR_CONFIG, "%s: $.%s must be a finite number", path, k->name);
        *(double *)field = v->valuedouble;
        return LC_OK;
    case K_BOOL:
        if (!cJSON_IsBool(v)) return lc_error(LC_ERR_CONFIG, "%s: $.%s must be true or false", path, k->name);
        *(int *)field = cJSON_IsTrue(v);
        return LC_OK;
    }
    return LC_OK;
}

static lc_status parse_quant(lc_config *c, const cJSON *q, const char *path) {
    if (cJSON_IsNull(q)) return LC_OK;
    if (!cJSON_IsObject(q)) return lc_error(LC_ERR_CONFIG, "%s: $.quantization_config must be an object", path);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(q, "quant_method");
    if (!cJSON_IsString(m) || strcmp(m->valuestring, "fp8") != 0)
        return lc_error(LC_ERR_UNSUPPORTED, "%s: $.quantization_config.quant_method must be \"fp8\"", path);
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(q, "fmt");
    if (f && (!cJSON_IsString(f) || strcmp(f->valuestring, "e4m3") != 0))
        return lc_error(LC_ERR_UNSUPPORTED, "%s: $.quantization_config.fmt: only \"e4m3\" is supported", path);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(q, "weight_block_size");
    if (!cJSON_IsArray(b) || cJSON_GetArraySize(b) != 2)
        return lc_error(LC_ERR_CONFIG, "%s: $.quantization_config.weight_block_size must be [rows, cols]", path);
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetArrayItem(b, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 65536 ||
            v->valuedouble != floor(v->valuedouble))
            return lc_error(LC_ERR_CONFIG,
                            "%s: $.quantization_config.weight_block_size[%d] must be an integer in 1..65536", path, i);
        c->weight_block_size[i] = (int64_t)v->valuedouble;
    }
    c->fp8 = 1;
    return LC_OK;
}

lc_status lc_config_parse(lc_config *c, const char *json, size_t len, const char *path) {
    set_defaults(c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long off = at ? (long)(at - json) : 0;
        if (off < 0 || (size_t)off > len) off = 0;
        return lc_error(LC_ERR_CONFIG, "%s: invalid JSON near byte %ld", path, off);
    }
    lc_status s = LC_OK;
    if (!cJSON_IsObject(root)) s = lc_error(LC_ERR_CONFIG, "%s: top level is not a JSON object", path);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!s && mt && (!cJSON_IsString(mt) || strcmp(mt->valuestring, "longcat_flash") != 0))
        s = lc_error(LC_ERR_UNSUPPORTED, "%s: $.model_type is \"%s\"; longcat.c reads \"longcat_flash\"", path,
                     cJSON_IsString(mt) ? mt->valuestring : "?");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (!s && rs && !cJSON_IsNull(rs))
        s = lc_error(LC_ERR_UNSUPPORTED, "%s: $.rope_scaling is set; RoPE scaling is not supported yet", path);
    for (int i = 0; i < N_KEYS && !s; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, k_keys[i].name);
        if (!v || cJSON_IsNull(v)) {
            if (k_keys[i].required) s = lc_error(LC_ERR_CONFIG, "%s: missing required key $.%s", path, k_keys[i].name);
            continue;
        }
        s = set_key(c, &k_keys[i], v, path);
    }
    const cJSON *zt = cJSON_GetObjectItemCaseSensitive(root, "zero_expert_type");
    if (!s && zt && !cJSON_IsNull(zt) && (!cJSON_IsString(zt) || strcmp(zt->valuestring, "identity") != 0))
        s = lc_error(LC_ERR_UNSUPPORTED, "%s: $.zero_expert_type must be \"identity\"", path);
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!s && cJSON_IsString(td)) snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", td->valuestring);
    if (!s) {
        const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "quantization_config");
        if (q) s = parse_quant(c, q, path);
    }
    cJSON_Delete(root);
    if (!s) s = lc_config_validate(c, path);
    return s;
}

lc_status lc_config_load(lc_config *c, const char *path) {
    char *file = lc_is_dir(path) ? lc_path_join(path, "config.json") : lc_strdup(path);
    if (!file) return LC_ERR_NOMEM;
    char *text;
    size_t len;
    lc_status s = lc_read_file(file, &text, &len);
    if (!s) {
        s = lc_config_parse(c, text, len, file);
        free(text);
    }
    free(file);
    return s;
}

lc_status lc_config_validate(const lc_config *c, const char *path) {
    /* Sizes that must be positive, with a cap that keeps every product in 64 bits. */
    const struct { const char *name; int64_t v, lo, hi; } r[] = {
        {"vocab_size", c->vocab_size, 1, 1 << 24},
        {"hidden_size", c->hidden_size, 1, 1 << 20},
        {"num_layers", c->num_layers, 1, 4096},
        {"num_attention_heads", c->num_attention_heads, 1, 4096},
        {"ffn_hidden_size", c->ffn_hidden_size, 1, 1 << 22},
        {"q_lora_rank", c->q_lora_rank, 1, 1 << 20},
        {"kv_lora_rank", c->kv_lora_rank, 1, 1 << 20},
        {"qk_nope_head_dim", c->qk_nope_head_dim, 1, 1 << 16},
        {"qk_rope_head_dim", c->qk_rope_head_dim, 2, 1 << 16},
        {"v_head_dim", c->v_head_dim, 1, 1 << 16},
        {"n_routed_experts", c->n_routed_experts, 1, 1 << 16},
        {"zero_expert_num", c->zero_expert_num, 0, 1 << 16},
        {"moe_topk", c->moe_topk, 1, 1 << 16},
        {"expert_ffn_hidden_size", c->expert_ffn_hidden_size, 1, 1 << 22},
        {"max_position_embeddings", c->max_position_embeddings, 1, 1 << 30},
        {"num_nextn_predict_layers", c->num_nextn_predict_layers, 0, 1},
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return lc_error(LC_ERR_CONFIG, "%s: $.%s = %lld is outside %lld..%lld", path, r[i].name,
                            (long long)r[i].v, (long long)r[i].lo, (long long)r[i].hi);
    if (c->qk_rope_head_dim % 2)
        return lc_error(LC_ERR_CONFIG, "%s: $.qk_rope_head_dim = %lld must be even (RoPE rotates pairs)", path,
                        (long long)c->qk_rope_head_dim);
    if (c->moe_topk > c->n_routed_experts + c->zero_expert_num)
        return lc_error(LC_ERR_CONFIG, "%s: $.moe_topk = %lld exceeds n_routed_experts + zero_expert_num = %lld",
                        path, (long long)c->moe_topk, (long long)(c->n_routed_experts + c->zero_expert_num));
    if (!(c->rms_norm_eps > 0))
        return lc_error(LC_ERR_CONFIG, "%s: $.rms_norm_eps must be > 0", path);
    if (!(c->rope_theta > 0))
        return lc_error(LC_ERR_CONFIG, "%s: $.rope_theta must be > 0", path);
    if (!(c->routed_scaling_factor > 0))
        return lc_error(LC_ERR_CONFIG, "%s: $.routed_scaling_factor must be > 0", path);
    if (c->bos_token_id >= c->vocab_size || c->eos_token_id >= c->vocab_size)
        return lc_error(LC_ERR_CONFIG, "%s: $.bos_token_id / $.eos_token_id must be < vocab_size", path);
    return LC_OK;
}

lc_status lc_config_set(lc_config *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    if (!eq) return lc_error(LC_ERR_ARG, "--set %s: expected key=value", assignment);
    char key[128];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) return lc_error(LC_ERR_ARG, "--set %s: key too long", assignment);
    memcpy(key, assignment, kl);
    key[kl] = 0;
    cJSON *v = cJSON_Parse(eq + 1);
    if (!v) v = cJSON_CreateString(eq + 1); /* bare words are strings */
    lc_status s = LC_ERR_ARG;
    int found = 0;
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(k_keys[i].name, key) == 0) {
            found = 1;
            s = set_key(c, &k_keys[i], v, "--set");
        }
    if (!found && strcmp(key, "weight_block_size") == 0) {
        found = 1;
        long a, b;
        if (sscanf(eq + 1, "%ld,%ld", &a, &b) == 2 && a > 0 && b > 0) {
            c->weight_block_size[0] = a;
            c->weight_block_size[1] = b;
            s = LC_OK;
        } else s = lc_error(LC_ERR_ARG, "--set weight_block_size=R,C: two positive integers");
    }
    if (!found) s = lc_error(LC_ERR_ARG, "--set %s: unknown config key \"%s\"", assignment, key);
    cJSON_Delete(v);
    return s;
}

lc_status lc_config_save(const lc_config *c, const char *path) {
    cJSON *root = cJSON_CreateObject();
    cJSON *arch = cJSON_AddArrayToObject(root, "architectures");
    cJSON_AddItemToArray(arch, cJSON_CreateString("LongcatFlashForCausalLM"));
    cJSON_AddStringToObject(root, "model_type", "longcat_flash");
    for (int i = 0; i < N_KEYS; i++) {
        const char *field = (const char *)c + k_keys[i].offset;
        if (strcmp(k_keys[i].name, "zero_expert_num") == 0) {
            cJSON_AddNumberToObject(root, "zero_expert_num", (double)c->zero_expert_num);
            cJSON_AddStringToObject(root, "zero_expert_type", "identity");
            continue;
        }
        switch (k_keys[i].type) {
        case K_INT: cJSON_AddNumberToObject(root, k_keys[i].name, (double)*(const int64_t *)field); break;
        case K_FLOAT: cJSON_AddNumberToObject(root, k_keys[i].name, *(const double *)field); break;
        case K_BOOL: cJSON_AddBoolToObject(root, k_keys[i].name, *(const int *)field); break;
        }
    }
    cJSON_AddStringToObject(root, "hidden_act", "silu");
    cJSON_AddBoolToObject(root, "attention_bias", 0);
    cJSON_AddStringToObject(root, "torch_dtype", c->torch_dtype);
    if (c->fp8) {
        cJSON *q = cJSON_AddObjectToObject(root, "quantization_config");
        cJSON_AddStringToObject(q, "activation_scheme", "dynamic");
        cJSON_AddStringToObject(q, "fmt", "e4m3");
        cJSON_AddStringToObject(q, "quant_method", "fp8");
        cJSON *b = cJSON_AddArrayToObject(q, "weight_block_size");
        cJSON_AddItemToArray(b, cJSON_CreateNumber((double)c->weight_block_size[0]));
        cJSON_AddItemToArray(b, cJSON_CreateNumber((double)c->weight_block_size[1]));
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return lc_error(LC_ERR_NOMEM, "cannot render config.json");
    lc_status s = lc_write_text(path, text);
    free(text);
    return s;
}

typedef struct {
    const char *name;
    int64_t V, H, L, nh, F, qr, kvr, dn, dr, dv, N, Z, K, Fe, ctx, mtp;
    double theta;
    int scale;
} preset;

static const preset k_presets[] = {
    /* name         V       H     L   nh  F      qr    kvr  dn   dr  dv   N    Z    K   Fe    ctx     mtp theta scale */
    {"tiny",        512,    64,   2,  4,  96,    32,   24,  16,  8,  12,  6,   3,   3,  40,   4096,   1, 1e7, 1},
    {"small",       4096,   256,  4,  4,  512,   128,  64,  32,  16, 32,  16,  8,   4,  128,  1024,   1, 1e7, 1},
    {"medium",      32768,  1024, 8,  8,  2048,  384,  128, 64,  32, 64,  64,  32,  8,  512,  4096,   1, 1e7, 1},
    {"peer",        32768,  2048, 5,  16, 1024,  768,  512, 128, 64, 128, 64,  0,   8,  1024, 4096,   0, 1e7, 1},
    {"flash-chat",  131072, 6144, 28, 64, 12288, 1536, 512, 128, 64, 128, 512, 256, 12, 2048, 131072, 1, 1e7, 1},
};

const char *lc_config_preset_names(void) { return "tiny, small, medium, peer, flash-chat"; }

lc_status lc_config_preset(lc_config *c, const char *name) {
    for (size_t i = 0; i < sizeof k_presets / sizeof k_presets[0]; i++) {
        const preset *p = &k_presets[i];
        if (strcmp(p->name, name) != 0) continue;
        set_defaults(c);
        c->vocab_size = p->V;
        c->hidden_size = p->H;
        c->num_layers = p->L;
        c->num_attention_heads = p->nh;
        c->ffn_hidden_size = p->F;
        c->q_lora_rank = p->qr;
        c->kv_lora_rank = p->kvr;
        c->qk_nope_head_dim = p->dn;
        c->qk_rope_head_dim = p->dr;
        c->v_head_dim = p->dv;
        c->n_routed_experts = p->N;
        c->zero_expert_num = p->Z;
        c->moe_topk = p->K;
        c->expert_ffn_hidden_size = p->Fe;
        c->routed_scaling_factor = 6.0;
        c->rms_norm_eps = 1e-5;
        c->rope_theta = p->theta;
        c->mla_scale_q_lora = c->mla_scale_kv_lora = p->scale;
        c->max_position_embeddings = p->ctx;
        c->num_nextn_predict_layers = p->mtp;
        return LC_OK;
    }
    return lc_error(LC_ERR_ARG, "unknown preset \"%s\" (known: %s)", name, lc_config_preset_names());
}

void lc_config_count(const lc_config *c, lc_param_count *pc) {
    int64_t H = c->hidden_size, nh = c->num_attention_heads;
    int64_t mla = c->q_lora_rank * H + c->q_lora_rank + nh * (c->qk_nope_head_dim + c->qk_rope_head_dim) * c->q_lora_rank +
                  (c->kv_lora_rank + c->qk_rope_head_dim) * H + c->kv_lora_rank +
                  nh * (c->qk_nope_head_dim + c->v_head_dim) * c->kv_lora_rank + H * nh * c->v_head_dim;
    int64_t ffn = 3 * H * c->ffn_hidden_size;
    int64_t n_all = c->n_routed_experts + c->zero_expert_num;
    memset(pc, 0, sizeof *pc);
    pc->per_expert = 3 * H * c->expert_ffn_hidden_size;
    pc->embed = c->vocab_size * H;
    pc->lm_head = c->tie_word_embeddings ? 0 : c->vocab_size * H;
    pc->attention = c->num_layers * 2 * mla;
    pc->dense_ffn = c->num_layers * 2 * ffn;
    pc->router = c->num_layers * (n_all * H + n_all);
    pc->experts = c->num_layers * c->n_routed_experts * pc->per_expert;
    pc->norms = c->num_layers * 4 * H + H;
    pc->total = pc->embed + pc->lm_head + pc->attention + pc->dense_ffn + pc->router + pc->experts + pc->norms;
    if (c->num_nextn_predict_layers)
        pc->mtp = c->vocab_size * H + 2 * H + 2 * H * H + 2 * H + mla + ffn + H;
    pc->active_min = pc->total - pc->embed - pc->experts + (c->tie_word_embeddings ? pc->embed : 0);
    pc->active_max = pc->active_min + c->num_layers * LC_MIN(c->moe_topk, c->n_routed_experts) * pc->per_expert;
}
