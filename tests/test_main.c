/* test_main.c — the test runner: runs every suite, prints one line per test and the closing
 * "N passed, N failed, N skipped" line CI reads. */
#define _POSIX_C_SOURCE 200809L
#include "test.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int g_failed_checks, g_skipped, g_passed, g_failed;
static char g_root[256];

void t_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    FAIL %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_failed_checks++;
}

void t_note(const char *text) { fprintf(stderr, "    %s\n", text); }

void t_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    skipped: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_skipped++;
}

void t_run(const char *name, void (*fn)(void)) {
    int before = g_failed_checks, skipped = g_skipped;
    double t0 = lc_time_sec();
    fn();
    if (g_skipped != skipped) {
        printf("SKIP %s\n", name);
        return;
    }
    if (g_failed_checks == before) g_passed++;
    else g_failed++;
    printf("%s %s (%.2f s)\n", g_failed_checks == before ? "ok  " : "FAIL", name, lc_time_sec() - t0);
    fflush(stdout);
}

const char *t_tmpdir(const char *name) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_root, name);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", path);
    return path;
}

const char *t_golden_dir(void) {
    const char *g = getenv("LC_GOLDEN");
    if (!g) g = "../shared/golden";
    return lc_is_dir(g) ? g : NULL;
}

const char *t_bin(void) {
    const char *b = getenv("LC_BIN");
    return b ? b : "./longcat";
}

int t_sh(char **out, const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "( %s ) 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int ch;
    while (buf && (ch = fgetc(p)) != EOF) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) break;
            buf = nb;
        }
        buf[n++] = (char)ch;
    }
    if (buf) buf[n] = 0;
    int rc = pclose(p);
    if (out) *out = buf;
    else free(buf);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

double t_rel_err(const float *a, const float *ref, int64_t n) {
    double mx = 0, d = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(ref[i]));
        double e = fabs((double)a[i] - ref[i]);
        d = isnan(e) ? INFINITY : fmax(d, e);
    }
    return mx > 0 ? d / mx : d;
}

float *t_read_f32(const lc_st *st, const char *name, int64_t *n) {
    const lc_st_tensor *t = lc_st_find(st, name);
    if (!t) return NULL;
    int64_t k = lc_st_numel(t);
    float *v = malloc((size_t)(k ? k : 1) * sizeof *v);
    for (int64_t i = 0; v && i < k; i++) v[i] = lc_load_f32(t->data, t->dtype, i);
    if (n) *n = k;
    return v;
}

int main(int argc, char **argv) {
    lc_kernels_init();
    snprintf(g_root, sizeof g_root, "/tmp/longcat-test-%d", (int)getpid());
    const char *only = argc > 1 ? argv[1] : NULL;
    struct { const char *name; void (*fn)(void); } suites[] = {
        {"kernels", suite_kernels}, {"safetensors", suite_safetensors}, {"config", suite_config},
        {"golden", suite_golden},   {"model", suite_model},             {"malformed", suite_malformed},
        {"tokenizer", suite_tokenizer}, {"chat", suite_chat}, {"cli", suite_cli},
    };
    for (size_t i = 0; i < sizeof suites / sizeof suites[0]; i++) {
        if (only && strcmp(only, suites[i].name)) continue;
        printf("# %s\n", suites[i].name);
        suites[i].fn();
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    printf("%d passed, %d failed, %d skipped\n", g_passed, g_failed, g_skipped);
    return g_failed ? 1 : 0;
}
