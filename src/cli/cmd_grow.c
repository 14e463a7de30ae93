/* cmd_grow.c — `longcat grow SRC DST [--factor K]`. */
#include "cli.h"
#include "../train/grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_grow(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    int64_t factor = 2;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: longcat grow SRC DST [--factor K]\n"
                   "Model-growth initialisation: DST has K times SRC's layers (default 2), built by stacking SRC's\n"
                   "layers 0..L-1 K times; continue with `longcat train --resume`-free training from DST, e.g.\n"
                   "`longcat train --init-from DST ...`.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--factor")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v) return 1;
            factor = atoll(v);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "longcat grow: unknown option %s\n", argv[i]);
            return 1;
        } else if (!src) src = argv[i];
        else dst = argv[i];
    }
    if (!src || !dst) {
        fprintf(stderr, "usage: longcat grow SRC DST [--factor K]\n");
        return 1;
    }
    lc_status s = lc_grow(src, dst, factor);
    if (s) return cli_fail(s);
    printf("wrote %s: %s grown %lldx in depth\n", dst, src, (long long)factor);
    return 0;
}
