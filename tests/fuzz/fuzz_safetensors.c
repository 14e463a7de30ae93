/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser: any byte string
 * must give LC_OK with every tensor inside the buffer, or an error — never a crash, a leak or
 * an out-of-bounds read (built with ASan + UBSan). `make fuzz` runs it for a bounded time. */
#include "../../src/io/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* Copy into an exact-size heap buffer so ASan sees reads past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    lc_st_tensor *t;
    int n;
    if (lc_st_parse(buf, size, "fuzz", &t, &n) == LC_OK) {
        volatile uint8_t sink = 0;
        for (int i = 0; i < n; i++) {
            if (t[i].data < buf || t[i].data + (t[i].end - t[i].begin) > buf + size) abort();
            if (t[i].end > t[i].begin) sink ^= t[i].data[t[i].end - t[i].begin - 1];
        }
        (void)sink;
        lc_st_free_tensors(t, n);
    }
    free(buf);
    return 0;
}
