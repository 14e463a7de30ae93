/* cmd_init.c — `longcat init`: write a random-initialised checkpoint (or only its config)
 * of a preset shape, with --set overrides, in the Hugging Face layout. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void init_usage(FILE *f) {
    fprintf(f, "usage: longcat init --preset NAME [--set key=value ...] [--dtype f32|bf16|f16|fp8] [--seed N]\n"
               "                    [--std X] [--shard-mb N] [--config-only] OUT_DIR\n"
               "presets: %s\n"
               "--set takes any config.json key (e.g. --set num_layers=4 --set zero_expert_num=0);\n"
               "weight_block_size=R,C sets the FP8 block. Matrices ~ N(0, std^2) (default 0.02), norms 1,\n"
               "router bias 0; values depend only on the seed and the tensor name.\n",
            lc_config_preset_names());
}

int cmd_init(int argc, char **argv) {
    const char *preset = NULL, *out = NULL;
    lc_init_options o = {.seed = 0, .dtype = LC_DT_F32};
    int config_only = 0;
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            init_usage(stdout);
            free(sets);
            return 0;
        }
        if (!strcmp(a, "--config-only")) config_only = 1;
        else if (!strcmp(a, "--preset") || !strcmp(a, "--set") || !strcmp(a, "--dtype") || !strcmp(a, "--seed") ||
                 !strcmp(a, "--shard-mb") || !strcmp(a, "--std")) {
            if (!(v = cli_value(argc, argv, &i))) {
                free(sets);
                return 1;
            }
            if (!strcmp(a, "--preset")) preset = v;
            else if (!strcmp(a, "--set")) sets[n_sets++] = v;
            else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10);
            else if (!strcmp(a, "--shard-mb")) o.max_shard_bytes = strtoull(v, NULL, 10) << 20;
            else if (!strcmp(a, "--std")) o.init_std = strtof(v, NULL);
            else if (!strcmp(v, "f32")) o.dtype = LC_DT_F32;
            else if (!strcmp(v, "bf16")) o.dtype = LC_DT_BF16;
            else if (!strcmp(v, "f16")) o.dtype = LC_DT_F16;
            else if (!strcmp(v, "fp8")) o.dtype = LC_DT_F8_E4M3;
            else {
                fprintf(stderr, "longcat init: --dtype must be f32, bf16, f16 or fp8 (got %s)\n", v);
                free(sets);
                return 1;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "longcat init: unknown option %s\n", a);
            init_usage(stderr);
            free(sets);
            return 1;
        } else out = a;
    }
    if (!preset || !out) {
        init_usage(stderr);
        free(sets);
        return 1;
    }
    lc_config c;
    lc_status s = lc_config_preset(&c, preset);
    for (int i = 0; i < n_sets && !s; i++) s = lc_config_set(&c, sets[i]);
    free(sets);
    if (!s) s = lc_config_validate(&c, "--preset/--set");
    if (s) return cli_fail(s);
    if (config_only) {
        s = lc_mkdirs(out);
        if (s) return cli_fail(s);
        char *path = lc_path_join(out, "config.json");
        s = path ? lc_config_save(&c, path) : LC_ERR_NOMEM;
        lc_free(path);
        if (s) return cli_fail(s);
        printf("wrote %s/config.json (preset %s)\n", out, preset);
        return 0;
    }
    lc_param_count pc;
    lc_config_count(&c, &pc);
    double t0 = lc_time_sec();
    s = lc_model_init_write(&c, &o, out);
    if (s) return cli_fail(s);
    printf("wrote %s: preset %s, %lld parameters (+%lld MTP), %s, seed %llu, %.2f s\n", out, preset,
           (long long)pc.total, (long long)pc.mtp, lc_dtype_name(o.dtype), (unsigned long long)o.seed,
           lc_time_sec() - t0);
    return 0;
}
