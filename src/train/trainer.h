/* trainer.h — `longcat train`: the training loop around lc_train (data windows, warmup +
 * cosine schedule, clipping, AdamW, expert-bias control, evaluation, metrics, checkpoints,
 * resume). */
#ifndef LC_TRAINER_H
#define LC_TRAINER_H

#include "train.h"

typedef struct {
    const char *preset;              /* new runs: config preset ... */
    const char *const *sets;         /* ... and key=value overrides */
    int n_sets;
    const char *const *data;         /* text files */
    int n_data;
    const char *out;                 /* run folder: a Hugging Face checkpoint + optimizer state */
    const char *init_from;           /* new run starting from this checkpoint (e.g. `longcat grow` output) */
    double width_proxy;              /* > 0: hidden_size of the proxy the lr / init were tuned on (SPEC §4.5) */
    int64_t verify_every;            /* > 0: recompute every N-th step and require identical gradients */
    int resume;
    int64_t stop_after;              /* > 0: save and stop after this step (resume later) */
    int64_t steps, batch, seq_len, warmup, eval_every, eval_windows, log_every, save_every;
    int64_t grad_shards;             /* windows of a batch in this many gradient shards (0: automatic) */
    float lr, min_lr, weight_decay, beta1, beta2, clip, init_std;
    uint64_t seed;
    int bias_control;                /* expert-bias PID on (SPEC §4.1) */
    lc_aux_losses aux;               /* z-loss, device-level balance loss (SPEC §4.2, §4.4) */
    double router_ratio_bound;       /* > 0: scale alpha down whenever R exceeds it (SPEC §4.3) */
    lc_bias_pid pid;                 /* target <= 0: K * N / (N + Z) */
    volatile int *stop;              /* set (Ctrl-C) to save and stop after the current step */
    int quiet;
} lc_trainer_options;

lc_trainer_options lc_trainer_defaults(void);
/* Final figures of a run, for callers and tests. */
typedef struct {
    int64_t step;
    double loss, val_loss, first_val_loss, ffn_per_token, tok_s;
} lc_trainer_result;
lc_status lc_trainer_run(const lc_trainer_options *o, lc_trainer_result *r);

#endif
