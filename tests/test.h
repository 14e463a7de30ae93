/* test.h — the small test harness: CHECK macros, per-test pass/fail/skip, temp folders and
 * helpers shared by the test files. Each failure prints what differed and where. */
#ifndef LC_TEST_H
#define LC_TEST_H

#include "../src/model/model.h"

#include <stdio.h>

void t_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void t_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void t_run(const char *name, void (*fn)(void));
#define RUN(fn) t_run(#fn, fn)

void t_note(const char *text);
#define CHECK(cond, ...)                                  \
    do {                                                  \
        if (!(cond)) {                                    \
            t_note("CHECK(" #cond ")");                   \
            t_fail(__FILE__, __LINE__, __VA_ARGS__);      \
        }                                                 \
    } while (0)
/* A library call that must succeed; prints lc_last_error() otherwise. */
#define CHECK_OK(expr)                                                                   \
    do {                                                                                 \
        lc_status s_ = (expr);                                                           \
        if (s_) t_fail(__FILE__, __LINE__, "%s failed: %s", #expr, lc_last_error());    \
    } while (0)

/* A fresh folder under the run's temp root. */
const char *t_tmpdir(const char *name);
/* ../shared/golden (or $LC_GOLDEN); NULL when absent. */
const char *t_golden_dir(void);
/* The CLI binary under test ($LC_BIN, default ./longcat). */
const char *t_bin(void);
/* Runs a shell command, capturing stdout+stderr into *out (malloc'd); returns exit status. */
int t_sh(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* max |a - b| / max |ref| over n values. */
double t_rel_err(const float *a, const float *ref, int64_t n);
/* Reads a tensor of a safetensors file as f32 (I32 converted); NULL if absent. */
float *t_read_f32(const lc_st *st, const char *name, int64_t *n);

/* A golden file's input_ids as "5,17,42" (for CLI --tokens). */
void t_ids_string(const lc_st *st, char *buf, size_t n);

/* suites */
void suite_kernels(void);
void suite_safetensors(void);
void suite_config(void);
void suite_golden(void);
void suite_model(void);
void suite_malformed(void);
void suite_cli(void);
void suite_tokenizer(void);
void suite_chat(void);
void suite_generate(void);
void suite_train(void);
void suite_trainer(void);
void suite_server(void);

#endif
