/* metrics.h — the server's counters and latency histograms, printed in the Prometheus text
 * format for GET /metrics. Thread-safe; knows nothing of HTTP or the engine. */
#ifndef LC_METRICS_H
#define LC_METRICS_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define LC_HIST_BUCKETS 12

typedef struct {
    double sum;
    uint64_t count, bucket[LC_HIST_BUCKETS]; /* cumulative at print time, per bucket here */
} lc_hist;

typedef struct {
    pthread_mutex_t mu;
    uint64_t requests[4][7];  /* [endpoint][status code index, see metrics.c; 6: others] */
    uint64_t prompt_tokens, completion_tokens, cached_prompt_tokens;
    lc_hist latency, ttft, queue_wait;
} lc_metrics;

typedef enum { LC_EP_CHAT, LC_EP_COMPLETIONS, LC_EP_MODELS, LC_EP_OTHER } lc_endpoint;

void lc_metrics_init(lc_metrics *m);
void lc_metrics_destroy(lc_metrics *m);
void lc_metrics_request(lc_metrics *m, lc_endpoint ep, int status);
/* A finished generation: token counts and its latencies in seconds (negative: unknown). */
void lc_metrics_generation(lc_metrics *m, int64_t prompt_tokens, int64_t cached_tokens, int64_t completion_tokens,
                           double latency, double ttft, double queue_wait);
/* Appends the Prometheus text of the counters, then `gauges` (already formatted), to a new string. */
char *lc_metrics_text(lc_metrics *m, const char *gauges);

#endif
