/* scalar.c — the reference CPU kernels: portable C, OpenMP over output rows, fixed reduction
 * order (results do not depend on the thread count). Every faster path is tested against
 * these. No model knowledge here. */
#include "../kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void row_f32(float *dst, const lc_mat *w, int64_t r) {
    memcpy(dst, w->data + (size_t)(r * w->cols) * 4, (size_t)w->cols * 4);
}

static void row_bf16(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    for (int64_t c = 0; c < w->cols; c++) {
        uint16_t h;
        memcpy(&h, p + 2 * c, 2);
        dst[c] = lc_bf16_to_f32(h);
    }
}

static void row_f16(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols) * 2;
    for (int64_t c = 0; c < w->cols; c++) {
        uint16_t h;
        memcpy(&h, p + 2 * c, 2);
        dst[c] = lc_f16_to_f32(h);
    }
}

static float g_fp8_lut[256];
static int g_use_blas = 1;
void lc_kernels_use_blas(int on) {
#ifdef LC_HAVE_BLAS
    g_use_blas = on && lc_blas_init();
#else
    g_use_blas = on;
#endif
}

static void row_fp8(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *p = w->data + (size_t)(r * w->cols);
    const float *scale = w->scale_inv + (r / w->block_rows) * ((w->cols + w->block_cols - 1) / w->block_cols);
    for (int64_t c0 = 0, b = 0; c0 < w->cols; c0 += w->block_cols, b++) {
        int64_t c1 = LC_MIN(c0 + w->block_cols, w->cols);
        float s = scale[b];
        for (int64_t c = c0; c < c1; c++) dst[c] = g_fp8_lut[p[c]] * s;
    }
}

static void row_q8_0(float *dst, const lc_mat *w, int64_t r) {
    const int8_t *q = (const int8_t *)(const void *)(w->data + r * w->cols);
    for (int64_t b = 0; b < lc_q_blocks(w->cols); b++) {
        float d = lc_q_scale(w, r, b);
        for (int64_t c = b * LC_QK; c < LC_MIN((b + 1) * LC_QK, w->cols); c++) dst[c] = d * (float)q[c];
    }
}

static void row_q4_0(float *dst, const lc_mat *w, int64_t r) {
    const uint8_t *q = w->data + r * lc_mat_row_bytes(w);
    for (int64_t b = 0; b < lc_q_blocks(w->cols); b++) {
        float d = lc_q_scale(w, r, b);
        for (int64_t j = 0; j < LC_QK; j++) {
            int64_t c = b * LC_QK + j;
            if (c >= w->cols) break;
            uint8_t byte = q[b * (LC_QK / 2) + (j & 15)];
            int v = (j < 16 ? byte & 15 : byte >> 4) - 8;
            dst[c] = d * (float)v;
        }
    }
}

int lc_mat_dtype_supported(lc_dtype t) {
    return t == LC_DT_F32 || t == LC_DT_BF16 || t == LC_DT_F16 || t == LC_DT_F8_E4M3 || t == LC_DT_Q8_0 ||
           t == LC_DT_Q4_0;
}

void lc_quantize_row_q8_0(const float *x, int64_t n, int8_t *q, uint16_t *d) {
    for (int64_t b = 0; b < lc_q_blocks(n); b++) {
        const int64_t c0 = b * LC_QK, c1 = LC_MIN(c0 + LC_QK, n);
        float amax = 0;
        for (int64_t c = c0; c < c1; c++) amax = fmaxf(amax, fabsf(x[c]));
        d[b] = lc_f32_to_f16(amax / 127.0f);
        const float s = lc_f16_to_f32(d[b]), inv = s > 0 ? 1.0f / s : 0.0f; /* the scale as stored */
        for (int64_t c = c0; c < c1; c++) q[c] = (int8_t)fmaxf(-127.0f, fminf(127.0f, roundf(x[c] * inv)));
    }
}

void lc_quantize_row_q4_0(const float *x, int64_t n, uint8_t *q, uint16_t *d) {
    for (int64_t b = 0; b < lc_q_blocks(n); b++) {
        const int64_t c0 = b * LC_QK, c1 = LC_MIN(c0 + LC_QK, n);
        float amax = 0, ext = 0; /* the value of largest magnitude, with its sign, maps to -8 */
        for (int64_t c = c0; c < c1; c++)
            if (fabsf(x[c]) > amax) {
                amax = fabsf(x[c]);
                ext = x[c];
            }
        d[b] = lc_f32_to_f16(ext / -8.0f);
        const float s = lc_f16_to_f32(d[b]), inv = s != 0 ? 1.0f / s : 0.0f;
        uint8_t *qb = q + b * (LC_QK / 2);
        memset(qb, 0x88, LC_QK / 2); /* padding past n decodes to 0 */
        for (int64_t c = c0; c < c1; c++) {
            int j = (int)(c - c0), v = (int)fmaxf(0.0f, fminf(15.0f, roundf(x[c] * inv) + 8.0f));
            qb[j & 15] = (uint8_t)(j < 16 ? (qb[j & 15] & 0xf0) | v : (qb[j & 15] & 0x0f) | (v << 4));
        }
    }
}

static float dot_scalar(const float *a, const float *b, int64_t n) {
    /* Eight partial sums combined in a fixed tree: vectorisable and deterministic. */
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) s[k] += a[i + k] * b[i + k];
    for (; i < n; i++) s[i & 7] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void axpy_scalar(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void dots_scalar(float *out, int64_t ld_out, const float *w, const float *x, int64_t ld_x, int64_t T, int64_t n) {
    for (int64_t t = 0; t < T; t++) out[t * ld_out] = lc_k.dot(w, x + t * ld_x, n);
}

/* Rows per work item of the row kernels: about 32 KB of stored weights (16 rows of 1024 BF16). */
static int64_t slice_rows(const lc_mat *w) {
    enum { SLICE_BYTES = 32768 };
    return LC_MAX(1, SLICE_BYTES / LC_MAX(1, (int64_t)lc_mat_row_bytes(w)));
}

/* One slice of rows to run: rows [r, end) of w against T tokens into out (row i at
 * out + i - base). */
typedef struct {
    float *out;
    int64_t ld_out;
    const float *x;
    int64_t ld_x;
    const lc_mat *w;
    int64_t r, end, T, base;
} row_span;

/* Slice k (`per` rows) of the span `all`: empty past its end. */
static row_span slice_of(row_span all, int64_t per, int64_t k) {
    all.r = LC_MIN(all.end, all.r + k * per);
    all.end = LC_MIN(all.end, all.r + per);
    return all;
}

/* Slices per work item: LC_ROW_STREAMS where this level streams rows side by side (rowdotn),
 * else one. */
static int item_streams(void) { return lc_k.rowdotn[LC_DT_BF16] || lc_k.rowdotn[LC_DT_F32] ? LC_ROW_STREAMS : 1; }

/* Work items for m slices in groups of g = item_streams(): item i is slices i, i + n, i + 2n,
 * ... (n = ceil(m / g) items; those >= m empty), the g parts of the rows streamed side by side
 * (rows of one length: the streams advance together). */
static int64_t items_of_slices(int64_t m) {
    const int g = item_streams();
    return (m + g - 1) / g;
}

/* How many of the slices s[0..g), from the first, still have rows. */
static int live_slices(const row_span *s, int g) {
    int ns = 0;
    while (ns < g && s[ns].r < s[ns].end) ns++;
    return ns;
}

/* The g slices s[0..g) of one job (the same matrix, tokens and x; the empty ones last): side by
 * side, row with row, where they are single-token rows with a rowdotn kernel — the rows all the
 * slices still holding some have, then again for the rest — otherwise one after the other. The
 * same bits either way. */
static void run_spans(row_span *s, int g) {
    const lc_mat *w = s[0].w;
    void (*side)(float *const *, const lc_mat *, const int64_t *, int, const float *, int64_t) =
        s[0].T == 1 ? lc_k.rowdotn[w->dtype] : NULL;
    for (int ns; side && (ns = live_slices(s, g)) > 0;) {
        float *out[LC_ROW_STREAMS];
        int64_t r[LC_ROW_STREAMS], n = s[0].end - s[0].r;
        for (int q = 0; q < ns; q++) {
            out[q] = s[q].out + (s[q].r - s[q].base);
            r[q] = s[q].r;
            n = LC_MIN(n, s[q].end - s[q].r);
        }
        side(out, w, r, ns, s[0].x, n);
        for (int q = 0; q < ns; q++) s[q].r += n;
    }
    for (int q = 0; q < g; q++)
        for (; s[q].r < s[q].end; s[q].r++)
            lc_k.rowdots[w->dtype](s[q].out + (s[q].r - s[q].base), s[q].ld_out, w, s[q].r, s[q].x, s[q].ld_x, s[q].T);
}

/* Work items of `rows` rows in slices of `per`. */
static int64_t items_of(int64_t rows, int64_t per) { return items_of_slices((rows + per - 1) / per); }

/* The item_streams() slices of item i of span `all` cut into slices of `per` rows (the later
 * ones may be empty); returns how many. */
static int item_slices(row_span all, int64_t per, int64_t i, row_span s[LC_ROW_STREAMS]) {
    const int g = item_streams();
    const int64_t n = items_of(all.end - all.r, per);
    for (int q = 0; q < g; q++) s[q] = slice_of(all, per, i + q * n);
    return g;
}

/* Item i of span `all` cut into slices of `per` rows. */
static void run_item(row_span all, int64_t per, int64_t i) {
    row_span s[LC_ROW_STREAMS];
    const int g = item_slices(all, per, i, s);
    run_spans(s, g);
}

/* The rows of `all` in slices of `per` rows (lc_matmul's work items). */
typedef struct {
    row_span all;
    int64_t per;
} rows_job;

static void rows_slice(int64_t k, void *arg) {
    const rows_job *j = arg;
    run_item(j->all, j->per, k);
}

/* Rows [all.r + i0, all.r + i1) of a span converted to f32 one at a time, then dotted with every
 * token (a level with no fused row kernel for the dtype). */
static void rows_convert(const row_span *all, int64_t i0, int64_t i1) {
    const lc_mat *w = all->w;
    float *buf = malloc((size_t)w->cols * sizeof *buf);
    for (int64_t i = all->r + i0; i < all->r + i1; i++) {
        float *o = all->out + (i - all->base);
        if (buf) {
            lc_k.row[w->dtype](buf, w, i);
            lc_k.dots(o, all->ld_out, buf, all->x, all->ld_x, all->T, w->cols);
        } else /* out of memory for one row: poison the output so the failure cannot pass unseen */
            for (int64_t t = 0; t < all->T; t++) o[t * all->ld_out] = NAN;
    }
    free(buf);
}

/* rows_convert on a team: each thread an even share of the span's rows. */
static void rows_convert_team(void *arg) {
    const row_span *all = arg;
    const int64_t id = lc_thread_num(), nt = lc_num_threads(), n = all->end - all->r;
    rows_convert(all, n * id / nt, n * (id + 1) / nt);
}

static void matmul_scalar(float *out, int64_t ld_out, const float *x, int64_t ld_x, const lc_mat *w, int64_t r0,
                          int64_t n_rows, int64_t T) {
    /* GEMM (non-F32 rows dequantised per block) from LC_GEMM_MIN_T tokens on: the level's own,
     * else OpenBLAS. Below it, each output is one dot of a row with one token, exactly as for
     * a single token, so a batch of decode steps gives bit-identical results to running them
     * one by one. */
    if (T >= LC_GEMM_MIN_T && lc_k.gemm) {
        lc_k.gemm(out, ld_out, x, ld_x, w, r0, n_rows, T);
        return;
    }
#ifdef LC_HAVE_BLAS
    if (g_use_blas && T >= LC_GEMM_MIN_T) {
        lc_blas_matmul(out, ld_out, x, ld_x, w, r0, n_rows, T);
        return;
    }
#endif
    const int64_t cols = w->cols;
    if (lc_k.rowdots[w->dtype]) { /* fused: the stored row streams straight into the dot products */
        const rows_job j = {{out, ld_out, x, ld_x, w, r0, r0 + n_rows, T, r0}, slice_rows(w)};
        lc_parallel_steal(n_rows * cols * T > 32768 && !lc_in_parallel(), items_of(n_rows, j.per), rows_slice, (void *)&j);
        return;
    }
    const row_span all = {out, ld_out, x, ld_x, w, r0, r0 + n_rows, T, r0};
    if (n_rows * cols * T > 32768 && !lc_in_parallel()) lc_team_run(rows_convert_team, (void *)&all);
    else rows_convert(&all, 0, n_rows);
}

/* A job for the row kernels (not GEMM-sized, and this level has a fused row kernel for it)? */
static int row_job(const lc_matmul_job *jb) { return jb->T < LC_GEMM_MIN_T && lc_k.rowdots[jb->w->dtype]; }

/* Work items: those of each job (run_item), in job order. The plan keeps only where each job's
 * items start (a few cache lines, read by every thread for every item; a table per item would
 * cost the threads that did not write it a miss every few items). */
int lc_row_plan_make(lc_row_plan *p, const lc_matmul_job *jobs, int64_t n) {
    *p = (lc_row_plan){.jobs = jobs, .n_jobs = n};
    for (int64_t j = 0; j < n; j++) {
        if (!row_job(&jobs[j])) return 0;
        p->work += jobs[j].w->rows * jobs[j].w->cols * jobs[j].T;
    }
    p->first = n <= LC_PLAN_INLINE ? p->first_inline : malloc((size_t)(n + 1) * sizeof *p->first);
    if (!p->first) return 0;
    p->first[0] = 0;
    for (int64_t j = 0; j < n; j++) p->first[j + 1] = p->first[j] + items_of(jobs[j].w->rows, slice_rows(jobs[j].w));
    p->n_items = p->first[n];
    return 1;
}

/* The job item k belongs to: the last j with first[j] <= k (jobs without items skipped). */
static int64_t plan_job_of(const lc_row_plan *p, int64_t k) {
    int64_t lo = 0, hi = p->n_jobs - 1;
    while (lo < hi) {
        const int64_t mid = (lo + hi + 1) / 2;
        if (p->first[mid] <= k) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* All the rows of job j, as a span. */
static row_span plan_job_span(const lc_row_plan *p, int64_t j) {
    const lc_matmul_job *jb = &p->jobs[j];
    const lc_mat *w = jb->w;
    return (row_span){jb->out, w->rows, jb->x, w->cols, w, 0, w->rows, jb->T, 0};
}

/* The slices of plan item k (into s), as item_slices gives them; returns how many. */
static int plan_item_slices(const lc_row_plan *p, int64_t k, row_span s[LC_ROW_STREAMS]) {
    const int64_t j = plan_job_of(p, k);
    const row_span all = plan_job_span(p, j);
    return item_slices(all, slice_rows(all.w), k - p->first[j], s);
}

void lc_row_plan_item(int64_t k, void *plan) {
    row_span s[LC_ROW_STREAMS];
    const int g = plan_item_slices(plan, k, s);
    run_spans(s, g);
}

/* The weights plan item k reads: one range per slice that has rows (into r); how many. */
static int plan_item_ranges(const lc_row_plan *p, int64_t k, lc_prefetch_range r[LC_ROW_STREAMS]) {
    row_span s[LC_ROW_STREAMS];
    const int g = plan_item_slices(p, k, s);
    const size_t rb = (size_t)lc_mat_row_bytes(s[0].w);
    int m = 0;
    for (int q = 0; q < g; q++)
        if (s[q].r < s[q].end) r[m++] = (lc_prefetch_range){s[q].w->data + (size_t)s[q].r * rb, (size_t)(s[q].end - s[q].r) * rb};
    return m;
}

void lc_row_plan_barrier(lc_team_slot *b, int id, int nt, const lc_row_plan *next, const lc_share *shares) {
    const int64_t k = next ? lc_share_first(&shares[id]) : -1;
    lc_prefetch_range ahead[LC_ROW_STREAMS];
    lc_team_barrier_ahead(b, id, nt, ahead, k < 0 ? 0 : plan_item_ranges(next, k, ahead));
}

/* lc_row_plan_ahead's announcement: the jobs, copied. */
typedef struct {
    int n;
    lc_matmul_job jobs[LC_ROW_STREAMS];
} plan_ahead;

int lc_row_plan_first_ranges(const lc_matmul_job *jobs, int n, int id, int nt, lc_prefetch_range r[LC_ROW_STREAMS]) {
    lc_row_plan p = {0}; /* `first` inside the plan for so few jobs: no allocation */
    int m = 0;
    if (n >= 1 && n <= LC_PLAN_INLINE && lc_row_plan_make(&p, jobs, n)) {
        const int64_t k = p.n_items * id / nt; /* lc_shares_init's split */
        if (k < p.n_items * (id + 1) / nt) m = plan_item_ranges(&p, k, r);
    }
    lc_row_plan_free(&p);
    return m;
}

static int plan_ahead_ranges(const void *arg, int id, int nt, lc_prefetch_range *r) {
    const plan_ahead *a = arg;
    return lc_row_plan_first_ranges(a->jobs, a->n, id, nt, r);
}

void lc_row_plan_ahead(const lc_matmul_job *jobs, int n) {
    _Static_assert(sizeof(plan_ahead) <= LC_AHEAD_ARG_BYTES, "an announcement's jobs fit its copy");
    _Static_assert(LC_ROW_STREAMS <= LC_AHEAD_RANGES, "an item's slices fit an announcement's ranges");
    if (n < 1 || n > LC_ROW_STREAMS) return;
    plan_ahead a = {.n = n};
    memcpy(a.jobs, jobs, (size_t)n * sizeof *jobs);
    lc_team_ahead(plan_ahead_ranges, &a, sizeof a);
}

void lc_row_plan_free(lc_row_plan *p) {
    if (p->first != p->first_inline) free(p->first);
    *p = (lc_row_plan){0};
}

void lc_matmul_many(const lc_matmul_job *jobs, int64_t n) {
    lc_row_plan p;
    if (lc_row_plan_make(&p, jobs, n)) { /* every one a row-kernel job: one region for all */
        lc_parallel_steal(p.work > 32768 && !lc_in_parallel(), p.n_items, lc_row_plan_item, &p);
        lc_row_plan_free(&p);
        return;
    }
    for (int64_t j = 0; j < n; j++) lc_matmul(jobs[j].out, jobs[j].x, jobs[j].w, jobs[j].T); /* GEMM-sized ones among them, or no memory */
}

static void matvec_t_scalar(float *out, const float *x, const lc_mat *w, int64_t r0, int64_t n_rows) {
    /* Sequential over rows so every out[c] sums in the same order; columns split across
     * threads by chunks. */
    lc_row_fn row = lc_k.row[w->dtype];
    const int64_t cols = w->cols;
    float *buf = malloc((size_t)cols * sizeof *buf);
    if (!buf) {
        for (int64_t c = 0; c < cols; c++) out[c] = NAN;
        return;
    }
    memset(out, 0, (size_t)cols * sizeof *out);
    for (int64_t i = 0; i < n_rows; i++) {
        row(buf, w, r0 + i);
        lc_axpy(out, x[i], buf, cols);
    }
    free(buf);
}

void lc_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps) {
    const double ss = lc_k.sumsq(x, n); /* in double: the norm of a 6144-wide row stays exact to f32 */
    float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (x[i] * r);
}

void lc_softmax(float *x, int64_t n) { lc_softmax_scaled(x, n, 1.0f); }

void lc_softmax_scaled(float *x, int64_t n, float scale) {
    float m[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY}, mx = -INFINITY;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) /* eight running maxima: the compiler makes it one vector max per step */
        for (int k = 0; k < 8; k++) m[k] = x[i + k] > m[k] ? x[i + k] : m[k];
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int k = 0; k < 8; k++) mx = m[k] > mx ? m[k] : mx;
    /* rounding is monotonic, so the max of the scaled scores is the scaled max */
    double sum = lc_k.expsum(x, x, scale, mx * scale, n);
    const float inv = (float)(1.0 / sum);
#pragma omp simd
    for (i = 0; i < n; i++) x[i] *= inv;
}

/* One position's cosines then sines from the inverse frequencies inv[dr / 2]. */
static void rope_row(float *cs, int64_t dr, int64_t pos, const double *inv) {
    const int64_t half = dr / 2;
    for (int64_t i = 0; i < half; i++) {
        double ang = (double)pos * inv[i];
        cs[i] = (float)cos(ang);
        cs[half + i] = (float)sin(ang);
    }
}

static void rope_inv_freq(double *inv, int64_t dr, double theta) {
    for (int64_t i = 0; i < dr / 2; i++) inv[i] = pow(theta, -2.0 * (double)i / (double)dr);
}

void lc_rope_coeffs(float *cs, int64_t dr, int64_t pos, double theta) {
    double inv[dr / 2 > 0 ? dr / 2 : 1];
    rope_inv_freq(inv, dr, theta);
    rope_row(cs, dr, pos, inv);
}

void lc_rope_rows(float *cs, int64_t dr, int64_t p0, int64_t n, double theta) {
    double inv[dr / 2 > 0 ? dr / 2 : 1];
    rope_inv_freq(inv, dr, theta);
    for (int64_t p = 0; p < n; p++) rope_row(cs + p * dr, dr, p0 + p, inv);
}

void lc_rope_table(float *cs, int64_t dr, int64_t n, double theta) { lc_rope_rows(cs, dr, 0, n, theta); }

void lc_rope_apply(float *x, const float *cs, int64_t dr) {
    const int64_t half = dr / 2;
    float tmp[half > 0 ? 2 * half : 1];
    for (int64_t i = 0; i < half; i++) {
        float c = cs[i], s = cs[half + i], x0 = x[2 * i], x1 = x[2 * i + 1];
        tmp[i] = x0 * c - x1 * s;
        tmp[i + half] = x1 * c + x0 * s;
    }
    memcpy(x, tmp, (size_t)dr * sizeof *x);
}

void lc_rope(float *x, int64_t dr, int64_t pos, double theta) {
    float cs[dr > 0 ? dr : 1];
    lc_rope_coeffs(cs, dr, pos, theta);
    lc_rope_apply(x, cs, dr);
}

void lc_matmul_backward(float *dx, float *dw, const float *dout, const float *x, const lc_mat *w, int64_t T) {
    const int64_t R = w->rows, C = w->cols;
    if (lc_k.sgemm && w->dtype == LC_DT_F32 && (uintptr_t)w->data % sizeof(float) == 0) { /* mapped files need not align */
        const float *W = (const float *)(const void *)w->data;
        /* dx[t, c] += sum_r dout[t, r] W[r, c]: lanes along c, A(t, r) = dout[t, r], B(c, r) = W[r, c] */
        if (dx) lc_k.sgemm(dx, 1, C, 1, dout, R, 1, W, 1, C, T, C, R);
        /* dW[r, c] += sum_t dout[t, r] x[t, c]: lanes along r, A(c, t) = x[t, c], B(r, t) = dout[t, r] */
        if (dw) lc_k.sgemm(dw, C, 1, 1, x, 1, C, dout, 1, R, C, R, T);
        return;
    }
#ifdef LC_HAVE_BLAS
    if (g_use_blas && w->dtype == LC_DT_F32) {
        lc_blas_matmul_backward(dx, dw, dout, x, w, T);
        return;
    }
#endif
    lc_row_fn row = lc_k.row[w->dtype];
    if (dx) {
        /* dx[t] += sum_r dout[t][r] * W[r]: rows in order, so each dx element sums in a fixed order */
#pragma omp parallel if (T * R * C > 32768 && !lc_in_parallel())
        {
            float *buf = malloc((size_t)C * sizeof *buf);
#pragma omp for schedule(static)
            for (int64_t t = 0; t < T; t++) {
                if (!buf) continue;
                for (int64_t r = 0; r < R; r++) {
                    float g = dout[t * R + r];
                    if (g == 0) continue;
                    row(buf, w, r); /* copies: mapped weights need not be 4-byte aligned */
                    lc_axpy(dx + t * C, g, buf, C);
                }
            }
            free(buf);
        }
    }
    if (dw) {
        /* dW[r] += sum_t dout[t][r] * x[t], tokens in order */
#pragma omp parallel for schedule(static) if (T * R * C > 32768 && !lc_in_parallel())
        for (int64_t r = 0; r < R; r++)
            for (int64_t t = 0; t < T; t++) {
                float g = dout[t * R + r];
                if (g != 0) lc_axpy(dw + r * C, g, x + t * C, C);
            }
    }
}

void lc_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t n, float eps) {
    const double ss = lc_k.sumsq(x, n), dot = lc_k.dot3(dout, w, x, n);
    float r = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
    /* d/dx of w*x*r: r*(w*dout) - x * r^3 * mean(w*dout*x) */
    float c = (float)(dot / (double)n) * r * r * r;
    for (int64_t i = 0; i < n; i++) {
        if (dw) dw[i] += dout[i] * x[i] * r;
        if (dx) dx[i] += dout[i] * w[i] * r - x[i] * c;
    }
}

void lc_rmsnorm_backward_rows(float *dx, float *dw, const float *dout, const float *x, const float *w, int64_t T, int64_t n,
                              float eps) {
    float *r = malloc((size_t)(T ? T : 1) * sizeof *r);
    if (!r) { /* no room for the per-row scales: one row at a time, the same sums */
        for (int64_t t = 0; t < T; t++) lc_rmsnorm_backward(dx ? dx + t * n : NULL, dw, dout + t * n, x + t * n, w, n, eps);
        return;
    }
#pragma omp parallel if (T * n > 16384 && !lc_in_parallel())
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) { /* dx: row by row, as lc_rmsnorm_backward */
            const float *xt = x + t * n, *dt = dout + t * n;
            const double ss = lc_k.sumsq(xt, n), dot = lc_k.dot3(dt, w, xt, n);
            const float rt = (float)(1.0 / sqrt(ss / (double)n + (double)eps));
            const float c = (float)(dot / (double)n) * rt * rt * rt;
            if (dx)
                for (int64_t i = 0; i < n; i++) dx[t * n + i] += dt[i] * w[i] * rt - xt[i] * c;
            r[t] = rt;
        }
        if (dw) { /* dw: column blocks in parallel, rows in order within each */
#pragma omp for schedule(static)
            for (int64_t b = 0; b < (n + 15) / 16; b++)
                for (int64_t t = 0; t < T; t++)
                    for (int64_t i = b * 16; i < LC_MIN(n, b * 16 + 16); i++) dw[i] += dout[t * n + i] * x[t * n + i] * r[t];
        }
    }
    free(r);
}

void lc_rope_backward_apply(float *d, const float *cs, int64_t dr) {
    const int64_t half = dr / 2;
    float tmp[half > 0 ? 2 * half : 1];
    for (int64_t i = 0; i < half; i++) {
        float c = cs[i], s = cs[half + i];
        float d0 = d[i], d1 = d[i + half]; /* gradients of out[i], out[i + half] */
        tmp[2 * i] = d0 * c + d1 * s;
        tmp[2 * i + 1] = -d0 * s + d1 * c;
    }
    memcpy(d, tmp, (size_t)dr * sizeof *d);
}

static void adamw_scalar(float *p, float *g, float *m, float *v, int64_t n, const lc_adamw_coef *c) {
    const float one_b1 = 1.0f - c->beta1, one_b2 = 1.0f - c->beta2;
    for (int64_t k = 0; k < n; k++) {
        const float gk = g[k] * c->gscale;
        p[k] *= c->decay;
        m[k] += (gk - m[k]) * one_b1;
        v[k] = v[k] * c->beta2 + one_b2 * gk * gk;
        float denom = sqrtf(v[k]) / c->bc2_sqrt + c->eps;
        p[k] -= c->step_size * (m[k] / denom);
        g[k] = 0;
    }
}

static double sumsq_scalar(const float *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
}

static double dot3_scalar(const float *a, const float *b, const float *c, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)a[i] * b[i] * c[i];
    return s;
}

/* The strided GEMM's reference: one float sum over k in order per output. */
static void sgemm_scalar(float *out, int64_t ots, int64_t ois, int accumulate, const float *a, int64_t ars, int64_t aks,
                         const float *b, int64_t bts, int64_t bks, int64_t M, int64_t N, int64_t K) {
#pragma omp parallel for schedule(static) if (M * N * K > 65536 && !lc_in_parallel())
    for (int64_t t = 0; t < N; t++)
        for (int64_t i = 0; i < M; i++) {
            float acc = 0;
            for (int64_t k = 0; k < K; k++) acc += a[i * ars + k * aks] * b[t * bts + k * bks];
            float *o = out + t * ots + i * ois;
            *o = accumulate ? *o + acc : acc;
        }
}

static double expsum_scalar(float *y, const float *x, float scale, float shift, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(x[i] * scale - shift);
        sum += y[i];
    }
    return sum;
}

static void swiglu_scalar(float *out, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = lc_silu(g[i]) * u[i];
}

static void swiglu_backward_scalar(float *dg, float *du, const float *da, const float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], ui = u[i], ai = da[i];
        const float sg = 1.0f / (1.0f + expf(-gi)), silu = gi * sg;
        dg[i] = ai * ui * sg * (1.0f + gi * (1.0f - sg));
        du[i] = ai * silu;
    }
}

void lc_attention_probs(float *row, int64_t n, int64_t pb, float scale, float *keep, int64_t P) {
    lc_softmax_scaled(row, n, scale);
    memset(row + n, 0, (size_t)(pb - n) * sizeof *row);
    if (keep) {
        memcpy(keep, row, (size_t)pb * sizeof *row);
        memset(keep + pb, 0, (size_t)(P - pb) * sizeof *row);
    }
}

/* The attention of one head as products: on blocks of ATTN_ROWS queries, each against only
 * the keys it may see (positions below p0 + the block's end: causal blocking halves the work of
 * a long prompt), scores = Q K^T as two products (no-rope dims, then rope dims), the scaled
 * causal softmax per row, ctx = P V; each product runs with its vector lanes along the
 * output's contiguous index, so results store without transposes. */
#define ATTN_ROWS 64
static int attention_products(float *ctx, int64_t ldc, const float *q, int64_t ldq, const float *k, int64_t ldk,
                              const float *kr, int64_t ldkr, const float *v, int64_t ldv, int64_t T, int64_t p0, int64_t dn,
                              int64_t dr, int64_t dv, float scale, float *p, int64_t ldp) {
    const int64_t P = p0 + T;
    float *sc = malloc((size_t)(LC_MIN(T, ATTN_ROWS) * P) * sizeof *sc);
    if (!sc) {
        for (int64_t t = 0; t < T; t++)
            for (int64_t d = 0; d < dv; d++) ctx[t * ldc + d] = NAN;
        return -1;
    }
    for (int64_t t0 = 0; t0 < T; t0 += ATTN_ROWS) {
        const int64_t nt = LC_MIN(ATTN_ROWS, T - t0), Pb = p0 + t0 + nt; /* keys this block sees */
        const float *qb = q + t0 * ldq;
        lc_k.sgemm(sc, 1, P, 0, qb, ldq, 1, k, ldk, 1, nt, Pb, dn);
        if (dr) lc_k.sgemm(sc, 1, P, 1, qb + dn, ldq, 1, kr, ldkr, 1, nt, Pb, dr);
        for (int64_t t = 0; t < nt; t++) {
            float *row = sc + t * P;
            const int64_t n = p0 + t0 + t + 1; /* causal: only u <= p0 + t */
            lc_attention_probs(row, n, Pb, scale, p ? p + (t0 + t) * ldp : NULL, P);
        }
        /* ctx[t, d] = sum_u p[t, u] v(u)[d] (lanes along d) */
        lc_k.sgemm(ctx + t0 * ldc, 1, ldc, 0, sc, P, 1, v, 1, ldv, nt, dv, Pb);
    }
    free(sc);
    return 0;
}

static lc_kernels k_scalar = {
    .name = "scalar",
    .row = {[LC_DT_F32] = row_f32, [LC_DT_BF16] = row_bf16, [LC_DT_F16] = row_f16, [LC_DT_F8_E4M3] = row_fp8,
            [LC_DT_Q8_0] = row_q8_0, [LC_DT_Q4_0] = row_q4_0},
    .matmul = matmul_scalar,
    .matvec_t = matvec_t_scalar,
    .dot = dot_scalar,
    .dots = dots_scalar,
    .axpy = axpy_scalar,
    .sgemm = sgemm_scalar,
    .attention = attention_products,
    .adamw = adamw_scalar,
    .sumsq = sumsq_scalar,
    .dot3 = dot3_scalar,
    .expsum = expsum_scalar,
    .swiglu = swiglu_scalar,
    .swiglu_backward = swiglu_backward_scalar,
};

lc_kernels lc_k;

const lc_kernels *lc_kernels_scalar(void) { return &k_scalar; }

lc_status lc_kernels_select(const char *name) {
    if (!strcmp(name, "scalar")) {
        lc_k = k_scalar;
        return LC_OK;
    }
    if (!strcmp(name, "avx2")) {
        if (!lc_cpu_has_avx2()) return lc_error(LC_ERR_UNSUPPORTED, "kernels: this CPU has no AVX2/FMA/F16C");
        lc_k = k_scalar;
        lc_kernels_fill_avx2(&lc_k);
        return LC_OK;
    }
    if (!strcmp(name, "avx512")) {
        if (!lc_cpu_has_avx512()) return lc_error(LC_ERR_UNSUPPORTED, "kernels: this CPU has no AVX-512 (F, BW, VL, DQ)");
        lc_k = k_scalar;
        lc_kernels_fill_avx512(&lc_k);
        return LC_OK;
    }
    return lc_error(LC_ERR_ARG, "kernels: unknown level \"%s\" (scalar, avx2, avx512)", name);
}

void lc_kernels_init(void) {
    static int done;
    for (int i = 0; i < 256; i++) g_fp8_lut[i] = lc_fp8e4m3_to_f32((uint8_t)i);
    if (done) return; /* a level chosen by a test or $LC_KERNELS stays chosen */
    done = 1;
    const char *want = getenv("LC_KERNELS");
    if (!want || lc_kernels_select(want) != LC_OK) {
        lc_k = k_scalar;
        if (lc_cpu_has_avx512()) lc_kernels_fill_avx512(&lc_k);
        else if (lc_cpu_has_avx2()) lc_kernels_fill_avx2(&lc_k);
    }
#ifdef LC_HAVE_BLAS
    if (!lc_blas_init()) g_use_blas = 0;
#endif
}
