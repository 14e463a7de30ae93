/* bench_products.c — how fast decode-shaped products stream their weights, as ratios to this
 * machine's read bandwidth measured in the same run (same threads). Decode reads every active
 * weight once per token, through a few hundred products of 0.1-4 MB (an expert's gate, up and
 * down are 1 MB each in the `medium` bench model): this separates the row kernel's streaming
 * rate (one big product) from the cost of cutting the same bytes into many small products (one
 * parallel region each, as lc_matmul) and of sharing one region among several
 * (lc_matmul_many, as a MoE layer's experts do). BF16 weights (anonymous memory advised for huge
 * pages, as `longcat bench` holds them), one token, distinct matrices (each read cold), best of 4
 * passes.
 *
 * usage: bench_products [ROWS COLS (512 1024)] [GROUP (10)] [MIB of weights (512)] */
#include "../src/kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static double pass_sec(const lc_mat *w, int64_t nm, int64_t group, float *o, const float *x) {
    double best = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        double t0 = lc_time_sec();
        for (int64_t j = 0; j < nm; j += group) {
            lc_matmul_job jobs[64];
            const int64_t n = LC_MIN(group, nm - j);
            for (int64_t q = 0; q < n; q++) jobs[q] = (lc_matmul_job){o + q * w[j + q].rows, x, &w[j + q], 1};
            if (group == 1) lc_matmul(o, x, &w[j], 1);
            else lc_matmul_many(jobs, n);
        }
        double dt = lc_time_sec() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv) {
    const int64_t rows = argc > 2 ? atoll(argv[1]) : 512, cols = argc > 2 ? atoll(argv[2]) : 1024;
    const int64_t group = LC_MIN(64, LC_MAX(2, argc > 3 ? atoll(argv[3]) : 10));
    const int64_t mib = argc > 4 ? atoll(argv[4]) : 512;
    lc_kernels_init();
    const int64_t mat_bytes = rows * cols * 2, nm = LC_MAX(1, (mib << 20) / mat_bytes), total = nm * mat_bytes;
    uint16_t *data = lc_aligned_alloc((size_t)total, "weights");
    if (data) madvise(data, (size_t)total, MADV_HUGEPAGE); /* as the resident weights of `bench` */
    lc_mat *w = malloc((size_t)nm * sizeof *w), big;
    float *x = lc_aligned_alloc((size_t)cols * sizeof *x, "x"), *o = lc_aligned_alloc((size_t)(nm * rows) * sizeof *o, "out");
    if (!data || !w || !x || !o) {
        fprintf(stderr, "bench_products: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < total / 2; i++) data[i] = (uint16_t)(0x3c00 + (i % 97)); /* BF16 around 0.008 */
    for (int64_t i = 0; i < cols; i++) x[i] = (float)(i % 13) * 0.1f;
    for (int64_t j = 0; j < nm; j++)
        w[j] = (lc_mat){(const uint8_t *)data + j * mat_bytes, LC_DT_BF16, rows, cols, NULL, 0, 0, NULL};
    big = (lc_mat){(const uint8_t *)data, LC_DT_BF16, nm * rows, cols, NULL, 0, 0, NULL};
    const double bw = lc_measure_read_bandwidth((size_t)total) * 1e9; /* bytes/s */
    const double t_big = pass_sec(&big, 1, 1, o, x), t_one = pass_sec(w, nm, 1, o, x), t_many = pass_sec(w, nm, group, o, x);
    printf("read bandwidth %.1f GB/s (%d threads, kernels %s); %lld BF16 products of %lld x %lld (%.2f MB), one token\n",
           bw / 1e9, lc_max_threads(), lc_k.name, (long long)nm, (long long)rows, (long long)cols, mat_bytes / 1e6);
    const char *what[3] = {"one product of all rows", "one lc_matmul per product", "lc_matmul_many"};
    const double t[3] = {t_big, t_one, t_many};
    for (int i = 0; i < 3; i++)
        printf("  %-28s %6.1f GB/s = %5.1f%% of bandwidth, %7.1f us per %.2f MB\n", what[i], total / t[i] / 1e9,
               100.0 * total / t[i] / bw, t[i] / nm * 1e6, mat_bytes / 1e6);
    printf("  lc_matmul_many (groups of %lld) / one lc_matmul per product: %.2fx\n", (long long)group, t_one / t_many);
    free(w);
    lc_free(data);
    lc_free(x);
    lc_free(o);
    return 0;
}
