/* engine.c — the serving loop (see engine.h): a queue, slots with their sessions, and one
 * thread that admits requests, prefills one chunk, then decodes all slots in one batch. */
#define _POSIX_C_SOURCE 200809L
#include "engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFILL_CHUNK 256

typedef struct {
    struct lc_engine *e;
    lc_session *s;
    int32_t *ids;        /* the tokens whose K/V sit in cache rows 0..n_ids */
    int64_t n_ids;
    lc_request *req;     /* NULL: free */
    lc_gen *gen;
    int64_t prefilled;   /* prompt tokens in the cache */
    int decoding;
    int32_t next;        /* the token to forward next (decoding) */
    volatile int cancel; /* req->cancel as the engine thread last saw it */
    uint64_t last_used;
} slot;

struct lc_engine {
    const lc_model *m;
    const lc_tokenizer *t;
    int n_slots, max_queue;
    int64_t n_ctx;
    slot *slots;
    float *logits;            /* [n_slots, V] */
    lc_session **batch_s;     /* [n_slots] decode batch */
    int32_t *batch_tok;
    int64_t *batch_n;
    slot **batch_slot;
    pthread_mutex_t mu;
    pthread_cond_t work;
    pthread_t thread;
    int started, stopping;
    lc_request *q_head, *q_tail;
    int n_busy;               /* slots with a request (under mu) */
    int prefill_rr;           /* round robin over prefilling slots */
    uint64_t tick;
    lc_engine_stats st;       /* counters, under mu */
};

void lc_engine_lock(lc_engine *e) { pthread_mutex_lock(&e->mu); }
void lc_engine_unlock(lc_engine *e) { pthread_mutex_unlock(&e->mu); }
int64_t lc_engine_ctx(const lc_engine *e) { return e->n_ctx; }

lc_request *lc_request_new(void) {
    lc_request *r = lc_calloc(1, sizeof *r, "request");
    if (!r) return NULL;
    r->refs = 1;
    atomic_init(&r->cancel, 0);
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &a);
    pthread_condattr_destroy(&a);
    return r;
}

static void request_free(lc_request *r) {
    free(r->prompt);
    for (int i = 0; r->stops && i < r->gen.n_stop; i++) free(r->stops[i]);
    free(r->stops);
    free(r->text);
    lc_gen_result_free(&r->result);
    pthread_cond_destroy(&r->cv);
    free(r);
}

/* Drops one reference; the caller holds e->mu. Returns 1 when r must be freed (after unlocking). */
static int unref_locked(lc_request *r) { return --r->refs == 0; }

void lc_request_release(lc_engine *e, lc_request *r) {
    if (!r) return;
    pthread_mutex_lock(&e->mu);
    int last = unref_locked(r);
    pthread_mutex_unlock(&e->mu);
    if (last) request_free(r);
}

void lc_request_cancel(lc_request *r) { atomic_store(&r->cancel, 1); }

int lc_request_wait(lc_engine *e, lc_request *r, size_t have, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    while (!r->done && r->len <= have)
        if (pthread_cond_timedwait(&r->cv, &e->mu, &ts) == ETIMEDOUT) break;
    return r->done || r->len > have;
}

/* The generation loop's streaming callback (engine thread, lock not held). */
static void publish_text(void *user, const char *text, size_t len) {
    slot *sl = user;
    lc_request *r = sl->req;
    pthread_mutex_lock(&sl->e->mu);
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 256;
        while (cap < r->len + len + 1) cap *= 2;
        char *p = realloc(r->text, cap);
        if (p) {
            r->text = p;
            r->cap = cap;
        }
    }
    if (r->len + len + 1 <= r->cap) { /* out of memory drops the piece; the final text is in result */
        memcpy(r->text + r->len, text, len);
        r->len += len;
        r->text[r->len] = 0;
    }
    if (!r->t_first_token) r->t_first_token = lc_time_sec();
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&sl->e->mu);
}

/* Ends the slot's request with the generation result, or with the error st. */
static void finish(lc_engine *e, slot *sl, lc_status st) {
    lc_request *r = sl->req;
    lc_gen_result res = {0};
    char msg[256] = "";
    if (st) snprintf(msg, sizeof msg, "%s", lc_last_error());
    if (sl->gen) {
        st = lc_gen_end(sl->gen, st, &res);
        if (st && !msg[0]) snprintf(msg, sizeof msg, "%s", lc_last_error());
    }
    if (sl->cancel) res.stop = LC_STOP_CANCELLED;
    sl->gen = NULL;
    sl->decoding = 0;
    sl->last_used = ++e->tick;
    pthread_mutex_lock(&e->mu);
    sl->req = NULL;
    e->n_busy--;
    r->result = res;
    r->status = st;
    snprintf(r->error, sizeof r->error, "%s", msg);
    r->done = 1;
    r->t_done = lc_time_sec();
    if (!r->t_first_token) r->t_first_token = r->t_done;
    pthread_cond_broadcast(&r->cv);
    int last = unref_locked(r);
    pthread_mutex_unlock(&e->mu);
    if (last) request_free(r);
}

/* A request that never reached a slot (shutdown). Lock held. */
static void fail_queued_locked(lc_request *r, const char *why) {
    r->status = LC_ERR_ARG;
    snprintf(r->error, sizeof r->error, "%s", why);
    r->done = 1;
    r->t_done = lc_time_sec();
    pthread_cond_broadcast(&r->cv);
}

/* Puts r into the free slot whose cache shares the longest token prefix with its prompt
 * (least recently used among equals). Lock held. Returns the slot, NULL if none is free. */
static slot *admit_locked(lc_engine *e, lc_request *r) {
    slot *best = NULL;
    int64_t best_k = -1;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (sl->req) continue;
        int64_t k = 0;
        while (k < sl->n_ids && k < r->n_prompt - 1 && sl->ids[k] == r->prompt[k]) k++;
        if (k > best_k || (k == best_k && sl->last_used < best->last_used)) {
            best = sl;
            best_k = k;
        }
    }
    if (!best) return NULL;
    best->req = r;
    e->n_busy++;
    best->n_ids = best_k; /* cache rows past the common prefix are overwritten */
    best->s->pos = best_k;
    best->prefilled = best_k;
    best->decoding = 0;
    r->n_cached = best_k;
    r->t_admit = lc_time_sec();
    return best;
}

static lc_status start_generation(lc_engine *e, slot *sl) {
    lc_request *r = sl->req;
    lc_gen_options o = r->gen;
    o.on_text = publish_text;
    o.user = sl;
    o.cancel = &sl->cancel;
    sl->cancel = 0;
    return lc_gen_begin(&sl->gen, e->t, &e->m->cfg, r->prompt, r->n_prompt, &o);
}

/* The slot's session took tokens[0..n): remember them as cache contents. */
static void note_forwarded(slot *sl, const int32_t *tokens, int64_t n) {
    memcpy(sl->ids + sl->n_ids, tokens, (size_t)n * sizeof *tokens);
    sl->n_ids += n;
}

/* Samples from the slot's logits; either it has a next token to forward or it is finished. */
static void advance(lc_engine *e, slot *sl, float *logits) {
    int done = 1;
    int32_t next = 0;
    lc_status st = lc_gen_step(sl->gen, logits, sl->s->n_ctx - sl->s->pos, &next, &done);
    if (st || done) finish(e, sl, st);
    else {
        sl->decoding = 1;
        sl->next = next;
    }
}

/* One step: cancellations, one prompt chunk, one batched decode. */
static void step(lc_engine *e) {
    const int64_t V = e->m->cfg.vocab_size;
    int64_t fwd_tokens = 0, ffn_slots = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (!sl->req) continue;
        sl->cancel = atomic_load(&sl->req->cancel);
        if (sl->cancel && !sl->decoding) finish(e, sl, LC_OK); /* stop = cancelled */
    }
    /* prefill: one chunk of one slot */
    for (int k = 0; k < e->n_slots; k++) {
        int i = (e->prefill_rr + k) % e->n_slots;
        slot *sl = &e->slots[i];
        if (!sl->req || sl->decoding) continue;
        e->prefill_rr = i + 1;
        lc_request *r = sl->req;
        int64_t n = LC_MIN(PREFILL_CHUNK, r->n_prompt - sl->prefilled), used = 0;
        lc_forward_out fo = {.logits = e->logits + (int64_t)i * V, .logits_last_only = 1, .n_ffn_experts = &used};
        lc_status st = lc_forward(sl->s, r->prompt + sl->prefilled, n, &fo);
        if (st) {
            finish(e, sl, st);
            break;
        }
        note_forwarded(sl, r->prompt + sl->prefilled, n);
        sl->prefilled += n;
        fwd_tokens += n;
        ffn_slots += used;
        if (sl->prefilled == r->n_prompt) advance(e, sl, e->logits + (int64_t)i * V);
        break;
    }
    /* decode: every slot with a token to forward, one batch */
    int64_t nb = 0;
    for (int i = 0; i < e->n_slots; i++) {
        slot *sl = &e->slots[i];
        if (!sl->req || !sl->decoding) continue;
        e->batch_s[nb] = sl->s;
        e->batch_tok[nb] = sl->next;
        e->batch_n[nb] = 1;
        e->batch_slot[nb++] = sl;
    }
    if (nb) {
        int64_t used = 0;
        lc_forward_out fo = {.logits = e->logits, .logits_last_only = 1, .n_ffn_experts = &used};
        lc_status st = lc_forward_batch(e->batch_s, e->batch_tok, e->batch_n, nb, &fo);
        for (int64_t j = 0; j < nb; j++) {
            slot *sl = e->batch_slot[j];
            if (st) finish(e, sl, st);
            else {
                note_forwarded(sl, &e->batch_tok[j], 1);
                advance(e, sl, e->logits + j * V);
            }
        }
        if (!st) {
            fwd_tokens += nb;
            ffn_slots += used;
        }
    }
    int64_t kv = 0;
    for (int i = 0; i < e->n_slots; i++) kv += e->slots[i].s->pos;
    pthread_mutex_lock(&e->mu);
    e->st.forward_tokens += fwd_tokens;
    e->st.ffn_expert_slots += ffn_slots;
    e->st.kv_tokens = kv;
    e->st.steps++;
    pthread_mutex_unlock(&e->mu);
}

static void *engine_main(void *arg) {
    lc_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->stopping && !e->q_head && !e->n_busy) pthread_cond_wait(&e->work, &e->mu);
        if (e->stopping) break;
        while (e->q_head) { /* admit into free slots, in arrival order */
            lc_request *r = e->q_head;
            slot *sl = admit_locked(e, r);
            if (!sl) break;
            e->q_head = r->next;
            if (!e->q_head) e->q_tail = NULL;
            pthread_mutex_unlock(&e->mu);
            lc_status st = start_generation(e, sl);
            if (st) finish(e, sl, st);
            pthread_mutex_lock(&e->mu);
        }
        pthread_mutex_unlock(&e->mu);
        step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* shutdown: running requests end as cancelled, waiting ones fail */
    for (lc_request *r = e->q_head, *nx; r; r = nx) {
        nx = r->next;
        fail_queued_locked(r, "the server is shutting down");
        if (unref_locked(r)) request_free(r);
    }
    e->q_head = e->q_tail = NULL;
    pthread_mutex_unlock(&e->mu);
    for (int i = 0; i < e->n_slots; i++)
        if (e->slots[i].req) {
            e->slots[i].cancel = 1;
            finish(e, &e->slots[i], LC_OK);
        }
    return NULL;
}

int lc_engine_submit(lc_engine *e, lc_request *r) {
    pthread_mutex_lock(&e->mu);
    int n = 0;
    for (lc_request *q = e->q_head; q; q = q->next) n++;
    int free_slots = e->n_slots - e->n_busy;
    int rc = e->stopping ? 2 : (n - free_slots >= e->max_queue ? 1 : 0);
    if (!rc) {
        r->refs++;
        r->next = NULL;
        if (e->q_tail) e->q_tail->next = r;
        else e->q_head = r;
        e->q_tail = r;
        pthread_cond_signal(&e->work);
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

void lc_engine_get_stats(lc_engine *e, lc_engine_stats *s) {
    pthread_mutex_lock(&e->mu);
    *s = e->st;
    s->queued = 0;
    for (lc_request *q = e->q_head; q; q = q->next) s->queued++;
    s->busy_slots = e->n_busy;
    s->n_slots = e->n_slots;
    s->kv_capacity = (int64_t)e->n_slots * e->n_ctx;
    s->num_layers = e->m->cfg.num_layers;
    s->moe_topk = e->m->cfg.moe_topk;
    pthread_mutex_unlock(&e->mu);
}

lc_status lc_engine_new(lc_engine **out, const lc_model *m, const lc_tokenizer *t, int n_slots, int64_t n_ctx,
                        int max_queue) {
    *out = NULL;
    if (n_slots < 1 || n_slots > 1024) return lc_error(LC_ERR_ARG, "engine: %d slots (1..1024)", n_slots);
    lc_engine *e = lc_calloc(1, sizeof *e, "engine");
    if (!e) return LC_ERR_NOMEM;
    e->m = m;
    e->t = t;
    e->n_slots = n_slots;
    e->max_queue = max_queue < 0 ? 0 : max_queue;
    e->slots = lc_calloc((size_t)n_slots, sizeof *e->slots, "engine slots");
    e->logits = lc_malloc((size_t)n_slots * (size_t)m->cfg.vocab_size * sizeof *e->logits, "engine logits");
    e->batch_s = lc_calloc((size_t)n_slots, sizeof *e->batch_s, "engine batch");
    e->batch_tok = lc_calloc((size_t)n_slots, sizeof *e->batch_tok, "engine batch");
    e->batch_n = lc_calloc((size_t)n_slots, sizeof *e->batch_n, "engine batch");
    e->batch_slot = lc_calloc((size_t)n_slots, sizeof *e->batch_slot, "engine batch");
    lc_status st = (e->slots && e->logits && e->batch_s && e->batch_tok && e->batch_n && e->batch_slot) ? LC_OK : LC_ERR_NOMEM;
    for (int i = 0; i < n_slots && !st; i++) {
        slot *sl = &e->slots[i];
        sl->e = e;
        st = lc_session_new(&sl->s, m, n_ctx);
        if (!st && !(sl->ids = lc_malloc((size_t)sl->s->n_ctx * sizeof *sl->ids, "slot tokens"))) st = LC_ERR_NOMEM;
    }
    if (!st) e->n_ctx = e->slots[0].s->n_ctx;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->work, NULL);
    if (!st && pthread_create(&e->thread, NULL, engine_main, e) != 0)
        st = lc_error(LC_ERR_NOMEM, "engine: cannot start its thread");
    if (!st) e->started = 1;
    if (st) {
        lc_engine_free(e);
        return st;
    }
    *out = e;
    return LC_OK;
}

void lc_engine_stop(lc_engine *e) {
    if (!e->started) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->work);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->thread, NULL);
    e->started = 0;
}

void lc_engine_free(lc_engine *e) {
    if (!e) return;
    lc_engine_stop(e);
    for (int i = 0; e->slots && i < e->n_slots; i++) {
        lc_session_free(e->slots[i].s);
        free(e->slots[i].ids);
    }
    free(e->slots);
    free(e->logits);
    free(e->batch_s);
    free(e->batch_tok);
    free(e->batch_n);
    free(e->batch_slot);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->work);
    free(e);
}
