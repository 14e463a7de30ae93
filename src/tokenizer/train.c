/* train.c — byte-level BPE training: pre-tokenize the corpus with the same Split regex the
 * written tokenizer uses, count words, then repeatedly merge the most frequent adjacent pair
 * (ties: smallest ids), updating pair counts only for the words that contain it. */
#include "train.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "tok_internal.h"

/* Llama-3 / Qwen style split: contractions, letters, up to 3 digits, punctuation, spaces. */
static const char *k_split =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

static const char *k_specials[LC_TOK_N_SPECIAL] = {
    "<longcat_unk>", "<longcat_s>", "</longcat_s>", "<longcat_pad>",
    "<longcat_tool_call>", "</longcat_tool_call>", "<longcat_tool_response>", "</longcat_tool_response>",
};
static const int k_special_is_special[LC_TOK_N_SPECIAL] = {1, 1, 1, 1, 0, 0, 0, 0};

typedef struct {
    int32_t *sym;
    int32_t len;
    int64_t count;
} word;

static int64_t pair_key(int32_t a, int32_t b) { return ((int64_t)a << 32) | (uint32_t)b; }

static lc_status add_pairs(lc_intmap *pairs, const word *w, int64_t sign) {
    for (int32_t i = 0; i + 1 < w->len; i++) {
        int64_t k = pair_key(w->sym[i], w->sym[i + 1]), v = 0;
        lc_intmap_get(pairs, k, &v);
        lc_status s = lc_intmap_put(pairs, k, v + sign * w->count);
        if (s) return s;
    }
    return LC_OK;
}

/* Collects the words of the corpus with their counts. */
static lc_status count_words(const char *const *files, int n_files, lc_strmap *wmap, word **words, int64_t *n_words) {
    pre_step split = {.type = PRE_SPLIT, .behavior = SPLIT_ISOLATED};
    lc_status s = regex_compile(&split.re, k_split, strlen(k_split), "tokenizer train");
    if (s) return s;
    int64_t cap = 1024;
    *words = malloc((size_t)cap * sizeof **words);
    *n_words = 0;
    if (!*words) s = LC_ERR_NOMEM;
    lc_pieces in = {0}, out = {0};
    for (int f = 0; f < n_files && !s; f++) {
        char *text;
        size_t len;
        s = lc_read_file(files[f], &text, &len);
        if (s) break;
        size_t rl;
        char *fixed = lc_utf8_repair(text, len, &rl);
        free(text);
        if (!fixed) {
            s = LC_ERR_NOMEM;
            break;
        }
        pieces_clear(&in);
        s = pieces_push(&in, fixed, rl);
        free(fixed);
        if (!s) s = pretokenize_step(&split, &in, &out);
        for (size_t i = 0; i < out.n && !s; i++) {
            const char *p = out.buf + out.off[2 * i];
            size_t n = out.off[2 * i + 1] - out.off[2 * i];
            int64_t idx;
            if (lc_strmap_get(wmap, p, n, &idx)) {
                (*words)[idx].count++;
                continue;
            }
            if (*n_words == cap) {
                word *nw = realloc(*words, (size_t)(cap *= 2) * sizeof *nw);
                if (!nw) {
                    s = LC_ERR_NOMEM;
                    break;
                }
                *words = nw;
            }
            word *w = &(*words)[*n_words];
            w->sym = malloc(n * sizeof *w->sym);
            if (!w->sym) {
                s = LC_ERR_NOMEM;
                break;
            }
            for (size_t k = 0; k < n; k++) w->sym[k] = LC_TOK_N_SPECIAL + (unsigned char)p[k];
            w->len = (int32_t)n;
            w->count = 1;
            s = lc_strmap_put(wmap, p, n, (*n_words)++);
        }
    }
    pieces_free(&in);
    pieces_free(&out);
    pcre2_code_free(split.re);
    return s;
}

static lc_status write_tokenizer(const char *dir, char **tok_str, int64_t n_tok, const int32_t (*merges)[2], int64_t n_merges,
                                 const lc_bpe_train_options *o) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < LC_TOK_N_SPECIAL; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", i);
        cJSON_AddStringToObject(a, "content", k_specials[i]);
        cJSON_AddBoolToObject(a, "single_word", 0);
        cJSON_AddBoolToObject(a, "lstrip", 0);
        cJSON_AddBoolToObject(a, "rstrip", 0);
        cJSON_AddBoolToObject(a, "normalized", 0);
        cJSON_AddBoolToObject(a, "special", k_special_is_special[i]);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "Sequence");
    cJSON *pl = cJSON_AddArrayToObject(pre, "pretokenizers");
    cJSON *sp = cJSON_CreateObject();
    cJSON_AddStringToObject(sp, "type", "Split");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(sp, "pattern"), "Regex", k_split);
    cJSON_AddStringToObject(sp, "behavior", "Isolated");
    cJSON_AddBoolToObject(sp, "invert", 0);
    cJSON_AddItemToArray(pl, sp);
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", 0);
    cJSON_AddBoolToObject(bl, "trim_offsets", 1);
    cJSON_AddBoolToObject(bl, "use_regex", 0);
    cJSON_AddItemToArray(pl, bl);
    cJSON *post = cJSON_AddObjectToObject(root, "post_processor");
    cJSON_AddStringToObject(post, "type", "ByteLevel");
    cJSON_AddBoolToObject(post, "add_prefix_space", 0);
    cJSON_AddBoolToObject(post, "trim_offsets", 0);
    cJSON_AddBoolToObject(post, "use_regex", 0);
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", 0);
    cJSON_AddBoolToObject(dec, "trim_offsets", 1);
    cJSON_AddBoolToObject(dec, "use_regex", 0);
    cJSON *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddNullToObject(model, "dropout");
    cJSON_AddNullToObject(model, "unk_token");
    cJSON_AddNullToObject(model, "continuing_subword_prefix");
    cJSON_AddNullToObject(model, "end_of_word_suffix");
    cJSON_AddBoolToObject(model, "fuse_unk", 0);
    cJSON_AddBoolToObject(model, "byte_fallback", 0);
    cJSON_AddBoolToObject(model, "ignore_merges", 0);
    cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
    for (int64_t i = 0; i < n_tok; i++) cJSON_AddNumberToObject(vocab, tok_str[i], (double)i);
    cJSON *ml = cJSON_AddArrayToObject(model, "merges");
    for (int64_t i = 0; i < n_merges; i++) {
        cJSON *pair = cJSON_CreateArray();
        cJSON_AddItemToArray(pair, cJSON_CreateString(tok_str[merges[i][0]]));
        cJSON_AddItemToArray(pair, cJSON_CreateString(tok_str[merges[i][1]]));
        cJSON_AddItemToArray(ml, pair);
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    cJSON *cfg = cJSON_CreateObject();
    cJSON_AddBoolToObject(cfg, "add_bos_token", 0);
    cJSON_AddBoolToObject(cfg, "add_eos_token", 0);
    cJSON_AddStringToObject(cfg, "bos_token", k_specials[1]);
    cJSON_AddStringToObject(cfg, "eos_token", k_specials[2]);
    cJSON_AddStringToObject(cfg, "pad_token", k_specials[3]);
    cJSON_AddStringToObject(cfg, "unk_token", k_specials[0]);
    cJSON_AddBoolToObject(cfg, "clean_up_tokenization_spaces", 0);
    cJSON_AddNumberToObject(cfg, "model_max_length", (double)(o->max_position > 0 ? o->max_position : 4096));
    cJSON_AddStringToObject(cfg, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddStringToObject(cfg, "chat_template", lc_chat_template_jinja());
    char *ctext = cJSON_Print(cfg);
    cJSON_Delete(cfg);
    lc_status s = (text && ctext) ? LC_OK : lc_error(LC_ERR_NOMEM, "out of memory writing the tokenizer");
    const char *names[2] = {"tokenizer.json", "tokenizer_config.json"};
    const char *bodies[2] = {text, ctext};
    for (int i = 0; i < 2 && !s; i++) {
        char *path = lc_path_join(dir, names[i]);
        s = path ? lc_write_text(path, bodies[i]) : LC_ERR_NOMEM;
        free(path);
    }
    free(text);
    free(ctext);
    return s;
}

lc_status lc_bpe_train(const char *const *files, int n_files, const lc_bpe_train_options *o, const char *out_dir) {
    int64_t base = LC_TOK_N_SPECIAL + 256;
    if (o->vocab_size < base)
        return lc_error(LC_ERR_ARG, "tokenizer train: --vocab must be at least %lld (8 special tokens + 256 bytes)", (long long)base);
    lc_status s = lc_mkdirs(out_dir);
    if (s) return s;
    lc_strmap wmap;
    s = lc_strmap_init(&wmap, 1 << 16);
    if (s) return s;
    word *words = NULL;
    int64_t n_words = 0;
    double t0 = lc_time_sec();
    s = count_words(files, n_files, &wmap, &words, &n_words);
    lc_strmap_free(&wmap);
    int64_t n_merges_max = o->vocab_size - base, n_merges = 0, min_freq = o->min_frequency > 0 ? o->min_frequency : 2;
    int32_t (*merges)[2] = malloc((size_t)(n_merges_max ? n_merges_max : 1) * sizeof *merges);
    char **tok = calloc((size_t)o->vocab_size, sizeof *tok);
    size_t *tok_len = calloc((size_t)o->vocab_size, sizeof *tok_len);
    int32_t *scratch = NULL;
    lc_intmap pairs = {0};
    if (!s && (!merges || !tok || !tok_len)) s = LC_ERR_NOMEM;
    if (!s) s = lc_intmap_init(&pairs, 1 << 16);
    /* strings of the initial ids */
    for (int i = 0; i < LC_TOK_N_SPECIAL && !s; i++) {
        tok[i] = lc_strdup(k_specials[i]);
        tok_len[i] = strlen(k_specials[i]);
    }
    for (int b = 0; b < 256 && !s; b++) {
        tok[LC_TOK_N_SPECIAL + b] = malloc(4);
        tok_len[LC_TOK_N_SPECIAL + b] = (size_t)utf8_encode(lc_byte_to_cp[b], tok[LC_TOK_N_SPECIAL + b]);
        tok[LC_TOK_N_SPECIAL + b][tok_len[LC_TOK_N_SPECIAL + b]] = 0;
    }
    int64_t longest = 0;
    for (int64_t i = 0; i < n_words && !s; i++) {
        s = add_pairs(&pairs, &words[i], 1);
        longest = LC_MAX(longest, words[i].len);
    }
    scratch = malloc((size_t)(longest ? longest : 1) * sizeof *scratch);
    if (!scratch && !s) s = LC_ERR_NOMEM;
    while (!s && n_merges < n_merges_max) {
        int64_t best_key = 0, best = 0;
        for (size_t i = 0; i < pairs.cap; i++)
            if (pairs.key[i] != INT64_MIN && (pairs.val[i] > best || (pairs.val[i] == best && best > 0 && pairs.key[i] < best_key))) {
                best = pairs.val[i];
                best_key = pairs.key[i];
            }
        if (best < min_freq) break;
        int32_t a = (int32_t)(best_key >> 32), b = (int32_t)(best_key & 0xffffffff), id = (int32_t)(base + n_merges);
        merges[n_merges][0] = a;
        merges[n_merges][1] = b;
        tok_len[id] = tok_len[a] + tok_len[b];
        tok[id] = malloc(tok_len[id] + 1);
        if (!tok[id]) {
            s = LC_ERR_NOMEM;
            break;
        }
        memcpy(tok[id], tok[a], tok_len[a]);
        memcpy(tok[id] + tok_len[a], tok[b], tok_len[b] + 1);
        n_merges++;
        for (int64_t i = 0; i < n_words && !s; i++) {
            word *w = &words[i];
            int has = 0;
            for (int32_t k = 0; k + 1 < w->len && !has; k++) has = w->sym[k] == a && w->sym[k + 1] == b;
            if (!has) continue;
            s = add_pairs(&pairs, w, -1);
            int32_t n = 0;
            for (int32_t k = 0; k < w->len; k++) {
                if (k + 1 < w->len && w->sym[k] == a && w->sym[k + 1] == b) {
                    scratch[n++] = id;
                    k++;
                } else scratch[n++] = w->sym[k];
            }
            memcpy(w->sym, scratch, (size_t)n * sizeof *scratch);
            w->len = n;
            if (!s) s = add_pairs(&pairs, w, 1);
        }
        if (o->verbose && n_merges % 500 == 0)
            fprintf(stderr, "tokenizer train: %lld/%lld merges, last \"%s\" (%lld times)\n", (long long)n_merges,
                    (long long)n_merges_max, tok[id], (long long)best);
    }
    if (!s) s = write_tokenizer(out_dir, tok, base + n_merges, (const int32_t(*)[2])merges, n_merges, o);
    if (!s && o->verbose)
        fprintf(stderr, "tokenizer train: %lld distinct words, vocab %lld (%lld merges) in %.2f s\n", (long long)n_words,
                (long long)(base + n_merges), (long long)n_merges, lc_time_sec() - t0);
    for (int64_t i = 0; i < n_words; i++) free(words[i].sym);
    free(words);
    for (int64_t i = 0; tok && i < o->vocab_size; i++) free(tok[i]);
    free(tok);
    free(tok_len);
    free(merges);
    free(scratch);
    lc_intmap_free(&pairs);
    return s;
}
