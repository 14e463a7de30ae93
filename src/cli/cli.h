/* cli.h — the `longcat` subcommands and their shared argument helpers. Only the CLI prints
 * and exits; the library returns statuses. */
#ifndef LC_CLI_H
#define LC_CLI_H

#include "../generate/generate.h"
#include "../model/model.h"

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_grads(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_grow(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);

/* Prints "longcat: <status>: <message>" and returns 1. */
int cli_fail(lc_status s);
/* Parses "5,17,42" into a new array. */
lc_status cli_parse_tokens(const char *text, int32_t **tokens, int64_t *n);
/* Value of option argv[*i] (advancing *i); prints an error and returns NULL when missing. */
const char *cli_value(int argc, char **argv, int *i);
void cli_set_threads(int n);
/* --no-mmap: cli_open copies the weights into RAM (lc_model_make_resident). */
void cli_set_no_mmap(int on);
/* Shared by generate and chat: sampling flags (returns 1 if argv[*i] was one, -1 on error),
 * their help text, opening model + tokenizer + session, the closing speed line. */
int cli_sampling_arg(int argc, char **argv, int *i, lc_sampler_params *p);
const char *cli_sampling_help(void);
/* s may be NULL (no session). */
lc_status cli_open(const char *dir, const char *tok_dir, int64_t n_ctx, lc_model **m, lc_session **s, lc_tokenizer **t);
void cli_print_speed(const lc_gen_result *r);

#endif
