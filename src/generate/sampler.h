/* sampler.h — turning logits into the next token: greedy, temperature, top-k, top-p, min-p,
 * repetition / presence / frequency penalties, seeded and reproducible. Knows nothing of
 * models or tokenizers. */
#ifndef LC_SAMPLER_H
#define LC_SAMPLER_H

#include "../base/base.h"

typedef struct {
    float temperature;        /* 0: greedy (argmax) */
    int32_t top_k;            /* 0: off */
    float top_p;              /* 1: off */
    float min_p;              /* 0: off; keep tokens with p >= min_p * p_max */
    float repetition_penalty; /* 1: off; HF rule: logit > 0 divided, < 0 multiplied */
    float presence_penalty;   /* 0: off; OpenAI rule: minus this once per seen token */
    float frequency_penalty;  /* 0: off; minus this times the token's count */
    int32_t penalty_last_n;   /* tokens of history the penalties look at; 0 = all */
    uint64_t seed;
} lc_sampler_params;

lc_sampler_params lc_sampler_defaults(void); /* temp 0.8, top_p 0.95, penalties off, last_n 64, seed 0 */

typedef struct {
    lc_sampler_params p;
    lc_rng rng;
    int64_t n_vocab;
    float *prob;     /* [n_vocab] scratch */
    struct lc_cand { float p; int32_t id; } *cand; /* [n_vocab] scratch */
    int32_t *count;  /* [n_vocab] penalty counts */
} lc_sampler;

lc_status lc_sampler_init(lc_sampler *s, const lc_sampler_params *p, int64_t n_vocab);
void lc_sampler_free(lc_sampler *s);
/* Picks the next token from logits[n_vocab] (modified in place by penalties) given the
 * tokens so far (history may be NULL). */
int32_t lc_sampler_sample(lc_sampler *s, float *logits, const int32_t *history, int64_t n_history);

#endif
