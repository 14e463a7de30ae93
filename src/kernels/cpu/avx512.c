/* avx512.c — AVX-512 kernels, chosen at run time when the CPU has AVX-512 F/BW/VL/DQ:
 *
 * - rowdots: one stored weight row (F32, BF16, F16, FP8-e4m3 with block scales, Q8_0, Q4_0)
 *   against up to 8 tokens, converting the row in registers as it streams from memory (decode
 *   is memory-bound: each weight byte is read once, never written back as f32).
 * - gemm: out[T, N] = x[T, K] W[N, K]^T for prefill. Tokens go in vector lanes: x is packed
 *   once per call into tiles of 32 (or 16) tokens [K][32]; the weights, dequantised one block
 *   of rows at a time into f32 (F32 weights are read in place), are broadcast one scalar at a
 *   time. A 14-row x 32-token register tile does 28 FMAs per k.
 *
 * Every output is one FMA chain over k (or over blocks of k, the same for every token), so a
 * token's result does not depend on how many tokens share the call or on the thread count. */
#include "../kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
#define INLINE __attribute__((always_inline)) inline

int lc_cpu_has_avx512(void) {
    __builtin_cpu_init();
    return lc_cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

/* The mask of the first n of 16 lanes (all 16 from n = 16 on). */
static INLINE __mmask16 first_lanes(int64_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* ---- loading 16 weights as f32 (n < 16: only the first n, the rest 0) ---- */

AVX512 static INLINE __m512 load_f32(const uint8_t *p, int64_t c, int n) {
    const float *f = (const float *)(const void *)p + c;
    return n >= 16 ? _mm512_loadu_ps(f) : _mm512_maskz_loadu_ps(first_lanes(n), f);
}
AVX512 static INLINE __m512 load_bf16(const uint8_t *p, int64_t c, int n) {
    const void *q = p + 2 * c;
    __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)q) : _mm256_maskz_loadu_epi16(first_lanes(n), q);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
AVX512 static INLINE __m512 load_f16(const uint8_t *p, int64_t c, int n) {
    const void *q = p + 2 * c;
    __m256i h = n >= 16 ? _mm256_loadu_si256((const __m256i *)q) : _mm256_maskz_loadu_epi16(first_lanes(n), q);
    return _mm512_cvtph_ps(h);
}
/* FP8 e4m3fn: (bits & 0x7f) << 20 is an f32 with the same exponent and mantissa but bias 127
 * instead of 7, so times 2^120 it is the value (subnormals included); 0x7f/0xff are NaN. */
AVX512 static INLINE __m512 load_fp8(const uint8_t *p, int64_t c, int n) {
    const void *q = p + c;
    __m128i b = n >= 16 ? _mm_loadu_si128((const __m128i *)q) : _mm_maskz_loadu_epi8(first_lanes(n), q);
    __m512i v = _mm512_cvtepu8_epi32(b), mag = _mm512_and_si512(v, _mm512_set1_epi32(0x7f));
    __m512i bits = _mm512_or_si512(_mm512_slli_epi32(mag, 20), _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0x80)), 24));
    __m512 f = _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(0x1p120f));
    __mmask16 nan = _mm512_cmpeq_epi32_mask(mag, _mm512_set1_epi32(0x7f));
    return _mm512_mask_blend_ps(nan, f, _mm512_set1_ps(__builtin_nanf("")));
}

/* ---- dot products: a row of 16-wide steps, two accumulators, per token ---- */

/* acc[t] += w[c0..c1) . x_t[c0..c1) with w loaded by LOAD; steps of 32 then a masked tail. */
#define ROW_SPAN(LOAD, NT, p, c0, c1, x, ld_x, acc0, acc1)                                            \
    do {                                                                                          \
        int64_t c_ = (c0);                                                                        \
        for (; c_ + 32 <= (c1); c_ += 32) {                                                       \
            __m512 w0 = LOAD(p, c_, 16), w1 = LOAD(p, c_ + 16, 16);                               \
            _Pragma("GCC unroll 8")                                                               \
            for (int t = 0; t < NT; t++) {                                                        \
                acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + t * ld_x + c_), acc0[t]);       \
                acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + t * ld_x + c_ + 16), acc1[t]);  \
            }                                                                                     \
        }                                                                                         \
        for (; c_ < (c1); c_ += 16) {                                                             \
            int n_ = (int)LC_MIN(16, (c1)-c_);                                                    \
            __mmask16 m_ = first_lanes(n_);                                                       \
            __m512 w0 = LOAD(p, c_, n_);                                                          \
            _Pragma("GCC unroll 8")                                                               \
            for (int t = 0; t < NT; t++)                                                          \
                acc0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m_, x + t * ld_x + c_), acc0[t]); \
        }                                                                                         \
    } while (0)

/* CALL for tokens [t, t + nt_) of T: groups of 4, then the last 1-3 in one pass (nt_ is a
 * constant in each, so the inlined row kernel keeps its sums in registers). */
#define BY_TOKEN_GROUPS(T, ...)                                                                   \
    do {                                                                                        \
        int64_t t = 0;                                                                          \
        for (; t + 4 <= (T); t += 4) {                                                          \
            const int nt_ = 4;                                                                  \
            __VA_ARGS__;                                                                        \
        }                                                                                       \
        switch ((T) - t) {                                                                      \
        case 3: { const int nt_ = 3; __VA_ARGS__; } break;                                      \
        case 2: { const int nt_ = 2; __VA_ARGS__; } break;                                      \
        case 1: { const int nt_ = 1; __VA_ARGS__; } break;                                      \
        default: break;                                                                         \
        }                                                                                       \
    } while (0)

/* CALL with ns_ the constant 1-4 that ns is (the side-by-side kernels' loops over their streams
 * unroll into registers for each count). */
#define BY_STREAM_COUNT(ns, ...)                                                                  \
    do {                                                                                        \
        switch (ns) {                                                                           \
        case 4: { const int ns_ = 4; __VA_ARGS__; } break;                                      \
        case 3: { const int ns_ = 3; __VA_ARGS__; } break;                                      \
        case 2: { const int ns_ = 2; __VA_ARGS__; } break;                                      \
        default: { const int ns_ = 1; __VA_ARGS__; } break;                                     \
        }                                                                                       \
    } while (0)

#define DEFINE_ROWDOTS(NAME, LOAD, BYTES)                                                                      \
    AVX512 static INLINE void NAME##_n(float *out, int64_t ld_out, const uint8_t *p, const float *x, int64_t ld_x, \
                                       int64_t n, const int NT) {                                             \
        __m512 a0[8], a1[8];                                                                                  \
        _Pragma("GCC unroll 8")                                                                               \
        for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();                                     \
        ROW_SPAN(LOAD, NT, p, 0, n, x, ld_x, a0, a1);                                                         \
        _Pragma("GCC unroll 8")                                                                               \
        for (int t = 0; t < NT; t++) out[t * ld_out] = _mm512_reduce_add_ps(_mm512_add_ps(a0[t], a1[t]));     \
    }                                                                                                         \
    AVX512 static void NAME(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x, \
                            int64_t T) {                                                                      \
        const uint8_t *p = w->data + (size_t)(r * w->cols) * (BYTES);                                         \
        BY_TOKEN_GROUPS(T, NAME##_n(out + t * ld_out, ld_out, p, x + t * ld_x, ld_x, w->cols, nt_));          \
    }

DEFINE_ROWDOTS(rowdots_f32, load_f32, 4)
DEFINE_ROWDOTS(rowdots_bf16, load_bf16, 2)
DEFINE_ROWDOTS(rowdots_f16, load_f16, 2)

/* How far ahead (bytes) rowdotn prefetches each of its streams. The hardware prefetcher alone
 * keeps too few lines in flight for a stream of a few hundred KB (a decode product's share):
 * with these prefetches decode runs 12-27% faster here (docs/PERFORMANCE.md, session 16);
 * 1-2 KB ahead all do about as well, 512 B or 4 KB worse. */
#define ROW_AHEAD 1536

/* NS (1-4) rows of w at T = 1 side by side, NS memory streams: rows r[q] + i, i < n, into
 * out[q][i]; the streams' steps of 32 interleaved (each prefetching ROW_AHEAD bytes on), then
 * each row's rest: every row gets the FMAs, in the order, of NAME##_n with NT = 1. */
#define DEFINE_ROWDOTN(NAME, LOAD, BYTES)                                                                       \
    AVX512 static INLINE void NAME##_k(float *const *out, const lc_mat *w, const int64_t *r, const float *x,  \
                                       int64_t n, const int NS) {                                             \
        const size_t rb = (size_t)w->cols * (BYTES);                                                          \
        const int64_t body = w->cols / 32 * 32;                                                               \
        const uint8_t *p[LC_ROW_STREAMS];                                                                     \
        _Pragma("GCC unroll 4")                                                                               \
        for (int q = 0; q < NS; q++) p[q] = w->data + (size_t)r[q] * rb;                                      \
        for (int64_t i = 0; i < n; i++) {                                                                     \
            __m512 a0[LC_ROW_STREAMS], a1[LC_ROW_STREAMS];                                                    \
            _Pragma("GCC unroll 4")                                                                           \
            for (int q = 0; q < NS; q++) a0[q] = a1[q] = _mm512_setzero_ps();                                 \
            for (int64_t c = 0; c < body; c += 32) {                                                          \
                const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);                   \
                _Pragma("GCC unroll 4")                                                                       \
                for (int q = 0; q < NS; q++) {                                                                \
                    _Pragma("GCC unroll 2")                                                                   \
                    for (int l = 0; l < (BYTES) / 2; l++) /* the lines this step reads, ROW_AHEAD on */        \
                        _mm_prefetch((const char *)p[q] + c * (BYTES) + ROW_AHEAD + 64 * l, _MM_HINT_NTA);     \
                    a0[q] = _mm512_fmadd_ps(LOAD(p[q], c, 16), x0, a0[q]);                                    \
                    a1[q] = _mm512_fmadd_ps(LOAD(p[q], c + 16, 16), x1, a1[q]);                               \
                }                                                                                             \
            }                                                                                                 \
            _Pragma("GCC unroll 4")                                                                           \
            for (int q = 0; q < NS; q++) {                                                                    \
                ROW_SPAN(LOAD, 1, p[q], body, w->cols, x, 0, (a0 + q), (a1 + q));                             \
                out[q][i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[q], a1[q]));                                \
                p[q] += rb;                                                                                   \
            }                                                                                                 \
        }                                                                                                     \
    }                                                                                                         \
    AVX512 static void NAME(float *const *out, const lc_mat *w, const int64_t *r, int ns, const float *x,      \
                            int64_t n) {                                                                      \
        BY_STREAM_COUNT(ns, NAME##_k(out, w, r, x, n, ns_));                                                  \
    }
DEFINE_ROWDOTN(rowdotn_f32, load_f32, 4)
DEFINE_ROWDOTN(rowdotn_bf16, load_bf16, 2)
DEFINE_ROWDOTN(rowdotn_f16, load_f16, 2)

/* Transposed product out[c] = sum_i x[i] w[r0 + i, c] for the formats without block scales:
 * up to 128 columns of sums held in registers (a constant count: a variable one would keep
 * them in memory) while the rows stream past, each row converted as it loads. Each sum runs
 * over i in order, one FMA per row: the bits of row() then axpy. */
#define MATVEC_T_SPAN(LOAD, BYTES, NV, n_last)                                                      \
    do {                                                                                            \
        __m512 acc[NV];                                                                             \
        for (int j = 0; j < NV; j++) acc[j] = _mm512_setzero_ps();                                  \
        for (int64_t i = 0; i < n_rows; i++) {                                                      \
            const uint8_t *p = w->data + (size_t)((r0 + i) * C) * (BYTES);                          \
            const __m512 xi = _mm512_set1_ps(x[i]);                                                 \
            _Pragma("GCC unroll 16")                                                                \
            for (int j = 0; j < NV; j++) acc[j] = _mm512_fmadd_ps(xi, LOAD(p, c0 + 16 * j, j < NV - 1 ? 16 : (n_last)), acc[j]); \
        }                                                                                           \
        for (int j = 0; j < NV; j++) _mm512_mask_storeu_ps(out + c0 + 16 * j, first_lanes(j < NV - 1 ? 16 : (n_last)), acc[j]); \
    } while (0)
#define DEFINE_MATVEC_T(NAME, LOAD, BYTES)                                                                 \
    AVX512 static void NAME(float *out, const float *x, const lc_mat *w, int64_t r0, int64_t n_rows) {     \
        const int64_t C = w->cols;                                                                     \
        int64_t c0 = 0;                                                                                \
        for (; c0 + 256 <= C; c0 += 256) MATVEC_T_SPAN(LOAD, BYTES, 16, 16);                           \
        for (; c0 + 128 <= C; c0 += 128) MATVEC_T_SPAN(LOAD, BYTES, 8, 16);                            \
        for (; c0 < C; c0 += 16) MATVEC_T_SPAN(LOAD, BYTES, 1, (int)LC_MIN(16, C - c0));               \
    }
DEFINE_MATVEC_T(matvec_t_f32, load_f32, 4)
DEFINE_MATVEC_T(matvec_t_bf16, load_bf16, 2)
DEFINE_MATVEC_T(matvec_t_f16, load_f16, 2)

static void (*g_matvec_t_other)(float *, const float *, const lc_mat *, int64_t, int64_t); /* block-scaled formats */
static void matvec_t_avx512(float *out, const float *x, const lc_mat *w, int64_t r0, int64_t n_rows) {
    switch (w->dtype) {
    case LC_DT_F32: matvec_t_f32(out, x, w, r0, n_rows); break;
    case LC_DT_BF16: matvec_t_bf16(out, x, w, r0, n_rows); break;
    case LC_DT_F16: matvec_t_f16(out, x, w, r0, n_rows); break;
    default: g_matvec_t_other(out, x, w, r0, n_rows); break;
    }
}

/* FP8 in the row kernels: 32 weights at p + c as f32 times 2^-8. An e4m3 code's magnitude bits
 * shifted left 7 are an f16 with the same mantissa and an exponent bias 8 larger (15 against
 * 7), subnormals included: sign-extend each byte to 16 bits, shift left 7 (the sign lands in
 * bit 15 and bit 14), clear bit 14, convert f16 -> f32 — exact, 6 operations for 32 weights
 * where load_fp8 takes 18. The block scale is taken times 2^8, so each row's sums are the ones
 * of load_fp8's values scaled by a power of two: the same bits (as long as nothing underflows
 * to an f32 subnormal: below 1e-36). The codes 0x7f/0xff (NaN) decode to a finite value here;
 * *nan gathers the max of (code | 0x80), 0xff in a lane when a NaN went by. */
AVX512 static INLINE void load_fp8_32(const uint8_t *p, int64_t c, __m512 *w0, __m512 *w1, __m256i *nan) {
    const __m256i raw = _mm256_loadu_si256((const __m256i *)(const void *)(p + c));
    const __m512i h = _mm512_and_si512(_mm512_slli_epi16(_mm512_cvtepi8_epi16(raw), 7), _mm512_set1_epi16((short)0xbfff));
    *w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    *nan = _mm256_max_epu8(*nan, _mm256_or_si256(raw, _mm256_set1_epi8((char)0x80)));
}
/* load_fp8 times 2^-8 (exact; NaN stays NaN): the tails of a row, in steps of 16. */
AVX512 static INLINE __m512 load_fp8_tail(const uint8_t *p, int64_t c, int n) {
    return _mm512_mul_ps(load_fp8(p, c, n), _mm512_set1_ps(0x1p-8f));
}
/* A NaN among the codes gathered by load_fp8_32? */
AVX512 static INLINE int fp8_saw_nan(__m256i nan) {
    return _mm256_cmpeq_epi8_mask(nan, _mm256_set1_epi8((char)0xff)) != 0;
}

/* FP8 with [block_rows, block_cols] scales: per column block, the plain sum (steps of 32 through
 * load_fp8_32, the rest in 16s), then times its scale (times 2^8). */
AVX512 static INLINE void rowdots_fp8_n(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x,
                                        int64_t ld_x, const int NT) {
    const uint8_t *p = w->data + (size_t)(r * w->cols);
    const int64_t C = w->cols, bc = w->block_cols;
    const float *scale = w->scale_inv + (r / w->block_rows) * ((C + bc - 1) / bc);
    __m512 tot[8], a0[8], a1[8], f0, f1;
    __m256i nan = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) tot[t] = _mm512_setzero_ps();
    for (int64_t c0 = 0, b = 0; c0 < C; c0 += bc, b++) {
        const int64_t c1 = LC_MIN(c0 + bc, C), body = c0 + (c1 - c0) / 32 * 32;
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
        for (int64_t c = c0; c < body; c += 32) {
            load_fp8_32(p, c, &f0, &f1, &nan);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                a0[t] = _mm512_fmadd_ps(f0, _mm512_loadu_ps(x + t * ld_x + c), a0[t]);
                a1[t] = _mm512_fmadd_ps(f1, _mm512_loadu_ps(x + t * ld_x + c + 16), a1[t]);
            }
        }
        ROW_SPAN(load_fp8_tail, NT, p, body, c1, x, ld_x, a0, a1);
        __m512 s = _mm512_set1_ps(scale[b] * 0x1p8f);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) tot[t] = _mm512_fmadd_ps(_mm512_add_ps(a0[t], a1[t]), s, tot[t]);
    }
    const int saw_nan = fp8_saw_nan(nan);
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t * ld_out] = saw_nan ? NAN : _mm512_reduce_add_ps(tot[t]);
}
AVX512 static void rowdots_fp8(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x,
                               int64_t T) {
    BY_TOKEN_GROUPS(T, rowdots_fp8_n(out + t * ld_out, ld_out, w, r, x + t * ld_x, ld_x, nt_));
}

/* NS (1-4) FP8 rows side by side (see DEFINE_ROWDOTN): per column block the streams' steps of
 * 32 interleaved, each row's rest of the block, then each row's block sum times its scale (times
 * 2^8): every row gets the operations, in the order, of rowdots_fp8_n with NT = 1. */
AVX512 static INLINE void rowdotn_fp8_k(float *const *out, const lc_mat *w, const int64_t *r, const float *x, int64_t n,
                                        const int NS) {
    const int64_t C = w->cols, bc = w->block_cols, nbc = (C + bc - 1) / bc;
    const uint8_t *p[LC_ROW_STREAMS];
    for (int q = 0; q < NS; q++) p[q] = w->data + (size_t)(r[q] * C);
    for (int64_t i = 0; i < n; i++) {
        const float *scale[LC_ROW_STREAMS];
        __m512 tot[LC_ROW_STREAMS], a0[LC_ROW_STREAMS], a1[LC_ROW_STREAMS], f0, f1;
        __m256i nan[LC_ROW_STREAMS];
#pragma GCC unroll 4
        for (int q = 0; q < NS; q++) {
            scale[q] = w->scale_inv + ((r[q] + i) / w->block_rows) * nbc;
            tot[q] = _mm512_setzero_ps();
            nan[q] = _mm256_setzero_si256();
        }
        for (int64_t c0 = 0, b = 0; c0 < C; c0 += bc, b++) {
            const int64_t c1 = LC_MIN(c0 + bc, C), body = c0 + (c1 - c0) / 32 * 32;
#pragma GCC unroll 4
            for (int q = 0; q < NS; q++) a0[q] = a1[q] = _mm512_setzero_ps();
            for (int64_t c = c0; c < body; c += 32) {
                const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
#pragma GCC unroll 4
                for (int q = 0; q < NS; q++) {
                    _mm_prefetch((const char *)p[q] + c + ROW_AHEAD, _MM_HINT_NTA);
                    load_fp8_32(p[q], c, &f0, &f1, &nan[q]);
                    a0[q] = _mm512_fmadd_ps(f0, x0, a0[q]);
                    a1[q] = _mm512_fmadd_ps(f1, x1, a1[q]);
                }
            }
#pragma GCC unroll 4
            for (int q = 0; q < NS; q++) {
                ROW_SPAN(load_fp8_tail, 1, p[q], body, c1, x, 0, (a0 + q), (a1 + q));
                tot[q] = _mm512_fmadd_ps(_mm512_add_ps(a0[q], a1[q]), _mm512_set1_ps(scale[q][b] * 0x1p8f), tot[q]);
            }
        }
#pragma GCC unroll 4
        for (int q = 0; q < NS; q++) {
            out[q][i] = fp8_saw_nan(nan[q]) ? NAN : _mm512_reduce_add_ps(tot[q]);
            p[q] += C;
        }
    }
}
AVX512 static void rowdotn_fp8(float *const *out, const lc_mat *w, const int64_t *r, int ns, const float *x, int64_t n) {
    BY_STREAM_COUNT(ns, rowdotn_fp8_k(out, w, r, x, n, ns_));
}

/* Q8_0 / Q4_0: one block of 32 weights (n of them real) as two vectors of f32, scale applied. */
AVX512 static INLINE void load_q_block(const uint8_t *p, const uint8_t *sp, int64_t b, int n, int q4, __m512 *w0,
                                       __m512 *w1) {
    uint16_t h;
    memcpy(&h, sp + 2 * b, 2);
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(h));
    if (q4) { /* 16 bytes per block are always stored (padding decodes to 0) */
        /* (q - 8) * d for the 16 nibble values, then looked up: vpermps reads only the low 4
         * bits of each index, so the bytes need no masking (the same products as converting) */
        const __m512 table = _mm512_mul_ps(_mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7), d);
        const __m128i raw = _mm_loadu_si128((const __m128i *)(const void *)(p + b * (LC_QK / 2)));
        *w0 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(raw), table);
        *w1 = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm_srli_epi16(raw, 4)), table);
        return;
    }
    const void *q = p + b * LC_QK;
    const int n0 = n < 16 ? n : 16, n1 = n - n0;
    const __m512i lo = _mm512_cvtepi8_epi32(n0 == 16 ? _mm_loadu_si128((const __m128i *)q) : _mm_maskz_loadu_epi8(first_lanes(n0), q));
    const __m512i hi = n1 == 16 ? _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(const void *)((const uint8_t *)q + 16)))
                                : _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(first_lanes(n1), (const uint8_t *)q + 16));
    *w0 = _mm512_mul_ps(_mm512_cvtepi32_ps(lo), d);
    *w1 = _mm512_mul_ps(_mm512_cvtepi32_ps(hi), d);
}

AVX512 static INLINE void rowdots_q_n(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x,
                                      const int NT, const int q4) {
    const int64_t C = w->cols, nb = lc_q_blocks(C);
    const uint8_t *p = w->data + r * lc_mat_row_bytes(w), *sp = w->qscale + 2 * r * nb;
    __m512 a0[8], a1[8];
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) a0[t] = a1[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const int64_t c0 = b * LC_QK;
        const int n = (int)LC_MIN(LC_QK, C - c0);
        __m512 w0, w1;
        load_q_block(p, sp, b, n, q4, &w0, &w1);
        if (n == LC_QK)
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                a0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + t * ld_x + c0), a0[t]);
                a1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + t * ld_x + c0 + 16), a1[t]);
            }
        else {
            __mmask16 m0 = first_lanes(n), m1 = first_lanes(n > 16 ? n - 16 : 0);
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                a0[t] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + t * ld_x + c0), a0[t]);
                a1[t] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + t * ld_x + c0 + 16), a1[t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int t = 0; t < NT; t++) out[t * ld_out] = _mm512_reduce_add_ps(_mm512_add_ps(a0[t], a1[t]));
}
AVX512 static void rowdots_q8_0(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x,
                                int64_t T) {
    BY_TOKEN_GROUPS(T, rowdots_q_n(out + t * ld_out, ld_out, w, r, x + t * ld_x, ld_x, nt_, 0));
}
AVX512 static void rowdots_q4_0(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x,
                                int64_t T) {
    BY_TOKEN_GROUPS(T, rowdots_q_n(out + t * ld_out, ld_out, w, r, x + t * ld_x, ld_x, nt_, 1));
}
/* NS (1-4) Q8_0 / Q4_0 rows side by side (see DEFINE_ROWDOTN), block by block, weights and
 * scales each prefetched ahead: every row gets the FMAs, in the order, of rowdots_q_n with
 * NT = 1. */
AVX512 static INLINE void rowdotn_q_k(float *const *out, const lc_mat *w, const int64_t *r, const float *x, int64_t n,
                                      const int NS, const int q4) {
    const int64_t C = w->cols, nb = lc_q_blocks(C), rb = lc_mat_row_bytes(w), full = C / LC_QK;
    const int64_t bb = q4 ? LC_QK / 2 : LC_QK; /* bytes of weights per block */
    const uint8_t *p[LC_ROW_STREAMS], *sp[LC_ROW_STREAMS];
    for (int q = 0; q < NS; q++) {
        p[q] = w->data + r[q] * rb;
        sp[q] = w->qscale + 2 * r[q] * nb;
    }
    for (int64_t i = 0; i < n; i++) {
        __m512 a0[LC_ROW_STREAMS], a1[LC_ROW_STREAMS], w0, w1;
#pragma GCC unroll 4
        for (int q = 0; q < NS; q++) a0[q] = a1[q] = _mm512_setzero_ps();
        for (int64_t b = 0; b < full; b++) {
            const __m512 x0 = _mm512_loadu_ps(x + b * LC_QK), x1 = _mm512_loadu_ps(x + b * LC_QK + 16);
#pragma GCC unroll 4
            for (int q = 0; q < NS; q++) {
                _mm_prefetch((const char *)p[q] + b * bb + ROW_AHEAD, _MM_HINT_NTA);
                if (!(b & 15)) _mm_prefetch((const char *)sp[q] + 2 * b + ROW_AHEAD / 8, _MM_HINT_NTA);
                load_q_block(p[q], sp[q], b, LC_QK, q4, &w0, &w1);
                a0[q] = _mm512_fmadd_ps(w0, x0, a0[q]);
                a1[q] = _mm512_fmadd_ps(w1, x1, a1[q]);
            }
        }
#pragma GCC unroll 4
        for (int q = 0; q < NS; q++) {
            if (full < nb) { /* the last block, n < 32 real weights */
                const int nr = (int)(C - full * LC_QK);
                const __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr > 16 ? nr - 16 : 0);
                load_q_block(p[q], sp[q], full, nr, q4, &w0, &w1);
                a0[q] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m0, x + full * LC_QK), a0[q]);
                a1[q] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(m1, x + full * LC_QK + 16), a1[q]);
            }
            out[q][i] = _mm512_reduce_add_ps(_mm512_add_ps(a0[q], a1[q]));
            p[q] += rb;
            sp[q] += 2 * nb;
        }
    }
}
#define DEFINE_ROWDOTN_Q(NAME, Q4)                                                                               \
    AVX512 static void NAME(float *const *out, const lc_mat *w, const int64_t *r, int ns, const float *x, int64_t n) { \
        BY_STREAM_COUNT(ns, rowdotn_q_k(out, w, r, x, n, ns_, Q4));                                               \
    }
DEFINE_ROWDOTN_Q(rowdotn_q8_0, 0)
DEFINE_ROWDOTN_Q(rowdotn_q4_0, 1)
AVX512 static INLINE void row_q(float *dst, const lc_mat *w, int64_t r, const int q4) {
    const int64_t C = w->cols, nb = lc_q_blocks(C);
    const uint8_t *p = w->data + r * lc_mat_row_bytes(w), *sp = w->qscale + 2 * r * nb;
    for (int64_t b = 0; b < nb; b++) {
        const int64_t c0 = b * LC_QK;
        const int n = (int)LC_MIN(LC_QK, C - c0);
        __m512 w0, w1;
        load_q_block(p, sp, b, n, q4, &w0, &w1);
        _mm512_mask_storeu_ps(dst + c0, first_lanes(n), w0);
        if (n > 16) _mm512_mask_storeu_ps(dst + c0 + 16, first_lanes(n - 16), w1);
    }
}
AVX512 static void row_q8_0_avx512(float *dst, const lc_mat *w, int64_t r) { row_q(dst, w, r, 0); }
AVX512 static void row_q4_0_avx512(float *dst, const lc_mat *w, int64_t r) { row_q(dst, w, r, 1); }

/* Plain f32 dot products (attention, the row+dots fallback): the F32 row kernel itself. */
AVX512 static float dot_avx512(const float *a, const float *b, int64_t n) {
    float r;
    rowdots_f32_n(&r, 1, (const uint8_t *)a, b, n, n, 1);
    return r;
}
AVX512 static void dots_avx512(float *out, int64_t ld_out, const float *w, const float *x, int64_t ld_x, int64_t T,
                               int64_t n) {
    BY_TOKEN_GROUPS(T, rowdots_f32_n(out + t * ld_out, ld_out, (const uint8_t *)w, x + t * ld_x, ld_x, n, nt_));
}

AVX512 static void axpy_avx512(float *y, float a, const float *x, int64_t n) {
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 m = first_lanes(n - i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i)));
    }
}

/* exp(x) for 16 floats: x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts), e^r by the degree-7
 * polynomial 1 + r + r^2 p(r) (the Cephes expf coefficients), times 2^n by vscalefps. Below
 * -104 the result is 0 (as expf's rounds to), above 88.38 it saturates; NaN stays NaN. */
AVX512 static INLINE __m512 exp16(__m512 x) {
    const __m512 xc = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f)), _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 y = _mm512_scalef_ps(p, n);
    y = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x, _mm512_set1_ps(-104.0f), _CMP_GE_OQ), y); /* tiny, -inf, NaN: 0 */
    return _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x);                 /* NaN back */
}


AVX512 static double expsum_avx512(float *y, const float *x, float scale, float shift, int64_t n) {
    const __m512 sh = _mm512_set1_ps(shift), sc = _mm512_set1_ps(scale);
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = first_lanes(n - i);
        __m512 e = _mm512_maskz_mov_ps(mk, exp16(_mm512_sub_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(mk, x + i), sc), sh)));
        _mm512_mask_storeu_ps(y + i, mk, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

AVX512 static void swiglu_avx512(float *out, const float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = first_lanes(n - i);
        const __m512 gi = _mm512_maskz_loadu_ps(mk, g + i), ui = _mm512_maskz_loadu_ps(mk, u + i);
        const __m512 silu = _mm512_div_ps(gi, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gi))));
        _mm512_mask_storeu_ps(out + i, mk, _mm512_mul_ps(silu, ui));
    }
}

AVX512 static void swiglu_backward_avx512(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n) {
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = first_lanes(n - i);
        const __m512 gi = _mm512_maskz_loadu_ps(mk, g + i), ui = _mm512_maskz_loadu_ps(mk, u + i);
        const __m512 ai = _mm512_maskz_loadu_ps(mk, da + i);
        const __m512 sg = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), gi))));
        const __m512 d = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(ai, ui), sg),
                                       _mm512_add_ps(one, _mm512_mul_ps(gi, _mm512_sub_ps(one, sg))));
        _mm512_mask_storeu_ps(dg + i, mk, d);
        _mm512_mask_storeu_ps(du + i, mk, _mm512_mul_ps(ai, _mm512_mul_ps(gi, sg)));
    }
}

/* The same operations in the same order as adamw_scalar (no FMA contraction): equal bits. */
AVX512 static void adamw_avx512(float *p, float *g, float *m, float *v, int64_t n, const lc_adamw_coef *c) {
    const __m512 decay = _mm512_set1_ps(c->decay), b2 = _mm512_set1_ps(c->beta2), eps = _mm512_set1_ps(c->eps);
    const __m512 one_b1 = _mm512_set1_ps(1.0f - c->beta1), one_b2 = _mm512_set1_ps(1.0f - c->beta2);
    const __m512 ss = _mm512_set1_ps(c->step_size), bc2 = _mm512_set1_ps(c->bc2_sqrt), gs = _mm512_set1_ps(c->gscale);
    for (int64_t k = 0; k < n; k += 16) {
        const __mmask16 mk = first_lanes(n - k);
        __m512 pk = _mm512_maskz_loadu_ps(mk, p + k), gk = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, g + k), gs);
        __m512 mm = _mm512_maskz_loadu_ps(mk, m + k), vk = _mm512_maskz_loadu_ps(mk, v + k);
        pk = _mm512_mul_ps(pk, decay);
        mm = _mm512_add_ps(mm, _mm512_mul_ps(_mm512_sub_ps(gk, mm), one_b1));
        vk = _mm512_add_ps(_mm512_mul_ps(vk, b2), _mm512_mul_ps(_mm512_mul_ps(one_b2, gk), gk));
        __m512 denom = _mm512_add_ps(_mm512_div_ps(_mm512_sqrt_ps(vk), bc2), eps);
        pk = _mm512_sub_ps(pk, _mm512_mul_ps(ss, _mm512_div_ps(mm, denom)));
        _mm512_mask_storeu_ps(p + k, mk, pk);
        _mm512_mask_storeu_ps(m + k, mk, mm);
        _mm512_mask_storeu_ps(v + k, mk, vk);
        _mm512_mask_storeu_ps(g + k, mk, _mm512_setzero_ps());
    }
}

AVX512 static double sumsq_avx512(const float *x, int64_t n) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = first_lanes(n - i);
        __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
        __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        s0 = _mm512_fmadd_pd(lo, lo, s0);
        s1 = _mm512_fmadd_pd(hi, hi, s1);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

AVX512 static double dot3_avx512(const float *a, const float *b, const float *c, int64_t n) {
    __m512d s0 = _mm512_setzero_pd(), s1 = s0;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 mk = first_lanes(n - i);
        const __m512 va = _mm512_maskz_loadu_ps(mk, a + i), vb = _mm512_maskz_loadu_ps(mk, b + i),
                     vc = _mm512_maskz_loadu_ps(mk, c + i);
#define HALF(v, h) (h ? _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))) \
                      : _mm512_cvtps_pd(_mm512_castps512_ps256(v)))
        s0 = _mm512_add_pd(s0, _mm512_mul_pd(_mm512_mul_pd(HALF(va, 0), HALF(vb, 0)), HALF(vc, 0)));
        s1 = _mm512_add_pd(s1, _mm512_mul_pd(_mm512_mul_pd(HALF(va, 1), HALF(vb, 1)), HALF(vc, 1)));
#undef HALF
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
}

AVX512 static void row_bf16_avx512(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    for (int64_t c = 0; c < w->cols; c += 16) {
        int n = (int)LC_MIN(16, w->cols - c);
        _mm512_mask_storeu_ps(dst + c, first_lanes(n), load_bf16(p, c, n));
    }
}
AVX512 static void row_f16_avx512(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    for (int64_t c = 0; c < w->cols; c += 16) {
        int n = (int)LC_MIN(16, w->cols - c);
        _mm512_mask_storeu_ps(dst + c, first_lanes(n), load_f16(p, c, n));
    }
}

/* ---- GEMM (prefill) ---- */

#define GEMM_ROWS 14    /* weight rows per register tile */
#define GEMM_BLOCK 224  /* weight rows per task at most (16 tiles): dequantised together, one thread */
#define GEMM_KC 256     /* k per pass: a 32-token chunk of x (32 KiB) stays in L1 across the block */

/* C[r][0..32) += W[r, 0..K) x tokens, r < R: W rows (f32, ldw apart) times one or two packed
 * 16-token tiles xa, xb [K][16] (NV = 2: tokens 0..15 from xa, 16..31 from xb). C holds the
 * running sums between calls over consecutive k chunks, so each output stays one FMA chain. */
AVX512 static INLINE void gemm_tile(float *C, const float *W, int64_t ldw, const float *xa, const float *xb, int64_t K,
                                    const int R, const int NV, const int first) {
    __m512 a[GEMM_ROWS][2];
    for (int r = 0; r < R; r++) {
        a[r][0] = first ? _mm512_setzero_ps() : _mm512_load_ps(C + r * 32);
        a[r][1] = first ? _mm512_setzero_ps() : _mm512_load_ps(C + r * 32 + 16);
    }
    for (int64_t k = 0; k < K; k++) {
        __m512 x0 = _mm512_load_ps(xa + k * 16), x1 = NV == 2 ? _mm512_load_ps(xb + k * 16) : x0;
#pragma GCC unroll 14
        for (int r = 0; r < R; r++) {
            __m512 wv = _mm512_set1_ps(W[r * ldw + k]);
            a[r][0] = _mm512_fmadd_ps(wv, x0, a[r][0]);
            if (NV == 2) a[r][1] = _mm512_fmadd_ps(wv, x1, a[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        _mm512_store_ps(C + r * 32, a[r][0]);
        _mm512_store_ps(C + r * 32 + 16, a[r][1]);
    }
}

#define TILE_CASE(R_)                                                          \
    case R_:                                                                   \
        if (NV == 2) gemm_tile(C, W, ldw, xa, xb, K, R_, 2, first);             \
        else gemm_tile(C, W, ldw, xa, xb, K, R_, 1, first);                     \
        break;

AVX512 static void gemm_tile_any(float *C, const float *W, int64_t ldw, const float *xa, const float *xb, int64_t K,
                                 int R, int NV, int first) {
    switch (R) {
        TILE_CASE(1) TILE_CASE(2) TILE_CASE(3) TILE_CASE(4) TILE_CASE(5) TILE_CASE(6) TILE_CASE(7)
        TILE_CASE(8) TILE_CASE(9) TILE_CASE(10) TILE_CASE(11) TILE_CASE(12) TILE_CASE(13) TILE_CASE(14)
    default: break;
    }
}

/* Per-thread scratch kept between calls (prefill makes hundreds of products; fresh buffers
 * would fault their pages in every time). Grows to the largest size asked. Every buffer is also
 * listed in g_scratch, so it stays reachable (leak checkers) while its thread lives; when the
 * thread exits, a key destructor frees its buffers and gives their slots back. */
#define MAX_SCRATCH 1536 /* 256 threads of 6 buffers */
static float *g_scratch[MAX_SCRATCH];
static unsigned char g_slot_used[MAX_SCRATCH];
static pthread_mutex_t g_scratch_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_key_t g_scratch_key;
static pthread_once_t g_scratch_once = PTHREAD_ONCE_INIT;
typedef struct {
    float *p;
    size_t n;
    int slot; /* index in g_scratch + 1; 0 before the first allocation */
} scratch_buf;
typedef struct {
    scratch_buf xp, w;
    scratch_buf up;         /* gemm_dt: the up projection's sums */
    scratch_buf kt, vp, sc; /* attention: packed keys, values, scores */
} thread_scratch;
static _Thread_local thread_scratch tl_scratch;

static void scratch_release(void *arg) {
    thread_scratch *t = arg;
    scratch_buf *bufs[6] = {&t->xp, &t->w, &t->up, &t->kt, &t->vp, &t->sc};
    pthread_mutex_lock(&g_scratch_mu);
    for (int i = 0; i < 6; i++) {
        if (bufs[i]->slot) {
            g_scratch[bufs[i]->slot - 1] = NULL;
            g_slot_used[bufs[i]->slot - 1] = 0;
        }
        lc_free(bufs[i]->p);
        *bufs[i] = (scratch_buf){0};
    }
    pthread_mutex_unlock(&g_scratch_mu);
}
static void scratch_key_make(void) { pthread_key_create(&g_scratch_key, scratch_release); }

static float *scratch(scratch_buf *b, size_t n) {
    if (n <= b->n) return b->p;
    if (!b->slot) {
        pthread_once(&g_scratch_once, scratch_key_make);
        pthread_setspecific(g_scratch_key, &tl_scratch); /* free this thread's buffers when it exits */
        pthread_mutex_lock(&g_scratch_mu);
        for (int i = 0; i < MAX_SCRATCH && !b->slot; i++)
            if (!g_slot_used[i]) {
                g_slot_used[i] = 1;
                b->slot = i + 1;
            }
        pthread_mutex_unlock(&g_scratch_mu);
        if (!b->slot) {
            lc_error(LC_ERR_NOMEM, "GEMM/attention scratch: more than %d threads at once", MAX_SCRATCH / 6);
            return NULL;
        }
    }
    lc_free(b->p);
    b->p = g_scratch[b->slot - 1] = lc_aligned_alloc(n * sizeof *b->p, "GEMM scratch");
    b->n = b->p ? n : 0;
    return b->p;
}

/* r[j][l] <- r[l][j]: swap the off-diagonal 8 x 8 blocks, then 4 x 4 inside them, 2 x 2, 1 x 1.
 * Stage s pairs rows a and a + g (g = 8 >> s, a without g): row a keeps its lanes without g and
 * takes b's from below (t16_idx[s][0]), row b takes a's lanes with g and keeps its own ([s][1]).
 * Fully unrolled, so the 16 rows stay in registers. */
static const int32_t t16_idx[4][2][16] __attribute__((aligned(64))) = {
    {{0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23},
     {8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31}},
    {{0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27},
     {4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31}},
    {{0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29},
     {2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31}},
    {{0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30},
     {1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31}}};
AVX512 static INLINE void transpose16(__m512 r[16]) {
#pragma GCC unroll 4
    for (int s = 0; s < 4; s++) {
        const int g = 8 >> s;
        const __m512i ilo = _mm512_load_si512(t16_idx[s][0]), ihi = _mm512_load_si512(t16_idx[s][1]);
#pragma GCC unroll 16
        for (int a = 0; a < 16; a++) {
            if (a & g) continue;
            const __m512 x = r[a], y = r[a + g];
            r[a] = _mm512_permutex2var_ps(x, ilo, y);
            r[a + g] = _mm512_permutex2var_ps(x, ihi, y);
        }
    }
}

/* The A operand of a GEMM: rows of a stored weight matrix (any dtype, dequantised by row[]),
 * or f32 elements A(i, k) = a[i * ars + k * aks] (either stride may be 1: a transposed view). */
typedef struct {
    const lc_mat *w;
    int64_t r0;
    const float *a;
    int64_t ars, aks;
} gemm_a;

/* Rows i0..i0+n of A as f32 rows: in place (*ld = the row stride) when A is f32 with unit k
 * stride and rows not a multiple of 4 KiB apart (rows that far apart would share one L1 set),
 * else copied or dequantised into buf (*ld = ldw). */
AVX512 static const float *gemm_rows_a(float *buf, int64_t ldw, int64_t *ld, const gemm_a *A, int64_t i0, int64_t n, int64_t K) {
    const float *a = A->a ? A->a : A->w->dtype == LC_DT_F32 ? (const float *)(const void *)A->w->data : NULL;
    const int64_t rs = A->a ? A->ars : A->w->cols, r0 = A->a ? 0 : A->r0;
    if (a && (A->a ? A->aks == 1 : 1) && (rs * (int64_t)sizeof(float)) % 4096 != 0 && (uintptr_t)a % sizeof(float) == 0) {
        *ld = rs;
        return a + (r0 + i0) * rs;
    }
    *ld = ldw;
    if (A->w) {
        for (int64_t i = 0; i < n; i++) lc_k.row[A->w->dtype](buf + i * ldw, A->w, A->r0 + i0 + i);
    } else if (A->aks == 1) {
        for (int64_t i = 0; i < n; i++) memcpy(buf + i * ldw, A->a + (i0 + i) * A->ars, (size_t)K * sizeof *buf);
    } else if (A->ars == 1) { /* transposed (i contiguous): 16 x 16 blocks turned in registers */
        for (int64_t ib = 0; ib < n; ib += 16)
            for (int64_t kb = 0; kb < K; kb += 16) {
                const __mmask16 mi = first_lanes(n - ib), mk = first_lanes(K - kb);
                __m512 r[16];
                for (int j = 0; j < 16; j++)
                    r[j] = kb + j < K ? _mm512_maskz_loadu_ps(mi, A->a + (kb + j) * A->aks + i0 + ib) : _mm512_setzero_ps();
                transpose16(r);
                for (int64_t ii = 0; ii < LC_MIN(16, n - ib); ii++) _mm512_mask_storeu_ps(buf + (ib + ii) * ldw + kb, mk, r[ii]);
            }
    } else { /* general strides: walk k outside so the reads along i are the nearer ones */
        for (int64_t k = 0; k < K; k++) {
            const float *src = A->a + k * A->aks + i0 * A->ars;
            for (int64_t i = 0; i < n; i++) buf[i * ldw + k] = src[i * A->ars];
        }
    }
    return buf;
}

/* Out of memory inside a GEMM: outputs [i0, i0 + n) of all N tokens become NaN, so the failure
 * cannot pass unseen. */
static void gemm_poison(float *out, int64_t ots, int64_t ois, int64_t i0, int64_t n, int64_t N) {
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = i0; i < i0 + n; i++) out[t * ots + i * ois] = __builtin_nanf("");
}

/* One GEMM call: out[t * ots + i * ois] (+)= sum_k A(i, k) B(t, k) for i < M, t < N, with
 * B(t, k) = b[t * bts + k * bks]. B is packed once into 16-lane tiles xp; the work is cut into
 * (block of 112 rows) x (run of 32-token tiles) tasks, as many runs as it takes to give every
 * thread work. Each output is one FMA chain over k in chunks of GEMM_KC, whatever the cut:
 * results do not depend on the thread count or on N. */
typedef struct {
    float *out;
    int64_t ots, ois;
    int accumulate;
    const gemm_a *A;
    const gemm_a *A2;         /* NULL, or the up projection: out = silu(A B) * (A2 B) (no accumulate) */
    const float *b;
    int64_t bts, bks, M, N, K;
    float *xp;                /* [n_tiles][K][16] */
    int64_t block;            /* rows per block: 224 or 112 (see gemm_core) */
    int64_t n_pairs, runs, per_run;
    int64_t ldw;              /* row stride of copied A blocks: padded, rows exactly 4 KiB apart
                                 would all fall into the same L1 cache set */
    uint64_t id;              /* this call's number: a thread's next task on the same block reuses
                                 the rows it converted (gemm_task) */
} gemm_call;

/* The block a thread's buffer holds: call number and block index (0 = none). */
static _Thread_local struct {
    uint64_t id;
    int64_t bi, lda, lda2;
    const float *rows, *rows2;
} tl_block;
static _Atomic uint64_t g_gemm_calls;

/* B -> tile `tile` of 16 lanes: xp[tile][k][16], zero beyond N. */
AVX512 static void gemm_pack_tile(const gemm_call *g, int64_t tile) {
    const int64_t K = g->K, N = g->N, bts = g->bts, bks = g->bks;
    float *d = g->xp + tile * K * 16;
    const int64_t nt = LC_MIN(16, N - tile * 16);
    const float *src = g->b + tile * 16 * bts;
    if (bts == 1) { /* B(t, k) contiguous along t: 16 lanes are one (masked) load */
        const __mmask16 m = first_lanes(nt);
        for (int64_t k = 0; k < K; k++) _mm512_store_ps(d + k * 16, _mm512_maskz_loadu_ps(m, src + k * bks));
    } else if (bks == 1) { /* B rows along k: 16 x 16 blocks transposed in registers */
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            const int kn = (int)LC_MIN(16, K - k0);
            const __mmask16 mk = first_lanes(K - k0);
            __m512 r[16];
            for (int j = 0; j < 16; j++) r[j] = j < nt ? _mm512_maskz_loadu_ps(mk, src + j * bts + k0) : _mm512_setzero_ps();
            transpose16(r);
            for (int kk = 0; kk < kn; kk++) _mm512_store_ps(d + (k0 + kk) * 16, r[kk]);
        }
    } else {
        for (int64_t k = 0; k < K; k++) {
            int64_t j = 0;
            for (; j < nt; j++) d[k * 16 + j] = src[j * bts + k * bks];
            for (; j < 16; j++) d[k * 16 + j] = 0.0f;
        }
    }
}

/* Task `task`: one block of rows times one run of token pairs, with this thread's buffer. */
AVX512 static void gemm_task(const gemm_call *g, int64_t task, float *buf) {
    float *out = g->out;
    const int64_t ots = g->ots, ois = g->ois, M = g->M, N = g->N, K = g->K, ldw = g->ldw, runs = g->runs;
    const int accumulate = g->accumulate, two = g->A2 != NULL;
    float *acc = buf ? buf + (1 + two) * g->block * ldw : NULL, *acc2 = acc ? acc + g->block * 32 : NULL;
    const int64_t bi = task / runs, i0 = bi * g->block, n = LC_MIN(g->block, M - i0);
    const int64_t p0 = (task % runs) * g->per_run, p1 = LC_MIN(g->n_pairs, p0 + g->per_run);
    if (!buf) { /* out of memory for the block */
        gemm_poison(out, ots, ois, i0, n, N);
        return;
    }
    if (p0 >= p1) return;
    /* the block's rows as f32: converted, or still in buf from this thread's previous task (the
     * runs of a block are consecutive tasks: with few blocks, each thread converts a block once
     * instead of once per run) */
    if (tl_block.id != g->id || tl_block.bi != bi) {
        tl_block.rows = gemm_rows_a(buf, ldw, &tl_block.lda, g->A, i0, n, K);
        tl_block.rows2 = two ? gemm_rows_a(buf + g->block * ldw, ldw, &tl_block.lda2, g->A2, i0, n, K) : NULL;
        tl_block.id = g->id;
        tl_block.bi = bi;
    }
    const int64_t lda = tl_block.lda, lda2 = tl_block.lda2;
    const float *rows = tl_block.rows, *rows2 = tl_block.rows2;
    for (int64_t pair = p0; pair < p1; pair++) { /* 32 tokens, or the last 16 */
        const int64_t t0 = pair * 32;
        const int nt = (int)LC_MIN(32, N - t0), NV = nt > 16 ? 2 : 1;
        const float *xa = g->xp + pair * 2 * K * 16, *xb = NV == 2 ? xa + K * 16 : xa;
        /* the output lines this pair ends in: fetched while the tile computes (gradients are cold) */
        if (ots == 1)
            for (int64_t i = 0; i < n; i++)
                for (int v = 0; v < NV; v++) _mm_prefetch((const char *)(out + (i0 + i) * ois + t0 + 16 * v), _MM_HINT_T0);
        else if (ois == 1)
            for (int t = 0; t < nt; t++)
                for (int64_t ib = 0; ib < n; ib += 16) _mm_prefetch((const char *)(out + (t0 + t) * ots + i0 + ib), _MM_HINT_T0);
        for (int64_t k0 = 0; k0 < K; k0 += GEMM_KC)
            for (int64_t rg = 0; rg < n; rg += GEMM_ROWS) {
                gemm_tile_any(acc + rg * 32, rows + rg * lda + k0, lda, xa + k0 * 16, xb + k0 * 16,
                              LC_MIN(GEMM_KC, K - k0), (int)LC_MIN(GEMM_ROWS, n - rg), NV, k0 == 0);
                if (two)
                    gemm_tile_any(acc2 + rg * 32, rows2 + rg * lda2 + k0, lda2, xa + k0 * 16, xb + k0 * 16,
                                  LC_MIN(GEMM_KC, K - k0), (int)LC_MIN(GEMM_ROWS, n - rg), NV, k0 == 0);
            }
        if (two) swiglu_avx512(acc, acc, acc2, n * 32); /* on the finished sums, before they are stored */
        if (ots == 1) /* output rows run along the tokens: one (masked) vector per row */
            for (int64_t i = 0; i < n; i++) {
                float *o = out + (i0 + i) * ois + t0;
                for (int v = 0; v < NV; v++) {
                    const __mmask16 mk = first_lanes(nt - 16 * v);
                    __m512 r = _mm512_load_ps(acc + i * 32 + 16 * v);
                    if (accumulate) r = _mm512_add_ps(_mm512_maskz_loadu_ps(mk, o + 16 * v), r);
                    _mm512_mask_storeu_ps(o + 16 * v, mk, r);
                }
            }
        else if (ois == 1) /* output rows run along i: transpose 16 x 16 blocks in registers */
            for (int64_t ib = 0; ib < n; ib += 16) {
                const __mmask16 mk = first_lanes(n - ib);
                for (int v = 0; v < NV; v++) {
                    const int tn = (int)LC_MIN(16, nt - 16 * v);
                    __m512 r[16];
#pragma GCC unroll 16
                    for (int j = 0; j < 16; j++) r[j] = _mm512_load_ps(acc + (ib + j) * 32 + 16 * v);
                    transpose16(r);
#pragma GCC unroll 16
                    for (int t = 0; t < 16; t++) { /* constant indices: r stays in registers */
                        if (t >= tn) break;
                        float *o = out + (t0 + 16 * v + t) * ots + i0 + ib;
                        __m512 y = accumulate ? _mm512_add_ps(_mm512_maskz_loadu_ps(mk, o), r[t]) : r[t];
                        _mm512_mask_storeu_ps(o, mk, y);
                    }
                }
            }
        else
            for (int t = 0; t < nt; t++) {
                float *o = out + (t0 + t) * ots + i0 * ois;
                if (accumulate)
                    for (int64_t i = 0; i < n; i++) o[i * ois] += acc[i * 32 + t];
                else
                    for (int64_t i = 0; i < n; i++) o[i * ois] = acc[i * 32 + t];
            }
    }
}

/* ---- GEMM for few tokens: k in the lanes ----
 * With tokens in the lanes, a product of N tokens fills ceil(N / 16) * 16 lanes: 17 tokens use
 * 32, and an expert's product in prefill (a few to a few dozen tokens) would waste a third of
 * its multiply-adds on average. Here the lanes run along k instead, as in the row kernels: a
 * tile of DT_ROWS weight rows times DT_TOKENS tokens keeps one vector of partial sums per
 * output, and the 16 lanes are added at the end (four outputs at a time, by shuffles). The
 * result does not depend on N or on the tile an output falls in: per output, 16 FMA chains
 * over k = l, l + 16, ... then one fixed tree. */
#define DT_ROWS 4
#define DT_TOKENS 6
#define DT_BLOCK 32  /* weight rows converted together */
#define DT_MAX_N 96 /* above this, x no longer stays near (bench-gemm) */

/* The 16-lane sums of v[0..4) in lanes 0..3: adjacent lanes, then pairs, then 128-bit quarters. */
AVX512 static INLINE __m128 sum4x16(const __m512 v[4]) {
    const __m512 s01 = _mm512_add_ps(_mm512_unpacklo_ps(v[0], v[1]), _mm512_unpackhi_ps(v[0], v[1]));
    const __m512 s23 = _mm512_add_ps(_mm512_unpacklo_ps(v[2], v[3]), _mm512_unpackhi_ps(v[2], v[3]));
    __m512 q = _mm512_add_ps(_mm512_shuffle_ps(s01, s23, 0x44), _mm512_shuffle_ps(s01, s23, 0xEE));
    q = _mm512_add_ps(q, _mm512_shuffle_f32x4(q, q, 0x4E));
    q = _mm512_add_ps(q, _mm512_shuffle_f32x4(q, q, 0xB1));
    return _mm512_castps512_ps128(q);
}

/* A tile's partial sums: zeroed, then a[t][r] += w[r] * x_t[0..16) (the lanes mk of x), t < TG. */
AVX512 static INLINE void dt_tile_zero(__m512 a[DT_TOKENS][DT_ROWS], const int TG) {
#pragma GCC unroll 6
    for (int t = 0; t < TG; t++)
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++) a[t][r] = _mm512_setzero_ps();
}
AVX512 static INLINE void dt_tile_fma(__m512 a[DT_TOKENS][DT_ROWS], const __m512 w[DT_ROWS], const float *x, int64_t ldx,
                                      __mmask16 mk, const int TG) {
#pragma GCC unroll 6
    for (int t = 0; t < TG; t++) {
        const __m512 xv = mk == 0xffff ? _mm512_loadu_ps(x + t * ldx) : _mm512_maskz_loadu_ps(mk, x + t * ldx);
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++) a[t][r] = _mm512_fmadd_ps(w[r], xv, a[t][r]);
    }
}
/* A tile's sums: out[t][0..nr) (+)= the 16 lanes of a[t][r] added, t < TG. */
AVX512 static INLINE void dt_tile_store(float *out, int64_t ots, int accumulate, __m512 a[DT_TOKENS][DT_ROWS], int nr,
                                        const int TG) {
    const __mmask8 mr = (__mmask8)((1u << nr) - 1);
#pragma GCC unroll 6
    for (int t = 0; t < TG; t++) {
        __m128 y = sum4x16(a[t]);
        if (accumulate) y = _mm_add_ps(_mm_maskz_loadu_ps(mr, out + t * ots), y);
        _mm_mask_storeu_ps(out + t * ots, mr, y);
    }
}

/* out[t][0..nr) (+)= W rows (f32, ldw apart) . x_t (rows ldx apart), t < TG, nr <= DT_ROWS. */
AVX512 static INLINE void dt_tile(float *out, int64_t ots, int accumulate, const float *W, int64_t ldw, const float *x,
                                  int64_t ldx, int64_t K, int nr, const int TG) {
    const float *wr[DT_ROWS]; /* rows past nr repeat the last one (never stored) */
#pragma GCC unroll 6
    for (int r = 0; r < DT_ROWS; r++) wr[r] = W + LC_MIN(r, nr - 1) * ldw;
    __m512 a[DT_TOKENS][DT_ROWS];
    dt_tile_zero(a, TG);
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 w[DT_ROWS];
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++) w[r] = _mm512_loadu_ps(wr[r] + k);
        dt_tile_fma(a, w, x + k, ldx, 0xffff, TG);
    }
    if (k < K) {
        const __mmask16 mk = first_lanes(K - k);
        __m512 w[DT_ROWS];
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++) w[r] = _mm512_maskz_loadu_ps(mk, wr[r] + k);
        dt_tile_fma(a, w, x + k, ldx, mk, TG);
    }
    dt_tile_store(out, ots, accumulate, a, nr, TG);
}

/* The same for BF16 rows read as stored, with no conversion pass (converting each block to f32
 * first, from DRAM, stalled the FMAs: ~45% on top of an expert's multiply-adds in prefill). 32
 * weights are one load; taken as 16 dwords, w << 16 is the even k as f32, and the load with the
 * even halves masked to zero is the odd k. So x comes with each 32 k split the same way (gemm_dt:
 * the 16 even k, then the 16 odd). Per output the 16 lanes are 16 FMA chains over k = 2l + 32j
 * then 2l + 1 + 32j, j ascending; past K the weights load as zero and x is zero. */
AVX512 static INLINE void dt_tile_bf16(float *out, int64_t ots, int accumulate, const uint16_t *W, int64_t ldw,
                                       const float *x, int64_t ldx, int64_t K, int nr, const int TG) {
    const uint16_t *wr[DT_ROWS];
#pragma GCC unroll 6
    for (int r = 0; r < DT_ROWS; r++) wr[r] = W + LC_MIN(r, nr - 1) * ldw;
    __m512 a[DT_TOKENS][DT_ROWS];
    dt_tile_zero(a, TG);
    for (int64_t k = 0; k < K; k += 32) {
        const __mmask32 mk = K - k >= 32 ? (__mmask32)0xffffffffu : (__mmask32)((1u << (K - k)) - 1);
        __m512 w[DT_ROWS];
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++)
            w[r] = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_maskz_loadu_epi16(mk, wr[r] + k), 16));
        dt_tile_fma(a, w, x + k, ldx, 0xffff, TG);
#pragma GCC unroll 6
        for (int r = 0; r < DT_ROWS; r++)
            w[r] = _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(mk & 0xaaaaaaaau, wr[r] + k)); /* odd halves only */
        dt_tile_fma(a, w, x + k + 16, ldx, 0xffff, TG);
    }
    dt_tile_store(out, ots, accumulate, a, nr, TG);
}

/* One tile of TG tokens: W rows f32 (dt_tile) or BF16 as stored (dt_tile_bf16, x split). */
#define DT_CASE(G)                                                                             \
    case G:                                                                                    \
        if (bf16) dt_tile_bf16(out, ots, accumulate, (const uint16_t *)W, ldw, x, ldx, K, nr, G); \
        else dt_tile(out, ots, accumulate, (const float *)W, ldw, x, ldx, K, nr, G);             \
        break;
AVX512 static void dt_tile_any(float *out, int64_t ots, int accumulate, const void *W, int bf16, int64_t ldw, const float *x,
                               int64_t ldx, int64_t K, int nr, int TG) {
    switch (TG) {
        DT_CASE(1) DT_CASE(2) DT_CASE(3) DT_CASE(4) DT_CASE(5) DT_CASE(6)
    default: break;
    }
}

static int dt_bf16(const gemm_a *A) { return A->w && A->w->dtype == LC_DT_BF16; }

/* Bytes [b0, b1) from p fetched (b0 rounded down to a cache line). Into L1 (T0): cold experts
 * at 12-32 tokens 3-8 points of the FMA peak faster than with T1 (towards L2) — every line has
 * to be asked for (fetching every other one halved the speed: the hardware prefetchers do not
 * follow the tiles' four row streams). */
static INLINE void prefetch_span(const char *p, int64_t b0, int64_t b1) {
    for (int64_t b = b0 & ~(int64_t)63; b < b1; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
}

/* Bytes of weights to fetch ahead: p, n (NULL, 0: none). */
typedef struct {
    const char *p;
    int64_t n;
} byte_span;

/* Block `bi` (rows DT_BLOCK bi.. of A) times all N tokens (xp: rows ldx apart): the rows as
 * stored (BF16: the span `next`, the block after this one, is fetched meanwhile, a part before
 * each tile) or as f32 (in place or converted into buf), then tiles of DT_ROWS rows times
 * groups of up to DT_TOKENS tokens, the N tokens cut into groups whose sizes differ by at most
 * one. Groups outside, rows inside: a group's x (6 rows of K floats) stays in L1 while the
 * block's rows (L2) pass by — rows outside re-read every group's x from L2 per tile, 3x the
 * bytes (experts +4 points of the FMA peak). */
AVX512 static void dt_block(float *out, int64_t ots, int accumulate, const gemm_a *A, const float *xp, int64_t ldx, int64_t M,
                            int64_t N, int64_t K, int64_t bi, float *buf, int64_t ldw, byte_span next) {
    const int64_t i0 = bi * DT_BLOCK, n = LC_MIN(DT_BLOCK, M - i0), ng = (N + DT_TOKENS - 1) / DT_TOKENS;
    const int bf16 = dt_bf16(A);
    if (!bf16 && !buf) { /* out of memory for the block */
        gemm_poison(out, ots, 1, i0, n, N);
        return;
    }
    int64_t lda = K;
    const char *rows = bf16 ? (const char *)A->w->data + (A->r0 + i0) * K * 2
                            : (const char *)gemm_rows_a(buf, ldw, &lda, A, i0, n, K);
    const int64_t row_bytes = lda * (bf16 ? 2 : 4), tiles = (n + DT_ROWS - 1) / DT_ROWS, parts = tiles * ng;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t r = 0; r < n; r += DT_ROWS) {
            const int64_t t0 = N * g / ng, t1 = N * (g + 1) / ng, part = g * tiles + r / DT_ROWS;
            prefetch_span(next.p, next.n * part / parts, next.n * (part + 1) / parts);
            dt_tile_any(out + t0 * ots + i0 + r, ots, accumulate, rows + r * row_bytes, bf16, lda, xp + t0 * ldx, ldx, K,
                        (int)LC_MIN(DT_ROWS, n - r), (int)(t1 - t0));
        }
}

/* x [N, K] (rows ldx apart) -> c (rows ldc apart, K rounded up to 32, zero-filled) with each
 * 32 k as the 16 even k, then the 16 odd: the order dt_tile_bf16 reads BF16 weights in. */
AVX512 static void dt_split_x(float *c, int64_t ldc, const float *x, int64_t ldx, int64_t N, int64_t K) {
    int idx_e[16], idx_o[16];
    for (int l = 0; l < 16; l++) idx_e[l] = 2 * l, idx_o[l] = 2 * l + 1;
    const __m512i ie = _mm512_loadu_si512(idx_e), io = _mm512_loadu_si512(idx_o);
    for (int64_t t = 0; t < N; t++)
        for (int64_t k = 0; k < K; k += 32) {
            const __m512 lo = _mm512_maskz_loadu_ps(first_lanes(K - k), x + t * ldx + k);
            const __m512 hi = _mm512_maskz_loadu_ps(first_lanes(LC_MAX(0, K - k - 16)), x + t * ldx + k + 16);
            _mm512_store_ps(c + t * ldc + k, _mm512_permutex2var_ps(lo, ie, hi));
            _mm512_store_ps(c + t * ldc + k + 16, _mm512_permutex2var_ps(lo, io, hi));
        }
}

/* BF16: block j of the n_mats * nb blocks of one or two products (matrix j / nb), the span to
 * fetch ahead of it; none past the last one, nor for rows that are converted first. */
static byte_span dt_block_bytes(const gemm_a *const mats[2], int64_t n_mats, int64_t nb, int64_t M, int64_t K, int bf16,
                                int64_t j) {
    if (!bf16 || j >= n_mats * nb) return (byte_span){NULL, 0};
    const gemm_a *A = mats[j / nb];
    const int64_t i0 = j % nb * DT_BLOCK;
    return (byte_span){(const char *)A->w->data + (A->r0 + i0) * K * 2, LC_MIN(DT_BLOCK, M - i0) * K * 2};
}

/* out (+)= A x, or with A2 out = silu(A x) * (A2 x): the two products one after the other (the
 * up sums into this thread's scratch; the up matrix's first block fetched during the gate's
 * last), then SwiGLU along each token's row. One matrix streaming at a time: the two tile by
 * tile were 5-15 points of the FMA peak slower at 12-48 tokens with the weights coming from
 * DRAM, as a MoE prefill's experts' do. (With tokens in the lanes, gemm_task, the side-by-side
 * tiles are the faster and stay.) */
AVX512 static void gemm_dt(float *out, int64_t ots, int accumulate, const gemm_a *A, const gemm_a *A2, const float *x,
                           int64_t ldx, int64_t M, int64_t N, int64_t K, int par) {
    const int bf16 = dt_bf16(A);
    const int64_t nb = (M + DT_BLOCK - 1) / DT_BLOCK, ldw = K + 16, n_mats = A2 ? 2 : 1;
    const size_t buf_n = bf16 ? 0 : (size_t)(DT_BLOCK * ldw); /* BF16 rows are read as stored */
    const gemm_a *const mats[2] = {A, A2};
    const byte_span first = dt_block_bytes(mats, n_mats, nb, M, K, bf16, 0);
    prefetch_span(first.p, 0, first.n); /* fetched while x is copied */
    float *u = A2 ? scratch(&tl_scratch.up, (size_t)(N * M)) : NULL;
    if (A2 && !u) {
        gemm_poison(out, ots, 1, 0, M, N);
        return;
    }
    /* x: for BF16 rows split per 32 k (dt_split_x; rows 64 bytes past a multiple of 128 apart);
     * else its rows as they are when not a multiple of 4 KiB apart, or copied padded (rows 4 KiB
     * apart would all fall into one L1 set) */
    const float *xp = x;
    int64_t ldp = ldx;
    if (bf16 || (ldx * (int64_t)sizeof(float)) % 4096 == 0) {
        ldp = bf16 ? (K + 31) / 32 * 32 + 16 : ldw;
        float *c = scratch(&tl_scratch.xp, (size_t)(N * ldp));
        if (!c) {
            gemm_poison(out, ots, 1, 0, M, N);
            return;
        }
        if (bf16) dt_split_x(c, ldp, x, ldx, N, K);
        else
            for (int64_t t = 0; t < N; t++) memcpy(c + t * ldw, x + t * ldx, (size_t)K * sizeof *c);
        xp = c;
    }
    float *const outs[2] = {out, u};
    const int64_t lds[2] = {ots, M};
    const int accs[2] = {accumulate, 0}; /* A2 comes without accumulate */
    /* one thread, or the blocks shared out (dt_block opens no region: an inactive one is harmless) */
#pragma omp parallel if (par)
    {
        float *buf = scratch(&tl_scratch.w, buf_n);
        for (int64_t m = 0; m < n_mats; m++) {
#pragma omp for schedule(dynamic, 1)
            for (int64_t bi = 0; bi < nb; bi++)
                dt_block(outs[m], lds[m], accs[m], mats[m], xp, ldp, M, N, K, bi, buf, ldw,
                         dt_block_bytes(mats, n_mats, nb, M, K, bf16, m * nb + bi + 1));
        }
    }
    if (A2) /* SwiGLU of the finished sums, per token row (a region only for a prompt-sized one) */
        LC_FOR(par && N * M > 65536, t, N, swiglu_avx512(out + t * ots, out + t * ots, u + t * M, M););
}

AVX512 static void gemm_core(float *out, int64_t ots, int64_t ois, int accumulate, const gemm_a *A, const gemm_a *A2,
                             const float *b, int64_t bts, int64_t bks, int64_t M, int64_t N, int64_t K) {
    /* threads from about 3 us of work on (a region costs 1-3 us); inside one: this thread only */
    const int par = M * K * N > (1 << 18) && !lc_in_parallel();
    /* few tokens: k in the lanes — for BF16 weights always (read as stored, no conversion pass:
     * 128 cold 512 x 1024 experts at 45-96 tokens 80-85% of the peak against 61-80%), for the
     * others when not close to whole 16-token tiles (at 43 tokens 78-81% against 57-71%, at 64
     * 80% against 86%) */
    if (ois == 1 && bks == 1 && N <= DT_MAX_N && (dt_bf16(A) || 16 * N < 15 * ((N + 15) / 16 * 16))) {
        gemm_dt(out, ots, accumulate, A, A2, b, bts, M, N, K, par);
        return;
    }
    /* Blocks of 224 rows when the threads share a product of up to 5 such blocks, else of 112
     * (bench-gemm at 512 tokens: 224 is 5-17% faster for 384-1024 rows, 112 better for 2048
     * rows and for an expert on one thread at 43 tokens). Both are whole 14-row tiles and
     * multiples of 16 rows (output stores stay aligned: blocks of 98-112 rows spread evenly
     * were 5-20% slower). */
    const int64_t block = par && M <= 5 * GEMM_BLOCK ? GEMM_BLOCK : GEMM_BLOCK / 2;
    const int64_t n_tiles = (N + 15) / 16, nb = (M + block - 1) / block;
    gemm_call g = {.out = out, .ots = ots, .ois = ois, .accumulate = accumulate, .A = A, .A2 = A2, .b = b, .bts = bts, .bks = bks,
                   .M = M, .N = N, .K = K, .block = block};
    g.id = ++g_gemm_calls;
    g.xp = scratch(&tl_scratch.xp, (size_t)(n_tiles * K * 16));
    if (!g.xp) {
        gemm_poison(out, ots, ois, 0, M, N);
        return;
    }
    g.n_pairs = (n_tiles + 1) / 2;
    g.runs = par ? LC_MIN(g.n_pairs, (4 * lc_max_threads() + nb - 1) / nb) : 1;
    g.per_run = (g.n_pairs + g.runs - 1) / g.runs;
    g.ldw = K + 16;
    const size_t buf_n = (size_t)((1 + (A2 != NULL)) * (block * g.ldw + block * 32));
    if (!par) { /* no OpenMP region at all: even an inactive one costs a microsecond */
        for (int64_t tile = 0; tile < n_tiles; tile++) gemm_pack_tile(&g, tile);
        float *buf = scratch(&tl_scratch.w, buf_n);
        for (int64_t task = 0; task < nb * g.runs; task++) gemm_task(&g, task, buf);
        return;
    }
#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t tile = 0; tile < n_tiles; tile++) gemm_pack_tile(&g, tile);
        float *buf = scratch(&tl_scratch.w, buf_n);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < nb * g.runs; task++) gemm_task(&g, task, buf);
    }
}

/* Weight products (prefill, training forward): out[t, i] = x[t, :] . W[r0 + i, :]. */
AVX512 static void gemm_avx512(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w, int64_t r0,
                               int64_t n_rows, int64_t T) {
    const gemm_a A = {.w = w, .r0 = r0};
    gemm_core(out, ld_out, 1, 0, &A, NULL, x, ld_x, 1, n_rows, T, w->cols);
}

/* out[t, i] = silu(x[t] . Wg[i]) * (x[t] . Wu[i]): both products in one pass over x, SwiGLU on
 * the sums before they are stored; the same bits as gemm_avx512 twice, then swiglu_avx512. */
AVX512 static void gemm_swiglu_avx512(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *wg,
                                      const lc_mat *wu, int64_t T) {
    const gemm_a A = {.w = wg}, A2 = {.w = wu};
    gemm_core(out, ld_out, 1, 0, &A, &A2, x, ld_x, 1, wg->rows, T, wg->cols);
}

/* f32 products with strided operands (training backward: dout W and dout^T x). */
AVX512 static void sgemm_avx512(float *out, int64_t ots, int64_t ois, int accumulate, const float *a, int64_t ars,
                                int64_t aks, const float *b, int64_t bts, int64_t bks, int64_t M, int64_t N, int64_t K) {
    const gemm_a A = {.a = a, .ars = ars, .aks = aks};
    gemm_core(out, ots, ois, accumulate, &A, NULL, b, bts, bks, M, N, K);
}

/* ---- causal attention of one head (prefill) ----
 * As products (attention_products in scalar.c) the small score and context products spent as
 * long packing their operands and storing tiles as multiplying (~40% of the FMA peak). Here the
 * keys are transposed once per call into tiles of 16 keys [dk][16] (kt) and the values copied
 * into contiguous rows (vp: cache rows of one head lie 4 KiB apart, which L1 cannot hold side
 * by side); then per block of ATT_Q queries: scores of ATT_SR queries x 48 keys per register
 * tile (3 loads, 8 broadcasts, 24 FMAs per dim) up to the last key the tile's queries see, the
 * scaled softmax per row, and the context of ATT_CR queries x 64 value dims per register tile
 * (4 loads, 6 broadcasts, 24 FMAs per key). Each output is one FMA chain in a fixed order. */
#define ATT_Q 64
#define ATT_SR 8
#define ATT_CR 6

/* s[r][0..48) = q_r . keys of three kt tiles (dk dims), r < nr (rows past nr repeat the last). */
AVX512 static void att_scores_tile(float *s, int64_t lds, const float *q, int64_t ldq, const float *kt, int64_t dk, int nr) {
    const float *qr[ATT_SR];
    for (int r = 0; r < ATT_SR; r++) qr[r] = q + LC_MIN(r, nr - 1) * ldq;
    __m512 a[ATT_SR][3];
#pragma GCC unroll 8
    for (int r = 0; r < ATT_SR; r++) a[r][0] = a[r][1] = a[r][2] = _mm512_setzero_ps();
    const float *k0 = kt, *k1 = kt + dk * 16, *k2 = kt + 2 * dk * 16;
    for (int64_t d = 0; d < dk; d++) {
        const __m512 x0 = _mm512_load_ps(k0 + d * 16), x1 = _mm512_load_ps(k1 + d * 16), x2 = _mm512_load_ps(k2 + d * 16);
#pragma GCC unroll 8
        for (int r = 0; r < ATT_SR; r++) {
            const __m512 qv = _mm512_set1_ps(qr[r][d]);
            a[r][0] = _mm512_fmadd_ps(qv, x0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(qv, x1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(qv, x2, a[r][2]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < 3; v++) _mm512_storeu_ps(s + r * lds + 16 * v, a[r][v]);
}

/* ctx_r[0..64) (masked to dv - c0) = sum_{u < nu} p_r[u] vp[u][c0..c0 + 64), r < nr. */
AVX512 static void att_ctx_tile(float *ctx, int64_t ldc, const float *p, int64_t ldp, const float *vp, int64_t ldv, int64_t nu,
                                int64_t dv_left, int nr) {
    const float *pr[ATT_CR];
    for (int r = 0; r < ATT_CR; r++) pr[r] = p + LC_MIN(r, nr - 1) * ldp;
    __m512 a[ATT_CR][4];
#pragma GCC unroll 6
    for (int r = 0; r < ATT_CR; r++) a[r][0] = a[r][1] = a[r][2] = a[r][3] = _mm512_setzero_ps();
    for (int64_t u = 0; u < nu; u++) {
        const float *v = vp + u * ldv;
        const __m512 v0 = _mm512_load_ps(v), v1 = _mm512_load_ps(v + 16), v2 = _mm512_load_ps(v + 32), v3 = _mm512_load_ps(v + 48);
#pragma GCC unroll 6
        for (int r = 0; r < ATT_CR; r++) {
            const __m512 pv = _mm512_set1_ps(pr[r][u]);
            a[r][0] = _mm512_fmadd_ps(pv, v0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(pv, v1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(pv, v2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(pv, v3, a[r][3]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int v = 0; v < 4 && 16 * v < dv_left; v++) _mm512_mask_storeu_ps(ctx + r * ldc + 16 * v, first_lanes(dv_left - 16 * v), a[r][v]);
}

/* Keys [n, dims] (rows ld apart) -> dims doff.. of the 16-key tiles kt [tile][dk][16]. */
AVX512 static void att_pack_keys(float *kt, int64_t dk, int64_t doff, const float *k, int64_t ld, int64_t n, int64_t dims) {
    for (int64_t j = 0; j * 16 < n; j++) {
        const int64_t nk = LC_MIN(16, n - 16 * j);
        for (int64_t d0 = 0; d0 < dims; d0 += 16) {
            const __mmask16 md = first_lanes(dims - d0);
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = i < nk ? _mm512_maskz_loadu_ps(md, k + (16 * j + i) * ld + d0) : _mm512_setzero_ps();
            transpose16(r);
            for (int64_t dd = 0; dd < LC_MIN(16, dims - d0); dd++) _mm512_store_ps(kt + (j * dk + doff + d0 + dd) * 16, r[dd]);
        }
    }
}

AVX512 static int attention_avx512(float *ctx, int64_t ldc, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *kr,
                                   int64_t ldkr, const float *v, int64_t ldv, int64_t T, int64_t p0, int64_t dn, int64_t dr,
                                   int64_t dv, float scale, float *p, int64_t ldp) {
    const int64_t P = p0 + T, dk = dn + dr, n_tiles = (P + 47) / 48 * 3, lds = n_tiles * 16, dvp = (dv + 63) / 64 * 64;
    float *kt = scratch(&tl_scratch.kt, (size_t)(n_tiles * dk * 16));
    float *vp = scratch(&tl_scratch.vp, (size_t)(P * dvp));
    float *sc = scratch(&tl_scratch.sc, (size_t)(ATT_Q * lds));
    if (!kt || !vp || !sc) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < dv; d++) ctx[t * ldc + d] = __builtin_nanf("");
        return -1;
    }
    memset(kt + (P + 15) / 16 * dk * 16, 0, (size_t)((n_tiles - (P + 15) / 16) * dk * 16) * sizeof *kt); /* whole triples */
    att_pack_keys(kt, dk, 0, k, ldk, P, dn);
    att_pack_keys(kt, dk, dn, kr, ldkr, P, dr);
    for (int64_t u = 0; u < P; u++) {
        memcpy(vp + u * dvp, v + u * ldv, (size_t)dv * sizeof *vp);
        memset(vp + u * dvp + dv, 0, (size_t)(dvp - dv) * sizeof *vp);
    }
    for (int64_t t0 = 0; t0 < T; t0 += ATT_Q) {
        const int64_t nt = LC_MIN(ATT_Q, T - t0), Pb = p0 + t0 + nt; /* keys this block sees */
        for (int64_t r0 = 0; r0 < nt; r0 += ATT_SR) { /* scores up to the last key these rows see */
            const int nr = (int)LC_MIN(ATT_SR, nt - r0);
            const int64_t nu = p0 + t0 + r0 + nr;
            for (int64_t j = 0; j < nu; j += 48)
                att_scores_tile(sc + r0 * lds + j, lds, q + (t0 + r0) * ldq, ldq, kt + j * dk, dk, nr);
        }
        for (int64_t t = 0; t < nt; t++) {
            float *row = sc + t * lds;
            const int64_t n = p0 + t0 + t + 1; /* causal: only u <= p0 + t */
            lc_attention_probs(row, n, Pb, scale, p ? p + (t0 + t) * ldp : NULL, P);
        }
        for (int64_t r0 = 0; r0 < nt; r0 += ATT_CR) {
            const int nr = (int)LC_MIN(ATT_CR, nt - r0);
            const int64_t nu = p0 + t0 + r0 + nr;
            for (int64_t c0 = 0; c0 < dv; c0 += 64)
                att_ctx_tile(ctx + (t0 + r0) * ldc + c0, ldc, sc + r0 * lds, lds, vp + c0, dvp, nu, dv - c0, nr);
        }
    }
    return 0;
}

void lc_kernels_fill_avx512(lc_kernels *k) {
    lc_kernels_fill_avx2(k);
    k->name = "avx512";
    k->dot = dot_avx512;
    k->dots = dots_avx512;
    k->axpy = axpy_avx512;
    g_matvec_t_other = k->matvec_t;
    k->matvec_t = matvec_t_avx512;
    k->row[LC_DT_BF16] = row_bf16_avx512;
    k->row[LC_DT_F16] = row_f16_avx512;
    k->rowdots[LC_DT_F32] = rowdots_f32;
    k->rowdots[LC_DT_BF16] = rowdots_bf16;
    k->rowdots[LC_DT_F16] = rowdots_f16;
    k->rowdotn[LC_DT_F32] = rowdotn_f32;
    k->rowdotn[LC_DT_BF16] = rowdotn_bf16;
    k->rowdotn[LC_DT_F16] = rowdotn_f16;
    k->rowdotn[LC_DT_F8_E4M3] = rowdotn_fp8;
    k->rowdotn[LC_DT_Q8_0] = rowdotn_q8_0;
    k->rowdotn[LC_DT_Q4_0] = rowdotn_q4_0;
    k->rowdots[LC_DT_F8_E4M3] = rowdots_fp8;
    k->rowdots[LC_DT_Q8_0] = rowdots_q8_0;
    k->rowdots[LC_DT_Q4_0] = rowdots_q4_0;
    k->row[LC_DT_Q8_0] = row_q8_0_avx512;
    k->row[LC_DT_Q4_0] = row_q4_0_avx512;
    k->gemm = gemm_avx512;
    k->gemm_swiglu = gemm_swiglu_avx512;
    k->sgemm = sgemm_avx512;
    k->attention = attention_avx512;
    k->adamw = adamw_avx512;
    k->sumsq = sumsq_avx512;
    k->dot3 = dot3_avx512;
    k->expsum = expsum_avx512;
    k->swiglu = swiglu_avx512;
    k->swiglu_backward = swiglu_backward_avx512;
}
#else
int lc_cpu_has_avx512(void) { return 0; }
void lc_kernels_fill_avx512(lc_kernels *k) { (void)k; }
#endif
