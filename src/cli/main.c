/* main.c — the `longcat` binary: subcommand dispatch and shared argument helpers. Each
 * subcommand lives in its own cmd_*.c file. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int cli_fail(lc_status s) {
    fprintf(stderr, "longcat: %s: %s\n", lc_status_name(s), lc_last_error());
    return 1;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        fprintf(stderr, "longcat: option %s needs a value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

void cli_set_threads(int n) {
#ifdef _OPENMP
    if (n > 0) omp_set_num_threads(n);
#else
    (void)n;
#endif
}

lc_status cli_parse_tokens(const char *text, int32_t **tokens, int64_t *n) {
    *tokens = NULL;
    *n = 0;
    int64_t cap = 1;
    for (const char *p = text; *p; p++) cap += *p == ',';
    int32_t *t = lc_malloc((size_t)cap * sizeof *t, "tokens");
    if (!t) return LC_ERR_NOMEM;
    const char *p = text;
    int64_t k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(t);
            return lc_error(LC_ERR_ARG, "--tokens: \"%s\" is not a comma-separated list of token ids (at \"%s\")", text, p);
        }
        t[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(t);
        return lc_error(LC_ERR_ARG, "--tokens: empty list");
    }
    *tokens = t;
    *n = k;
    return LC_OK;
}

static void usage(FILE *f) {
    fprintf(f,
            "longcat — LongCat-Flash inference and training in C\n\n"
            "usage: longcat <command> [options]\n\n"
            "commands:\n"
            "  info   MODEL_DIR|config.json         config summary, parameter counts, dtypes, memory\n"
            "  logits MODEL_DIR --tokens 1,2,3      run the forward pass, write logits (and more) to safetensors\n"
            "         [--decode] [--hidden] [--routes] [--mtp] [-o OUT.safetensors] [--threads N]\n"
            "  init   --preset NAME [--set key=value ...] [--dtype f32|bf16|f16|fp8] [--seed N]\n"
            "         [--shard-mb N] [--config-only] OUT_DIR      write a random-initialised checkpoint\n"
            "  tokenize MODEL_DIR \"text\" [--pieces]  text -> token ids (JSON); --decode IDS for the reverse\n"
            "  tokenizer train --vocab N FILE... -o DIR   train a byte-level BPE tokenizer\n"
            "  generate MODEL_DIR -p PROMPT [-n N] [--temp T --top-p P --seed S ...]   complete a prompt\n"
            "  chat   MODEL_DIR [--system TEXT]       interactive multi-turn chat\n"
            "  train  --preset NAME --data FILE --out DIR [--steps N ...]   train a model (see train --help)\n"
            "  grads  MODEL_DIR --tokens 1,2,3 -o OUT.safetensors   loss and every parameter's gradient\n"
            "  grow   SRC DST [--factor K]            stack a trained model's layers into a deeper one\n"
            "  quantize SRC DST --type q8_0|q4_0|fp8  projections to 8-bit, 4-bit blocks or FP8 (docs/FORMATS.md)\n"
            "  bench  [MODEL_DIR] [--json]            decode/prefill speed as ratios to measured bandwidth / FMA peak\n"
            "  serve  MODEL_DIR [--port 8080] [--api-key KEY] [--parallel N] [--ctx N]   OpenAI-compatible server\n\n"
            "presets: %s\n"
            "Run `longcat <command> --help` for details.\n",
            lc_config_preset_names());
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 1 : 0;
    }
    lc_kernels_init();
    lc_memory_keep_freed();
    const char *cmd = argv[1];
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "logits")) return cmd_logits(argc - 1, argv + 1);
    if (!strcmp(cmd, "init")) return cmd_init(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenizer")) return cmd_tokenizer(argc - 1, argv + 1);
    if (!strcmp(cmd, "generate")) return cmd_generate(argc - 1, argv + 1);
    if (!strcmp(cmd, "chat")) return cmd_chat(argc - 1, argv + 1);
    if (!strcmp(cmd, "grads")) return cmd_grads(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "grow")) return cmd_grow(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    fprintf(stderr, "longcat: unknown command \"%s\"\n\n", cmd);
    usage(stderr);
    return 1;
}
