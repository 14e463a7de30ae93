/* strmap.c — open-addressing hash maps (string -> int64, int64 -> int64) with linear
 * probing and growth at 50% load. */
#include "strmap.h"

#include <stdlib.h>
#include <string.h>

#define POOL_BLOCK (1u << 20)

uint64_t lc_hash_bytes(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001B3ull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h ? h : 1;
}

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

lc_status lc_strmap_init(lc_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(2 * expected + 1);
    m->hash = calloc(m->cap, sizeof *m->hash);
    m->klen = calloc(m->cap, sizeof *m->klen);
    m->key = calloc(m->cap, sizeof *m->key);
    m->val = calloc(m->cap, sizeof *m->val);
    if (!m->hash || !m->klen || !m->key || !m->val) {
        lc_strmap_free(m);
        return lc_error(LC_ERR_NOMEM, "out of memory for a hash map of %zu entries", expected);
    }
    return LC_OK;
}

void lc_strmap_free(lc_strmap *m) {
    for (char *b = m->pool; b;) {
        char *next;
        memcpy(&next, b, sizeof next);
        free(b);
        b = next;
    }
    free(m->hash);
    free(m->klen);
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

/* Key storage: blocks of POOL_BLOCK bytes; the first bytes of a block link to the previous. */
static char *pool_copy(lc_strmap *m, const char *key, size_t len) {
    static const size_t hdr = sizeof(char *) + sizeof(size_t);
    size_t used = 0;
    if (m->pool) memcpy(&used, m->pool + sizeof(char *), sizeof used);
    size_t block = len + 1 + hdr > POOL_BLOCK ? len + 1 + hdr : POOL_BLOCK;
    if (!m->pool || used + len + 1 > POOL_BLOCK) {
        char *b = malloc(block);
        if (!b) return NULL;
        memcpy(b, &m->pool, sizeof(char *));
        m->pool = b;
        used = hdr;
    }
    char *dst = m->pool + used;
    memcpy(dst, key, len);
    dst[len] = 0;
    used += len + 1;
    memcpy(m->pool + sizeof(char *), &used, sizeof used);
    return dst;
}

static size_t find_slot(const lc_strmap *m, uint64_t h, const char *key, size_t len) {
    size_t i = h & (m->cap - 1);
    while (m->hash[i] && !(m->hash[i] == h && m->klen[i] == len && !memcmp(m->key[i], key, len)))
        i = (i + 1) & (m->cap - 1);
    return i;
}

static lc_status grow(lc_strmap *m) {
    lc_strmap bigger = *m;
    bigger.cap = m->cap * 2;
    bigger.hash = calloc(bigger.cap, sizeof *bigger.hash);
    bigger.klen = calloc(bigger.cap, sizeof *bigger.klen);
    bigger.key = calloc(bigger.cap, sizeof *bigger.key);
    bigger.val = calloc(bigger.cap, sizeof *bigger.val);
    if (!bigger.hash || !bigger.klen || !bigger.key || !bigger.val) {
        free(bigger.hash);
        free(bigger.klen);
        free(bigger.key);
        free(bigger.val);
        return lc_error(LC_ERR_NOMEM, "out of memory growing a hash map");
    }
    for (size_t i = 0; i < m->cap; i++)
        if (m->hash[i]) {
            size_t j = find_slot(&bigger, m->hash[i], m->key[i], m->klen[i]);
            bigger.hash[j] = m->hash[i];
            bigger.klen[j] = m->klen[i];
            bigger.key[j] = m->key[i];
            bigger.val[j] = m->val[i];
        }
    free(m->hash);
    free(m->klen);
    free(m->key);
    free(m->val);
    *m = bigger;
    return LC_OK;
}

lc_status lc_strmap_put(lc_strmap *m, const char *key, size_t len, int64_t val) {
    if (2 * (m->n + 1) > m->cap) {
        lc_status s = grow(m);
        if (s) return s;
    }
    uint64_t h = lc_hash_bytes(key, len);
    size_t i = find_slot(m, h, key, len);
    if (!m->hash[i]) {
        char *k = pool_copy(m, key, len);
        if (!k) return lc_error(LC_ERR_NOMEM, "out of memory for hash map keys");
        m->hash[i] = h;
        m->klen[i] = (uint32_t)len;
        m->key[i] = k;
        m->n++;
    }
    m->val[i] = val;
    return LC_OK;
}

int lc_strmap_get(const lc_strmap *m, const char *key, size_t len, int64_t *val) {
    if (!m->cap) return 0;
    size_t i = find_slot(m, lc_hash_bytes(key, len), key, len);
    if (!m->hash[i]) return 0;
    if (val) *val = m->val[i];
    return 1;
}

lc_status lc_intmap_init(lc_intmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->cap = pow2_at_least(2 * expected + 1);
    m->key = malloc(m->cap * sizeof *m->key);
    m->val = malloc(m->cap * sizeof *m->val);
    if (!m->key || !m->val) {
        lc_intmap_free(m);
        return lc_error(LC_ERR_NOMEM, "out of memory for a hash map of %zu entries", expected);
    }
    for (size_t i = 0; i < m->cap; i++) m->key[i] = INT64_MIN;
    return LC_OK;
}

void lc_intmap_free(lc_intmap *m) {
    free(m->key);
    free(m->val);
    memset(m, 0, sizeof *m);
}

static size_t int_slot(const lc_intmap *m, int64_t key) {
    size_t i = (size_t)lc_hash_bytes(&key, sizeof key) & (m->cap - 1);
    while (m->key[i] != INT64_MIN && m->key[i] != key) i = (i + 1) & (m->cap - 1);
    return i;
}

lc_status lc_intmap_put(lc_intmap *m, int64_t key, int64_t val) {
    if (2 * (m->n + 1) > m->cap) {
        lc_intmap b;
        lc_status s = lc_intmap_init(&b, m->cap);
        if (s) return s;
        for (size_t i = 0; i < m->cap; i++)
            if (m->key[i] != INT64_MIN) {
                size_t j = int_slot(&b, m->key[i]);
                b.key[j] = m->key[i];
                b.val[j] = m->val[i];
                b.n++;
            }
        lc_intmap_free(m);
        *m = b;
    }
    size_t i = int_slot(m, key);
    if (m->key[i] == INT64_MIN) m->n++;
    m->key[i] = key;
    m->val[i] = val;
    return LC_OK;
}

int lc_intmap_get(const lc_intmap *m, int64_t key, int64_t *val) {
    if (!m->cap) return 0;
    size_t i = int_slot(m, key);
    if (m->key[i] == INT64_MIN) return 0;
    if (val) *val = m->val[i];
    return 1;
}
