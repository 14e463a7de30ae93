/* cmd_train.c — `longcat train`: option parsing and Ctrl-C handling around lc_trainer_run. */
#define _POSIX_C_SOURCE 200809L
#include "cli.h"
#include "../train/trainer.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile int g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: longcat train [--preset NAME] [--set key=value ...] [--data FILE ...] [--out DIR] [--resume]\n"
            "  --steps N (300) --batch B (8) --seq-len T (64) --lr X (3e-3) --min-lr X (3e-4) --warmup N (20)\n"
            "  --wd X (0.1) --clip X (1.0) --seed S (1337) --init-std X (0.02)\n"
            "  --stop-after N (save and stop there; continue with --resume)\n"
            "  --grad-shards G (auto: 2, 1 for big models; the batch's windows in G groups with their own gradients, summed in\n"
            "  order: the same bits for any thread count; groups run side by side on small models)\n"
            "  --init-from DIR (start from a checkpoint, e.g. `longcat grow` output) --width-proxy W (the lr and\n"
            "  init were tuned at hidden size W: hidden matrices get lr x W/H and init variance x W/H)\n"
            "  --verify-every N (recompute every N-th step; stop if the gradients differ in any bit)\n"
            "  --eval-every N (50) --eval-windows N (16) --log-every N (10) --save-every N (100) --threads N\n"
            "  --no-bias-control, --target-experts K_e (default K*N/(N+Z)), --bias-kp X (0.01) --bias-ki X --bias-kd X\n"
            "  --mtp-weight W (0.1; the MTP head's loss on the token after next, 0 off)\n"
            "  --z-loss LAMBDA (1e-6; 0 off) --lb-alpha ALPHA (1e-3; 0 off) --lb-groups D (1)\n"
            "  --router-ratio-bound R (0.1; alpha is scaled down when |grad L_LB| / |grad L_LM| at the router exceeds it)\n"
            "Defaults: preset tiny, data data/tinyshakespeare.txt, out runs/PRESET. Trains a BPE tokenizer of the\n"
            "preset's vocab_size on the data when the run folder has none. Writes a Hugging Face checkpoint\n"
            "(config.json, model.safetensors, tokenizer files), optimizer.safetensors + trainer_state.json\n"
            "for --resume, metrics.csv and training.svg. Ctrl-C saves and stops.\n");
}

int cmd_train(int argc, char **argv) {
    lc_trainer_options o = lc_trainer_defaults();
    const char **sets = calloc((size_t)argc, sizeof *sets), **data = calloc((size_t)argc + 1, sizeof *data);
    char out_buf[256];
    if (!sets || !data) return 1;
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            train_usage(stdout);
            rc = 0;
            goto done;
        }
        if (!strcmp(a, "--resume")) { o.resume = 1; continue; }
        if (!strcmp(a, "--no-bias-control")) { o.bias_control = 0; continue; }
        if (!strcmp(a, "-q")) { o.quiet = 1; continue; }
        if (a[0] != '-' || !(v = cli_value(argc, argv, &i))) {
            if (a[0] != '-') fprintf(stderr, "longcat train: unexpected argument %s\n", a);
            goto done;
        }
        if (!strcmp(a, "--preset")) o.preset = v;
        else if (!strcmp(a, "--set")) sets[o.n_sets++] = v;
        else if (!strcmp(a, "--data")) data[o.n_data++] = v;
        else if (!strcmp(a, "--out")) o.out = v;
        else if (!strcmp(a, "--init-from")) o.init_from = v;
        else if (!strcmp(a, "--width-proxy")) o.width_proxy = strtod(v, NULL);
        else if (!strcmp(a, "--verify-every")) o.verify_every = atoll(v);
        else if (!strcmp(a, "--steps")) o.steps = atoll(v);
        else if (!strcmp(a, "--stop-after")) o.stop_after = atoll(v);
        else if (!strcmp(a, "--batch")) o.batch = atoll(v);
        else if (!strcmp(a, "--seq-len")) o.seq_len = atoll(v);
        else if (!strcmp(a, "--grad-shards")) o.grad_shards = atoll(v);
        else if (!strcmp(a, "--lr")) o.lr = strtof(v, NULL);
        else if (!strcmp(a, "--min-lr")) o.min_lr = strtof(v, NULL);
        else if (!strcmp(a, "--warmup")) o.warmup = atoll(v);
        else if (!strcmp(a, "--wd")) o.weight_decay = strtof(v, NULL);
        else if (!strcmp(a, "--clip")) o.clip = strtof(v, NULL);
        else if (!strcmp(a, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--init-std")) o.init_std = strtof(v, NULL);
        else if (!strcmp(a, "--eval-every")) o.eval_every = atoll(v);
        else if (!strcmp(a, "--eval-windows")) o.eval_windows = atoll(v);
        else if (!strcmp(a, "--log-every")) o.log_every = atoll(v);
        else if (!strcmp(a, "--save-every")) o.save_every = atoll(v);
        else if (!strcmp(a, "--target-experts")) o.pid.target = strtod(v, NULL);
        else if (!strcmp(a, "--bias-kp")) o.pid.kp = strtod(v, NULL);
        else if (!strcmp(a, "--bias-ki")) o.pid.ki = strtod(v, NULL);
        else if (!strcmp(a, "--bias-kd")) o.pid.kd = strtod(v, NULL);
        else if (!strcmp(a, "--z-loss")) o.aux.z_lambda = strtof(v, NULL);
        else if (!strcmp(a, "--mtp-weight")) o.aux.mtp_weight = strtof(v, NULL);
        else if (!strcmp(a, "--lb-alpha")) o.aux.lb_alpha = strtof(v, NULL);
        else if (!strcmp(a, "--lb-groups")) o.aux.lb_groups = atoll(v);
        else if (!strcmp(a, "--router-ratio-bound")) o.router_ratio_bound = strtod(v, NULL);
        else if (!strcmp(a, "--threads")) cli_set_threads(atoi(v));
        else {
            fprintf(stderr, "longcat train: unknown option %s\n", a);
            train_usage(stderr);
            goto done;
        }
    }
    if (o.n_data == 0) data[o.n_data++] = "data/tinyshakespeare.txt";
    if (!o.out) {
        snprintf(out_buf, sizeof out_buf, "runs/%s", o.preset);
        o.out = out_buf;
    }
    if (o.eval_every < 1 || o.log_every < 1 || o.save_every < 1 || o.eval_windows < 1) {
        fprintf(stderr, "longcat train: --eval-every, --eval-windows, --log-every, --save-every must be >= 1\n");
        goto done;
    }
    o.sets = sets;
    o.data = data;
    o.stop = &g_stop;
    struct sigaction sa = {0}, old;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    lc_trainer_result r;
    lc_status s = lc_trainer_run(&o, &r);
    sigaction(SIGINT, &old, NULL);
    rc = s ? cli_fail(s) : 0;
    if (!s) printf("step %lld: loss %.4f, val loss %.4f (from %.4f), FFN experts/token %.2f\n", (long long)r.step, r.loss,
                   r.val_loss, r.first_val_loss, r.ffn_per_token);
done:
    free(sets);
    free(data);
    return rc;
}
