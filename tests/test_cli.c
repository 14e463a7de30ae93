/* test_cli.c — the `longcat` binary as a user runs it: logits files that match golden,
 * init -> info -> logits on a fresh checkpoint, info on the real config, and clean errors
 * with a non-zero exit for bad input. */
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void compare_file(const char *out_path, const char *golden_path, const char *name, int exact) {
    lc_st a, b;
    if (lc_st_open(&a, out_path)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        return;
    }
    if (lc_st_open(&b, golden_path)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        lc_st_close(&a);
        return;
    }
    int64_t n1 = 0, n2 = 0;
    float *x = t_read_f32(&a, name, &n1), *y = t_read_f32(&b, name, &n2);
    CHECK(x && y && n1 == n2, "%s present in both with the same size", name);
    if (x && y && n1 == n2) {
        double e = t_rel_err(x, y, n1);
        CHECK(exact ? e == 0 : e <= 1e-4, "%s: rel err %.3g", name, e);
    }
    free(x);
    free(y);
    lc_st_close(&a);
    lc_st_close(&b);
}

static void test_cli_logits_golden(void) {
    const char *g = t_golden_dir();
    if (!g) {
        t_skip("no ../shared/golden");
        return;
    }
    const char *dir = t_tmpdir("cli");
    const char *cases[] = {"tiny-f32", "tiny-fp8"};
    for (int i = 0; i < 2; i++) {
        char gp[512], ids[512] = "";
        snprintf(gp, sizeof gp, "%s/%s/golden.safetensors", g, cases[i]);
        lc_st st;
        CHECK_OK(lc_st_open(&st, gp));
        t_ids_string(&st, ids, sizeof ids);
        lc_st_close(&st);
        for (int decode = 0; decode < 2; decode++) {
            char *out = NULL;
            int rc = t_sh(&out, "%s logits %s/%s --tokens %s --hidden --routes --mtp %s -o %s/out.safetensors", t_bin(), g,
                          cases[i], ids, decode ? "--decode" : "", dir);
            CHECK(rc == 0, "longcat logits exit %d: %s", rc, out);
            CHECK(out && strstr(out, "tok/s"), "reports its speed");
            free(out);
            char op[600];
            snprintf(op, sizeof op, "%s/out.safetensors", dir);
            compare_file(op, gp, "logits", 0);
            compare_file(op, gp, "hidden.1", 0);
            compare_file(op, gp, "mtp_logits", 0);
            compare_file(op, gp, "router.0.topk_idx", 1);
            compare_file(op, gp, "router.1.topk_idx", 1);
        }
    }
}

static void test_cli_init_info_logits(void) {
    const char *dir = t_tmpdir("cli_init");
    char *out = NULL;
    int rc = t_sh(&out, "%s init --preset tiny --set num_layers=1 --set zero_expert_num=2 --dtype fp8 --set weight_block_size=32,32 --seed 5 %s/m",
                  t_bin(), dir);
    CHECK(rc == 0 && strstr(out, "wrote"), "init: %s", out);
    free(out);
    rc = t_sh(&out, "%s info %s/m", t_bin(), dir);
    CHECK(rc == 0 && strstr(out, "(valid)") && strstr(out, "F8_E4M3") && strstr(out, "6 FFN (SwiGLU 40) + 2 zero"), "info: %s", out);
    free(out);
    rc = t_sh(&out, "%s logits %s/m --tokens 3,1,4,1,5 --decode", t_bin(), dir);
    CHECK(rc == 0 && strstr(out, "argmax:"), "logits: %s", out);
    free(out);
    /* the same seed writes the same bytes */
    rc = t_sh(&out, "%s init --preset tiny --set num_layers=1 --set zero_expert_num=2 --dtype fp8 --set weight_block_size=32,32 --seed 5 %s/m2 >/dev/null && cmp %s/m/model.safetensors %s/m2/model.safetensors",
              t_bin(), dir, dir, dir);
    CHECK(rc == 0, "init is deterministic: %s", out);
    free(out);
}

static void test_cli_info_flash_chat(void) {
    const char *dir = t_tmpdir("cli_flash");
    char *out = NULL;
    int rc = t_sh(&out, "%s init --preset flash-chat --config-only %s && %s info %s/config.json", t_bin(), dir, t_bin(), dir);
    CHECK(rc == 0, "info exit %d", rc);
    CHECK(out && strstr(out, "total 560.66B"), "560B total: %s", out);
    CHECK(out && strstr(out, "18.69B .. 31.38B"), "18.7B..31.4B active: %s", out);
    CHECK(out && strstr(out, "input embedding table") , "says what is counted");
    free(out);
}

static void test_cli_errors(void) {
    struct { const char *args, *want; } cases[] = {
        {"logits /nonexistent/model --tokens 1", "/nonexistent/model"},
        {"logits %G --tokens 1,x", "not a comma-separated list"},
        {"logits %G --tokens 1,99999", "outside the vocabulary"},
        {"logits %G", "usage"},
        {"info", "usage"},
        {"init --preset nope /tmp/x", "unknown preset"},
        {"init --preset tiny --set hidden_size=0 /tmp/x", "hidden_size"},
        {"frobnicate", "unknown command"},
    };
    const char *g = t_golden_dir();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char args[512], *p = strstr(cases[i].args, "%G");
        if (p && !g) continue;
        if (p) snprintf(args, sizeof args, "%.*s%s/tiny-f32%s", (int)(p - cases[i].args), cases[i].args, g, p + 2);
        else snprintf(args, sizeof args, "%s", cases[i].args);
        char *out = NULL;
        int rc = t_sh(&out, "%s %s", t_bin(), args);
        CHECK(rc == 1, "`longcat %s` should exit 1, got %d", args, rc);
        CHECK(out && strstr(out, cases[i].want), "`longcat %s` should say \"%s\": %s", args, cases[i].want, out);
        free(out);
    }
}

static void test_cli_bench_json(void);
void suite_cli(void) {
    RUN(test_cli_logits_golden);
    RUN(test_cli_bench_json);
    RUN(test_cli_init_info_logits);
    RUN(test_cli_info_flash_chat);
    RUN(test_cli_errors);
}

/* `longcat bench --json` on a small synthetic model: every figure present and plausible. */
static void test_cli_bench_json(void) {
    const char *dir = t_tmpdir("bench");
    char *out = NULL;
    int rc = t_sh(&out, "%s init --preset tiny --seed 3 %s/m >/dev/null && %s bench %s/m --decode 4 --prefill 16 --bw-gib 0.25 --json "
                        "--zero-sweep",
                  t_bin(), dir, t_bin(), dir);
    CHECK(rc == 0, "bench: %s", out);
    const char *keys[] = {"decode_tok_s",   "decode_roofline_ratio", "prefill_tok_s", "prefill_peak_ratio", "bandwidth_gb_s",
                          "matmul_gflops", "prefill_fma_ratio",     "own_sgemm_gflops"};
    const char *js = out ? strchr(out, '{') : NULL;
    cJSON *j = js ? cJSON_Parse(js) : NULL;
    CHECK(j != NULL, "bench printed JSON: %s", out);
    for (int i = 0; j && i < 8; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        CHECK(cJSON_IsNumber(v) && v->valuedouble > 0, "%s present and positive", keys[i]);
        if (strstr(keys[i], "ratio")) CHECK(cJSON_IsNumber(v) && v->valuedouble < 1.5, "%s = %g is a plausible fraction", keys[i], v->valuedouble);
    }
    /* the matmul peak is the faster of OpenBLAS's sgemm (0 when it is missing) and our own */
    const cJSON *mm = cJSON_GetObjectItem(j, "matmul_gflops"), *own = cJSON_GetObjectItem(j, "own_sgemm_gflops"),
                *blas = cJSON_GetObjectItem(j, "blas_sgemm_gflops");
    CHECK(cJSON_IsNumber(blas) && blas->valuedouble >= 0, "blas_sgemm_gflops present");
    if (cJSON_IsNumber(mm) && cJSON_IsNumber(own) && cJSON_IsNumber(blas))
        CHECK(fabs(mm->valuedouble - fmax(own->valuedouble, blas->valuedouble)) < 0.11, "matmul peak %g = max(%g, %g)",
              mm->valuedouble, own->valuedouble, blas->valuedouble);
    /* component split sums to 1; the zero-expert sweep goes from K FFN experts to none */
    const cJSON *split = cJSON_GetObjectItem(j, "decode_split"), *sw = cJSON_GetObjectItem(j, "zero_expert_sweep"), *e;
    double sum = 0;
    cJSON_ArrayForEach(e, split) sum += e->valuedouble;
    CHECK(fabs(sum - 1) < 1e-3, "decode_split sums to %g", sum);
    int n = cJSON_GetArraySize(sw);
    CHECK(n >= 2, "zero_expert_sweep has %d points", n);
    if (n >= 2) {
        const cJSON *a = cJSON_GetArrayItem(sw, 0), *b = cJSON_GetArrayItem(sw, n - 1);
        CHECK(cJSON_GetObjectItem(a, "zero_fraction")->valuedouble == 0 && cJSON_GetObjectItem(b, "zero_fraction")->valuedouble == 1,
              "sweep runs f = 0 .. 1");
        CHECK(cJSON_GetObjectItem(a, "ffn_experts_per_token")->valuedouble >= 1 &&
                  cJSON_GetObjectItem(b, "ffn_experts_per_token")->valuedouble == 0,
              "all identity at f = 1");
        /* times are the benchmark's business (docs/PERFORMANCE.md), not a test's: every point has them */
        cJSON_ArrayForEach(e, sw) {
            const cJSON *ms = cJSON_GetObjectItem(e, "moe_ms_per_token"), *ra = cJSON_GetObjectItem(e, "moe_time_ratio");
            CHECK(cJSON_IsNumber(ms) && isfinite(ms->valuedouble) && cJSON_IsNumber(ra) && isfinite(ra->valuedouble),
                  "sweep point has its MoE time and ratio");
        }
    }
    cJSON_Delete(j);
    free(out);
}
