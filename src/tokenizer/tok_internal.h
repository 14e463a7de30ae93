/* tok_internal.h — the tokenizer's parts (internal to src/tokenizer): the piece list that
 * flows through normalizers and pre-tokenizers, the component descriptions, the BPE model. */
#ifndef LC_TOK_INTERNAL_H
#define LC_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "../base/strmap.h"
#include "tokenizer.h"

/* A list of text pieces stored back to back in one buffer. */
typedef struct {
    char *buf;
    size_t len, cap;
    size_t *off; /* piece i is buf[off[2i] .. off[2i+1]) */
    size_t n, ncap;
} lc_pieces;

lc_status pieces_push(lc_pieces *p, const char *s, size_t n);
/* Appends to the last piece (or starts one). */
lc_status pieces_append_last(lc_pieces *p, const char *s, size_t n);
void pieces_clear(lc_pieces *p);
void pieces_free(lc_pieces *p);

/* ---- normalizers ---- */
typedef enum { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWERCASE, NORM_REPLACE, NORM_PREPEND, NORM_STRIP } norm_type;
typedef struct {
    norm_type type;
    char *pattern, *content; /* REPLACE (literal pattern) / PREPEND */
    pcre2_code *re;          /* REPLACE with a Regex pattern */
    int left, right;         /* STRIP */
} norm_step;

/* ---- pre-tokenizers ---- */
typedef enum { PRE_SPLIT, PRE_BYTELEVEL, PRE_DIGITS, PRE_WHITESPACE, PRE_WHITESPACE_SPLIT } pre_type;
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef struct {
    pre_type type;
    pcre2_code *re;         /* SPLIT / DIGITS / WHITESPACE*: what a match is */
    split_behavior behavior;
    int invert;
    int add_prefix_space;   /* BYTELEVEL */
} pre_step;

/* Normalises `in` (len bytes) through every step into out (a single piece). */
lc_status normalize_text(const norm_step *steps, int n, const char *in, size_t len, char **out, size_t *out_len);
/* Runs one pre-tokenizer over every piece of `in`, producing `out`. */
lc_status pretokenize_step(const pre_step *st, const lc_pieces *in, lc_pieces *out);
/* Compiles a regex with UTF + Unicode properties (and JIT where available). */
lc_status regex_compile(pcre2_code **re, const char *pattern, size_t len, const char *where);
void norm_steps_free(norm_step *s, int n);
void pre_steps_free(pre_step *s, int n);

/* ---- the BPE model ---- */
typedef struct {
    lc_strmap vocab;      /* piece -> id */
    lc_intmap merges;     /* (left << 32 | right) -> (rank << 32 | merged id) */
    int ignore_merges, byte_fallback, fuse_unk;
    int32_t unk_id;       /* -1: none */
    int32_t byte_ids[256];/* id of each byte's symbol (byte-level alphabet or <0xXX>), -1 if absent */
} bpe_model;

/* Encodes one pre-token (already byte-mapped when byte_level) into ids, appending to *ids. */
lc_status bpe_encode_word(const bpe_model *m, const char *word, size_t len, int byte_level,
                          int32_t **ids, int64_t *n, int64_t *cap);

/* GPT-2 byte <-> printable-unicode table: byte b is code point byte_to_cp[b]. */
extern const uint16_t lc_byte_to_cp[256];
int lc_cp_to_byte(uint32_t cp); /* -1 if cp is not in the table */
/* Maps raw bytes to the byte-level alphabet (UTF-8 of each mapped code point). */
size_t byte_level_map(const char *in, size_t n, char *out); /* out needs 2n bytes */

/* UTF-8 decode one code point at s (n bytes left); returns its length, 0 if invalid. */
int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
int utf8_encode(uint32_t cp, char *out);

#endif
