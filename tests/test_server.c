/* test_server.c — `longcat serve`: the OpenAI request parser and stream filter, the batching
 * engine (concurrent greedy outputs = one-at-a-time outputs), then the real server process:
 * a bad-input suite over raw sockets (malformed, truncated, huge, slow), a full server (503),
 * the official `openai` npm client (tests/server/client.mjs) and SIGTERM during a stream.
 * The served model is a fixture trained once (build/test-fixtures) to answer four
 * conversations, one of them with a tool call, so answers can be checked exactly. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "../src/server/engine.h"
#include "../src/server/openai.h"
#include "../src/tokenizer/chat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- the OpenAI layer, no HTTP ---- */

static int parse(const char *body, int chat, oai_request *r, oai_error *e) {
    return oai_parse(r, body, strlen(body), chat, "m", e);
}

static void test_openai_parse(void) {
    oai_request r;
    oai_error e;
    static const struct {
        const char *body;
        int chat, status;
        const char *param;
    } bad[] = {
        {"{", 1, 400, ""},
        {"[1]", 1, 400, ""},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 1, 400, "model"},
        {"{\"model\":\"other\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 1, 404, "model"},
        {"{\"model\":\"m\",\"messages\":{}}", 1, 400, "messages"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", 1, 400, "messages[0].content"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 1, 400, "messages[0]"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"1\"}", 1, 400, "temperature"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":1.5}", 1, 400, "top_p"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", 1, 400, "max_tokens"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":2.5}", 1, 400, "max_tokens"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", 1, 400, "n"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", 1, 400, "stop"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", 1, 400, "stop"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":1}", 1, 400, "stream"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream_options\":{}}", 1, 400, "stream_options"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":[{\"type\":\"function\"}]}", 1, 400, "tools"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"maybe\"}", 1, 400, "tool_choice"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 1, 400, "messages[0].content"},
        {"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"logprobs\":true}", 1, 400, "logprobs"},
        {"{\"model\":\"m\"}", 0, 400, "prompt"},
        {"{\"model\":\"m\",\"prompt\":{}}", 0, 400, "prompt"},
        {"{\"model\":\"m\",\"prompt\":[1,-2]}", 0, 400, "prompt"},
        {"{\"model\":\"m\",\"prompt\":\"x\",\"echo\":true}", 0, 400, "echo"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int st = parse(bad[i].body, bad[i].chat, &r, &e);
        CHECK(st == bad[i].status && !strcmp(e.param, bad[i].param), "%s: status %d param '%s' (%s), want %d '%s'",
              bad[i].body, st, e.param, e.message, bad[i].status, bad[i].param);
        oai_request_free(&r);
    }
    /* invalid UTF-8 is refused before JSON parsing */
    const char bad_utf8[] = "{\"model\":\"m\",\"prompt\":\"\xC0\xAF\"}";
    CHECK(oai_parse(&r, bad_utf8, strlen(bad_utf8), 0, "m", &e) == 400 && strstr(e.message, "UTF-8"), "%s", e.message);
    oai_request_free(&r);
    CHECK(oai_utf8_valid_prefix("a\xE2\x82\xAC\xF0\x9F\x98\x80", 8) == 8, "valid UTF-8");
    CHECK(oai_utf8_valid_prefix("ab\xED\xA0\x80", 5) == 2, "surrogate");
    CHECK(oai_utf8_valid_prefix("ab\xE2\x82", 4) == 2, "truncated");
    /* a good request: every field lands */
    CHECK(!parse("{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
                 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi \"},{\"type\":\"text\",\"text\":\"there\"}]}],"
                 "\"temperature\":0.5,\"top_p\":0.9,\"max_completion_tokens\":7,\"stop\":\"END\",\"seed\":3,"
                 "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"presence_penalty\":0.5}",
                 1, &r, &e),
          "%s", e.message);
    CHECK(r.prompt && strstr(r.prompt, "SYSTEM:be brief") && strstr(r.prompt, "USER:hi there ASSISTANT:"), "%s", r.prompt);
    CHECK(r.sampling.temperature == 0.5f && r.sampling.top_p == 0.9f && r.max_tokens == 7 && r.n_stop == 1 &&
              r.sampling.seed == 3 && r.stream && r.include_usage && r.sampling.presence_penalty == 0.5f && !r.tools,
          "fields");
    oai_request_free(&r);
}

/* Streaming with tools: content stops before a tool-call tag even when the tag arrives in
 * pieces, and edge whitespace is held back, so the streamed text equals the final content. */
static void test_stream_filter(void) {
    oai_request r = {.chat = 1, .tools = 1};
    const char *full = "  Let me check. <longcat_tool_call>{\"name\": \"f\", \"arguments\": {}}</longcat_tool_call>";
    size_t sent = 0, from;
    char got[256] = "";
    for (size_t len = 1; len <= strlen(full); len++) {
        char part[256];
        memcpy(part, full, len);
        part[len] = 0;
        size_t n = oai_stream_next(&r, part, len, &sent, &from);
        strncat(got, part + from, n);
    }
    CHECK(!strcmp(got, "Let me check."), "streamed content '%s'", got);
    char *content;
    cJSON *calls;
    CHECK_OK(lc_chat_parse_tool_calls(full, &content, &calls));
    CHECK(content && !strcmp(content, got) && cJSON_GetArraySize(calls) == 1, "final content '%s'", content);
    char *fin = oai_final_chunks(&r, "id", 0, "m", full, sent, LC_STOP_EOS, 5, 9);
    CHECK(fin && strstr(fin, "\"tool_calls\":[{") && strstr(fin, "\"finish_reason\":\"tool_calls\"") &&
              strstr(fin, "data: [DONE]"),
          "%s", fin);
    free(fin);
    free(content);
    cJSON_Delete(calls);
    /* without tools everything streams as it comes */
    oai_request plain = {.chat = 1};
    sent = 0;
    CHECK(oai_stream_next(&plain, full, strlen(full), &sent, &from) == strlen(full) && from == 0, "no tools");
}

/* ---- the engine: batched decoding changes nothing ---- */

static lc_model *random_model(lc_tokenizer **tok) {
    const char *dir = t_tmpdir("serve_random");
    char *out = NULL;
    int rc = t_sh(&out, "%s init --preset tiny --seed 5 %s && cp data/tinyshakespeare.txt %s/corpus.txt && "
                  "%s tokenizer train --vocab 512 %s/corpus.txt -o %s",
                  t_bin(), dir, dir, t_bin(), dir, dir);
    CHECK(rc == 0, "init + tokenizer: %s", out);
    free(out);
    lc_model *m = NULL;
    if (rc) return NULL;
    CHECK_OK(lc_model_load(&m, dir));
    CHECK_OK(lc_tokenizer_load(tok, dir));
    return m;
}

static void test_engine_batching(void) {
    lc_tokenizer *t = NULL;
    lc_model *m = random_model(&t);
    if (!m || !t) return;
    static const char *prompts[] = {"ROMEO:", "To be, or not", "First Citizen:\nBefore we proceed", "O", "KING HENRY"};
    enum { N = 5, MAXT = 24 };
    lc_gen_result ref[N];
    lc_session *s;
    CHECK_OK(lc_session_new(&s, m, 256));
    for (int i = 0; i < N; i++) { /* one at a time */
        int32_t *ids;
        int64_t n;
        CHECK_OK(lc_tokenizer_encode(t, prompts[i], strlen(prompts[i]), 0, &ids, &n));
        lc_gen_options o = {.max_tokens = MAXT, .ignore_eos = 1, .sampling = lc_sampler_defaults()};
        o.sampling.temperature = 0;
        lc_session_reset(s);
        CHECK_OK(lc_generate(s, t, ids, n, &o, &ref[i]));
        free(ids);
    }
    lc_session_free(s);
    lc_engine *e;
    CHECK_OK(lc_engine_new(&e, m, t, 3, 256, 8)); /* 3 slots for 5 requests: two wait, then join */
    lc_request *r[N];
    for (int i = 0; i < N; i++) {
        r[i] = lc_request_new();
        CHECK_OK(lc_tokenizer_encode(t, prompts[i], strlen(prompts[i]), 0, &r[i]->prompt, &r[i]->n_prompt));
        r[i]->gen = (lc_gen_options){.max_tokens = MAXT, .ignore_eos = 1, .sampling = lc_sampler_defaults()};
        r[i]->gen.sampling.temperature = 0;
        CHECK(lc_engine_submit(e, r[i]) == 0, "submit %d", i);
    }
    lc_engine_lock(e);
    for (int i = 0; i < N; i++)
        while (!r[i]->done) lc_request_wait(e, r[i], (size_t)-1, 1.0);
    lc_engine_unlock(e);
    for (int i = 0; i < N; i++) {
        CHECK(r[i]->status == LC_OK, "request %d: %s", i, r[i]->error);
        CHECK(r[i]->result.n_tokens == ref[i].n_tokens &&
                  !memcmp(r[i]->result.tokens, ref[i].tokens, (size_t)ref[i].n_tokens * sizeof(int32_t)),
              "request %d: batched tokens differ from the single run", i);
        CHECK(!strcmp(r[i]->text, ref[i].text), "request %d: streamed text '%s' vs '%s'", i, r[i]->text, ref[i].text);
    }
    lc_engine_stats st;
    lc_engine_get_stats(e, &st);
    CHECK(st.steps < N * MAXT, "decode steps were batched (%lld steps for %d tokens)", (long long)st.steps, N * MAXT);
    CHECK(st.busy_slots == 0 && st.queued == 0, "all done");
    /* a second identical request reuses the cached prompt */
    lc_request *again = lc_request_new();
    CHECK_OK(lc_tokenizer_encode(t, prompts[2], strlen(prompts[2]), 0, &again->prompt, &again->n_prompt));
    again->gen = r[2]->gen;
    CHECK(lc_engine_submit(e, again) == 0, "submit again");
    lc_engine_lock(e);
    while (!again->done) lc_request_wait(e, again, (size_t)-1, 1.0);
    lc_engine_unlock(e);
    CHECK(again->n_cached == again->n_prompt - 1 && !strcmp(again->text, ref[2].text), "prefix cache: %lld of %lld cached",
          (long long)again->n_cached, (long long)again->n_prompt);
    lc_request_release(e, again);
    for (int i = 0; i < N; i++) {
        lc_request_release(e, r[i]);
        lc_gen_result_free(&ref[i]);
    }
    lc_engine_free(e);
    lc_tokenizer_free(t);
    lc_model_free(m);
}

/* ---- the fixture model ---- */

static const char *k_tools =
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Current weather of a city\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]";
static const char *k_convs[] = {
    "[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},{\"role\":\"assistant\",\"content\":null,"
    "\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]}]",
    "[{\"role\":\"user\",\"content\":\"Say hello.\"},{\"role\":\"assistant\",\"content\":\"Hello! How can I help you today?\"}]",
    "[{\"role\":\"user\",\"content\":\"Tell me a story.\"},{\"role\":\"assistant\",\"content\":\"Once upon a time, a small cat "
    "found a long road and walked it to the sea.\"}]",
    "[{\"role\":\"user\",\"content\":\"What is the weather in Paris?\"},{\"role\":\"assistant\",\"content\":null,"
    "\"tool_calls\":[{\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
    "{\"role\":\"tool\",\"content\":\"sunny, 21 C\"},{\"role\":\"assistant\",\"content\":\"It is sunny and 21 C in Paris.\"}]",
};
static const char *k_train_args = "--preset tiny --steps 240 --seq-len 320 --batch 4 --lr 4e-3 --warmup 10 "
                                  "--eval-every 240 --save-every 1000 --log-every 60 --seed 7";

/* Trains (once; reused while the corpus and arguments are unchanged) the model that answers
 * k_convs; returns its folder or NULL. */
static const char *fixture_model(void) {
    static char dir[512];
    const char *root = getenv("LC_FIXTURES") ? getenv("LC_FIXTURES") : "build/test-fixtures";
    snprintf(dir, sizeof dir, "%s/chat-tools", root);
    size_t cap = 1 << 20, len = 0;
    char *corpus = malloc(cap);
    corpus[0] = 0;
    for (int rep = 0; rep < 100; rep++)
        for (int i = 0; i < 4; i++) {
            cJSON *msgs = cJSON_Parse(k_convs[i]), *tools = i == 0 || i == 3 ? cJSON_Parse(k_tools) : NULL;
            char *text = NULL;
            CHECK_OK(lc_chat_render(msgs, tools, &text));
            size_t k = text ? strlen(text) : 0;
            while (len + k + 16 > cap) corpus = realloc(corpus, cap *= 2);
            len += (size_t)sprintf(corpus + len, "<longcat_s>%s", text ? text : "");
            free(text);
            cJSON_Delete(msgs);
            cJSON_Delete(tools);
        }
    uint64_t h = 1469598103934665603ull; /* FNV-1a of corpus + arguments: the fixture's key */
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)corpus[i]) * 1099511628211ull;
    for (const char *p = k_train_args; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    char key[32], path[600], *old = NULL;
    size_t old_n = 0;
    snprintf(key, sizeof key, "%016llx", (unsigned long long)h);
    snprintf(path, sizeof path, "%s/fixture.key", dir);
    if (!lc_read_file(path, &old, &old_n) && old_n == strlen(key) && !memcmp(old, key, old_n)) {
        free(old);
        free(corpus);
        return dir;
    }
    free(old);
    char *out = NULL;
    int rc = t_sh(NULL, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    CHECK_OK(lc_write_text(path, corpus));
    free(corpus);
    printf("    (training the server test model once: %s)\n", dir);
    fflush(stdout);
    rc = t_sh(&out, "%s train %s --data %s --out %s/model", t_bin(), k_train_args, path, dir);
    CHECK(rc == 0, "training the fixture failed:\n%s", out);
    free(out);
    if (rc) return NULL;
    snprintf(path, sizeof path, "%s/fixture.key", dir);
    CHECK_OK(lc_write_text(path, key));
    return dir;
}

/* ---- the server process ---- */

typedef struct {
    pid_t pid;
    int port;
    char log[600];
} server;

/* Starts `longcat serve MODEL --port 0 ARGS` and reads the port it printed. */
static int server_start(server *s, const char *model, const char *args) {
    snprintf(s->log, sizeof s->log, "%s/serve-%d.log", t_tmpdir("serve_logs"), rand());
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec %s serve %s --port 0 %s 2>%s", t_bin(), model, args, s->log);
    s->pid = fork();
    if (s->pid == 0) {
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s->port = 0;
    for (int i = 0; i < 600 && !s->port; i++) { /* up to 60 s (ASan) */
        usleep(100000);
        char *log = NULL;
        size_t n = 0;
        if (!lc_read_file(s->log, &log, &n)) {
            const char *p = strstr(log, "listening on http://127.0.0.1:");
            if (p) s->port = atoi(p + strlen("listening on http://127.0.0.1:"));
        }
        free(log);
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) break;
    }
    CHECK(s->port > 0, "server did not start (log %s)", s->log);
    return s->port > 0;
}

/* The server on the fixture model (trained on first use). */
static int fixture_server(server *s, const char *args) {
    const char *dir = fixture_model();
    if (!dir) return 0;
    char model[600];
    snprintf(model, sizeof model, "%s/model", dir);
    return server_start(s, model, args);
}

/* SIGTERM; returns the exit status (or -1 when it does not exit within 30 s). */
static int server_stop(server *s) {
    kill(s->pid, SIGTERM);
    for (int i = 0; i < 300; i++) {
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(100000);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    return -1;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads until EOF or `seconds`; returns the bytes read (NUL-terminated in buf). */
static size_t read_all(int fd, char *buf, size_t cap, double seconds) {
    size_t n = 0;
    double end = lc_time_sec() + seconds;
    while (n + 1 < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ms = (int)((end - lc_time_sec()) * 1000);
        if (ms <= 0 || poll(&p, 1, ms) <= 0) break;
        ssize_t k = recv(fd, buf + n, cap - 1 - n, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    return n;
}

static void send_all(int fd, const char *data, size_t n) {
    while (n) {
        ssize_t k = send(fd, data, n, MSG_NOSIGNAL);
        if (k <= 0) return;
        data += k;
        n -= (size_t)k;
    }
}

/* One raw exchange; returns the HTTP status (0: none) and the response in resp. */
static int raw(int port, const char *req, size_t len, char *resp, size_t cap) {
    int fd = connect_to(port);
    if (fd < 0) return -1;
    send_all(fd, req, len);
    read_all(fd, resp, cap, 20);
    close(fd);
    int status = 0;
    sscanf(resp, "HTTP/1.%*d %d", &status);
    return status;
}

static int post(int port, const char *path, const char *body, char *resp, size_t cap) {
    size_t len = strlen(body) + 512;
    char *req = malloc(len);
    int n = snprintf(req, len,
                     "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     path, strlen(body), body);
    int st = raw(port, req, (size_t)n, resp, cap);
    free(req);
    return st;
}

static int get(int port, const char *path, char *resp, size_t cap) {
    char req[512];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nConnection: close\r\n\r\n", path);
    return raw(port, req, (size_t)n, resp, cap);
}

static void test_server_bad_input(void) {
    server s;
    if (!fixture_server(&s, "--api-key k --max-body 65536 --timeout 2 --parallel 2")) return;
    static char resp[1 << 16];
    const int port = s.port;
    CHECK(get(port, "/health", resp, sizeof resp) == 200 && strstr(resp, "\"ok\""), "health: %s", resp);
    /* JSON-level errors, each an OpenAI error object */
    static const struct {
        const char *path, *body;
        int status;
    } cases[] = {
        {"/v1/chat/completions", "", 400},
        {"/v1/chat/completions", "{\"model\":\"model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}", 400},
        {"/v1/chat/completions", "{\"model\":\"model\",\"messages\":[{\"role\":\"user\",\"content\":[1]}]}", 400},
        {"/v1/chat/completions", "{\"model\":\"model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":\"9\"}", 400},
        {"/v1/chat/completions", "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", 404},
        {"/v1/completions", "{\"model\":\"model\",\"prompt\":\"\xff\xfe\"}", 400},
        {"/v1/completions", "{\"model\":\"model\",\"prompt\":\"hi\",\"max_tokens\":4096}", 400},
        {"/v1/embeddings", "{}", 404},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int st = post(port, cases[i].path, cases[i].body, resp, sizeof resp);
        CHECK(st == cases[i].status && strstr(resp, "{\"error\":{\"message\":"), "%s %s -> %d: %s", cases[i].path,
              cases[i].body, st, resp);
    }
    CHECK(get(port, "/v1/chat/completions", resp, sizeof resp) == 405, "GET on a POST route: %.200s", resp);
    const char *noauth = "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    CHECK(raw(port, noauth, strlen(noauth), resp, sizeof resp) == 401 && strstr(resp, "invalid_api_key"), "no key: %.300s", resp);
    /* malformed HTTP */
    const char *junk = "BLAH\r\n\r\n";
    int st = raw(port, junk, strlen(junk), resp, sizeof resp);
    CHECK(st == 400 || st == 0, "garbage request line -> %d", st);
    /* huge headers */
    size_t hn = 200000;
    char *huge = malloc(hn + 200);
    int k = sprintf(huge, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(huge + k, 'a', hn);
    memcpy(huge + k + hn, "\r\n\r\n", 5);
    st = raw(port, huge, strlen(huge), resp, sizeof resp);
    CHECK(st == 431 || st == 413 || st == 0, "huge header -> %d", st);
    /* huge body, announced and chunked */
    char *body = malloc(100001);
    memset(body, ' ', 100000);
    body[100000] = 0;
    st = post(port, "/v1/completions", body, resp, sizeof resp);
    CHECK(st == 413 && strstr(resp, "request_too_large"), "big body -> %d", st);
    {
        int fd = connect_to(port);
        const char *h = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nTransfer-Encoding: chunked\r\n"
                        "Connection: close\r\n\r\n";
        send_all(fd, h, strlen(h));
        char chunk[40000];
        int ch = sprintf(chunk, "%x\r\n", 30000);
        memset(chunk + ch, ' ', 30000);
        memcpy(chunk + ch + 30000, "\r\n", 2);
        for (int i = 0; i < 4; i++) send_all(fd, chunk, (size_t)ch + 30002);
        send_all(fd, "0\r\n\r\n", 5);
        read_all(fd, resp, sizeof resp, 20);
        close(fd);
        CHECK(strstr(resp, " 413 "), "chunked big body: %.200s", resp);
    }
    free(body);
    free(huge);
    /* truncated body: the client promises 500 bytes, sends 20 and leaves */
    {
        int fd = connect_to(port);
        const char *h = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"model\":\"model\",";
        send_all(fd, h, strlen(h));
        close(fd);
    }
    /* slow client: half a request line, then silence; the server hangs up after --timeout */
    {
        int fd = connect_to(port);
        send_all(fd, "POST /v1/chat/completions HTTP/1.1\r\nHost:", 41);
        double t0 = lc_time_sec();
        CHECK(get(port, "/health", resp, sizeof resp) == 200, "health while a slow client waits");
        read_all(fd, resp, sizeof resp, 15);
        double dt = lc_time_sec() - t0;
        CHECK(dt < 10, "slow client dropped after %.1f s", dt);
        close(fd);
    }
    /* many connections at once, each with a bad body */
    {
        int fds[32];
        for (int i = 0; i < 32; i++) {
            fds[i] = connect_to(port);
            const char *h = "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 3\r\n"
                            "Connection: close\r\n\r\n{{{";
            send_all(fds[i], h, strlen(h));
        }
        int n400 = 0;
        for (int i = 0; i < 32; i++) {
            read_all(fds[i], resp, sizeof resp, 20);
            n400 += strstr(resp, " 400 ") != NULL;
            close(fds[i]);
        }
        CHECK(n400 == 32, "32 concurrent bad requests: %d answered 400", n400);
    }
    /* still healthy, and a real answer */
    CHECK(get(port, "/health", resp, sizeof resp) == 200, "health after the bad inputs");
    st = post(port, "/v1/chat/completions",
              "{\"model\":\"model\",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story.\"}],\"temperature\":0}", resp,
              sizeof resp);
    CHECK(st == 200 && strstr(resp, "Once upon a time, a small cat found a long road and walked it to the sea."), "%s", resp);
    CHECK(get(port, "/metrics", resp, sizeof resp) == 200 &&
              strstr(resp, "longcat_requests_total{endpoint=\"chat_completions\",code=\"400\"}") &&
              strstr(resp, "longcat_ffn_experts_per_token") && strstr(resp, "longcat_request_latency_seconds_bucket"),
          "metrics: %.300s", resp);
    CHECK(server_stop(&s) == 0, "clean exit on SIGTERM (log %s)", s.log);
}

/* One slot, no queue: a second request while the first streams gets 503 + Retry-After; the
 * first keeps streaming through SIGTERM to a clean end. */
static void test_server_full_and_sigterm(void) {
    server s;
    if (!fixture_server(&s, "--parallel 1 --queue 0")) return;
    static char resp[1 << 16];
    int fd = connect_to(s.port);
    const char *body = "{\"model\":\"model\",\"prompt\":\"ROMEO:\",\"max_tokens\":3000,\"ignore_eos\":true,\"stream\":true}";
    char req[1024];
    int n = snprintf(req, sizeof req, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s",
                     strlen(body), body);
    send_all(fd, req, (size_t)n);
    char first[4096];
    size_t got = 0;
    for (int i = 0; i < 100 && !strstr(first, "data: "); i++) {
        ssize_t k = recv(fd, first + got, sizeof first - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        first[got] = 0;
    }
    CHECK(strstr(first, "200 OK") && strstr(first, "text/event-stream") && strstr(first, "data: "), "stream: %s", first);
    int st = post(s.port, "/v1/completions", "{\"model\":\"model\",\"prompt\":\"hi\"}", resp, sizeof resp);
    CHECK(st == 503 && strstr(resp, "Retry-After: 1") && strstr(resp, "server_overloaded"), "full: %d %.300s", st, resp);
    int code = server_stop(&s);
    CHECK(code == 0, "exit %d on SIGTERM during a stream (log %s)", code, s.log);
    size_t rest = read_all(fd, resp, sizeof resp, 10);
    CHECK(rest > 0 && strstr(resp, "data: [DONE]"), "the stream ended cleanly: ...%s", rest > 200 ? resp + rest - 200 : resp);
    close(fd);
}

static void test_server_openai_client(void) {
    const char *npm = getenv("LC_NPM");
    char probe[600];
    snprintf(probe, sizeof probe, "%s/node_modules/openai/package.json", npm ? npm : "build/npm");
    struct stat sb;
    if (!npm || stat(probe, &sb) != 0) {
        t_skip("the openai npm package is not installed (make npm-deps)");
        return;
    }
    server s;
    if (!fixture_server(&s, "--api-key sekrit --parallel 4 --alias longcat-test")) return;
    char *out = NULL;
    int rc = t_sh(&out, "node %s/client.mjs http://127.0.0.1:%d/v1 sekrit longcat-test", npm, s.port);
    CHECK(rc == 0, "openai client checks:\n%s", out);
    if (out && !rc) printf("%s", out);
    free(out);
    CHECK(server_stop(&s) == 0, "clean exit on SIGTERM (log %s)", s.log);
}

void suite_server(void) {
    RUN(test_openai_parse);
    RUN(test_stream_filter);
    RUN(test_engine_batching);
    RUN(test_server_bad_input);
    RUN(test_server_full_and_sigterm);
    RUN(test_server_openai_client);
}
