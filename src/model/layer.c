/* layer.c — the shortcut-connected MoE layer (ScMoE, SPEC §3) and the whole-model forward:
 * embedding, layers, final norm, lm_head. The parts of a layer are in mla.c, ffn.c, moe.c;
 * the MTP head is in mtp.c; cache ownership is in session.c. */
#include "sublayers.h"

#include <stdlib.h>
#include <string.h>

static int g_prof;                      /* lc_profile_enable */
static double g_prof_sec[LC_PROF_COUNT];

void lc_profile_enable(int on) {
    g_prof = on;
    memset(g_prof_sec, 0, sizeof g_prof_sec);
}
void lc_profile_read(double sec[LC_PROF_COUNT]) { memcpy(sec, g_prof_sec, sizeof g_prof_sec); }
const char *lc_profile_name(lc_prof_part p) {
    static const char *names[LC_PROF_COUNT] = {"attention", "dense_ffn", "router", "experts", "lm_head", "other"};
    return p >= 0 && p < LC_PROF_COUNT ? names[p] : "?";
}
static double prof_begin(void) { return g_prof ? lc_time_sec() : 0; }
static void prof_end(lc_prof_part p, double t0) {
    if (g_prof) g_prof_sec[p] += lc_time_sec() - t0;
}

/* One timed step that did the work of parts a and b: its time split between them as wa : wb. */
static void prof_end_split(double t0, lc_prof_part a, double wa, lc_prof_part b, double wb) {
    const double sec = lc_time_sec() - t0;
    g_prof_sec[a] += sec * wa / (wa + wb);
    g_prof_sec[b] += sec * wb / (wa + wb);
}

/* Bytes of an FFN's three weight matrices. */
static double ffn_bytes(const lc_ffn_weights *f) {
    const lc_mat *m[3] = {&f->gate_proj, &f->up_proj, &f->down_proj};
    double b = 0;
    for (int i = 0; i < 3; i++) b += (double)m[i]->rows * (double)lc_mat_row_bytes(m[i]);
    return b;
}

/* h += y, then += m when given: rows shared by the threads when a prompt's (an elementwise pass
 * is memory-bound, one thread leaves half the bandwidth unused); lc_axpy with a = 1 adds exactly. */
static void residual_add(float *h, const float *y, const float *m, int64_t T, int64_t H) {
    LC_FOR(T * H > 65536 && !lc_in_parallel(), t, T, {
        lc_axpy(h + t * H, 1.0f, y + t * H, H);
        if (m) lc_axpy(h + t * H, 1.0f, m + t * H, H);
    });
}

/* One layer, in place on h [T, H]:
 *   h += attn0(norm(h));  x = norm(h);  m = moe(x)   <- shortcut branch starts here
 *   h += mlp0(x);  h += attn1(norm(h));  h += mlp1(norm(h)) + m   <- and is added here */
lc_status scmoe_layer_forward(float *h,            /* [T, H] residual stream */
                              int32_t *topk_idx,   /* [T, K] out: chosen experts */
                              int64_t *n_ffn,      /* out: FFN-expert slots used */
                              const batch_seq *seqs, int64_t n_seq, int64_t layer, layer_acts *acts) {
    const lc_model *mdl = seqs[0].sess->m;
    const lc_config *c = &mdl->cfg;
    const lc_layer_weights *w = &mdl->layers[layer];
    const int64_t H = c->hidden_size, K = c->moe_topk, kvr = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    const float eps = (float)c->rms_norm_eps;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seq; i++) T += seqs[i].T;
    const size_t row_bytes = (size_t)(T * H) * sizeof(float);
    const lc_scratch_mark mark = lc_scratch_mark_get();
    float *xn = lc_scratch_alloc(row_bytes, "layer normed input");
    float *y = lc_scratch_alloc(row_bytes, "layer sublayer output");
    float *m = lc_scratch_alloc(row_bytes, "layer MoE output");
    float *tw = acts ? acts->topk_w : lc_scratch_alloc((size_t)(T * K) * sizeof *tw, "router weights");
    mla_seq *ms = lc_scratch_alloc((size_t)n_seq * sizeof *ms, "attention sequences");
    lc_status s = (xn && y && m && tw && ms) ? LC_OK : LC_ERR_NOMEM;
    if (acts && !s) memcpy(acts->h0, h, row_bytes);
    /* decode: each sublayer's first products announced to the team's threads that wait while
     * this one does the norms and residual adds between the products (lc_row_plan_ahead) */
    const int ahead = !acts && T == 1;
    for (int sub = 0; sub < 2 && !s; sub++) {
        const int64_t a = 2 * layer + sub; /* attention sublayer index into the caches */
        if (ahead) {
            const lc_mla_weights *at = &w->self_attn[sub];
            const lc_matmul_job first[2] = {{NULL, NULL, &at->q_a_proj, 1}, {NULL, NULL, &at->kv_a_proj_with_mqa, 1}};
            lc_row_plan_ahead(first, 2);
        }
        for (int64_t i = 0, t0 = 0; i < n_seq; t0 += seqs[i].T, i++) {
            const lc_session *se = seqs[i].sess;
            ms[i] = (mla_seq){.p0 = se->pos, .T = seqs[i].T, .absorbed = seqs[i].absorbed, .rope_cs = seqs[i].rope_cs};
            if (acts) { /* training: the kept activations are the cache (sessions hold none) */
                ms[i].latent = acts->attn[sub].lat + t0 * kvr;
                ms[i].rope = acts->attn[sub].kpe + t0 * dr;
            } else {
                ms[i].latent = se->kv_latent + a * se->n_ctx * kvr;
                ms[i].rope = se->kv_rope + a * se->n_ctx * dr;
            }
        }
        float *xa = acts ? (sub ? acts->x3 : acts->x1) : xn;
        rmsnorm_rows(xa, h, w->input_layernorm[sub], T, H, eps);
        double t0 = prof_begin();
        s = mla_forward(y, xa, ms, n_seq, &w->self_attn[sub], c, acts ? &acts->attn[sub] : NULL);
        prof_end(LC_PROF_ATTENTION, t0);
        if (s) break;
        if (ahead && sub == 0) {
            const lc_matmul_job router = {NULL, NULL, &w->router_classifier, 1};
            lc_row_plan_ahead(&router, 1);
        } else if (ahead) {
            const lc_matmul_job gu[2] = {{NULL, NULL, &w->mlps[1].gate_proj, 1}, {NULL, NULL, &w->mlps[1].up_proj, 1}};
            lc_row_plan_ahead(gu, 2);
        }
        residual_add(h, y, NULL, T, H);
        if (acts) memcpy(sub ? acts->h3 : acts->h1, h, row_bytes);
        float *xf = acts ? (sub ? acts->x4 : acts->x) : xn;
        rmsnorm_rows(xf, h, w->post_attention_layernorm[sub], T, H, eps);
        if (sub == 0) {
            t0 = prof_begin();
            s = router_forward(topk_idx, tw, xf, w, c, T);
            prof_end(LC_PROF_ROUTER, t0);
            if (!acts && T < LC_GEMM_MIN_T) { /* decode: the MoE branch and mlp0 share their parallel phases */
                int64_t used = 0;
                t0 = prof_begin();
                if (!s) s = moe_dense_forward(m, y, xf, topk_idx, tw, w, c, T, &used, NULL, &w->mlps[0]);
                if (n_ffn) *n_ffn = used;
                if (g_prof) /* one step for both: its time split by the weight bytes each read */
                    prof_end_split(t0, LC_PROF_DENSE_FFN, ffn_bytes(&w->mlps[0]), LC_PROF_EXPERTS,
                                   used ? (double)used * ffn_bytes(&w->experts[0]) : 0);
            } else {
                t0 = prof_begin();
                if (!s) s = moe_forward(m, xf, topk_idx, tw, w, c, T, n_ffn, acts ? &acts->moe : NULL);
                prof_end(LC_PROF_EXPERTS, t0);
                t0 = prof_begin();
                if (!s) s = ffn_forward(y, xf, &w->mlps[0], T, acts ? acts->ffn_keep[0] : NULL);
                prof_end(LC_PROF_DENSE_FFN, t0);
            }
            if (!s) residual_add(h, y, NULL, T, H);
            if (acts) {
                memcpy(acts->h2, h, row_bytes);
                memcpy(acts->topk_idx, topk_idx, (size_t)(T * K) * sizeof *topk_idx);
            }
        } else {
            t0 = prof_begin();
            s = ffn_forward(y, xf, &w->mlps[1], T, acts ? acts->ffn_keep[1] : NULL);
            prof_end(LC_PROF_DENSE_FFN, t0);
            if (!s) residual_add(h, y, m, T, H); /* ScMoE: the MoE branch joins here */
        }
    }
    lc_scratch_release(mark);
    return s;
}

/* dx of a row-wise RMSNorm added into dh; weight gradient into dw. */
static void rmsnorm_rows_backward(float *dh, float *dw, const float *dxn, const float *h, const float *w, int64_t T,
                                  int64_t H, float eps) {
    lc_rmsnorm_backward_rows(dh, dw, dxn, h, w, T, H, eps);
}

/* The layer's steps in reverse: mlp1 (+ the MoE output's gradient), attn1, mlp0 + MoE, attn0. */
lc_status scmoe_layer_backward(float *dh, lc_layer_weights *g, unsigned char *touched, layer_acts *a,
                               const lc_model *m, int64_t layer, const int64_t *seq_T, int64_t n_seq, moe_aux *aux) {
    const lc_config *c = &m->cfg;
    const lc_layer_weights *w = &m->layers[layer];
    const int64_t H = c->hidden_size;
    const float eps = (float)c->rms_norm_eps;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seq; i++) T += seq_T[i];
    float *dx = calloc((size_t)(T * H), sizeof *dx), *dm = malloc((size_t)(T * H) * sizeof *dm);
    if (!dx || !dm) {
        free(dx);
        free(dm);
        return lc_error(LC_ERR_NOMEM, "out of memory for the layer backward pass");
    }
    memcpy(dm, dh, (size_t)(T * H) * sizeof *dm); /* h4 = h3 + mlp1(x4) + m */
    lc_status s = ffn_backward(dx, &g->mlps[1], dh, a->x4, &w->mlps[1], T, a->ffn_keep[1]);
    if (!s) rmsnorm_rows_backward(dh, (float *)(uintptr_t)g->post_attention_layernorm[1], dx, a->h3,
                                  w->post_attention_layernorm[1], T, H, eps);
    for (int sub = 1; sub >= 0 && !s; sub--) {
        memset(dx, 0, (size_t)(T * H) * sizeof *dx);
        s = mla_backward(dx, &g->self_attn[sub], dh, sub ? a->x3 : a->x1, seq_T, n_seq, &a->attn[sub], &w->self_attn[sub], c);
        if (!s) rmsnorm_rows_backward(dh, (float *)(uintptr_t)g->input_layernorm[sub], dx, sub ? a->h2 : a->h0,
                                      w->input_layernorm[sub], T, H, eps);
        if (sub == 1 && !s) { /* h2 = h1 + mlp0(x), and the MoE branch also reads x */
            memset(dx, 0, (size_t)(T * H) * sizeof *dx);
            s = ffn_backward(dx, &g->mlps[0], dh, a->x, &w->mlps[0], T, a->ffn_keep[0]);
            if (!s) s = moe_backward(dx, g, touched, dm, a->x, a->topk_idx, a->topk_w, w, c, T, aux, &a->moe);
            if (!s) rmsnorm_rows_backward(dh, (float *)(uintptr_t)g->post_attention_layernorm[0], dx, a->h1,
                                          w->post_attention_layernorm[0], T, H, eps);
        }
    }
    free(dx);
    free(dm);
    return s;
}

/* The embedding, the layers and the head of one lc_forward_batch call (its checks done). */
typedef struct {
    lc_session *const *sessions;
    const int32_t *tokens;
    const int64_t *n_tokens;
    int64_t n_seq, T;
    lc_forward_out *out;
    float *h, *hn;
    int32_t *idx;
    batch_seq *seqs;
    lc_status st;
} forward_pass;

static void forward_layers(void *arg) {
    forward_pass *fp = arg;
    lc_session *const *sessions = fp->sessions;
    const lc_model *mdl = sessions[0]->m;
    const lc_config *c = &mdl->cfg;
    const int64_t H = c->hidden_size, K = c->moe_topk, T = fp->T, n_seq = fp->n_seq;
    const int32_t *tokens = fp->tokens;
    const int64_t *n_tokens = fp->n_tokens;
    lc_forward_out *out = fp->out;
    float *h = fp->h, *hn = fp->hn;
    int32_t *idx = fp->idx;
    batch_seq *seqs = fp->seqs;
    lc_status st = fp->st;
    int64_t n_ffn_total = 0;
    double t_start = prof_begin(), parts0 = 0;
    for (int p = 0; p < LC_PROF_OTHER; p++) parts0 += g_prof_sec[p];
    for (int64_t t = 0; t < T && !st; t++) lc_mat_row(h + t * H, &mdl->embed_tokens, tokens[t]);
    for (int64_t L = 0; L < c->num_layers && !st; L++) {
        int64_t n_ffn = 0;
        st = scmoe_layer_forward(h, idx, &n_ffn, seqs, n_seq, L, NULL);
        n_ffn_total += n_ffn;
        if (!st && out && out->hidden) memcpy(out->hidden + L * T * H, h, (size_t)(T * H) * sizeof *h);
        if (!st && out && out->topk_idx) memcpy(out->topk_idx + L * T * K, idx, (size_t)(T * K) * sizeof *idx);
    }
    if (!st) {
        if (out && out->logits) {
            const lc_matmul_job head = {NULL, NULL, &mdl->lm_head, out->logits_last_only ? n_seq : T};
            lc_row_plan_ahead(&head, 1);
        }
        rmsnorm_rows(hn, h, mdl->norm, T, H, (float)c->rms_norm_eps);
        if (out && out->normed) memcpy(out->normed, hn, (size_t)(T * H) * sizeof *hn);
        double t0 = prof_begin();
        if (out && out->logits) {
            if (out->logits_last_only) {
                /* one row per sequence: gather each sequence's last row, one product */
                for (int64_t i = 0, t = 0; i < n_seq; i++) {
                    t += n_tokens[i];
                    if (t - 1 != i) memmove(hn + i * H, hn + (t - 1) * H, (size_t)H * sizeof *hn);
                }
                lc_matmul(out->logits, hn, &mdl->lm_head, n_seq);
            } else lc_matmul(out->logits, hn, &mdl->lm_head, T);
        }
        prof_end(LC_PROF_LM_HEAD, t0);
        if (out && out->n_ffn_experts) *out->n_ffn_experts = n_ffn_total;
        for (int64_t i = 0; i < n_seq; i++) sessions[i]->pos += n_tokens[i];
    }
    if (g_prof) { /* embedding, norms, residual adds: the rest of the wall time */
        double parts = 0;
        for (int p = 0; p < LC_PROF_OTHER; p++) parts += g_prof_sec[p];
        g_prof_sec[LC_PROF_OTHER] += (lc_time_sec() - t_start) - (parts - parts0);
    }
    fp->st = st;
}

lc_status lc_forward(lc_session *s, const int32_t *tokens, int64_t T, lc_forward_out *out) {
    return lc_forward_batch(&s, tokens, &T, 1, out);
}

lc_status lc_forward_batch(lc_session *const *sessions, const int32_t *tokens, const int64_t *n_tokens, int64_t n_seq,
                           lc_forward_out *out) {
    if (n_seq <= 0) return lc_error(LC_ERR_ARG, "forward: no sequences");
    const lc_model *mdl = sessions[0]->m;
    const lc_config *c = &mdl->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, K = c->moe_topk;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        const lc_session *s = sessions[i];
        if (n_tokens[i] <= 0) return lc_error(LC_ERR_ARG, "forward: sequence %lld has no tokens", (long long)i);
        if (s->m != mdl) return lc_error(LC_ERR_ARG, "forward: sequence %lld belongs to another model", (long long)i);
        for (int64_t j = 0; j < i; j++)
            if (sessions[j] == s) return lc_error(LC_ERR_ARG, "forward: session of sequence %lld given twice", (long long)i);
        if (s->pos + n_tokens[i] > s->n_ctx)
            return lc_error(LC_ERR_ARG, "forward: %lld cached + %lld new tokens exceed the context of %lld",
                            (long long)s->pos, (long long)n_tokens[i], (long long)s->n_ctx);
        T += n_tokens[i];
    }
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return lc_error(LC_ERR_ARG, "forward: token %d at index %lld is outside the vocabulary (0..%lld)",
                            tokens[t], (long long)t, (long long)(V - 1));
    float *h = lc_malloc((size_t)(T * H) * sizeof *h, "hidden states");
    float *hn = lc_malloc((size_t)(T * H) * sizeof *hn, "final normed states");
    int32_t *idx = lc_malloc((size_t)(T * K) * sizeof *idx, "router choices");
    batch_seq *seqs = lc_malloc((size_t)n_seq * sizeof *seqs, "forward sequences");
    const int64_t dr = c->qk_rope_head_dim;
    float *cs = lc_malloc((size_t)(T * dr + 1) * sizeof *cs, "RoPE coefficients"); /* every layer's */
    lc_status st = (h && hn && idx && seqs && cs) ? LC_OK : LC_ERR_NOMEM;
    for (int64_t i = 0, t0 = 0; i < n_seq && !st; t0 += n_tokens[i], i++) {
        lc_attn_mode am = sessions[i]->attn_mode;
        lc_rope_rows(cs + t0 * dr, dr, sessions[i]->pos, n_tokens[i], c->rope_theta);
        seqs[i] = (batch_seq){.sess = sessions[i], .T = n_tokens[i],
                              .absorbed = am == LC_ATTN_ABSORBED || (am == LC_ATTN_AUTO && n_tokens[i] == 1),
                              .rope_cs = cs + t0 * dr};
    }
    forward_pass fp = {sessions, tokens, n_tokens, n_seq, T, out, h, hn, idx, seqs, st};
    if (!st && T < LC_GEMM_MIN_T) lc_team_scope(forward_layers, &fp); /* decode: one team for every product */
    else if (!st) forward_layers(&fp);
    st = fp.st;
    free(h);
    free(hn);
    free(idx);
    free(seqs);
    free(cs);
    return st;
}
