/* moe.c — router (softmax, bias-corrected top-k, scaled weights) and the MoE with
 * zero-computation (identity) experts, executed expert-major. The dense FFN is in ffn.c. */
#include "sublayers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lc_status router_forward(int32_t *topk_idx, float *topk_w, const float *x, const lc_layer_weights *w,
                         const lc_config *c, int64_t T) {
    const int64_t E = c->n_routed_experts + c->zero_expert_num, K = c->moe_topk;
    float *s = lc_malloc((size_t)(T * E) * sizeof *s, "router scores");
    unsigned char *taken = lc_malloc((size_t)E, "router selection");
    if (!s || !taken) {
        free(s);
        free(taken);
        return LC_ERR_NOMEM;
    }
    lc_matmul(s, x, &w->router_classifier, T);
    for (int64_t t = 0; t < T; t++) {
        float *st = s + t * E;
        int32_t *idx = topk_idx + t * K;
        float *wt = topk_w + t * K;
        lc_softmax(st, E);
        /* Top-K of s + bias by repeated selection; ties go to the lower id; a NaN never wins
         * over a number, and each id is taken once. */
        memset(taken, 0, (size_t)E);
        for (int64_t k = 0; k < K; k++) {
            int64_t best = -1;
            float best_v = 0;
            for (int64_t e = 0; e < E; e++) {
                if (taken[e]) continue;
                float v = st[e] + w->e_score_correction_bias[e];
                if (best < 0 || v > best_v || (isnan(best_v) && !isnan(v))) {
                    best = e;
                    best_v = v;
                }
            }
            idx[k] = (int32_t)best;
            taken[best] = 1;
        }
        /* ascending ids (insertion sort, K is small) */
        for (int64_t i = 1; i < K; i++)
            for (int64_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
                int32_t tmp = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = tmp;
            }
        for (int64_t k = 0; k < K; k++) wt[k] = st[idx[k]] * (float)c->routed_scaling_factor;
    }
    free(s);
    free(taken);
    return LC_OK;
}

lc_status moe_forward(float *out, const float *x, const int32_t *topk_idx, const float *topk_w,
                      const lc_layer_weights *w, const lc_config *c, int64_t T, int64_t *n_ffn) {
    const int64_t H = c->hidden_size, K = c->moe_topk, N = c->n_routed_experts;
    /* Bucket the (token, slot) pairs by expert: counting sort, stable in token order. */
    int64_t *count = lc_calloc((size_t)N + 1, sizeof *count, "MoE expert counts");
    int64_t *slot = lc_malloc((size_t)(T * K) * sizeof *slot, "MoE routing slots");
    float *xe = lc_malloc((size_t)(T * H) * sizeof *xe, "MoE gathered tokens");
    float *ye = lc_malloc((size_t)(T * H) * sizeof *ye, "MoE expert output");
    lc_status s = (count && slot && xe && ye) ? LC_OK : LC_ERR_NOMEM;
    int64_t used = 0;
    if (!s) {
        for (int64_t i = 0; i < T * K; i++)
            if (topk_idx[i] < N) count[topk_idx[i] + 1]++;
        for (int64_t e = 0; e < N; e++) count[e + 1] += count[e];
        int64_t *fill = lc_malloc((size_t)N * sizeof *fill, "MoE fill");
        if (!fill) s = LC_ERR_NOMEM;
        else {
            memcpy(fill, count, (size_t)N * sizeof *fill);
            for (int64_t i = 0; i < T * K; i++)
                if (topk_idx[i] < N) slot[fill[topk_idx[i]]++] = i;
            free(fill);
        }
        used = count[N];
    }
    if (!s) memset(out, 0, (size_t)(T * H) * sizeof *out);
    /* FFN experts, in ascending id order (each token's sum runs in that fixed order). */
    for (int64_t e = 0; e < N && !s; e++) {
        int64_t n = count[e + 1] - count[e];
        if (n == 0) continue; /* an expert no token chose is never read */
        const int64_t *sl = slot + count[e];
        for (int64_t j = 0; j < n; j++) memcpy(xe + j * H, x + (sl[j] / K) * H, (size_t)H * sizeof *xe);
        s = ffn_forward(ye, xe, &w->experts[e], n);
        for (int64_t j = 0; j < n && !s; j++) lc_axpy(out + (sl[j] / K) * H, topk_w[sl[j]], ye + j * H, H);
    }
    /* Zero-computation experts: a scaled copy of the input, no weights, no FLOPs. */
    for (int64_t i = 0; i < T * K && !s; i++)
        if (topk_idx[i] >= N) lc_axpy(out + (i / K) * H, topk_w[i], x + (i / K) * H, H);
    if (n_ffn) *n_ffn = used;
    free(count);
    free(slot);
    free(xe);
    free(ye);
    return s;
}
