/* ffn.c — the dense SwiGLU feed-forward used by the two dense sublayers, every FFN expert and
 * the MTP head: out = down(silu(gate x) * up x). Routing lives in moe.c. */
#include "sublayers.h"

#include <stdlib.h>

lc_status ffn_forward(float *out, const float *x, const lc_ffn_weights *w, int64_t T) {
    const int64_t F = w->gate_proj.rows;
    float *g = lc_malloc((size_t)(T * F) * sizeof *g, "FFN gate");
    float *u = lc_malloc((size_t)(T * F) * sizeof *u, "FFN up");
    if (!g || !u) {
        free(g);
        free(u);
        return LC_ERR_NOMEM;
    }
    lc_matmul(g, x, &w->gate_proj, T);
    lc_matmul(u, x, &w->up_proj, T);
    for (int64_t i = 0; i < T * F; i++) g[i] = lc_silu(g[i]) * u[i];
    lc_matmul(out, g, &w->down_proj, T);
    free(g);
    free(u);
    return LC_OK;
}
