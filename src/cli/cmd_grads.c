/* cmd_grads.c — `longcat grads`: loss and the gradient of every main-model parameter for one
 * token sequence, written to safetensors as `loss` and `grad.NAME` (the names and meaning of
 * ../shared/golden), so the trainer can be checked against any other framework. */
#include "cli.h"
#include "../train/train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_grads(int argc, char **argv) {
    const char *dir = NULL, *tokens_arg = NULL, *out_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: longcat grads MODEL_DIR --tokens ID,ID,... -o OUT.safetensors [--threads N]\n"
                   "Writes loss (mean next-token cross entropy over positions 0..T-2) and grad.NAME for every\n"
                   "main-model parameter that receives a gradient (experts no token chose have none).\n");
            return 0;
        } else if (!strcmp(a, "--tokens") || !strcmp(a, "-o") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i))) return 1;
            if (!strcmp(a, "--tokens")) tokens_arg = v;
            else if (!strcmp(a, "-o")) out_path = v;
            else cli_set_threads(atoi(v));
        } else if (a[0] == '-') {
            fprintf(stderr, "longcat grads: unknown option %s\n", a);
            return 1;
        } else dir = a;
    }
    if (!dir || !tokens_arg || !out_path) {
        fprintf(stderr, "usage: longcat grads MODEL_DIR --tokens ID,ID,... -o OUT.safetensors\n");
        return 1;
    }
    int32_t *tok = NULL;
    int64_t T = 0;
    lc_model *m = NULL;
    lc_train *tr = NULL;
    lc_status s = cli_parse_tokens(tokens_arg, &tok, &T);
    if (!s) s = lc_model_load(&m, dir);
    if (!s) s = lc_train_from_model(&tr, m);
    float loss = 0;
    double t0 = lc_time_sec();
    if (!s) lc_train_zero_grad(tr);
    if (!s) s = lc_train_forward_backward(tr, tok, 1, T, 1.0f, &loss);
    if (!s) {
        fprintf(stderr, "longcat grads: %lld tokens, loss %.6f, forward + backward %.3f s\n", (long long)T, loss,
                lc_time_sec() - t0);
        lc_st_entry *e = lc_calloc((size_t)tr->n_specs + 1, sizeof *e, "entries");
        char (*names)[140] = lc_calloc((size_t)tr->n_specs, sizeof *names, "names");
        int n = 0;
        if (!e || !names) s = LC_ERR_NOMEM;
        if (!s) {
            e[n++] = (lc_st_entry){"loss", LC_DT_F32, 1, {1}, &loss};
            for (int64_t i = 0; i < tr->n_specs; i++) {
                if (!tr->touched[i]) continue;
                const lc_tensor_spec *sp = &tr->specs[i];
                snprintf(names[i], sizeof names[i], "grad.%s", sp->name);
                e[n] = (lc_st_entry){names[i], LC_DT_F32, sp->cols ? 2 : 1, {sp->rows, sp->cols}, tr->grad + tr->offset[i]};
                n++;
            }
            s = lc_st_write(out_path, e, n, NULL, NULL);
            if (!s) fprintf(stderr, "longcat grads: wrote %s (%d tensors)\n", out_path, n);
        }
        lc_free(e);
        lc_free(names);
    }
    lc_free(tok);
    lc_train_free(tr);
    lc_model_free(m);
    return s ? cli_fail(s) : 0;
}
