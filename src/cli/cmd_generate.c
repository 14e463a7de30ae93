/* cmd_generate.c — `longcat generate`: complete a prompt with streaming output and speed
 * figures; sampling flags shared with `longcat chat` (cli_sampling_arg). */
#include "cli.h"
#include "../generate/generate.h"
#include "../tokenizer/chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_sampling_arg(int argc, char **argv, int *i, lc_sampler_params *p) {
    const char *a = argv[*i];
    const char *names[] = {"--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--presence-penalty",
                           "--frequency-penalty", "--repeat-last-n", "--seed"};
    int k = -1;
    for (int j = 0; j < 9; j++)
        if (!strcmp(a, names[j])) k = j;
    if (k < 0) return 0;
    const char *v = cli_value(argc, argv, i);
    if (!v) return -1;
    switch (k) {
    case 0: p->temperature = strtof(v, NULL); break;
    case 1: p->top_k = atoi(v); break;
    case 2: p->top_p = strtof(v, NULL); break;
    case 3: p->min_p = strtof(v, NULL); break;
    case 4: p->repetition_penalty = strtof(v, NULL); break;
    case 5: p->presence_penalty = strtof(v, NULL); break;
    case 6: p->frequency_penalty = strtof(v, NULL); break;
    case 7: p->penalty_last_n = atoi(v); break;
    default: p->seed = strtoull(v, NULL, 10); break;
    }
    return 1;
}

const char *cli_sampling_help(void) {
    return "sampling: --temp T (0 = greedy, default 0.8) --top-k K --top-p P (0.95) --min-p P --repeat-penalty R\n"
           "          --presence-penalty P --frequency-penalty F --repeat-last-n N (64) --seed S\n";
}

static int g_no_mmap;
void cli_set_no_mmap(int on) { g_no_mmap = on; }

lc_status cli_open(const char *dir, const char *tok_dir, int64_t n_ctx, lc_model **m, lc_session **s, lc_tokenizer **t) {
    *m = NULL;
    if (s) *s = NULL;
    *t = NULL;
    lc_status st = lc_model_load(m, dir);
    if (!st && g_no_mmap) st = lc_model_make_resident(*m);
    if (!st) {
        st = lc_tokenizer_load(t, tok_dir ? tok_dir : dir);
        if (st)
            lc_error_context(st, "%s", "(a model needs its tokenizer.json: train one with `longcat tokenizer train` or pass --tokenizer DIR) ");
    }
    if (!st && s) st = lc_session_new(s, *m, n_ctx);
    if (st) {
        lc_tokenizer_free(*t);
        lc_model_free(*m);
        *m = NULL;
        *t = NULL;
    }
    return st;
}

static void print_text(void *user, const char *text, size_t len) {
    (void)user;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
}

void cli_print_speed(const lc_gen_result *r) {
    fprintf(stderr, "\n[prompt %lld tokens, %.1f tok/s | generated %lld tokens, %.1f tok/s | stop: %s]\n",
            (long long)r->n_prompt, r->prompt_seconds > 0 ? (double)r->n_prompt / r->prompt_seconds : 0.0,
            (long long)r->n_tokens, r->gen_seconds > 0 ? (double)r->n_tokens / r->gen_seconds : 0.0,
            lc_stop_reason_name(r->stop));
}

int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *prompt = NULL, *tok_dir = NULL;
    lc_gen_options o = {.max_tokens = 128, .sampling = lc_sampler_defaults()};
    const char **stops = calloc((size_t)argc, sizeof *stops);
    int64_t n_ctx = 0;
    int chat = 0;
    if (!stops) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        int r = cli_sampling_arg(argc, argv, &i, &o.sampling);
        if (r < 0) goto fail;
        if (r > 0) continue;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: longcat generate MODEL_DIR -p PROMPT [-n N] [--stop STR]... [--chat] [--ignore-eos]\n"
                   "                        [--ctx N] [--threads N] [--tokenizer DIR] [--no-mmap]\n%s"
                   "--no-mmap copies the weights into RAM (huge pages) instead of mapping the file.\n"
                   "--chat wraps the prompt as one user turn of the chat template.\n",
                   cli_sampling_help());
            free(stops);
            return 0;
        } else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--no-mmap")) cli_set_no_mmap(1);
        else if (!strcmp(a, "--ignore-eos")) o.ignore_eos = 1;
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "-n") || !strcmp(a, "--stop") ||
                 !strcmp(a, "--ctx") || !strcmp(a, "--threads") || !strcmp(a, "--tokenizer")) {
            if (!(v = cli_value(argc, argv, &i))) goto fail;
            if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) prompt = v;
            else if (!strcmp(a, "-n")) o.max_tokens = atoll(v);
            else if (!strcmp(a, "--stop")) stops[o.n_stop++] = v;
            else if (!strcmp(a, "--ctx")) n_ctx = atoll(v);
            else if (!strcmp(a, "--tokenizer")) tok_dir = v;
            else cli_set_threads(atoi(v));
        } else if (a[0] == '-') {
            fprintf(stderr, "longcat generate: unknown option %s\n", a);
            goto fail;
        } else dir = a;
    }
    if (!dir || !prompt) {
        fprintf(stderr, "usage: longcat generate MODEL_DIR -p PROMPT [-n N] (see --help)\n");
        goto fail;
    }
    o.stop = stops;
    o.on_text = print_text;
    lc_model *m;
    lc_session *s;
    lc_tokenizer *t;
    lc_status st = cli_open(dir, tok_dir, n_ctx, &m, &s, &t);
    if (st) {
        free(stops);
        return cli_fail(st);
    }
    char *text = NULL;
    if (chat) {
        cJSON *msgs = cJSON_CreateArray(), *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", prompt);
        cJSON_AddItemToArray(msgs, u);
        st = lc_chat_render(msgs, NULL, &text);
        cJSON_Delete(msgs);
    } else text = lc_strdup(prompt);
    int32_t *ids = NULL;
    int64_t n = 0;
    if (!st) st = lc_tokenizer_encode_prompt(t, text, strlen(text), &ids, &n);
    if (!st && n == 0) st = lc_error(LC_ERR_ARG, "the prompt encodes to no tokens");
    lc_gen_result r = {0};
    if (!st) {
        fputs(prompt, stdout);
        fflush(stdout);
        st = lc_generate(s, t, ids, n, &o, &r);
    }
    if (!st) cli_print_speed(&r);
    lc_gen_result_free(&r);
    free(ids);
    free(text);
    free(stops);
    lc_session_free(s);
    lc_tokenizer_free(t);
    lc_model_free(m);
    return st ? cli_fail(st) : 0;
fail:
    free(stops);
    return 1;
}
