/* test_generate.c — sampling rules (greedy, temperature frequencies, top-k, top-p, min-p,
 * penalties, seeds), the generation loop on a random model with a trained tokenizer (greedy =
 * argmax of a full prefill, determinism, max tokens, stop strings, streaming = final text),
 * and `longcat generate` / `longcat chat` as a user runs them (cache reuse, /save, /load,
 * Ctrl-C). */
#define _POSIX_C_SOURCE 200809L
#include "test.h"
#include "../src/generate/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void test_sampler_rules(void) {
    lc_sampler s;
    lc_sampler_params p = lc_sampler_defaults();
    p.temperature = 0;
    CHECK_OK(lc_sampler_init(&s, &p, 4));
    float l[4] = {0.1f, 2.0f, 1.9f, -1};
    CHECK(lc_sampler_sample(&s, l, NULL, 0) == 1, "greedy = argmax");
    lc_sampler_free(&s);
    /* temperature 1: frequencies follow softmax (logits ln1, ln2, ln4 -> 1/7, 2/7, 4/7) */
    p = lc_sampler_defaults();
    p.temperature = 1;
    p.top_p = 1;
    p.seed = 7;
    CHECK_OK(lc_sampler_init(&s, &p, 3));
    int cnt[3] = {0};
    for (int i = 0; i < 20000; i++) {
        float x[3] = {0, logf(2), logf(4)};
        cnt[lc_sampler_sample(&s, x, NULL, 0)]++;
    }
    CHECK(fabs(cnt[0] / 20000.0 - 1 / 7.0) < 0.015 && fabs(cnt[2] / 20000.0 - 4 / 7.0) < 0.015, "frequencies %d %d %d", cnt[0],
          cnt[1], cnt[2]);
    lc_sampler_free(&s);
    /* top-k 1 is greedy; top-p 0.6 over (0.5, 0.3, 0.2) keeps two; min-p 0.5 keeps p >= 0.25 */
    struct { int32_t top_k; float top_p, min_p; int allowed[3]; } cases[] = {
        {1, 1, 0, {1, 0, 0}}, {0, 0.6f, 0, {1, 1, 0}}, {0, 1, 0.5f, {1, 1, 0}}, {2, 1, 0, {1, 1, 0}}};
    for (int c = 0; c < 4; c++) {
        p = lc_sampler_defaults();
        p.temperature = 1;
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        CHECK_OK(lc_sampler_init(&s, &p, 3));
        int seen[3] = {0};
        for (int i = 0; i < 3000; i++) {
            float x[3] = {logf(0.5f), logf(0.3f), logf(0.2f)};
            seen[lc_sampler_sample(&s, x, NULL, 0)] = 1;
        }
        for (int k = 0; k < 3; k++) CHECK(seen[k] == cases[c].allowed[k], "case %d token %d seen=%d", c, k, seen[k]);
        lc_sampler_free(&s);
    }
    /* penalties: a repeated token loses its lead */
    p = lc_sampler_defaults();
    p.temperature = 0;
    p.repetition_penalty = 2;
    CHECK_OK(lc_sampler_init(&s, &p, 3));
    int32_t hist[2] = {0, 0};
    float x[3] = {1.0f, 0.8f, 0.1f};
    CHECK(lc_sampler_sample(&s, x, hist, 2) == 1, "repetition penalty divides a positive logit");
    lc_sampler_free(&s);
    p.repetition_penalty = 1;
    p.frequency_penalty = 0.15f;
    CHECK_OK(lc_sampler_init(&s, &p, 3));
    float y[3] = {1.0f, 0.8f, 0.1f};
    CHECK(lc_sampler_sample(&s, y, hist, 2) == 1, "frequency penalty: 1 - 2*0.15 < 0.8");
    lc_sampler_free(&s);
    p.temperature = -1;
    CHECK(lc_sampler_init(&s, &p, 3) == LC_ERR_ARG, "negative temperature rejected");
}

/* A random tiny model whose vocabulary is a tokenizer trained on Shakespeare. */
static const char *make_model(void) {
    static char dir[600];
    static int made;
    if (made) return dir;
    snprintf(dir, sizeof dir, "%s", t_tmpdir("gen_model"));
    char *out = NULL;
    int rc = t_sh(&out, "head -c 200000 data/tinyshakespeare.txt > %s/t.txt && %s tokenizer train -q --vocab 600 %s/t.txt -o %s && "
                  "%s init --preset tiny --set vocab_size=600 --set num_layers=1 --std 0.4 --seed 9 %s",
                  dir, t_bin(), dir, dir, t_bin(), dir);
    CHECK(rc == 0, "making the model: %s", out);
    free(out);
    made = rc == 0;
    return dir;
}

typedef struct {
    char buf[65536];
    size_t len;
} stream_acc;

static void on_text(void *user, const char *text, size_t len) {
    stream_acc *a = user;
    if (a->len + len < sizeof a->buf) {
        memcpy(a->buf + a->len, text, len);
        a->len += len;
    }
}

static void gen(lc_model *m, lc_tokenizer *t, const char *prompt, lc_gen_options *o, lc_gen_result *r, stream_acc *acc) {
    lc_session *s;
    CHECK_OK(lc_session_new(&s, m, 512));
    int32_t *ids;
    int64_t n;
    CHECK_OK(lc_tokenizer_encode(t, prompt, strlen(prompt), 1, &ids, &n));
    if (acc) {
        acc->len = 0;
        o->on_text = on_text;
        o->user = acc;
    }
    CHECK_OK(lc_generate(s, t, ids, n, o, r));
    free(ids);
    lc_session_free(s);
}

static void test_generation_loop(void) {
    const char *dir = make_model();
    lc_model *m = NULL;
    lc_tokenizer *t = NULL;
    CHECK_OK(lc_model_load(&m, dir));
    CHECK_OK(lc_tokenizer_load(&t, dir));
    if (!m || !t) goto done;
    static stream_acc acc;
    lc_gen_options o = {.max_tokens = 40, .sampling = lc_sampler_defaults(), .ignore_eos = 1};
    o.sampling.temperature = 0;
    lc_gen_result a, b;
    gen(m, t, "ROMEO:", &o, &a, &acc);
    CHECK(a.n_tokens == 40 && a.stop == LC_STOP_MAX_TOKENS, "max tokens: %lld, %s", (long long)a.n_tokens, lc_stop_reason_name(a.stop));
    CHECK(acc.len == a.len && !memcmp(acc.buf, a.text, a.len), "streamed text = final text");
    gen(m, t, "ROMEO:", &o, &b, NULL);
    CHECK(b.n_tokens == a.n_tokens && !memcmp(a.tokens, b.tokens, (size_t)a.n_tokens * 4), "greedy is deterministic");
    /* greedy tokens = argmax of one prefill over prompt + generated (the cached decode agrees) */
    int32_t *ids;
    int64_t n;
    CHECK_OK(lc_tokenizer_encode(t, "ROMEO:", 6, 1, &ids, &n));
    int64_t T = n + a.n_tokens - 1, V = m->cfg.vocab_size;
    int32_t *all = malloc((size_t)T * 4);
    memcpy(all, ids, (size_t)n * 4);
    memcpy(all + n, a.tokens, (size_t)(a.n_tokens - 1) * 4);
    float *logits = malloc((size_t)(T * V) * 4);
    lc_session *s;
    CHECK_OK(lc_session_new(&s, m, 512));
    lc_forward_out fo = {.logits = logits};
    CHECK_OK(lc_forward(s, all, T, &fo));
    int agree = 1;
    for (int64_t i = 0; i < a.n_tokens; i++) {
        const float *row = logits + (n - 1 + i) * V;
        int32_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = (int32_t)v;
        agree &= best == a.tokens[i];
    }
    CHECK(agree, "greedy generation = argmax of a full prefill");
    lc_session_free(s);
    free(logits);
    free(all);
    free(ids);
    lc_gen_result_free(&b);
    /* seeds: same seed same text, another seed (almost surely) another */
    lc_gen_result c, d, e;
    o.sampling = lc_sampler_defaults();
    o.sampling.seed = 11;
    gen(m, t, "ROMEO:", &o, &c, NULL);
    gen(m, t, "ROMEO:", &o, &d, NULL);
    o.sampling.seed = 12;
    gen(m, t, "ROMEO:", &o, &e, NULL);
    CHECK(c.len == d.len && !memcmp(c.text, d.text, c.len), "same seed, same output");
    CHECK(c.len != e.len || memcmp(c.text, e.text, c.len), "different seeds differ");
    lc_gen_result_free(&c);
    lc_gen_result_free(&d);
    lc_gen_result_free(&e);
    /* stop string: cut at its first occurrence, never streamed */
    if (a.len > 12) {
        char stop[8];
        memcpy(stop, a.text + 8, 3);
        stop[3] = 0;
        const char *first = strstr(a.text, stop);
        const char *stops[1] = {stop};
        o.sampling = lc_sampler_defaults();
        o.sampling.temperature = 0;
        o.stop = stops;
        o.n_stop = 1;
        lc_gen_result f;
        gen(m, t, "ROMEO:", &o, &f, &acc);
        CHECK(f.stop == LC_STOP_STRING && f.len == (size_t)(first - a.text) && !memcmp(f.text, a.text, f.len),
              "stop string \"%s\": got %zu bytes, want %zu", stop, f.len, (size_t)(first - a.text));
        CHECK(acc.len == f.len && !memcmp(acc.buf, f.text, f.len), "stop string never streamed");
        lc_gen_result_free(&f);
    }
    lc_gen_result_free(&a);
done:
    lc_tokenizer_free(t);
    lc_model_free(m);
}

static void test_cli_generate_and_chat(void) {
    const char *dir = make_model();
    char *out = NULL;
    int rc = t_sh(&out, "%s generate %s -p 'ROMEO:' -n 20 --temp 0", t_bin(), dir);
    CHECK(rc == 0 && strstr(out, "ROMEO:") && strstr(out, "generated 20 tokens"), "generate: %s", out);
    free(out);
    /* three turns: turn 2 and 3 prefill only the new tokens; /save and /load */
    rc = t_sh(&out, "printf 'Hello there\\nHow are you?\\n/save %s/conv.json\\n/reset\\n/load %s/conv.json\\nAnd now?\\n/exit\\n' | "
                    "%s chat %s -n 8 --seed 1 --ignore-eos",
              dir, dir, t_bin(), dir);
    CHECK(rc == 0, "chat exit %d: %s", rc, out);
    const char *p1 = out ? strstr(out, "[prefilled") : NULL, *p2 = p1 ? strstr(p1 + 1, "[prefilled") : NULL;
    long new2 = 0, reused2 = 0;
    CHECK(p2 && sscanf(p2, "[prefilled %ld new tokens, reused %ld cached]", &new2, &reused2) == 2 && reused2 > 0 && new2 < 40,
          "turn 2 reuses the cache: %s", p2 ? p2 : "(none)");
    CHECK(out && strstr(out, "(saved 4 messages") && strstr(out, "(loaded 4 messages") && strstr(out, "(conversation reset)"),
          "/save /reset /load: %s", out);
    free(out);
    /* Ctrl-C stops the answer, not the program */
    rc = t_sh(&out, "mkfifo %s/in; (%s chat %s -n 0 --ctx 4096 --ignore-eos < %s/in > %s/chat.out 2>&1 & echo $! > %s/pid); "
                    "exec 3>%s/in; echo 'Tell me everything' >&3; sleep 0.4; kill -INT $(cat %s/pid); sleep 0.3; "
                    "echo '/exit' >&3; exec 3>&-; sleep 0.5; cat %s/chat.out",
              dir, t_bin(), dir, dir, dir, dir, dir, dir, dir);
    CHECK(out && strstr(out, "[stopped]") && strstr(out, "stop: cancelled"), "Ctrl-C: %s", out);
    free(out);
}

void suite_generate(void) {
    RUN(test_sampler_rules);
    RUN(test_generation_loop);
    RUN(test_cli_generate_and_chat);
}
