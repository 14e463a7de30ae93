/* test_kernels.c — dtype conversions and every kernel of the active table against naive
 * references on odd shapes (sizes that divide no block or unroll width). */
#include "test.h"

#include <stdatomic.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_fp8_roundtrip(void) {
    /* Every finite e4m3 code decodes and re-encodes to itself; 0x7f/0xff are NaN. */
    for (int v = 0; v < 256; v++) {
        float f = lc_fp8e4m3_to_f32((uint8_t)v);
        if ((v & 0x7f) == 0x7f) {
            CHECK(isnan(f), "code 0x%02x should be NaN", v);
            continue;
        }
        CHECK(lc_f32_to_fp8e4m3(f) == v, "code 0x%02x -> %g -> 0x%02x", v, (double)f, lc_f32_to_fp8e4m3(f));
    }
    CHECK(lc_fp8e4m3_to_f32(0x7e) == 448.0f, "max finite is 448");
    CHECK(lc_f32_to_fp8e4m3(1e6f) == 0x7e, "saturates at 448");
    CHECK(lc_f32_to_fp8e4m3(1.0625f) == lc_f32_to_fp8e4m3(1.0f), "ties round to even");
    CHECK(lc_fp8e4m3_to_f32(0x01) == ldexpf(1, -9), "smallest subnormal 2^-9");
}

static void test_half_roundtrip(void) {
    int bad = 0;
    for (int v = 0; v < 65536; v++) {
        float f = lc_f16_to_f32((uint16_t)v);
        if (!isnan(f) && lc_f32_to_f16(f) != v) bad++;
        float g = lc_bf16_to_f32((uint16_t)v);
        if (!isnan(g) && lc_f32_to_bf16(g) != v) bad++;
    }
    CHECK(bad == 0, "%d f16/bf16 codes do not round-trip", bad);
    CHECK(lc_f16_to_f32(0x3c00) == 1.0f && lc_f16_to_f32(0x0001) == ldexpf(1, -24), "f16 1.0 and subnormal");
    CHECK(lc_f32_to_bf16(1.00390625f) == 0x3f80, "bf16 tie rounds to even");
}

/* A random matrix in dtype dt with (for FP8) br x bc scale blocks; ref gets the exact f32
 * values the kernels must see. */
typedef struct {
    lc_mat m;
    uint8_t *data, *qscale;
    float *scale, *ref;
} test_mat;

/* Q8_0 / Q4_0 test matrices: quantized with the reference quantizers; ref decoded here by the
 * format's definition (docs/FORMATS.md), independently of the kernels. */
static void make_qmat(test_mat *t, lc_dtype dt, int64_t rows, int64_t cols, lc_rng *r) {
    const int64_t nb = lc_q_blocks(cols), rb = dt == LC_DT_Q8_0 ? cols : nb * 16;
    t->data = malloc((size_t)(rows * rb) + 1);
    t->qscale = malloc((size_t)(rows * nb) * 2 + 1);
    uint8_t *d = t->data + 1, *sc = t->qscale + 1; /* misaligned on purpose */
    float *x = malloc((size_t)cols * sizeof *x);
    uint16_t *s16 = malloc((size_t)nb * sizeof *s16);
    for (int64_t i = 0; i < rows; i++) {
        for (int64_t c = 0; c < cols; c++) x[c] = lc_rng_normal(r);
        if (dt == LC_DT_Q8_0) lc_quantize_row_q8_0(x, cols, (int8_t *)(void *)(d + i * rb), s16);
        else lc_quantize_row_q4_0(x, cols, d + i * rb, s16);
        memcpy(sc + i * nb * 2, s16, (size_t)nb * 2);
        for (int64_t c = 0; c < cols; c++) {
            float dd = lc_f16_to_f32(s16[c / 32]);
            int q;
            if (dt == LC_DT_Q8_0) q = (int8_t)d[i * rb + c];
            else {
                uint8_t byte = d[i * rb + (c / 32) * 16 + (c % 32) % 16];
                q = ((c % 32) < 16 ? byte & 15 : byte >> 4) - 8;
            }
            t->ref[i * cols + c] = dd * (float)q;
        }
    }
    free(x);
    free(s16);
    t->m = (lc_mat){d, dt, rows, cols, NULL, 0, 0, sc};
}

static void make_mat(test_mat *t, lc_dtype dt, int64_t rows, int64_t cols, int64_t br, int64_t bc, uint64_t seed) {
    lc_rng r;
    lc_rng_seed(&r, seed);
    memset(t, 0, sizeof *t);
    t->ref = malloc((size_t)(rows * cols) * sizeof(float));
    if (dt == LC_DT_Q8_0 || dt == LC_DT_Q4_0) {
        make_qmat(t, dt, rows, cols, &r);
        return;
    }
    t->data = malloc((size_t)(rows * cols) * (size_t)lc_dtype_size(dt) + 1); /* +1: unaligned below */
    int64_t sr = (rows + br - 1) / br, sc = (cols + bc - 1) / bc;
    if (dt == LC_DT_F8_E4M3) {
        t->scale = malloc((size_t)(sr * sc) * sizeof(float));
        for (int64_t i = 0; i < sr * sc; i++) t->scale[i] = 0.001f + 0.01f * lc_rng_uniform(&r);
    }
    uint8_t *d = t->data + 1; /* deliberately misaligned: kernels must not assume alignment */
    for (int64_t i = 0; i < rows * cols; i++) {
        float v = lc_rng_normal(&r);
        switch (dt) {
        case LC_DT_F32: memcpy(d + 4 * i, &v, 4); t->ref[i] = v; break;
        case LC_DT_BF16: { uint16_t h = lc_f32_to_bf16(v); memcpy(d + 2 * i, &h, 2); t->ref[i] = lc_bf16_to_f32(h); break; }
        case LC_DT_F16: { uint16_t h = lc_f32_to_f16(v); memcpy(d + 2 * i, &h, 2); t->ref[i] = lc_f16_to_f32(h); break; }
        default: {
            uint8_t q = lc_f32_to_fp8e4m3(v * 50);
            d[i] = q;
            t->ref[i] = lc_fp8e4m3_to_f32(q) * t->scale[(i / cols / br) * sc + (i % cols) / bc];
        }
        }
    }
    t->m = (lc_mat){d, dt, rows, cols, t->scale, br, bc, NULL};
}

static void free_mat(test_mat *t) {
    free(t->data);
    free(t->qscale);
    free(t->scale);
    free(t->ref);
}

static void matmul_all_dtypes(void) {
    const lc_dtype dts[] = {LC_DT_F32, LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3, LC_DT_Q8_0, LC_DT_Q4_0};
    /* rows, cols, tokens: T >= LC_GEMM_MIN_T takes the GEMM path — on avx512 with k in the lanes
     * for few tokens short of whole 16-token tiles (9, 17, 23, 40, 89: 4-row tiles, 32-row
     * blocks, token groups of up to 6, k tails; 1024 columns: x rows 4 KiB apart, copied), with
     * tokens in the lanes otherwise (48 but in BF16, 100: 14-row tiles, 112-row blocks, 16/32-token tiles,
     * 256-column chunks); no size divides them */
    const int64_t shapes[][3] = {{1, 1, 1},      {13, 37, 3},    {7, 129, 1},   {33, 16, 5},    {64, 80, 2},
                                 {29, 37, 9},    {127, 300, 17}, {15, 513, 40}, {35, 1024, 23}, {67, 130, 89},
                                 {130, 300, 48}, {118, 260, 100}};
    /* FP8 twice: blocks of 5 x 8 columns (all tails) and of 5 x 128 (LongCat's width: whole
     * steps of 32) */
    for (size_t d = 0; d <= sizeof dts / sizeof dts[0]; d++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t R = shapes[s][0], C = shapes[s][1], T = shapes[s][2];
            const lc_dtype dt = d < sizeof dts / sizeof dts[0] ? dts[d] : LC_DT_F8_E4M3;
            test_mat w;
            make_mat(&w, dt, R, C, 5, d == sizeof dts / sizeof dts[0] ? 128 : 8, 100 + s);
            float *x = malloc((size_t)(T * C) * sizeof *x), *out = malloc((size_t)(T * R) * sizeof *out);
            float *ref = malloc((size_t)(T * R) * sizeof *ref);
            lc_rng r;
            lc_rng_seed(&r, 7);
            for (int64_t i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
            for (int64_t t = 0; t < T; t++)
                for (int64_t i = 0; i < R; i++) {
                    double acc = 0;
                    for (int64_t c = 0; c < C; c++) acc += (double)w.ref[i * C + c] * x[t * C + c];
                    ref[t * R + i] = (float)acc;
                }
            lc_matmul(out, x, &w.m, T);
            double e = t_rel_err(out, ref, T * R);
            CHECK(e < 1e-5, "%s [%lld x %lld] T=%lld: rel err %.3g", lc_dtype_name(dt), (long long)R,
                  (long long)C, (long long)T, e);
            /* a row sub-range with strided output */
            if (R > 3) {
                lc_k.matmul(out, R, x, C, &w.m, 2, R - 3, T);
                double e2 = 0;
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = 0; i < R - 3; i++)
                        e2 = fmax(e2, fabs(out[t * R + i] - ref[t * R + i + 2]) / (fabs(ref[t * R + i + 2]) + 1));
                CHECK(e2 < 1e-5 * fmax(1.0, sqrt((double)C / 64)), "%s row range: err %.3g", lc_dtype_name(dt), e2);
            }
            /* transposed product: out[c] = sum_i W[r0+i, c] x[i] */
            int64_t r0 = R > 2 ? 1 : 0, nr = R - r0;
            float *yt = malloc((size_t)C * sizeof *yt), *yr = malloc((size_t)C * sizeof *yr);
            float *xt = malloc((size_t)nr * sizeof *xt);
            for (int64_t i = 0; i < nr; i++) xt[i] = lc_rng_normal(&r);
            lc_k.matvec_t(yt, xt, &w.m, r0, nr);
            for (int64_t c = 0; c < C; c++) {
                double acc = 0;
                for (int64_t i = 0; i < nr; i++) acc += (double)w.ref[(r0 + i) * C + c] * xt[i];
                yr[c] = (float)acc;
            }
            CHECK(t_rel_err(yt, yr, C) < 1e-5, "%s matvec_t err %.3g", lc_dtype_name(dt), t_rel_err(yt, yr, C));
            free(xt);
            free(yt);
            free(yr);
            free(x);
            free(out);
            free(ref);
            free_mat(&w);
        }
}

/* Every dispatch level this CPU has, against the double-precision reference. */
static void test_matmul_all_dtypes(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        if (lc_kernels_select(levels[i]) != LC_OK) {
            printf("    level %s: not on this CPU\n", levels[i]);
            continue;
        }
        matmul_all_dtypes();
        printf("    level %s: matmul (row and GEMM paths), row ranges, transposed product checked for F32/BF16/F16/FP8/Q8_0/Q4_0\n",
               levels[i]);
    }
    lc_kernels_select(orig);
}

/* The multi-token dot equals the single dot bit for bit on every level, for odd token counts
 * and lengths that leave every tail (the property batched decoding relies on). */
static void test_dots_equal_dot(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    float w[300], x[7 * 301], out[7 * 3];
    lc_rng r;
    lc_rng_seed(&r, 9);
    for (int i = 0; i < 300; i++) w[i] = lc_rng_normal(&r);
    for (int i = 0; i < 7 * 301; i++) x[i] = lc_rng_normal(&r);
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        for (int64_t n = 1; n <= 300; n += 37)
            for (int64_t T = 1; T <= 7; T++) {
                lc_k.dots(out, 3, w, x, 301, T, n);
                for (int64_t t = 0; t < T; t++) {
                    float d = lc_k.dot(w, x + t * 301, n);
                    CHECK(!memcmp(&d, &out[t * 3], sizeof d), "%s: n %lld T %lld t %lld: %.9g vs %.9g", levels[l],
                          (long long)n, (long long)T, (long long)t, d, out[t * 3]);
                }
            }
    }
    lc_kernels_select(orig);
}

/* Quantize -> dequantize error per block: Q8_0 within half a step (d = amax/127); Q4_0 within
 * one step (d = amax/8: the codes run -8..7, so values opposite the extreme clamp at 7), plus
 * the F16 rounding of d. Zero rows stay zero. */
static void test_quant_roundtrip(void) {
    enum { N = 77 }; /* two full blocks and a partial one */
    float x[N], y[N];
    int8_t q8[N];
    uint8_t q4[3 * 16];
    uint16_t d[3];
    lc_rng r;
    lc_rng_seed(&r, 21);
    for (int trial = 0; trial < 50; trial++) {
        for (int i = 0; i < N; i++) x[i] = lc_rng_normal(&r) * (trial == 0 ? 0.0f : (float)(1 + trial % 7));
        for (int fmt = 0; fmt < 2; fmt++) {
            lc_mat m = {fmt ? q4 : (uint8_t *)q8, fmt ? LC_DT_Q4_0 : LC_DT_Q8_0, 1, N, NULL, 0, 0, (const uint8_t *)d};
            if (fmt) lc_quantize_row_q4_0(x, N, q4, d);
            else lc_quantize_row_q8_0(x, N, q8, d);
            lc_kernels_scalar()->row[m.dtype](y, &m, 0);
            for (int b = 0; b < 3; b++) {
                float amax = 0;
                for (int i = b * 32; i < N && i < (b + 1) * 32; i++) amax = fmaxf(amax, fabsf(x[i]));
                float step = amax / (fmt ? 8.0f : 127.0f), tol = step * (fmt ? 1.0f : 0.5f) * 1.002f + 1e-7f;
                for (int i = b * 32; i < N && i < (b + 1) * 32; i++)
                    CHECK(fabsf(y[i] - x[i]) <= tol, "%s block %d: %g -> %g (tolerance %g)", fmt ? "Q4_0" : "Q8_0", b,
                          (double)x[i], (double)y[i], (double)tol);
            }
        }
    }
}

/* A token's outputs do not depend on how many tokens share the product: below
 * LC_GEMM_MIN_T (row kernels, every level) and, where the level has its own GEMM, among GEMM
 * calls that take the same kernel (on avx512: 9 and 37 tokens, k in the lanes; 16 and 32,
 * tokens in the lanes). Every dtype, bit for bit. */
static void test_batch_invariance(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    const lc_dtype dts[] = {LC_DT_F32, LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3, LC_DT_Q8_0, LC_DT_Q4_0};
    enum { R = 23, C = 299, TM = 37 };
    float *x = malloc(sizeof(float) * TM * C), *o1 = malloc(sizeof(float) * TM * R), *o2 = malloc(sizeof(float) * TM * R);
    lc_rng r;
    lc_rng_seed(&r, 11);
    for (int i = 0; i < TM * C; i++) x[i] = lc_rng_normal(&r);
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
            test_mat w;
            make_mat(&w, dts[d], R, C, 5, 128, 3 + d);
            for (int64_t t = 0; t < LC_GEMM_MIN_T - 1; t++) lc_matmul(o1 + t * R, x + t * C, &w.m, 1);
            for (int64_t n = 2; n < LC_GEMM_MIN_T; n++) { /* groups of 4 and every remainder */
                lc_matmul(o2, x, &w.m, n);
                CHECK(!memcmp(o1, o2, sizeof(float) * n * R), "%s %s: a batch of %lld differs from single tokens", levels[l],
                      lc_dtype_name(dts[d]), (long long)n);
            }
            if (lc_k.gemm) {
                lc_matmul(o1, x, &w.m, LC_GEMM_MIN_T);
                lc_matmul(o2, x, &w.m, TM);
                CHECK(!memcmp(o1, o2, sizeof(float) * LC_GEMM_MIN_T * R), "%s %s: GEMM of %d and of %d tokens differ",
                      levels[l], lc_dtype_name(dts[d]), LC_GEMM_MIN_T, TM);
                lc_matmul(o1, x, &w.m, 16);
                lc_matmul(o2, x, &w.m, 32);
                CHECK(!memcmp(o1, o2, sizeof(float) * 16 * R), "%s %s: GEMM of 16 and of 32 tokens differ", levels[l],
                      lc_dtype_name(dts[d]));
            }
            free_mat(&w);
        }
    }
    free(x);
    free(o1);
    free(o2);
    lc_kernels_select(orig);
}

/* The fused gate/up GEMM (where a level has one): bit for bit the two products and then
 * SwiGLU, every dtype, shapes taking either GEMM kernel on avx512 (k in the lanes: 9-96 tokens
 * short of whole tiles, every BF16 product to 96; tokens in the lanes: 48 F32, 100, 130), odd
 * sizes, several row blocks, one thread and shared. */
static void test_gemm_swiglu(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    const lc_dtype dts[] = {LC_DT_F32, LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3, LC_DT_Q8_0, LC_DT_Q4_0};
    const int64_t shapes[][3] = {{29, 37, 9},    {127, 300, 17}, {15, 513, 40},  {35, 1024, 23},
                                 {67, 130, 89},  {130, 300, 48}, {118, 260, 100}, {250, 70, 130}};
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK || !lc_k.gemm_swiglu) continue;
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++)
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
                const int64_t R = shapes[s][0], C = shapes[s][1], T = shapes[s][2];
                test_mat wg, wu;
                make_mat(&wg, dts[d], R, C, 5, 8, 300 + s);
                make_mat(&wu, dts[d], R, C, 5, 8, 400 + s);
                float *x = malloc(sizeof(float) * T * C), *g = malloc(sizeof(float) * T * R);
                float *u = malloc(sizeof(float) * T * R), *out = malloc(sizeof(float) * T * R);
                lc_rng r;
                lc_rng_seed(&r, 13 + s);
                for (int64_t i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
                lc_matmul(g, x, &wg.m, T);
                lc_matmul(u, x, &wu.m, T);
                lc_k.swiglu(g, g, u, T * R);
                lc_k.gemm_swiglu(out, R, x, C, &wg.m, &wu.m, T);
                CHECK(!memcmp(out, g, sizeof(float) * T * R), "%s %s [%lld x %lld] T=%lld: fused gate/up differs from the products",
                      levels[l], lc_dtype_name(dts[d]), (long long)R, (long long)C, (long long)T);
                free(x);
                free(g);
                free(u);
                free(out);
                free_mat(&wg);
                free_mat(&wu);
            }
        printf("    level %s: fused gate/up GEMM = products + SwiGLU, bit for bit, 6 dtypes x 8 shapes\n", levels[l]);
    }
    lc_kernels_select(orig);
}

/* lc_matmul_many: jobs of every dtype, odd shapes, 1..LC_GEMM_MIN_T-1 tokens (one shared
 * region) and one GEMM-sized job, on every level — each output bit-identical to lc_matmul. */
static void test_matmul_many(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    const lc_dtype dts[] = {LC_DT_F32, LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3, LC_DT_Q8_0, LC_DT_Q4_0};
    enum { ND = sizeof dts / sizeof dts[0], NJ = ND + 1, C = 299 };
    const int64_t rows[NJ] = {23, 1, 700, 37, 130, 5, 64}, toks[NJ] = {1, 3, 1, 8, 2, 5, 12};
    float *x = malloc(sizeof(float) * 12 * C), *o1 = malloc(sizeof(float) * 12 * 700), *o2[NJ];
    lc_rng r;
    lc_rng_seed(&r, 12);
    for (int i = 0; i < 12 * C; i++) x[i] = lc_rng_normal(&r);
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        test_mat w[NJ];
        lc_matmul_job jobs[NJ];
        for (int j = 0; j < NJ; j++) {
            make_mat(&w[j], dts[j % ND], rows[j], C, 5, 128, 40 + j);
            o2[j] = malloc(sizeof(float) * (size_t)(toks[j] * rows[j]));
            jobs[j] = (lc_matmul_job){o2[j], x, &w[j].m, toks[j]};
        }
        lc_matmul_many(jobs, NJ);
        for (int j = 0; j < NJ; j++) {
            lc_matmul(o1, x, &w[j].m, toks[j]);
            CHECK(!memcmp(o1, o2[j], sizeof(float) * (size_t)(toks[j] * rows[j])), "%s %s [%lld x %d] x %lld tokens: differs",
                  levels[l], lc_dtype_name(dts[j % ND]), (long long)rows[j], C, (long long)toks[j]);
            free_mat(&w[j]);
            free(o2[j]);
        }
    }
    free(x);
    free(o1);
    lc_kernels_select(orig);
}

/* lc_row_plan_first_ranges (what a waiting thread prefetches for the team's next call): for
 * every team size and thread, exactly the weight rows the first item of its share computes —
 * found by running that item alone on NaN-filled outputs — on every level (items of one slice
 * or of four side by side). */
static void test_row_plan_first_ranges(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    enum { NJ = 3, C = 300 };
    const lc_dtype dts[NJ] = {LC_DT_BF16, LC_DT_F32, LC_DT_Q8_0};
    const int64_t rows[NJ] = {700, 37, 2000};
    float *x = malloc(sizeof(float) * C), *o[NJ];
    for (int i = 0; i < C; i++) x[i] = 0.01f * (float)(i % 17);
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        test_mat w[NJ];
        lc_matmul_job jobs[NJ];
        for (int j = 0; j < NJ; j++) {
            make_mat(&w[j], dts[j], rows[j], C, 5, 128, 70 + j);
            o[j] = malloc(sizeof(float) * (size_t)rows[j]);
            jobs[j] = (lc_matmul_job){o[j], x, &w[j].m, 1};
        }
        lc_row_plan p;
        if (!lc_row_plan_make(&p, jobs, NJ)) { /* this level has no row kernels for them: nothing announced */
            lc_prefetch_range r[LC_ROW_STREAMS];
            CHECK(lc_row_plan_first_ranges(jobs, NJ, 0, 2, r) == 0, "%s: ranges without a plan", levels[l]);
        }
        for (int nt = 1; nt <= 9 && p.first; nt += 2)
            for (int id = 0; id < nt; id++) {
                lc_prefetch_range r[LC_ROW_STREAMS];
                const int n = lc_row_plan_first_ranges(jobs, NJ, id, nt, r);
                const int64_t k = p.n_items * id / nt, end = p.n_items * (id + 1) / nt;
                CHECK((n == 0) == (k >= end), "%s: thread %d of %d: %d ranges for a share of %lld items", levels[l], id, nt, n,
                      (long long)(end - k));
                if (k >= end) continue;
                for (int j = 0; j < NJ; j++)
                    for (int64_t i = 0; i < rows[j]; i++) o[j][i] = NAN;
                lc_row_plan_item(k, &p);
                int64_t written = 0, in_ranges = 0, bad = 0;
                for (int j = 0; j < NJ; j++) {
                    const size_t rb = lc_mat_row_bytes(&w[j].m);
                    for (int64_t i = 0; i < rows[j]; i++) {
                        const uint8_t *row = w[j].m.data + (size_t)i * rb;
                        int in = 0;
                        for (int q = 0; q < n; q++) in |= row >= r[q].p && row + rb <= r[q].p + r[q].bytes;
                        written += !isnan(o[j][i]);
                        in_ranges += in;
                        bad += in != !isnan(o[j][i]);
                    }
                }
                CHECK(!bad && written > 0 && written == in_ranges, "%s: thread %d of %d, item %lld: %lld rows computed, "
                      "%lld in the ranges, %lld disagree", levels[l], id, nt, (long long)k, (long long)written,
                      (long long)in_ranges, (long long)bad);
            }
        lc_row_plan_free(&p);
        for (int j = 0; j < NJ; j++) {
            free_mat(&w[j]);
            free(o[j]);
        }
    }
    free(x);
    lc_kernels_select(orig);
}

/* The side-by-side row kernels (rowdotn: 1-4 single-token rows of one matrix streamed at once,
 * every tail) give each row the bits of the one-row kernel; and lc_matmul_many / lc_matmul,
 * whose work items take slices from LC_ROW_STREAMS parts of their rows, equal one product at a
 * time on the one-row kernels. Every level that has them; F32, BF16, F16, FP8 (blocks of 5 x 128),
 * Q8_0, Q4_0. */
static void test_rowdotn(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    const lc_dtype dts[] = {LC_DT_F32, LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3, LC_DT_Q8_0, LC_DT_Q4_0};
    enum { NC = 6 };
    const int64_t cols[NC] = {1, 17, 64, 299, 1024, 33};
    float *x = malloc(sizeof(float) * 2048), *o1 = malloc(sizeof(float) * 4096), *o2 = malloc(sizeof(float) * 4096);
    lc_rng r;
    lc_rng_seed(&r, 21);
    for (int i = 0; i < 2048; i++) x[i] = lc_rng_normal(&r);
    int checked = 0;
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) {
            test_mat w[NC];
            for (int i = 0; i < NC; i++) make_mat(&w[i], dts[d], 40, cols[i], 5, 128, 60 + i);
            if (lc_k.rowdotn[dts[d]]) {
                for (int a = 0; a < NC; a++)
                    for (int ns = 1; ns <= LC_ROW_STREAMS; ns++) {
                        const int64_t rows[LC_ROW_STREAMS] = {3, 37, 11, 20}; /* rows[q] .. rows[q] + 2 */
                        float got[LC_ROW_STREAMS][3], want[LC_ROW_STREAMS][3];
                        float *out[LC_ROW_STREAMS] = {got[0], got[1], got[2], got[3]};
                        memset(got, 0, sizeof got);
                        memset(want, 0, sizeof want);
                        lc_k.rowdotn[dts[d]](out, &w[a].m, rows, ns, x + a, 3);
                        for (int q = 0; q < ns; q++)
                            for (int i = 0; i < 3; i++) lc_k.rowdots[dts[d]](&want[q][i], 1, &w[a].m, rows[q] + i, x + a, 0, 1);
                        CHECK(!memcmp(got, want, sizeof got), "%s %s: %d rows side by side of %lld columns differ", levels[l],
                              lc_dtype_name(dts[d]), ns, (long long)cols[a]);
                    }
                checked = 1;
            }
            /* shared products: single-token jobs of all the lengths (items of one to four slices,
             * the last ones short or empty) and one large product on its own */
            lc_matmul_job jobs[NC];
            for (int i = 0; i < NC; i++) jobs[i] = (lc_matmul_job){o2 + 40 * i, x, &w[i].m, 1};
            lc_matmul_many(jobs, NC);
            for (int i = 0; i < NC; i++) {
                lc_matmul(o1, x, &w[i].m, 1);
                CHECK(!memcmp(o1, o2 + 40 * i, sizeof(float) * 40), "%s %s: shared job of %lld columns differs", levels[l],
                      lc_dtype_name(dts[d]), (long long)cols[i]);
            }
            if (lc_k.rowdots[dts[d]]) { /* a level with fused row kernels */
                test_mat big;
                make_mat(&big, dts[d], 4000, 299, 5, 128, 70);
                lc_matmul(o2, x, &big.m, 1);
                for (int64_t i = 0; i < 4000; i++) lc_k.rowdots[dts[d]](o1 + i, 1, &big.m, i, x, 0, 1);
                CHECK(!memcmp(o1, o2, sizeof(float) * 4000), "%s %s: 4000-row product differs from its rows", levels[l],
                      lc_dtype_name(dts[d]));
                free_mat(&big);
            }
            for (int i = 0; i < NC; i++) free_mat(&w[i]);
        }
    }
    if (checked) printf("    1-4 rows side by side = one-row kernels, bit for bit (F32/BF16/F16/FP8/Q8_0/Q4_0, 6 row lengths)\n");
    free(x);
    free(o1);
    free(o2);
    lc_kernels_select(orig);
}

/* An FP8 NaN code (0x7f / 0xff) makes its row's output NaN and no other, on every level, one
 * row at a time and side by side. */
static void test_fp8_nan_rows(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    float x[300], out[64];
    for (int i = 0; i < 300; i++) x[i] = 0.01f * (float)(i % 17) - 0.08f;
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        test_mat w;
        make_mat(&w, LC_DT_F8_E4M3, 64, 300, 5, 128, 90);
        uint8_t *d = (uint8_t *)(uintptr_t)w.m.data;
        d[9 * 300 + 40] = 0x7f;   /* row 9: in a whole step of 32 */
        d[33 * 300 + 290] = 0xff; /* row 33: in the tail */
        lc_matmul(out, x, &w.m, 1);
        int bad = 0;
        for (int i = 0; i < 64; i++) bad += (i == 9 || i == 33) != (isnan(out[i]) != 0);
        CHECK(!bad, "%s: %d rows with NaN codes not NaN, or others NaN", levels[l], bad);
        free_mat(&w);
    }
    lc_kernels_select(orig);
}

/* The BLAS path against the row kernels for products (every dtype) and their backward (F32),
 * odd shapes. */
static void test_blas_matches_row_kernels(void) {
    const int64_t shapes[][3] = {{13, 37, 3}, {129, 7, 5}, {200, 130, 9}, {1, 1, 2}};
    const lc_dtype dts[] = {LC_DT_BF16, LC_DT_F16, LC_DT_F8_E4M3};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
        for (int d = 0; d < 3; d++) {
            int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
            test_mat w;
            make_mat(&w, dts[d], R, C, 5, 8, 70 + k);
            float *x = malloc((size_t)(T * C) * 4), *o1 = malloc((size_t)(T * R) * 4), *o2 = malloc((size_t)(T * R) * 4);
            lc_rng r;
            lc_rng_seed(&r, 5);
            for (int64_t i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
            lc_kernels_use_blas(0);
            lc_matmul(o1, x, &w.m, T);
            lc_kernels_use_blas(1);
            lc_matmul(o2, x, &w.m, T);
            CHECK(t_rel_err(o2, o1, T * R) < 1e-5, "%s [%lld x %lld] T=%lld: BLAS path err %.2e", lc_dtype_name(dts[d]),
                  (long long)R, (long long)C, (long long)T, t_rel_err(o2, o1, T * R));
            free(x); free(o1); free(o2);
            free_mat(&w);
        }
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
        test_mat w;
        make_mat(&w, LC_DT_F32, R, C, 1, 1, 40 + k);
        float *x = malloc((size_t)(T * C) * 4), *dy = malloc((size_t)(T * R) * 4);
        float *o1 = calloc((size_t)(T * R), 4), *o2 = calloc((size_t)(T * R), 4);
        float *dx1 = calloc((size_t)(T * C), 4), *dx2 = calloc((size_t)(T * C), 4);
        float *dw1 = calloc((size_t)(R * C), 4), *dw2 = calloc((size_t)(R * C), 4);
        lc_rng r;
        lc_rng_seed(&r, 9);
        for (int64_t i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
        for (int64_t i = 0; i < T * R; i++) dy[i] = lc_rng_normal(&r);
        lc_kernels_use_blas(0);
        lc_matmul(o1, x, &w.m, T);
        lc_matmul_backward(dx1, dw1, dy, x, &w.m, T);
        lc_kernels_use_blas(1);
        lc_matmul(o2, x, &w.m, T);
        lc_matmul_backward(dx2, dw2, dy, x, &w.m, T);
        double e1 = t_rel_err(o2, o1, T * R), e2 = t_rel_err(dx2, dx1, T * C), e3 = t_rel_err(dw2, dw1, R * C);
        CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5, "[%lld x %lld] T=%lld: out %.2e dx %.2e dw %.2e", (long long)R, (long long)C,
              (long long)T, e1, e2, e3);
        free(x); free(dy); free(o1); free(o2); free(dx1); free(dx2); free(dw1); free(dw2);
        free_mat(&w);
    }
}

static void test_rope(void) {
    enum { DR = 10 };
    float x[DR], y[DR];
    for (int i = 0; i < DR; i++) x[i] = (float)(i + 1);
    memcpy(y, x, sizeof x);
    lc_rope(y, DR, 0, 1e4);
    for (int i = 0; i < DR / 2; i++) /* position 0: no rotation, only de-interleaving */
        CHECK(y[i] == x[2 * i] && y[i + DR / 2] == x[2 * i + 1], "pos 0 de-interleaves (i=%d)", i);
    /* Scores depend only on the distance: <rope(q, m), rope(k, n)> = <rope(q, m+3), rope(k, n+3)>. */
    float q[DR], k[DR], q2[DR], k2[DR];
    for (int i = 0; i < DR; i++) {
        q[i] = sinf((float)i);
        k[i] = cosf(2.0f * (float)i);
    }
    memcpy(q2, q, sizeof q);
    memcpy(k2, k, sizeof k);
    lc_rope(q, DR, 7, 1e4);
    lc_rope(k, DR, 2, 1e4);
    lc_rope(q2, DR, 10, 1e4);
    lc_rope(k2, DR, 5, 1e4);
    CHECK(fabsf(lc_dot(q, k, DR) - lc_dot(q2, k2, DR)) < 1e-4f, "relative-position property");
    /* the rows of a run of positions (one per forward pass, shared by the layers): each the bits
     * of its own position's coefficients */
    float rows[5 * DR], one[DR];
    lc_rope_rows(rows, DR, 37, 5, 1e7);
    for (int p = 0; p < 5; p++) {
        lc_rope_coeffs(one, DR, 37 + p, 1e7);
        CHECK(!memcmp(rows + p * DR, one, sizeof one), "lc_rope_rows row %d = lc_rope_coeffs(%d)", p, 37 + p);
    }
}

static void test_norm_softmax(void) {
    float x[7] = {1, -2, 3, 0.5f, 4, -1, 2}, w[7] = {1, 1, 1, 1, 1, 1, 2}, y[7];
    lc_rmsnorm(y, x, w, 7, 1e-6f);
    double ms = 0;
    for (int i = 0; i < 6; i++) ms += (double)y[i] * y[i];
    ms += (double)(y[6] / 2) * (y[6] / 2);
    CHECK(fabs(ms / 7 - 1) < 1e-5, "rmsnorm output has unit RMS (%g)", ms / 7);
    float s[5] = {1000, 1001, 999, -INFINITY, 1000};
    lc_softmax(s, 5);
    double sum = 0;
    for (int i = 0; i < 5; i++) sum += s[i];
    CHECK(fabs(sum - 1) < 1e-6 && s[3] == 0 && s[1] > s[0], "softmax is stable and sums to 1");
    /* scaled in the pass: the same bits as scaling first, on every level and length (tails) */
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        for (int n = 1; n <= 77; n += 19) {
            float a[80], b[80];
            lc_rng r;
            lc_rng_seed(&r, (uint64_t)n);
            for (int i = 0; i < n; i++) a[i] = b[i] = lc_rng_normal(&r) * 9.0f;
            a[n / 2] = -INFINITY; /* a masked score */
            b[n / 2] = -INFINITY;
            const float scale = 0.1020620726f; /* 1 / sqrt(96) */
            for (int i = 0; i < n; i++) a[i] *= scale;
            lc_softmax(a, n);
            lc_softmax_scaled(b, n, scale);
            CHECK(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s: softmax_scaled(%d) differs from scaling first", levels[l], n);
        }
    }
    lc_kernels_select(orig);
}

/* Causal attention of one head on every level against a double-precision reference: odd head
 * dims (tails of the 16-lane vectors and 64-dim context tiles), no rope part, prompts after a
 * cached prefix (p0 > 0), lengths that are not whole 8-, 6- or 64-query tiles; probabilities
 * kept, with exact zeros past each query's last key. */
static void test_attention_levels(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const int64_t shapes[][5] = {{1, 0, 64, 32, 64}, {5, 3, 7, 5, 9}, {70, 0, 64, 32, 64}, {77, 13, 17, 0, 70}, {130, 2, 33, 16, 130}};
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t T = shapes[si][0], p0 = shapes[si][1], dn = shapes[si][2], dr = shapes[si][3], dv = shapes[si][4];
        const int64_t P = p0 + T, ldq = dn + dr + 3, ldk = dn + dv + 5, ldkr = dr + 1, ldc = dv + 2;
        const float scale = 1.0f / sqrtf((float)(dn + dr));
        float *q = malloc((size_t)(T * ldq) * sizeof *q), *k = malloc((size_t)(P * ldk) * sizeof *k);
        float *kr = malloc((size_t)(P * ldkr) * sizeof *kr), *ctx = malloc((size_t)(T * ldc) * sizeof *ctx);
        float *pk = malloc((size_t)(T * P) * sizeof *pk);
        double *ref = malloc((size_t)(T * dv) * sizeof *ref), *pref = malloc((size_t)(T * P) * sizeof *pref);
        lc_rng r;
        lc_rng_seed(&r, 40 + si);
        for (int64_t i = 0; i < T * ldq; i++) q[i] = lc_rng_normal(&r);
        for (int64_t i = 0; i < P * ldk; i++) k[i] = lc_rng_normal(&r);
        for (int64_t i = 0; i < P * ldkr; i++) kr[i] = lc_rng_normal(&r);
        double big = 0;
        for (int64_t t = 0; t < T; t++) {
            const int64_t n = p0 + t + 1;
            double mx = -INFINITY, sum = 0;
            for (int64_t u = 0; u < n; u++) {
                double d = 0;
                for (int64_t i = 0; i < dn; i++) d += (double)q[t * ldq + i] * k[u * ldk + i];
                for (int64_t i = 0; i < dr; i++) d += (double)q[t * ldq + dn + i] * kr[u * ldkr + i];
                pref[t * P + u] = d * scale;
                mx = fmax(mx, d * scale);
            }
            for (int64_t u = 0; u < n; u++) sum += pref[t * P + u] = exp(pref[t * P + u] - mx);
            for (int64_t u = 0; u < P; u++) pref[t * P + u] = u < n ? pref[t * P + u] / sum : 0;
            for (int64_t d = 0; d < dv; d++) {
                double c = 0;
                for (int64_t u = 0; u < n; u++) c += pref[t * P + u] * k[u * ldk + dn + d];
                ref[t * dv + d] = c;
                big = fmax(big, fabs(c));
            }
        }
        for (int l = 0; l < 3; l++) {
            if (lc_kernels_select(levels[l]) != LC_OK) continue;
            for (int keep = 0; keep < 2; keep++) {
                for (int64_t i = 0; i < T * P; i++) pk[i] = NAN;
                CHECK(lc_k.attention(ctx, ldc, q, ldq, k, ldk, kr, ldkr, k + dn, ldk, T, p0, dn, dr, dv, scale, keep ? pk : NULL, P) == 0,
                      "%s: attention failed", levels[l]);
                double worst = 0, worst_p = 0;
                int zeros = 1;
                for (int64_t t = 0; t < T; t++) {
                    for (int64_t d = 0; d < dv; d++) worst = fmax(worst, fabs(ctx[t * ldc + d] - ref[t * dv + d]));
                    for (int64_t u = 0; keep && u < P; u++) {
                        worst_p = fmax(worst_p, fabs(pk[t * P + u] - pref[t * P + u]));
                        if (u > p0 + t && pk[t * P + u] != 0) zeros = 0;
                    }
                }
                CHECK(worst <= 1e-5 * big, "%s: attention T %lld p0 %lld dims %lld/%lld/%lld: ctx off by %.3g of %.3g", levels[l],
                      (long long)T, (long long)p0, (long long)dn, (long long)dr, (long long)dv, worst, big);
                CHECK(worst_p <= 1e-6 && zeros, "%s: attention T %lld: probabilities off by %.3g (zeros past the causal limit: %d)",
                      levels[l], (long long)T, worst_p, zeros);
            }
        }
        free(q);
        free(k);
        free(kr);
        free(ctx);
        free(pk);
        free(ref);
        free(pref);
    }
    lc_kernels_select(orig);
}

/* Gradients of a weight product (lc_matmul_backward, which the avx512 level runs on its
 * strided GEMM) on every level against a double-precision reference, adding into non-zero
 * dx/dW; and the strided GEMM itself in every operand orientation, = and +=. Odd shapes: tails
 * of the 16-lane tiles, the 14-row tiles, the 112-row blocks and the 256-long k chunks. */
static void test_backward_all_levels(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    const char *levels[] = {"scalar", "avx2", "avx512"};
    const int64_t shapes[][3] = {{13, 37, 3}, {129, 7, 5}, {200, 130, 65}, {1, 1, 2}, {24, 300, 17}, {300, 24, 260}};
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            const int64_t R = shapes[k][0], C = shapes[k][1], T = shapes[k][2];
            test_mat w;
            make_mat(&w, LC_DT_F32, R, C, 1, 1, 60 + k);
            float *x = malloc((size_t)(T * C) * 4), *dy = malloc((size_t)(T * R) * 4);
            float *dx = malloc((size_t)(T * C) * 4), *dw = malloc((size_t)(R * C) * 4);
            float *rx = malloc((size_t)(T * C) * 4), *rw = malloc((size_t)(R * C) * 4);
            lc_rng r;
            lc_rng_seed(&r, 19 + k);
            for (int64_t i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
            for (int64_t i = 0; i < T * R; i++) dy[i] = lc_rng_normal(&r);
            for (int64_t i = 0; i < T * C; i++) dx[i] = lc_rng_normal(&r);
            for (int64_t i = 0; i < R * C; i++) dw[i] = lc_rng_normal(&r);
            for (int64_t t = 0; t < T; t++)
                for (int64_t c = 0; c < C; c++) {
                    double a = dx[t * C + c];
                    for (int64_t i = 0; i < R; i++) a += (double)dy[t * R + i] * w.ref[i * C + c];
                    rx[t * C + c] = (float)a;
                }
            for (int64_t i = 0; i < R; i++)
                for (int64_t c = 0; c < C; c++) {
                    double a = dw[i * C + c];
                    for (int64_t t = 0; t < T; t++) a += (double)dy[t * R + i] * x[t * C + c];
                    rw[i * C + c] = (float)a;
                }
            lc_matmul_backward(dx, dw, dy, x, &w.m, T);
            double ex = t_rel_err(dx, rx, T * C), ew = t_rel_err(dw, rw, R * C);
            CHECK(ex < 1e-5 && ew < 1e-5, "%s [%lld x %lld] T=%lld: dx err %.2e, dW err %.2e", levels[l], (long long)R,
                  (long long)C, (long long)T, ex, ew);
            if (lc_k.sgemm) {
                /* out = A B^T in the four storage orientations of A and B, output both ways */
                const int64_t M = R, N = T, K = C; /* A = W [M, K], B = x [N, K] */
                float *at = malloc((size_t)(M * K) * 4), *bt = malloc((size_t)(N * K) * 4), *o = malloc((size_t)(M * N) * 4);
                float *ref = malloc((size_t)(M * N) * 4);
                for (int64_t i = 0; i < M; i++)
                    for (int64_t q = 0; q < K; q++) at[q * M + i] = w.ref[i * K + q];
                for (int64_t t = 0; t < N; t++)
                    for (int64_t q = 0; q < K; q++) bt[q * N + t] = x[t * K + q];
                for (int v = 0; v < 16; v++) {
                    const int a_t = v & 1, b_t = (v >> 1) & 1, o_t = (v >> 2) & 1, accumulate = v >> 3;
                    for (int64_t i = 0; i < M * N; i++) o[i] = accumulate ? (float)(i % 7) : -1.0f;
                    for (int64_t t = 0; t < N; t++)
                        for (int64_t i = 0; i < M; i++) {
                            double a = accumulate ? (double)(o_t ? (i * N + t) % 7 : (t * M + i) % 7) : 0;
                            for (int64_t q = 0; q < K; q++) a += (double)w.ref[i * K + q] * x[t * K + q];
                            ref[o_t ? i * N + t : t * M + i] = (float)a;
                        }
                    lc_k.sgemm(o, o_t ? 1 : M, o_t ? N : 1, accumulate, a_t ? at : (const float *)w.ref, a_t ? 1 : K,
                               a_t ? M : 1, b_t ? bt : x, b_t ? 1 : K, b_t ? N : 1, M, N, K);
                    double e = t_rel_err(o, ref, M * N);
                    CHECK(e < 1e-5, "%s sgemm M %lld N %lld K %lld (A%s B%s out%s%s): err %.2e", levels[l], (long long)M,
                          (long long)N, (long long)K, a_t ? "^T" : "", b_t ? "^T" : "", o_t ? "^T" : "",
                          accumulate ? " +=" : "", e);
                }
                free(at); free(bt); free(o); free(ref);
            }
            free(x); free(dy); free(dx); free(dw); free(rx); free(rw);
            free_mat(&w);
        }
        printf("    level %s: weight-product gradients%s checked\n", levels[l], lc_k.sgemm ? " and strided GEMM (8 layouts, = and +=)" : "");
    }
    lc_kernels_select(orig);
}

/* The optimizer kernels: AdamW gives the same bits on every level (the scalar loop's operation
 * order); the sum of squares agrees to rounding. */
static void test_adamw_sumsq_levels(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    enum { N = 1000 + 7 };
    float p0[N], g0[N], m0[N], v0[N], p[N], g[N], m[N], v[N], ps[N], gs_[N], ms[N], vs[N];
    lc_rng r;
    lc_rng_seed(&r, 31);
    double ref = 0;
    for (int i = 0; i < N; i++) {
        p0[i] = lc_rng_normal(&r);
        g0[i] = lc_rng_normal(&r) * 1e-2f;
        m0[i] = lc_rng_normal(&r) * 1e-3f;
        v0[i] = fabsf(lc_rng_normal(&r)) * 1e-5f;
        ref += (double)g0[i] * g0[i];
    }
    for (int clip = 0; clip < 2; clip++) {
        const lc_adamw_coef c = {.decay = 0.999f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .step_size = 0.01f / 0.19f,
                                 .bc2_sqrt = sqrtf(1.0f - 0.95f * 0.95f), .gscale = clip ? 0.37f : 1.0f};
        memcpy(ps, p0, sizeof ps); memcpy(gs_, g0, sizeof gs_); memcpy(ms, m0, sizeof ms); memcpy(vs, v0, sizeof vs);
        lc_kernels_scalar()->adamw(ps, gs_, ms, vs, N, &c);
        /* the scalar loop itself against the formula with the scaled gradient, element 5 */
        const float gk = g0[5] * c.gscale, mk = m0[5] + (gk - m0[5]) * (1.0f - c.beta1);
        const float vk = v0[5] * c.beta2 + (1.0f - c.beta2) * gk * gk;
        const float pk = p0[5] * c.decay - c.step_size * (mk / (sqrtf(vk) / c.bc2_sqrt + c.eps));
        CHECK(ps[5] == pk && ms[5] == mk && vs[5] == vk, "scalar AdamW (gscale %g): p %g vs %g", (double)c.gscale, ps[5], pk);
        const char *levels[] = {"scalar", "avx2", "avx512"};
        for (int l = 0; l < 3; l++) {
            if (lc_kernels_select(levels[l]) != LC_OK) continue;
            for (int64_t n = N - 16; n <= N; n += 8) { /* ragged tails; the rest of the arrays untouched */
                memcpy(p, p0, sizeof p); memcpy(g, g0, sizeof g); memcpy(m, m0, sizeof m); memcpy(v, v0, sizeof v);
                lc_k.adamw(p, g, m, v, n, &c);
                CHECK(!memcmp(p, ps, (size_t)n * 4) && !memcmp(m, ms, (size_t)n * 4) && !memcmp(v, vs, (size_t)n * 4),
                      "%s: AdamW on %lld elements differs from the scalar loop", levels[l], (long long)n);
                int zero = 1;
                for (int64_t i = 0; i < n; i++) zero &= g[i] == 0;
                CHECK(zero, "%s: AdamW left gradients behind", levels[l]);
                CHECK(!memcmp(p + n, p0 + n, (size_t)(N - n) * 4) && !memcmp(g + n, g0 + n, (size_t)(N - n) * 4),
                      "%s: AdamW wrote past %lld elements", levels[l], (long long)n);
            }
            CHECK(fabs(lc_k.sumsq(g0, N) - ref) <= 1e-12 * ref, "%s: sum of squares %.17g vs %.17g", levels[l],
                  lc_k.sumsq(g0, N), ref);
        }
    }
    lc_kernels_select(orig);
}

/* The exp family on every level against libm (double): exp within 4 ulp over [-87, 88], 0 for
 * -inf and below -104, NaN kept; SwiGLU and its backward to 1e-5 (relative to the
 * product's scale). Ragged lengths. */
static void test_exp_swiglu_levels(void) {
    char orig[16];
    snprintf(orig, sizeof orig, "%s", lc_k.name);
    enum { N = 2000 + 5 };
    static float x[N], y[N], g[N], u[N], da[N], o[N], dg[N], du[N];
    lc_rng r;
    lc_rng_seed(&r, 17);
    for (int i = 0; i < N; i++) {
        x[i] = -87.0f + 175.0f * (float)i / (float)(N - 1);
        g[i] = lc_rng_normal(&r) * 4.0f;
        u[i] = lc_rng_normal(&r);
        da[i] = lc_rng_normal(&r);
    }
    const char *levels[] = {"scalar", "avx2", "avx512"};
    for (int l = 0; l < 3; l++) {
        if (lc_kernels_select(levels[l]) != LC_OK) continue;
        const float scale = l == 1 ? 1.0f : 0.75f; /* scale 1 on one level: exp(x - shift) exactly */
        double sum = lc_k.expsum(y, x, scale, 0.5f, N), ref_sum = 0, worst = 0;
        for (int i = 0; i < N; i++) {
            double ref = exp((double)(x[i] * scale - 0.5f)); /* the argument as the kernels form it */
            ref_sum += (double)y[i];
            worst = fmax(worst, fabs(y[i] - ref) / ref);
        }
        CHECK(worst < 4 * 6e-8, "%s: exp worst relative error %.3g", levels[l], worst);
        CHECK(sum == ref_sum || fabs(sum - ref_sum) <= 1e-12 * ref_sum, "%s: exp sum %.17g vs %.17g", levels[l], sum, ref_sum);
        float sp[5] = {-INFINITY, -200.0f, NAN, 0.0f, 89.0f}, sq[5];
        lc_k.expsum(sq, sp, 1.0f, 0.0f, 5);
        CHECK(sq[0] == 0 && sq[1] == 0 && isnan(sq[2]) && sq[3] == 1.0f && sq[4] > 1e38f, "%s: exp specials %g %g %g %g %g",
              levels[l], sq[0], sq[1], sq[2], sq[3], sq[4]);
        for (int64_t n = N - 17; n <= N; n += 17) {
            lc_k.swiglu(o, g, u, n);
            memcpy(dg, g, sizeof dg); /* dg aliases g, as ffn_backward calls it */
            lc_k.swiglu_backward(dg, du, da, dg, u, n);
            double e1 = 0, e2 = 0, e3 = 0;
            for (int64_t i = 0; i < n; i++) {
                double s = 1.0 / (1.0 + exp(-(double)g[i])), silu = g[i] * s;
                double rdg = da[i] * u[i] * s * (1.0 + g[i] * (1.0 - s)), rdu = da[i] * silu;
                e1 = fmax(e1, fabs(o[i] - silu * u[i]) / (fabs(silu * u[i]) + 1e-6));
                e2 = fmax(e2, fabs(dg[i] - rdg) / (fabs(da[i] * u[i]) + 1e-6)); /* 1 + g(1 - s) cancels near g = -1.28 */
                e3 = fmax(e3, fabs(du[i] - rdu) / (fabs(rdu) + 1e-6));
            }
            CHECK(e1 < 1e-5 && e2 < 1e-5 && e3 < 1e-5, "%s n=%lld: swiglu err %.2g, backward dg %.2g du %.2g", levels[l],
                  (long long)n, e1, e2, e3);
        }
    }
    lc_kernels_select(orig);
}

/* GEMM scratch is per thread: threads that come and go (a server's, say) must hand their
 * buffers back. 600 short-lived threads one after another each run a GEMM-sized product;
 * every result must equal the main thread's (slots were once used up at 256 threads and the
 * products came back as NaN). */
typedef struct {
    const lc_mat *w;
    const float *x;
    float *out;
} gemm_job;
static void *gemm_thread(void *arg) {
    gemm_job *j = arg;
    lc_matmul(j->out, j->x, j->w, 20);
    return NULL;
}
static void test_gemm_scratch_threads(void) {
    enum { R = 37, C = 29, T = 20 };
    test_mat w;
    make_mat(&w, LC_DT_F32, R, C, 1, 1, 77);
    float x[T * C], ref[T * R], out[T * R];
    lc_rng r;
    lc_rng_seed(&r, 3);
    for (int i = 0; i < T * C; i++) x[i] = lc_rng_normal(&r);
    lc_matmul(ref, x, &w.m, T);
    int bad = 0;
    for (int i = 0; i < 600 && !bad; i++) {
        gemm_job j = {&w.m, x, out};
        pthread_t th;
        if (pthread_create(&th, NULL, gemm_thread, &j)) break;
        pthread_join(th, NULL);
        bad = memcmp(out, ref, sizeof out) != 0;
        CHECK(!bad, "thread %d: product differs from the main thread's", i);
    }
    free_mat(&w);
}

/* lc_parallel_steal: every item runs exactly once, whatever n and the team; when one thread
 * is slow, the others take over part of its share. */
typedef struct {
    _Atomic int *count;
    int *who;
    int64_t slow_below; /* items below this take a while when run by thread 0 */
} steal_probe;

static void steal_body(int64_t i, void *arg) {
    steal_probe *p = arg;
    atomic_fetch_add(&p->count[i], 1);
    p->who[i] = lc_thread_num();
    if (i < p->slow_below && lc_thread_num() == 0) {
        double t0 = lc_time_sec();
        while (lc_time_sec() - t0 < 2e-4) {
        }
    }
}

static void test_parallel_steal(void) {
    enum { N = 200 };
    _Atomic int count[N];
    int who[N];
    const int64_t sizes[] = {0, 1, 2, 3, 7, 64, 199, 200};
    for (int par = 0; par < 2; par++)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            const int64_t n = sizes[k];
            steal_probe p = {count, who, par ? n / 2 : 0};
            for (int i = 0; i < N; i++) atomic_init(&count[i], 0);
            lc_parallel_steal(par, n, steal_body, &p);
            int bad = 0;
            for (int64_t i = 0; i < N; i++) bad += atomic_load(&count[i]) != (i < n ? 1 : 0);
            CHECK(!bad, "par %d n %lld: %d items run other than once", par, (long long)n, bad);
        }
    /* thread 0's share (the first half) is slow: with two threads or more, another takes part of it */
    if (lc_max_threads() >= 2) {
        steal_probe p = {count, who, N / 2};
        for (int i = 0; i < N; i++) atomic_init(&count[i], 0);
        lc_parallel_steal(1, N, steal_body, &p);
        int taken = 0;
        for (int i = 0; i < N / 2; i++) taken += who[i] != 0;
        CHECK(taken > 0, "no item of the slow thread's share was taken over");
        char msg[96];
        snprintf(msg, sizeof msg, "%d of the slow thread's %d items run by another thread", taken, N / 2);
        t_note(msg);
    }
}

/* lc_team_barrier: no thread passes round r before every one has written its round-r value
 * (the one that writes last is made late on purpose), and what each wrote before is seen. The
 * _ahead form prefetches a buffer while it waits, which changes nothing else. */
static void test_team_barrier(void) {
    enum { ROUNDS = 300, MAXT = 64 };
    const int threads = LC_MIN(lc_max_threads(), MAXT);
    lc_team_slot *team = lc_aligned_alloc((size_t)threads * sizeof *team, "test barrier");
    static uint8_t ahead[1 << 16];
    int val[MAXT], bad = 0, teams = 0;
    if (!team) return;
    lc_team_init(team, threads);
#pragma omp parallel num_threads(threads) reduction(+ : bad)
    {
        const int id = lc_thread_num(), nt = lc_num_threads();
        if (id == 0) teams = nt;
        for (int r = 1; r <= ROUNDS; r++) {
            if (id == r % nt) { /* the late one */
                double t0 = lc_time_sec();
                while (lc_time_sec() - t0 < 2e-5) {
                }
            }
            val[id] = r;
            if (r & 1) lc_team_barrier(team, id, nt);
            else {
                const lc_prefetch_range half[2] = {{ahead, sizeof ahead / 2}, {ahead + sizeof ahead / 2, sizeof ahead / 2}};
                lc_team_barrier_ahead(team, id, nt, half, 2);
            }
            for (int k = 0; k < nt; k++) bad += val[k] != r;
            lc_team_barrier(team, id, nt); /* all have checked before anyone writes again */
        }
    }
    CHECK(bad == 0, "%d stale values seen after the barrier (%d threads, %d rounds)", bad, teams, ROUNDS);
    lc_free(team);
}

/* lc_team_scope / lc_team_run: each call runs once on every thread of the standing team, each
 * with its own number and the team's size, with `omp for` (and its barrier) binding to that team;
 * inside a call a thread counts as inside a region, outside its calls the leader counts as
 * outside any (so a product there is shared out); a product gives the same bits inside a scope
 * as outside; lc_team_run outside a scope runs the same calls on a fresh region. */
enum { PROBE_T = 64, PROBE_N = 1000 };
typedef struct {
    int calls[PROBE_T], inside_bad[PROBE_T], size_bad[PROBE_T];
    int loop[PROBE_N];
    int team;
} scope_probe;

static void scope_probe_call(void *arg) {
    scope_probe *p = arg;
    const int id = lc_thread_num(), nt = lc_num_threads();
    if (id >= PROBE_T) return;
    p->calls[id]++;
    p->inside_bad[id] += !lc_in_parallel();
    p->size_bad[id] += nt != p->team;
#pragma omp for schedule(static)
    for (int i = 0; i < PROBE_N; i++) p->loop[i]++;
}

typedef struct {
    scope_probe *probe;
    int rounds, leader_bad;
    const lc_mat *w;
    const float *x;
    float *out;
} scope_probe_body;

static void scope_probe_run(void *arg) {
    scope_probe_body *b = arg;
    for (int r = 0; r < b->rounds; r++) {
        b->leader_bad += lc_in_parallel() || lc_num_threads() != 1 || lc_max_threads() != b->probe->team;
        lc_team_run(scope_probe_call, b->probe);
    }
    lc_matmul(b->out, b->x, b->w, 1);
}

static void test_team_scope(void) {
    enum { ROUNDS = 200, ROWS = 300, COLS = 512 };
    const int team = lc_max_threads();
    if (team > PROBE_T) return;
    lc_rng rng;
    lc_rng_seed(&rng, 11);
    uint16_t *wb = malloc((size_t)ROWS * COLS * sizeof *wb);
    float *x = malloc(COLS * sizeof *x), *ref = malloc(ROWS * sizeof *ref), *got = malloc(ROWS * sizeof *got);
    scope_probe *probe = calloc(2, sizeof *probe);
    if (!wb || !x || !ref || !got || !probe) goto done;
    for (int i = 0; i < ROWS * COLS; i++) wb[i] = lc_f32_to_bf16(lc_rng_normal(&rng));
    for (int i = 0; i < COLS; i++) x[i] = lc_rng_normal(&rng);
    const lc_mat w = {.data = (const uint8_t *)wb, .dtype = LC_DT_BF16, .rows = ROWS, .cols = COLS};
    lc_matmul(ref, x, &w, 1);
    for (int way = 0; way < 2; way++) { /* 0: in a scope; 1: no scope, a region per call */
        scope_probe *p = &probe[way];
        p->team = team;
        scope_probe_body b = {p, ROUNDS, 0, &w, x, got};
        if (way == 0) lc_team_scope(scope_probe_run, &b);
        else scope_probe_run(&b);
        int calls_bad = 0, inside_bad = 0, size_bad = 0, loop_bad = 0;
        for (int t = 0; t < team; t++) {
            calls_bad += p->calls[t] != ROUNDS;
            inside_bad += p->inside_bad[t];
            size_bad += p->size_bad[t];
        }
        for (int i = 0; i < PROBE_N; i++) loop_bad += p->loop[i] != ROUNDS;
        CHECK(calls_bad == 0, "%s: %d of %d threads did not run every call once", way ? "no scope" : "scope", calls_bad,
              team);
        CHECK(inside_bad == 0 && size_bad == 0, "%s: inside a call %d threads saw no region, %d a wrong team size",
              way ? "no scope" : "scope", inside_bad, size_bad);
        CHECK(loop_bad == 0, "%s: `omp for` inside a call ran %d of %d indices other than once per call",
              way ? "no scope" : "scope", loop_bad, PROBE_N);
        CHECK(b.leader_bad == 0, "%s: between calls the leader counted as inside a region (%d rounds)",
              way ? "no scope" : "scope", b.leader_bad);
        CHECK(memcmp(got, ref, ROWS * sizeof *got) == 0, "%s: a product gave other bits than outside", way ? "no scope" : "scope");
    }
done:
    free(wb);
    free(x);
    free(ref);
    free(got);
    free(probe);
}

/* lc_team_ahead: inside a scope, every thread waiting for the next call gets the announcement
 * (its own number, the team's size, the arg as it was when announced: a copy), once per call;
 * a second announcement before the same call is dropped; outside a scope nothing happens. */
enum { AHEAD_ROUNDS = 20 };
typedef struct {
    _Atomic int seen[PROBE_T];
    _Atomic int id_bad, arg_bad;
    int team;
} ahead_probe;
static ahead_probe g_ahead;

static int ahead_probe_fn(const void *arg, int id, int nt, lc_prefetch_range *r) {
    const int *a = arg; /* {1234, team} as announced */
    if (id <= 0 || id >= nt || nt != g_ahead.team || id >= PROBE_T) atomic_fetch_add(&g_ahead.id_bad, 1);
    else atomic_fetch_add(&g_ahead.seen[id], 1);
    if (a[0] != 1234 || a[1] != g_ahead.team) atomic_fetch_add(&g_ahead.arg_bad, 1);
    r[0] = (lc_prefetch_range){(const uint8_t *)arg, 2 * sizeof(int)};
    return 1;
}

static void ahead_nop(void *arg) { (void)arg; }

static void ahead_body(void *arg) {
    (void)arg;
    for (int round = 0; round < AHEAD_ROUNDS; round++) {
        int a[2] = {1234, g_ahead.team}, b[2] = {99, 99};
        lc_team_ahead(ahead_probe_fn, a, sizeof a);
        a[0] = 99; /* the announcement holds its own copy */
        lc_team_ahead(ahead_probe_fn, b, sizeof b); /* dropped: the first one stands */
        for (double t0 = lc_time_sec(); lc_time_sec() - t0 < 2;) { /* until every waiting thread took it */
            int all = 1;
            for (int t = 1; t < g_ahead.team; t++) all &= atomic_load(&g_ahead.seen[t]) == round + 1;
            if (all) break;
        }
        lc_team_run(ahead_nop, NULL);
    }
}

static void test_team_ahead(void) {
    const int team = lc_max_threads();
    if (team < 2 || team > PROBE_T) return;
    g_ahead.team = team;
    lc_team_scope(ahead_body, NULL);
    int missed = 0;
    for (int t = 1; t < team; t++) missed += atomic_load(&g_ahead.seen[t]) != AHEAD_ROUNDS;
    CHECK(missed == 0, "%d of %d waiting threads did not get each of %d announcements once", missed, team - 1, AHEAD_ROUNDS);
    CHECK(g_ahead.id_bad == 0 && g_ahead.arg_bad == 0, "announcements: %d with a wrong thread or team, %d with a wrong arg",
          (int)g_ahead.id_bad, (int)g_ahead.arg_bad);
    const int a[2] = {1234, team};
    lc_team_ahead(ahead_probe_fn, a, sizeof a); /* outside a scope: nothing */
    lc_team_run(ahead_nop, NULL);
    CHECK(atomic_load(&g_ahead.seen[1]) == AHEAD_ROUNDS, "an announcement outside a scope reached a thread");
}

#ifdef LC_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* The scratch stack (lc_scratch_*): 64-byte-aligned blocks that keep their contents while later
 * ones (nested marks, chunks of several MB) come and go; a released mark gives its memory to the
 * next allocation (the same address: nothing leaks past a release); each thread has its own
 * stack; an absurd size fails with a message; under AddressSanitizer released memory and the
 * redzone after a block are poisoned. */
static void scratch_fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 31);
}
static int scratch_intact(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 31)) return 0;
    return 1;
}

/* One round of nested scratch blocks (each under its own mark), checked as they come and as
 * they go; their addresses into blk. */
static void scratch_round(unsigned char **blk, const size_t *sizes, int ns, int *misaligned, int *broken) {
    lc_scratch_mark marks[16];
    for (int i = 0; i < ns; i++) {
        marks[i] = lc_scratch_mark_get();
        blk[i] = lc_scratch_alloc(sizes[i], "test");
        CHECK(blk[i] != NULL, "scratch block %d (%zu bytes): %s", i, sizes[i], lc_last_error());
        if (!blk[i]) {
            lc_scratch_release(marks[0]);
            return;
        }
        *misaligned += ((uintptr_t)blk[i] & 63) != 0;
        scratch_fill(blk[i], sizes[i], (unsigned)i);
        for (int j = 0; j < i; j++) *broken += !scratch_intact(blk[j], sizes[j], (unsigned)j);
#ifdef LC_ASAN
        CHECK(__asan_address_is_poisoned(blk[i] + sizes[i]), "no redzone after a %zu-byte block", sizes[i]);
#endif
    }
    for (int i = ns - 1; i >= 0; i--) { /* innermost first; the outer blocks keep their bytes */
        lc_scratch_release(marks[i]);
        for (int j = 0; j < i; j++) *broken += !scratch_intact(blk[j], sizes[j], (unsigned)j);
#ifdef LC_ASAN
        CHECK(__asan_address_is_poisoned(blk[i]), "a released %zu-byte block is not poisoned", sizes[i]);
#endif
    }
}

static void test_scratch(void) {
    const size_t sizes[] = {1, 63, 64, 100, 4096, 3 << 20, 17, 9 << 20, 200};
    enum { NS = sizeof sizes / sizeof sizes[0], ROUNDS = 4 };
    unsigned char *blk[ROUNDS][NS];
    int misaligned = 0, broken = 0;
    for (int r = 0; r < ROUNDS; r++) scratch_round(blk[r], sizes, NS, &misaligned, &broken);
    CHECK(misaligned == 0, "%d scratch blocks not 64-byte aligned", misaligned);
    CHECK(broken == 0, "%d times a scratch block changed under a later one or a release", broken);
    /* released memory is used again: after the first rounds (chunks growing to fit the round)
     * every round gets the same blocks, no new chunks */
    CHECK(!memcmp(blk[ROUNDS - 2], blk[ROUNDS - 1], sizeof blk[0]), "rounds %d and %d got different blocks", ROUNDS - 1,
          ROUNDS);
    const lc_scratch_mark m0 = lc_scratch_mark_get();
    unsigned char *base = lc_scratch_alloc(64, "test"); /* a release inside a chunk: its space comes back */
    const lc_scratch_mark m1 = lc_scratch_mark_get();
    unsigned char *p1 = lc_scratch_alloc(100, "test");
    lc_scratch_release(m1);
    unsigned char *p2 = lc_scratch_alloc(100, "test");
    CHECK(base && p1 && p1 == p2, "a block after a release inside a chunk at %p, not %p", (void *)p2, (void *)p1);
    lc_scratch_release(m0);
    CHECK(lc_scratch_alloc(SIZE_MAX - 10, "an absurd block") == NULL && strstr(lc_last_error(), "an absurd block"),
          "an absurd scratch size: %s", lc_last_error());
    lc_scratch_release(m0);
    int other = 0;
#pragma omp parallel num_threads(2) reduction(+ : other)
    { /* every thread its own stack: blocks of two threads never overlap */
        const lc_scratch_mark m = lc_scratch_mark_get();
        unsigned char *p = lc_scratch_alloc(1 << 16, "test");
        if (p) scratch_fill(p, 1 << 16, 7u + (unsigned)lc_thread_num());
#pragma omp barrier
        other += !p || !scratch_intact(p, 1 << 16, 7u + (unsigned)lc_thread_num());
        lc_scratch_release(m);
    }
    CHECK(other == 0, "a thread's scratch block was written by another");
}

void suite_kernels(void) {
    RUN(test_parallel_steal);
    RUN(test_team_barrier);
    RUN(test_team_scope);
    RUN(test_team_ahead);
    RUN(test_scratch);
    RUN(test_fp8_roundtrip);
    RUN(test_half_roundtrip);
    RUN(test_matmul_all_dtypes);
    RUN(test_blas_matches_row_kernels);
    RUN(test_backward_all_levels);
    RUN(test_adamw_sumsq_levels);
    RUN(test_exp_swiglu_levels);
    RUN(test_gemm_swiglu);
    RUN(test_gemm_scratch_threads);
    RUN(test_quant_roundtrip);
    RUN(test_dots_equal_dot);
    RUN(test_batch_invariance);
    RUN(test_matmul_many);
    RUN(test_row_plan_first_ranges);
    RUN(test_rowdotn);
    RUN(test_fp8_nan_rows);
    RUN(test_rope);
    RUN(test_norm_softmax);
    RUN(test_attention_levels);
}
