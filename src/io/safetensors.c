/* safetensors.c — strict safetensors reader (header validation, mmap, shards) and writer.
 * Every malformed input is a message naming the file, the tensor and the byte offsets;
 * the reader never touches bytes outside the file. Model knowledge lives elsewhere. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include "json.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAFE_INT 9007199254740992.0 /* 2^53: JSON numbers above lose precision */

static uint64_t read_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static int json_uint(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return -1;
    double d = j->valuedouble;
    if (!(d >= 0) || d > MAX_SAFE_INT || d != floor(d)) return -1;
    *v = (uint64_t)d;
    return 0;
}

void lc_st_free_tensors(lc_st_tensor *t, int n) {
    if (!t) return;
    for (int i = 0; i < n; i++) free(t[i].name);
    free(t);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const lc_st_tensor *)a)->name, ((const lc_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
    const lc_st_tensor *x = *(const lc_st_tensor *const *)a, *y = *(const lc_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parses one tensor entry `j` named `name`; data_size is the size of the data section. */
static lc_status parse_entry(const cJSON *j, const char *name, const char *path, uint64_t data_size,
                             uint64_t data_start, lc_st_tensor *t) {
    if (!cJSON_IsObject(j))
        return lc_error(LC_ERR_FORMAT, "%s: header entry \"%s\" is not a JSON object", path, name);
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(jd))
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": missing or non-string \"dtype\"", path, name);
    if (lc_dtype_from_name(jd->valuestring, &t->dtype) != 0)
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, name, jd->valuestring);
    if (!cJSON_IsArray(js))
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": missing or non-array \"shape\"", path, name);
    int nd = cJSON_GetArraySize(js);
    if (nd > LC_ST_MAX_DIMS)
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": %d dimensions (at most %d supported)", path,
                        name, nd, LC_ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < nd; d++) {
        uint64_t v;
        if (json_uint(cJSON_GetArrayItem(js, d), &v) != 0)
            return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer",
                            path, name, d);
        t->shape[d] = (int64_t)v;
        if (v && numel > UINT64_MAX / v) overflow = 1;
        else numel *= v;
    }
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2)
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" must be [begin, end]", path, name);
    if (json_uint(cJSON_GetArrayItem(jo, 0), &t->begin) || json_uint(cJSON_GetArrayItem(jo, 1), &t->end))
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": data_offsets are not non-negative integers", path, name);
    if (t->end < t->begin)
        return lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\": data_offsets end %llu < begin %llu", path, name,
                        (unsigned long long)t->end, (unsigned long long)t->begin);
    if (t->end > data_size)
        return lc_error(LC_ERR_FORMAT,
                        "%s: tensor \"%s\": data [%llu, %llu) runs past the end of the file "
                        "(absolute bytes %llu..%llu, file data ends at byte %llu)",
                        path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                        (unsigned long long)(data_start + t->begin), (unsigned long long)(data_start + t->end),
                        (unsigned long long)(data_start + data_size));
    uint64_t esz = (uint64_t)lc_dtype_size(t->dtype);
    if (overflow || numel > UINT64_MAX / esz || numel * esz != t->end - t->begin)
        return lc_error(LC_ERR_FORMAT,
                        "%s: tensor \"%s\": shape x dtype (%s) needs %s%llu bytes but data_offsets give %llu",
                        path, name, jd->valuestring, overflow ? "more than " : "",
                        (unsigned long long)(overflow ? UINT64_MAX : numel * esz),
                        (unsigned long long)(t->end - t->begin));
    return LC_OK;
}

lc_status lc_st_parse(const uint8_t *buf, size_t size, const char *path, lc_st_tensor **out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    if (size < 8)
        return lc_error(LC_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", path, size);
    uint64_t hlen = read_u64_le(buf);
    if (hlen > size - 8)
        return lc_error(LC_ERR_FORMAT, "%s: header length %llu (bytes 0..7) runs past the end of the file (%zu bytes)",
                        path, (unsigned long long)hlen, size);
    if (hlen > LC_ST_MAX_HEADER)
        return lc_error(LC_ERR_FORMAT, "%s: header length %llu exceeds the %u-byte limit", path,
                        (unsigned long long)hlen, LC_ST_MAX_HEADER);
    if (hlen < 2 || buf[8] != '{')
        return lc_error(LC_ERR_FORMAT, "%s: header (bytes 8..%llu) is not a JSON object", path,
                        (unsigned long long)(8 + hlen));
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts((const char *)buf + 8, (size_t)hlen, &end, 0);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at ? (size_t)(at - (const char *)buf) : 8;
        if (off > 8 + hlen) off = 8 + hlen;
        return lc_error(LC_ERR_FORMAT, "%s: header JSON is invalid near byte %zu", path, off);
    }
    /* Only trailing spaces (the format's padding) may follow the object. */
    for (const char *p = end; p < (const char *)buf + 8 + hlen; p++)
        if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t' && *p != 0) {
            cJSON_Delete(root);
            return lc_error(LC_ERR_FORMAT, "%s: unexpected bytes after the header JSON at byte %zu", path,
                            (size_t)(p - (const char *)buf));
        }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return lc_error(LC_ERR_FORMAT, "%s: header is not a JSON object", path);
    }
    uint64_t data_start = 8 + hlen, data_size = size - data_start;
    int n = 0;
    for (const cJSON *j = root->child; j; j = j->next) n += strcmp(j->string, "__metadata__") != 0;
    lc_st_tensor *ts = lc_calloc((size_t)n, sizeof *ts, "safetensors tensor table");
    lc_st_tensor **by_off = lc_calloc((size_t)n, sizeof *by_off, "safetensors offsets");
    lc_status st = (ts && by_off) ? LC_OK : LC_ERR_NOMEM;
    int k = 0;
    for (const cJSON *j = root->child; j && st == LC_OK; j = j->next) {
        if (strcmp(j->string, "__metadata__") == 0) {
            if (!cJSON_IsObject(j)) st = lc_error(LC_ERR_FORMAT, "%s: \"__metadata__\" is not an object", path);
            for (const cJSON *m = j->child; m && st == LC_OK; m = m->next)
                if (!cJSON_IsString(m))
                    st = lc_error(LC_ERR_FORMAT, "%s: __metadata__ value \"%s\" is not a string", path, m->string);
            continue;
        }
        lc_st_tensor *t = &ts[k];
        st = parse_entry(j, j->string, path, data_size, data_start, t);
        if (st == LC_OK) {
            t->name = lc_strdup(j->string);
            if (!t->name) st = LC_ERR_NOMEM;
            t->data = buf + data_start + t->begin;
            by_off[k] = t;
            k++;
        }
    }
    cJSON_Delete(root);
    if (st == LC_OK) {
        qsort(ts, (size_t)n, sizeof *ts, cmp_name);
        for (int i = 1; i < n && st == LC_OK; i++)
            if (strcmp(ts[i - 1].name, ts[i].name) == 0)
                st = lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\" appears twice in the header", path, ts[i].name);
        for (int i = 0; i < n; i++) by_off[i] = &ts[i];
        qsort(by_off, (size_t)n, sizeof *by_off, cmp_begin);
        for (int i = 1; i < n && st == LC_OK; i++) {
            const lc_st_tensor *a = by_off[i - 1], *b = by_off[i];
            if (b->begin < a->end)
                st = lc_error(LC_ERR_FORMAT,
                              "%s: tensors \"%s\" [%llu, %llu) and \"%s\" [%llu, %llu) overlap in the data section",
                              path, a->name, (unsigned long long)a->begin, (unsigned long long)a->end, b->name,
                              (unsigned long long)b->begin, (unsigned long long)b->end);
        }
    }
    free(by_off);
    if (st != LC_OK) {
        lc_st_free_tensors(ts, k);
        return st;
    }
    *out = ts;
    *n_out = n;
    return LC_OK;
}

int64_t lc_st_numel(const lc_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

const char *lc_st_file_path(const lc_st *st, const lc_st_tensor *t) { return st->files[t->file].path; }

void lc_st_close(lc_st *st) {
    lc_st_free_tensors(st->tensors, st->n_tensors);
    for (int i = 0; i < st->n_files; i++) lc_mmap_close(&st->files[i]);
    free(st->files);
    memset(st, 0, sizeof *st);
}

/* Maps one file and appends its tensors. */
static lc_status add_file(lc_st *st, const char *path) {
    lc_mmap *files = realloc(st->files, (size_t)(st->n_files + 1) * sizeof *files);
    if (!files) return lc_error(LC_ERR_NOMEM, "out of memory opening %s", path);
    st->files = files;
    lc_status s = lc_mmap_open(&files[st->n_files], path);
    if (s) return s;
    lc_mmap *m = &files[st->n_files++];
    lc_st_tensor *ts;
    int n;
    s = lc_st_parse(m->data, m->size, path, &ts, &n);
    if (s) return s;
    lc_st_tensor *all = realloc(st->tensors, (size_t)(st->n_tensors + n) * sizeof *all);
    if (!all) {
        lc_st_free_tensors(ts, n);
        return lc_error(LC_ERR_NOMEM, "out of memory opening %s", path);
    }
    for (int i = 0; i < n; i++) ts[i].file = st->n_files - 1;
    memcpy(all + st->n_tensors, ts, (size_t)n * sizeof *ts);
    free(ts);
    st->tensors = all;
    st->n_tensors += n;
    return LC_OK;
}

const lc_st_tensor *lc_st_find(const lc_st *st, const char *name) {
    int lo = 0, hi = st->n_tensors - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(st->tensors[mid].name, name);
        if (c == 0) return &st->tensors[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static lc_status open_index(lc_st *st, const char *dir, const char *index_path) {
    cJSON *root;
    lc_status s = lc_json_load(index_path, &root);
    if (s) return s;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return lc_error(LC_ERR_FORMAT, "%s: missing object \"weight_map\"", index_path);
    }
    /* Open each shard named in the map once, in order of first mention. */
    for (const cJSON *e = map->child; e && !s; e = e->next) {
        if (!cJSON_IsString(e)) {
            s = lc_error(LC_ERR_FORMAT, "%s: weight_map.\"%s\" is not a string", index_path, e->string);
            break;
        }
        const char *f = e->valuestring;
        if (!f[0] || strchr(f, '/') || strcmp(f, "..") == 0 || strcmp(f, ".") == 0) {
            s = lc_error(LC_ERR_FORMAT, "%s: weight_map.\"%s\" names \"%s\", not a file in the same folder",
                         index_path, e->string, f);
            break;
        }
        int seen = 0; /* shards are few (tens to hundreds); tensors are many */
        for (int i = 0; i < st->n_files && !seen; i++) {
            const char *base = strrchr(st->files[i].path, '/');
            seen = strcmp(base ? base + 1 : st->files[i].path, f) == 0;
        }
        if (seen) continue;
        char *path = lc_path_join(dir, f);
        if (!path) s = LC_ERR_NOMEM;
        else s = add_file(st, path);
        free(path);
    }
    if (!s) qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_name);
    for (int i = 1; i < st->n_tensors && !s; i++)
        if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0)
            s = lc_error(LC_ERR_FORMAT, "tensor \"%s\" is stored in both %s and %s", st->tensors[i].name,
                         lc_st_file_path(st, &st->tensors[i - 1]), lc_st_file_path(st, &st->tensors[i]));
    /* Every tensor the index promises must be in the shard it names. */
    for (const cJSON *e = map->child; e && !s; e = e->next) {
        const lc_st_tensor *t = lc_st_find(st, e->string);
        const char *file = t ? strrchr(lc_st_file_path(st, t), '/') : NULL;
        file = file ? file + 1 : (t ? lc_st_file_path(st, t) : NULL);
        if (!t)
            s = lc_error(LC_ERR_SHAPE, "%s: tensor \"%s\" is listed in weight_map but missing from %s", index_path,
                         e->string, e->valuestring);
        else if (strcmp(file, e->valuestring) != 0)
            s = lc_error(LC_ERR_FORMAT, "%s: tensor \"%s\" is listed in %s but stored in %s", index_path,
                         e->string, e->valuestring, file);
    }
    cJSON_Delete(root);
    return s;
}

lc_status lc_st_open(lc_st *st, const char *path) {
    memset(st, 0, sizeof *st);
    lc_status s;
    if (lc_is_dir(path)) {
        char *index = lc_path_join(path, "model.safetensors.index.json");
        char *single = lc_path_join(path, "model.safetensors");
        if (!index || !single) s = LC_ERR_NOMEM;
        else if (lc_file_exists(index)) s = open_index(st, path, index);
        else if (lc_file_exists(single)) s = add_file(st, single);
        else
            s = lc_error(LC_ERR_IO, "%s: no model.safetensors.index.json or model.safetensors in this folder", path);
        free(index);
        free(single);
    } else {
        s = add_file(st, path);
        if (!s) qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_name);
    }
    if (s) lc_st_close(st);
    return s;
}

/* ---------------------------------------------------------------- writer */

uint64_t lc_st_entry_bytes(const lc_st_entry *e) {
    uint64_t n = (uint64_t)lc_dtype_size(e->dtype);
    for (int d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    return n;
}

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* Writes the header JSON for entries [e, e+n) to a memory stream; returns its text. */
static char *header_json(const lc_st_entry *e, int n, size_t *len) {
    char *buf = NULL;
    size_t sz = 0;
    FILE *f = open_memstream(&buf, &sz);
    if (!f) return NULL;
    fputs("{\"__metadata__\":{\"format\":\"pt\"}", f);
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nb = lc_st_entry_bytes(&e[i]);
        fputc(',', f);
        put_json_string(f, e[i].name);
        fprintf(f, ":{\"dtype\":\"%s\",\"shape\":[", lc_dtype_name(e[i].dtype));
        for (int d = 0; d < e[i].ndim; d++) fprintf(f, "%s%lld", d ? "," : "", (long long)e[i].shape[d]);
        fprintf(f, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off, (unsigned long long)(off + nb));
        off += nb;
    }
    fputc('}', f);
    /* Pad with spaces so the data section starts 8-byte aligned, as the HF writer does. */
    long pos = ftell(f);
    while ((pos + 8) % 8 != 0) {
        fputc(' ', f);
        pos++;
    }
    fclose(f);
    *len = sz;
    return buf;
}

lc_status lc_st_write(const char *path, const lc_st_entry *e, int n, lc_st_fill_fn fill, void *ctx) {
    size_t hlen;
    char *hdr = header_json(e, n, &hlen);
    if (!hdr) return lc_error(LC_ERR_NOMEM, "%s: cannot build header", path);
    size_t plen = strlen(path);
    char *tmp = lc_malloc(plen + 5, "path");
    if (!tmp) {
        free(hdr);
        return LC_ERR_NOMEM;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    lc_status s = LC_OK;
    if (!f) s = lc_error(LC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    if (!s && (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen))
        s = lc_error(LC_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
    free(hdr);
    void *scratch = NULL;
    for (int i = 0; i < n && !s; i++) {
        uint64_t nb = lc_st_entry_bytes(&e[i]);
        const void *src = e[i].data;
        if (!src) {
            void *p = realloc(scratch, nb ? nb : 1);
            if (!p) {
                s = lc_error(LC_ERR_NOMEM, "out of memory writing tensor %s", e[i].name);
                break;
            }
            scratch = p;
            s = fill(ctx, i, scratch, nb);
            src = scratch;
        }
        if (!s && nb && fwrite(src, 1, nb, f) != nb)
            s = lc_error(LC_ERR_IO, "%s: write failed at tensor %s: %s", tmp, e[i].name, strerror(errno));
    }
    free(scratch);
    if (f && fclose(f) != 0 && !s) s = lc_error(LC_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
    if (!s && rename(tmp, path) != 0) s = lc_error(LC_ERR_IO, "%s: rename failed: %s", path, strerror(errno));
    if (s && f) remove(tmp);
    free(tmp);
    return s;
}

typedef struct {
    lc_st_fill_fn fill;
    void *ctx;
    int first; /* index of the shard's first entry in the caller's array */
} shard_ctx;

static lc_status shard_fill(void *ctx, int i, void *buf, size_t nbytes) {
    shard_ctx *c = ctx;
    return c->fill(c->ctx, c->first + i, buf, nbytes);
}

lc_status lc_st_write_dir(const char *dir, const lc_st_entry *e, int n, uint64_t max_shard_bytes,
                          lc_st_fill_fn fill, void *ctx) {
    /* Split into shards greedily in the given order. */
    int *start = lc_calloc((size_t)n + 2, sizeof *start, "shards");
    if (!start) return LC_ERR_NOMEM;
    int n_shards = 0;
    uint64_t cur = 0;
    start[0] = 0;
    for (int i = 0; i < n; i++) {
        uint64_t nb = lc_st_entry_bytes(&e[i]);
        if (max_shard_bytes && cur > 0 && cur + nb > max_shard_bytes) {
            start[++n_shards] = i;
            cur = 0;
        }
        cur += nb;
    }
    start[++n_shards] = n;
    lc_status s = LC_OK;
    char name[64];
    for (int k = 0; k < n_shards && !s; k++) {
        if (n_shards == 1) snprintf(name, sizeof name, "model.safetensors");
        else snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", k + 1, n_shards);
        char *path = lc_path_join(dir, name);
        if (!path) {
            s = LC_ERR_NOMEM;
            break;
        }
        shard_ctx sc = {fill, ctx, start[k]};
        s = lc_st_write(path, e + start[k], start[k + 1] - start[k], shard_fill, &sc);
        free(path);
    }
    if (!s && n_shards > 1) {
        char *path = lc_path_join(dir, "model.safetensors.index.json");
        FILE *f = path ? fopen(path, "w") : NULL;
        if (!f) s = lc_error(LC_ERR_IO, "%s: cannot create", path ? path : dir);
        else {
            uint64_t total = 0;
            for (int i = 0; i < n; i++) total += lc_st_entry_bytes(&e[i]);
            fprintf(f, "{\n  \"metadata\": {\"total_size\": %llu},\n  \"weight_map\": {", (unsigned long long)total);
            for (int k = 0; k < n_shards; k++)
                for (int i = start[k]; i < start[k + 1]; i++) {
                    fputs(i ? ",\n    " : "\n    ", f);
                    put_json_string(f, e[i].name);
                    fprintf(f, ": \"model-%05d-of-%05d.safetensors\"", k + 1, n_shards);
                }
            fputs("\n  }\n}\n", f);
            if (fclose(f) != 0) s = lc_error(LC_ERR_IO, "%s: write failed", path);
        }
        free(path);
    }
    free(start);
    return s;
}
