/* train.c — the training state and the whole-model forward/backward of the next-token loss:
 * embedding, layers (layer.c keeps activations and runs them backwards), final norm, lm_head,
 * cross entropy; then AdamW. Accumulate rule: parameter grads +=, activation grads =,
 * residual stream +=. Data loading, schedules and routing-balance mechanisms come on top. */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../model/sublayers.h"

/* An lc_model whose every weight is F32 at arena + offset[i] (shapes from the table). */
static lc_status make_view(lc_model **out, const lc_config *c, float *arena, const int64_t *offset, int64_t n) {
    lc_model *v = lc_calloc(1, sizeof *v, "model view");
    if (!v) return LC_ERR_NOMEM;
    v->cfg = *c;
    v->layers = lc_calloc((size_t)c->num_layers, sizeof *v->layers, "layers");
    lc_status s = v->layers ? LC_OK : LC_ERR_NOMEM;
    for (int64_t L = 0; L < c->num_layers && !s; L++)
        if (!(v->layers[L].experts = lc_calloc((size_t)c->n_routed_experts, sizeof(lc_ffn_weights), "experts"))) s = LC_ERR_NOMEM;
    lc_tensor_spec *sp = s ? NULL : lc_calloc((size_t)n, sizeof *sp, "tensor table");
    if (!s && !sp) s = LC_ERR_NOMEM;
    if (!s) {
        lc_model_tensor_specs(c, v, sp);
        for (int64_t i = 0; i < n; i++) {
            if (sp[i].mat) *sp[i].mat = (lc_mat){(const uint8_t *)(arena + offset[i]), LC_DT_F32, sp[i].rows, sp[i].cols, NULL, 0, 0, NULL};
            else *sp[i].vec = arena + offset[i];
        }
        if (c->tie_word_embeddings) v->lm_head = v->embed_tokens;
        v->has_mtp = c->num_nextn_predict_layers > 0;
    }
    free(sp);
    if (s) lc_model_free(v);
    else *out = v;
    return s;
}

static void shards_free(lc_train *tr);

void lc_train_free(lc_train *tr) {
    if (!tr) return;
    lc_model_free(tr->params);
    lc_model_free(tr->grads);
    free(tr->param);
    free(tr->grad);
    free(tr->m);
    free(tr->v);
    free(tr->specs);
    free(tr->offset);
    free(tr->touched);
    free(tr->steps);
    free(tr->expert_tokens);
    free(tr->pid_integral);
    free(tr->pid_prev);
    free(tr->lb_router_grad);
    free(tr->lr_scale);
    shards_free(tr);
    free(tr);
}

lc_status lc_train_from_model(lc_train **out, const lc_model *m) {
    *out = NULL;
    lc_train *tr = lc_calloc(1, sizeof *tr, "training state");
    if (!tr) return LC_ERR_NOMEM;
    tr->cfg = m->cfg;
    tr->grad_scale = 1.0f;
    tr->n_specs = lc_model_tensor_specs(&m->cfg, NULL, NULL);
    tr->specs = lc_calloc((size_t)tr->n_specs, sizeof *tr->specs, "tensor table");
    lc_tensor_spec *msp = lc_calloc((size_t)tr->n_specs, sizeof *msp, "tensor table");
    tr->offset = lc_calloc((size_t)tr->n_specs, sizeof *tr->offset, "offsets");
    tr->touched = lc_calloc((size_t)tr->n_specs, 1, "touched");
    tr->steps = lc_calloc((size_t)tr->n_specs, sizeof *tr->steps, "steps");
    const int64_t LN = m->cfg.num_layers * m->cfg.n_routed_experts;
    tr->expert_tokens = lc_calloc((size_t)(m->cfg.num_layers * (m->cfg.n_routed_experts + m->cfg.zero_expert_num)),
                                  sizeof *tr->expert_tokens, "routing counts");
    tr->pid_integral = lc_calloc((size_t)LN, sizeof(double), "bias controller");
    tr->pid_prev = lc_calloc((size_t)LN, sizeof(double), "bias controller");
    tr->lb_router_grad = lc_calloc((size_t)(m->cfg.num_layers * (m->cfg.n_routed_experts + m->cfg.zero_expert_num) *
                                            m->cfg.hidden_size), sizeof(float), "LB router gradient");
    tr->aux = (lc_aux_losses){.lm_weight = 1, .lb_groups = 1};
    tr->lr_scale = lc_malloc((size_t)tr->n_specs * sizeof *tr->lr_scale, "learning-rate scales");
    for (int64_t i = 0; tr->lr_scale && i < tr->n_specs; i++) tr->lr_scale[i] = 1.0f;
    lc_status s = (tr->specs && msp && tr->offset && tr->touched && tr->steps && tr->expert_tokens && tr->pid_integral &&
                   tr->pid_prev && tr->lb_router_grad && tr->lr_scale) ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        lc_model_tensor_specs(&m->cfg, NULL, tr->specs);
        lc_model_tensor_specs(&m->cfg, (lc_model *)m, msp); /* only to read the slots of the loaded model */
        for (int64_t i = 0; i < tr->n_specs; i++) {
            tr->offset[i] = tr->n_params;
            tr->n_params += tr->specs[i].rows * (tr->specs[i].cols ? tr->specs[i].cols : 1);
        }
        tr->param = lc_calloc((size_t)tr->n_params, sizeof(float), "parameters");
        tr->grad = lc_calloc((size_t)tr->n_params, sizeof(float), "gradients");
        tr->m = lc_calloc((size_t)tr->n_params, sizeof(float), "AdamW first moments");
        tr->v = lc_calloc((size_t)tr->n_params, sizeof(float), "AdamW second moments");
        if (!tr->param || !tr->grad || !tr->m || !tr->v) s = LC_ERR_NOMEM;
    }
    for (int64_t i = 0; i < tr->n_specs && !s; i++) {
        float *dst = tr->param + tr->offset[i];
        if (msp[i].mat)
            for (int64_t r = 0; r < msp[i].rows; r++) lc_mat_row(dst + r * msp[i].cols, msp[i].mat, r);
        else memcpy(dst, *msp[i].vec, (size_t)msp[i].rows * sizeof(float));
    }
    free(msp);
    if (!s) s = make_view(&tr->params, &m->cfg, tr->param, tr->offset, tr->n_specs);
    if (!s) s = make_view(&tr->grads, &m->cfg, tr->grad, tr->offset, tr->n_specs);
    if (s) lc_train_free(tr);
    else *out = tr;
    return s;
}

int64_t lc_train_find(const lc_train *tr, const char *name) {
    for (int64_t i = 0; i < tr->n_specs; i++)
        if (!strcmp(tr->specs[i].name, name)) return i;
    return -1;
}

/* Activation buffers of one layer, carved from one allocation. */
static float *carve(float **p, int64_t n) {
    float *r = *p;
    *p += n;
    return r;
}

/* Activations of one layer for sequences of lengths seq_T (T rows in all), from one allocation. */
static int64_t layer_acts_floats(const lc_config *c, const int64_t *seq_T, int64_t n_seq, int64_t T) {
    const int64_t TK = T * c->moe_topk;
    return 8 * T * c->hidden_size + 2 * TK + 2 * mla_acts_floats(c, seq_T, n_seq) + 2 * 2 * T * c->ffn_hidden_size +
           TK * (c->hidden_size + 2 * c->expert_ffn_hidden_size);
}

static void layer_acts_init(layer_acts *a, float *p, const lc_config *c, const int64_t *seq_T, int64_t n_seq, int64_t T) {
    const int64_t H = c->hidden_size, K = c->moe_topk;
    a->h0 = carve(&p, T * H); a->h1 = carve(&p, T * H); a->h2 = carve(&p, T * H); a->h3 = carve(&p, T * H);
    a->x1 = carve(&p, T * H); a->x = carve(&p, T * H); a->x3 = carve(&p, T * H); a->x4 = carve(&p, T * H);
    a->topk_idx = (int32_t *)carve(&p, T * K); /* int32 and float share a size */
    a->topk_w = carve(&p, T * K);
    p = mla_acts_carve(&a->attn[0], p, c, seq_T, n_seq);
    p = mla_acts_carve(&a->attn[1], p, c, seq_T, n_seq);
    a->ffn_keep[0] = carve(&p, 2 * T * c->ffn_hidden_size);
    a->ffn_keep[1] = carve(&p, 2 * T * c->ffn_hidden_size);
    a->moe.y = carve(&p, T * K * H);
    a->moe.gu = carve(&p, T * K * 2 * c->expert_ffn_hidden_size);
}

/* Which expert of which layer a tensor belongs to (-1 if none). */
static int expert_of(const char *name, int64_t *layer, int64_t *e) {
    long long L, E;
    if (sscanf(name, "model.layers.%lld.mlp.experts.%lld.", &L, &E) == 2) {
        *layer = L;
        *e = E;
        return 1;
    }
    return 0;
}

void lc_train_zero_grad(lc_train *tr) {
    const lc_config *c = &tr->cfg;
    for (int64_t i = 0; i < tr->n_specs; i++) /* untouched tensors have zero gradients already */
        if (tr->touched[i])
            memset(tr->grad + tr->offset[i], 0,
                   (size_t)(tr->specs[i].rows * (tr->specs[i].cols ? tr->specs[i].cols : 1)) * sizeof(float));
    memset(tr->touched, 0, (size_t)tr->n_specs);
    tr->grad_scale = 1.0f;
    memset(tr->lb_router_grad, 0,
           (size_t)(c->num_layers * (c->n_routed_experts + c->zero_expert_num) * c->hidden_size) * sizeof(float));
    tr->loss_z = tr->loss_lb = tr->loss_mtp = tr->max_abs_h = 0;
}

double lc_cross_entropy(float *logits, const int32_t *targets, int64_t n, int64_t V, float k) {
    double *row_loss = lc_malloc((size_t)(n ? n : 1) * sizeof *row_loss, "cross-entropy rows");
    if (!row_loss) return NAN;
    const float g = k / (float)n; /* d mean / d logit scale */
#pragma omp parallel if (n * V > 65536)
    {
        float *e = k == 0 ? malloc((size_t)V * sizeof *e) : NULL; /* loss only: leave the logits */
#pragma omp for schedule(static)
        for (int64_t t = 0; t < n; t++) {
            float *row = logits + t * V, *y = k == 0 ? e : row;
            if (!y) {
                row_loss[t] = NAN;
                continue;
            }
            float mx = row[0];
            for (int64_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            const float target = row[targets[t]];
            const double se = lc_k.expsum(y, row, 1.0f, mx, V); /* y = exp(row - mx) */
            row_loss[t] = log(se) + mx - target;
            if (k == 0) continue;
            const float f = (float)(1.0 / se) * g;
            for (int64_t v = 0; v < V; v++) row[v] *= f;
            row[targets[t]] -= g;
        }
        free(e);
    }
    double total = 0;
    for (int64_t t = 0; t < n; t++) total += row_loss[t]; /* in row order: any thread count */
    free(row_loss);
    return total / (double)n;
}

/* The MTP head on rows t = 0..T-3 of each of n_seq sequences of T tokens (SPEC §3): from the
 * main model's normed state hn[t] and token t+1 it predicts token t+2. Forward, loss and
 * backward in one place; dhn += its gradient w.r.t. hn (so the trunk learns from it too); MTP
 * and lm_head grads +=. *loss: the sum over sequences of each one's mean loss. */
static lc_status mtp_loss_backward(lc_train *tr, const int32_t *tokens, int64_t n_seq, int64_t T, const float *rope_cs,
                                   const float *hn, float *dhn, float k, double *loss) {
    const lc_config *c = &tr->cfg;
    const lc_mtp_weights *w = &tr->params->mtp;
    lc_mtp_weights *g = &tr->grads->mtp;
    const int64_t H = c->hidden_size, V = c->vocab_size, n = T - 2, R = n_seq * n; /* R rows in all */
    const float eps = (float)c->rms_norm_eps;
    int64_t *seq_n = lc_malloc((size_t)n_seq * sizeof *seq_n, "MTP sequences");
    mla_seq *ms = lc_malloc((size_t)n_seq * sizeof *ms, "MTP sequences");
    if (!seq_n || !ms) {
        free(seq_n);
        free(ms);
        return LC_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n_seq; i++) seq_n[i] = n;
    size_t fl = (size_t)(R * H);
    float *mem = lc_calloc(2 * fl * 4 + 2 * fl + (size_t)mla_acts_floats(c, seq_n, n_seq) + (size_t)(R * V) + 4 * fl,
                           sizeof(float), "MTP");
    if (!mem) {
        free(seq_n);
        free(ms);
        return LC_ERR_NOMEM;
    }
    float *p = mem;
    float *eg = carve(&p, 2 * R * H), *deg = carve(&p, 2 * R * H);
    float *u0 = carve(&p, R * H), *x1 = carve(&p, R * H), *u1 = carve(&p, R * H), *x2 = carve(&p, R * H);
    float *u2 = carve(&p, R * H), *z = carve(&p, R * H), *y = carve(&p, R * H), *du = carve(&p, R * H);
    float *dx = carve(&p, R * H), *dz = carve(&p, R * H);
    mla_acts acts;
    p = mla_acts_carve(&acts, p, c, seq_n, n_seq);
    acts.rope_cs = rope_cs;
    for (int64_t i = 0; i < n_seq; i++) /* the kept activations are the head's cache */
        ms[i] = (mla_seq){.latent = acts.lat + i * n * c->kv_lora_rank, .rope = acts.kpe + i * n * c->qk_rope_head_dim,
                          .p0 = 0, .T = n, .absorbed = 0, .rope_cs = rope_cs};
    float *logits = carve(&p, R * V);
    /* forward: row r = (sequence i, position j) reads hn row i * T + j and token i * T + j + 1 */
    for (int64_t r = 0; r < R; r++) {
        const int64_t i = r / n, j = r % n;
        lc_mat_row(eg + r * 2 * H, &w->embed_tokens, tokens[i * T + j + 1]);
        lc_rmsnorm(eg + r * 2 * H, eg + r * 2 * H, w->enorm, H, eps); /* in place: raw rows are recomputed in backward */
        lc_rmsnorm(eg + r * 2 * H + H, hn + (i * T + j) * H, w->hnorm, H, eps);
    }
    lc_matmul(u0, eg, &w->eh_proj, R);
    rmsnorm_rows(x1, u0, w->input_layernorm, R, H, eps);
    lc_status s = mla_forward(y, x1, ms, n_seq, &w->self_attn, c, &acts);
    for (int64_t q = 0; q < R * H && !s; q++) u1[q] = u0[q] + y[q];
    if (!s) rmsnorm_rows(x2, u1, w->post_attention_layernorm, R, H, eps);
    if (!s) s = ffn_forward(y, x2, &w->mlp, R, NULL);
    for (int64_t q = 0; q < R * H && !s; q++) u2[q] = u1[q] + y[q];
    if (!s) {
        rmsnorm_rows(z, u2, w->norm, R, H, eps);
        lc_matmul(logits, z, &tr->params->lm_head, R);
        *loss = 0;
        for (int64_t i = 0; i < n_seq; i++)
            *loss += lc_cross_entropy(logits + i * n * V, tokens + i * T + 2, n, V, k);
        /* backward */
        lc_matmul_backward(dz, (float *)(uintptr_t)tr->grads->lm_head.data, logits, z, &tr->params->lm_head, R);
        lc_rmsnorm_backward_rows(du, (float *)(uintptr_t)g->norm, dz, u2, w->norm, R, H, eps);
        /* u2 = u1 + ffn(x2): du stays the residual gradient */
        s = ffn_backward(dx, &g->mlp, du, x2, &w->mlp, R, NULL);
    }
    if (!s) {
        lc_rmsnorm_backward_rows(du, (float *)(uintptr_t)g->post_attention_layernorm, dx, u1, w->post_attention_layernorm, R, H,
                                 eps);
        memset(dx, 0, fl * sizeof *dx);
        s = mla_backward(dx, &g->self_attn, du, x1, seq_n, n_seq, &acts, &w->self_attn, c);
    }
    if (!s) {
        lc_rmsnorm_backward_rows(du, (float *)(uintptr_t)g->input_layernorm, dx, u0, w->input_layernorm, R, H, eps);
        /* u0 = eh_proj @ [enorm(e); hnorm(hn)] */
        lc_matmul_backward(deg, (float *)(uintptr_t)g->eh_proj.data, du, eg, &w->eh_proj, R);
        float *raw = dz; /* reuse: the raw embedding row */
        float *de = (float *)(uintptr_t)g->embed_tokens.data;
        for (int64_t r = 0; r < R; r++) {
            const int64_t i = r / n, j = r % n, tok = tokens[i * T + j + 1];
            lc_mat_row(raw, &w->embed_tokens, tok);
            memset(dx, 0, (size_t)H * sizeof *dx);
            lc_rmsnorm_backward(dx, (float *)(uintptr_t)g->enorm, deg + r * 2 * H, raw, w->enorm, H, eps);
            lc_axpy(de + tok * H, 1.0f, dx, H);
            lc_rmsnorm_backward(dhn + (i * T + j) * H, (float *)(uintptr_t)g->hnorm, deg + r * 2 * H + H,
                                hn + (i * T + j) * H, w->hnorm, H, eps);
        }
    }
    free(mem);
    free(seq_n);
    free(ms);
    return s;
}

/* Hidden z-loss of rows h [T, H]: returns sum_t lse_t^2 * k and adds its gradient
 * 2 k lse_t softmax(|h_t|) sign(h_t) to dh (k = lambda * scale / T; 0: only max|h|), with
 * lse_t = logsumexp(|h_t|). */
static double z_loss(float *dh, const float *h, int64_t T, int64_t H, float k, double *max_abs) {
    float *e = lc_malloc((size_t)H * sizeof *e, "z-loss row");
    if (!e) return NAN;
    double total = 0;
    for (int64_t t = 0; t < T; t++) {
        const float *r = h + t * H;
        float mx = 0;
        for (int64_t i = 0; i < H; i++) {
            e[i] = fabsf(r[i]);
            mx = e[i] > mx ? e[i] : mx;
        }
        const double se = lc_k.expsum(e, e, 1.0f, mx, H); /* e = exp(|h| - max) */
        const double lse = mx + log(se);
        total += lse * lse;
        *max_abs = fmax(*max_abs, mx);
        if (k == 0) continue;
        const float g = (float)(2.0 * k * lse / se); /* times exp(|h| - max): 2 k lse softmax(|h|) */
        for (int64_t i = 0; i < H; i++) dh[t * H + i] += g * e[i] * (r[i] > 0 ? 1.0f : r[i] < 0 ? -1.0f : 0.0f);
    }
    free(e);
    return total * k;
}

/* Per-expert LB coefficients of one layer from its routing (SPEC §4.2), times `k`. */
static void lb_coefficients(float *coef, const int32_t *idx, const lc_config *c, const lc_aux_losses *a, int64_t T, float k) {
    const int64_t N = c->n_routed_experts, Z = c->zero_expert_num, E = N + Z, K = c->moe_topk;
    const int64_t D = a->lb_groups > 0 && a->lb_groups <= 4096 && N % a->lb_groups == 0 ? a->lb_groups : 1;
    double ke = a->lb_target > 0 ? a->lb_target : (double)K * (double)N / (double)E;
    double slots[4096 + 1] = {0}; /* D FFN groups + the zero group (D <= N <= 65536; capped below) */
    for (int64_t i = 0; i < T * K; i++) {
        int64_t e = idx[i];
        slots[e < N ? e / (N / D) : D] += 1.0;
    }
    for (int64_t e = 0; e < E; e++) {
        int64_t j = e < N ? e / (N / D) : D;
        double target = j < D ? ke / ((double)K * (double)D) : ((double)K - ke) / (double)K;
        double f = slots[j] / (double)(T * K);
        coef[e] = target > 0 ? (float)(a->lb_alpha * f / target / (double)T) * k : 0.0f;
    }
}

void lc_train_merge_aux_grads(lc_train *tr) {
    const lc_config *c = &tr->cfg;
    const int64_t EH = (c->n_routed_experts + c->zero_expert_num) * c->hidden_size;
    double lb = 0, lm = 0;
    for (int64_t l = 0; l < c->num_layers; l++) {
        float *g = (float *)(uintptr_t)tr->grads->layers[l].router_classifier.data, *b = tr->lb_router_grad + l * EH;
        for (int64_t i = 0; i < EH; i++) {
            lm += (double)g[i] * g[i];
            lb += (double)b[i] * b[i];
            g[i] += b[i];
        }
    }
    tr->router_ratio = lm > 0 ? sqrt(lb / lm) : 0;
    memset(tr->lb_router_grad, 0, (size_t)(c->num_layers * EH) * sizeof(float));
}

/* One gradient shard: n_seq windows through the model and back, gradients and statistics into
 * tr's buffers (the state's own, or a shard's copy of the state pointing at its buffers). */
static lc_status shard_forward_backward(lc_train *tr, const int32_t *tokens, int64_t n_seq, int64_t T, float scale,
                                        float *loss) {
    const lc_config *c = &tr->cfg;
    const lc_model *pm = tr->params;
    const int64_t H = c->hidden_size, V = c->vocab_size, L = c->num_layers, N = c->n_routed_experts, K = c->moe_topk;
    const int64_t E = N + c->zero_expert_num, BT = n_seq * T; /* rows: sequence after sequence */
    /* every window starts at position 0 and caches its attention rows in the activations: the
     * sessions only carry the model (no cache memory) */
    lc_session sess = {.m = pm, .n_ctx = T};
    batch_seq *seqs = lc_calloc((size_t)n_seq, sizeof *seqs, "sequences");
    int64_t *seq_T = lc_malloc((size_t)n_seq * sizeof *seq_T, "sequence lengths");
    lc_status s = seqs && seq_T ? LC_OK : LC_ERR_NOMEM;
    float *rope = s ? NULL : lc_malloc((size_t)(T * c->qk_rope_head_dim + 1) * sizeof *rope, "rope table");
    if (!s && !rope) s = LC_ERR_NOMEM;
    for (int64_t i = 0; i < n_seq && !s; i++) { /* every window's positions 0..T-1: one table */
        seqs[i] = (batch_seq){.sess = &sess, .T = T, .absorbed = 0, .rope_cs = rope};
        seq_T[i] = T;
    }
    int64_t per_layer = s ? 0 : layer_acts_floats(c, seq_T, n_seq, BT);
    float *act_mem = s ? NULL : lc_malloc((size_t)(L * per_layer) * sizeof(float), "activations");
    layer_acts *acts = s ? NULL : lc_calloc((size_t)L, sizeof *acts, "activations");
    float *h = s ? NULL : lc_malloc((size_t)(BT * H) * sizeof *h, "hidden");
    float *hn = s ? NULL : lc_malloc((size_t)(BT * H) * sizeof *hn, "normed");
    float *logits = s ? NULL : lc_malloc((size_t)(BT * V) * sizeof *logits, "logits");
    float *dh = s ? NULL : lc_calloc((size_t)(BT * H), sizeof *dh, "d hidden");
    float *dhn = s ? NULL : lc_calloc((size_t)(BT * H), sizeof *dhn, "d normed");
    int32_t *idx = s ? NULL : lc_malloc((size_t)(BT * K) * sizeof *idx, "routes");
    unsigned char *touched = s ? NULL : lc_calloc((size_t)(L * N), 1, "expert use");
    if (!s && (!act_mem || !acts || !h || !hn || !logits || !dh || !dhn || !idx || !touched)) s = LC_ERR_NOMEM;
    /* ---- forward: all sequences' rows through each layer at once ---- */
    if (!s) lc_rope_table(rope, c->qk_rope_head_dim, T, c->rope_theta); /* every window's positions 0..T-1 */
    for (int64_t t = 0; t < BT && !s; t++) lc_mat_row(h + t * H, &pm->embed_tokens, tokens[t]);
    for (int64_t l = 0; l < L && !s; l++) {
        layer_acts_init(&acts[l], act_mem + l * per_layer, c, seq_T, n_seq, BT);
        acts[l].attn[0].rope_cs = acts[l].attn[1].rope_cs = rope;
        int64_t n_ffn;
        s = scmoe_layer_forward(h, idx, &n_ffn, seqs, n_seq, l, &acts[l]);
    }
    if (!s) {
        rmsnorm_rows(hn, h, pm->norm, BT, H, (float)c->rms_norm_eps);
        lc_matmul(logits, hn, &pm->lm_head, BT);
        /* cross entropy over each sequence's positions 0..T-2; logits become d loss / d logits
         * (a sequence's last row: none) */
        const float k = scale * tr->aux.lm_weight;
        double mean = 0;
        for (int64_t i = 0; i < n_seq; i++) {
            float *lg = logits + i * T * V;
            mean += lc_cross_entropy(lg, tokens + i * T + 1, T - 1, V, k) / (double)n_seq;
            memset(lg + (k == 0 ? 0 : (T - 1) * V), 0, (size_t)((k == 0 ? T : 1) * V) * sizeof *lg);
        }
        *loss = (float)mean;
        /* ---- backward ---- */
        lc_matmul_backward(dhn, (float *)(uintptr_t)tr->grads->lm_head.data, logits, hn, &pm->lm_head, BT);
        if (tr->aux.mtp_weight > 0 && pm->has_mtp && T >= 3) {
            double lm = 0;
            s = mtp_loss_backward(tr, tokens, n_seq, T, rope, hn, dhn, scale * tr->aux.mtp_weight, &lm);
            tr->loss_mtp += lm * scale;
        }
        lc_rmsnorm_backward_rows(dh, (float *)(uintptr_t)tr->grads->norm, dhn, h, pm->norm, BT, H, (float)c->rms_norm_eps);
    }
    float *coef = !s && tr->aux.lb_alpha > 0 ? lc_malloc((size_t)(BT * E) * sizeof *coef, "LB coefficients") : NULL;
    if (!s && tr->aux.lb_alpha > 0 && !coef) s = LC_ERR_NOMEM;
    for (int64_t l = L - 1; l >= 0 && !s; l--) {
        /* the z-loss acts on this layer's output: the next layer's input, or the final h */
        const float *out = l == L - 1 ? h : acts[l + 1].h0;
        for (int64_t i = 0; i < n_seq; i++)
            tr->loss_z += z_loss(dh + i * T * H, out + i * T * H, T, H, tr->aux.z_lambda * scale / (float)T, &tr->max_abs_h);
        moe_aux aux = {NULL, NULL, 0};
        if (coef) { /* each sequence's coefficients from its own routing, on each of its rows */
            for (int64_t i = 0; i < n_seq; i++) {
                float *ci = coef + i * T * E;
                lb_coefficients(ci, acts[l].topk_idx + i * T * K, c, &tr->aux, T, scale);
                for (int64_t t = 1; t < T; t++) memcpy(ci + t * E, ci, (size_t)E * sizeof *ci);
            }
            aux.coef = coef;
            aux.dwr_lb = tr->lb_router_grad + l * E * H;
        }
        s = scmoe_layer_backward(dh, &tr->grads->layers[l], touched + l * N, &acts[l], pm, l, seq_T, n_seq, &aux);
        tr->loss_lb += aux.lb_loss;
    }
    free(coef);
    if (!s) {
        float *de = (float *)(uintptr_t)tr->grads->embed_tokens.data;
        for (int64_t t = 0; t < BT; t++) lc_axpy(de + (int64_t)tokens[t] * H, 1.0f, dh + t * H, H);
        /* which tensors have a gradient now (PyTorch: grad is not None) */
        for (int64_t i = 0; i < tr->n_specs; i++) {
            int64_t l, e;
            const char *name = tr->specs[i].name;
            if (tr->specs[i].kind == LC_T_BIAS || (!strncmp(name, "model.mtp.", 10) && !(tr->aux.mtp_weight > 0 && T >= 3)))
                continue;
            tr->touched[i] |= expert_of(name, &l, &e) ? touched[l * N + e] : 1;
        }
        for (int64_t l = 0; l < L; l++)
            for (int64_t i = 0; i < BT * K; i++) tr->expert_tokens[l * E + acts[l].topk_idx[i]]++;
        tr->stat_tokens += BT;
    }
    free(act_mem);
    free(acts);
    free(rope);
    free(h);
    free(hn);
    free(logits);
    free(dh);
    free(dhn);
    free(idx);
    free(touched);
    free(seqs);
    free(seq_T);
    return s;
}

/* The optimizer's elementwise passes run over fixed chunks of the touched tensors, so the
 * chunking (and any per-chunk sum) is the same for every thread count. */
#define OPT_CHUNK 16384
typedef struct {
    int64_t spec, begin, n;
} opt_chunk;

static opt_chunk *opt_chunks(const lc_train *tr, const unsigned char *touched, int64_t *n_out) {
    int64_t n = 0;
    for (int pass = 0; pass < 2; pass++) {
        opt_chunk *c = pass ? lc_malloc((size_t)(n ? n : 1) * sizeof *c, "optimizer chunks") : NULL;
        if (pass && !c) return NULL;
        n = 0;
        for (int64_t i = 0; i < tr->n_specs; i++) {
            if (!touched[i]) continue;
            const int64_t size = tr->specs[i].rows * (tr->specs[i].cols ? tr->specs[i].cols : 1);
            for (int64_t b = 0; b < size; b += OPT_CHUNK, n++)
                if (pass) c[n] = (opt_chunk){i, tr->offset[i] + b, LC_MIN(OPT_CHUNK, size - b)};
        }
        if (pass) {
            *n_out = n;
            return c;
        }
    }
    return NULL;
}

/* Gradient shards (see train.h): shard g > 0 has its own gradient arena (zero between calls),
 * LB router gradient, touched flags and routing counts; shard 0 is the state itself. */
struct lc_train_shard {
    float *grad;
    lc_model *grads; /* view of grad */
    float *lb_router_grad;
    unsigned char *touched;
    int64_t *expert_tokens;
};

static void shards_free(lc_train *tr) {
    for (int64_t i = 0; i < tr->n_shard; i++) {
        free(tr->shard[i].grad);
        lc_model_free(tr->shard[i].grads);
        free(tr->shard[i].lb_router_grad);
        free(tr->shard[i].touched);
        free(tr->shard[i].expert_tokens);
    }
    free(tr->shard);
    tr->shard = NULL;
    tr->n_shard = 0;
}

static lc_status shards_reserve(lc_train *tr, int64_t n) {
    const lc_config *c = &tr->cfg;
    const int64_t E = c->n_routed_experts + c->zero_expert_num;
    if (n <= tr->n_shard) return LC_OK;
    struct lc_train_shard *a = realloc(tr->shard, (size_t)n * sizeof *a);
    if (!a) return lc_error(LC_ERR_NOMEM, "out of memory for %lld gradient shards", (long long)n);
    tr->shard = a;
    for (; tr->n_shard < n; tr->n_shard++) {
        struct lc_train_shard *b = &a[tr->n_shard];
        *b = (struct lc_train_shard){
            lc_calloc((size_t)tr->n_params, sizeof(float), "shard gradients"), NULL,
            lc_calloc((size_t)(c->num_layers * E * c->hidden_size), sizeof(float), "shard LB router gradient"),
            lc_calloc((size_t)tr->n_specs, 1, "shard touched"),
            lc_calloc((size_t)(c->num_layers * E), sizeof(int64_t), "shard routing counts")};
        lc_status s = b->grad && b->lb_router_grad && b->touched && b->expert_tokens ? LC_OK : LC_ERR_NOMEM;
        if (!s) s = make_view(&b->grads, c, b->grad, tr->offset, tr->n_specs);
        if (s) {
            tr->n_shard++; /* freed with the rest */
            shards_free(tr);
            return s;
        }
    }
    return LC_OK;
}

/* Zeroes shard b's LB router gradient, touched flags and routing counts (its gradients: by the caller). */
static void shard_clear_stats(const lc_train *tr, struct lc_train_shard *b) {
    const lc_config *c = &tr->cfg;
    const int64_t LE = c->num_layers * (c->n_routed_experts + c->zero_expert_num);
    memset(b->touched, 0, (size_t)tr->n_specs);
    memset(b->lb_router_grad, 0, (size_t)(LE * c->hidden_size) * sizeof(float));
    memset(b->expert_tokens, 0, (size_t)LE * sizeof(int64_t));
}

/* Adds shard b's gradients and statistics (its state copy sh) to tr and leaves b at zero. */
static lc_status shard_merge(lc_train *tr, const lc_train *sh, struct lc_train_shard *b) {
    const lc_config *c = &tr->cfg;
    const int64_t E = c->n_routed_experts + c->zero_expert_num, LEH = c->num_layers * E * c->hidden_size;
    int64_t n = 0;
    opt_chunk *ch = opt_chunks(tr, b->touched, &n);
    if (!ch) return LC_ERR_NOMEM;
#pragma omp parallel for schedule(static) if (n > 4 && !lc_in_parallel())
    for (int64_t j = 0; j < n; j++) {
        float *d = tr->grad + ch[j].begin, *g = b->grad + ch[j].begin;
        lc_axpy(d, 1.0f, g, ch[j].n);
        memset(g, 0, (size_t)ch[j].n * sizeof *g);
    }
    free(ch);
    for (int64_t i = 0; i < tr->n_specs; i++) tr->touched[i] |= b->touched[i];
    lc_axpy(tr->lb_router_grad, 1.0f, b->lb_router_grad, LEH);
    for (int64_t i = 0; i < c->num_layers * E; i++) tr->expert_tokens[i] += b->expert_tokens[i];
    shard_clear_stats(tr, b);
    tr->stat_tokens += sh->stat_tokens;
    tr->loss_z += sh->loss_z;
    tr->loss_lb += sh->loss_lb;
    tr->loss_mtp += sh->loss_mtp;
    tr->max_abs_h = fmax(tr->max_abs_h, sh->max_abs_h);
    return LC_OK;
}

int64_t lc_train_auto_shards(const lc_train *tr, int64_t n_seq) {
    const double budget = 256.0 * 1024 * 1024, bytes = (double)tr->n_params * sizeof(float);
    int64_t g = LC_MIN(n_seq, 2);
    while (g > 1 && (double)(g - 1) * bytes > budget) g--;
    return g;
}

lc_status lc_train_forward_backward(lc_train *tr, const int32_t *tokens, int64_t n_seq, int64_t T, float scale,
                                    float *loss) {
    const lc_config *c = &tr->cfg;
    if (T < 2 || n_seq < 1) return lc_error(LC_ERR_ARG, "train: need at least one sequence of 2 tokens");
    for (int64_t t = 0; t < n_seq * T; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return lc_error(LC_ERR_ARG, "train: token %d at index %lld of sequence %lld is outside the vocabulary",
                            tokens[t], (long long)(t % T), (long long)(t / T));
    if (T > c->max_position_embeddings)
        return lc_error(LC_ERR_ARG, "train: %lld tokens exceed the context of %lld", (long long)T,
                        (long long)c->max_position_embeddings);
    const int64_t G = tr->grad_shards > 0 ? LC_MIN(tr->grad_shards, n_seq) : lc_train_auto_shards(tr, n_seq);
    if (G == 1) return shard_forward_backward(tr, tokens, n_seq, T, scale, loss);
    lc_status s = shards_reserve(tr, G - 1);
    lc_train *st = s ? NULL : lc_malloc((size_t)G * sizeof *st, "shards");
    float *ls = s ? NULL : lc_calloc((size_t)G, sizeof *ls, "shard losses");
    lc_status *ss = s ? NULL : lc_calloc((size_t)G, sizeof *ss, "shard status");
    char(*msg)[256] = s ? NULL : lc_calloc((size_t)G, sizeof *msg, "shard errors");
    if (!s && (!st || !ls || !ss || !msg)) s = LC_ERR_NOMEM;
    for (int64_t g = 1; g < G && !s; g++) { /* copies of the state whose gradient side is shard g's */
        struct lc_train_shard *b = &tr->shard[g - 1];
        st[g] = *tr;
        st[g].grad = b->grad, st[g].grads = b->grads, st[g].lb_router_grad = b->lb_router_grad;
        st[g].touched = b->touched, st[g].expert_tokens = b->expert_tokens, st[g].stat_tokens = 0;
        st[g].loss_z = st[g].loss_lb = st[g].loss_mtp = st[g].max_abs_h = 0;
    }
    if (!s) {
        /* shard g: windows [g n_seq / G, (g + 1) n_seq / G); side by side with their products
         * serial when there are threads for them, else one after another, products on every thread */
        const int threads = lc_max_threads();
        LC_FOR(threads >= 2 && threads <= 2 * G && !lc_in_parallel(), g, G, {
            const int64_t a = g * n_seq / G, e = (g + 1) * n_seq / G;
            ss[g] = shard_forward_backward(g ? &st[g] : tr, tokens + a * T, e - a, T, scale, &ls[g]);
            if (ss[g]) snprintf(msg[g], sizeof msg[g], "%s", lc_last_error());
        });
        double total = 0;
        for (int64_t g = 0; g < G; g++) {
            total += (double)ls[g] * (double)((g + 1) * n_seq / G - g * n_seq / G); /* mean x windows */
            if (ss[g] && !s) s = lc_error(ss[g], "%s", msg[g]);
        }
        *loss = (float)(total / (double)n_seq);
    }
    for (int64_t g = 1; g < G && st && g <= tr->n_shard; g++) { /* in shard order: the same bits for any thread count */
        struct lc_train_shard *b = &tr->shard[g - 1];
        lc_status m = s ? LC_OK : shard_merge(tr, &st[g], b);
        if (s || m) { /* failed: leave the shard at zero for the next call */
            memset(b->grad, 0, (size_t)tr->n_params * sizeof(float));
            shard_clear_stats(tr, b);
            if (!s) s = m;
        }
    }
    free(st);
    free(ls);
    free(ss);
    free(msg);
    return s;
}

lc_status lc_train_adamw_step(lc_train *tr, const lc_adamw *o) {
    int64_t n = 0;
    opt_chunk *ch = opt_chunks(tr, tr->touched, &n);
    lc_adamw_coef *coef = lc_malloc((size_t)tr->n_specs * sizeof *coef, "AdamW constants");
    if (!ch || !coef) {
        free(ch);
        free(coef);
        return LC_ERR_NOMEM;
    }
    for (int64_t i = 0; i < tr->n_specs; i++) {
        if (!tr->touched[i]) continue;
        /* torch.optim.AdamW, step by step in float32 */
        const int64_t step = ++tr->steps[i];
        const float lr = o->lr * tr->lr_scale[i];
        const float bc1 = 1.0f - powf(o->beta1, (float)step), bc2 = 1.0f - powf(o->beta2, (float)step);
        coef[i] = (lc_adamw_coef){.decay = 1.0f - lr * o->weight_decay, .beta1 = o->beta1, .beta2 = o->beta2,
                                  .eps = o->eps, .step_size = lr / bc1, .bc2_sqrt = sqrtf(bc2), .gscale = tr->grad_scale};
    }
#pragma omp parallel for schedule(static) if (n > 4)
    for (int64_t j = 0; j < n; j++) {
        const int64_t b = ch[j].begin;
        lc_k.adamw(tr->param + b, tr->grad + b, tr->m + b, tr->v + b, ch[j].n, &coef[ch[j].spec]);
    }
    memset(tr->touched, 0, (size_t)tr->n_specs); /* every gradient is zero again */
    tr->grad_scale = 1.0f;
    free(ch);
    free(coef);
    return LC_OK;
}

lc_status lc_train_clip_grad(lc_train *tr, double max_norm, double *norm_out) {
    int64_t n = 0;
    opt_chunk *ch = opt_chunks(tr, tr->touched, &n);
    double *part = lc_malloc((size_t)(n ? n : 1) * sizeof *part, "gradient norm parts");
    if (!ch || !part) {
        free(ch);
        free(part);
        return LC_ERR_NOMEM;
    }
#pragma omp parallel for schedule(static) if (n > 4)
    for (int64_t j = 0; j < n; j++) part[j] = lc_k.sumsq(tr->grad + ch[j].begin, ch[j].n);
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += part[j]; /* in chunk order: the same for any thread count */
    double norm = sqrt(ss);
    tr->grad_scale = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
    free(ch);
    free(part);
    *norm_out = norm;
    return LC_OK;
}

double lc_train_ffn_per_token(const lc_train *tr) {
    const lc_config *c = &tr->cfg;
    const int64_t N = c->n_routed_experts, E = N + c->zero_expert_num;
    if (!tr->stat_tokens) return 0;
    int64_t ffn = 0;
    for (int64_t l = 0; l < c->num_layers; l++)
        for (int64_t e = 0; e < N; e++) ffn += tr->expert_tokens[l * E + e];
    return (double)ffn / ((double)tr->stat_tokens * (double)c->num_layers);
}

void lc_train_reset_stats(lc_train *tr) {
    const lc_config *c = &tr->cfg;
    memset(tr->expert_tokens, 0, (size_t)(c->num_layers * (c->n_routed_experts + c->zero_expert_num)) * sizeof *tr->expert_tokens);
    tr->stat_tokens = 0;
}

double lc_train_update_bias(lc_train *tr, const lc_bias_pid *pid) {
    const lc_config *c = &tr->cfg;
    const int64_t N = c->n_routed_experts, E = N + c->zero_expert_num, K = c->moe_topk;
    double avg = lc_train_ffn_per_token(tr);
    if (tr->stat_tokens > 0)
        for (int64_t l = 0; l < c->num_layers; l++) {
            float *bias = (float *)(uintptr_t)tr->params->layers[l].e_score_correction_bias;
            for (int64_t i = 0; i < N; i++) {
                double share = (double)tr->expert_tokens[l * E + i] / ((double)K * (double)tr->stat_tokens);
                double err = pid->target / ((double)K * (double)N) - share;
                double *integ = &tr->pid_integral[l * N + i], *prev = &tr->pid_prev[l * N + i];
                *integ += err;
                bias[i] += (float)(pid->kp * err + pid->ki * *integ + pid->kd * (err - *prev));
                *prev = err;
            }
        }
    lc_train_reset_stats(tr);
    return avg;
}

int lc_is_embedding_tensor(const char *name) {
    return strstr(name, "embed_tokens") != NULL || !strcmp(name, "lm_head.weight");
}

double lc_train_width_transfer(lc_train *tr, double proxy_width) {
    double sc = (double)tr->cfg.hidden_size / proxy_width;
    for (int64_t i = 0; i < tr->n_specs; i++)
        tr->lr_scale[i] = tr->specs[i].kind == LC_T_MAT && !lc_is_embedding_tensor(tr->specs[i].name) ? (float)(1.0 / sc) : 1.0f;
    return sc;
}
