/* avx2.c — AVX2 + FMA + F16C versions of the inner loops (dot product, axpy, BF16/F16 row
 * conversion), chosen at run time when the CPU has them. The matmul drivers of scalar.c call
 * them through the kernel table; results differ from the scalar path only in summation
 * order and stay independent of the thread count. */
#include "../kernels.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps(), s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* The same dot products of one row w with T tokens, two tokens at a time so each load of w
 * serves both. Every token's FMAs, accumulators and reduction are exactly dot_avx2's, so each
 * result is bit-identical to dot_avx2(w, x_t, n) (a token alone or in a batch agree). */
AVX2 static void dots_avx2(float *out, int64_t ld_out, const float *w, const float *x, int64_t ld_x, int64_t T, int64_t n) {
    int64_t t = 0;
    for (; t + 2 <= T; t += 2) {
        const float *a = x + t * ld_x, *b = a + ld_x;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            __m256 w0 = _mm256_loadu_ps(w + i), w1 = _mm256_loadu_ps(w + i + 8);
            __m256 w2 = _mm256_loadu_ps(w + i + 16), w3 = _mm256_loadu_ps(w + i + 24);
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a + i), a0);
            b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), b0);
            a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(a + i + 8), a1);
            b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(b + i + 8), b1);
            a2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(a + i + 16), a2);
            b2 = _mm256_fmadd_ps(w2, _mm256_loadu_ps(b + i + 16), b2);
            a3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(a + i + 24), a3);
            b3 = _mm256_fmadd_ps(w3, _mm256_loadu_ps(b + i + 24), b3);
        }
        for (; i + 8 <= n; i += 8) {
            __m256 w0 = _mm256_loadu_ps(w + i);
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(a + i), a0);
            b0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(b + i), b0);
        }
        __m256 sa = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
        __m256 sb = _mm256_add_ps(_mm256_add_ps(b0, b1), _mm256_add_ps(b2, b3));
        __m128 ha = _mm_add_ps(_mm256_castps256_ps128(sa), _mm256_extractf128_ps(sa, 1));
        __m128 hb = _mm_add_ps(_mm256_castps256_ps128(sb), _mm256_extractf128_ps(sb, 1));
        ha = _mm_add_ps(ha, _mm_movehl_ps(ha, ha));
        hb = _mm_add_ps(hb, _mm_movehl_ps(hb, hb));
        ha = _mm_add_ss(ha, _mm_movehdup_ps(ha));
        hb = _mm_add_ss(hb, _mm_movehdup_ps(hb));
        float ra = _mm_cvtss_f32(ha), rb = _mm_cvtss_f32(hb);
        for (int64_t j = i; j < n; j++) ra += w[j] * a[j];
        for (int64_t j = i; j < n; j++) rb += w[j] * b[j];
        out[t * ld_out] = ra;
        out[(t + 1) * ld_out] = rb;
    }
    if (t < T) out[t * ld_out] = dot_avx2(w, x + t * ld_x, n);
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int64_t n) {
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

AVX2 static void row_bf16_avx2(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    int64_t c = 0;
    for (; c + 8 <= w->cols; c += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * c));
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(dst + c, _mm256_castsi256_ps(u));
    }
    for (; c < w->cols; c++) {
        uint16_t h;
        memcpy(&h, p + 2 * c, 2);
        dst[c] = lc_bf16_to_f32(h);
    }
}

AVX2 static void row_f16_avx2(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    int64_t c = 0;
    for (; c + 8 <= w->cols; c += 8)
        _mm256_storeu_ps(dst + c, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * c))));
    for (; c < w->cols; c++) {
        uint16_t h;
        memcpy(&h, p + 2 * c, 2);
        dst[c] = lc_f16_to_f32(h);
    }
}

int lc_cpu_has_avx2(void) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    int f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C); /* clang 14 has no "f16c" builtin name */
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c;
}

void lc_kernels_fill_avx2(lc_kernels *k) {
    k->name = "avx2";
    k->dot = dot_avx2;
    k->dots = dots_avx2;
    k->axpy = axpy_avx2;
    k->row[LC_DT_BF16] = row_bf16_avx2;
    k->row[LC_DT_F16] = row_f16_avx2;
}
#else
int lc_cpu_has_avx2(void) { return 0; }
void lc_kernels_fill_avx2(lc_kernels *k) { (void)k; }
#endif
