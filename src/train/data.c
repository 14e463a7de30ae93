/* data.c — building and mapping the token cache; the trainer draws windows from it. */
#include "data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lc_status build_cache(const lc_tokenizer *t, const char *const *files, int n_files, const char *path) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return lc_error(LC_ERR_IO, "%s: cannot create", tmp);
    lc_status s = LC_OK;
    int32_t eos = lc_tokenizer_eos(t);
    for (int i = 0; i < n_files && !s; i++) {
        char *text;
        size_t len;
        s = lc_read_file(files[i], &text, &len);
        int32_t *ids = NULL;
        int64_t n = 0;
        if (!s) s = lc_tokenizer_encode(t, text, len, 0, &ids, &n);
        if (!s && (fwrite(ids, sizeof *ids, (size_t)n, f) != (size_t)n || (eos >= 0 && fwrite(&eos, sizeof eos, 1, f) != 1)))
            s = lc_error(LC_ERR_IO, "%s: write failed", tmp);
        free(text);
        free(ids);
    }
    if (fclose(f) != 0 && !s) s = lc_error(LC_ERR_IO, "%s: write failed", tmp);
    if (!s && rename(tmp, path) != 0) s = lc_error(LC_ERR_IO, "%s: cannot rename", path);
    if (s) remove(tmp);
    return s;
}

lc_status lc_data_open(lc_data *d, const lc_tokenizer *t, const char *const *files, int n_files, const char *cache_path,
                       double val_fraction) {
    memset(d, 0, sizeof *d);
    lc_status s = LC_OK;
    if (!lc_file_exists(cache_path)) s = build_cache(t, files, n_files, cache_path);
    if (!s) s = lc_mmap_open(&d->map, cache_path);
    if (s) return s;
    if (d->map.size % 4 || d->map.size < 16) {
        lc_mmap_close(&d->map);
        return lc_error(LC_ERR_FORMAT, "%s: not a token cache (size %zu)", cache_path, d->map.size);
    }
    d->tokens = (const int32_t *)(const void *)d->map.data;
    d->n = (int64_t)(d->map.size / 4);
    d->n_train = (int64_t)((double)d->n * (1.0 - val_fraction));
    int64_t V = lc_tokenizer_vocab_size(t);
    for (int64_t i = 0; i < d->n; i++)
        if (d->tokens[i] < 0 || d->tokens[i] >= V) {
            lc_data_close(d);
            return lc_error(LC_ERR_FORMAT, "%s: token %d at %lld is outside the tokenizer's vocabulary (stale cache? delete it)",
                            cache_path, d->tokens[i], (long long)i);
        }
    return LC_OK;
}

void lc_data_close(lc_data *d) {
    lc_mmap_close(&d->map);
    memset(d, 0, sizeof *d);
}
