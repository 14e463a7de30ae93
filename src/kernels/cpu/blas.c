/* blas.c — F32 weight products through OpenBLAS sgemm (prefill, training forward and
 * backward). The output is cut into fixed blocks that do not depend on the thread count, each
 * computed by one single-threaded sgemm, so results stay bit-identical across thread counts.
 * Built when BLAS=1 (the default); other dtypes use the row kernels of scalar.c.
 *
 * OpenBLAS is opened at run time (dlopen) rather than linked: its CPU detection runs when the
 * library loads, and OpenBLAS 0.3.21 (Debian 12) takes AVX-512 AMD CPUs (Zen 4/5) for Haswell
 * and uses its AVX2 kernels — half the FLOP peak. Loading it ourselves lets us first set
 * OPENBLAS_CORETYPE=SkylakeX (OpenBLAS's documented override) on CPUs with AVX-512, unless the
 * user set it. */
#include "../kernels.h"

#ifdef LC_HAVE_BLAS
#include <cblas.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 128 /* output rows (or columns) per sgemm call */

typedef void (*sgemm_fn)(enum CBLAS_ORDER, enum CBLAS_TRANSPOSE, enum CBLAS_TRANSPOSE, blasint, blasint, blasint, float,
                         const float *, blasint, const float *, blasint, float, float *, blasint);
static sgemm_fn p_sgemm;
static char *(*p_corename)(void);
static void (*p_set_threads)(int);
#define cblas_sgemm p_sgemm

int lc_blas_init(void) {
    static int state; /* 0 not tried, 1 loaded, -1 unavailable */
    if (state) return state > 0;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (!getenv("OPENBLAS_CORETYPE") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
#endif
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
    if (h) {
        *(void **)&p_sgemm = dlsym(h, "cblas_sgemm");
        *(void **)&p_set_threads = dlsym(h, "openblas_set_num_threads");
        *(void **)&p_corename = dlsym(h, "openblas_get_corename");
    }
    if (!p_sgemm) {
        fprintf(stderr, "longcat: OpenBLAS (libopenblas.so.0) not found; products run on the built-in kernels "
                        "(install libopenblas0)\n");
        state = -1;
        return 0;
    }
#ifdef _OPENMP
    const int omp_threads = omp_get_max_threads();
#endif
    if (p_set_threads) p_set_threads(1); /* we parallelise over blocks ourselves */
#ifdef _OPENMP
    /* the OpenMP build of OpenBLAS (libopenblas0-openmp) passes that 1 on to omp_set_num_threads,
     * which would leave every parallel region of ours on one thread: give the count back */
    omp_set_num_threads(omp_threads);
#endif
    state = 1;
    return 1;
}

double lc_blas_sgemm_gflops(int n, int threads) {
    if (!lc_blas_init() || n < 1 || threads < 1) return 0;
    float *a = malloc((size_t)n * n * sizeof *a), *b = malloc((size_t)n * n * sizeof *b), *c = malloc((size_t)n * n * sizeof *c);
    double best = 1e30;
    if (a && b && c) {
        for (int64_t i = 0; i < (int64_t)n * n; i++) {
            a[i] = (float)(i % 7) * 0.1f;
            b[i] = (float)(i % 5) * 0.1f;
        }
        if (p_set_threads) p_set_threads(threads); /* OpenBLAS's own threads, as a user of it would run it */
        for (int r = 0; r < 5; r++) {
            double t0 = lc_time_sec();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
            double dt = lc_time_sec() - t0;
            best = dt < best ? dt : best;
        }
        if (p_set_threads) p_set_threads(1);
#ifdef _OPENMP
        omp_set_num_threads(threads);
#endif
    }
    free(a);
    free(b);
    free(c);
    return best < 1e30 ? 2.0 * n * n * (double)n / best / 1e9 : 0;
}

const char *lc_blas_corename(void) { return p_corename ? p_corename() : "none"; }

/* out[t, i] = sum_c W[r0 + i, c] x[t, c]. Weights not in F32 (BF16, F16, FP8 blocks) are
 * dequantised one block of rows at a time into a per-thread buffer, then multiplied. */
void lc_blas_matmul(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w, int64_t r0, int64_t n_rows,
                    int64_t T) {
    const int64_t C = w->cols, nb = (n_rows + BLOCK - 1) / BLOCK;
    const int f32 = w->dtype == LC_DT_F32;
#pragma omp parallel if (n_rows * C * T > 65536 && !lc_in_parallel())
    {
        float *buf = f32 ? NULL : malloc((size_t)(BLOCK * C) * sizeof *buf);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < nb; b++) {
            int64_t i0 = b * BLOCK, n = LC_MIN(BLOCK, n_rows - i0);
            const float *W = f32 ? (const float *)(const void *)w->data + (r0 + i0) * C : buf;
            if (!f32 && !buf) { /* out of memory for the block: poison it so the failure cannot pass unseen */
                for (int64_t i = 0; i < n; i++)
                    for (int64_t t = 0; t < T; t++) out[t * ld_out + i0 + i] = NAN;
                continue;
            }
            for (int64_t i = 0; !f32 && i < n; i++) lc_k.row[w->dtype](buf + i * C, w, r0 + i0 + i);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)n, (int)C, 1.0f, x, (int)ld_x, W, (int)C,
                        0.0f, out + i0, (int)ld_out);
        }
        free(buf);
    }
}

/* dx[T, C] += dout[T, R] W[R, C]; dW[R, C] += dout^T x */
void lc_blas_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const lc_mat *w, int64_t T) {
    const float *W = (const float *)(const void *)w->data;
    const int64_t R = w->rows, C = w->cols;
    if (dx) {
        const int64_t nb = (C + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (T * R * C > 65536 && !lc_in_parallel())
        for (int64_t b = 0; b < nb; b++) {
            int64_t c0 = b * BLOCK, n = LC_MIN(BLOCK, C - c0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)n, (int)R, 1.0f, dout, (int)R, W + c0, (int)C,
                        1.0f, dx + c0, (int)C);
        }
    }
    if (dw) {
        const int64_t nb = (R + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if (T * R * C > 65536 && !lc_in_parallel())
        for (int64_t b = 0; b < nb; b++) {
            int64_t r0 = b * BLOCK, n = LC_MIN(BLOCK, R - r0);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n, (int)C, (int)T, 1.0f, dout + r0, (int)R, x, (int)C,
                        1.0f, dw + r0 * C, (int)C);
        }
    }
}
#endif
