/* tokenizer.c — loading tokenizer.json / tokenizer_config.json into the component pipeline
 * (added tokens -> normalizers -> pre-tokenizers -> BPE -> post-processor; decoders), and
 * encode / decode / streaming decode. The merge loop is in bpe.c; normalizers and splitting
 * in pretokenize.c. */
#include "tok_internal.h"

#include "../io/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *content;
    size_t len;
    int32_t id;
    int special, lstrip, rstrip, single_word;
} added_token;

typedef enum { DEC_BYTELEVEL, DEC_REPLACE, DEC_STRIP, DEC_FUSE, DEC_BYTEFALLBACK, DEC_METASPACE } dec_type;
typedef struct {
    dec_type type;
    char *pattern, *content; /* REPLACE; METASPACE replacement in pattern */
    int start, stop;         /* STRIP: chars removed at start/end; METASPACE: start = strip first space */
} dec_step;

struct lc_tokenizer {
    bpe_model bpe;
    char **piece;             /* id -> token string (vocab and added) */
    size_t *piece_len;
    unsigned char *special;   /* id -> special added token */
    int64_t n_ids;
    norm_step *norm;
    int n_norm;
    pre_step *pre;
    int n_pre, byte_level;
    added_token *added;       /* sorted by first byte, then longest first */
    int n_added, added_first[257];
    int32_t *tpl_before, *tpl_after; /* TemplateProcessing ids around $A */
    int n_before, n_after;
    dec_step *dec;
    int n_dec, has_decoder;
    int32_t bos, eos;
    int add_bos, cleanup;
    char *chat_template;
};

/* ---------------------------------------------------------------- loading */

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

/* A {"String": s} or {"Regex": r} pattern as a regex (literal strings escaped). */
static lc_status pattern_regex(const cJSON *pat, pcre2_code **re, char **literal, const char *where) {
    const char *rx = jstr(pat, "Regex"), *lit = jstr(pat, "String");
    if (rx) return regex_compile(re, rx, strlen(rx), where);
    if (!lit) return lc_error(LC_ERR_FORMAT, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}", where);
    if (literal) {
        *literal = lc_strdup(lit);
        return *literal ? LC_OK : LC_ERR_NOMEM;
    }
    size_t n = strlen(lit);
    char *esc = malloc(2 * n + 1), *q = esc;
    if (!esc) return LC_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (strchr("\\^$.|?*+()[]{}-/", lit[i])) *q++ = '\\';
        *q++ = lit[i];
    }
    lc_status s = regex_compile(re, esc, (size_t)(q - esc), where);
    free(esc);
    return s;
}

/* A {"type": "Sequence", list_key: [...]} component: each element through `fn`, with its JSON
 * path for messages. */
typedef lc_status (*component_parser)(lc_tokenizer *t, const cJSON *j, const char *where);
static lc_status parse_sequence(lc_tokenizer *t, const cJSON *j, const char *list_key, const char *where,
                                component_parser fn) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(j, list_key);
    char w[256];
    int i = 0;
    for (const cJSON *c = list ? list->child : NULL; c; c = c->next, i++) {
        snprintf(w, sizeof w, "%s.%s[%d]", where, list_key, i);
        lc_status s = fn(t, c, w);
        if (s) return s;
    }
    return LC_OK;
}

static lc_status parse_normalizer(lc_tokenizer *t, const cJSON *j, const char *where) {
    if (!j || cJSON_IsNull(j)) return LC_OK;
    const char *type = jstr(j, "type");
    if (!type) return lc_error(LC_ERR_FORMAT, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) return parse_sequence(t, j, "normalizers", where, parse_normalizer);
    norm_step st = {0};
    if (!strcmp(type, "NFC")) st.type = NORM_NFC;
    else if (!strcmp(type, "NFD")) st.type = NORM_NFD;
    else if (!strcmp(type, "NFKC")) st.type = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) st.type = NORM_NFKD;
    else if (!strcmp(type, "Lowercase")) st.type = NORM_LOWERCASE;
    else if (!strcmp(type, "Replace")) {
        st.type = NORM_REPLACE;
        const char *c = jstr(j, "content");
        lc_status s = pattern_regex(cJSON_GetObjectItemCaseSensitive(j, "pattern"), &st.re,
                                    jstr(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String") ? &st.pattern : NULL, where);
        if (s) return s;
        st.content = lc_strdup(c ? c : "");
    } else if (!strcmp(type, "Prepend")) {
        st.type = NORM_PREPEND;
        const char *c = jstr(j, "prepend");
        st.content = lc_strdup(c ? c : "");
    } else if (!strcmp(type, "Strip")) {
        st.type = NORM_STRIP;
        st.left = jbool(j, "strip_left", 1);
        st.right = jbool(j, "strip_right", 1);
    } else
        return lc_error(LC_ERR_UNSUPPORTED, "%s: normalizer type \"%s\" is not supported", where, type);
    norm_step *n = realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *n);
    if (!n) return LC_ERR_NOMEM;
    t->norm = n;
    t->norm[t->n_norm++] = st;
    return LC_OK;
}

#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static lc_status parse_pretokenizer(lc_tokenizer *t, const cJSON *j, const char *where) {
    if (!j || cJSON_IsNull(j)) return LC_OK;
    const char *type = jstr(j, "type");
    if (!type) return lc_error(LC_ERR_FORMAT, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) return parse_sequence(t, j, "pretokenizers", where, parse_pretokenizer);
    pre_step st = {0};
    lc_status s = LC_OK;
    if (!strcmp(type, "Split")) {
        st.type = PRE_SPLIT;
        s = pattern_regex(cJSON_GetObjectItemCaseSensitive(j, "pattern"), &st.re, NULL, where);
        const char *b = jstr(j, "behavior");
        if (!b) b = "Isolated";
        if (!strcmp(b, "Removed")) st.behavior = SPLIT_REMOVED;
        else if (!strcmp(b, "Isolated")) st.behavior = SPLIT_ISOLATED;
        else if (!strcmp(b, "MergedWithPrevious")) st.behavior = SPLIT_MERGED_PREV;
        else if (!strcmp(b, "MergedWithNext")) st.behavior = SPLIT_MERGED_NEXT;
        else if (!strcmp(b, "Contiguous")) st.behavior = SPLIT_CONTIGUOUS;
        else if (!s) s = lc_error(LC_ERR_FORMAT, "%s.behavior: unknown split behavior \"%s\"", where, b);
        st.invert = jbool(j, "invert", 0);
    } else if (!strcmp(type, "ByteLevel")) {
        st.type = PRE_BYTELEVEL;
        st.add_prefix_space = jbool(j, "add_prefix_space", 1);
        st.behavior = SPLIT_ISOLATED;
        if (jbool(j, "use_regex", 1)) s = regex_compile(&st.re, GPT2_PATTERN, strlen(GPT2_PATTERN), where);
        t->byte_level = 1;
    } else if (!strcmp(type, "Digits")) {
        st.type = PRE_DIGITS;
        int each = jbool(j, "individual_digits", 0);
        st.behavior = each ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        s = regex_compile(&st.re, "\\p{N}", 5, where);
    } else if (!strcmp(type, "Whitespace")) {
        st.type = PRE_WHITESPACE;
        st.behavior = SPLIT_REMOVED;
        st.invert = 1;
        s = regex_compile(&st.re, "\\w+|[^\\w\\s]+", 12, where);
    } else if (!strcmp(type, "WhitespaceSplit")) {
        st.type = PRE_WHITESPACE_SPLIT;
        st.behavior = SPLIT_REMOVED;
        s = regex_compile(&st.re, "\\s+", 3, where);
    } else
        return lc_error(LC_ERR_UNSUPPORTED, "%s: pre-tokenizer type \"%s\" is not supported", where, type);
    if (s) {
        if (st.re) pcre2_code_free(st.re);
        return s;
    }
    pre_step *n = realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *n);
    if (!n) return LC_ERR_NOMEM;
    t->pre = n;
    t->pre[t->n_pre++] = st;
    return LC_OK;
}

static int32_t token_id(const lc_tokenizer *t, const char *s) {
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, s)) return t->added[i].id;
    int64_t v;
    return lc_strmap_get(&t->bpe.vocab, s, strlen(s), &v) ? (int32_t)v : -1;
}

static lc_status parse_post(lc_tokenizer *t, const cJSON *j, const char *where) {
    if (!j || cJSON_IsNull(j)) return LC_OK;
    const char *type = jstr(j, "type");
    if (!type) return lc_error(LC_ERR_FORMAT, "%s: missing \"type\"", where);
    if (!strcmp(type, "ByteLevel")) return LC_OK; /* only adjusts offsets */
    if (!strcmp(type, "Sequence")) return parse_sequence(t, j, "processors", where, parse_post);
    if (strcmp(type, "TemplateProcessing"))
        return lc_error(LC_ERR_UNSUPPORTED, "%s: post-processor type \"%s\" is not supported", where, type);
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(j, "single");
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(j, "special_tokens");
    int after = 0;
    for (const cJSON *it = single ? single->child : NULL; it; it = it->next) {
        if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) {
            after = 1;
            continue;
        }
        const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
        const char *name = sp ? jstr(sp, "id") : NULL;
        if (!name) return lc_error(LC_ERR_FORMAT, "%s.single: items must be Sequence or SpecialToken", where);
        const cJSON *def = cJSON_GetObjectItemCaseSensitive(specials, name);
        const cJSON *ids = def ? cJSON_GetObjectItemCaseSensitive(def, "ids") : NULL;
        int n = cJSON_GetArraySize(ids);
        if (!cJSON_IsArray(ids) || n == 0) {
            int32_t id = token_id(t, name);
            if (id < 0) return lc_error(LC_ERR_FORMAT, "%s: special token \"%s\" is not defined", where, name);
            n = 1;
            int32_t **arr = after ? &t->tpl_after : &t->tpl_before;
            int *cnt = after ? &t->n_after : &t->n_before;
            int32_t *p = realloc(*arr, (size_t)(*cnt + 1) * sizeof *p);
            if (!p) return LC_ERR_NOMEM;
            p[(*cnt)++] = id;
            *arr = p;
            continue;
        }
        for (const cJSON *v = ids->child; v; v = v->next) {
            int32_t **arr = after ? &t->tpl_after : &t->tpl_before;
            int *cnt = after ? &t->n_after : &t->n_before;
            int32_t *p = realloc(*arr, (size_t)(*cnt + 1) * sizeof *p);
            if (!p) return LC_ERR_NOMEM;
            p[(*cnt)++] = (int32_t)v->valuedouble;
            *arr = p;
        }
    }
    return LC_OK;
}

static lc_status parse_decoder(lc_tokenizer *t, const cJSON *j, const char *where) {
    if (!j || cJSON_IsNull(j)) return LC_OK;
    t->has_decoder = 1;
    const char *type = jstr(j, "type");
    if (!type) return lc_error(LC_ERR_FORMAT, "%s: missing \"type\"", where);
    if (!strcmp(type, "Sequence")) return parse_sequence(t, j, "decoders", where, parse_decoder);
    dec_step d = {0};
    if (!strcmp(type, "ByteLevel")) d.type = DEC_BYTELEVEL;
    else if (!strcmp(type, "Fuse")) d.type = DEC_FUSE;
    else if (!strcmp(type, "ByteFallback")) d.type = DEC_BYTEFALLBACK;
    else if (!strcmp(type, "Replace")) {
        d.type = DEC_REPLACE;
        const char *p = jstr(cJSON_GetObjectItemCaseSensitive(j, "pattern"), "String"), *c = jstr(j, "content");
        if (!p) return lc_error(LC_ERR_UNSUPPORTED, "%s: only String patterns are supported in the Replace decoder", where);
        d.pattern = lc_strdup(p);
        d.content = lc_strdup(c ? c : "");
    } else if (!strcmp(type, "Strip")) {
        d.type = DEC_STRIP;
        const char *c = jstr(j, "content");
        d.content = lc_strdup(c ? c : " ");
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start"), *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
        d.start = cJSON_IsNumber(a) ? (int)a->valuedouble : 0;
        d.stop = cJSON_IsNumber(b) ? (int)b->valuedouble : 0;
    } else if (!strcmp(type, "Metaspace")) {
        d.type = DEC_METASPACE;
        const char *r = jstr(j, "replacement");
        d.pattern = lc_strdup(r ? r : "\xE2\x96\x81");
        const char *scheme = jstr(j, "prepend_scheme");
        d.start = scheme ? strcmp(scheme, "never") != 0 : jbool(j, "add_prefix_space", 1);
    } else
        return lc_error(LC_ERR_UNSUPPORTED, "%s: decoder type \"%s\" is not supported", where, type);
    dec_step *n = realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *n);
    if (!n) return LC_ERR_NOMEM;
    t->dec = n;
    t->dec[t->n_dec++] = d;
    return LC_OK;
}

static lc_status set_piece(lc_tokenizer *t, int64_t id, const char *s, size_t n) {
    if (id >= t->n_ids) { /* grow geometrically: ids usually arrive in ascending order */
        int64_t cap = LC_MAX(id + 1, 2 * t->n_ids);
        char **p = realloc(t->piece, (size_t)cap * sizeof *p);
        if (p) t->piece = p;
        size_t *l = p ? realloc(t->piece_len, (size_t)cap * sizeof *l) : NULL;
        if (l) t->piece_len = l;
        unsigned char *sp = l ? realloc(t->special, (size_t)cap) : NULL;
        if (!sp) return lc_error(LC_ERR_NOMEM, "out of memory for the vocabulary");
        t->special = sp;
        for (int64_t i = t->n_ids; i < cap; i++) {
            t->piece[i] = NULL;
            t->piece_len[i] = 0;
            t->special[i] = 0;
        }
        t->n_ids = cap;
    }
    free(t->piece[id]);
    t->piece[id] = malloc(n + 1);
    if (!t->piece[id]) return LC_ERR_NOMEM;
    memcpy(t->piece[id], s, n);
    t->piece[id][n] = 0;
    t->piece_len[id] = n;
    return LC_OK;
}

static lc_status parse_model(lc_tokenizer *t, const cJSON *m, const char *path) {
    const char *type = jstr(m, "type");
    if (type && strcmp(type, "BPE"))
        return lc_error(LC_ERR_UNSUPPORTED, "%s: $.model.type \"%s\" is not supported (BPE only)", path, type);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(m, "vocab"), *merges = cJSON_GetObjectItemCaseSensitive(m, "merges");
    if (!cJSON_IsObject(vocab)) return lc_error(LC_ERR_FORMAT, "%s: $.model.vocab must be an object", path);
    if (merges && !cJSON_IsArray(merges)) return lc_error(LC_ERR_FORMAT, "%s: $.model.merges must be an array", path);
    for (const char *k = "continuing_subword_prefix"; k; k = strcmp(k, "end_of_word_suffix") ? "end_of_word_suffix" : NULL) {
        const char *v = jstr(m, k);
        if (v && v[0]) return lc_error(LC_ERR_UNSUPPORTED, "%s: $.model.%s \"%s\" is not supported", path, k, v);
    }
    bpe_model *b = &t->bpe;
    lc_status s = lc_strmap_init(&b->vocab, (size_t)cJSON_GetArraySize(vocab));
    if (!s) s = lc_intmap_init(&b->merges, (size_t)cJSON_GetArraySize(merges));
    if (s) return s;
    for (const cJSON *e = vocab->child; e && !s; e = e->next) {
        double d = e->valuedouble;
        if (!cJSON_IsNumber(e) || d < 0 || d >= 2147483647.0 || d != (double)(int64_t)d) {
            s = lc_error(LC_ERR_FORMAT, "%s: $.model.vocab[\"%s\"] is not a valid id", path, e->string);
            break;
        }
        s = lc_strmap_put(&b->vocab, e->string, strlen(e->string), (int64_t)d);
        if (!s) s = set_piece(t, (int64_t)d, e->string, strlen(e->string));
    }
    char buf[1024];
    int64_t rank = 0;
    for (const cJSON *e = merges ? merges->child : NULL; e && !s; e = e->next, rank++) {
        const char *a = NULL, *c = NULL;
        size_t la = 0, lc_ = 0;
        if (cJSON_IsString(e)) { /* "a b" */
            const char *sp = strchr(e->valuestring, ' ');
            if (sp && !strchr(sp + 1, ' ')) {
                a = e->valuestring;
                la = (size_t)(sp - a);
                c = sp + 1;
                lc_ = strlen(c);
            }
        } else if (cJSON_IsArray(e) && cJSON_GetArraySize(e) == 2 && cJSON_IsString(e->child) &&
                   cJSON_IsString(e->child->next)) { /* ["a", "b"] */
            a = e->child->valuestring;
            la = strlen(a);
            c = e->child->next->valuestring;
            lc_ = strlen(c);
        }
        if (!a || la + lc_ >= sizeof buf) {
            s = lc_error(LC_ERR_FORMAT, "%s: $.model.merges[%lld] must be \"a b\" or [\"a\", \"b\"]", path, (long long)rank);
            break;
        }
        int64_t ia, ib, im;
        memcpy(buf, a, la);
        memcpy(buf + la, c, lc_);
        if (!lc_strmap_get(&b->vocab, a, la, &ia) || !lc_strmap_get(&b->vocab, c, lc_, &ib) ||
            !lc_strmap_get(&b->vocab, buf, la + lc_, &im)) {
            s = lc_error(LC_ERR_FORMAT, "%s: $.model.merges[%lld] (\"%.*s\" + \"%.*s\") uses a token missing from the vocab",
                         path, (long long)rank, (int)la, a, (int)lc_, c);
            break;
        }
        int64_t key = (ia << 32) | ib, old;
        if (!lc_intmap_get(&b->merges, key, &old)) s = lc_intmap_put(&b->merges, key, (rank << 32) | im);
    }
    if (s) return s;
    b->ignore_merges = jbool(m, "ignore_merges", 0);
    b->byte_fallback = jbool(m, "byte_fallback", 0);
    b->fuse_unk = jbool(m, "fuse_unk", 0);
    const char *unk = jstr(m, "unk_token");
    int64_t v;
    b->unk_id = unk && lc_strmap_get(&b->vocab, unk, strlen(unk), &v) ? (int32_t)v : -1;
    return LC_OK;
}

static int cmp_added(const void *x, const void *y) {
    const added_token *a = x, *b = y;
    unsigned ca = a->len ? (unsigned char)a->content[0] : 0, cb = b->len ? (unsigned char)b->content[0] : 0;
    if (ca != cb) return ca < cb ? -1 : 1;
    return a->len != b->len ? (a->len > b->len ? -1 : 1) : 0;
}

static lc_status parse_added(lc_tokenizer *t, const cJSON *list, const char *path) {
    int n = cJSON_GetArraySize(list), i = 0;
    t->added = calloc((size_t)(n ? n : 1), sizeof *t->added);
    if (!t->added) return LC_ERR_NOMEM;
    for (const cJSON *e = list ? list->child : NULL; e; e = e->next, i++) {
        const char *c = jstr(e, "content");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        if (!c || !c[0] || !cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= 2147483647.0)
            return lc_error(LC_ERR_FORMAT, "%s: $.added_tokens[%d] needs a non-empty \"content\" and an \"id\"", path, i);
        added_token *a = &t->added[t->n_added++];
        a->content = lc_strdup(c);
        if (!a->content) return LC_ERR_NOMEM;
        a->len = strlen(c);
        a->id = (int32_t)id->valuedouble;
        a->special = jbool(e, "special", 0);
        a->lstrip = jbool(e, "lstrip", 0);
        a->rstrip = jbool(e, "rstrip", 0);
        a->single_word = jbool(e, "single_word", 0);
        lc_status s = set_piece(t, a->id, c, a->len);
        if (s) return s;
        t->special[a->id] = (unsigned char)a->special;
    }
    qsort(t->added, (size_t)t->n_added, sizeof *t->added, cmp_added);
    for (int b = 0, k = 0; b <= 256; b++) {
        while (k < t->n_added && (unsigned char)t->added[k].content[0] < b) k++;
        t->added_first[b] = k;
    }
    return LC_OK;
}

static lc_status load_config(lc_tokenizer *t, const char *path) {
    cJSON *root;
    lc_status s = lc_json_load(path, &root);
    if (s) return s;
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error(LC_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const char *keys[2] = {"bos_token", "eos_token"};
    int32_t *dst[2] = {&t->bos, &t->eos};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, keys[i]);
        const char *c = cJSON_IsString(v) ? v->valuestring : (cJSON_IsObject(v) ? jstr(v, "content") : NULL);
        if (c) *dst[i] = token_id(t, c);
        if (c && *dst[i] < 0) s = lc_error(LC_ERR_FORMAT, "%s: $.%s \"%s\" is not in the vocabulary", path, keys[i], c);
    }
    t->add_bos = jbool(root, "add_bos_token", 0);
    t->cleanup = jbool(root, "clean_up_tokenization_spaces", 1);
    const cJSON *ct = cJSON_GetObjectItemCaseSensitive(root, "chat_template");
    if (cJSON_IsString(ct)) t->chat_template = lc_strdup(ct->valuestring);
    else if (cJSON_IsArray(ct)) /* [{"name": "default", "template": ...}, ...] */
        for (const cJSON *e = ct->child; e && !t->chat_template; e = e->next) {
            const char *name = jstr(e, "name");
            if (!name || !strcmp(name, "default")) t->chat_template = lc_strdup(jstr(e, "template") ? jstr(e, "template") : "");
        }
    cJSON_Delete(root);
    return s;
}

void lc_tokenizer_free(lc_tokenizer *t) {
    if (!t) return;
    lc_strmap_free(&t->bpe.vocab);
    lc_intmap_free(&t->bpe.merges);
    for (int64_t i = 0; i < t->n_ids; i++) free(t->piece[i]);
    free(t->piece);
    free(t->piece_len);
    free(t->special);
    norm_steps_free(t->norm, t->n_norm);
    pre_steps_free(t->pre, t->n_pre);
    for (int i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    free(t->tpl_before);
    free(t->tpl_after);
    for (int i = 0; i < t->n_dec; i++) {
        free(t->dec[i].pattern);
        free(t->dec[i].content);
    }
    free(t->dec);
    free(t->chat_template);
    free(t);
}

lc_status lc_tokenizer_load(lc_tokenizer **out, const char *path) {
    *out = NULL;
    char *file = lc_is_dir(path) ? lc_path_join(path, "tokenizer.json") : lc_strdup(path);
    if (!file) return LC_ERR_NOMEM;
    char *text = NULL;
    size_t len;
    lc_status s = lc_read_file(file, &text, &len);
    cJSON *root = NULL;
    if (!s) {
        root = cJSON_ParseWithLength(text, len);
        if (!root || !cJSON_IsObject(root)) s = lc_error(LC_ERR_FORMAT, "%s: invalid JSON", file);
    }
    free(text);
    lc_tokenizer *t = s ? NULL : calloc(1, sizeof *t);
    if (!s && !t) s = LC_ERR_NOMEM;
    if (!s) {
        t->bos = t->eos = -1;
        t->cleanup = 1; /* transformers / tokenizers.js default when tokenizer_config says nothing */
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
        if (!cJSON_IsObject(model)) s = lc_error(LC_ERR_FORMAT, "%s: missing object $.model", file);
        if (!s) s = parse_model(t, model, file);
        if (!s) s = parse_added(t, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"), file);
        char where[600];
        snprintf(where, sizeof where, "%s: $.normalizer", file);
        if (!s) s = parse_normalizer(t, cJSON_GetObjectItemCaseSensitive(root, "normalizer"), where);
        snprintf(where, sizeof where, "%s: $.pre_tokenizer", file);
        if (!s) s = parse_pretokenizer(t, cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), where);
        snprintf(where, sizeof where, "%s: $.post_processor", file);
        if (!s) s = parse_post(t, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), where);
        snprintf(where, sizeof where, "%s: $.decoder", file);
        if (!s) s = parse_decoder(t, cJSON_GetObjectItemCaseSensitive(root, "decoder"), where);
    }
    if (!s) { /* the id space ends at the highest id actually defined */
        while (t->n_ids > 0 && !t->piece[t->n_ids - 1]) t->n_ids--;
    }
    if (!s) {
        /* the symbol of each byte: byte-level alphabet, else <0xXX> for byte fallback */
        for (int b = 0; b < 256; b++) {
            char buf[8];
            size_t n = t->byte_level ? (size_t)utf8_encode(lc_byte_to_cp[b], buf) : (size_t)snprintf(buf, sizeof buf, "<0x%02X>", b);
            int64_t v;
            t->bpe.byte_ids[b] = lc_strmap_get(&t->bpe.vocab, buf, n, &v) ? (int32_t)v : t->bpe.unk_id;
        }
        const char *slash = strrchr(file, '/');
        char *cfg = NULL;
        if (slash) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
            cfg = lc_path_join(dir, "tokenizer_config.json");
        } else cfg = lc_strdup("tokenizer_config.json");
        if (cfg && lc_file_exists(cfg)) s = load_config(t, cfg);
        free(cfg);
    }
    cJSON_Delete(root);
    free(file);
    if (s) lc_tokenizer_free(t);
    else *out = t;
    return s;
}

/* ---------------------------------------------------------------- encoding */

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static int is_word_byte(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z'); }

/* The longest added token at text[pos], or NULL. */
static const added_token *match_added(const lc_tokenizer *t, const char *text, size_t len, size_t pos) {
    unsigned char c = (unsigned char)text[pos];
    for (int i = t->added_first[c]; i < t->added_first[c + 1]; i++) {
        const added_token *a = &t->added[i];
        if (a->len > len - pos || memcmp(text + pos, a->content, a->len)) continue;
        if (a->single_word && ((pos > 0 && is_word_byte((unsigned char)text[pos - 1])) ||
                               (pos + a->len < len && is_word_byte((unsigned char)text[pos + a->len]))))
            continue;
        return a; /* sorted longest first */
    }
    return NULL;
}

typedef struct {
    int32_t *ids;
    int64_t n, cap;
} id_vec;

static lc_status encode_text(const lc_tokenizer *t, const char *s, size_t n, id_vec *out) {
    if (n == 0) return LC_OK;
    char *norm;
    size_t nl;
    lc_status st = normalize_text(t->norm, t->n_norm, s, n, &norm, &nl);
    if (st) return st;
    lc_pieces a = {0}, b = {0};
    st = pieces_push(&a, norm, nl);
    free(norm);
    for (int i = 0; i < t->n_pre && !st; i++) {
        st = pretokenize_step(&t->pre[i], &a, &b);
        lc_pieces tmp = a;
        a = b;
        b = tmp;
    }
    for (size_t i = 0; i < a.n && !st; i++)
        st = bpe_encode_word(&t->bpe, a.buf + a.off[2 * i], a.off[2 * i + 1] - a.off[2 * i], t->byte_level, &out->ids,
                             &out->n, &out->cap);
    pieces_free(&a);
    pieces_free(&b);
    return st;
}

static lc_status push(id_vec *v, int32_t id) {
    if (v->n + 1 > v->cap) {
        int64_t c = v->cap ? 2 * v->cap : 64;
        int32_t *p = realloc(v->ids, (size_t)c * sizeof *p);
        if (!p) return lc_error(LC_ERR_NOMEM, "out of memory for token ids");
        v->ids = p;
        v->cap = c;
    }
    v->ids[v->n++] = id;
    return LC_OK;
}

lc_status lc_tokenizer_encode(const lc_tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
                              int64_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    size_t rl;
    char *s = lc_utf8_repair(text, len, &rl);
    if (!s) return lc_error(LC_ERR_NOMEM, "out of memory encoding %zu bytes", len);
    id_vec v = {0};
    lc_status st = LC_OK;
    for (int i = 0; add_special && i < t->n_before && !st; i++) st = push(&v, t->tpl_before[i]);
    size_t start = 0, pos = 0;
    while (pos < rl && !st) {
        const added_token *a = t->n_added ? match_added(t, s, rl, pos) : NULL;
        if (!a) {
            pos++;
            continue;
        }
        size_t end = pos;
        if (a->lstrip)
            while (end > start && is_space(s[end - 1])) end--;
        st = encode_text(t, s + start, end - start, &v);
        if (!st) st = push(&v, a->id);
        pos += a->len;
        if (a->rstrip)
            while (pos < rl && is_space(s[pos])) pos++;
        start = pos;
    }
    if (!st) st = encode_text(t, s + start, rl - start, &v);
    for (int i = 0; add_special && i < t->n_after && !st; i++) st = push(&v, t->tpl_after[i]);
    free(s);
    if (st) {
        free(v.ids);
        return st;
    }
    *ids = v.ids ? v.ids : calloc(1, sizeof(int32_t));
    *n_ids = v.n;
    return LC_OK;
}

/* ---------------------------------------------------------------- decoding */

/* The bytes of the decoded token list ids[0..n): each token's string through the decoder
 * chain. `first` says whether ids[0] starts the text (Strip/Metaspace act at the start). */
static lc_status decode_bytes(const lc_tokenizer *t, const int32_t *ids, int64_t n, int skip_special, int first,
                              lc_pieces *out) {
    lc_pieces a = {0}, b = {0};
    lc_status st = LC_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_ids || !t->piece[ids[i]]) {
            st = lc_error(LC_ERR_ARG, "decode: token id %d is not in the vocabulary (size %lld)", ids[i], (long long)t->n_ids);
            break;
        }
        if (skip_special && t->special[ids[i]]) continue;
        if (!t->has_decoder && a.n) st = pieces_append_last(&a, " ", 1); /* no decoder: join with spaces */
        if (!st) st = t->has_decoder ? pieces_push(&a, t->piece[ids[i]], t->piece_len[ids[i]])
                                     : pieces_append_last(&a, t->piece[ids[i]], t->piece_len[ids[i]]);
    }
    for (int d = 0; d < t->n_dec && !st; d++) {
        const dec_step *ds = &t->dec[d];
        pieces_clear(&b);
        for (size_t i = 0; i < a.n && !st; i++) {
            const char *s = a.buf + a.off[2 * i];
            size_t n1 = a.off[2 * i + 1] - a.off[2 * i];
            switch (ds->type) {
            case DEC_BYTELEVEL: {
                /* every char back to its byte; a token with a char outside the table stays as is */
                char *tmp = malloc(n1 + 1);
                size_t k = 0, j = 0;
                int ok = tmp != NULL;
                while (ok && j < n1) {
                    uint32_t cp;
                    int l = utf8_decode((const unsigned char *)s + j, n1 - j, &cp);
                    int byte = l ? lc_cp_to_byte(cp) : -1;
                    if (byte < 0) ok = 0;
                    else tmp[k++] = (char)byte;
                    j += (size_t)(l ? l : 1);
                }
                st = ok ? pieces_push(&b, tmp, k) : pieces_push(&b, s, n1);
                free(tmp);
                break;
            }
            case DEC_REPLACE: {
                size_t pl = strlen(ds->pattern), cl = strlen(ds->content), j = 0;
                pieces_push(&b, "", 0);
                while (!st && j < n1) {
                    if (pl && j + pl <= n1 && !memcmp(s + j, ds->pattern, pl)) {
                        st = pieces_append_last(&b, ds->content, cl);
                        j += pl;
                    } else st = pieces_append_last(&b, s + j++, 1);
                }
                break;
            }
            case DEC_STRIP: {
                size_t a0 = 0, b0 = n1;
                char c = ds->content[0];
                for (int k = 0; k < ds->start && a0 < b0 && s[a0] == c; k++) a0++;
                for (int k = 0; k < ds->stop && b0 > a0 && s[b0 - 1] == c; k++) b0--;
                st = pieces_push(&b, s + a0, b0 - a0);
                break;
            }
            case DEC_FUSE: st = pieces_append_last(&b, s, n1); break;
            case DEC_BYTEFALLBACK: {
                unsigned v;
                char tail;
                if (n1 == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') {
                    char c = (char)v;
                    st = pieces_push(&b, &c, 1);
                } else st = pieces_push(&b, s, n1);
                break;
            }
            case DEC_METASPACE: {
                size_t rl = strlen(ds->pattern), j = 0;
                pieces_push(&b, "", 0);
                while (!st && j < n1) {
                    if (j + rl <= n1 && !memcmp(s + j, ds->pattern, rl)) {
                        if (!(ds->start && first && i == 0 && j == 0)) st = pieces_append_last(&b, " ", 1);
                        j += rl;
                    } else st = pieces_append_last(&b, s + j++, 1);
                }
                break;
            }
            }
        }
        lc_pieces tmp = a;
        a = b;
        b = tmp;
    }
    if (!st) {
        pieces_clear(out);
        for (size_t i = 0; i < a.n && !st; i++) st = pieces_append_last(out, a.buf + a.off[2 * i], a.off[2 * i + 1] - a.off[2 * i]);
        if (!st && out->n == 0) st = pieces_push(out, "", 0);
    }
    pieces_free(&a);
    pieces_free(&b);
    return st;
}

/* transformers' clean_up_tokenization: each replacement over the whole text, in this order. */
static void clean_up_spaces(char *s, size_t *len) {
    static const char *from[] = {" .", " ?", " !", " ,", " ' ", " n't", " 'm", " 's", " 've", " 're"};
    static const char *to[] = {".", "?", "!", ",", "'", "n't", "'m", "'s", "'ve", "'re"};
    for (int r = 0; r < 10; r++) {
        size_t fl = strlen(from[r]), tl = strlen(to[r]), w = 0;
        for (size_t i = 0; i < *len;) {
            if (i + fl <= *len && !memcmp(s + i, from[r], fl)) {
                memmove(s + w, to[r], tl);
                w += tl;
                i += fl;
            } else s[w++] = s[i++];
        }
        *len = w;
        s[w] = 0;
    }
}

lc_status lc_tokenizer_decode(const lc_tokenizer *t, const int32_t *ids, int64_t n, int flags, char **text,
                              size_t *len) {
    lc_pieces p = {0};
    lc_status st = decode_bytes(t, ids, n, flags & LC_DECODE_SKIP_SPECIAL, 1, &p);
    if (!st) {
        *text = lc_utf8_repair(p.buf, p.len, len); /* bytes that are not UTF-8 become U+FFFD */
        if (!*text) st = lc_error(LC_ERR_NOMEM, "out of memory decoding");
        else if (t->cleanup && !(flags & LC_DECODE_RAW)) clean_up_spaces(*text, len);
    }
    pieces_free(&p);
    return st;
}

void lc_detok_init(lc_detok *d, const lc_tokenizer *t, int skip_special) {
    memset(d, 0, sizeof *d);
    d->t = t;
    d->skip_special = skip_special;
}

/* Moves every complete UTF-8 character of pending+bytes to out; keeps an incomplete tail. */
static int64_t emit_utf8(lc_detok *d, const char *bytes, size_t n, char *out, size_t cap, int final) {
    size_t k = 0;
    char buf[16 + 4096];
    size_t total = 0;
    /* process pending first, then the new bytes, in chunks through buf */
    for (size_t src = 0; src < (size_t)d->n_pending + n;) {
        size_t take = 0;
        while (take < 4096 && src + take < (size_t)d->n_pending + n) {
            size_t i = src + take;
            buf[take++] = i < (size_t)d->n_pending ? d->pending[i] : bytes[i - (size_t)d->n_pending];
        }
        size_t i = 0;
        while (i < take) {
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)buf + i, take - i, &cp);
            if (l) {
                if (k + (size_t)l + 1 > cap) return -1;
                memcpy(out + k, buf + i, (size_t)l);
                k += (size_t)l;
                i += (size_t)l;
                continue;
            }
            /* incomplete at the very end (and more may come): keep it */
            unsigned char c = (unsigned char)buf[i];
            size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
            int could_complete = need && i + need > take && src + take == (size_t)d->n_pending + n && !final;
            for (size_t j = i + 1; could_complete && j < take; j++) could_complete = ((unsigned char)buf[j] & 0xC0) == 0x80;
            if (could_complete) {
                size_t rest = take - i;
                memmove(d->pending, buf + i, rest);
                d->n_pending = (int)rest;
                if (k < cap) out[k] = 0;
                return (int64_t)k;
            }
            if (k + 4 > cap) return -1;
            memcpy(out + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
        }
        src += take;
        total += take;
    }
    (void)total;
    d->n_pending = 0;
    if (k < cap) out[k] = 0;
    return (int64_t)k;
}

int64_t lc_detok_push(lc_detok *d, int32_t id, char *out, size_t out_cap) {
    lc_pieces p = {0};
    if (decode_bytes(d->t, &id, 1, d->skip_special, 0, &p)) {
        pieces_free(&p);
        return -1;
    }
    int64_t r = emit_utf8(d, p.buf, p.len, out, out_cap, 0);
    pieces_free(&p);
    return r;
}

int64_t lc_detok_flush(lc_detok *d, char *out, size_t out_cap) { return emit_utf8(d, "", 0, out, out_cap, 1); }

int64_t lc_tokenizer_vocab_size(const lc_tokenizer *t) { return t->n_ids; }
const char *lc_tokenizer_piece(const lc_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_ids ? t->piece[id] : NULL; }
int32_t lc_tokenizer_find(const lc_tokenizer *t, const char *piece) { return token_id(t, piece); }
int lc_tokenizer_is_special(const lc_tokenizer *t, int32_t id) { return id >= 0 && id < t->n_ids && t->special[id]; }
int32_t lc_tokenizer_bos(const lc_tokenizer *t) { return t->bos; }
int32_t lc_tokenizer_eos(const lc_tokenizer *t) { return t->eos; }
int lc_tokenizer_add_bos(const lc_tokenizer *t) { return t->add_bos; }
const char *lc_tokenizer_chat_template(const lc_tokenizer *t) { return t->chat_template; }

lc_status lc_tokenizer_encode_prompt(const lc_tokenizer *t, const char *text, size_t len, int32_t **ids, int64_t *n_ids) {
    lc_status st = lc_tokenizer_encode(t, text, len, 1, ids, n_ids);
    int32_t bos = lc_tokenizer_bos(t);
    if (st || !lc_tokenizer_add_bos(t) || bos < 0 || (*n_ids > 0 && (*ids)[0] == bos)) return st;
    int32_t *b = realloc(*ids, (size_t)(*n_ids + 1) * sizeof *b);
    if (!b) {
        free(*ids);
        *ids = NULL;
        return lc_error(LC_ERR_NOMEM, "out of memory encoding the prompt");
    }
    memmove(b + 1, b, (size_t)*n_ids * sizeof *b);
    b[0] = bos;
    *ids = b;
    (*n_ids)++;
    return LC_OK;
}
