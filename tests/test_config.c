/* test_config.c — config.json parsing and validation (each error names its JSON path) and
 * the parameter counts of the real LongCat-Flash-Chat config (report: 560B total,
 * 18.6B-31.3B active per token). */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* LongCat-Flash-Chat's config.json values (SPEC §1), with the extra keys the real file has. */
static const char *k_flash_chat =
    "{\"architectures\":[\"LongcatFlashForCausalLM\"],\"model_type\":\"longcat_flash\",\"vocab_size\":131072,"
    "\"hidden_size\":6144,\"num_layers\":28,\"num_attention_heads\":64,\"ffn_hidden_size\":12288,"
    "\"q_lora_rank\":1536,\"kv_lora_rank\":512,\"qk_nope_head_dim\":128,\"qk_rope_head_dim\":64,"
    "\"v_head_dim\":128,\"n_routed_experts\":512,\"zero_expert_num\":256,\"zero_expert_type\":\"identity\","
    "\"moe_topk\":12,\"expert_ffn_hidden_size\":2048,\"routed_scaling_factor\":6.0,\"rms_norm_eps\":1e-5,"
    "\"rope_theta\":10000000.0,\"mla_scale_q_lora\":true,\"mla_scale_kv_lora\":true,"
    "\"max_position_embeddings\":131072,\"num_nextn_predict_layers\":1,\"some_future_key\":[1,2]}";

static void test_flash_chat_counts(void) {
    lc_config c;
    CHECK_OK(lc_config_parse(&c, k_flash_chat, strlen(k_flash_chat), "flash.json"));
    lc_param_count pc;
    lc_config_count(&c, &pc);
    /* The report's 560B total and 18.6B..31.3B active are rounded; ours, counting every weight
     * but the input embedding lookup as active: 560.66B, 18.69B..31.38B. */
    CHECK(pc.total > 555e9 && pc.total < 566e9, "total %lld", (long long)pc.total);
    CHECK(pc.active_min > 18.5e9 && pc.active_min < 18.9e9, "active min %lld", (long long)pc.active_min);
    CHECK(pc.active_max > 31.1e9 && pc.active_max < 31.6e9, "active max %lld", (long long)pc.active_max);
}

/* Parses the flash-chat config with `key` replaced by `value` (NULL: removed); expects an
 * error whose message contains `want`. */
static void expect_error(const char *key, const char *value, const char *want) {
    char buf[4096], pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(k_flash_chat, pat);
    if (!p) {
        t_fail(__FILE__, __LINE__, "no key %s", key);
        return;
    }
    const char *end = p + strlen(pat);
    while (*end && *end != ',' && *end != '}') end++;
    if (value) snprintf(buf, sizeof buf, "%.*s%s%s%s", (int)(p - k_flash_chat), k_flash_chat, pat, value, end);
    else snprintf(buf, sizeof buf, "%.*s%s", (int)(p - k_flash_chat), k_flash_chat, *end == ',' ? end + 1 : end);
    lc_config c;
    lc_status s = lc_config_parse(&c, buf, strlen(buf), "config.json");
    CHECK(s != LC_OK, "%s=%s should fail", key, value ? value : "(removed)");
    CHECK(strstr(lc_last_error(), want) != NULL, "message \"%s\" should contain \"%s\"", lc_last_error(), want);
}

static void test_config_errors(void) {
    expect_error("moe_topk", NULL, "missing required key $.moe_topk");
    expect_error("moe_topk", "769", "$.moe_topk = 769 exceeds");
    expect_error("qk_rope_head_dim", "63", "$.qk_rope_head_dim = 63 must be even");
    expect_error("hidden_size", "61.5", "$.hidden_size must be an integer");
    expect_error("hidden_size", "\"big\"", "$.hidden_size must be an integer");
    expect_error("num_layers", "0", "$.num_layers = 0 is outside");
    expect_error("rms_norm_eps", "-1", "$.rms_norm_eps must be > 0");
    expect_error("mla_scale_q_lora", "1", "$.mla_scale_q_lora must be true or false");
    expect_error("zero_expert_type", "\"mlp\"", "$.zero_expert_type");
    expect_error("model_type", "\"llama\"", "$.model_type");
    lc_config c;
    CHECK(lc_config_parse(&c, "{\"vocab_size\":", 14, "cut.json") == LC_ERR_CONFIG, "truncated JSON");
    CHECK(strstr(lc_last_error(), "invalid JSON") != NULL, "%s", lc_last_error());
    CHECK(lc_config_parse(&c, "[1]", 3, "arr.json") == LC_ERR_CONFIG, "non-object");
}

static void test_config_defaults_and_roundtrip(void) {
    expect_error("vocab_size", NULL, "$.vocab_size");
    lc_config a, b;
    CHECK_OK(lc_config_preset(&a, "tiny"));
    CHECK_OK(lc_config_set(&a, "zero_expert_num=0"));
    CHECK_OK(lc_config_set(&a, "mla_scale_q_lora=false"));
    CHECK(lc_config_set(&a, "no_such_key=3") == LC_ERR_ARG, "unknown --set key");
    CHECK(lc_config_set(&a, "hidden_size=abc") != LC_OK, "non-integer --set");
    const char *dir = t_tmpdir("cfg");
    char *path = lc_path_join(dir, "config.json");
    CHECK_OK(lc_config_save(&a, path));
    CHECK_OK(lc_config_load(&b, dir));
    CHECK(b.zero_expert_num == 0 && b.mla_scale_q_lora == 0 && b.mla_scale_kv_lora == 1 && b.hidden_size == a.hidden_size,
          "round trip");
    /* missing mla_scale_* means false */
    const char *minimal = "{\"vocab_size\":10,\"hidden_size\":8,\"num_layers\":1,\"num_attention_heads\":1,"
                          "\"ffn_hidden_size\":8,\"q_lora_rank\":4,\"kv_lora_rank\":4,\"qk_nope_head_dim\":2,"
                          "\"qk_rope_head_dim\":2,\"v_head_dim\":2,\"n_routed_experts\":2,\"zero_expert_num\":1,"
                          "\"moe_topk\":2,\"expert_ffn_hidden_size\":4,\"routed_scaling_factor\":1,"
                          "\"rms_norm_eps\":1e-6,\"rope_theta\":10000,\"max_position_embeddings\":64}";
    CHECK_OK(lc_config_parse(&b, minimal, strlen(minimal), "min.json"));
    CHECK(b.mla_scale_q_lora == 0 && b.num_nextn_predict_layers == 0 && b.fp8 == 0, "defaults");
    free(path);
}

void suite_config(void) {
    RUN(test_flash_chat_counts);
    RUN(test_config_errors);
    RUN(test_config_defaults_and_roundtrip);
}
