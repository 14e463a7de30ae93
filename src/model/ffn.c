/* ffn.c — the dense SwiGLU feed-forward used by the two dense sublayers, every FFN expert and
 * the MTP head: out = down(silu(gate x) * up x). Routing lives in moe.c. */
#include "sublayers.h"

#include <math.h>
#include <stdlib.h>

/* One step of ffn_rows: the threads share it out (item k of a plan, or a part of the SwiGLU). */
typedef struct {
    lc_row_plan gu, down;
    lc_share *share; /* [2 * threads]: the two products' items */
    lc_team_slot *team; /* [threads]: the barrier between the steps */
    int threads;
    float *act;
    const float *g, *u;
    int64_t n_act;
} ffn_rows_step;

static void ffn_rows_part(void *arg) {
    ffn_rows_step *d = arg;
    const int id = lc_thread_num(), nt = lc_num_threads();
    lc_shares_run(d->share, d->threads, id, lc_row_plan_item, &d->gu);
    lc_row_plan_barrier(d->team, id, nt, &d->down, d->share + d->threads);
    const int64_t a0 = d->n_act * id / nt, a1 = d->n_act * (id + 1) / nt;
    lc_k.swiglu(d->act + a0, d->g + a0, d->u + a0, a1 - a0);
    lc_team_barrier(d->team, id, nt);
    lc_shares_run(d->share + d->threads, d->threads, id, lc_row_plan_item, &d->down);
}

lc_status ffn_rows(const lc_matmul_job *gu, int64_t n_gu, float *act, const float *g, const float *u, int64_t n_act,
                   const lc_matmul_job *down, int64_t n_down) {
    ffn_rows_step d = {.act = act, .g = g, .u = u, .n_act = n_act, .threads = lc_max_threads()};
    const lc_scratch_mark mark = lc_scratch_mark_get();
    const int planned = !lc_in_parallel() && d.threads > 1 && lc_row_plan_make(&d.gu, gu, n_gu) &&
                        lc_row_plan_make(&d.down, down, n_down);
    /* a region only from about 3 us of multiply-adds on, as lc_matmul_many */
    d.share = planned && d.gu.work + d.down.work > 65536
                  ? lc_shares_alloc(2, d.threads, &d.team, "FFN work shares")
                  : NULL;
    if (d.share) {
        lc_shares_init(d.share, d.threads, d.gu.n_items);
        lc_shares_init(d.share + d.threads, d.threads, d.down.n_items);
        lc_team_run(ffn_rows_part, &d);
    } else { /* one thread, GEMM-sized products, or no memory for the plans: step by step */
        lc_matmul_many(gu, n_gu);
        /* SwiGLU in chunks of 16 KiB, the threads sharing them (a prompt's 1M elements) */
        const int64_t ch = 4096;
        LC_FOR(n_act > 65536 && !lc_in_parallel(), i, (n_act + ch - 1) / ch,
               lc_k.swiglu(act + i * ch, g + i * ch, u + i * ch, LC_MIN(ch, n_act - i * ch)););
        lc_matmul_many(down, n_down);
    }
    lc_row_plan_free(&d.gu);
    lc_row_plan_free(&d.down);
    lc_scratch_release(mark);
    return LC_OK;
}

lc_status ffn_forward(float *out, const float *x, const lc_ffn_weights *w, int64_t T, float *keep) {
    const int64_t F = w->gate_proj.rows;
    const lc_mat *wg = &w->gate_proj, *wu = &w->up_proj;
    if (!keep && T >= LC_GEMM_MIN_T && lc_k.gemm_swiglu && wg->dtype == wu->dtype && wg->rows == wu->rows &&
        wg->cols == wu->cols) { /* gate, up and SwiGLU as one GEMM (same bits): no gate/up buffers */
        float *a = lc_malloc((size_t)(T * F) * sizeof *a, "FFN act");
        if (!a) return LC_ERR_NOMEM;
        lc_k.gemm_swiglu(a, F, x, wg->cols, wg, wu, T);
        lc_matmul(out, a, &w->down_proj, T);
        free(a);
        return LC_OK;
    }
    const lc_scratch_mark mark = lc_scratch_mark_get();
    float *g = keep ? keep : lc_scratch_alloc((size_t)(T * F) * sizeof *g, "FFN gate");
    float *u = keep ? keep + T * F : lc_scratch_alloc((size_t)(T * F) * sizeof *u, "FFN up");
    float *a = lc_scratch_alloc((size_t)(T * F) * sizeof *a, "FFN act");
    lc_status s = g && u && a ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        const lc_matmul_job gu[2] = {{g, x, &w->gate_proj, T}, {u, x, &w->up_proj, T}}, dn = {out, a, &w->down_proj, T};
        s = ffn_rows(gu, 2, a, g, u, T * F, &dn, 1);
    }
    lc_scratch_release(mark);
    return s;
}

/* Backward of ffn_forward: gate and up from `kept` (else recomputed), then
 * dact = dout @ W_down; dg = dact * up * silu'(g); du = dact * silu(g). */
lc_status ffn_backward(float *dx, lc_ffn_weights *g, const float *dout, const float *x, const lc_ffn_weights *w, int64_t T,
                       float *kept) {
    const int64_t F = w->gate_proj.rows;
    float *ga = kept ? kept : lc_malloc((size_t)(T * F) * sizeof *ga, "FFN gate");
    float *u = kept ? kept + T * F : lc_malloc((size_t)(T * F) * sizeof *u, "FFN up");
    float *act = lc_malloc((size_t)(T * F) * sizeof *act, "FFN act"), *da = calloc((size_t)(T * F), sizeof *da);
    lc_status s = ga && u && act && da ? LC_OK : lc_error(LC_ERR_NOMEM, "out of memory for the FFN backward pass");
    if (!s && !kept) {
        lc_matmul(ga, x, &w->gate_proj, T);
        lc_matmul(u, x, &w->up_proj, T);
    }
    if (!s) {
        lc_k.swiglu(act, ga, u, T * F);
        lc_matmul_backward(da, (float *)(uintptr_t)g->down_proj.data, dout, act, &w->down_proj, T);
        lc_k.swiglu_backward(ga, act, da, ga, u, T * F); /* reuse: ga <- d(gate), act <- d(up) */
        lc_matmul_backward(dx, (float *)(uintptr_t)g->gate_proj.data, ga, x, &w->gate_proj, T);
        lc_matmul_backward(dx, (float *)(uintptr_t)g->up_proj.data, act, x, &w->up_proj, T);
    }
    if (!kept) {
        free(ga);
        free(u);
    }
    free(act);
    free(da);
    return s;
}
