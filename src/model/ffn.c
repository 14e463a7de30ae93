/* ffn.c — the dense SwiGLU feed-forward used by the two dense sublayers, every FFN expert and
 * the MTP head: out = down(silu(gate x) * up x). Routing lives in moe.c. */
#include "sublayers.h"

#include <math.h>
#include <stdlib.h>

lc_status ffn_forward(float *out, const float *x, const lc_ffn_weights *w, int64_t T, float *keep) {
    const int64_t F = w->gate_proj.rows;
    float *g = keep ? keep : lc_malloc((size_t)(T * F) * sizeof *g, "FFN gate");
    float *u = keep ? keep + T * F : lc_malloc((size_t)(T * F) * sizeof *u, "FFN up");
    float *a = lc_malloc((size_t)(T * F) * sizeof *a, "FFN act");
    lc_status s = g && u && a ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        const lc_matmul_job gu[2] = {{g, x, &w->gate_proj, T}, {u, x, &w->up_proj, T}};
        lc_matmul_many(gu, 2);
        lc_k.swiglu(a, g, u, T * F);
        lc_matmul(out, a, &w->down_proj, T);
    }
    if (!keep) {
        free(g);
        free(u);
    }
    free(a);
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
