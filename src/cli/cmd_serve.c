/* cmd_serve.c — `longcat serve MODEL_DIR`: the OpenAI-compatible server in the foreground
 * until SIGINT/SIGTERM, which stop it cleanly (running requests end, threads joined). */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "../server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char k_help[] =
    "usage: longcat serve MODEL_DIR [options]\n"
    "  --host ADDR        IPv4 address to listen on (127.0.0.1; 0.0.0.0 for every interface)\n"
    "  --port N           TCP port (8080; 0 picks a free one, printed at start)\n"
    "  --api-key KEY      require \"Authorization: Bearer KEY\" on /v1 (default: $LONGCAT_API_KEY, else none)\n"
    "  --alias NAME       the model id clients use (default: the model folder's name)\n"
    "  --parallel N       requests decoded together, each with its own KV cache (4)\n"
    "  --ctx N            context per request in tokens (4096, at most the model's)\n"
    "  --queue N          requests that may wait for a free slot; beyond, 503 + Retry-After (16)\n"
    "  --max-body BYTES   largest request body (8 MiB); larger ones get 413\n"
    "  --timeout S        seconds an idle or slow connection may take (60)\n"
    "  --tokenizer DIR    tokenizer.json from another folder\n"
    "  --threads N        compute threads\n"
    "  --no-mmap          copy the weights into RAM (huge pages) instead of mapping the file\n"
    "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health,\n"
    "GET /metrics (Prometheus). See docs/SERVER.md.\n";

int cmd_serve(int argc, char **argv) {
    const char *dir = NULL, *tok_dir = NULL;
    lc_server_options o = {.port = 8080, .parallel = 4, .ctx = 4096, .queue = 16, .timeout = 60};
    o.api_key = getenv("LONGCAT_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(k_help, stdout);
            return 0;
        }
        if (a[0] != '-') {
            dir = a;
            continue;
        }
        if (!strcmp(a, "--no-mmap")) {
            cli_set_no_mmap(1);
            continue;
        }
        static const char *with_value[] = {"--host", "--port", "--api-key", "--alias", "--parallel", "--ctx",
                                           "--queue", "--max-body", "--timeout", "--tokenizer", "--threads"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof *with_value; k++) known |= !strcmp(a, with_value[k]);
        if (!known) {
            fprintf(stderr, "longcat serve: unknown option %s (see --help)\n", a);
            return 1;
        }
        if (!(v = cli_value(argc, argv, &i))) return 1;
        if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port")) o.port = atoi(v);
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--alias")) o.model_id = v;
        else if (!strcmp(a, "--parallel")) o.parallel = atoi(v);
        else if (!strcmp(a, "--ctx")) o.ctx = atoll(v);
        else if (!strcmp(a, "--queue")) o.queue = atoi(v);
        else if (!strcmp(a, "--max-body")) o.max_body = (size_t)atoll(v);
        else if (!strcmp(a, "--timeout")) o.timeout = atoi(v);
        else if (!strcmp(a, "--tokenizer")) tok_dir = v;
        else cli_set_threads(atoi(v));
    }
    if (!dir) {
        fputs(k_help, stderr);
        return 1;
    }
    if (o.parallel < 1 || o.parallel > 256) {
        fprintf(stderr, "longcat serve: --parallel must be 1..256\n");
        return 1;
    }
    char alias[256];
    if (!o.model_id) { /* the folder's name, e.g. runs/default -> default */
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && dir[b - 1] != '/') b--;
        snprintf(alias, sizeof alias, "%.*s", (int)(n - b), dir + b);
        o.model_id = alias;
    }
    lc_model *m;
    lc_tokenizer *t;
    lc_status st = cli_open(dir, tok_dir, 0, &m, NULL, &t);
    if (st) return cli_fail(st);
    /* signals go to sigwait below, not to the server's threads (they inherit this mask) */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    lc_server *srv;
    st = lc_server_start(&srv, m, t, &o);
    if (st) {
        lc_tokenizer_free(t);
        lc_model_free(m);
        return cli_fail(st);
    }
    fprintf(stderr, "longcat serve: model '%s' (%s), %d slots x %lld tokens, listening on http://%s:%d/v1\n",
            o.model_id, dir, o.parallel, (long long)lc_server_ctx(srv), o.host ? o.host : "127.0.0.1",
            lc_server_port(srv));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "longcat serve: %s, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    lc_server_stop(srv);
    lc_tokenizer_free(t);
    lc_model_free(m);
    return 0;
}
