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

/* Backward of router_forward + moe_forward. out = sum_e w_e y_e with w_e = s_e * scale,
 * s = softmax(classifier x): dy_e = w_e dout; dw_e = dout . y_e; ds = scale * dw (chosen only);
 * dlogits = s * (ds - s . ds). Experts are recomputed on their tokens. */
lc_status moe_backward(float *dx, lc_layer_weights *g, unsigned char *touched, const float *dout, const float *x,
                       const int32_t *topk_idx, const float *topk_w, const lc_layer_weights *w, const lc_config *c,
                       int64_t T, moe_aux *aux) {
    const int64_t H = c->hidden_size, K = c->moe_topk, N = c->n_routed_experts, E = N + c->zero_expert_num;
    float *s = lc_malloc((size_t)(T * E) * sizeof *s, "router scores"), *ds = calloc((size_t)(T * E), sizeof *ds);
    float *xe = lc_malloc((size_t)(T * H) * sizeof *xe, "MoE gathered"), *ye = lc_malloc((size_t)(T * H) * sizeof *ye, "MoE y");
    float *dye = lc_malloc((size_t)(T * H) * sizeof *dye, "MoE dy"), *dxe = calloc((size_t)(T * H), sizeof *dxe);
    int64_t *tok = lc_malloc((size_t)(T * K) * sizeof *tok, "MoE tokens"), *slot = lc_malloc((size_t)(T * K) * sizeof *slot, "slots");
    lc_status st = (s && ds && xe && ye && dye && dxe && tok && slot) ? LC_OK : LC_ERR_NOMEM;
    if (!st) {
        lc_matmul(s, x, &w->router_classifier, T);
        for (int64_t t = 0; t < T; t++) lc_softmax(s + t * E, E);
    }
    for (int64_t e = 0; e < N && !st; e++) {
        int64_t n = 0;
        for (int64_t i = 0; i < T * K; i++)
            if (topk_idx[i] == e) {
                tok[n] = i / K;
                slot[n++] = i;
            }
        if (n == 0) continue; /* PyTorch leaves this expert's grads at None */
        touched[e] = 1;
        for (int64_t j = 0; j < n; j++) {
            memcpy(xe + j * H, x + tok[j] * H, (size_t)H * sizeof *xe);
            for (int64_t i = 0; i < H; i++) dye[j * H + i] = topk_w[slot[j]] * dout[tok[j] * H + i];
        }
        st = ffn_forward(ye, xe, &w->experts[e], n);
        for (int64_t j = 0; j < n && !st; j++)
            ds[tok[j] * E + e] = (float)c->routed_scaling_factor * lc_dot(dout + tok[j] * H, ye + j * H, H);
        if (!st) {
            memset(dxe, 0, (size_t)(n * H) * sizeof *dxe);
            st = ffn_backward(dxe, &g->experts[e], dye, xe, &w->experts[e], n);
        }
        for (int64_t j = 0; j < n && !st; j++) lc_axpy(dx + tok[j] * H, 1.0f, dxe + j * H, H);
    }
    /* identity experts: y = x */
    for (int64_t i = 0; i < T * K && !st; i++)
        if (topk_idx[i] >= N) {
            int64_t t = i / K;
            lc_axpy(dx + t * H, topk_w[i], dout + t * H, H);
            ds[t * E + topk_idx[i]] = (float)c->routed_scaling_factor * lc_dot(dout + t * H, x + t * H, H);
        }
    /* softmax backward into the router logits (reuse ds as dlogits) */
    for (int64_t t = 0; t < T && !st; t++) {
        double dot = 0;
        for (int64_t e = 0; e < E; e++) dot += (double)s[t * E + e] * ds[t * E + e];
        for (int64_t e = 0; e < E; e++) ds[t * E + e] = s[t * E + e] * (ds[t * E + e] - (float)dot);
    }
    if (!st) lc_matmul_backward(dx, (float *)(uintptr_t)g->router_classifier.data, ds, x, &w->router_classifier, T);
    /* load-balancing loss: d L_LB / d s[t,i] = coef[i], through the same softmax */
    if (!st && aux && aux->coef) {
        double lb = 0;
        for (int64_t t = 0; t < T; t++) {
            const float *st_ = s + t * E, *cf = aux->coef + t * E;
            double dot = 0;
            for (int64_t e = 0; e < E; e++) {
                dot += (double)st_[e] * cf[e];
                lb += (double)cf[e] * st_[e];
            }
            for (int64_t e = 0; e < E; e++) ds[t * E + e] = st_[e] * (cf[e] - (float)dot);
        }
        aux->lb_loss = lb;
        lc_matmul_backward(dx, aux->dwr_lb, ds, x, &w->router_classifier, T);
    }
    free(s); free(ds); free(xe); free(ye); free(dye); free(dxe); free(tok); free(slot);
    return st;
}
