/* cmd_info.c — `longcat info`: what a checkpoint (or a lone config.json) is: shape, expert
 * layout, total and per-token active parameters, dtypes, memory. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *human(double v, char *buf, size_t n) {
    const char *unit[] = {"", "K", "M", "B", "T"};
    int k = 0;
    while (v >= 1000 && k < 4) {
        v /= 1000;
        k++;
    }
    snprintf(buf, n, k ? "%.2f%s" : "%.0f%s", v, unit[k]);
    return buf;
}

static const char *bytes(double v, char *buf, size_t n) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int k = 0;
    while (v >= 1024 && k < 4) {
        v /= 1024;
        k++;
    }
    snprintf(buf, n, k ? "%.2f %s" : "%.0f %s", v, unit[k]);
    return buf;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: longcat info MODEL_DIR|config.json\n"
                   "Prints the config, parameter counts (total; active per token, min..max) and, when weights\n"
                   "are present, validates them and lists dtypes and sizes.\n");
            return 0;
        }
        if (argv[i][0] == '-') {
            fprintf(stderr, "longcat info: unknown option %s\n", argv[i]);
            return 1;
        }
        path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: longcat info MODEL_DIR|config.json\n");
        return 1;
    }
    lc_config c;
    lc_status s = lc_config_load(&c, path);
    if (s) return cli_fail(s);
    lc_param_count pc;
    lc_config_count(&c, &pc);
    char a[32], b[32], d[32];
    printf("config            %s\n", path);
    printf("layers            %lld (each: 2 MLA attention + 2 dense FFN + 1 shortcut MoE)\n", (long long)c.num_layers);
    printf("hidden            %lld, vocab %lld, context %lld\n", (long long)c.hidden_size, (long long)c.vocab_size,
           (long long)c.max_position_embeddings);
    printf("attention (MLA)   %lld heads, q_lora %lld, kv_lora %lld, head dims nope/rope/v %lld/%lld/%lld%s\n",
           (long long)c.num_attention_heads, (long long)c.q_lora_rank, (long long)c.kv_lora_rank,
           (long long)c.qk_nope_head_dim, (long long)c.qk_rope_head_dim, (long long)c.v_head_dim,
           c.mla_scale_q_lora || c.mla_scale_kv_lora ? ", LoRA scales on" : "");
    printf("dense FFN         SwiGLU %lld\n", (long long)c.ffn_hidden_size);
    printf("experts           %lld FFN (SwiGLU %lld) + %lld zero-computation (identity), top-%lld, scale %g\n",
           (long long)c.n_routed_experts, (long long)c.expert_ffn_hidden_size, (long long)c.zero_expert_num,
           (long long)c.moe_topk, c.routed_scaling_factor);
    printf("FFN experts/token %lld..%lld (identity experts take the rest of the %lld slots)\n",
           (long long)(c.moe_topk > c.zero_expert_num ? c.moe_topk - c.zero_expert_num : 0),
           (long long)LC_MIN(c.moe_topk, c.n_routed_experts), (long long)c.moe_topk);
    printf("MTP head          %s\n", c.num_nextn_predict_layers ? "yes (1 layer)" : "no");
    printf("parameters        total %s (%lld) incl. embeddings and lm_head, without MTP\n", human((double)pc.total, a, sizeof a),
           (long long)pc.total);
    printf("  active/token    %s .. %s: every non-expert weight plus 0..%lld FFN experts;\n"
           "                  the input embedding table (a lookup, %s) is not counted, lm_head is\n",
           human((double)pc.active_min, a, sizeof a), human((double)pc.active_max, b, sizeof b),
           (long long)LC_MIN(c.moe_topk, c.n_routed_experts), human((double)pc.embed, d, sizeof d));
    printf("  by part         attention %s, dense FFN %s, experts %s (%s each), router %s, embed %s, lm_head %s\n",
           human((double)pc.attention, a, sizeof a), human((double)pc.dense_ffn, b, sizeof b),
           human((double)pc.experts, d, sizeof d), human((double)pc.per_expert, (char[32]){0}, 32),
           human((double)pc.router, (char[32]){0}, 32), human((double)pc.embed, (char[32]){0}, 32),
           human((double)pc.lm_head, (char[32]){0}, 32));
    if (pc.mtp) printf("  MTP head        %s more\n", human((double)pc.mtp, a, sizeof a));
    double kv_tok = (double)(2 * c.num_layers * (c.kv_lora_rank + c.qk_rope_head_dim)) * 4;
    printf("KV cache          %s per token (f32 latent %lld + rope key %lld per attention sublayer)\n",
           bytes(kv_tok, a, sizeof a), (long long)c.kv_lora_rank, (long long)c.qk_rope_head_dim);
    if (c.fp8) printf("quantization      fp8 e4m3, %lldx%lld blocks\n", (long long)c.weight_block_size[0], (long long)c.weight_block_size[1]);

    if (!lc_is_dir(path)) return 0;
    char *index = lc_path_join(path, "model.safetensors.index.json"), *single = lc_path_join(path, "model.safetensors");
    int has_weights = (index && lc_file_exists(index)) || (single && lc_file_exists(single));
    lc_free(index);
    lc_free(single);
    if (!has_weights) {
        printf("weights           none (config only)\n");
        return 0;
    }
    lc_model *m;
    s = lc_model_load(&m, path);
    if (s) return cli_fail(s);
    uint64_t per_dtype[LC_DT_COUNT] = {0}, n_dtype[LC_DT_COUNT] = {0}, total = 0;
    for (int i = 0; i < m->st.n_tensors; i++) {
        const lc_st_tensor *t = &m->st.tensors[i];
        per_dtype[t->dtype] += t->end - t->begin;
        n_dtype[t->dtype]++;
        total += t->end - t->begin;
    }
    printf("weights           %d tensors in %d file%s, %s, memory-mapped (valid)\n", m->st.n_tensors, m->st.n_files,
           m->st.n_files == 1 ? "" : "s", bytes((double)total, a, sizeof a));
    for (int t = 0; t < LC_DT_COUNT; t++)
        if (n_dtype[t]) printf("  %-8s        %llu tensors, %s\n", lc_dtype_name((lc_dtype)t), (unsigned long long)n_dtype[t],
                               bytes((double)per_dtype[t], a, sizeof a));
    lc_model_free(m);
    return 0;
}
