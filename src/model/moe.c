/* moe.c — router (softmax, bias-corrected top-k, scaled weights) and the MoE with
 * zero-computation (identity) experts, executed expert-major. The dense FFN is in ffn.c. */
#include "sublayers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lc_status router_forward(int32_t *topk_idx, float *topk_w, const float *x, const lc_layer_weights *w,
                         const lc_config *c, int64_t T) {
    const int64_t E = c->n_routed_experts + c->zero_expert_num, K = c->moe_topk;
    const lc_scratch_mark mark = lc_scratch_mark_get();
    float *s = lc_scratch_alloc((size_t)(T * E) * sizeof *s, "router scores");
    float *best = lc_scratch_alloc((size_t)(T * K) * sizeof *best, "router selection");
    if (!s || !best) {
        lc_scratch_release(mark);
        return LC_ERR_NOMEM;
    }
    lc_matmul(s, x, &w->router_classifier, T);
    /* tokens independent: the threads share a prompt's */
    LC_FOR(T * E * K > 65536 && !lc_in_parallel(), t, T, {
        float *st = s + t * E;
        int32_t *idx = topk_idx + t * K;
        float *wt = topk_w + t * K, *bv = best + t * K;
        lc_softmax(st, E);
        /* Top-K of s + bias in one pass (K <= E, checked with the config): idx/bv [0..n) the
         * best so far, best first. Ranks: numbers by value, ties to the lower id (an equal value
         * never moves ahead of one seen before it), a NaN after every number (NaNs among
         * themselves by id) — the choice of repeated selection of the best not yet taken. */
        int64_t n = 0;
        for (int64_t e = 0; e < E; e++) {
            const float v = st[e] + w->e_score_correction_bias[e];
            int64_t j = n; /* where v goes: past every entry that ranks at least as high */
            while (j > 0 && !isnan(v) && (isnan(bv[j - 1]) || v > bv[j - 1])) j--;
            if (j >= K) continue;
            for (int64_t q = n < K ? n : K - 1; q > j; q--) {
                bv[q] = bv[q - 1];
                idx[q] = idx[q - 1];
            }
            bv[j] = v;
            idx[j] = (int32_t)e;
            if (n < K) n++;
        }
        /* ascending ids (insertion sort, K is small) */
        for (int64_t i = 1; i < K; i++)
            for (int64_t j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
                int32_t tmp = idx[j];
                idx[j] = idx[j - 1];
                idx[j - 1] = tmp;
            }
        for (int64_t k = 0; k < K; k++) wt[k] = st[idx[k]] * (float)c->routed_scaling_factor;
    });
    lc_scratch_release(mark);
    return LC_OK;
}

/* The FFN-expert slots bucketed by expert: slots of expert e at slot[count[e] .. count[e+1]),
 * token order within each (a stable counting sort); pos[i] = where slot i went (-1: identity).
 * In the caller's scratch (gone with its mark). */
typedef struct {
    int64_t *count; /* [N + 1] */
    int64_t *slot;  /* [T * K] */
    int64_t *pos;   /* [T * K] */
    int64_t *used;  /* [N] the experts that got tokens, ascending */
    int64_t n_used;
} moe_buckets;

static lc_status buckets_make(moe_buckets *b, const int32_t *topk_idx, int64_t T, int64_t K, int64_t N) {
    b->count = lc_scratch_alloc(((size_t)N + 1) * sizeof *b->count, "MoE expert counts");
    b->slot = lc_scratch_alloc((size_t)(T * K) * sizeof *b->slot, "MoE routing slots");
    b->pos = lc_scratch_alloc((size_t)(T * K) * sizeof *b->pos, "MoE slot positions");
    b->used = lc_scratch_alloc((size_t)N * sizeof *b->used, "MoE experts used");
    int64_t *fill = lc_scratch_alloc((size_t)N * sizeof *fill, "MoE fill");
    lc_status s = b->count && b->slot && b->pos && b->used && fill ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        memset(b->count, 0, ((size_t)N + 1) * sizeof *b->count);
        for (int64_t i = 0; i < T * K; i++)
            if (topk_idx[i] < N) b->count[topk_idx[i] + 1]++;
        b->n_used = 0;
        for (int64_t e = 0; e < N; e++) {
            if (b->count[e + 1]) b->used[b->n_used++] = e;
            b->count[e + 1] += b->count[e];
        }
        memcpy(fill, b->count, (size_t)N * sizeof *fill);
        for (int64_t i = 0; i < T * K; i++) {
            b->pos[i] = topk_idx[i] < N ? fill[topk_idx[i]]++ : -1;
            if (b->pos[i] >= 0) b->slot[b->pos[i]] = i;
        }
    }
    return s;
}

/* Experts run side by side (each on one thread) when there are enough of them to share the
 * threads out; else one after another, each product using every thread. */
static int experts_in_parallel(const moe_buckets *b) { return b->n_used >= 2 * lc_max_threads() && !lc_in_parallel(); }

/* Expert e on its gathered tokens xe (rows count[e].. of the buckets) into ye, keeping its
 * gate/up for the backward pass when asked. */
static lc_status expert_forward(const moe_buckets *b, int64_t e, float *ye, const float *xe, const lc_layer_weights *w,
                                const lc_config *c, moe_keep *keep) {
    const int64_t H = c->hidden_size, Fe = c->expert_ffn_hidden_size, j0 = b->count[e], n = b->count[e + 1] - j0;
    return ffn_forward(ye + j0 * H, xe + j0 * H, &w->experts[e], n, keep ? keep->gu + j0 * 2 * Fe : NULL);
}

/* Every used expert on its few tokens (each fewer than LC_GEMM_MIN_T: the row kernels), as
 * three steps over all experts at once — gate and up of every expert, SwiGLU, down of every
 * expert, in one parallel region (ffn_rows) — so the threads share the layer's expert rows
 * evenly (one expert per thread would leave one idle whenever the count is odd). With `dense`
 * (ScMoE: the dense FFN that reads the same x, T < LC_GEMM_MIN_T tokens) its products go into
 * the same three steps, ahead of the experts': one region and two barriers for both. The same
 * bits as expert_forward and ffn_forward for each. */
static lc_status experts_forward_rows(const moe_buckets *b, float *ye, const float *xe, const lc_layer_weights *w,
                                      const lc_config *c, const lc_ffn_weights *dense, float *dense_out,
                                      const float *x, int64_t T) {
    const int64_t H = c->hidden_size, Fe = c->expert_ffn_hidden_size, used = b->count[c->n_routed_experts];
    const int64_t Td = dense ? T : 0, Fd = dense ? dense->gate_proj.rows : 0, n_act = Td * Fd + used * Fe;
    const int64_t nd = dense ? 1 : 0, n_ffn = b->n_used + nd;
    const lc_scratch_mark mark = lc_scratch_mark_get();
    float *gu = lc_scratch_alloc((size_t)(2 * n_act + 1) * sizeof *gu, "expert gate/up"), *act = gu ? gu + n_act : NULL;
    lc_matmul_job *jobs = lc_scratch_alloc((size_t)(3 * n_ffn + 1) * sizeof *jobs, "expert products");
    if (!gu || !jobs) {
        lc_scratch_release(mark);
        return LC_ERR_NOMEM;
    }
    lc_matmul_job *down = jobs + 2 * n_ffn;
    if (dense) { /* gate into gu, up into act, SwiGLU into gu: its first T * Fd */
        jobs[0] = (lc_matmul_job){gu, x, &dense->gate_proj, T};
        jobs[1] = (lc_matmul_job){act, x, &dense->up_proj, T};
        down[0] = (lc_matmul_job){dense_out, gu, &dense->down_proj, T};
    }
    float *ge = gu + Td * Fd, *ae = act + Td * Fd; /* the experts' part: bucket rows j0.. */
    for (int64_t u = 0; u < b->n_used; u++) {
        const int64_t e = b->used[u], j0 = b->count[e], n = b->count[e + 1] - j0;
        const float *xr = n == 1 ? x + (b->slot[j0] / c->moe_topk) * H : xe + j0 * H; /* not gathered */
        jobs[2 * (nd + u)] = (lc_matmul_job){ge + j0 * Fe, xr, &w->experts[e].gate_proj, n};
        jobs[2 * (nd + u) + 1] = (lc_matmul_job){ae + j0 * Fe, xr, &w->experts[e].up_proj, n};
        down[nd + u] = (lc_matmul_job){ye + j0 * H, ge + j0 * Fe, &w->experts[e].down_proj, n};
    }
    lc_status s = ffn_rows(jobs, 2 * n_ffn, gu, gu, act, n_act, down, n_ffn);
    lc_scratch_release(mark);
    return s;
}

lc_status moe_forward(float *out, const float *x, const int32_t *topk_idx, const float *topk_w, const lc_layer_weights *w,
                      const lc_config *c, int64_t T, int64_t *n_ffn, moe_keep *keep) {
    return moe_dense_forward(out, NULL, x, topk_idx, topk_w, w, c, T, n_ffn, keep, NULL);
}

lc_status moe_dense_forward(float *out, float *dense_out, const float *x, const int32_t *topk_idx, const float *topk_w,
                            const lc_layer_weights *w, const lc_config *c, int64_t T, int64_t *n_ffn, moe_keep *keep,
                            const lc_ffn_weights *dense) {
    const int64_t H = c->hidden_size, K = c->moe_topk, N = c->n_routed_experts;
    const lc_scratch_mark mark = lc_scratch_mark_get();
    moe_buckets b;
    lc_status s = buckets_make(&b, topk_idx, T, K, N);
    if (s) {
        lc_scratch_release(mark);
        return s;
    }
    const int64_t used = b.count[N];
    int64_t most = 0; /* the most tokens any expert got */
    for (int64_t u = 0; u < b.n_used; u++) most = LC_MAX(most, b.count[b.used[u] + 1] - b.count[b.used[u]]);
    /* gathered rows for the experts that got several tokens (and for training's kept inputs); an
     * expert with one token reads its row of x in place (decode: no copies at all) */
    const int gather = keep || most > 1;
    float *xe = gather ? lc_scratch_alloc((size_t)(used * H + 1) * sizeof *xe, "MoE gathered tokens") : NULL;
    float *ye = keep ? keep->y : lc_scratch_alloc((size_t)(used * H + 1) * sizeof *ye, "MoE expert output");
    if ((gather && !xe) || !ye) s = LC_ERR_NOMEM;
    if (gather)
        LC_FOR(used * H > 65536 && !lc_in_parallel(), j, s ? 0 : used,
               memcpy(xe + j * H, x + (b.slot[j] / K) * H, (size_t)H * sizeof *xe););
    /* FFN experts, each on the tokens routed to it; an expert no token chose is never read.
     * (No `if` clause: kernels inside even an inactive region would start nested teams.) */
    int fail = 0;
    const int with_dense = dense && T < LC_GEMM_MIN_T; /* the dense FFN on the row kernels too */
    if (!s && !keep && most < LC_GEMM_MIN_T) { /* decode: every expert's rows in one region per product */
        s = experts_forward_rows(&b, ye, xe, w, c, with_dense ? dense : NULL, dense_out, x, T);
        if (with_dense) dense = NULL; /* done */
    } else if (!s && experts_in_parallel(&b)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t u = 0; u < b.n_used; u++) fail |= expert_forward(&b, b.used[u], ye, xe, w, c, keep) != LC_OK;
    } else {
        for (int64_t u = 0; u < (s ? 0 : b.n_used); u++) fail |= expert_forward(&b, b.used[u], ye, xe, w, c, keep) != LC_OK;
    }
    if (!s && fail) s = LC_ERR_NOMEM;
    /* each token: its slots in ascending expert order (FFN experts, then the identity ones) */
    LC_FOR(T * K * H > 65536 && !lc_in_parallel(), t, s ? 0 : T, {
        float *o = out + t * H;
        memset(o, 0, (size_t)H * sizeof *o);
        for (int64_t k = 0; k < K; k++) {
            const int64_t i = t * K + k;
            /* zero-computation experts: a scaled copy of the input, no weights, no FLOPs */
            lc_axpy(o, topk_w[i], b.pos[i] >= 0 ? ye + b.pos[i] * H : x + t * H, H);
        }
    });
    if (!s && dense) s = ffn_forward(dense_out, x, dense, T, NULL); /* not shared: on its own */
    if (n_ffn) *n_ffn = used;
    lc_scratch_release(mark);
    return s;
}

/* Expert e's part of the backward pass on its bucket rows: its output (kept, or recomputed into
 * ye), the router-score gradient ds[t, e] = scale * dout[t] . y, and the expert's own backward
 * (weight grads +=, input gradients into dxe). touched[e] is set: the expert has a gradient. */
static lc_status expert_backward(const moe_buckets *b, int64_t e, lc_layer_weights *g, unsigned char *touched, float *ds,
                                 float *dxe, float *ye, const float *xe, const float *dye, const float *dout,
                                 const lc_layer_weights *w, const lc_config *c, moe_keep *kept) {
    const int64_t H = c->hidden_size, K = c->moe_topk, E = c->n_routed_experts + c->zero_expert_num;
    const int64_t Fe = c->expert_ffn_hidden_size, j0 = b->count[e], n = b->count[e + 1] - j0;
    touched[e] = 1; /* an expert without tokens keeps no gradient (PyTorch: None) */
    if (!kept) {
        lc_status s = ffn_forward(ye + j0 * H, xe + j0 * H, &w->experts[e], n, NULL);
        if (s) return s;
    }
    for (int64_t j = j0; j < j0 + n; j++) {
        const int64_t t = b->slot[j] / K;
        ds[t * E + e] = (float)c->routed_scaling_factor * lc_dot(dout + t * H, ye + j * H, H);
    }
    return ffn_backward(dxe + j0 * H, &g->experts[e], dye + j0 * H, xe + j0 * H, &w->experts[e], n,
                        kept ? kept->gu + j0 * 2 * Fe : NULL);
}

/* Backward of router_forward + moe_forward. out = sum_e w_e y_e with w_e = s_e * scale,
 * s = softmax(classifier x): dy_e = w_e dout; dw_e = dout . y_e; ds = scale * dw (chosen only);
 * dlogits = s * (ds - s . ds). Experts (kept outputs, or recomputed) run as in the forward. */
lc_status moe_backward(float *dx, lc_layer_weights *g, unsigned char *touched, const float *dout, const float *x,
                       const int32_t *topk_idx, const float *topk_w, const lc_layer_weights *w, const lc_config *c,
                       int64_t T, moe_aux *aux, moe_keep *kept) {
    const int64_t H = c->hidden_size, K = c->moe_topk, N = c->n_routed_experts, E = N + c->zero_expert_num;
    const float scale = (float)c->routed_scaling_factor;
    const lc_scratch_mark mark = lc_scratch_mark_get();
    moe_buckets b;
    lc_status st = buckets_make(&b, topk_idx, T, K, N);
    if (st) {
        lc_scratch_release(mark);
        return st;
    }
    const int64_t used = b.count[N];
    float *s = lc_malloc((size_t)(T * E) * sizeof *s, "router scores"), *ds = calloc((size_t)(T * E), sizeof *ds);
    float *xe = lc_malloc((size_t)(used * H + 1) * sizeof *xe, "MoE gathered");
    float *ye = kept ? kept->y : lc_malloc((size_t)(used * H + 1) * sizeof *ye, "MoE y");
    float *dye = lc_malloc((size_t)(used * H + 1) * sizeof *dye, "MoE dy"), *dxe = calloc((size_t)(used * H + 1), sizeof *dxe);
    if (!s || !ds || !xe || !ye || !dye || !dxe) st = LC_ERR_NOMEM;
    if (!st) {
        lc_matmul(s, x, &w->router_classifier, T);
        for (int64_t t = 0; t < T; t++) lc_softmax(s + t * E, E);
        for (int64_t j = 0; j < used; j++) {
            const int64_t i = b.slot[j], t = i / K;
            memcpy(xe + j * H, x + t * H, (size_t)H * sizeof *xe);
            for (int64_t q = 0; q < H; q++) dye[j * H + q] = topk_w[i] * dout[t * H + q];
        }
    }
    int fail = 0;
    if (!st && experts_in_parallel(&b)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t u = 0; u < b.n_used; u++)
            fail |= expert_backward(&b, b.used[u], g, touched, ds, dxe, ye, xe, dye, dout, w, c, kept) != LC_OK;
    } else {
        for (int64_t u = 0; u < (st ? 0 : b.n_used); u++)
            fail |= expert_backward(&b, b.used[u], g, touched, ds, dxe, ye, xe, dye, dout, w, c, kept) != LC_OK;
    }
    if (!st && fail) st = LC_ERR_NOMEM;
    /* dx per token, slots in ascending expert order; identity experts: y = x */
    LC_FOR(T * K * H > 65536 && !lc_in_parallel(), t, st ? 0 : T, {
        for (int64_t k = 0; k < K; k++) {
            const int64_t i = t * K + k;
            if (b.pos[i] >= 0) {
                lc_axpy(dx + t * H, 1.0f, dxe + b.pos[i] * H, H);
            } else {
                lc_axpy(dx + t * H, topk_w[i], dout + t * H, H);
                ds[t * E + topk_idx[i]] = scale * lc_dot(dout + t * H, x + t * H, H);
            }
        }
    });
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
    lc_scratch_release(mark);
    free(s); free(ds); free(xe); free(dye); free(dxe);
    if (!kept) free(ye);
    return st;
}
