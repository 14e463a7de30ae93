/* test_safetensors.c — writer -> reader round trips (single file, shards + index) and the
 * header parser's acceptance of what the Hugging Face writer produces. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void test_roundtrip_single(void) {
    const char *dir = t_tmpdir("st_single");
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[3] = {-1, 0, 7};
    uint16_t c[2] = {lc_f32_to_bf16(1.5f), lc_f32_to_bf16(-2.0f)};
    lc_st_entry e[] = {
        {"a.weight", LC_DT_F32, 2, {2, 3}, a},
        {"b", LC_DT_I32, 1, {3}, b},
        {"c \"quoted\\name\"", LC_DT_BF16, 1, {2}, c},
        {"empty", LC_DT_F32, 2, {0, 4}, a},
    };
    char *path = lc_path_join(dir, "x.safetensors");
    CHECK_OK(lc_st_write(path, e, 4, NULL, NULL));
    lc_st st;
    CHECK_OK(lc_st_open(&st, path));
    CHECK(st.n_tensors == 4, "4 tensors, got %d", st.n_tensors);
    const lc_st_tensor *t = lc_st_find(&st, "a.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && !memcmp(t->data, a, sizeof a), "a.weight");
    t = lc_st_find(&st, "b");
    CHECK(t && t->dtype == LC_DT_I32 && !memcmp(t->data, b, sizeof b), "b");
    t = lc_st_find(&st, "c \"quoted\\name\"");
    CHECK(t && t->dtype == LC_DT_BF16 && lc_load_f32(t->data, t->dtype, 1) == -2.0f, "escaped name and bf16");
    t = lc_st_find(&st, "empty");
    CHECK(t && t->end == t->begin, "zero-size tensor");
    CHECK(lc_st_find(&st, "nope") == NULL, "absent name");
    /* The data section starts 8-byte aligned, as the HF writer does. */
    uint64_t hlen = 0;
    memcpy(&hlen, st.files[0].data, 8);
    CHECK((8 + hlen) % 8 == 0, "header padded to 8 bytes");
    lc_st_close(&st);
    free(path);
}

static lc_status fill_iota(void *ctx, int i, void *buf, size_t nbytes) {
    (void)ctx;
    float *f = buf;
    for (size_t k = 0; k < nbytes / 4; k++) f[k] = (float)(i * 1000 + (int)k);
    return LC_OK;
}

static void test_roundtrip_sharded(void) {
    const char *dir = t_tmpdir("st_sharded");
    enum { N = 9 };
    lc_st_entry e[N];
    char names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "t%d", i);
        e[i] = (lc_st_entry){names[i], LC_DT_F32, 1, {100 + i}, NULL};
    }
    CHECK_OK(lc_st_write_dir(dir, e, N, 1000, fill_iota, NULL)); /* ~2 tensors per shard */
    lc_st st;
    CHECK_OK(lc_st_open(&st, dir));
    CHECK(st.n_files >= 4, "several shards, got %d", st.n_files);
    CHECK(st.n_tensors == N, "all tensors, got %d", st.n_tensors);
    for (int i = 0; i < N; i++) {
        const lc_st_tensor *t = lc_st_find(&st, names[i]);
        CHECK(t && t->shape[0] == 100 + i && lc_load_f32(t->data, LC_DT_F32, 5) == (float)(i * 1000 + 5), "t%d", i);
    }
    lc_st_close(&st);
}

void suite_safetensors(void) {
    RUN(test_roundtrip_single);
    RUN(test_roundtrip_sharded);
}
