/* cmd_quantize.c — `longcat quantize SRC DST --type q8_0|q4_0|fp8`. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_quantize(int argc, char **argv) {
    const char *src = NULL, *dst = NULL, *type = NULL;
    double shard_gb = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: longcat quantize SRC DST --type q8_0|q4_0|fp8|f32 [--shard-gb X]\n"
                   "Writes DST, a safetensors checkpoint like SRC with every *_proj matrix quantized:\n"
                   "  q8_0  int8 + one F16 scale per 32 weights (8.5 bits/weight)\n"
                   "  q4_0  4-bit + one F16 scale per 32 weights (4.5 bits/weight)\n"
                   "  fp8   F8_E4M3 + F32 scale per 128x128 block (LongCat-Flash's own format)\n"
                   "  f32   dequantised: the exact weights a quantized SRC computes with\n"
                   "Norms, embeddings, lm_head and router are copied as stored. See docs/FORMATS.md.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--type") || !strcmp(argv[i], "--shard-gb")) {
            const char *v = cli_value(argc, argv, &i);
            if (!v) return 1;
            if (!strcmp(argv[i - 1], "--type")) type = v;
            else shard_gb = atof(v);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "longcat quantize: unknown option %s\n", argv[i]);
            return 1;
        } else if (!src) src = argv[i];
        else if (!dst) dst = argv[i];
        else {
            fprintf(stderr, "longcat quantize: unexpected argument %s\n", argv[i]);
            return 1;
        }
    }
    if (!src || !dst || !type) {
        fprintf(stderr, "usage: longcat quantize SRC DST --type q8_0|q4_0|fp8\n");
        return 1;
    }
    lc_dtype t;
    if (!strcmp(type, "q8_0")) t = LC_DT_Q8_0;
    else if (!strcmp(type, "q4_0")) t = LC_DT_Q4_0;
    else if (!strcmp(type, "fp8")) t = LC_DT_F8_E4M3;
    else if (!strcmp(type, "f32")) t = LC_DT_F32;
    else {
        fprintf(stderr, "longcat quantize: --type must be q8_0, q4_0, fp8 or f32, not \"%s\"\n", type);
        return 1;
    }
    double t0 = lc_time_sec();
    lc_status s = lc_model_quantize(src, dst, t, (uint64_t)(shard_gb * 1e9));
    if (s) return cli_fail(s);
    printf("wrote %s: %s with projections in %s (%.1f s)\n", dst, src, type, lc_time_sec() - t0);
    return 0;
}
