/* mla.c — Multi-head Latent Attention forward (SPEC §3): LoRA-factored queries, compressed
 * KV cache (latent + one shared roped key per token), expanded attention for prompts and
 * weight-absorbed attention for decoding. Router/MoE/FFN live in their own files. */
#include "sublayers.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define MLA_NORM_EPS 1e-6f /* q_a_layernorm and kv_a_layernorm use 1e-6, not rms_norm_eps */

void rmsnorm_rows(float *out, const float *x, const float *w, int64_t T, int64_t n, float eps) {
    LC_FOR(T * n > 16384 && !lc_in_parallel(), t, T, lc_rmsnorm(out + t * n, x + t * n, w, n, eps););
}

/* attend_expanded's heads: every (sequence, head) pair one task, shared out by the team. */
typedef struct {
    float *ctx;
    const float *q, *kv;
    const mla_seq *seqs;
    const int64_t *t0s, *idx, *kv0, *p_off;
    int64_t n_idx;
    const lc_config *c;
    mla_acts *acts;
    _Atomic int fail;
} expanded_call;

static void expanded_heads(void *arg) {
    expanded_call *e = arg;
    const lc_config *c = e->c;
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, dkv = dn + dv, dq = dn + dr;
    const float scale = 1.0f / sqrtf((float)dq);
    int fail = 0;
#pragma omp for schedule(dynamic, 1) nowait
    for (int64_t task = 0; task < e->n_idx * nh; task++) { /* one head of one sequence */
        const int64_t j = task / nh, h = task % nh;
        const mla_seq *sq_ = &e->seqs[e->idx[j]];
        const int64_t t0 = e->t0s[e->idx[j]];
        const float *kvh = e->kv + e->kv0[j] * nh * dkv + h * dkv; /* the head's expanded keys, values dn on */
        fail |= lc_k.attention(e->ctx + t0 * nh * dv + h * dv, nh * dv, e->q + t0 * nh * dq + h * dq, nh * dq, kvh,
                               nh * dkv, sq_->rope, dr, kvh + dn, nh * dkv, sq_->T, sq_->p0, dn, dr, dv, scale,
                               e->acts ? e->acts->p + e->p_off[j] + h * sq_->T * sq_->T : NULL, sq_->T) != 0;
    }
    if (fail) atomic_store(&e->fail, 1);
}

/* Expanded attention for the sequences `idx` of seqs (every (sequence, head) pair is one task
 * of one team call): kv = kv_b_proj @ latent over each one's cache rows, then the heads.
 * q and ctx are the batch's rows; t0s[i] the first row of sequence i. acts (training): keeps
 * kv and the probabilities. */
static lc_status attend_expanded(float *ctx, const float *q, const mla_seq *seqs, const int64_t *t0s, const int64_t *idx,
                                 int64_t n_idx, const lc_mla_weights *w, const lc_config *c, mla_acts *acts) {
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim;
    const int64_t dv = c->v_head_dim, kvr = c->kv_lora_rank, dkv = dn + dv;
    int64_t rows = 0; /* cache rows to expand */
    for (int64_t j = 0; j < n_idx; j++) {
        const mla_seq *sq_ = &seqs[idx[j]];
        rows += sq_->p0 + sq_->T;
    }
    float *kv = acts ? acts->kv : lc_malloc((size_t)(rows * nh * dkv) * sizeof *kv, "MLA expanded K/V");
    int64_t *kv0 = lc_malloc((size_t)(2 * n_idx + 1) * sizeof *kv0, "MLA sequences"), *p_off = kv0 ? kv0 + n_idx : NULL;
    lc_status s = kv && kv0 ? LC_OK : LC_ERR_NOMEM;
    for (int64_t j = 0, r = 0, po = 0; j < n_idx && !s; j++) {
        const mla_seq *sq_ = &seqs[idx[j]];
        kv0[j] = r;
        p_off[j] = po;
        lc_k.matmul(kv + r * nh * dkv, nh * dkv, sq_->latent, kvr, &w->kv_b_proj, 0, nh * dkv, sq_->p0 + sq_->T);
        r += sq_->p0 + sq_->T;
        po += nh * sq_->T * sq_->T;
    }
    if (!s) {
        expanded_call e = {ctx, q, kv, seqs, t0s, idx, kv0, p_off, n_idx, c, acts, 0};
        lc_team_run(expanded_heads, &e);
        if (atomic_load(&e.fail)) s = lc_error(LC_ERR_NOMEM, "out of memory for attention scores");
    }
    if (!acts) free(kv);
    free(kv0);
    return s;
}

/* Weight-absorbed attention of one head for one query at position n - 1: q_lat = W_kb_h^T q_nope,
 * score(u) = q_lat . latent(u) + q_rope . k_rope(u), ctx_lat = sum p(u) latent(u), out_h = W_vb_h
 * ctx_lat (over the cached rows: one transposed product). Positions before n - 1 come from the
 * cache, position n - 1 from lat_cur / kr_cur (the fused decode step attends to its own token
 * before the cache row is written). Never expands per-head K/V. Scratch: q_lat and
 * ctx_lat [kvr], scores [n]. */
static void absorbed_head(float *out_h, const float *qh, const float *cache_latent, const float *cache_rope,
                          const float *lat_cur, const float *kr_cur, int64_t n, int64_t h, const lc_mla_weights *w,
                          const lc_config *c, float *q_lat, float *ctx_lat, float *scores) {
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, kvr = c->kv_lora_rank;
    const int64_t dkv = dn + dv, nc = n - 1; /* cached positions */
    const float scale = 1.0f / sqrtf((float)(dn + dr));
    lc_k.matvec_t(q_lat, qh, &w->kv_b_proj, h * dkv, dn);
    for (int64_t u = 0; u < n; u++) {
        const float *lat = u < nc ? cache_latent + u * kvr : lat_cur, *kr = u < nc ? cache_rope + u * dr : kr_cur;
        scores[u] = (lc_dot(q_lat, lat, kvr) + lc_dot(qh + dn, kr, dr)) * scale;
    }
    lc_softmax(scores, n); /* causal: only u <= n - 1 */
    const lc_mat cached = {.data = (const uint8_t *)cache_latent, .dtype = LC_DT_F32, .rows = nc, .cols = kvr};
    if (nc) lc_k.matvec_t(ctx_lat, scores, &cached, 0, nc); /* sum over u in order, then the new token */
    else memset(ctx_lat, 0, (size_t)kvr * sizeof *ctx_lat);
    lc_axpy(ctx_lat, scores[nc], lat_cur, kvr);
    lc_k.matmul(out_h, dv, ctx_lat, kvr, &w->kv_b_proj, h * dkv + dn, dv, 1);
}

/* attend_absorbed's (token, head) pairs, shared out by the team, with scratch per thread. */
typedef struct {
    float *ctx;
    const float *q, *cache_latent, *cache_rope;
    const lc_mla_weights *w;
    const lc_config *c;
    int64_t T, p0;
    _Atomic int fail;
} absorbed_call;

static void absorbed_heads(void *arg) {
    absorbed_call *a = arg;
    const lc_config *c = a->c;
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dv = c->v_head_dim, kvr = c->kv_lora_rank, dq = dn + dr, p0 = a->p0;
    float *scores = malloc((size_t)(p0 + a->T) * sizeof *scores);
    float *q_lat = malloc((size_t)kvr * sizeof *q_lat), *ctx_lat = malloc((size_t)kvr * sizeof *ctx_lat);
    const int ok = scores && q_lat && ctx_lat;
    if (!ok) atomic_store(&a->fail, 1);
#pragma omp for collapse(2) schedule(static) nowait
    for (int64_t t = 0; t < a->T; t++)
        for (int64_t h = 0; h < nh; h++) {
            const int64_t n = p0 + t + 1;
            if (ok)
                absorbed_head(a->ctx + (t * nh + h) * dv, a->q + (t * nh + h) * dq, a->cache_latent, a->cache_rope,
                              a->cache_latent + (n - 1) * kvr, a->cache_rope + (n - 1) * dr, n, h, a->w, c, q_lat, ctx_lat,
                              scores);
        }
    free(scores);
    free(q_lat);
    free(ctx_lat);
}

/* Absorbed attention for T queries at positions p0.. whose latents and keys are in the cache. */
static lc_status attend_absorbed(float *ctx, const float *q, const float *cache_latent, const float *cache_rope,
                                 const lc_mla_weights *w, const lc_config *c, int64_t T, int64_t p0) {
    absorbed_call a = {ctx, q, cache_latent, cache_rope, w, c, T, p0, 0};
    lc_team_run(absorbed_heads, &a);
    return atomic_load(&a.fail) ? lc_error(LC_ERR_NOMEM, "out of memory for attention scratch") : LC_OK;
}

/* One decode step of one sequence (T = 1, absorbed) as one parallel region with three barriers
 * instead of six regions (a region costs this machine 2-4 us; the step's products are
 * 0.03-1 MB): (1) the row-kernel work items of q_a and kv_a; (2) each thread norms q_a's output
 * itself (the same bits in every thread), and the new token's latent and roped key for itself
 * (the first one also appends them to the cache), then the work items of q_b, each thread's
 * items reading its own normed copy; (3) whole heads: the head's scale and RoPE, its absorbed
 * attention; (4) the work items of o_proj. q_b has its own phase so its rows stream side by
 * side (four streams per core) rather than per head (short single streams: 73 KB a head).
 * Each phase's items are shared out with stealing (lc_shares_run). The same operations in the
 * same order as the general path below: the same bits. */
typedef struct {
    const mla_seq *sq;
    const lc_mla_weights *w;
    const lc_config *c;
    float *qa, *ckv, *q, *ctx; /* shared: [qr], [kvr + dr], [nh * dq], [nh * dv] */
    const float *cs;           /* this position's RoPE coefficients [dr]: the pass's row, or made here */
    float *scratch;            /* per thread: per_thread floats */
    int64_t per_thread;
    lc_matmul_job qkv_a[2], q_b, o; /* q_b: its x is each thread's own normed copy */
    lc_row_plan plan_qkv_a, plan_q_b, plan_o;
    lc_share *share[4];        /* each phase's items, threads shares each */
    lc_team_slot *team;        /* [threads]: the barrier between the phases */
    int threads;
} mla_step;

/* This thread's scratch: q_a normed, the new latent and key, then the head's. */
typedef struct {
    float *qn, *lat, *kr, *q_lat, *ctx_lat, *scores;
} mla_scratch;

static mla_scratch mla_step_scratch(const mla_step *d) {
    const lc_config *c = d->c;
    const int64_t qr = c->q_lora_rank, kvr = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    mla_scratch s;
    s.qn = d->scratch + lc_thread_num() * d->per_thread;
    s.lat = s.qn + qr;
    s.kr = s.lat + kvr;
    s.q_lat = s.kr + dr;
    s.ctx_lat = s.q_lat + kvr;
    s.scores = s.ctx_lat + kvr;
    return s;
}

/* Phase 3 item: head h of q (scaled and roped here, by the one thread that owns the head),
 * with this thread's copy of the new latent and key. */
static void mla_step_head(int64_t h, void *arg) {
    const mla_step *d = arg;
    const lc_config *c = d->c;
    const int64_t H = c->hidden_size, qr = c->q_lora_rank, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim;
    const int64_t dq = dn + dr, dv = c->v_head_dim, p0 = d->sq->p0;
    const float sq = c->mla_scale_q_lora ? sqrtf((float)H / (float)qr) : 1.0f;
    const mla_scratch s = mla_step_scratch(d);
    float *qh = d->q + h * dq;
    for (int64_t i = 0; i < dq; i++) qh[i] *= sq;
    lc_rope_apply(qh + dn, d->cs, dr);
    absorbed_head(d->ctx + h * dv, qh, d->sq->latent, d->sq->rope, s.lat, s.kr, p0 + 1, h, d->w, c, s.q_lat, s.ctx_lat,
                  s.scores);
}

static void mla_decode_part(void *arg) {
    mla_step *d = arg;
    const lc_config *c = d->c;
    const lc_mla_weights *w = d->w;
    const int64_t H = c->hidden_size, qr = c->q_lora_rank, kvr = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    const int64_t p0 = d->sq->p0;
    const float skv = c->mla_scale_kv_lora ? sqrtf((float)H / (float)kvr) : 1.0f;
    const int id = lc_thread_num(), nt = lc_num_threads();
    lc_shares_run(d->share[0], d->threads, id, lc_row_plan_item, &d->plan_qkv_a);
    lc_row_plan_barrier(d->team, id, nt, &d->plan_q_b, d->share[1]);
    const mla_scratch s = mla_step_scratch(d);
    lc_rmsnorm(s.qn, d->qa, w->q_a_layernorm, qr, MLA_NORM_EPS);
    lc_rmsnorm(s.lat, d->ckv, w->kv_a_layernorm, kvr, MLA_NORM_EPS);
    for (int64_t j = 0; j < kvr; j++) s.lat[j] *= skv;
    memcpy(s.kr, d->ckv + kvr, (size_t)dr * sizeof *s.kr);
    lc_rope_apply(s.kr, d->cs, dr);
    if (id == 0) { /* no one reads row p0 of the cache in this step: each has its own copy */
        memcpy(d->sq->latent + p0 * kvr, s.lat, (size_t)kvr * sizeof *s.lat);
        memcpy(d->sq->rope + p0 * dr, s.kr, (size_t)dr * sizeof *s.kr);
    }
    lc_matmul_job q_b = d->q_b; /* this thread's items of q_b read its own normed copy */
    lc_row_plan plan_q_b = d->plan_q_b;
    q_b.x = s.qn;
    plan_q_b.jobs = &q_b;
    lc_shares_run(d->share[1], d->threads, id, lc_row_plan_item, &plan_q_b);
    lc_team_barrier(d->team, id, nt);
    lc_shares_run(d->share[2], d->threads, id, mla_step_head, d);
    lc_row_plan_barrier(d->team, id, nt, &d->plan_o, d->share[3]);
    lc_shares_run(d->share[3], d->threads, id, lc_row_plan_item, &d->plan_o);
}

/* Runs the step into out; 0 when it does not apply (this kernel level has no row kernel for
 * these weights, or no memory for its buffers): then the general path does the step. */
static int mla_decode_step(float *out, const float *x, const mla_seq *sq, const lc_mla_weights *w, const lc_config *c) {
    const int64_t nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    const int64_t dq = c->qk_nope_head_dim + c->qk_rope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int threads = lc_in_parallel() ? 1 : lc_max_threads();
    mla_step d = {.sq = sq, .w = w, .c = c, .threads = threads,
                  .per_thread = (qr + kvr + dr + 2 * kvr + sq->p0 + 1 + 15) / 16 * 16};
    const int64_t shared = qr + kvr + dr + nh * dq + nh * dv + dr;
    const lc_scratch_mark mark = lc_scratch_mark_get();
    float *buf = lc_scratch_alloc((size_t)(shared + threads * d.per_thread) * sizeof *buf, "MLA decode step");
    lc_share *shares = lc_shares_alloc(4, threads, &d.team, "MLA decode shares");
    int planned = 0;
    if (buf && shares) {
        d.qa = buf;
        d.ckv = d.qa + qr;
        d.q = d.ckv + kvr + dr;
        d.ctx = d.q + nh * dq;
        float *cs = d.ctx + nh * dv;
        d.cs = sq->rope_cs;
        if (!d.cs) { /* no row from the pass (MTP decode): made once here for every thread */
            lc_rope_coeffs(cs, dr, sq->p0, c->rope_theta);
            d.cs = cs;
        }
        d.scratch = cs + dr;
        d.qkv_a[0] = (lc_matmul_job){d.qa, x, &w->q_a_proj, 1};
        d.qkv_a[1] = (lc_matmul_job){d.ckv, x, &w->kv_a_proj_with_mqa, 1};
        d.q_b = (lc_matmul_job){d.q, NULL, &w->q_b_proj, 1};
        d.o = (lc_matmul_job){out, d.ctx, &w->o_proj, 1};
        planned = lc_row_plan_make(&d.plan_qkv_a, d.qkv_a, 2) && lc_row_plan_make(&d.plan_q_b, &d.q_b, 1) &&
                  lc_row_plan_make(&d.plan_o, &d.o, 1);
    }
    if (planned) {
        const int64_t items[4] = {d.plan_qkv_a.n_items, d.plan_q_b.n_items, nh, d.plan_o.n_items};
        for (int p = 0; p < 4; p++) {
            d.share[p] = shares + p * threads;
            lc_shares_init(d.share[p], threads, items[p]);
        }
        lc_team_run(mla_decode_part, &d); /* one thread of one when !par */
    }
    lc_row_plan_free(&d.plan_qkv_a);
    lc_row_plan_free(&d.plan_q_b);
    lc_row_plan_free(&d.plan_o);
    lc_scratch_release(mark);
    return planned;
}

lc_status mla_forward(float *out, const float *x, const mla_seq *seqs, int64_t n_seq, const lc_mla_weights *w,
                      const lc_config *c, mla_acts *acts) {
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr;
    const float sq = c->mla_scale_q_lora ? sqrtf((float)H / (float)qr) : 1.0f;
    const float skv = c->mla_scale_kv_lora ? sqrtf((float)H / (float)kvr) : 1.0f;
    if (!acts && n_seq == 1 && seqs[0].T == 1 && seqs[0].absorbed && mla_decode_step(out, x, &seqs[0], w, c)) return LC_OK;
    int64_t T = 0;
    for (int64_t i = 0; i < n_seq; i++) T += seqs[i].T;
    for (int64_t i = 0, t0 = 0; i < n_seq && acts; t0 += seqs[i].T, i++)
        if (seqs[i].p0 != 0 || seqs[i].absorbed || seqs[i].latent != acts->lat + t0 * kvr || seqs[i].rope != acts->kpe + t0 * dr)
            return lc_error(LC_ERR_ARG, "mla_forward: training runs sequences expanded, from position 0, cached in acts");
    float *qa = acts ? acts->qa : lc_malloc((size_t)(T * qr) * sizeof(float), "MLA q_a");
    float *qn = acts ? acts->qn : qa; /* inference normalises in place */
    float *q = acts ? acts->q : lc_malloc((size_t)(T * nh * dq) * sizeof(float), "MLA q");
    float *ckv = acts ? acts->ckv : lc_malloc((size_t)(T * (kvr + dr)) * sizeof(float), "MLA kv_a");
    float *ctx = acts ? acts->ctx : lc_malloc((size_t)(T * nh * dv) * sizeof(float), "MLA context");
    lc_status s = (qa && q && ckv && ctx) ? LC_OK : LC_ERR_NOMEM;
    if (!s) {
        /* projections for all rows of all sequences at once */
        const lc_matmul_job a[2] = {{qa, x, &w->q_a_proj, T}, {ckv, x, &w->kv_a_proj_with_mqa, T}};
        lc_matmul_many(a, 2);
        rmsnorm_rows(qn, qa, w->q_a_layernorm, T, qr, MLA_NORM_EPS);
        lc_matmul(q, qn, &w->q_b_proj, T);
        LC_FOR(T * nh * dq > 65536 && !lc_in_parallel(), t, T, {
            float *qt = q + t * nh * dq;
            for (int64_t i = 0; i < nh * dq; i++) qt[i] *= sq;
        });
    }
    /* then each sequence: rope at its positions, its cache rows */
    int64_t *t0s = s ? NULL : lc_malloc((size_t)(2 * n_seq) * sizeof *t0s, "MLA sequences");
    int64_t *expanded = t0s ? t0s + n_seq : NULL, n_exp = 0;
    if (!s && !t0s) s = LC_ERR_NOMEM;
    for (int64_t i = 0, t0 = 0; i < n_seq && !s; t0 += seqs[i].T, i++) {
        const mla_seq *sq_ = &seqs[i];
        float *qi = q + t0 * nh * dq;
        t0s[i] = t0;
        if (!sq_->absorbed) expanded[n_exp++] = i;
        LC_FOR(sq_->T * nh * dr > 16384 && !lc_in_parallel(), t, sq_->T, {
            float cs_row[dr > 0 ? dr : 1]; /* this position's rotation, shared by every head and the key */
            const float *cs = sq_->rope_cs ? sq_->rope_cs + t * dr : cs_row;
            if (cs == cs_row) lc_rope_coeffs(cs_row, dr, sq_->p0 + t, c->rope_theta);
            for (int64_t h = 0; h < nh; h++) lc_rope_apply(qi + (t * nh + h) * dq + dn, cs, dr);
            float *lat = sq_->latent + (sq_->p0 + t) * kvr, *kr = sq_->rope + (sq_->p0 + t) * dr;
            const float *src = ckv + (t0 + t) * (kvr + dr);
            lc_rmsnorm(lat, src, w->kv_a_layernorm, kvr, MLA_NORM_EPS);
            for (int64_t j = 0; j < kvr; j++) lat[j] *= skv;
            memcpy(kr, src + kvr, (size_t)dr * sizeof *kr);
            lc_rope_apply(kr, cs, dr);
        });
    }
    /* attention over each one's cache: prompts expanded (all together), decode steps absorbed */
    if (!s && n_exp) s = attend_expanded(ctx, q, seqs, t0s, expanded, n_exp, w, c, acts);
    for (int64_t i = 0; i < n_seq && !s; i++)
        if (seqs[i].absorbed)
            s = attend_absorbed(ctx + t0s[i] * nh * dv, q + t0s[i] * nh * dq, seqs[i].latent, seqs[i].rope, w, c,
                                seqs[i].T, seqs[i].p0);
    free(t0s);
    if (!s) lc_matmul(out, ctx, &w->o_proj, T);
    if (!acts) {
        free(qa);
        free(q);
        free(ckv);
        free(ctx);
    }
    return s;
}

/* Where each buffer of an mla_acts starts (in floats, in the order of the struct) for sequences
 * of lengths seq_T; returns the floats in all. */
enum { MLA_ACTS_BUFFERS = 9 };
static int64_t mla_acts_plan(int64_t off[MLA_ACTS_BUFFERS], const lc_config *c, const int64_t *seq_T, int64_t n_seq) {
    const int64_t nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    int64_t T = 0, pp = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        T += seq_T[i];
        pp += nh * seq_T[i] * seq_T[i];
    }
    /* qa, qn, q, ckv, lat, kpe, kv, p, ctx */
    const int64_t size[MLA_ACTS_BUFFERS] = {T * qr, T * qr, T * nh * (dn + dr), T * (kvr + dr), T * kvr, T * dr,
                                            T * nh * (dn + dv), pp, T * nh * dv};
    int64_t total = 0;
    for (int i = 0; i < MLA_ACTS_BUFFERS; i++) {
        off[i] = total;
        total += size[i];
    }
    return total;
}

int64_t mla_acts_floats(const lc_config *c, const int64_t *seq_T, int64_t n_seq) {
    int64_t off[MLA_ACTS_BUFFERS];
    return mla_acts_plan(off, c, seq_T, n_seq);
}

float *mla_acts_carve(mla_acts *a, float *p, const lc_config *c, const int64_t *seq_T, int64_t n_seq) {
    int64_t off[MLA_ACTS_BUFFERS];
    const int64_t total = mla_acts_plan(off, c, seq_T, n_seq);
    *a = (mla_acts){.qa = p + off[0], .qn = p + off[1], .q = p + off[2], .ckv = p + off[3], .lat = p + off[4],
                    .kpe = p + off[5], .kv = p + off[6], .p = p + off[7], .ctx = p + off[8]};
    return p + total;
}

/* Attention backward of one head of one sequence (T_i rows from batch row t0, causal from 0),
 * as products: dP = dO V^T; dS = P * (dP - rowsum(P * dP)) * scale; dV = P^T dO; dQ = dS K;
 * dK = dS^T Q. Probabilities above the diagonal are 0, so their dS is 0. Writes this head's
 * dq, dk (no-rope part of dkv) and dv, and its share of the shared roped key's gradient into
 * dkpe (the head's own buffer, rows t0..). ds: scratch [T_i, T_i]. */
static void attention_backward_head(float *dq_, float *dkv_, float *dkpe, float *ds, const float *dctx, const mla_acts *a,
                                    const float *p, int64_t t0, int64_t T, int64_t h, const lc_config *c) {
    const int64_t nh = c->num_attention_heads, dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim;
    const int64_t dq = dn + dr, dkv = dn + dv;
    const float scale = 1.0f / sqrtf((float)dq);
    const float *doh = dctx + (t0 * nh + h) * dv, *vh = a->kv + (t0 * nh + h) * dkv + dn, *kh = a->kv + (t0 * nh + h) * dkv;
    const float *qh = a->q + (t0 * nh + h) * dq, *kpe = a->kpe + t0 * dr;
    float *dqh = dq_ + (t0 * nh + h) * dq, *dkh = dkv_ + (t0 * nh + h) * dkv;
    /* ds[t, u] = dO[t] . V[u] (each product with its lanes along the output's contiguous index
     * where the operands allow it cheaply) */
    lc_k.sgemm(ds, 1, T, 0, doh, nh * dv, 1, vh, nh * dkv, 1, T, T, dv);
    for (int64_t t = 0; t < T; t++) { /* softmax backward on row t (u <= t) */
        const float *pt = p + t * T;
        float *st = ds + t * T;
        double sum = 0;
        for (int64_t u = 0; u <= t; u++) sum += (double)pt[u] * st[u];
        for (int64_t u = 0; u <= t; u++) st[u] = pt[u] * (st[u] - (float)sum) * scale;
        for (int64_t u = t + 1; u < T; u++) st[u] = 0;
    }
    /* dV[u] = sum_t P[t, u] dO[t] */
    lc_k.sgemm(dkh + dn, nh * dkv, 1, 0, doh, 1, nh * dv, p, 1, T, dv, T, T);
    /* dQ[t] = sum_u dS[t, u] [K_nope(u), k_rope(u)] */
    lc_k.sgemm(dqh, 1, nh * dq, 0, ds, T, 1, kh, 1, nh * dkv, T, dn, T);
    lc_k.sgemm(dqh + dn, 1, nh * dq, 0, ds, T, 1, kpe, 1, dr, T, dr, T);
    /* dK_nope[u] = sum_t dS[t, u] Q_nope[t]; the roped key's share likewise */
    lc_k.sgemm(dkh, nh * dkv, 1, 0, qh, 1, nh * dq, ds, 1, T, dn, T, T);
    lc_k.sgemm(dkpe, dr, 1, 0, qh + dn, 1, nh * dq, ds, 1, T, dr, T, T);
}

/* Backward of mla_forward, in reverse order of its steps. */
lc_status mla_backward(float *dx, lc_mla_weights *g, const float *dout, const float *x, const int64_t *seq_T,
                       int64_t n_seq, const mla_acts *a, const lc_mla_weights *w, const lc_config *c) {
    const int64_t H = c->hidden_size, nh = c->num_attention_heads, qr = c->q_lora_rank, kvr = c->kv_lora_rank;
    const int64_t dn = c->qk_nope_head_dim, dr = c->qk_rope_head_dim, dv = c->v_head_dim, dq = dn + dr, dkv = dn + dv;
    const float sq = c->mla_scale_q_lora ? sqrtf((float)H / (float)qr) : 1.0f;
    const float skv = c->mla_scale_kv_lora ? sqrtf((float)H / (float)kvr) : 1.0f;
    int64_t T = 0, T_max = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        T += seq_T[i];
        T_max = LC_MAX(T_max, seq_T[i]);
    }
    float *dctx = calloc((size_t)(T * nh * dv), sizeof(float)), *dq_ = calloc((size_t)(T * nh * dq), sizeof(float));
    float *dkv_ = calloc((size_t)(T * nh * dkv), sizeof(float)), *dkpe_h = calloc((size_t)(nh * T * dr), sizeof(float));
    float *dlat = calloc((size_t)(T * kvr), sizeof(float)), *dckv = calloc((size_t)(T * (kvr + dr)), sizeof(float));
    float *dqn = calloc((size_t)(T * qr), sizeof(float)), *dqa = calloc((size_t)(T * qr), sizeof(float));
    int64_t *t0s = malloc((size_t)n_seq * 2 * sizeof(int64_t));
    if (!dctx || !dq_ || !dkv_ || !dkpe_h || !dlat || !dckv || !dqn || !dqa || !t0s) {
        free(dctx); free(dq_); free(dkv_); free(dkpe_h); free(dlat); free(dckv); free(dqn); free(dqa); free(t0s);
        return lc_error(LC_ERR_NOMEM, "out of memory for the MLA backward pass");
    }
    int64_t *p_off = t0s + n_seq;
    for (int64_t i = 0, t0 = 0, po = 0; i < n_seq; t0 += seq_T[i], po += nh * seq_T[i] * seq_T[i], i++) {
        t0s[i] = t0;
        p_off[i] = po;
    }
    /* out = o_proj @ ctx */
    lc_matmul_backward(dctx, (float *)(uintptr_t)g->o_proj.data, dout, a->ctx, &w->o_proj, T);
    /* attention: every (sequence, head) on its own rows; each head adds its shared-key
     * gradient into its own buffer, summed over heads in order below */
    int fail = 0;
#pragma omp parallel if (n_seq * nh > 1)
    {
        float *ds = malloc((size_t)(T_max * T_max) * sizeof *ds);
        if (!ds) fail = 1;
#pragma omp for schedule(dynamic, 1)
        for (int64_t j = 0; j < n_seq * nh; j++) {
            const int64_t i = j / nh, h = j % nh;
            if (ds)
                attention_backward_head(dq_, dkv_, dkpe_h + (h * T + t0s[i]) * dr, ds, dctx, a,
                                        a->p + p_off[i] + h * seq_T[i] * seq_T[i], t0s[i], seq_T[i], h, c);
        }
        free(ds);
    }
    if (fail) {
        free(dctx); free(dq_); free(dkv_); free(dkpe_h); free(dlat); free(dckv); free(dqn); free(dqa); free(t0s);
        return lc_error(LC_ERR_NOMEM, "out of memory for the attention backward pass");
    }
    /* kv = kv_b_proj @ lat */
    lc_matmul_backward(dlat, (float *)(uintptr_t)g->kv_b_proj.data, dkv_, a->lat, &w->kv_b_proj, T);
    for (int64_t i = 0; i < n_seq; i++)
        for (int64_t t = 0; t < seq_T[i]; t++) {
            const int64_t r = t0s[i] + t;
            /* lat = rmsnorm(ckv[:kvr]) * skv ; kpe = rope(ckv[kvr:]) */
            for (int64_t k = 0; k < kvr; k++) dlat[r * kvr + k] *= skv;
            lc_rmsnorm_backward(dckv + r * (kvr + dr), (float *)(uintptr_t)g->kv_a_layernorm, dlat + r * kvr,
                                a->ckv + r * (kvr + dr), w->kv_a_layernorm, kvr, MLA_NORM_EPS);
            float *dk = dckv + r * (kvr + dr) + kvr;
            for (int64_t h = 0; h < nh; h++)
                for (int64_t k = 0; k < dr; k++) dk[k] += dkpe_h[(h * T + r) * dr + k];
            float cs_row[dr > 0 ? dr : 1];
            const float *cs = a->rope_cs ? a->rope_cs + t * dr : cs_row;
            if (cs == cs_row) lc_rope_coeffs(cs_row, dr, t, c->rope_theta);
            lc_rope_backward_apply(dk, cs, dr);
            /* q: rope on the last dr of each head, then the scale */
            for (int64_t h = 0; h < nh; h++) {
                float *d = dq_ + (r * nh + h) * dq;
                lc_rope_backward_apply(d + dn, cs, dr);
                for (int64_t k = 0; k < dq; k++) d[k] *= sq;
            }
        }
    lc_matmul_backward(dx, (float *)(uintptr_t)g->kv_a_proj_with_mqa.data, dckv, x, &w->kv_a_proj_with_mqa, T);
    lc_matmul_backward(dqn, (float *)(uintptr_t)g->q_b_proj.data, dq_, a->qn, &w->q_b_proj, T);
    lc_rmsnorm_backward_rows(dqa, (float *)(uintptr_t)g->q_a_layernorm, dqn, a->qa, w->q_a_layernorm, T, qr, MLA_NORM_EPS);
    lc_matmul_backward(dx, (float *)(uintptr_t)g->q_a_proj.data, dqa, x, &w->q_a_proj, T);
    free(dctx); free(dq_); free(dkv_); free(dkpe_h); free(dlat); free(dckv); free(dqn); free(dqa); free(t0s);
    return LC_OK;
}
