/* train.h — training state (lc_train): f32 parameters, gradients and AdamW moments in
 * contiguous arenas laid out by the model's tensor table; the forward + backward pass of the
 * next-token loss; the AdamW step. The model and session types are reused: a parameter view
 * and a gradient view are lc_models whose weights point into the arenas. */
#ifndef LC_TRAIN_H
#define LC_TRAIN_H

#include "../model/model.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay; /* PyTorch AdamW semantics (decoupled decay) */
} lc_adamw;

typedef struct lc_train {
    lc_config cfg;
    lc_model *params;      /* view: every weight F32 inside `param` */
    lc_model *grads;       /* view: the same layout inside `grad` */
    float *param, *grad, *m, *v;
    int64_t n_params;
    lc_tensor_spec *specs; /* the tensor table (names, kinds, shapes) */
    int64_t n_specs;
    int64_t *offset;       /* [n_specs] element offset of each tensor in the arenas */
    unsigned char *touched;/* [n_specs] tensor got a gradient since the last zero_grad */
    int64_t *steps;        /* [n_specs] AdamW steps taken by each tensor (PyTorch per-parameter state) */
} lc_train;

/* Copies (dequantising FP8/BF16/F16) the weights of a loaded model into a new training state. */
lc_status lc_train_from_model(lc_train **out, const lc_model *m);
void lc_train_free(lc_train *tr);

/* Zeroes the gradients, then runs forward + backward of the mean next-token cross entropy over
 * positions 0..T-2 (targets tokens[1..T-1]); *loss receives it. MTP is not trained yet. */
lc_status lc_train_forward_backward(lc_train *tr, const int32_t *tokens, int64_t T, float *loss);

/* One AdamW step on every tensor that has a gradient (untouched experts are skipped, as
 * PyTorch skips parameters whose grad is None; the router bias is not a parameter). */
void lc_train_adamw_step(lc_train *tr, const lc_adamw *opt);

/* Index of the tensor named `name` in the table, or -1. */
int64_t lc_train_find(const lc_train *tr, const char *name);

#endif
