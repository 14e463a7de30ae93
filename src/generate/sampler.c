/* sampler.c — penalties, then greedy or temperature sampling restricted by top-k / top-p /
 * min-p, with a private xoshiro stream so a seed reproduces a run exactly. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

lc_sampler_params lc_sampler_defaults(void) {
    lc_sampler_params p = {0};
    p.temperature = 0.8f;
    p.top_p = 0.95f;
    p.repetition_penalty = 1.0f;
    p.penalty_last_n = 64;
    return p;
}

lc_status lc_sampler_init(lc_sampler *s, const lc_sampler_params *p, int64_t n_vocab) {
    memset(s, 0, sizeof *s);
    if (!(p->temperature >= 0) || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p <= 1) ||
        p->top_k < 0 || !(p->repetition_penalty > 0))
        return lc_error(LC_ERR_ARG, "sampler: need temperature >= 0, 0 < top_p <= 1, 0 <= min_p <= 1, top_k >= 0, "
                                    "repetition_penalty > 0");
    s->p = *p;
    s->n_vocab = n_vocab;
    lc_rng_seed(&s->rng, p->seed);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    if (!s->prob || !s->cand || !s->count) {
        lc_sampler_free(s);
        return lc_error(LC_ERR_NOMEM, "out of memory for the sampler");
    }
    return LC_OK;
}

void lc_sampler_free(lc_sampler *s) {
    free(s->prob);
    free(s->cand);
    free(s->count);
    memset(s, 0, sizeof *s);
}

static void apply_penalties(lc_sampler *s, float *logits, const int32_t *hist, int64_t n) {
    const lc_sampler_params *p = &s->p;
    if (!hist || n == 0 || (p->repetition_penalty == 1.0f && p->presence_penalty == 0 && p->frequency_penalty == 0)) return;
    int64_t from = p->penalty_last_n > 0 && n > p->penalty_last_n ? n - p->penalty_last_n : 0;
    for (int64_t i = from; i < n; i++)
        if (hist[i] >= 0 && hist[i] < s->n_vocab) s->count[hist[i]]++;
    for (int64_t i = from; i < n; i++) {
        int32_t t = hist[i];
        if (t < 0 || t >= s->n_vocab || s->count[t] == 0) continue; /* each token once */
        float *l = &logits[t];
        if (p->repetition_penalty != 1.0f) *l = *l > 0 ? *l / p->repetition_penalty : *l * p->repetition_penalty;
        *l -= p->presence_penalty + p->frequency_penalty * (float)s->count[t];
        s->count[t] = 0;
    }
}

/* descending probability, ties by lower id */
static int cmp_cand(const void *a, const void *b) {
    const struct lc_cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

int32_t lc_sampler_sample(lc_sampler *s, float *logits, const int32_t *history, int64_t n_history) {
    const int64_t V = s->n_vocab;
    const lc_sampler_params *p = &s->p;
    apply_penalties(s, logits, history, n_history);
    int32_t best = 0;
    for (int64_t i = 1; i < V; i++)
        if (logits[i] > logits[best]) best = (int32_t)i;
    if (p->temperature == 0) return best;
    /* softmax at temperature */
    double sum = 0;
    for (int64_t i = 0; i < V; i++) {
        s->prob[i] = expf((logits[i] - logits[best]) / p->temperature);
        sum += s->prob[i];
    }
    for (int64_t i = 0; i < V; i++) s->prob[i] = (float)(s->prob[i] / sum);
    /* candidates: keep those above min_p * p_max, sorted descending, then top-k and top-p */
    float floor_p = p->min_p * s->prob[best];
    int64_t n = 0;
    for (int64_t i = 0; i < V; i++)
        if (s->prob[i] >= floor_p && s->prob[i] > 0) s->cand[n++] = (struct lc_cand){s->prob[i], (int32_t)i};
    if (n == 0) return best;
    if (p->top_k > 0 || p->top_p < 1) {
        qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_cand);
        if (p->top_k > 0 && n > p->top_k) n = p->top_k;
        if (p->top_p < 1) {
            double cum = 0;
            int64_t k = 0;
            while (k < n) {
                cum += s->cand[k++].p;
                if (cum >= p->top_p) break;
            }
            n = k;
        }
    }
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += s->cand[i].p;
    double r = (double)lc_rng_uniform(&s->rng) * total, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += s->cand[i].p;
        if (r < acc) return s->cand[i].id;
    }
    return s->cand[n - 1].id;
}
