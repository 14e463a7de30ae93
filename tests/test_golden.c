/* test_golden.c — every case in ../shared/golden against the independent reference:
 * logits, hidden.L, router.L.topk_idx (exact) and mtp_logits, for prefill (expanded MLA),
 * decode (absorbed MLA, one token at a time) and decode with expanded MLA.
 * Tolerance 1e-4 x max|golden| (golden/README.md); we measure ~1e-6, float32 rounding. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define GOLDEN_TOL 1e-4

typedef struct {
    float *logits, *hidden, *normed, *mtp;
    int32_t *topk;
} outputs;

static void run_case(const char *dir, lc_attn_mode mode, int one_by_one) {
    char *gpath = lc_path_join(dir, "golden.safetensors");
    lc_st g;
    lc_model *m = NULL;
    lc_session *s = NULL;
    if (lc_st_open(&g, gpath)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        free(gpath);
        return;
    }
    CHECK_OK(lc_model_load(&m, dir));
    if (!m) goto done;
    const lc_config *c = &m->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, K = c->moe_topk, L = c->num_layers;
    int64_t T;
    float *ids_f = t_read_f32(&g, "input_ids", &T);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)ids_f[t];
    CHECK_OK(lc_session_new(&s, m, T));
    s->attn_mode = mode;
    outputs o = {malloc((size_t)(T * V) * 4), malloc((size_t)(L * T * H) * 4), malloc((size_t)(T * H) * 4),
                 malloc((size_t)(T * V) * 4), malloc((size_t)(L * T * K) * 4)};
    float *h1 = malloc((size_t)(L * H) * 4);
    int32_t *k1 = malloc((size_t)(L * K) * 4);
    if (!one_by_one) {
        lc_forward_out fo = {.logits = o.logits, .hidden = o.hidden, .topk_idx = o.topk, .normed = o.normed};
        CHECK_OK(lc_forward(s, ids, T, &fo));
        if (m->has_mtp) CHECK_OK(lc_mtp_forward(s, o.normed, ids + 1, T - 1, o.mtp));
    } else {
        for (int64_t t = 0; t < T; t++) {
            lc_forward_out fo = {.logits = o.logits + t * V, .hidden = h1, .topk_idx = k1, .normed = o.normed + t * H};
            CHECK_OK(lc_forward(s, ids + t, 1, &fo));
            for (int64_t l = 0; l < L; l++) {
                memcpy(o.hidden + (l * T + t) * H, h1 + l * H, (size_t)H * 4);
                memcpy(o.topk + (l * T + t) * K, k1 + l * K, (size_t)K * 4);
            }
            if (m->has_mtp && t > 0) CHECK_OK(lc_mtp_forward(s, o.normed + (t - 1) * H, ids + t, 1, o.mtp + (t - 1) * V));
        }
    }
    int64_t n;
    float *ref = t_read_f32(&g, "logits", &n);
    double e = t_rel_err(o.logits, ref, T * V), worst = e;
    CHECK(ref && n == T * V && e <= GOLDEN_TOL, "%s logits rel err %.3g", dir, e);
    free(ref);
    for (int64_t l = 0; l < L; l++) {
        char name[64];
        snprintf(name, sizeof name, "hidden.%lld", (long long)l);
        ref = t_read_f32(&g, name, &n);
        e = t_rel_err(o.hidden + l * T * H, ref, T * H);
        worst = e > worst ? e : worst;
        CHECK(ref && n == T * H && e <= GOLDEN_TOL, "%s %s rel err %.3g", dir, name, e);
        free(ref);
        snprintf(name, sizeof name, "router.%lld.topk_idx", (long long)l);
        ref = t_read_f32(&g, name, &n);
        int same = ref && n == T * K;
        for (int64_t i = 0; same && i < T * K; i++) same = (int32_t)ref[i] == o.topk[l * T * K + i];
        CHECK(same, "%s %s differs from golden", dir, name);
        free(ref);
    }
    if (m->has_mtp) {
        ref = t_read_f32(&g, "mtp_logits", &n);
        e = t_rel_err(o.mtp, ref, (T - 1) * V);
        worst = e > worst ? e : worst;
        CHECK(ref && n == (T - 1) * V && e <= GOLDEN_TOL, "%s mtp_logits rel err %.3g", dir, e);
        free(ref);
    }
    printf("    %-28s %-9s %s: worst rel err %.2e (tolerance %.0e)\n", strrchr(dir, '/') + 1,
           one_by_one ? "decode" : "prefill", mode == LC_ATTN_EXPANDED ? "expanded MLA" : mode == LC_ATTN_ABSORBED ? "absorbed MLA" : "auto MLA", worst, GOLDEN_TOL);
    free(ids_f);
    free(ids);
    free(o.logits);
    free(o.hidden);
    free(o.normed);
    free(o.mtp);
    free(o.topk);
    free(h1);
    free(k1);
done:
    lc_session_free(s);
    lc_model_free(m);
    lc_st_close(&g);
    free(gpath);
}

static void for_each_case(lc_attn_mode mode, int one_by_one) {
    const char *root = t_golden_dir();
    if (!root) {
        t_skip("no ../shared/golden (set LC_GOLDEN)");
        return;
    }
    const char *cases[] = {"tiny-f32", "tiny-bf16", "tiny-fp8", "tiny-nozero"};
    for (int i = 0; i < 4; i++) {
        char *dir = lc_path_join(root, cases[i]);
        if (lc_is_dir(dir)) run_case(dir, mode, one_by_one);
        else t_fail(__FILE__, __LINE__, "golden case %s missing", dir);
        free(dir);
    }
}

static void test_golden_prefill(void) { for_each_case(LC_ATTN_AUTO, 0); }
static void test_golden_decode_absorbed(void) { for_each_case(LC_ATTN_AUTO, 1); }
static void test_golden_decode_expanded(void) { for_each_case(LC_ATTN_EXPANDED, 1); }
static void test_golden_prefill_absorbed(void) { for_each_case(LC_ATTN_ABSORBED, 0); }

/* Golden prefill and decode on every kernel level this CPU has (the default is the best). */
static void test_golden_every_kernel_level(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        if (lc_kernels_select(levels[i]) != LC_OK) continue;
        printf("    kernels: %s\n", levels[i]);
        for_each_case(LC_ATTN_AUTO, 0);
        for_each_case(LC_ATTN_AUTO, 1);
    }
    lc_kernels_select(orig);
}

/* `longcat quantize` end to end. Q = the golden F32 case quantized; D = Q dequantised back to
 * F32 (`--type f32`). Q must compute exactly what its dequantised weights define: logits of Q
 * (its own kernels, prefill and decode) equal D's (F32 path) to the golden tolerance, routes
 * identical. Against the original F32 golden logits the error is printed (random tiny models
 * have near-tied router scores, so quantization flips choices and the logits move a lot). */
static void test_golden_quantized(void) {
    char *src = lc_path_join(t_golden_dir(), "tiny-f32"), *gpath = lc_path_join(src, "golden.safetensors");
    const struct { lc_dtype t; const char *name; } fm[] = {{LC_DT_Q8_0, "q8_0"}, {LC_DT_Q4_0, "q4_0"}, {LC_DT_F8_E4M3, "fp8"}};
    lc_st g;
    if (lc_st_open(&g, gpath)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        goto out;
    }
    int64_t T, n;
    float *ids_f = t_read_f32(&g, "input_ids", &T), *ref = t_read_f32(&g, "logits", &n);
    int32_t ids[64];
    for (int64_t t = 0; t < T && t < 64; t++) ids[t] = (int32_t)ids_f[t];
    for (size_t f = 0; f < sizeof fm / sizeof fm[0]; f++) {
        char qn[32], dn[32];
        snprintf(qn, sizeof qn, "quant-%s", fm[f].name);
        snprintf(dn, sizeof dn, "quant-%s-f32", fm[f].name);
        char *qdir = lc_strdup(t_tmpdir(qn)), *ddir = lc_strdup(t_tmpdir(dn));
        CHECK_OK(lc_model_quantize(src, qdir, fm[f].t, 0));
        CHECK_OK(lc_model_quantize(qdir, ddir, LC_DT_F32, 0));
        lc_model *mq = NULL, *md = NULL;
        CHECK_OK(lc_model_load(&mq, qdir));
        CHECK_OK(lc_model_load(&md, ddir));
        if (mq && md) {
            const int64_t V = mq->cfg.vocab_size, L = mq->cfg.num_layers, K = mq->cfg.moe_topk;
            CHECK(mq->layers[0].mlps[0].gate_proj.dtype == fm[f].t, "%s: loaded as %s", fm[f].name,
                  lc_dtype_name(mq->layers[0].mlps[0].gate_proj.dtype));
            float *lq = malloc((size_t)(T * V) * 4), *lqd = malloc((size_t)(T * V) * 4), *ld = malloc((size_t)(T * V) * 4);
            int32_t *kq = malloc((size_t)(L * T * K) * 4), *kd = malloc((size_t)(L * T * K) * 4);
            lc_session *sq = NULL, *sd = NULL;
            CHECK_OK(lc_session_new(&sq, mq, T));
            CHECK_OK(lc_session_new(&sd, md, T));
            lc_forward_out oq = {.logits = lq, .topk_idx = kq}, od = {.logits = ld, .topk_idx = kd};
            CHECK_OK(lc_forward(sq, ids, T, &oq));
            CHECK_OK(lc_forward(sd, ids, T, &od));
            lc_session_reset(sq);
            for (int64_t t = 0; t < T; t++) {
                lc_forward_out o1 = {.logits = lqd + t * V};
                CHECK_OK(lc_forward(sq, ids + t, 1, &o1));
            }
            double e = t_rel_err(lq, ld, T * V), e1 = t_rel_err(lqd, ld, T * V), eg = t_rel_err(lq, ref, T * V);
            printf("    %s: logits vs its dequantised F32 twin: prefill %.2g, decode %.2g (tolerance %g); "
                   "vs the original F32 golden %.3g\n", fm[f].name, e, e1, GOLDEN_TOL, eg);
            CHECK(e <= GOLDEN_TOL && e1 <= GOLDEN_TOL, "%s: logits differ from the dequantised model's: %.3g / %.3g",
                  fm[f].name, e, e1);
            CHECK(!memcmp(kq, kd, (size_t)(L * T * K) * 4), "%s: router choices differ from the dequantised model's", fm[f].name);
            CHECK(eg < 2.0, "%s: logits far from golden (%.3g): not a plausible quantization error", fm[f].name, eg);
            free(lq); free(lqd); free(ld); free(kq); free(kd);
            lc_session_free(sq);
            lc_session_free(sd);
        }
        lc_model_free(mq);
        lc_model_free(md);
        free(qdir);
        free(ddir);
    }
    free(ids_f);
    free(ref);
    lc_st_close(&g);
out:
    free(src);
    free(gpath);
}

void suite_golden(void) {
    RUN(test_golden_prefill);
    RUN(test_golden_decode_absorbed);
    RUN(test_golden_decode_expanded);
    RUN(test_golden_prefill_absorbed);
    RUN(test_golden_every_kernel_level);
    RUN(test_golden_quantized);
}
