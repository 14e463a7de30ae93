/* cmd_tokenizer.c — `longcat tokenizer train`: train a byte-level BPE tokenizer on text files
 * and write tokenizer.json + tokenizer_config.json (LongCat special tokens, chat template). */
#include "cli.h"
#include "../tokenizer/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "train") != 0) {
        fprintf(stderr, "usage: longcat tokenizer train --vocab N FILE... -o DIR [--min-frequency N]\n");
        return argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? 0 : 1;
    }
    lc_bpe_train_options o = {.vocab_size = 4096, .min_frequency = 2, .verbose = 1};
    const char *out = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    int n = 0;
    if (!files) return 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "--vocab") || !strcmp(a, "-o") || !strcmp(a, "--min-frequency")) {
            if (!(v = cli_value(argc, argv, &i))) {
                free(files);
                return 1;
            }
            if (!strcmp(a, "--vocab")) o.vocab_size = atoll(v);
            else if (!strcmp(a, "-o")) out = v;
            else o.min_frequency = atoll(v);
        } else if (!strcmp(a, "-q")) o.verbose = 0;
        else if (a[0] == '-') {
            fprintf(stderr, "longcat tokenizer train: unknown option %s\n", a);
            free(files);
            return 1;
        } else files[n++] = a;
    }
    if (!out || n == 0) {
        fprintf(stderr, "usage: longcat tokenizer train --vocab N FILE... -o DIR\n");
        free(files);
        return 1;
    }
    lc_status s = lc_bpe_train(files, n, &o, out);
    free(files);
    if (s) return cli_fail(s);
    printf("wrote %s/tokenizer.json and tokenizer_config.json\n", out);
    return 0;
}
