/* bench_gemm.c — prefill-shaped weight products through lc_matmul (the level's own GEMM on
 * avx512), as ratios to this machine's FP32 FMA peak measured in the same run with the same
 * threads. BF16 weights (hot: each product repeated), tokens in one call; best of 5 per shape.
 * The default shapes are the `medium` bench model's at a 512-token prompt: q_a, kv_a, q_b,
 * o_proj, a dense FFN's gate/up and down, the threads sharing each product; then an expert's
 * gate/up and down at 43 tokens (the average an expert gets), one product per thread side by
 * side, as MoE prefill runs its experts (each thread its own weights); then an expert's gate/up
 * at other token counts (a MoE prefill's experts get from 1 to a few hundred tokens): below 9
 * the row kernels, then k in the lanes or tokens in the lanes (see gemm_core). SIDE_BY_SIDE 2:
 * cold weights, as a prefill's experts are: 256 MiB of distinct matrices (more than the caches
 * hold), the threads taking them in turn, each product reading its weights from DRAM.
 *
 * usage: bench_gemm [ROWS COLS TOKENS SIDE_BY_SIDE(0|1|2)]... */
#include "../src/kernels/kernels.h"

#include <stdio.h>
#include <stdlib.h>

static void one(int64_t R, int64_t C, int64_t T, int side, double peak) {
    /* copies: one per thread side by side; cold: 256 MiB of them */
    const int64_t nw = side == 2 ? LC_MAX(2, (256 << 20) / (R * C * 2)) : side ? lc_max_threads() : 1;
    uint16_t *w = lc_aligned_alloc((size_t)(nw * R * C) * 2, "weights");
    float *x = lc_aligned_alloc((size_t)(T * C) * sizeof *x, "x");
    float *o = lc_aligned_alloc((size_t)((side == 2 ? lc_max_threads() : nw) * T * R) * sizeof *o, "out");
    if (!w || !x || !o) {
        fprintf(stderr, "bench_gemm: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < nw * R * C; i++) w[i] = (uint16_t)(0x3c00 + (i % 97)); /* BF16 around 0.008 */
    for (int64_t i = 0; i < T * C; i++) x[i] = (float)(i % 13) * 0.1f;
    double best = 1e30;
    for (int rep = 0; rep < 6; rep++) { /* the first call faults the output in */
        double t0 = lc_time_sec();
        if (side == 2) {
#pragma omp parallel for schedule(dynamic, 1)
            for (int64_t e = 0; e < nw; e++) {
                const lc_mat m = {.data = (const uint8_t *)(w + e * R * C), .dtype = LC_DT_BF16, .rows = R, .cols = C};
                lc_matmul(o + lc_thread_num() * T * R, x, &m, T);
            }
        } else if (side) {
#pragma omp parallel
            {
                const int id = lc_thread_num();
                const lc_mat m = {.data = (const uint8_t *)(w + id * R * C), .dtype = LC_DT_BF16, .rows = R, .cols = C};
                lc_matmul(o + id * T * R, x, &m, T);
            }
        } else {
            const lc_mat m = {.data = (const uint8_t *)w, .dtype = LC_DT_BF16, .rows = R, .cols = C};
            lc_matmul(o, x, &m, T);
        }
        double dt = lc_time_sec() - t0;
        if (rep) best = dt < best ? dt : best;
    }
    const double gf = 2.0 * nw * R * C * T / best / 1e9;
    printf("  %5lld x %-5lld  %4lld tokens%s  %6.1f GFLOP/s = %5.1f%% of the FMA peak\n", (long long)R, (long long)C,
           (long long)T, side == 2 ? ", cold, in turn " : side ? ", one per thread" : ", shared      ", gf, 100 * gf / peak);
    lc_free(w);
    lc_free(x);
    lc_free(o);
}

int main(int argc, char **argv) {
    lc_kernels_init();
    const double peak = lc_measure_fma_peak();
    printf("FP32 FMA peak %.1f GFLOP/s (%d threads, kernels %s); BF16 weights, best of 5\n", peak, lc_max_threads(), lc_k.name);
    if (argc >= 5) {
        for (int i = 1; i + 3 < argc; i += 4) one(atoll(argv[i]), atoll(argv[i + 1]), atoll(argv[i + 2]), atoi(argv[i + 3]), peak);
        return 0;
    }
    static const int64_t shapes[][4] = {{384, 1024, 512, 0},  {160, 1024, 512, 0},  {768, 384, 512, 0},
                                        {1024, 512, 512, 0},  {2048, 1024, 512, 0}, {1024, 2048, 512, 0},
                                        {512, 1024, 43, 1},   {1024, 512, 43, 1},   {512, 1024, 4, 1},
                                        {512, 1024, 8, 1},    {512, 1024, 12, 1},   {512, 1024, 20, 1},
                                        {512, 1024, 33, 1},   {512, 1024, 64, 1},   {512, 1024, 72, 1},
                                        {512, 1024, 20, 2},   {512, 1024, 43, 2},   {1024, 512, 43, 2},
                                        {512, 1024, 64, 2},   {512, 1024, 150, 2}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        one(shapes[i][0], shapes[i][1], shapes[i][2], (int)shapes[i][3], peak);
    return 0;
}
