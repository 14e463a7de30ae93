/* pretokenize.c — normalizers (utf8proc: NFC/NFD/NFKC/NFKD, lowercase; replace, prepend,
 * strip) and pre-tokenizers (regex Split with every HF behaviour, ByteLevel, Digits,
 * Whitespace) over piece lists. Regexes run on PCRE2 with UTF, Unicode properties and JIT. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

lc_status pieces_push(lc_pieces *p, const char *s, size_t n) {
    if (p->len + n + 1 > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n + 1) cap *= 2;
        char *b = realloc(p->buf, cap);
        if (!b) return lc_error(LC_ERR_NOMEM, "out of memory for tokenizer pieces");
        p->buf = b;
        p->cap = cap;
    }
    if (p->n + 1 > p->ncap) {
        size_t nc = p->ncap ? 2 * p->ncap : 64;
        size_t *o = realloc(p->off, 2 * nc * sizeof *o);
        if (!o) return lc_error(LC_ERR_NOMEM, "out of memory for tokenizer pieces");
        p->off = o;
        p->ncap = nc;
    }
    memcpy(p->buf + p->len, s, n);
    p->off[2 * p->n] = p->len;
    p->off[2 * p->n + 1] = p->len + n;
    p->len += n;
    p->n++;
    return LC_OK;
}

lc_status pieces_append_last(lc_pieces *p, const char *s, size_t n) {
    if (p->n == 0) return pieces_push(p, s, n);
    /* the last piece ends at p->len: extend it in place */
    size_t last = p->n - 1;
    lc_status st = pieces_push(p, s, n);
    if (st) return st;
    p->n--;
    p->off[2 * last + 1] = p->len;
    return LC_OK;
}

void pieces_clear(lc_pieces *p) {
    p->len = 0;
    p->n = 0;
}

void pieces_free(lc_pieces *p) {
    free(p->buf);
    free(p->off);
    memset(p, 0, sizeof *p);
}

int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (n == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (!len || c > 0xF4 || (size_t)len > n) return 0;
    uint32_t v = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) || (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

char *lc_utf8_repair(const char *s, size_t len, size_t *out_len) {
    char *out = malloc(3 * len + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (n) {
            memcpy(out + k, s + i, (size_t)n);
            k += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + k, "\xEF\xBF\xBD", 3); /* U+FFFD per invalid byte */
            k += 3;
            i++;
        }
    }
    out[k] = 0;
    if (out_len) *out_len = k;
    return out;
}

lc_status regex_compile(pcre2_code **re, const char *pattern, size_t len, const char *where) {
    int err;
    PCRE2_SIZE off;
    *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &off, NULL);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lc_error(LC_ERR_FORMAT, "%s: regex error at offset %zu: %s", where, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    return LC_OK;
}

void norm_steps_free(norm_step *s, int n) {
    for (int i = 0; i < n; i++) {
        free(s[i].pattern);
        free(s[i].content);
        if (s[i].re) pcre2_code_free(s[i].re);
    }
    free(s);
}

void pre_steps_free(pre_step *s, int n) {
    for (int i = 0; i < n; i++)
        if (s[i].re) pcre2_code_free(s[i].re);
    free(s);
}

/* Literal or regex replacement of every occurrence. */
static lc_status replace_all(const norm_step *st, const char *in, size_t len, char **out, size_t *out_len) {
    lc_pieces p = {0};
    lc_status s = LC_OK;
    size_t pos = 0, clen = strlen(st->content);
    if (st->re) {
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
        if (!md) return lc_error(LC_ERR_NOMEM, "out of memory for regex match");
        while (!s && pos <= len) {
            int rc = pcre2_match(st->re, (PCRE2_SPTR)in, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
            if (rc < 0) break;
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
            if (ov[1] == ov[0]) { /* empty match: skip one character */
                if (ov[0] >= len) break;
                uint32_t cp;
                int n = utf8_decode((const unsigned char *)in + ov[0], len - ov[0], &cp);
                s = pieces_append_last(&p, in + pos, ov[0] + (size_t)(n ? n : 1) - pos);
                pos = ov[0] + (size_t)(n ? n : 1);
                continue;
            }
            s = pieces_append_last(&p, in + pos, ov[0] - pos);
            if (!s) s = pieces_append_last(&p, st->content, clen);
            pos = ov[1];
        }
        pcre2_match_data_free(md);
    } else {
        size_t plen = strlen(st->pattern);
        while (!s && plen && pos < len) {
            const char *hit = NULL;
            for (size_t i = pos; i + plen <= len; i++)
                if (!memcmp(in + i, st->pattern, plen)) {
                    hit = in + i;
                    break;
                }
            if (!hit) break;
            s = pieces_append_last(&p, in + pos, (size_t)(hit - in) - pos);
            if (!s) s = pieces_append_last(&p, st->content, clen);
            pos = (size_t)(hit - in) + plen;
        }
    }
    if (!s && pos < len) s = pieces_append_last(&p, in + pos, len - pos);
    if (!s && p.n == 0) s = pieces_push(&p, "", 0);
    if (s) {
        pieces_free(&p);
        return s;
    }
    p.buf[p.len] = 0; /* pieces_push keeps one spare byte */
    *out = p.buf;
    *out_len = p.len;
    free(p.off);
    return LC_OK;
}

lc_status normalize_text(const norm_step *steps, int n, const char *in, size_t len, char **out, size_t *out_len) {
    char *cur = malloc(len + 1);
    if (!cur) return lc_error(LC_ERR_NOMEM, "out of memory normalising text");
    memcpy(cur, in, len);
    cur[len] = 0;
    size_t cur_len = len;
    for (int i = 0; i < n; i++) {
        const norm_step *st = &steps[i];
        char *next = NULL;
        size_t next_len = 0;
        if (st->type == NORM_LOWERCASE) {
            next = malloc(4 * cur_len + 1);
            for (size_t k = 0; next && k < cur_len;) {
                uint32_t cp;
                int l = utf8_decode((const unsigned char *)cur + k, cur_len - k, &cp);
                next_len += (size_t)utf8_encode((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), next + next_len);
                k += (size_t)(l ? l : 1);
            }
            if (next) next[next_len] = 0;
        } else if (st->type < NORM_LOWERCASE) {
            int opt = UTF8PROC_STABLE;
            switch (st->type) {
            case NORM_NFC: opt |= UTF8PROC_COMPOSE; break;
            case NORM_NFD: opt |= UTF8PROC_DECOMPOSE; break;
            case NORM_NFKC: opt |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
            default: opt |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
            }
            utf8proc_uint8_t *r = NULL;
            utf8proc_ssize_t rl = cur_len ? utf8proc_map((const utf8proc_uint8_t *)cur, (utf8proc_ssize_t)cur_len, &r,
                                                         (utf8proc_option_t)opt)
                                          : 0;
            if (rl < 0) {
                free(cur);
                return lc_error(LC_ERR_ARG, "normalizer: %s", utf8proc_errmsg(rl));
            }
            if (!r) r = calloc(1, 1);
            next = (char *)r;
            next_len = (size_t)rl;
        } else if (st->type == NORM_REPLACE) {
            lc_status s = replace_all(st, cur, cur_len, &next, &next_len);
            if (s) {
                free(cur);
                return s;
            }
        } else if (st->type == NORM_PREPEND) {
            size_t pl = strlen(st->content);
            next = malloc(pl + cur_len + 1);
            if (next && cur_len) {
                memcpy(next, st->content, pl);
                memcpy(next + pl, cur, cur_len + 1);
                next_len = pl + cur_len;
            } else if (next) {
                next[0] = 0; /* HF prepends only to non-empty strings */
            }
        } else { /* STRIP */
            size_t a = 0, b = cur_len;
            while (st->left && a < b && (cur[a] == ' ' || cur[a] == '\t' || cur[a] == '\n' || cur[a] == '\r')) a++;
            while (st->right && b > a && (cur[b - 1] == ' ' || cur[b - 1] == '\t' || cur[b - 1] == '\n' || cur[b - 1] == '\r')) b--;
            next = malloc(b - a + 1);
            if (next) {
                memcpy(next, cur + a, b - a);
                next[b - a] = 0;
                next_len = b - a;
            }
        }
        free(cur);
        if (!next) return lc_error(LC_ERR_NOMEM, "out of memory normalising text");
        cur = next;
        cur_len = next_len;
    }
    *out = cur;
    *out_len = cur_len;
    return LC_OK;
}

/* One segment of a piece: [a, b) and whether it is a regex match. */
typedef struct {
    size_t a, b;
    int match;
} seg;

/* Splits s[0..n) into match / gap segments covering it (HF Pattern::find_matches). */
static lc_status find_matches(const pcre2_code *re, const char *s, size_t n, seg **out, size_t *n_out) {
    size_t cap = 16, k = 0, prev = 0, pos = 0;
    seg *v = malloc(cap * sizeof *v);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!v || !md) {
        free(v);
        if (md) pcre2_match_data_free(md);
        return lc_error(LC_ERR_NOMEM, "out of memory splitting text");
    }
    lc_status st = LC_OK;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t a = ov[0], b = ov[1];
        if (k + 2 >= cap) {
            seg *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                st = lc_error(LC_ERR_NOMEM, "out of memory splitting text");
                break;
            }
            v = nv;
        }
        if (prev != a) v[k++] = (seg){prev, a, 0};
        v[k++] = (seg){a, b, 1};
        prev = b;
        if (b == a) { /* empty match: step over one character */
            if (a >= n) break;
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)s + a, n - a, &cp);
            pos = a + (size_t)(l ? l : 1);
        } else pos = b;
    }
    pcre2_match_data_free(md);
    if (!st && prev != n) {
        if (k + 1 >= cap) {
            seg *nv = realloc(v, (cap + 1) * sizeof *v);
            if (!nv) st = lc_error(LC_ERR_NOMEM, "out of memory splitting text");
            else v = nv;
        }
        if (!st) v[k++] = (seg){prev, n, 0};
    }
    if (st) {
        free(v);
        return st;
    }
    *out = v;
    *n_out = k;
    return LC_OK;
}

/* Applies an HF SplitDelimiterBehavior to the segments of one piece and pushes the results. */
static lc_status split_piece(const char *s, seg *v, size_t k, split_behavior b, int invert, lc_pieces *out) {
    if (invert)
        for (size_t i = 0; i < k; i++) v[i].match = !v[i].match;
    /* merge into a list of (a, b, keep) following the Rust implementation */
    size_t m = 0;
    int prev_match = 0;
    switch (b) {
    case SPLIT_ISOLATED: m = k; break;
    case SPLIT_REMOVED:
        for (size_t i = 0; i < k; i++)
            if (!v[i].match) v[m++] = v[i];
        break;
    case SPLIT_MERGED_PREV:
        for (size_t i = 0; i < k; i++) {
            if (v[i].match && !prev_match && m > 0) v[m - 1].b = v[i].b;
            else v[m++] = v[i];
            prev_match = v[i].match;
        }
        break;
    case SPLIT_MERGED_NEXT: {
        /* right to left: a match joins the piece after it */
        size_t w = k;
        for (size_t i = k; i-- > 0;) {
            if (v[i].match && !prev_match && w < k) v[w].a = v[i].a;
            else v[--w] = v[i];
            prev_match = v[i].match;
        }
        memmove(v, v + w, (k - w) * sizeof *v);
        m = k - w;
        break;
    }
    case SPLIT_CONTIGUOUS:
        for (size_t i = 0; i < k; i++) {
            if (m > 0 && v[i].match == prev_match) v[m - 1].b = v[i].b;
            else v[m++] = v[i];
            prev_match = v[i].match;
        }
        break;
    }
    for (size_t i = 0; i < m; i++)
        if (v[i].b > v[i].a) {
            lc_status st = pieces_push(out, s + v[i].a, v[i].b - v[i].a);
            if (st) return st;
        }
    return LC_OK;
}

lc_status pretokenize_step(const pre_step *st, const lc_pieces *in, lc_pieces *out) {
    pieces_clear(out);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->buf + in->off[2 * i];
        size_t n = in->off[2 * i + 1] - in->off[2 * i];
        char *tmp = NULL;
        if (st->type == PRE_BYTELEVEL && st->add_prefix_space && n && s[0] != ' ') {
            tmp = malloc(n + 1);
            if (!tmp) return lc_error(LC_ERR_NOMEM, "out of memory pre-tokenizing");
            tmp[0] = ' ';
            memcpy(tmp + 1, s, n);
            s = tmp;
            n++;
        }
        lc_status r = LC_OK;
        if (!st->re) {
            r = pieces_push(out, s, n); /* ByteLevel without regex: the byte mapping happens in BPE */
        } else {
            seg *v = NULL;
            size_t k = 0;
            r = find_matches(st->re, s, n, &v, &k);
            if (!r) {
                r = split_piece(s, v, k, st->behavior, st->invert, out);
                free(v);
            }
        }
        free(tmp);
        if (r) return r;
    }
    return LC_OK;
}
