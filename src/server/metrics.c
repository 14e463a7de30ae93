/* metrics.c — counters and histograms in the Prometheus text exposition format. */
#include "metrics.h"

#include "../base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double k_bounds[LC_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static const char *k_endpoints[4] = {"chat_completions", "completions", "models", "other"};
static const int k_codes[6] = {200, 400, 401, 404, 413, 503};

void lc_metrics_init(lc_metrics *m) {
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void lc_metrics_destroy(lc_metrics *m) { pthread_mutex_destroy(&m->mu); }

/* Requests with a code outside k_codes count in column 6 ("other"). */
static int code_index(int status) {
    for (int i = 0; i < 6; i++)
        if (k_codes[i] == status) return i;
    return 6;
}

void lc_metrics_request(lc_metrics *m, lc_endpoint ep, int status) {
    pthread_mutex_lock(&m->mu);
    m->requests[ep][code_index(status)]++;
    pthread_mutex_unlock(&m->mu);
}

static void observe(lc_hist *h, double v) {
    if (v < 0) return;
    h->sum += v;
    h->count++;
    for (int i = 0; i < LC_HIST_BUCKETS; i++)
        if (v <= k_bounds[i]) {
            h->bucket[i]++;
            break;
        }
}

void lc_metrics_generation(lc_metrics *m, int64_t prompt_tokens, int64_t cached_tokens, int64_t completion_tokens,
                           double latency, double ttft, double queue_wait) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += (uint64_t)prompt_tokens;
    m->cached_prompt_tokens += (uint64_t)cached_tokens;
    m->completion_tokens += (uint64_t)completion_tokens;
    observe(&m->latency, latency);
    observe(&m->ttft, ttft);
    observe(&m->queue_wait, queue_wait);
    pthread_mutex_unlock(&m->mu);
}

typedef struct {
    char *s;
    size_t n, cap;
} sbuf;

__attribute__((format(printf, 2, 3))) static void put(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + (size_t)k + 1) cap *= 2;
        char *p = realloc(b->s, cap);
        if (!p) return;
        b->s = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, b->cap - b->n, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static void put_hist(sbuf *b, const char *name, const char *help, const lc_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < LC_HIST_BUCKETS; i++) {
        cum += h->bucket[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, k_bounds[i], (unsigned long long)cum);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)h->count, name, h->sum,
        name, (unsigned long long)h->count);
}

char *lc_metrics_text(lc_metrics *m, const char *gauges) {
    sbuf b = {0};
    pthread_mutex_lock(&m->mu);
    put(&b, "# HELP longcat_requests_total HTTP requests by endpoint and status code.\n"
            "# TYPE longcat_requests_total counter\n");
    for (int e = 0; e < 4; e++) {
        for (int i = 0; i < 6; i++)
            put(&b, "longcat_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", k_endpoints[e], k_codes[i],
                (unsigned long long)m->requests[e][i]);
        put(&b, "longcat_requests_total{endpoint=\"%s\",code=\"other\"} %llu\n", k_endpoints[e],
            (unsigned long long)m->requests[e][6]);
    }
    put(&b, "# HELP longcat_prompt_tokens_total Prompt tokens of finished requests.\n"
            "# TYPE longcat_prompt_tokens_total counter\nlongcat_prompt_tokens_total %llu\n",
        (unsigned long long)m->prompt_tokens);
    put(&b, "# HELP longcat_prompt_tokens_cached_total Prompt tokens found in a slot's KV cache (not prefilled).\n"
            "# TYPE longcat_prompt_tokens_cached_total counter\nlongcat_prompt_tokens_cached_total %llu\n",
        (unsigned long long)m->cached_prompt_tokens);
    put(&b, "# HELP longcat_generation_tokens_total Generated tokens of finished requests.\n"
            "# TYPE longcat_generation_tokens_total counter\nlongcat_generation_tokens_total %llu\n",
        (unsigned long long)m->completion_tokens);
    put_hist(&b, "longcat_request_latency_seconds", "Time from arrival to the last token.", &m->latency);
    put_hist(&b, "longcat_time_to_first_token_seconds", "Time from arrival to the first generated text.", &m->ttft);
    put_hist(&b, "longcat_queue_wait_seconds", "Time from arrival to a free slot's first step.", &m->queue_wait);
    pthread_mutex_unlock(&m->mu);
    put(&b, "%s", gauges ? gauges : "");
    return b.s;
}
