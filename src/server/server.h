/* server.h — `longcat serve`: an OpenAI-compatible HTTP/1.1 server (libmicrohttpd) over the
 * batching engine. Endpoints: POST /v1/chat/completions, POST /v1/completions (both with
 * server-sent-event streaming), GET /v1/models[/ID], GET /health, GET /metrics. */
#ifndef LC_SERVER_H
#define LC_SERVER_H

#include "../model/model.h"
#include "../tokenizer/tokenizer.h"

typedef struct {
    const char *host;      /* address to bind, default 127.0.0.1 */
    int port;              /* 0: any free port (see lc_server_port) */
    const char *api_key;   /* NULL: no authentication; else "Authorization: Bearer KEY" on /v1 */
    const char *model_id;  /* the name clients must use in "model" */
    int parallel;          /* slots: requests decoded together */
    int64_t ctx;           /* context per slot (tokens) */
    int queue;             /* requests that may wait for a slot before 503 */
    size_t max_body;       /* bytes; larger bodies get 413 */
    int timeout;           /* seconds an idle or slow connection may take */
    int max_connections;
} lc_server_options;

typedef struct lc_server lc_server;

/* Starts listening and serving in background threads. */
lc_status lc_server_start(lc_server **s, const lc_model *m, const lc_tokenizer *t, const lc_server_options *o);
int lc_server_port(const lc_server *s);
int64_t lc_server_ctx(const lc_server *s); /* tokens per slot (--ctx, capped by the model) */
/* Stops accepting, ends running requests (as cancelled), waits for every thread, frees. */
void lc_server_stop(lc_server *s);

#endif
