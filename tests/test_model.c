/* test_model.c — the engine on checkpoints it writes itself (`init`), in shapes unlike the
 * golden ones: prefill = decode = chunked prefill, absorbed = expanded MLA, MTP prefill =
 * MTP decode, thread-count determinism, and the MoE invariants (identity experts are the
 * identity, the correction bias only changes the choice, expert-major = token-major). */
#include "test.h"
#include "../src/model/sublayers.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Odd sizes everywhere; FP8 blocks of 16 leave partial blocks in every projection. */
static const char *k_sets[] = {
    "vocab_size=300", "hidden_size=48", "num_layers=3", "num_attention_heads=3", "ffn_hidden_size=72",
    "q_lora_rank=20", "kv_lora_rank=18", "qk_nope_head_dim=10", "qk_rope_head_dim=6", "v_head_dim=14",
    "n_routed_experts=5", "zero_expert_num=4", "moe_topk=4", "expert_ffn_hidden_size=24",
    "routed_scaling_factor=2.5", "rope_theta=10000", "weight_block_size=16,16",
};

static lc_model *make_model(const char *name, lc_dtype dt, uint64_t shard_bytes) {
    lc_config c;
    lc_config_preset(&c, "tiny");
    for (size_t i = 0; i < sizeof k_sets / sizeof k_sets[0]; i++) CHECK_OK(lc_config_set(&c, k_sets[i]));
    lc_init_options o = {.seed = 42, .dtype = dt, .init_std = 0.15f, .max_shard_bytes = shard_bytes};
    const char *dir = t_tmpdir(name);
    CHECK_OK(lc_model_init_write(&c, &o, dir));
    lc_model *m = NULL;
    CHECK_OK(lc_model_load(&m, dir));
    return m;
}

enum { T = 11 };
static const int32_t k_ids[T] = {1, 299, 17, 42, 5, 5, 123, 250, 0, 77, 2};

/* Runs the model on k_ids in `chunks` pieces (T means one token per call). */
static void run(lc_model *m, lc_attn_mode mode, int chunk, float *logits, float *hidden, int32_t *topk, float *mtp) {
    const lc_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, K = c->moe_topk, L = c->num_layers;
    lc_session *s;
    CHECK_OK(lc_session_new(&s, m, 64));
    if (!s) return;
    s->attn_mode = mode;
    float *normed = malloc(T * H * sizeof *normed), *h = malloc((size_t)(L * T * H) * 4);
    int32_t *k = malloc((size_t)(L * T * K) * 4);
    for (int64_t t0 = 0; t0 < T; t0 += chunk) {
        int64_t n = LC_MIN(chunk, T - t0);
        lc_forward_out o = {.logits = logits + t0 * V, .hidden = h, .topk_idx = k, .normed = normed + t0 * H};
        CHECK_OK(lc_forward(s, k_ids + t0, n, &o));
        for (int64_t l = 0; l < L; l++) {
            if (hidden) memcpy(hidden + (l * T + t0) * H, h + l * n * H, (size_t)(n * H) * 4);
            if (topk) memcpy(topk + (l * T + t0) * K, k + l * n * K, (size_t)(n * K) * 4);
        }
    }
    /* MTP in the same chunking: rows 0..T-2 */
    for (int64_t t0 = 0; mtp && t0 < T - 1; t0 += chunk) {
        int64_t n = LC_MIN(chunk, T - 1 - t0);
        CHECK_OK(lc_mtp_forward(s, normed + t0 * H, k_ids + t0 + 1, n, mtp + t0 * V));
    }
    free(normed);
    free(h);
    free(k);
    lc_session_free(s);
}

static void check_paths_agree(lc_model *m, const char *what) {
    if (!m) return;
    const lc_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, K = c->moe_topk, L = c->num_layers;
    float *l0 = malloc(T * V * 4), *h0 = malloc((size_t)(L * T * H) * 4), *m0 = malloc(T * V * 4);
    float *l1 = malloc(T * V * 4), *h1 = malloc((size_t)(L * T * H) * 4), *m1 = malloc(T * V * 4);
    int32_t *k0 = malloc((size_t)(L * T * K) * 4), *k1 = malloc((size_t)(L * T * K) * 4);
    run(m, LC_ATTN_EXPANDED, T, l0, h0, k0, m0); /* reference: one prefill, expanded */
    struct { lc_attn_mode mode; int chunk; const char *name; } v[] = {
        {LC_ATTN_AUTO, 1, "decode (absorbed)"},     {LC_ATTN_EXPANDED, 1, "decode (expanded)"},
        {LC_ATTN_AUTO, 4, "chunked prefill 4"},     {LC_ATTN_ABSORBED, T, "prefill (absorbed)"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        run(m, v[i].mode, v[i].chunk, l1, h1, k1, m1);
        /* same math, different summation order: float32 rounding only */
        double el = t_rel_err(l1, l0, T * V), eh = t_rel_err(h1, h0, L * T * H), em = t_rel_err(m1, m0, (T - 1) * V);
        CHECK(el < 1e-5 && eh < 1e-5 && em < 1e-5, "%s %s: logits %.2e hidden %.2e mtp %.2e", what, v[i].name, el, eh, em);
        CHECK(!memcmp(k0, k1, (size_t)(L * T * K) * 4), "%s %s: router choices differ", what, v[i].name);
    }
    /* Determinism: 1 thread and 2 threads give the same bits. */
#ifdef _OPENMP
    int nt = omp_get_max_threads();
    omp_set_num_threads(1);
    run(m, LC_ATTN_AUTO, T, l1, NULL, NULL, NULL);
    omp_set_num_threads(2);
    run(m, LC_ATTN_AUTO, T, m1, NULL, NULL, NULL);
    omp_set_num_threads(nt);
    CHECK(!memcmp(l1, m1, T * V * 4), "%s: logits depend on the thread count", what);
#endif
    free(l0); free(h0); free(m0); free(l1); free(h1); free(m1); free(k0); free(k1);
}

static void test_random_bf16_sharded(void) {
    lc_model *m = make_model("rand_bf16", LC_DT_BF16, 64 << 10);
    CHECK(m && m->st.n_files > 1, "sharded into several files");
    check_paths_agree(m, "bf16");
    lc_model_free(m);
}

/* The /proc/self/maps line of the mapping that holds p ("" if none). */
static void maps_line(const void *p, char *line, size_t cap) {
    FILE *f = fopen("/proc/self/maps", "r");
    line[0] = 0;
    if (!f) return;
    while (fgets(line, (int)cap, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi) break;
        line[0] = 0;
    }
    fclose(f);
}

/* --no-mmap: the resident copy (anonymous memory at the mapping's addresses) gives the mapped
 * model's logits bit for bit, on a sharded checkpoint, and a second call changes nothing. */
static void test_resident_copy(void) {
    lc_model *m = make_model("resident", LC_DT_BF16, 64 << 10);
    if (!m) return;
    const int64_t V = m->cfg.vocab_size;
    float *l0 = malloc(T * V * 4), *l1 = malloc(T * V * 4);
    const uint8_t *q_a = m->layers[1].self_attn[0].q_a_proj.data;
    char line[512];
    maps_line(q_a, line, sizeof line);
    CHECK(strstr(line, ".safetensors") != NULL, "mapped from the file first: %s", line);
    run(m, LC_ATTN_AUTO, T, l0, NULL, NULL, NULL);
    CHECK_OK(lc_model_make_resident(m));
    CHECK_OK(lc_model_make_resident(m));
    for (int f = 0; f < m->st.n_files; f++) CHECK(m->st.files[f].resident, "file %d resident", f);
    CHECK(m->layers[1].self_attn[0].q_a_proj.data == q_a, "weights stay at their addresses");
    maps_line(q_a, line, sizeof line);
    CHECK(line[0] && !strstr(line, ".safetensors"), "anonymous memory now: %s", line);
    run(m, LC_ATTN_AUTO, T, l1, NULL, NULL, NULL);
    CHECK(!memcmp(l0, l1, T * V * 4), "resident logits differ from mapped ones");
    free(l0);
    free(l1);
    lc_model_free(m);
}

static void test_random_fp8(void) {
    lc_model *m = make_model("rand_fp8", LC_DT_F8_E4M3, 0);
    CHECK(m && m->layers[0].self_attn[0].q_a_proj.dtype == LC_DT_F8_E4M3, "projections stored FP8");
    check_paths_agree(m, "fp8");
    lc_model_free(m);
}

static void test_session_limits(void) {
    lc_model *m = make_model("rand_f32", LC_DT_F32, 0);
    if (!m) return;
    lc_session *s;
    CHECK_OK(lc_session_new(&s, m, 4));
    int32_t bad = 300;
    CHECK(lc_forward(s, &bad, 1, NULL) == LC_ERR_ARG, "token past the vocabulary");
    CHECK(strstr(lc_last_error(), "outside the vocabulary"), "%s", lc_last_error());
    CHECK(lc_forward(s, k_ids, 5, NULL) == LC_ERR_ARG, "context overflow");
    CHECK_OK(lc_forward(s, k_ids, 4, NULL));
    CHECK(s->pos == 4, "position advanced");
    lc_session_reset(s);
    CHECK(s->pos == 0, "reset");
    lc_session_free(s);
    lc_model_free(m);
}

/* The MoE invariants, at the function level on the random model's layer 0. */
static void test_moe_invariants(void) {
    lc_model *m = make_model("rand_moe", LC_DT_F32, 0);
    if (!m) return;
    lc_config c = m->cfg;
    const int64_t H = c.hidden_size, K = c.moe_topk, N = c.n_routed_experts, E = N + c.zero_expert_num;
    lc_layer_weights w = m->layers[0];
    enum { NT = 6 };
    float x[NT * 48], out[NT * 48], ref[NT * 48], tw[NT * 4], tw2[NT * 4];
    int32_t idx[NT * 4], idx2[NT * 4];
    lc_rng r;
    lc_rng_seed(&r, 3);
    for (int i = 0; i < NT * H; i++) x[i] = lc_rng_normal(&r);

    /* 1. Only identity experts chosen: moe(x) = (sum of weights) * x, and no FFN slot used. */
    for (int t = 0; t < NT; t++)
        for (int k = 0; k < K; k++) {
            idx[t * K + k] = (int32_t)(N + k);
            tw[t * K + k] = 0.1f * (float)(k + 1) + 0.01f * (float)t;
        }
    int64_t used = -1;
    CHECK_OK(moe_forward(out, x, idx, tw, &w, &c, NT, &used, NULL));
    for (int t = 0; t < NT; t++) {
        float sw = 0;
        for (int k = 0; k < K; k++) sw += tw[t * K + k];
        for (int i = 0; i < H; i++) ref[t * H + i] = sw * x[t * H + i];
    }
    CHECK(t_rel_err(out, ref, NT * H) < 1e-6 && used == 0, "identity experts: err %.2e, ffn slots %lld",
          t_rel_err(out, ref, NT * H), (long long)used);

    /* 2. The correction bias changes which experts are chosen, never their weights. */
    float *bias = calloc((size_t)E, sizeof *bias);
    w.e_score_correction_bias = bias;
    CHECK_OK(router_forward(idx, tw, x, &w, &c, NT));
    for (int64_t e = 0; e < E; e++) bias[e] = 0.7f; /* a constant shift changes nothing */
    CHECK_OK(router_forward(idx2, tw2, x, &w, &c, NT));
    CHECK(!memcmp(idx, idx2, sizeof idx) && !memcmp(tw, tw2, sizeof tw), "constant bias changes routing");
    for (int64_t e = 0; e < E; e++) bias[e] = e >= E - K ? 10.0f : 0.0f; /* force the last K experts */
    CHECK_OK(router_forward(idx2, tw2, x, &w, &c, NT));
    float *s = malloc((size_t)(NT * E) * sizeof *s);
    lc_matmul(s, x, &w.router_classifier, NT);
    for (int t = 0; t < NT; t++) {
        lc_softmax(s + t * E, E);
        for (int k = 0; k < K; k++) {
            CHECK(idx2[t * K + k] == E - K + k, "bias forces expert %lld", (long long)(E - K + k));
            float want = s[t * E + idx2[t * K + k]] * (float)c.routed_scaling_factor;
            CHECK(fabsf(tw2[t * K + k] - want) <= 1e-6f * fabsf(want), "weight = unbiased softmax x scale");
        }
    }
    /* 2b. Ties (+-inf biases), NaNs (a NaN bias), and NaNs needed to fill the K slots: the
     * choice of repeated selection — the highest s + bias not yet taken, ties to the lower id,
     * a NaN never over a number. */
    for (int pass = 0; pass < 4; pass++) {
        for (int64_t e = 0; e < E; e++) {
            const int64_t k = (e * 7 + pass) % 5;
            bias[e] = k == 0 ? INFINITY : k == 1 ? NAN : k == 2 ? -INFINITY : 0.1f * (float)(e % 3);
            if (pass == 2) bias[e] = e % (E / 2) == 1 ? 0.0f : NAN; /* two numbers: NaNs fill the rest */
            if (pass == 3) bias[e] = e == 2 ? NAN : INFINITY;   /* more ties than slots: the lowest ids */
        }
        CHECK_OK(router_forward(idx2, tw2, x, &w, &c, NT));
        lc_matmul(s, x, &w.router_classifier, NT);
        for (int t = 0; t < NT; t++) {
            float *st = s + t * E;
            unsigned char taken[256] = {0};
            int32_t want[16];
            lc_softmax(st, E);
            for (int k = 0; k < K; k++) {
                int64_t best = -1;
                float bv = 0;
                for (int64_t e = 0; e < E; e++) {
                    const float v = st[e] + bias[e];
                    if (!taken[e] && (best < 0 || v > bv || (isnan(bv) && !isnan(v)))) {
                        best = e;
                        bv = v;
                    }
                }
                if (best >= 0) taken[best] = 1;
            }
            for (int64_t e = 0, k = 0; e < E; e++)
                if (taken[e]) want[k++] = (int32_t)e; /* ascending ids, as the router gives them */
            CHECK(!memcmp(idx2 + t * K, want, (size_t)K * sizeof *want), "top-k with ties/NaNs (pass %d, token %d)",
                  pass, t);
        }
    }
    free(s);
    free(bias);

    /* 3. Expert-major execution equals the token-by-token definition. */
    w.e_score_correction_bias = m->layers[0].e_score_correction_bias;
    CHECK_OK(router_forward(idx, tw, x, &w, &c, NT));
    CHECK_OK(moe_forward(out, x, idx, tw, &w, &c, NT, &used, NULL));
    int64_t used_ref = 0;
    memset(ref, 0, sizeof ref);
    float y[48];
    for (int t = 0; t < NT; t++)
        for (int k = 0; k < K; k++) {
            int32_t e = idx[t * K + k];
            if (e < N) {
                CHECK_OK(ffn_forward(y, x + t * H, &w.experts[e], 1, NULL));
                used_ref++;
            } else memcpy(y, x + t * H, (size_t)H * 4);
            lc_axpy(ref + t * H, tw[t * K + k], y, H);
        }
    CHECK(t_rel_err(out, ref, NT * H) < 1e-6 && used == used_ref, "expert-major MoE: err %.2e, used %lld vs %lld",
          t_rel_err(out, ref, NT * H), (long long)used, (long long)used_ref);

    /* 4. MoE and the dense FFN sharing their phases (decode: 1-3 tokens; a prompt: all 6) give
     * the bits of moe_forward and ffn_forward one after the other. */
    float dense[NT * 48], dense_ref[NT * 48];
    const int64_t sizes[4] = {1, 2, 3, NT};
    for (int i = 0; i < 4; i++) {
        const int64_t n = sizes[i];
        int64_t used2 = -1;
        CHECK_OK(moe_forward(ref, x, idx, tw, &w, &c, n, &used, NULL));
        CHECK_OK(ffn_forward(dense_ref, x, &w.mlps[0], n, NULL));
        CHECK_OK(moe_dense_forward(out, dense, x, idx, tw, &w, &c, n, &used2, NULL, &w.mlps[0]));
        CHECK(!memcmp(out, ref, (size_t)(n * H) * sizeof *out) && !memcmp(dense, dense_ref, (size_t)(n * H) * sizeof *dense) &&
                  used2 == used,
              "MoE + dense FFN together, %lld tokens: the same bits as apart", (long long)n);
    }
    lc_model_free(m);
}

/* lc_forward_batch: sequences of different lengths and positions in one call give what each
 * gives alone; a batch of single-token decode steps is bit-identical to one-by-one decoding
 * (the server's greedy outputs must not depend on who else is being served). */
static void test_forward_batch(void) {
    lc_model *m = make_model("rand_batch", LC_DT_BF16, 0);
    if (!m) return;
    const int64_t V = m->cfg.vocab_size;
    enum { NS = 3 };
    static const int64_t plen[NS] = {5, 1, 9};
    lc_session *a[NS], *b[NS];
    int32_t toks[T + T];
    int64_t n = 0, ntok[NS];
    for (int i = 0; i < NS; i++) {
        CHECK_OK(lc_session_new(&a[i], m, 32));
        CHECK_OK(lc_session_new(&b[i], m, 32));
        if (!a[i] || !b[i]) return;
        ntok[i] = plen[i];
        memcpy(toks + n, k_ids + i, (size_t)plen[i] * sizeof *toks);
        n += plen[i];
    }
    float *ref = malloc((size_t)(NS * V) * sizeof *ref), *got = malloc((size_t)(NS * V) * sizeof *got);
    /* prompts: one batched call vs one call each */
    lc_forward_out o = {.logits = got, .logits_last_only = 1};
    CHECK_OK(lc_forward_batch(a, toks, ntok, NS, &o));
    for (int64_t i = 0, off = 0; i < NS; off += plen[i], i++) {
        lc_forward_out oi = {.logits = ref + i * V, .logits_last_only = 1};
        CHECK_OK(lc_forward(b[i], toks + off, plen[i], &oi));
        CHECK(a[i]->pos == plen[i] && b[i]->pos == plen[i], "positions advanced");
    }
    double e = t_rel_err(got, ref, NS * V);
    CHECK(e < 1e-5, "batched prompts differ from single ones: %.3g", e);
    /* decode steps: bitwise equal (prompts prefilled one by one, as the server does: a GEMM's
     * rounding depends on the rows around it, so batched prompts match only to a tolerance) */
    for (int64_t i = 0, off = 0; i < NS; off += plen[i], i++) {
        lc_session_reset(a[i]);
        CHECK_OK(lc_forward(a[i], toks + off, plen[i], NULL));
    }
    for (int step = 0; step < 4; step++) {
        int32_t next[NS];
        int64_t ones[NS];
        for (int i = 0; i < NS; i++) {
            next[i] = (int32_t)((17 * step + 31 * i + 3) % V);
            ones[i] = 1;
            lc_forward_out oi = {.logits = ref + i * V, .logits_last_only = 1};
            CHECK_OK(lc_forward(b[i], &next[i], 1, &oi));
        }
        CHECK_OK(lc_forward_batch(a, next, ones, NS, &o));
        CHECK(!memcmp(got, ref, (size_t)(NS * V) * sizeof *got), "step %d: batched decode not bit-identical (%.3g)",
              step, t_rel_err(got, ref, NS * V));
    }
    /* bad batches */
    lc_session *dup[2] = {a[0], a[0]};
    int64_t two[2] = {1, 1};
    CHECK(lc_forward_batch(dup, toks, two, 2, NULL) == LC_ERR_ARG, "same session twice");
    int64_t zero[2] = {1, 0};
    CHECK(lc_forward_batch(a, toks, zero, 2, NULL) == LC_ERR_ARG, "empty sequence");
    for (int i = 0; i < NS; i++) {
        lc_session_free(a[i]);
        lc_session_free(b[i]);
    }
    free(ref);
    free(got);
    lc_model_free(m);
}

/* ffn_rows: two FFNs of decode size (large enough for its one-region path) give the bits of the
 * step-by-step products, with 1 and with 2 threads. */
static void test_ffn_rows(void) {
    enum { H = 256, F = 192, NF = 2 };
    const int64_t toks[NF] = {1, 3};
    lc_rng r;
    lc_rng_seed(&r, 11);
    uint16_t *wd = malloc((size_t)(NF * 3 * F * H) * sizeof *wd);
    float *x = malloc((size_t)(4 * H) * sizeof *x), *buf = malloc((size_t)(2 * 4 * (3 * F + H)) * sizeof *buf);
    if (!wd || !x || !buf) return;
    for (int64_t i = 0; i < NF * 3 * F * H; i++) {
        float v = 0.05f * lc_rng_normal(&r);
        uint32_t b;
        memcpy(&b, &v, 4);
        wd[i] = (uint16_t)(b >> 16);
    }
    for (int64_t i = 0; i < 4 * H; i++) x[i] = lc_rng_normal(&r);
    lc_mat m[NF][3]; /* gate [F, H], up [F, H], down [H, F] */
    for (int f = 0; f < NF; f++)
        for (int k = 0; k < 3; k++)
            m[f][k] = (lc_mat){.data = (const uint8_t *)(wd + (f * 3 + k) * F * H), .dtype = LC_DT_BF16,
                               .rows = k < 2 ? F : H, .cols = k < 2 ? H : F};
    for (int threads = 1; threads <= 2; threads++) {
#ifdef _OPENMP
        int nt = omp_get_max_threads();
        omp_set_num_threads(threads);
#endif
        float *out[2];
        for (int way = 0; way < 2; way++) { /* 0: ffn_rows, 1: step by step */
            float *g = buf + way * 4 * (3 * F + H), *u = g + 4 * F, *a = u + 4 * F, *o = a + 4 * F;
            out[way] = o;
            lc_matmul_job gu[2 * NF], dn[NF];
            for (int f = 0, t0 = 0; f < NF; t0 += (int)toks[f], f++) {
                gu[2 * f] = (lc_matmul_job){g + t0 * F, x + t0 * H, &m[f][0], toks[f]};
                gu[2 * f + 1] = (lc_matmul_job){u + t0 * F, x + t0 * H, &m[f][1], toks[f]};
                dn[f] = (lc_matmul_job){o + t0 * H, a + t0 * F, &m[f][2], toks[f]};
            }
            if (way == 0) CHECK_OK(ffn_rows(gu, 2 * NF, a, g, u, 4 * F, dn, NF));
            else {
                for (int j = 0; j < 2 * NF; j++) lc_matmul(gu[j].out, gu[j].x, gu[j].w, gu[j].T);
                lc_k.swiglu(a, g, u, 4 * F);
                for (int j = 0; j < NF; j++) lc_matmul(dn[j].out, dn[j].x, dn[j].w, dn[j].T);
            }
        }
        CHECK(!memcmp(out[0], out[1], (size_t)(4 * H) * sizeof(float)), "%d threads: ffn_rows differs from step by step",
              threads);
#ifdef _OPENMP
        omp_set_num_threads(nt);
#endif
    }
    free(wd);
    free(x);
    free(buf);
}

void suite_model(void) {
    RUN(test_ffn_rows);
    RUN(test_random_bf16_sharded);
    RUN(test_random_fp8);
    RUN(test_resident_copy);
    RUN(test_session_limits);
    RUN(test_moe_invariants);
    RUN(test_forward_batch);
}
