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

lc_status lc_generate(lc_session *s, const lc_tokenizer *t, const int32_t *prompt, int64_t n_prompt,
                      const lc_gen_options *o, lc_gen_result *r) {
    memset(r, 0, sizeof *r);
    const lc_config *c = &s->m->cfg;
    const int64_t V = c->vocab_size;
    if (n_prompt < 1) return lc_error(LC_ERR_ARG, "generate: the prompt is empty");
    if (lc_tokenizer_vocab_size(t) > V)
        return lc_error(LC_ERR_ARG, "generate: the tokenizer has %lld ids but the model only %lld",
                        (long long)lc_tokenizer_vocab_size(t), (long long)V);
    if (s->pos + n_prompt >= s->n_ctx)
        return lc_error(LC_ERR_ARG, "generate: prompt of %lld tokens (+%lld cached) does not fit the context of %lld",
                        (long long)n_prompt, (long long)s->pos, (long long)s->n_ctx);
    lc_sampler smp;
    lc_status st = lc_sampler_init(&smp, &o->sampling, V);
    if (st) return st;
    float *logits = malloc((size_t)V * sizeof *logits);
    int64_t hist_cap = n_prompt + 256, n_hist = n_prompt;
    int32_t *hist = malloc((size_t)hist_cap * sizeof *hist);
    if (!logits || !hist) st = lc_error(LC_ERR_NOMEM, "out of memory for generation");
    if (!st) memcpy(hist, prompt, (size_t)n_prompt * sizeof *hist);
    double t0 = lc_time_sec();
    for (int64_t i = 0; i < n_prompt && !st; i += PREFILL_CHUNK) {
        int64_t n = LC_MIN(PREFILL_CHUNK, n_prompt - i);
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
        st = lc_forward(s, prompt + i, n, &fo);
    }
    r->n_prompt = n_prompt;
    r->prompt_seconds = lc_time_sec() - t0;
    int32_t eos_tok = lc_tokenizer_eos(t), eos_cfg = (int32_t)c->eos_token_id;
    size_t max_stop = 0;
    for (int i = 0; i < o->n_stop; i++) max_stop = LC_MAX(max_stop, strlen(o->stop[i]));
    text_buf tb = {0};
    lc_detok dt;
    lc_detok_init(&dt, t, 1);
    char piece[512];
    double t1 = lc_time_sec();
    r->stop = LC_STOP_MAX_TOKENS;
    while (!st) {
        if (o->cancel && *o->cancel) {
            r->stop = LC_STOP_CANCELLED;
            break;
        }
        int32_t tok = lc_sampler_sample(&smp, logits, hist, n_hist);
        if (!o->ignore_eos && (tok == eos_tok || tok == eos_cfg)) {
            r->stop = LC_STOP_EOS;
            break;
        }
        if (n_hist + 1 > hist_cap) {
            int32_t *h = realloc(hist, (size_t)(hist_cap *= 2) * sizeof *h);
            if (!h) {
                st = lc_error(LC_ERR_NOMEM, "out of memory for generation");
                break;
            }
            hist = h;
        }
        hist[n_hist++] = tok;
        r->n_tokens++;
        int64_t w = tok < lc_tokenizer_vocab_size(t) ? lc_detok_push(&dt, tok, piece, sizeof piece) : 0;
        if (w > 0) st = text_append(&tb, piece, (size_t)w);
        /* stop strings: search the part that could contain a new match */
        size_t from = tb.emitted > max_stop ? tb.emitted - max_stop : 0, cut = tb.len;
        for (int i = 0; i < o->n_stop && !st; i++) {
            const char *hit = o->stop[i][0] ? strstr(tb.buf ? tb.buf + from : "", o->stop[i]) : NULL;
            if (hit && (size_t)(hit - tb.buf) < cut) cut = (size_t)(hit - tb.buf);
        }
        if (cut < tb.len) {
            tb.len = cut;
            tb.buf[cut] = 0;
            r->stop = LC_STOP_STRING;
            break;
        }
        emit_upto(&tb, max_stop ? (tb.len >= max_stop - 1 ? tb.len - (max_stop - 1) : 0) : tb.len, o);
        if (o->max_tokens > 0 && r->n_tokens >= o->max_tokens) break;
        if (s->pos >= s->n_ctx) {
            r->stop = LC_STOP_CONTEXT;
            break;
        }
        lc_forward_out fo = {.logits = logits, .logits_last_only = 1};
        st = lc_forward(s, &tok, 1, &fo);
        if (!st) r->n_forwarded++;
    }
    if (!st && r->stop != LC_STOP_STRING) {
        int64_t w = lc_detok_flush(&dt, piece, sizeof piece);
        if (w > 0) st = text_append(&tb, piece, (size_t)w);
    }
    if (!st) emit_upto(&tb, tb.len, o);
    r->gen_seconds = lc_time_sec() - t1;
    /* the generated tokens (history after the prompt) */
    if (!st) {
        r->tokens = malloc((size_t)(r->n_tokens ? r->n_tokens : 1) * sizeof *r->tokens);
        if (!r->tokens) st = lc_error(LC_ERR_NOMEM, "out of memory");
        else memcpy(r->tokens, hist + n_prompt, (size_t)r->n_tokens * sizeof *r->tokens);
    }
    r->text = tb.buf ? tb.buf : calloc(1, 1);
    r->len = tb.len;
    free(logits);
    free(hist);
    lc_sampler_free(&smp);
    if (st) lc_gen_result_free(r);
    return st;
}
