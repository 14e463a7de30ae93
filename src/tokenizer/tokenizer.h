/* tokenizer.h — Hugging Face tokenizer.json (byte-level BPE and friends): load, encode,
 * decode, stream-decode, plus tokenizer_config.json (bos/eos, add_bos_token, chat_template).
 * Knows nothing about models or sampling. */
#ifndef LC_TOKENIZER_H
#define LC_TOKENIZER_H

#include "../base/base.h"

typedef struct lc_tokenizer lc_tokenizer;

/* `path`: a folder holding tokenizer.json (and optionally tokenizer_config.json), or a
 * tokenizer.json file. Unknown component types are an error naming the JSON path. */
lc_status lc_tokenizer_load(lc_tokenizer **out, const char *path);
void lc_tokenizer_free(lc_tokenizer *t);

/* Encodes UTF-8 text. Added/special tokens in the text are recognised first. add_special
 * applies the post-processor (e.g. a TemplateProcessing BOS), as HF's add_special_tokens.
 * Invalid UTF-8 is defined behaviour: each invalid byte is replaced by U+FFFD first (like
 * Python's errors="replace"), so the result equals encoding the repaired string. */
lc_status lc_tokenizer_encode(const lc_tokenizer *t, const char *text, size_t len, int add_special,
                              int32_t **ids, int64_t *n_ids);
/* A prompt for generation: lc_tokenizer_encode with add_special, then the BOS id in front when
 * tokenizer_config.json's add_bos_token asks for it and the post-processor did not add it. */
lc_status lc_tokenizer_encode_prompt(const lc_tokenizer *t, const char *text, size_t len, int32_t **ids, int64_t *n_ids);
/* Decodes ids to UTF-8 (malloc'd, NUL-terminated). Flags: LC_DECODE_SKIP_SPECIAL drops
 * special tokens; the tokenizer_config's clean_up_tokenization_spaces (default true, as in
 * transformers/tokenizers.js: " ." -> "." ...) applies unless LC_DECODE_RAW. */
enum { LC_DECODE_SKIP_SPECIAL = 1, LC_DECODE_RAW = 2 };
lc_status lc_tokenizer_decode(const lc_tokenizer *t, const int32_t *ids, int64_t n, int flags,
                              char **text, size_t *len);

int64_t lc_tokenizer_vocab_size(const lc_tokenizer *t);     /* max id + 1 */
const char *lc_tokenizer_piece(const lc_tokenizer *t, int32_t id); /* the vocab string, NULL if none */
int32_t lc_tokenizer_find(const lc_tokenizer *t, const char *piece); /* -1 if absent */
int lc_tokenizer_is_special(const lc_tokenizer *t, int32_t id);
int32_t lc_tokenizer_bos(const lc_tokenizer *t); /* -1 if none */
int32_t lc_tokenizer_eos(const lc_tokenizer *t);
int lc_tokenizer_add_bos(const lc_tokenizer *t);  /* tokenizer_config add_bos_token */
const char *lc_tokenizer_chat_template(const lc_tokenizer *t); /* NULL if none */

/* Streaming decode: feed ids one at a time; never emits a partial UTF-8 character. */
typedef struct {
    const lc_tokenizer *t;
    int skip_special;
    char pending[16];
    int n_pending;
} lc_detok;
void lc_detok_init(lc_detok *d, const lc_tokenizer *t, int skip_special);
/* Appends the newly complete text for `id` to out (at most out_cap - 1 bytes + NUL); returns
 * the number of bytes written, or -1 when out_cap is too small. */
int64_t lc_detok_push(lc_detok *d, int32_t id, char *out, size_t out_cap);
/* Emits what is left at the end (incomplete bytes become U+FFFD). */
int64_t lc_detok_flush(lc_detok *d, char *out, size_t out_cap);

/* Replaces invalid UTF-8 sequences by U+FFFD; returns a new string. */
char *lc_utf8_repair(const char *s, size_t len, size_t *out_len);

#endif
