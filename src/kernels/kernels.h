/* kernels.h — the compute primitives the model is written in: weight-matrix products in any
 * stored dtype (F32, F16, BF16, FP8-e4m3 with block scales), RMSNorm, RoPE, softmax, SiLU.
 * Kernels know nothing of models: a matrix is a pointer, a dtype and a shape. Each op is
 * picked once through the lc_kernels table so SIMD/threaded/quantized versions can slot in. */
#ifndef LC_KERNELS_H
#define LC_KERNELS_H

#include "../base/base.h"
#include "../base/dtype.h"

/* A weight matrix W [rows, cols] (PyTorch [out, in]), stored row-major in `dtype`, usually
 * inside a memory-mapped file. FP8 matrices carry scale_inv [ceil(rows/block_rows),
 * ceil(cols/block_cols)]: the real weight is fp8 * scale_inv[r / block_rows][c / block_cols].
 * Q8_0 / Q4_0 matrices (docs/FORMATS.md) carry qscale, F16 [rows, ceil(cols/32)] (possibly
 * unaligned, in the mapped file): weight = d * q (Q8_0, int8 q, row r at data + r * cols) or
 * d * (q - 8) (Q4_0, 4-bit q, 16 bytes per block: byte j holds q[j] low, q[j + 16] high). */
typedef struct {
    const uint8_t *data;
    lc_dtype dtype;
    int64_t rows, cols;
    const float *scale_inv;
    int64_t block_rows, block_cols;
    const uint8_t *qscale;
} lc_mat;

static inline int64_t lc_q_blocks(int64_t cols) { return (cols + LC_QK - 1) / LC_QK; }
/* bytes of one stored row */
static inline int64_t lc_mat_row_bytes(const lc_mat *w) {
    if (w->dtype == LC_DT_Q4_0) return lc_q_blocks(w->cols) * (LC_QK / 2);
    return w->cols * lc_dtype_size(w->dtype);
}
static inline float lc_q_scale(const lc_mat *w, int64_t r, int64_t b) {
    uint16_t h;
    memcpy(&h, w->qscale + 2 * (r * lc_q_blocks(w->cols) + b), 2);
    return lc_f16_to_f32(h);
}

/* ---- block quantization (`longcat quantize`), the reference the kernels are tested on ---- */
/* One row of n weights -> Q8_0: q[n] int8, d[ceil(n/32)] F16 scales (amax / 127 per block). */
void lc_quantize_row_q8_0(const float *x, int64_t n, int8_t *q, uint16_t *d);
/* One row -> Q4_0: q[ceil(n/32) * 16] packed nibbles, d as above (the block's extreme -> -8). */
void lc_quantize_row_q4_0(const float *x, int64_t n, uint8_t *q, uint16_t *d);

/* One AdamW update's per-tensor constants (torch.optim.AdamW, float32 step by step). */
typedef struct {
    float decay;     /* 1 - lr * weight_decay */
    float beta1, beta2, eps;
    float step_size; /* lr / (1 - beta1^step) */
    float bc2_sqrt;  /* sqrt(1 - beta2^step) */
    float gscale;    /* the gradient is taken as g * gscale (clipping; 1: as it is) */
} lc_adamw_coef;

/* Dequantises W[r, 0..cols) into dst[cols] (f32). */
typedef void (*lc_row_fn)(float *dst, const lc_mat *w, int64_t r);

/* The most rows the row kernels stream side by side (rowdotn): the slices of a work item. */
#define LC_ROW_STREAMS 4

typedef struct {
    const char *name;
    lc_row_fn row[LC_DT_COUNT];
    /* out[t, i] = sum_c W[r0 + i, c] * x[t, c], i < n_rows, t < T; rows of out are ld_out
     * apart, rows of x are ld_x apart. */
    void (*matmul)(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w,
                   int64_t r0, int64_t n_rows, int64_t T);
    /* out[c] = sum_{i < n_rows} W[r0 + i, c] * x[i]: the transposed product used to absorb
     * kv_b_proj into the query in MLA decode. */
    void (*matvec_t)(float *out, const float *x, const lc_mat *w, int64_t r0, int64_t n_rows);
    float (*dot)(const float *a, const float *b, int64_t n);      /* inner loops the drivers use */
    /* out[t * ld_out] = dot(w, x + t * ld_x, n) for t < T, each bit-identical to dot() */
    void (*dots)(float *out, int64_t ld_out, const float *w, const float *x, int64_t ld_x, int64_t T, int64_t n);
    void (*axpy)(float *y, float a, const float *x, int64_t n);
    /* Fused row kernels (NULL: row[] then dots): out[t * ld_out] = W[r, :] . x[t * ld_x, :] for
     * t < T, reading the stored row directly; each token's result is independent of T. */
    void (*rowdots[LC_DT_COUNT])(float *out, int64_t ld_out, const lc_mat *w, int64_t r, const float *x, int64_t ld_x,
                                 int64_t T);
    /* Up to LC_ROW_STREAMS single-token rows of one matrix side by side (NULL: rowdots one row
     * at a time), one memory stream each (a core reads DRAM faster from four streams than from
     * one or two: docs/PERFORMANCE.md): out[q][i] = W[r[q] + i, :] . x for q < ns, i < n, each
     * with the bits rowdots gives it at T = 1. */
    void (*rowdotn[LC_DT_COUNT])(float *const *out, const lc_mat *w, const int64_t *r, int ns, const float *x,
                                 int64_t n);
    /* Own GEMM for products of LC_GEMM_MIN_T tokens or more (NULL: OpenBLAS, else rows);
     * same contract as matmul, results independent of T and of the thread count. */
    void (*gemm)(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w, int64_t r0, int64_t n_rows,
                 int64_t T);
    /* Gate and up of a SwiGLU FFN in one GEMM (NULL: gemm twice, then swiglu): out[t, i] =
     * silu(Wg[i] . x[t]) * (Wu[i] . x[t]), Wg and Wu of one dtype and shape, T >= LC_GEMM_MIN_T;
     * the same bits as the two gemm products followed by swiglu. */
    void (*gemm_swiglu)(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *wg, const lc_mat *wu,
                        int64_t T);
    /* f32 GEMM with strided operands (NULL: OpenBLAS, else loops): out[t * ots + i * ois] = (or
     * +=, accumulate) sum_k A(i, k) B(t, k), i < M, t < N, k < K, where A(i, k) = a[i * ars + k * aks]
     * and B(t, k) = b[t * bts + k * bks]; fastest with bts = 1 or bks = 1, aks = 1 or ars = 1, and
     * ois = 1 or ots = 1. Each output is one fixed-order sum (thread-count free). */
    void (*sgemm)(float *out, int64_t ots, int64_t ois, int accumulate, const float *a, int64_t ars, int64_t aks,
                  const float *b, int64_t bts, int64_t bks, int64_t M, int64_t N, int64_t K);
    /* Causal attention of one head over a prompt (prefill, f32). Query t < T (q + t * ldq: dn
     * dims, then dr more that meet the keys' second part) sees keys u <= p0 + t; key u is
     * k + u * ldk (dn dims) next to kr + u * ldkr (dr dims), value u is v + u * ldv (dv dims):
     * ctx + t * ldc = sum_u softmax_u(scale * q_t . key_u) value_u. p (NULL, or T rows ldp
     * apart) receives the probabilities, zero from u = p0 + t + 1 to p0 + T. Results do not
     * depend on the thread count. Returns 0, or -1 when out of memory (ctx then NaN). */
    int (*attention)(float *ctx, int64_t ldc, const float *q, int64_t ldq, const float *k, int64_t ldk, const float *kr,
                     int64_t ldkr, const float *v, int64_t ldv, int64_t T, int64_t p0, int64_t dn, int64_t dr, int64_t dv,
                     float scale, float *p, int64_t ldp);
    /* AdamW on n elements, g <- g * gscale first: p *= decay; m += (g - m)(1 - beta1);
     * v = v beta2 + (1 - beta2) g g; p -= step_size m / (sqrt(v) / bc2_sqrt + eps); then g = 0
     * (consumed, ready for the next step). Every level gives the same bits. */
    void (*adamw)(float *p, float *g, float *m, float *v, int64_t n, const lc_adamw_coef *c);
    double (*sumsq)(const float *x, int64_t n); /* sum of x^2, in double */
    double (*dot3)(const float *a, const float *b, const float *c, int64_t n); /* sum of a b c, in double */
    /* Elementwise exp family (float, within a few ulp of expf): y[i] = exp(x[i] * scale - shift)
     * (the product rounded to float first: scale 1 is exp(x[i] - shift) exactly), returning the
     * sum of the y[i] in double (y may equal x); SwiGLU out = silu(g) * u and its
     * backward dg = da u silu'(g), du = da silu(g) (dg may equal g, du may equal u or da). */
    double (*expsum)(float *y, const float *x, float scale, float shift, int64_t n);
    void (*swiglu)(float *out, const float *g, const float *u, int64_t n);
    void (*swiglu_backward)(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n);
} lc_kernels;

extern lc_kernels lc_k; /* the active kernel table */
#ifdef LC_HAVE_BLAS
int lc_blas_init(void);            /* loads OpenBLAS; 0 when it is not installed (row kernels then) */
const char *lc_blas_corename(void); /* the OpenBLAS kernel set in use, e.g. "SkylakeX" */
double lc_blas_sgemm_gflops(int n, int threads); /* OpenBLAS's own n^3 sgemm on `threads` threads, best of 5; 0 without it */
void lc_blas_matmul(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w, int64_t r0, int64_t n_rows,
                    int64_t T);
void lc_blas_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const lc_mat *w, int64_t T);
#endif
/* The machine's roofline, measured with the active threads: DRAM read GB/s over a buffer of
 * `bytes`, and FP32 FMA GFLOP/s (AVX2 FMA chains; 0 without AVX2). */
double lc_measure_read_bandwidth(size_t bytes);
double lc_measure_fma_peak(void);

/* 1 to route F32 products through BLAS (when built with it; the default), 0 for the row kernels. */
void lc_kernels_use_blas(int on);
void lc_kernels_init(void);                 /* picks the best available ($LC_KERNELS=scalar|avx2|avx512 forces one) */
const lc_kernels *lc_kernels_scalar(void);  /* the reference */
/* Makes the named level ("scalar", "avx2", "avx512") active; LC_ERR_UNSUPPORTED if this CPU lacks it. */
lc_status lc_kernels_select(const char *name);
int lc_cpu_has_avx2(void);
void lc_kernels_fill_avx2(lc_kernels *k);
int lc_cpu_has_avx512(void);                 /* AVX-512 F, BW, VL, DQ (+ AVX2/FMA/F16C) */
void lc_kernels_fill_avx512(lc_kernels *k);

/* Products with fewer tokens than this use the row kernels (results independent of T: a
 * token's outputs are the same alone or in a batch); from it on, GEMM. */
#define LC_GEMM_MIN_T 9
/* Convenience: out[T, rows] = x[T, cols] @ W^T. */
static inline void lc_matmul(float *out, const float *x, const lc_mat *w, int64_t T) {
    lc_k.matmul(out, w->rows, x, w->cols, w, 0, w->rows, T);
}
static inline void lc_mat_row(float *dst, const lc_mat *w, int64_t r) { lc_k.row[w->dtype](dst, w, r); }
/* Several products at once: out[T, rows] = x[T, cols] @ W^T for each job. When all have fewer
 * than LC_GEMM_MIN_T tokens (decode) they share one parallel region: their rows are cut into
 * slices of about 32 KB of weights (work items of up to LC_ROW_STREAMS slices: see lc_row_plan),
 * each thread streaming a contiguous run of items and taking
 * over half of another's rest when it runs out (lc_parallel_steal): one fork and join instead of
 * one per product, and no thread idle while another finishes. Otherwise they run one after
 * another. Every output has the bits lc_matmul gives it. */
typedef struct {
    float *out;
    const float *x;
    const lc_mat *w;
    int64_t T;
} lc_matmul_job;
void lc_matmul_many(const lc_matmul_job *jobs, int64_t n);

/* The same cut into work items for a caller that shares them out inside its own region
 * (lc_shares_run, base.h): lc_row_plan_make succeeds only when every job is a row-kernel job
 * (fewer than LC_GEMM_MIN_T tokens, a fused row kernel on this level); item k is then run by
 * lc_row_plan_item(k, plan), for k < plan->n_items. With rowdotn kernels an item is
 * LC_ROW_STREAMS slices of one job, one from each of that many parts of its rows, streamed side
 * by side: a thread's contiguous run of items reads four contiguous runs of weights at once.
 * The jobs must outlive the plan. */
enum { LC_PLAN_INLINE = 32 }; /* plans of up to this many jobs keep `first` inside (no malloc) */
typedef struct {
    const lc_matmul_job *jobs;
    int64_t *first; /* [n_jobs + 1]: job j's items are first[j] .. first[j + 1] - 1 */
    int64_t n_jobs, n_items;
    int64_t work; /* multiply-adds of all the jobs */
    int64_t first_inline[LC_PLAN_INLINE + 1]; /* `first` for small plans: the plan stays where made */
} lc_row_plan;
int lc_row_plan_make(lc_row_plan *p, const lc_matmul_job *jobs, int64_t n);
void lc_row_plan_item(int64_t k, void *plan);
void lc_row_plan_free(lc_row_plan *p);
/* A team barrier (lc_team_barrier) before a phase that runs `next` from `shares`: while it
 * waits, this thread prefetches the weights of the first item its share holds. */
void lc_row_plan_barrier(lc_team_slot *b, int id, int nt, const lc_row_plan *next, const lc_share *shares);
/* Announces (lc_team_ahead) that the team's next call runs a row plan of jobs[0..n), n <=
 * LC_ROW_STREAMS, with lc_shares_init's split (lc_matmul, lc_matmul_many, the FFN's gate and
 * up, the attention's first phase): each waiting thread prefetches the slices of its first
 * item. Only where bandwidth would go unused: no effect outside a team scope. */
void lc_row_plan_ahead(const lc_matmul_job *jobs, int n);
/* The weights thread id of nt reads first in that plan (its first item's slices, non-empty
 * ones): how many ranges; 0 when its share is empty or the jobs make no row plan. */
int lc_row_plan_first_ranges(const lc_matmul_job *jobs, int n, int id, int nt, lc_prefetch_range r[LC_ROW_STREAMS]);
int lc_mat_dtype_supported(lc_dtype t);

/* out[n] = w * x / sqrt(mean(x^2) + eps), in f32. out may equal x. */
void lc_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);
/* In place: x[n] <- softmax(x) (max-subtracted, f32). */
void lc_softmax(float *x, int64_t n);
/* In place: x[n] <- softmax(x * scale), scale > 0: the same bits as scaling x first, in one pass
 * fewer (attention's scores). */
void lc_softmax_scaled(float *x, int64_t n, float scale);
/* One query's row of attention scores (the first n keys visible) -> its probabilities:
 * softmax(row * scale) over n, zeros from n to pb; also copied to keep (NULL: not kept) with
 * zeros up to P (lc_k.attention's p). Shared by the levels' attention kernels. */
void lc_attention_probs(float *row, int64_t n, int64_t pb, float scale, float *keep, int64_t P);
static inline float lc_silu(float x) { return x / (1.0f + __builtin_expf(-x)); }
/* RoPE on dr dims at position pos: pair (x[2i], x[2i+1]) rotated by pos * theta^(-2i/dr),
 * written de-interleaved: out[i] = x0 cos - x1 sin, out[i + dr/2] = x1 cos + x0 sin. In place. */
void lc_rope(float *x, int64_t dr, int64_t pos, double theta);
/* The same in two steps, so one position's angles serve every head: cs[dr] = cos of the dr/2
 * angles, then their sines; apply rotates x in place as lc_rope does. */
void lc_rope_coeffs(float *cs, int64_t dr, int64_t pos, double theta);
void lc_rope_apply(float *x, const float *cs, int64_t dr);
/* lc_rope_coeffs of positions p0..p0+n-1 as rows of cs [n, dr] (the same bits, one pow per
 * frequency); lc_rope_table: from position 0. */
void lc_rope_rows(float *cs, int64_t dr, int64_t p0, int64_t n, double theta);
void lc_rope_table(float *cs, int64_t dr, int64_t n, double theta);
/* ---- backward (training; weights in F32) ----
 * Gradients of out = x @ W^T for W [rows, cols], x [T, cols], dout [T, rows]:
 * dx[T, cols] += dout @ W (dx may be NULL) and dW[rows, cols] += dout^T @ x (dw may be NULL).
 * Fixed summation order: results do not depend on the thread count. */
void lc_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const lc_mat *w, int64_t T);
/* RMSNorm backward for one row: dx[n] += d(out)/dx, dw[n] += d(out)/dw. */
void lc_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t n, float eps);
/* The same for T rows of width n (dx [T, n] may be NULL): rows in parallel, dw summed over the
 * rows in order (bit-identical to calling lc_rmsnorm_backward row after row). */
void lc_rmsnorm_backward_rows(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t T, int64_t n,
                              float eps);
/* RoPE backward in place, with lc_rope_coeffs' cs for the position: the gradient w.r.t. the
 * interleaved input from the gradient of the de-interleaved output (the inverse rotation). */
void lc_rope_backward_apply(float *d, const float *cs, int64_t dr);

/* y[n] += a * x[n]; the dot product. Through the active table. */
static inline void lc_axpy(float *y, float a, const float *x, int64_t n) { lc_k.axpy(y, a, x, n); }
static inline float lc_dot(const float *a, const float *b, int64_t n) { return lc_k.dot(a, b, n); }

#endif
