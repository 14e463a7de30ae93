/* bench_tokenize.c — encoding speed of the C tokenizer on one text (best of N runs, one
 * thread). Prints one JSON line; bench/tokenizer.sh puts it side by side with Hugging Face's
 * Rust tokenizers and tokenizers.js on the same text. */
#include "../src/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_tokenize TOKENIZER_DIR TEXT_FILE [REPS] [--lines]\n");
        return 1;
    }
    int reps = argc > 3 ? atoi(argv[3]) : 3, lines = argc > 4 && !strcmp(argv[4], "--lines");
    lc_tokenizer *t;
    char *text;
    size_t len;
    if (lc_tokenizer_load(&t, argv[1]) || lc_read_file(argv[2], &text, &len)) {
        fprintf(stderr, "bench_tokenize: %s\n", lc_last_error());
        return 1;
    }
    double best = 1e30;
    int64_t n = 0;
    for (int r = 0; r < reps; r++) {
        int32_t *ids;
        int64_t k;
        n = 0;
        double t0 = lc_time_sec();
        /* whole text in one call, or each line separately (as a batch of short documents) */
        for (size_t a = 0; a < len;) {
            size_t b = lines ? a : len;
            while (b < len && text[b] != '\n') b++;
            if (lines && b < len) b++;
            if (lc_tokenizer_encode(t, text + a, b - a, 0, &ids, &k)) {
                fprintf(stderr, "bench_tokenize: %s\n", lc_last_error());
                return 1;
            }
            n += k;
            free(ids);
            a = b;
        }
        double dt = lc_time_sec() - t0;
        best = dt < best ? dt : best;
    }
    printf("{\"bytes\": %zu, \"tokens\": %lld, \"seconds\": %.6f, \"mb_s\": %.3f}\n", len, (long long)n, best, len / best / 1e6);
    free(text);
    lc_tokenizer_free(t);
    return 0;
}
