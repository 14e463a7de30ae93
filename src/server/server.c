/* server.c — HTTP for the OpenAI API (see server.h): libmicrohttpd with a thread per
 * connection, request bodies bounded, API-key check, routes, non-streaming answers, SSE
 * streams, client-disconnect detection, /metrics. Generation itself is the engine's. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server.h"

#include "engine.h"
#include "metrics.h"
#include "openai.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define POLL_SECONDS 0.2 /* how often a waiting connection checks that its client is still there */

struct lc_server {
    struct MHD_Daemon *d;
    lc_engine *e;
    const lc_model *m;
    const lc_tokenizer *t;
    lc_server_options o;
    char model_id[256];
    lc_metrics metrics;
    long started;
    atomic_ulong next_id;
    atomic_int streams; /* streamed responses not yet freed (sent to the end, or the client gone) */
};

/* Per HTTP request: the body as it arrives. */
typedef struct {
    char *body;
    size_t len, cap;
    int too_big;
} conn_state;

/* ---- responses ---- */

static enum MHD_Result send_body(struct MHD_Connection *c, int status, const char *ctype, char *body,
                                 const char *retry_after) {
    if (!body) return MHD_NO; /* out of memory: drop the connection */
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (retry_after) MHD_add_response_header(r, "Retry-After", retry_after);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result send_json(lc_server *s, struct MHD_Connection *c, lc_endpoint ep, int status, char *json) {
    lc_metrics_request(&s->metrics, ep, status);
    return send_body(c, status, "application/json", json, NULL);
}

static enum MHD_Result send_error(lc_server *s, struct MHD_Connection *c, lc_endpoint ep, const oai_error *err) {
    lc_metrics_request(&s->metrics, ep, err->status);
    return send_body(c, err->status, "application/json", oai_error_json(err),
                     err->status == 503 || err->status == 429 ? "1" : NULL);
}

/* The peer closed its side (or the socket failed): nobody will read the answer. */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return 0;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
    char ch;
    return recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

static void new_id(lc_server *s, char *id, size_t n, const char *prefix) {
    unsigned long k = atomic_fetch_add(&s->next_id, 1);
    snprintf(id, n, "%s-%08lx%08lx", prefix, (unsigned long)s->started & 0xffffffffUL, k);
}

/* ---- generation ---- */

/* The prompt's token ids: the text with the tokenizer's specials (+ BOS when configured), or
 * the ids given. Returns 0 or an HTTP status. */
static int prompt_ids(lc_server *s, oai_request *q, int32_t **ids, int64_t *n, oai_error *err) {
    const int64_t V = s->m->cfg.vocab_size;
    if (!q->prompt) {
        for (int64_t i = 0; i < q->n_prompt_ids; i++)
            if (q->prompt_ids[i] >= V)
                return oai_fail(err, 400, "invalid_request_error", NULL, "prompt", "'prompt[%lld]' = %d is not a token id (vocabulary of %lld)",
                                (long long)i, q->prompt_ids[i], (long long)V);
        *ids = q->prompt_ids;
        *n = q->n_prompt_ids;
        q->prompt_ids = NULL;
        return 0;
    }
    if (lc_tokenizer_encode_prompt(s->t, q->prompt, strlen(q->prompt), ids, n))
        return oai_fail(err, 400, "invalid_request_error", NULL, "prompt", "cannot tokenize the prompt: %s", lc_last_error());
    if (*n == 0) return oai_fail(err, 400, "invalid_request_error", NULL, "prompt", "the prompt is empty");
    return 0;
}

typedef struct {
    lc_server *s;
    lc_request *r;
    oai_request q;
    struct MHD_Connection *conn;
    char id[64];
    long created;
    int phase;          /* 0: opening chunk, 1: text, 2: end */
    size_t seen, sent;  /* bytes of request text looked at / dealt with */
    char *out;          /* bytes ready for the socket */
    size_t out_len, out_off;
    double t0;
} stream_state;

static void record_generation(lc_server *s, const lc_request *r, double t0) {
    lc_metrics_generation(&s->metrics, r->n_prompt, r->n_cached, r->result.n_tokens, r->t_done - t0,
                          r->t_first_token ? r->t_first_token - t0 : -1, r->t_admit ? r->t_admit - t0 : -1);
}

static char *stream_error_event(const char *msg) {
    oai_error err;
    oai_fail(&err, 500, "server_error", NULL, NULL, "%s", msg);
    char *js = oai_error_json(&err);
    size_t n = js ? strlen(js) + 32 : 0;
    char *ev = js ? malloc(n) : NULL;
    if (ev) snprintf(ev, n, "data: %s\n\ndata: [DONE]\n\n", js);
    free(js);
    return ev;
}

/* Appends s (consumed) to the stream's pending output. */
static void out_append(stream_state *ss, char *s) {
    if (!s) return;
    size_t k = strlen(s);
    char *p = realloc(ss->out, ss->out_len + k + 1);
    if (p) {
        memcpy(p + ss->out_len, s, k + 1);
        ss->out = p;
        ss->out_len += k;
    }
    free(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream_state *ss = cls;
    lc_engine *e = ss->s->e;
    while (ss->out_off == ss->out_len) {
        free(ss->out);
        ss->out = NULL;
        ss->out_len = ss->out_off = 0;
        if (ss->phase == 2) return MHD_CONTENT_READER_END_OF_STREAM;
        if (ss->phase == 0) {
            ss->phase = 1;
            if (ss->q.chat) out_append(ss, oai_chunk(&ss->q, ss->id, ss->created, ss->s->model_id, NULL, 0, 1));
            continue;
        }
        lc_request *r = ss->r;
        lc_engine_lock(e);
        lc_request_wait(e, r, ss->seen, POLL_SECONDS);
        int done = r->done;
        size_t len = r->len;
        char *snap = len > ss->seen || done ? malloc(len + 1) : NULL;
        if (snap) {
            memcpy(snap, r->text ? r->text : "", len);
            snap[len] = 0;
        }
        lc_engine_unlock(e);
        if (!done && len <= ss->seen) {
            free(snap);
            if (client_gone(ss->conn)) {
                lc_request_cancel(r);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            continue;
        }
        if (!snap) return MHD_CONTENT_READER_END_WITH_ERROR;
        ss->seen = len;
        size_t from, n = oai_stream_next(&ss->q, snap, len, &ss->sent, &from);
        if (n) out_append(ss, oai_chunk(&ss->q, ss->id, ss->created, ss->s->model_id, snap + from, n, 0));
        if (done) { /* r is final: its fields no longer change */
            if (r->status) out_append(ss, stream_error_event(r->error));
            else {
                const lc_gen_result *g = &r->result;
                out_append(ss, oai_final_chunks(&ss->q, ss->id, ss->created, ss->s->model_id, g->text, ss->sent,
                                                g->stop, r->n_prompt, g->n_tokens));
                record_generation(ss->s, r, ss->t0);
            }
            ss->phase = 2;
        }
        free(snap);
    }
    size_t n = LC_MIN(max, ss->out_len - ss->out_off);
    memcpy(buf, ss->out + ss->out_off, n);
    ss->out_off += n;
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    stream_state *ss = cls;
    atomic_fetch_sub(&ss->s->streams, 1);
    lc_request_cancel(ss->r); /* no effect once done; frees the slot if the client left early */
    lc_request_release(ss->s->e, ss->r);
    oai_request_free(&ss->q);
    free(ss->out);
    free(ss);
}

static enum MHD_Result handle_generate(lc_server *s, struct MHD_Connection *c, conn_state *cs, int chat) {
    const lc_endpoint ep = chat ? LC_EP_CHAT : LC_EP_COMPLETIONS;
    const double t0 = lc_time_sec();
    oai_request q;
    oai_error err;
    int32_t *ids = NULL;
    int64_t n = 0;
    const int64_t ctx = lc_engine_ctx(s->e);
    if (oai_parse(&q, cs->body ? cs->body : "", cs->len, chat, s->model_id, &err) || prompt_ids(s, &q, &ids, &n, &err)) {
        oai_request_free(&q);
        free(ids);
        return send_error(s, c, ep, &err);
    }
    if (n >= ctx || (q.max_tokens > 0 && n + q.max_tokens > ctx)) {
        oai_fail(&err, 400, "invalid_request_error", "context_length_exceeded", chat ? "messages" : "prompt",
                 "This server's context is %lld tokens per request; the prompt has %lld tokens", (long long)ctx,
                 (long long)n);
        if (q.max_tokens > 0 && n < ctx)
            snprintf(err.message + strlen(err.message), sizeof err.message - strlen(err.message),
                     " and max_tokens asks for %lld more", (long long)q.max_tokens);
        oai_request_free(&q);
        free(ids);
        return send_error(s, c, ep, &err);
    }
    lc_request *r = lc_request_new();
    if (!r) {
        oai_request_free(&q);
        free(ids);
        return MHD_NO;
    }
    r->prompt = ids;
    r->n_prompt = n;
    r->gen.max_tokens = q.max_tokens;
    r->gen.ignore_eos = q.ignore_eos;
    r->gen.sampling = q.sampling;
    if (q.n_stop) {
        r->stops = calloc((size_t)q.n_stop, sizeof *r->stops);
        for (int i = 0; r->stops && i < q.n_stop; i++) {
            r->stops[i] = q.stop[i];
            q.stop[i] = NULL;
        }
        r->gen.n_stop = r->stops ? q.n_stop : 0;
        r->gen.stop = (const char *const *)r->stops;
    }
    int rc = lc_engine_submit(s->e, r);
    if (rc) {
        lc_request_release(s->e, r);
        oai_request_free(&q);
        oai_fail(&err, 503, "server_error", rc == 1 ? "server_overloaded" : "shutting_down", NULL,
                 rc == 1 ? "All %d slots are busy and %d requests are waiting; retry later"
                         : "The server is shutting down (%d slots, %d queued)",
                 s->o.parallel, s->o.queue);
        return send_error(s, c, ep, &err);
    }
    char id[64];
    new_id(s, id, sizeof id, chat ? "chatcmpl" : "cmpl");
    long created = (long)time(NULL);
    if (q.stream) {
        stream_state *ss = calloc(1, sizeof *ss);
        struct MHD_Response *resp =
            ss ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, ss, stream_free) : NULL;
        if (resp) atomic_fetch_add(&s->streams, 1);
        if (!resp) {
            lc_request_cancel(r);
            lc_request_release(s->e, r);
            oai_request_free(&q);
            free(ss);
            return MHD_NO;
        }
        *ss = (stream_state){.s = s, .r = r, .q = q, .conn = c, .created = created, .t0 = t0};
        snprintf(ss->id, sizeof ss->id, "%s", id);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        lc_metrics_request(&s->metrics, ep, 200);
        enum MHD_Result ok = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    /* not streaming: wait for the end, watching the client */
    int gone = 0;
    lc_engine_lock(s->e);
    while (!r->done && !gone) {
        lc_request_wait(s->e, r, (size_t)-1, POLL_SECONDS);
        if (!r->done) {
            lc_engine_unlock(s->e);
            gone = client_gone(c);
            lc_engine_lock(s->e);
        }
    }
    lc_engine_unlock(s->e);
    enum MHD_Result ok = MHD_NO;
    if (gone) lc_request_cancel(r); /* MHD_NO closes the connection */
    else if (r->status) {
        oai_fail(&err, 500, "server_error", NULL, NULL, "generation failed: %s", r->error);
        ok = send_error(s, c, ep, &err);
    } else {
        const lc_gen_result *g = &r->result;
        record_generation(s, r, t0);
        ok = send_json(s, c, ep, 200, oai_response_json(&q, id, created, s->model_id, g->text, g->stop, r->n_prompt, g->n_tokens));
    }
    lc_request_release(s->e, r);
    oai_request_free(&q);
    return ok;
}

/* ---- other endpoints ---- */

static cJSON *model_object(lc_server *s) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", s->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", (double)s->started);
    cJSON_AddStringToObject(m, "owned_by", "longcat.c");
    cJSON_AddNumberToObject(m, "max_model_len", (double)lc_engine_ctx(s->e));
    return m;
}

static char *print_and_free(cJSON *o) {
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return js;
}

static char *metrics_text(lc_server *s) {
    lc_engine_stats st;
    lc_engine_get_stats(s->e, &st);
    double per_token = st.forward_tokens ? (double)st.ffn_expert_slots / ((double)st.forward_tokens * (double)st.num_layers) : 0;
    char g[2048];
    snprintf(g, sizeof g,
             "# HELP longcat_queue_depth Requests waiting for a slot.\n# TYPE longcat_queue_depth gauge\nlongcat_queue_depth %lld\n"
             "# HELP longcat_slots_busy Slots generating.\n# TYPE longcat_slots_busy gauge\nlongcat_slots_busy %lld\n"
             "# HELP longcat_slots_total Slots (--parallel).\n# TYPE longcat_slots_total gauge\nlongcat_slots_total %lld\n"
             "# HELP longcat_kv_cache_tokens Cache rows in use over all slots.\n# TYPE longcat_kv_cache_tokens gauge\nlongcat_kv_cache_tokens %lld\n"
             "# HELP longcat_kv_cache_usage_ratio Cache rows in use / capacity.\n# TYPE longcat_kv_cache_usage_ratio gauge\nlongcat_kv_cache_usage_ratio %.6f\n"
             "# HELP longcat_forward_tokens_total Tokens through the model (prefill + decode).\n# TYPE longcat_forward_tokens_total counter\nlongcat_forward_tokens_total %lld\n"
             "# HELP longcat_engine_steps_total Batched engine steps.\n# TYPE longcat_engine_steps_total counter\nlongcat_engine_steps_total %lld\n"
             "# HELP longcat_ffn_experts_per_token Average FFN (non-identity) experts per token per MoE layer, of moe_topk.\n"
             "# TYPE longcat_ffn_experts_per_token gauge\nlongcat_ffn_experts_per_token %.6f\n"
             "# HELP longcat_moe_topk Experts chosen per token per layer (FFN + identity).\n# TYPE longcat_moe_topk gauge\nlongcat_moe_topk %lld\n",
             (long long)st.queued, (long long)st.busy_slots, (long long)st.n_slots, (long long)st.kv_tokens,
             st.kv_capacity ? (double)st.kv_tokens / (double)st.kv_capacity : 0.0, (long long)st.forward_tokens,
             (long long)st.steps, per_token, (long long)st.moe_topk);
    return lc_metrics_text(&s->metrics, g);
}

static int authorized(lc_server *s, struct MHD_Connection *c) {
    if (!s->o.api_key || !s->o.api_key[0]) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return h && !strncmp(h, "Bearer ", 7) && !strcmp(h + 7, s->o.api_key);
}

static enum MHD_Result route(lc_server *s, struct MHD_Connection *c, const char *url, const char *method, conn_state *cs) {
    oai_error err;
    int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    lc_endpoint ep = !strcmp(url, "/v1/chat/completions") ? LC_EP_CHAT
                     : !strcmp(url, "/v1/completions")     ? LC_EP_COMPLETIONS
                     : !strncmp(url, "/v1/models", 10)     ? LC_EP_MODELS
                                                           : LC_EP_OTHER;
    if (cs->too_big) {
        oai_fail(&err, 413, "invalid_request_error", "request_too_large", NULL, "The request body exceeds %zu bytes",
                 s->o.max_body);
        return send_error(s, c, ep, &err);
    }
    if (!strcmp(url, "/health") && get) {
        lc_metrics_request(&s->metrics, LC_EP_OTHER, 200);
        return send_body(c, 200, "application/json", lc_strdup("{\"status\":\"ok\"}"), NULL);
    }
    if (!strcmp(url, "/metrics") && get) {
        lc_metrics_request(&s->metrics, LC_EP_OTHER, 200);
        return send_body(c, 200, "text/plain; version=0.0.4", metrics_text(s), NULL);
    }
    if (!strncmp(url, "/v1/", 4) && !authorized(s, c)) {
        oai_fail(&err, 401, "invalid_request_error", "invalid_api_key", NULL, "Incorrect or missing API key");
        return send_error(s, c, ep, &err);
    }
    if ((ep == LC_EP_CHAT || ep == LC_EP_COMPLETIONS) && post) return handle_generate(s, c, cs, ep == LC_EP_CHAT);
    if (ep == LC_EP_MODELS && get) {
        if (!strcmp(url, "/v1/models")) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "object", "list");
            cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "data"), model_object(s));
            return send_json(s, c, ep, 200, print_and_free(o));
        }
        if (!strncmp(url, "/v1/models/", 11) && !strcmp(url + 11, s->model_id))
            return send_json(s, c, ep, 200, print_and_free(model_object(s)));
        oai_fail(&err, 404, "invalid_request_error", "model_not_found", "model", "The model '%.200s' does not exist",
                 url + LC_MIN(strlen(url), 11));
        return send_error(s, c, ep, &err);
    }
    int known = ep != LC_EP_OTHER || !strcmp(url, "/health") || !strcmp(url, "/metrics");
    if (known) oai_fail(&err, 405, "invalid_request_error", "method_not_allowed", NULL, "%.16s is not allowed on %.200s", method, url);
    else oai_fail(&err, 404, "invalid_request_error", "not_found", NULL, "No route for %.16s %.200s", method, url);
    return send_error(s, c, ep, &err);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    lc_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) { /* headers are in */
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        *con_cls = cs;
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) cs->too_big = 1;
        return MHD_YES;
    }
    if (*upload_size) { /* a piece of the body */
        if (!cs->too_big && cs->len + *upload_size > s->o.max_body) {
            cs->too_big = 1;
            free(cs->body);
            cs->body = NULL;
            cs->len = cs->cap = 0;
        }
        if (!cs->too_big) {
            if (cs->len + *upload_size + 1 > cs->cap) {
                size_t cap = cs->cap ? cs->cap : 4096;
                while (cap < cs->len + *upload_size + 1) cap *= 2;
                char *p = realloc(cs->body, cap);
                if (!p) return MHD_NO;
                cs->body = p;
                cs->cap = cap;
            }
            memcpy(cs->body + cs->len, upload_data, *upload_size);
            cs->len += *upload_size;
            cs->body[cs->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    return route(s, c, url, method, cs);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    conn_state *cs = *con_cls;
    if (cs) {
        free(cs->body);
        free(cs);
    }
    *con_cls = NULL;
}

lc_status lc_server_start(lc_server **out, const lc_model *m, const lc_tokenizer *t, const lc_server_options *o) {
    *out = NULL;
    lc_server *s = lc_calloc(1, sizeof *s, "server");
    if (!s) return LC_ERR_NOMEM;
    s->m = m;
    s->t = t;
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.parallel <= 0) s->o.parallel = 4;
    if (s->o.queue < 0) s->o.queue = 0;
    if (!s->o.max_body) s->o.max_body = 8u << 20;
    if (s->o.timeout <= 0) s->o.timeout = 60;
    if (s->o.max_connections <= 0) s->o.max_connections = 64 + s->o.parallel + s->o.queue;
    snprintf(s->model_id, sizeof s->model_id, "%s", o->model_id ? o->model_id : "longcat");
    s->started = (long)time(NULL);
    atomic_init(&s->next_id, 1);
    lc_metrics_init(&s->metrics);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s->o.port)};
    lc_status st = LC_OK;
    if (s->o.port < 0 || s->o.port > 65535) st = lc_error(LC_ERR_ARG, "serve: port %d is not in 0..65535", s->o.port);
    else if (inet_pton(AF_INET, s->o.host, &addr.sin_addr) != 1)
        st = lc_error(LC_ERR_ARG, "serve: --host %s is not an IPv4 address", s->o.host);
    if (!st) st = lc_engine_new(&s->e, m, t, s->o.parallel, s->o.ctx, s->o.queue);
    if (!st) {
        s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC,
                                (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT,
                                (unsigned)s->o.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->o.timeout,
                                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(64 << 10), MHD_OPTION_END);
        if (!s->d) st = lc_error(LC_ERR_IO, "serve: cannot listen on %s:%d (in use, or not allowed)", s->o.host, s->o.port);
    }
    if (st) {
        lc_engine_free(s->e);
        lc_metrics_destroy(&s->metrics);
        free(s);
        return st;
    }
    *out = s;
    return LC_OK;
}

int lc_server_port(const lc_server *s) {
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    return i ? (int)i->port : s->o.port;
}

int64_t lc_server_ctx(const lc_server *s) { return lc_engine_ctx(s->e); }

void lc_server_stop(lc_server *s) {
    if (!s) return;
    MHD_quiesce_daemon(s->d); /* no new connections */
    lc_engine_stop(s->e);     /* running requests end, waiting ones fail: their connections finish */
    /* let the ended streams send their last events ([DONE]) before the daemon closes their
     * connections (up to 10 s: a client that stopped reading cannot hold the shutdown) */
    for (int i = 0; i < 1000 && atomic_load(&s->streams) > 0; i++) usleep(10000);
    MHD_stop_daemon(s->d);    /* joins every connection thread */
    lc_engine_free(s->e);
    lc_metrics_destroy(&s->metrics);
    free(s);
}
