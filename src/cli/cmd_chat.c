/* cmd_chat.c — `longcat chat`: an interactive multi-turn REPL over the chat template. The KV
 * cache is kept between turns: each turn only the tokens after the longest common prefix with
 * what is cached are prefilled. /reset, /save FILE, /load FILE; Ctrl-C stops the answer. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "../generate/generate.h"
#include "../io/json.h"
#include "../tokenizer/chat.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int g_cancel;
static void on_sigint(int sig) {
    (void)sig;
    g_cancel = 1;
}

static void print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

static cJSON *new_messages(const char *system) {
    cJSON *m = cJSON_CreateArray();
    if (system) {
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "role", "system");
        cJSON_AddStringToObject(s, "content", system);
        cJSON_AddItemToArray(m, s);
    }
    return m;
}

static void add_message(cJSON *msgs, const char *role, const char *content) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", role);
    cJSON_AddStringToObject(o, "content", content);
    cJSON_AddItemToArray(msgs, o);
}

/* What the session's cache holds: its tokens and the exact text they spell. */
typedef struct {
    int32_t *ids;
    int64_t n;
    char *text; /* NULL when unknown (then only the token prefix is reused) */
} chat_cache;

/* One turn. When the rendered conversation extends the cached text, only the new text is
 * tokenized and prefilled (the history is never re-prefilled); otherwise the longest common
 * token prefix is kept. */
static lc_status turn(lc_session *s, const lc_tokenizer *t, cJSON *msgs, const lc_gen_options *o, chat_cache *c) {
    char *text = NULL;
    int32_t *ids = NULL; /* the full token sequence of this turn's prompt */
    int64_t n = 0, k = 0;
    lc_status st = lc_chat_render(msgs, NULL, &text);
    size_t cl = c->text ? strlen(c->text) : 0;
    if (!st && c->text && !strncmp(text, c->text, cl) && text[cl]) {
        int32_t *tail;
        int64_t nt;
        st = lc_tokenizer_encode(t, text + cl, strlen(text + cl), 0, &tail, &nt);
        if (!st) {
            ids = malloc((size_t)(c->n + nt + 1) * sizeof *ids);
            if (!ids) st = LC_ERR_NOMEM;
            else {
                memcpy(ids, c->ids, (size_t)c->n * sizeof *ids);
                memcpy(ids + c->n, tail, (size_t)nt * sizeof *ids);
                n = c->n + nt;
                k = c->n;
            }
            free(tail);
        }
    } else if (!st) {
        st = lc_tokenizer_encode_prompt(t, text, strlen(text), &ids, &n);
        while (!st && k < c->n && k < n - 1 && c->ids[k] == ids[k]) k++;
    }
    if (!st && k >= n) st = lc_error(LC_ERR_ARG, "nothing new to say");
    if (st) {
        free(text);
        free(ids);
        return st;
    }
    s->pos = k; /* cache rows past k are overwritten */
    lc_gen_result r = {0};
    g_cancel = 0;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    st = lc_generate(s, t, ids + k, n - k, o, &r);
    sigaction(SIGINT, &old, NULL);
    if (!st) {
        if (r.stop == LC_STOP_CANCELLED) printf(" [stopped]");
        cli_print_speed(&r);
        fprintf(stderr, "[prefilled %lld new tokens, reused %lld cached]\n", (long long)(n - k), (long long)k);
        char *content;
        cJSON *calls;
        if (!lc_chat_parse_tool_calls(r.text, &content, &calls) && calls) {
            char *js = cJSON_PrintUnformatted(calls);
            fprintf(stderr, "[tool calls: %s]\n", js ? js : "?");
            free(js);
        }
        free(content);
        cJSON_Delete(calls);
        add_message(msgs, "assistant", r.text);
        /* the cache now holds the prompt and the forwarded generated tokens */
        char *gen = NULL;
        size_t gl = 0;
        int32_t *all = realloc(ids, (size_t)(n + r.n_forwarded + 1) * sizeof *all);
        if (!all || lc_tokenizer_decode(t, r.tokens, r.n_forwarded, LC_DECODE_RAW, &gen, &gl)) st = LC_ERR_NOMEM;
        if (all) {
            ids = all;
            memcpy(ids + n, r.tokens, (size_t)r.n_forwarded * sizeof *ids);
        }
        free(c->ids);
        free(c->text);
        c->ids = ids;
        c->n = n + r.n_forwarded;
        c->text = NULL;
        ids = NULL;
        if (!st && (c->text = malloc(strlen(text) + gl + 1))) {
            strcpy(c->text, text);
            memcpy(c->text + strlen(text), gen, gl + 1);
        }
        free(gen);
    }
    lc_gen_result_free(&r);
    free(ids);
    free(text);
    return st;
}

static lc_status save_messages(const cJSON *msgs, const char *path) {
    char *js = cJSON_Print(msgs);
    lc_status st = js ? lc_write_text(path, js) : lc_error(LC_ERR_NOMEM, "out of memory saving the conversation");
    free(js);
    return st;
}

static lc_status load_messages(cJSON **msgs, const char *path) {
    cJSON *m;
    lc_status st = lc_json_load(path, &m);
    if (st) return st;
    char *check = NULL;
    if (!cJSON_IsArray(m)) st = lc_error(LC_ERR_FORMAT, "%s: expected a JSON array of messages", path);
    else st = lc_chat_render(m, NULL, &check); /* validates roles and contents */
    free(check);
    if (st) {
        cJSON_Delete(m);
        return st;
    }
    cJSON_Delete(*msgs);
    *msgs = m;
    return LC_OK;
}

int cmd_chat(int argc, char **argv) {
    const char *dir = NULL, *system = NULL, *tok_dir = NULL, *load = NULL;
    lc_gen_options o = {.max_tokens = 512, .sampling = lc_sampler_defaults(), .cancel = &g_cancel};
    int64_t n_ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_sampling_arg(argc, argv, &i, &o.sampling);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: longcat chat MODEL_DIR [--system TEXT] [-n MAX_TOKENS] [--load FILE] [--ctx N] [--threads N]\n"
                   "                   [--no-mmap (weights copied into RAM instead of mapped)]\n%s"
                   "commands: /reset  /save FILE  /load FILE  /exit; Ctrl-C stops the current answer.\n",
                   cli_sampling_help());
            return 0;
        } else if (!strcmp(a, "--ignore-eos")) o.ignore_eos = 1;
        else if (!strcmp(a, "--no-mmap")) cli_set_no_mmap(1);
        else if (!strcmp(a, "--system") || !strcmp(a, "-n") || !strcmp(a, "--ctx") || !strcmp(a, "--threads") ||
                   !strcmp(a, "--tokenizer") || !strcmp(a, "--load")) {
            if (!(v = cli_value(argc, argv, &i))) return 1;
            if (!strcmp(a, "--system")) system = v;
            else if (!strcmp(a, "-n")) o.max_tokens = atoll(v);
            else if (!strcmp(a, "--ctx")) n_ctx = atoll(v);
            else if (!strcmp(a, "--tokenizer")) tok_dir = v;
            else if (!strcmp(a, "--load")) load = v;
            else cli_set_threads(atoi(v));
        } else if (a[0] == '-') {
            fprintf(stderr, "longcat chat: unknown option %s\n", a);
            return 1;
        } else dir = a;
    }
    if (!dir) {
        fprintf(stderr, "usage: longcat chat MODEL_DIR [--system TEXT] (see --help)\n");
        return 1;
    }
    o.on_text = print_text;
    lc_model *m;
    lc_session *s;
    lc_tokenizer *t;
    lc_status st = cli_open(dir, tok_dir, n_ctx, &m, &s, &t);
    if (st) return cli_fail(st);
    cJSON *msgs = new_messages(system);
    if (load && (st = load_messages(&msgs, load))) fprintf(stderr, "longcat chat: %s\n", lc_last_error());
    chat_cache cache = {0};
    char *line = NULL;
    size_t cap = 0;
    fprintf(stderr, "longcat chat: %s (context %lld). /reset /save FILE /load FILE /exit; Ctrl-C stops an answer.\n", dir,
            (long long)s->n_ctx);
    for (;;) {
        printf("\n> ");
        fflush(stdout);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (line[0] == '/') {
            char *arg = strchr(line, ' ');
            if (arg) *arg++ = 0;
            if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
            else if (!strcmp(line, "/reset")) {
                cJSON_Delete(msgs);
                msgs = new_messages(system);
                free(cache.text);
                cache.text = NULL;
                cache.n = 0;
                lc_session_reset(s);
                printf("(conversation reset)");
            } else if (!strcmp(line, "/save") && arg) {
                if ((st = save_messages(msgs, arg))) fprintf(stderr, "%s\n", lc_last_error());
                else printf("(saved %d messages to %s)", cJSON_GetArraySize(msgs), arg);
            } else if (!strcmp(line, "/load") && arg) {
                if ((st = load_messages(&msgs, arg))) fprintf(stderr, "%s\n", lc_last_error());
                else printf("(loaded %d messages from %s)", cJSON_GetArraySize(msgs), arg);
            } else printf("commands: /reset  /save FILE  /load FILE  /exit");
            continue;
        }
        add_message(msgs, "user", line);
        st = turn(s, t, msgs, &o, &cache);
        if (st) {
            fprintf(stderr, "longcat chat: %s\n", lc_last_error());
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1); /* drop the failed user turn */
        }
    }
    printf("\n");
    free(line);
    free(cache.ids);
    free(cache.text);
    cJSON_Delete(msgs);
    lc_session_free(s);
    lc_tokenizer_free(t);
    lc_model_free(m);
    return 0;
}
