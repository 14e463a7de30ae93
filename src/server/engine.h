/* engine.h — continuous batching over one model. Requests wait in a bounded queue, then run
 * in one of n_slots slots (each a session, i.e. its own KV cache). Every engine step forwards
 * one prompt chunk of one slot, then the next token of every decoding slot in a single
 * lc_forward_batch call, so requests join and leave between steps. A new request takes the
 * free slot whose cache shares the longest token prefix with its prompt (only the rest is
 * prefilled). Knows nothing of HTTP: the server submits requests and reads their text. */
#ifndef LC_ENGINE_H
#define LC_ENGINE_H

#include "../generate/generate.h"

#include <pthread.h>
#include <stdatomic.h>

typedef struct lc_engine lc_engine;

typedef struct lc_request {
    /* set by the submitter before lc_engine_submit (owned by the request) */
    int32_t *prompt;
    int64_t n_prompt;
    lc_gen_options gen;  /* on_text/user/cancel are the engine's; stop strings owned below */
    char **stops;
    /* progress, read under lc_engine_lock */
    char *text;          /* the generated text streamed so far */
    size_t len, cap;
    int done;
    lc_status status;    /* when done: LC_OK, or why it failed */
    char error[256];
    lc_gen_result result;/* when done and status == LC_OK */
    int64_t n_cached;    /* prompt tokens found in the slot's cache (not prefilled) */
    double t_admit, t_first_token, t_done; /* lc_time_sec() when it got a slot, its first text, its end */
    /* private */
    atomic_int cancel;   /* the client went away */
    int refs;
    pthread_cond_t cv;
    struct lc_request *next;
} lc_request;

typedef struct {
    int64_t queued, busy_slots, n_slots;
    int64_t kv_tokens, kv_capacity;  /* cache rows in use (all slots) / their sum */
    int64_t forward_tokens;          /* tokens through the model since start */
    int64_t ffn_expert_slots;        /* routed slots that went to FFN experts, summed over layers */
    int64_t num_layers, moe_topk;
    int64_t steps;                   /* engine steps (batched forwards) */
} lc_engine_stats;

/* Starts the engine thread. max_queue: requests that may wait for a slot. */
lc_status lc_engine_new(lc_engine **e, const lc_model *m, const lc_tokenizer *t, int n_slots, int64_t n_ctx,
                        int max_queue);
/* Cancels what runs, fails what waits (they complete with LC_ERR_ARG "shutting down") and
 * stops the engine thread; later submits get 2. Requests stay readable until released. */
void lc_engine_stop(lc_engine *e);
void lc_engine_free(lc_engine *e); /* stops first if needed */

/* A new request (refs = 1, the submitter's). */
lc_request *lc_request_new(void);
/* Queues r (the engine takes a reference). Returns 0, or 1 when the queue is full, 2 when the
 * engine is shutting down (r is then not queued). */
int lc_engine_submit(lc_engine *e, lc_request *r);
/* Marks r as abandoned by its client: it stops at the next step and its slot is freed. */
void lc_request_cancel(lc_request *r);
/* Drops the caller's reference (the last one frees r). */
void lc_request_release(lc_engine *e, lc_request *r);

void lc_engine_lock(lc_engine *e);
void lc_engine_unlock(lc_engine *e);
/* With the lock held: waits until r has more than `have` bytes of text or is done, or
 * `seconds` pass. Returns 1 when there is something new. */
int lc_request_wait(lc_engine *e, lc_request *r, size_t have, double seconds);

void lc_engine_get_stats(lc_engine *e, lc_engine_stats *s);
int64_t lc_engine_ctx(const lc_engine *e);

#endif
