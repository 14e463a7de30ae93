/* bpe.c — the BPE model: the GPT-2 byte-level alphabet and the merge loop (lowest rank first,
 * leftmost on ties, as the reference Rust implementation). Vocab/merge loading is in
 * tokenizer.c; splitting text into words happens before this. */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

const uint16_t lc_byte_to_cp[256] = {
    256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
    272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
    288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
    48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
    64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
    80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
    96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
    112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
    290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
    306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
    322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
    176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
    192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
    208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
    224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
    240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,};

/* The inverse table: code point -> byte, -1 where no byte maps (a constant: no lazy init). */
static const int16_t k_cp_to_byte[324] = {
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71,
    72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89,
    90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107,
    108, 109, 110, 111, 112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125,
    126, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
    -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 161,
    162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, -1, 174, 175, 176, 177, 178, 179,
    180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191, 192, 193, 194, 195, 196, 197,
    198, 199, 200, 201, 202, 203, 204, 205, 206, 207, 208, 209, 210, 211, 212, 213, 214, 215,
    216, 217, 218, 219, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233,
    234, 235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251,
    252, 253, 254, 255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
    14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31,
    32, 127, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 138, 139, 140, 141, 142, 143,
    144, 145, 146, 147, 148, 149, 150, 151, 152, 153, 154, 155, 156, 157, 158, 159, 160, 173,
};

int lc_cp_to_byte(uint32_t cp) { return cp < 324 ? k_cp_to_byte[cp] : -1; }

size_t byte_level_map(const char *in, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += (size_t)utf8_encode(lc_byte_to_cp[(unsigned char)in[i]], out + k);
    return k;
}

typedef struct {
    int32_t id, prev, next, alive;
} symbol;

typedef struct {
    uint32_t rank;
    int32_t pos, new_id;
} merge_cand;

/* min-heap on (rank, pos) */
static int cand_less(const merge_cand *a, const merge_cand *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(merge_cand *h, int64_t *n, merge_cand c) {
    int64_t i = (*n)++;
    h[i] = c;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!cand_less(&h[i], &h[p])) break;
        merge_cand t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static merge_cand heap_pop(merge_cand *h, int64_t *n) {
    merge_cand top = h[0];
    h[0] = h[--*n];
    for (int64_t i = 0;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < *n && cand_less(&h[l], &h[m])) m = l;
        if (r < *n && cand_less(&h[r], &h[m])) m = r;
        if (m == i) break;
        merge_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
    return top;
}

static int lookup_merge(const bpe_model *m, int32_t a, int32_t b, uint32_t *rank, int32_t *new_id) {
    int64_t v;
    if (a < 0 || b < 0 || !lc_intmap_get(&m->merges, ((int64_t)a << 32) | (uint32_t)b, &v)) return 0;
    *rank = (uint32_t)(v >> 32);
    *new_id = (int32_t)(v & 0xffffffff);
    return 1;
}

static lc_status push_id(int32_t **ids, int64_t *n, int64_t *cap, int32_t id) {
    if (*n + 1 > *cap) {
        int64_t c = *cap ? 2 * *cap : 64;
        int32_t *p = realloc(*ids, (size_t)c * sizeof *p);
        if (!p) return lc_error(LC_ERR_NOMEM, "out of memory for token ids");
        *ids = p;
        *cap = c;
    }
    (*ids)[(*n)++] = id;
    return LC_OK;
}

lc_status bpe_encode_word(const bpe_model *m, const char *word, size_t len, int byte_level, int32_t **ids,
                          int64_t *n, int64_t *cap) {
    if (len == 0) return LC_OK;
    if (m->ignore_merges) {
        /* the whole word is a token: no merging needed */
        char stackbuf[512], *mapped = stackbuf;
        size_t ml = len;
        if (byte_level) {
            if (2 * len > sizeof stackbuf && !(mapped = malloc(2 * len))) return lc_error(LC_ERR_NOMEM, "out of memory");
            ml = byte_level_map(word, len, mapped);
        } else mapped = (char *)word;
        int64_t id;
        int hit = lc_strmap_get(&m->vocab, mapped, ml, &id);
        if (byte_level && mapped != stackbuf) free(mapped);
        if (hit) return push_id(ids, n, cap, (int32_t)id);
    }
    symbol *sym = malloc(len * sizeof *sym); /* at most one symbol per byte */
    if (!sym) return lc_error(LC_ERR_NOMEM, "out of memory for BPE symbols");
    int32_t ns = 0;
    for (size_t i = 0; i < len;) {
        int32_t id = -1;
        size_t step = 1;
        if (byte_level) {
            id = m->byte_ids[(unsigned char)word[i]];
        } else {
            uint32_t cp;
            int l = utf8_decode((const unsigned char *)word + i, len - i, &cp);
            step = (size_t)(l ? l : 1);
            int64_t v;
            if (lc_strmap_get(&m->vocab, word + i, step, &v)) id = (int32_t)v;
            else if (m->byte_fallback) {
                for (size_t k = 0; k < step; k++) sym[ns++] = (symbol){m->byte_ids[(unsigned char)word[i + k]], 0, 0, 1};
                i += step;
                continue;
            }
        }
        if (id < 0) {
            id = m->unk_id;
            if (id >= 0 && m->fuse_unk && ns > 0 && sym[ns - 1].id == id) {
                i += step;
                continue;
            }
        }
        sym[ns++] = (symbol){id, 0, 0, 1};
        i += step;
    }
    for (int32_t i = 0; i < ns; i++) {
        sym[i].prev = i - 1;
        sym[i].next = i + 1 < ns ? i + 1 : -1;
    }
    merge_cand *heap = malloc((size_t)(ns > 0 ? 2 * ns : 1) * sizeof *heap);
    if (!heap) {
        free(sym);
        return lc_error(LC_ERR_NOMEM, "out of memory for BPE merges");
    }
    int64_t nh = 0;
    for (int32_t i = 0; i + 1 < ns; i++) {
        merge_cand c = {0, i, 0};
        if (lookup_merge(m, sym[i].id, sym[i + 1].id, &c.rank, &c.new_id)) heap_push(heap, &nh, c);
    }
    while (nh > 0) {
        merge_cand c = heap_pop(heap, &nh);
        symbol *a = &sym[c.pos];
        if (!a->alive || a->next < 0) continue;
        symbol *b = &sym[a->next];
        uint32_t rank;
        int32_t new_id;
        if (!lookup_merge(m, a->id, b->id, &rank, &new_id) || new_id != c.new_id) continue; /* stale */
        a->id = new_id;
        b->alive = 0;
        a->next = b->next;
        if (b->next >= 0) sym[b->next].prev = c.pos;
        /* the heap stays below 2 * ns: each merge pops one candidate and pushes at most two */
        if (a->prev >= 0) {
            merge_cand d = {0, a->prev, 0};
            if (lookup_merge(m, sym[a->prev].id, a->id, &d.rank, &d.new_id)) heap_push(heap, &nh, d);
        }
        if (a->next >= 0) {
            merge_cand d = {0, c.pos, 0};
            if (lookup_merge(m, a->id, sym[a->next].id, &d.rank, &d.new_id)) heap_push(heap, &nh, d);
        }
    }
    lc_status st = LC_OK;
    for (int32_t i = 0; i < ns && !st; i = sym[i].next) {
        if (sym[i].id < 0) {
            st = lc_error(LC_ERR_ARG, "tokenizer: a character of \"%.*s\" is not in the vocabulary and there is no unk token",
                          (int)LC_MIN(len, 40), word);
            break;
        }
        st = push_id(ids, n, cap, sym[i].id);
        if (sym[i].next < 0) break;
    }
    free(heap);
    free(sym);
    return st;
}
