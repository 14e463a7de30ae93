/* test_malformed.c — bad input gives a clear error, never a crash or an out-of-bounds read
 * (this suite also runs under AddressSanitizer + UBSan): broken safetensors headers, broken
 * checkpoints (truncated, wrong shape, missing tensor, NaN scale, bad index). */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* An image: 8-byte length + header + `data_len` zero bytes. The buffer is sized exactly so
 * ASan catches any read past it. */
static uint8_t *image(const char *hdr, size_t data_len, uint64_t claimed_len, size_t *size) {
    size_t h = strlen(hdr);
    *size = 8 + h + data_len;
    uint8_t *b = calloc(1, *size);
    uint64_t n = claimed_len ? claimed_len : h;
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(n >> (8 * i));
    memcpy(b + 8, hdr, h);
    return b;
}

static void expect_parse_error(const char *hdr, size_t data_len, uint64_t claimed, const char *want) {
    size_t size;
    uint8_t *b = image(hdr, data_len, claimed, &size);
    lc_st_tensor *t;
    int n;
    lc_status s = lc_st_parse(b, size, "bad.safetensors", &t, &n);
    CHECK(s == LC_ERR_FORMAT, "header %s should be rejected", hdr);
    CHECK(strstr(lc_last_error(), want) != NULL, "message \"%s\" should contain \"%s\"", lc_last_error(), want);
    CHECK(strstr(lc_last_error(), "bad.safetensors") != NULL, "message names the file");
    if (s == LC_OK) lc_st_free_tensors(t, n);
    free(b);
}

static void test_bad_headers(void) {
    lc_st_tensor *t;
    int n;
    CHECK(lc_st_parse((const uint8_t *)"abc", 3, "bad.safetensors", &t, &n) == LC_ERR_FORMAT, "3-byte file");
    CHECK(strstr(lc_last_error(), "too short"), "%s", lc_last_error());
    expect_parse_error("{}", 0, 1000, "runs past the end of the file");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]", 4, 0, "invalid");
    expect_parse_error("[1,2]", 0, 0, "not a JSON object");
    expect_parse_error("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "unknown dtype \"F33\"");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, 0, "needs 8 bytes");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}", 4, 0, "runs past the end");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "overlap");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "appears twice");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0, "shape[0]");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, 0, "shape[0]");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}",
                       4, 0, "needs more than");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, 0, "end 0 < begin 4");
    expect_parse_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0, "data_offsets");
    expect_parse_error("{\"a\":3}", 0, 0, "not a JSON object");
    expect_parse_error("{\"__metadata__\":{\"k\":1}}", 0, 0, "not a string");
    expect_parse_error("{} x", 0, 0, "unexpected bytes");
}

/* Copies the tiny random checkpoint to `name`, letting `edit` change its entries first. */
typedef void (*edit_fn)(lc_st_entry *e, int *n, float *scratch);

static const char *rewrite(const char *src, const char *name, edit_fn edit) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s", t_tmpdir(name));
    lc_st st;
    if (lc_st_open(&st, src)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        return dir;
    }
    lc_st_entry *e = calloc((size_t)st.n_tensors, sizeof *e);
    for (int i = 0; i < st.n_tensors; i++) {
        const lc_st_tensor *t = &st.tensors[i];
        e[i].name = t->name;
        e[i].dtype = t->dtype;
        e[i].ndim = t->ndim;
        memcpy(e[i].shape, t->shape, sizeof t->shape);
        e[i].data = t->data;
    }
    int n = st.n_tensors;
    static float scratch[4096];
    edit(e, &n, scratch);
    CHECK_OK(lc_st_write_dir(dir, e, n, 0, NULL, NULL));
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp '%s/config.json' '%s/'", src, dir);
    CHECK(system(cmd) == 0, "copy config");
    free(e);
    lc_st_close(&st);
    return dir;
}

static int find(lc_st_entry *e, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, name)) return i;
    return -1;
}

static void drop_tensor(lc_st_entry *e, int *n, float *scratch) {
    int i = find(e, *n, "model.layers.1.mlp.experts.2.up_proj.weight");
    e[i] = e[--*n];
}
static void wrong_shape(lc_st_entry *e, int *n, float *scratch) {
    int i = find(e, *n, "model.layers.0.self_attn.1.kv_b_proj.weight");
    int64_t r = e[i].shape[0];
    e[i].shape[0] = e[i].shape[1];
    e[i].shape[1] = r; /* transposed: same bytes, wrong shape */
}
static void nan_scale(lc_st_entry *e, int *n, float *scratch) {
    int i = find(e, *n, "model.layers.0.mlps.0.down_proj.weight_scale_inv");
    int64_t k = e[i].shape[0] * e[i].shape[1];
    memcpy(scratch, e[i].data, (size_t)k * 4);
    scratch[k - 1] = NAN;
    e[i].data = scratch;
}
static void drop_scale(lc_st_entry *e, int *n, float *scratch) {
    int i = find(e, *n, "model.layers.0.mlps.0.down_proj.weight_scale_inv");
    e[i] = e[--*n];
}
static void fp8_norm(lc_st_entry *e, int *n, float *scratch) {
    int i = find(e, *n, "model.norm.weight");
    e[i].dtype = LC_DT_F8_E4M3;
    e[i].shape[0] *= 2; /* same bytes as the BF16 norm */
}

static void expect_load_error(const char *dir, lc_status want, const char *msg) {
    lc_model *m = NULL;
    lc_status s = lc_model_load(&m, dir);
    CHECK(s == want, "loading %s: got %s (%s), want %s", dir, lc_status_name(s), lc_last_error(), lc_status_name(want));
    CHECK(strstr(lc_last_error(), msg) != NULL, "message \"%s\" should contain \"%s\"", lc_last_error(), msg);
    CHECK(m == NULL, "no model on failure");
    lc_model_free(m);
}

static void test_bad_checkpoints(void) {
    lc_config c;
    lc_config_preset(&c, "tiny");
    lc_config_set(&c, "weight_block_size=16,16");
    lc_init_options o = {.seed = 1, .dtype = LC_DT_F8_E4M3};
    char src[512];
    snprintf(src, sizeof src, "%s", t_tmpdir("bad_src"));
    CHECK_OK(lc_model_init_write(&c, &o, src));
    lc_model *m = NULL;
    CHECK_OK(lc_model_load(&m, src));
    lc_model_free(m);

    expect_load_error(rewrite(src, "bad_missing", drop_tensor), LC_ERR_SHAPE,
                      "model.layers.1.mlp.experts.2.up_proj.weight is missing");
    expect_load_error(rewrite(src, "bad_shape", wrong_shape), LC_ERR_SHAPE, "has shape [24, 112], expected [112, 24]");
    expect_load_error(rewrite(src, "bad_nan", nan_scale), LC_ERR_FORMAT, "is nan (scales must be finite)");
    expect_load_error(rewrite(src, "bad_noscale", drop_scale), LC_ERR_SHAPE, "has no companion");
    expect_load_error(rewrite(src, "bad_fp8norm", fp8_norm), LC_ERR_SHAPE, "model.norm.weight may not be F8_E4M3");

    /* Truncated file: the header promises bytes the file no longer has. */
    char cmd[1400], *out = NULL;
    const char *tr = t_tmpdir("bad_trunc");
    snprintf(cmd, sizeof cmd, "cp '%s'/* '%s'/ && truncate -s -100 '%s/model.safetensors'", src, tr, tr);
    CHECK(system(cmd) == 0, "truncate");
    expect_load_error(tr, LC_ERR_FORMAT, "runs past the end of the file");
    /* Header length past EOF. */
    snprintf(cmd, sizeof cmd, "cp '%s'/* '%s'/ && printf '\\377\\377\\377\\377' | dd of='%s/model.safetensors' bs=1 seek=0 conv=notrunc 2>/dev/null",
             src, tr, tr);
    CHECK(system(cmd) == 0, "patch header length");
    expect_load_error(tr, LC_ERR_FORMAT, "header length");
    /* Bad JSON in the header. */
    snprintf(cmd, sizeof cmd, "cp '%s'/* '%s'/ && printf '{{{{' | dd of='%s/model.safetensors' bs=1 seek=8 conv=notrunc 2>/dev/null",
             src, tr, tr);
    CHECK(system(cmd) == 0, "patch header JSON");
    expect_load_error(tr, LC_ERR_FORMAT, "invalid near byte");
    /* No weights at all; config.json broken. */
    snprintf(cmd, sizeof cmd, "rm -f '%s'/*.safetensors", tr);
    CHECK(system(cmd) == 0, "rm");
    expect_load_error(tr, LC_ERR_IO, "no model.safetensors.index.json or model.safetensors");
    snprintf(cmd, sizeof cmd, "printf '{\"hidden_size\": 64,' > '%s/config.json'", tr);
    CHECK(system(cmd) == 0, "config");
    expect_load_error(tr, LC_ERR_CONFIG, "config.json: invalid JSON");
    free(out);
}

static void test_bad_index(void) {
    lc_config c;
    lc_config_preset(&c, "tiny");
    lc_init_options o = {.seed = 1, .dtype = LC_DT_BF16, .max_shard_bytes = 200 << 10};
    char src[512];
    snprintf(src, sizeof src, "%s", t_tmpdir("idx_src"));
    CHECK_OK(lc_model_init_write(&c, &o, src));
    char cmd[1400];
    /* The index names a shard that is not there. */
    snprintf(cmd, sizeof cmd, "sed -i 's/model-00002-of-0000[0-9]/model-00009-of-00009/' '%s/model.safetensors.index.json'", src);
    CHECK(system(cmd) == 0, "sed");
    expect_load_error(src, LC_ERR_IO, "model-00009-of-00009.safetensors: cannot open");
    /* The index points outside the folder. */
    snprintf(cmd, sizeof cmd, "sed -i 's/model-00009-of-00009.safetensors/..\\/..\\/etc\\/passwd/' '%s/model.safetensors.index.json'", src);
    CHECK(system(cmd) == 0, "sed");
    expect_load_error(src, LC_ERR_FORMAT, "not a file in the same folder");
    snprintf(cmd, sizeof cmd, "printf '{\"weight_map\": 3}' > '%s/model.safetensors.index.json'", src);
    CHECK(system(cmd) == 0, "index");
    expect_load_error(src, LC_ERR_FORMAT, "missing object \"weight_map\"");
}

void suite_malformed(void) {
    RUN(test_bad_headers);
    RUN(test_bad_checkpoints);
    RUN(test_bad_index);
}
