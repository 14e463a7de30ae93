/* generate.c — prompt prefill in chunks (logits of the last token only), then the
 * sample -> detokenize -> stop check -> forward loop. Sampling is in sampler.c. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#define PREFILL_CHUNK 256

const char *lc_stop_reason_name(lc_stop_reason r) {
    switch (r) {
    case LC_STOP_EOS: return "eos";
    case LC_STOP_MAX_TOKENS: return "length";
    case LC_STOP_STRING: return "stop";
    case LC_STOP_CONTEXT: return "context";
    case LC_STOP_CANCELLED: return "cancelled";
    }
    return "?";
}

void lc_gen_result_free(lc_gen_result *r) {
    free(r->text);
    free(r->tokens);
    memset(r, 0, sizeof *r);
}

typedef struct {
    char *buf;
    size_t len, cap, emitted;
} text_buf;

static lc_status text_append(text_buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? 2 * b->cap : 1024;
        while (c < b->len + n + 1) c *= 2;
        char *p = realloc(b->buf, c);
        if (!p) return lc_error(LC_ERR_NOMEM, "out of memory for generated text");
        b->buf = p;
        b->cap = c;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = 0;
    return LC_OK;
}

static void emit_upto(text_buf *b, size_t upto, const lc_gen_options *o) {
    while (upto > b->emitted && upto < b->len && ((unsigned char)b->buf[upto] & 0xC0) == 0x80) upto--; /* whole chars */
    if (upto > b->emitted && o->on_text) o->on_text(o->user, b->buf + b->emitted, upto - b->emitted);
    if (upto > b->emitted) b->emitted = upto;
}

struct lc_gen {
    const lc_tokenizer *t;
    lc_gen_options o;
    lc_sampler smp;
    int64_t n_vocab, n_prompt;
    int32_t eos_tok, eos_cfg;
    int32_t *hist; /* prompt + generated tokens */
    int64_t n_hist, hist_cap;
    size_t max_stop;
    text_buf tb;
    lc_detok dt;
    int pending, done;  /* a returned token awaits its forward; generation over */
    lc_gen_result r;
    double t_start;
};

lc_status lc_gen_begin(lc_gen **out, const lc_tokenizer *t, const lc_config *c, const int32_t *prompt, int64_t n_prompt,
                       const lc_gen_options *o) {
    *out = NULL;
    if (n_prompt < 1) return lc_error(LC_ERR_ARG, "generate: the prompt is empty");
    if (lc_tokenizer_vocab_size(t) > c->vocab_size)
        return lc_error(LC_ERR_ARG, "generate: the tokenizer has %lld ids but the model only %lld",
                        (long long)lc_tokenizer_vocab_size(t), (long long)c->vocab_size);
    lc_gen *g = lc_calloc(1, sizeof *g, "generation state");
    if (!g) return LC_ERR_NOMEM;
    g->t = t;
    g->o = *o;
    g->n_vocab = c->vocab_size;
    g->n_prompt = n_prompt;
    g->eos_tok = lc_tokenizer_eos(t);
    g->eos_cfg = (int32_t)c->eos_token_id;
    g->hist_cap = n_prompt + 256;
    g->n_hist = n_prompt;
    g->hist = lc_malloc((size_t)g->hist_cap * sizeof *g->hist, "generation history");
    lc_status st = g->hist ? lc_sampler_init(&g->smp, &o->sampling, g->n_vocab) : LC_ERR_NOMEM;
    if (st) {
        free(g->hist);
        free(g);
        return st;
    }
    memcpy(g->hist, prompt, (size_t)n_prompt * sizeof *g->hist);
    for (int i = 0; i < o->n_stop; i++) g->max_stop = LC_MAX(g->max_stop, strlen(o->stop[i]));
    lc_detok_init(&g->dt, t, 1);
    g->r.n_prompt = n_prompt;
    g->r.stop = LC_STOP_MAX_TOKENS;
    g->t_start = lc_time_sec();
    *out = g;
    return LC_OK;
}

lc_status lc_gen_step(lc_gen *g, float *logits, int64_t room, int32_t *next, int *done) {
    lc_gen_result *r = &g->r;
    const lc_gen_options *o = &g->o;
    *done = 1;
    if (g->done) return LC_OK;
    if (g->pending) r->n_forwarded++;
    g->pending = 0;
    g->done = 1;
    if (o->cancel && *o->cancel) {
        r->stop = LC_STOP_CANCELLED;
        return LC_OK;
    }
    int32_t tok = lc_sampler_sample(&g->smp, logits, g->hist, g->n_hist);
    if (!o->ignore_eos && (tok == g->eos_tok || tok == g->eos_cfg)) {
        r->stop = LC_STOP_EOS;
        return LC_OK;
    }
    if (g->n_hist + 1 > g->hist_cap) {
        int32_t *h = realloc(g->hist, (size_t)(g->hist_cap * 2) * sizeof *h);
        if (!h) return lc_error(LC_ERR_NOMEM, "out of memory for generation");
        g->hist = h;
        g->hist_cap *= 2;
    }
    g->hist[g->n_hist++] = tok;
    r->n_tokens++;
    text_buf *tb = &g->tb;
    char piece[512];
    int64_t w = tok < lc_tokenizer_vocab_size(g->t) ? lc_detok_push(&g->dt, tok, piece, sizeof piece) : 0;
    lc_status st = w > 0 ? text_append(tb, piece, (size_t)w) : LC_OK;
    if (st) return st;
    /* stop strings: search the part that could contain a new match */
    size_t from = tb->emitted > g->max_stop ? tb->emitted - g->max_stop : 0, cut = tb->len;
    for (int i = 0; i < o->n_stop; i++) {
        const char *hit = o->stop[i][0] ? strstr(tb->buf ? tb->buf + from : "", o->stop[i]) : NULL;
        if (hit && (size_t)(hit - tb->buf) < cut) cut = (size_t)(hit - tb->buf);
    }
    if (cut < tb->len) {
        tb->len = cut;
        tb->buf[cut] = 0;
        r->stop = LC_STOP_STRING;
        return LC_OK;
    }
    size_t ms = g->max_stop;
    emit_upto(tb, ms ? (tb->len >= ms - 1 ? tb->len - (ms - 1) : 0) : tb->len, o);
    if (o->max_tokens > 0 && r->n_tokens >= o->max_tokens) return LC_OK;
    if (room <= 0) {
        r->stop = LC_STOP_CONTEXT;
        return LC_OK;
    }
    g->done = 0;
    g->pending = 1;
    *next = tok;
    *done = 0;
    return LC_OK;
}

lc_status lc_gen_end(lc_gen *g, lc_status st, lc_gen_result *out) {
    lc_gen_result *r = &g->r;
    text_buf *tb = &g->tb;
    char piece[512];
    if (!st && r->stop != LC_STOP_STRING) {
        int64_t w = lc_detok_flush(&g->dt, piece, sizeof piece);
        if (w > 0) st = text_append(tb, piece, (size_t)w);
    }
    if (!st) emit_upto(tb, tb->len, &g->o);
    r->gen_seconds = lc_time_sec() - g->t_start;
    if (!st) {
        r->tokens = malloc((size_t)(r->n_tokens ? r->n_tokens : 1) * sizeof *r->tokens);
        if (!r->tokens) st = lc_error(LC_ERR_NOMEM, "out of memory");
        else memcpy(r->tokens, g->hist + g->n_prompt, (size_t)r->n_tokens * sizeof *r->tokens);
    }
    r->text = tb->buf ? tb->buf : calloc(1, 1);
    r->len = tb->len;
    if (!r->text && !st) st = lc_error(LC_ERR_NOMEM, "out of memory");
    free(g->hist);
    lc_sampler_free(&g->smp);
    *out = *r;
    free(g);
    if (st) lc_gen_result_free(out);
    return st;
}

lc_status lc_generate(lc_session *s, const lc_tokenizer *t, const int32_t *prompt, int64_t n_prompt,
                      const lc_gen_options *o, lc_gen_result *r) {
    memset(r, 0, sizeof *r);
    const lc_config *c = &s->m->cfg;
    if (n_prompt >= 1 && s->pos + n_prompt >= s->n_ctx)
        return lc_error(LC_ERR_ARG, "generate: prompt of %lld tokens (+%lld cached) does not fit the context of %lld",
                        (long long)n_prompt, (long long)s->pos, (long long)s->n_ctx);
    lc_gen *g;
    lc_status st = lc_gen_begin(&g, t, c, prompt, n_prompt, o);
    if (st) return st;
    float *logits = lc_malloc((size_t)c->vocab_size * sizeof *logits, "logits");
    if (!logits) st = LC_ERR_NOMEM;
    double t0 = lc_time_sec();
    for (int64_t i = 0; i < n_prompt && !st; i += PREFILL_CHUNK) {
        int64_t n = LC_MIN(PREFILL_CHUNK, n_prompt - i);
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
        st = lc_forward(s, prompt + i, n, &fo);
    }
    double prompt_seconds = lc_time_sec() - t0;
    g->t_start = lc_time_sec();
    for (int done = 0; !st;) {
        int32_t tok;
        st = lc_gen_step(g, logits, s->n_ctx - s->pos, &tok, &done);
        if (st || done) break;
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
        st = lc_forward(s, &tok, 1, &fo);
    }
    free(logits);
    st = lc_gen_end(g, st, r);
    r->prompt_seconds = prompt_seconds;
    return st;
}
