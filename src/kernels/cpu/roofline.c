/* roofline.c — this machine's limits, measured with the same threads the engine uses: DRAM
 * read bandwidth (each thread sums its share of a large buffer, as one stream and as two and
 * four side by side — a core reads faster from several — each with and without software
 * prefetches 1.5 KB ahead, as the decode kernels issue; best of several passes of each) and
 * FP32 FMA peak (independent FMA chains per thread). `longcat bench` divides by them. */
#include "../kernels.h"

#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma")))
/* a[0, n) as NS equal parts read side by side: NS memory streams (NS a constant at each call:
 * the loops unroll into registers), each prefetched AHEAD bytes on (0: not). */
__attribute__((target("avx2,fma"), always_inline)) static inline float sum_streams_avx2(const float *a, int64_t n,
                                                                                       const int NS, const int AHEAD) {
    const int64_t h = n / NS / 16 * 16;
    __m256 s[8];
    for (int k = 0; k < 8; k++) s[k] = _mm256_setzero_ps();
    for (int64_t i = 0; i + 16 <= h; i += 16)
        for (int q = 0; q < NS; q++) {
            if (AHEAD) _mm_prefetch((const char *)(a + q * h + i) + AHEAD, _MM_HINT_NTA); /* 16 floats: one line */
            s[2 * q % 8] = _mm256_add_ps(s[2 * q % 8], _mm256_loadu_ps(a + q * h + i));
            s[(2 * q + 1) % 8] = _mm256_add_ps(s[(2 * q + 1) % 8], _mm256_loadu_ps(a + q * h + i + 8));
        }
    for (int k = 1; k < 8; k++) s[0] = _mm256_add_ps(s[0], s[k]);
    float o[8];
    _mm256_storeu_ps(o, s[0]);
    return o[0] + o[1] + o[2] + o[3] + o[4] + o[5] + o[6] + o[7];
}
AVX2 static float sum_streams(const float *a, int64_t n, int ns, int ahead) {
    if (ns == 1) return ahead ? sum_streams_avx2(a, n, 1, 1536) : sum_streams_avx2(a, n, 1, 0);
    if (ns == 2) return ahead ? sum_streams_avx2(a, n, 2, 1536) : sum_streams_avx2(a, n, 2, 0);
    return ahead ? sum_streams_avx2(a, n, 4, 1536) : sum_streams_avx2(a, n, 4, 0);
}
AVX2 static double fma_chains_avx2(int64_t iters) {
    __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-6f), c[12];
    for (int k = 0; k < 12; k++) c[k] = _mm256_set1_ps((float)k);
    for (int64_t i = 0; i < iters; i++)
        for (int k = 0; k < 12; k++) c[k] = _mm256_fmadd_ps(c[k], a, b);
    float o[8], s = 0;
    for (int k = 0; k < 12; k++) {
        _mm256_storeu_ps(o, c[k]);
        s += o[0];
    }
    return s;
}
/* 16 independent 512-bit FMA chains (explicit registers, no array to spill). */
__attribute__((target("avx512f"))) static double fma_chains_avx512(int64_t iters) {
    __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-6f);
#define C16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define DECL(k) __m512 c##k = _mm512_set1_ps((float)k);
#define STEP(k) c##k = _mm512_fmadd_ps(c##k, a, b);
#define SUM(k) s += _mm512_reduce_add_ps(c##k);
    C16(DECL)
    for (int64_t i = 0; i < iters; i++) { C16(STEP) }
    double s = 0;
    C16(SUM)
    return s;
#undef DECL
#undef STEP
#undef SUM
#undef C16
}
#endif

static float sum_scalar(const float *a, int64_t n) {
    float s[8] = {0};
    for (int64_t i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k];
    return s[0] + s[1] + s[2] + s[3] + s[4] + s[5] + s[6] + s[7];
}

double lc_measure_read_bandwidth(size_t bytes) {
    int64_t n = (int64_t)(bytes / sizeof(float)) / 256 * 256;
    float *a = lc_huge_alloc((size_t)n * sizeof(float), "bandwidth buffer"); /* the weights' pages */
    if (!a) return 0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 1e-3f; /* first touch by the reading thread */
    int avx2 = lc_cpu_has_avx2();
    double best = 1e30, sink = 0;
    for (int pass = 0; pass < 24; pass++) { /* one, two and four streams per thread, prefetched or not, in turn */
        double t0 = lc_time_sec(), s = 0;
#pragma omp parallel reduction(+ : s)
        {
            int nt = 1, id = 0;
#ifdef _OPENMP
            nt = omp_get_num_threads();
            id = omp_get_thread_num();
#endif
            int64_t chunk = n / nt / 256 * 256, lo = chunk * id;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
            s += avx2 ? sum_streams(a + lo, chunk, 1 << pass % 3, pass / 3 % 2) : sum_scalar(a + lo, chunk);
#else
            (void)avx2;
            s += sum_scalar(a + lo, chunk);
#endif
        }
        double dt = lc_time_sec() - t0;
        sink += s;
        best = dt < best ? dt : best;
    }
    lc_huge_free(a, (size_t)n * sizeof(float));
    return sink == 1234.5 ? 0 : (double)n * sizeof(float) / best / 1e9;
}

double lc_measure_fma_peak(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (!lc_cpu_has_avx2()) return 0;
    __builtin_cpu_init();
    const int avx512 = __builtin_cpu_supports("avx512f");
    const int64_t iters = 20000000;
    double best = 1e30, sink = 0;
    int nt = 1;
    for (int pass = 0; pass < 3; pass++) {
        double t0 = lc_time_sec(), s = 0;
#pragma omp parallel reduction(+ : s)
        {
            s += avx512 ? fma_chains_avx512(iters) : fma_chains_avx2(iters);
#ifdef _OPENMP
#pragma omp single
            nt = omp_get_num_threads();
#endif
        }
        double dt = lc_time_sec() - t0;
        sink += s;
        best = dt < best ? dt : best;
    }
    (void)sink;
    /* lanes x chains x 2 flops per FMA */
    return (avx512 ? 2.0 * 16 * 16 : 2.0 * 8 * 12) * (double)iters * nt / best / 1e9;
#else
    return 0;
#endif
}
