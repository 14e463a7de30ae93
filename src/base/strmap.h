/* strmap.h — a hash map from byte strings to int64 values (open addressing, keys copied into
 * the map). Used for vocabularies and BPE merge tables; knows nothing about tokenizers. */
#ifndef LC_STRMAP_H
#define LC_STRMAP_H

#include "base.h"

typedef struct {
    uint64_t *hash;   /* 0 = empty slot */
    uint32_t *klen;
    char **key;
    int64_t *val;
    size_t cap, n;    /* cap is a power of two */
    char *pool;       /* key storage, chained blocks */
} lc_strmap;

lc_status lc_strmap_init(lc_strmap *m, size_t expected);
void lc_strmap_free(lc_strmap *m);
/* Inserts or overwrites. */
lc_status lc_strmap_put(lc_strmap *m, const char *key, size_t len, int64_t val);
/* 1 and *val when present, 0 otherwise. */
int lc_strmap_get(const lc_strmap *m, const char *key, size_t len, int64_t *val);
uint64_t lc_hash_bytes(const void *p, size_t n);

/* int64 -> int64 map (keys must not be INT64_MIN). */
typedef struct {
    int64_t *key, *val;
    size_t cap, n;
} lc_intmap;
lc_status lc_intmap_init(lc_intmap *m, size_t expected);
void lc_intmap_free(lc_intmap *m);
lc_status lc_intmap_put(lc_intmap *m, int64_t key, int64_t val);
int lc_intmap_get(const lc_intmap *m, int64_t key, int64_t *val);

#endif
