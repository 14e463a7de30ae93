/* test_train.c — the backward pass and AdamW against ../shared/golden: loss, the gradient of
 * every main-model parameter (grad.*), and every parameter after one AdamW step (adamw1.*,
 * torch.optim.AdamW semantics: unrouted experts have no grad and are left untouched).
 * Tolerance 1e-4 x max|golden| per tensor (golden/README.md). The AdamW step is checked from
 * the golden gradients: step 1 moves each weight by about lr * sign(g), so an element whose
 * true gradient is ~0 flips with float rounding (we measured 3e-3 from our own, 1e-4-exact
 * gradients) — the optimizer and the gradients are each checked on exact inputs. */
#include "test.h"
#include "../src/train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void check_case(const char *dir) {
    char *gpath = lc_path_join(dir, "golden.safetensors");
    lc_st g;
    lc_model *m = NULL;
    lc_train *tr = NULL;
    if (lc_st_open(&g, gpath)) {
        t_fail(__FILE__, __LINE__, "%s", lc_last_error());
        free(gpath);
        return;
    }
    CHECK_OK(lc_model_load(&m, dir));
    if (m) CHECK_OK(lc_train_from_model(&tr, m));
    if (!tr) goto done;
    int64_t T;
    float *ids_f = t_read_f32(&g, "input_ids", &T);
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    for (int64_t t = 0; t < T; t++) ids[t] = (int32_t)ids_f[t];
    float loss = 0;
    lc_train_zero_grad(tr);
    CHECK_OK(lc_train_forward_backward(tr, ids, T, 1.0f, &loss));
    float *ref_loss = t_read_f32(&g, "loss", NULL);
    CHECK(ref_loss && fabsf(loss - ref_loss[0]) <= 1e-4f * fabsf(ref_loss[0]), "%s loss %.7f vs %.7f", dir, loss, ref_loss ? ref_loss[0] : 0);
    double worst_g = 0, worst_a = 0;
    int n_grad = 0, n_adam = 0;
    for (int i = 0; i < g.n_tensors; i++) {
        const char *name = g.tensors[i].name;
        if (strncmp(name, "grad.", 5)) continue;
        int64_t k = lc_train_find(tr, name + 5), n;
        float *ref = t_read_f32(&g, name, &n);
        CHECK(k >= 0, "%s: no parameter %s", dir, name + 5);
        if (k >= 0 && ref) {
            CHECK(tr->touched[k], "%s: %s has no gradient", dir, name + 5);
            double e = t_rel_err(tr->grad + tr->offset[k], ref, n);
            worst_g = fmax(worst_g, e);
            CHECK(e <= 1e-4, "%s %s rel err %.3g", dir, name, e);
            n_grad++;
        }
        free(ref);
    }
    /* AdamW from the golden gradients; tensors without one are skipped (PyTorch: grad None) */
    memset(tr->touched, 0, (size_t)tr->n_specs);
    for (int i = 0; i < g.n_tensors; i++) {
        const char *name = g.tensors[i].name;
        int64_t k = strncmp(name, "grad.", 5) ? -1 : lc_train_find(tr, name + 5), n;
        float *ref = k >= 0 ? t_read_f32(&g, name, &n) : NULL;
        if (ref) {
            memcpy(tr->grad + tr->offset[k], ref, (size_t)n * sizeof(float));
            tr->touched[k] = 1;
        }
        free(ref);
    }
    lc_adamw opt = {.lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f};
    lc_train_adamw_step(tr, &opt);
    for (int i = 0; i < g.n_tensors; i++) {
        const char *name = g.tensors[i].name;
        if (strncmp(name, "adamw1.", 7)) continue;
        int64_t k = lc_train_find(tr, name + 7), n;
        float *ref = t_read_f32(&g, name, &n);
        if (k >= 0 && ref) {
            double e = t_rel_err(tr->param + tr->offset[k], ref, n);
            worst_a = fmax(worst_a, e);
            CHECK(e <= 1e-4, "%s %s rel err %.3g", dir, name, e);
            n_adam++;
        } else CHECK(0, "%s: no parameter %s", dir, name + 7);
        free(ref);
    }
    printf("    %-12s loss %.6f (golden %.6f), %d grads worst rel err %.2e, %d AdamW tensors worst %.2e\n",
           strrchr(dir, '/') + 1, loss, ref_loss ? ref_loss[0] : 0, n_grad, worst_g, n_adam, worst_a);
    free(ref_loss);
    free(ids);
    free(ids_f);
done:
    lc_train_free(tr);
    lc_model_free(m);
    lc_st_close(&g);
    free(gpath);
}

static void test_golden_gradients_and_adamw(void) {
    const char *root = t_golden_dir();
    if (!root) {
        t_skip("no ../shared/golden");
        return;
    }
    const char *cases[] = {"tiny-f32", "tiny-bf16", "tiny-fp8", "tiny-nozero"};
    for (int i = 0; i < 4; i++) {
        char *dir = lc_path_join(root, cases[i]);
        check_case(dir);
        free(dir);
    }
}

void suite_train(void) { RUN(test_golden_gradients_and_adamw); }
