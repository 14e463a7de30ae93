/* safetensors.h — validating, memory-mapped reader and a streaming writer for the
 * safetensors format (single file or sharded through model.safetensors.index.json).
 * Knows nothing about which tensors a model needs; see src/model/weights.c for that. */
#ifndef LC_SAFETENSORS_H
#define LC_SAFETENSORS_H

#include "../base/base.h"
#include "../base/dtype.h"

#define LC_ST_MAX_DIMS 8
#define LC_ST_MAX_HEADER (100u * 1000u * 1000u) /* same cap as the reference Rust crate */

typedef struct {
    char *name;
    lc_dtype dtype;
    int ndim;
    int64_t shape[LC_ST_MAX_DIMS];
    uint64_t begin, end;  /* offsets inside the data section (after the header) */
    const uint8_t *data;  /* points into the mapped file: end - begin bytes */
    int file;             /* index into lc_st.files */
} lc_st_tensor;

typedef struct {
    lc_mmap *files;
    int n_files;
    lc_st_tensor *tensors; /* sorted by name */
    int n_tensors;
} lc_st;

/* Parses and validates one safetensors image held in memory (`path` only names it in
 * messages). On success *out holds *n_out tensors whose data point into buf. This is the
 * function the fuzz target drives. */
lc_status lc_st_parse(const uint8_t *buf, size_t size, const char *path,
                      lc_st_tensor **out, int *n_out);
void lc_st_free_tensors(lc_st_tensor *t, int n);

/* Opens a directory (index.json shards or model.safetensors) or a single .safetensors
 * file. Every file is memory-mapped; nothing is read until touched. */
lc_status lc_st_open(lc_st *st, const char *path);
void lc_st_close(lc_st *st);
const lc_st_tensor *lc_st_find(const lc_st *st, const char *name);
int64_t lc_st_numel(const lc_st_tensor *t);
const char *lc_st_file_path(const lc_st *st, const lc_st_tensor *t);

/* ---- writing ---- */
typedef struct {
    const char *name;
    lc_dtype dtype;
    int ndim;
    int64_t shape[LC_ST_MAX_DIMS];
    const void *data; /* bytes in dtype; NULL: produced by the fill callback */
} lc_st_entry;

/* Fills the bytes of entry i (buf holds exactly nbytes). */
typedef lc_status (*lc_st_fill_fn)(void *ctx, int i, void *buf, size_t nbytes);

uint64_t lc_st_entry_bytes(const lc_st_entry *e);
/* Writes one file (via a temporary and rename, so a failure never leaves a half file). */
lc_status lc_st_write(const char *path, const lc_st_entry *e, int n, lc_st_fill_fn fill, void *ctx);
/* Writes model.safetensors, or model-0000K-of-0000N.safetensors shards of at most
 * max_shard_bytes (0 = one file) plus model.safetensors.index.json. */
lc_status lc_st_write_dir(const char *dir, const lc_st_entry *e, int n, uint64_t max_shard_bytes,
                          lc_st_fill_fn fill, void *ctx);

#endif
