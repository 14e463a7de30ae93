/* generate.h — the generation loop: prefill a prompt into a session, then sample token by
 * token with streaming text output, stop strings, EOS, max tokens and cancellation. Used by
 * `longcat generate`, `longcat chat` and the server. */
#ifndef LC_GENERATE_H
#define LC_GENERATE_H

#include "../model/model.h"
#include "../tokenizer/tokenizer.h"
#include "sampler.h"

typedef enum { LC_STOP_EOS, LC_STOP_MAX_TOKENS, LC_STOP_STRING, LC_STOP_CONTEXT, LC_STOP_CANCELLED } lc_stop_reason;
const char *lc_stop_reason_name(lc_stop_reason r);

typedef struct {
    int64_t max_tokens;            /* <= 0: until the context is full */
    const char *const *stop;       /* stop strings (not included in the output) */
    int n_stop;
    int ignore_eos;
    lc_sampler_params sampling;
    /* streaming: each newly final piece of text (whole UTF-8 characters, stop strings held
     * back until they can no longer match) */
    void (*on_text)(void *user, const char *text, size_t len);
    void *user;
    volatile int *cancel;          /* set non-zero (e.g. from SIGINT) to stop after this token */
} lc_gen_options;

typedef struct {
    char *text;           /* generated text, stop string excluded */
    size_t len;
    int32_t *tokens;      /* generated tokens (EOS excluded) */
    int64_t n_tokens;
    int64_t n_forwarded;  /* how many of them are now in the session's cache */
    int64_t n_prompt;
    double prompt_seconds, gen_seconds;
    lc_stop_reason stop;
} lc_gen_result;

/* Appends prompt[0..n_prompt) (n_prompt >= 1) to the session at s->pos and generates. */
lc_status lc_generate(lc_session *s, const lc_tokenizer *t, const int32_t *prompt, int64_t n_prompt,
                      const lc_gen_options *o, lc_gen_result *r);
void lc_gen_result_free(lc_gen_result *r);

/* The same loop step by step, for callers that run the forward passes themselves (the server
 * batches many generations into one forward). lc_gen_begin sets up sampling for a prompt the
 * caller forwards; then, with the logits after the last forwarded token, lc_gen_step samples,
 * detokenizes, streams (on_text) and checks the stops: *done = 0 asks the caller to forward
 * *next and call again; room is how many tokens the session can still take. lc_gen_end (also
 * after an error st, which it returns) flushes the text, fills r and frees g. */
typedef struct lc_gen lc_gen;
lc_status lc_gen_begin(lc_gen **g, const lc_tokenizer *t, const lc_config *c, const int32_t *prompt, int64_t n_prompt,
                       const lc_gen_options *o);
lc_status lc_gen_step(lc_gen *g, float *logits, int64_t room, int32_t *next, int *done);
lc_status lc_gen_end(lc_gen *g, lc_status st, lc_gen_result *r);

#endif
