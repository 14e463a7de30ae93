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

/* The report's auxiliary losses (SPEC §4.2, §4.4). The hidden z-loss acts on every layer's
 * output: L_Z = (lambda/T) * sum_t (log sum_i exp|h_t,i|)^2. The device-level balance loss
 * splits the N FFN experts into lb_groups groups plus one group of all zero experts:
 * L_LB = alpha * sum_j (f_j / target_j) * P_j, f_j the fraction of routing slots in group j,
 * P_j the mean router probability mass of group j, targets K_e/(K*D) per FFN group and
 * (K-K_e)/K for the zero group, so balance at the target costs alpha. */
typedef struct {
    float lm_weight;   /* weight of the next-token loss (1) */
    float z_lambda;    /* 0: off */
    float lb_alpha;    /* 0: off */
    int64_t lb_groups; /* D (1) */
    double lb_target;  /* K_e (<= 0: K*N/(N+Z)) */
    float mtp_weight;  /* MTP head loss on the token after next (SPEC §4.9); 0: off */
} lc_aux_losses;

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
    int64_t *expert_tokens;/* [L][N+Z] routing slots per expert since lc_train_reset_stats */
    int64_t stat_tokens;   /* tokens seen since then */
    double *pid_integral, *pid_prev; /* [L][N] controller state */
    lc_aux_losses aux;
    float *lb_router_grad; /* [L][(N+Z) * H]: the LB loss's router gradient until merged */
    /* summed since lc_train_zero_grad, each term weighted like the gradients (batch means): */
    double loss_z, loss_lb, loss_mtp, max_abs_h;
    double router_ratio;   /* R = |grad_router L_LB| / |grad_router L_LM| at the last merge */
    float grad_scale;      /* clipping factor lc_train_clip_grad leaves for the next AdamW step (1: none) */
    float *lr_scale;       /* [n_specs] learning-rate multiplier per tensor (width transfer), 1 by default */
    int64_t grad_shards;   /* windows of a batch form this many gradient shards (0: automatic; 1: none) */
    struct lc_train_shard *shard; /* [n_shard] gradient buffers of shards 1, 2, ... (shard 0 is the state) */
    int64_t n_shard;
} lc_train;

/* Copies (dequantising FP8/BF16/F16) the weights of a loaded model into a new training state. */
lc_status lc_train_from_model(lc_train **out, const lc_model *m);
void lc_train_free(lc_train *tr);

void lc_train_zero_grad(lc_train *tr);
/* Forward + backward of n_seq sequences of T tokens (tokens[n_seq * T], one after another), all
 * rows of a gradient shard through each sublayer at once. The windows form G contiguous shards
 * (G = tr->grad_shards, or lc_train_auto_shards); each shard's gradients go to its own buffers
 * and are added to the state's in shard order, so the result depends on the batch and G, never
 * on the thread count; shards run side by side (one thread each) when that beats running each
 * shard's products on every thread (small models). Each sequence's loss is its mean next-token cross
 * entropy over positions 0..T-2 (targets tokens[1..T-1]) plus the enabled auxiliary losses
 * (MTP, z-loss, LB); gradients += scale * d (sum of the sequences' losses) / d params (scale 1/B
 * averages a batch). *loss gets the mean over sequences of the unscaled next-token loss.
 * Routing statistics are added to tr->expert_tokens. */
lc_status lc_train_forward_backward(lc_train *tr, const int32_t *tokens, int64_t n_seq, int64_t T, float scale,
                                    float *loss);
/* The automatic shard count for a batch of n_seq windows: 2 (1 for one window) while the extra
 * gradient buffer stays within 256 MiB; 1 for larger models. (Measured on 2 cores: 2 shards beat
 * 4 on `small`, whose windows are then one per shard; docs/PERFORMANCE.md.) */
int64_t lc_train_auto_shards(const lc_train *tr, int64_t n_seq);

/* One AdamW step on every tensor that has a gradient (untouched experts are skipped, as
 * PyTorch skips parameters whose grad is None; the router bias is not a parameter), with the
 * gradients scaled by the clipping factor. It consumes the gradients: they are left at zero and
 * no tensor is marked touched, so the next lc_train_zero_grad has nothing to clear. (Invariant:
 * a tensor not marked touched has a zero gradient.) */
lc_status lc_train_adamw_step(lc_train *tr, const lc_adamw *opt);

/* Adds the LB loss's router gradient to the router gradients after measuring
 * R = |grad_router L_LB| / |grad_router L_LM| (SPEC §4.3); call once per step before clipping. */
void lc_train_merge_aux_grads(lc_train *tr);

/* Global L2 norm of the gradients (touched tensors); scales them down to max_norm if above
 * (max_norm <= 0: no clipping) — the factor is kept in tr->grad_scale and applied by the next
 * lc_train_adamw_step, which reads the gradients anyway. *norm gets the norm before clipping. */
lc_status lc_train_clip_grad(lc_train *tr, double max_norm, double *norm);

/* Expert-bias budget control (SPEC §4.1): for FFN expert i, error
 * e_i = K_e/(K*N) - T_i/(K*T) from the routing counts since the last call; the correction
 * bias moves by kp*e + ki*sum(e) + kd*(e - e_prev). Zero experts' biases stay fixed.
 * Resets the counts. Returns the measured average FFN experts per token (all layers). */
typedef struct {
    double target;   /* K_e: wanted FFN experts per token (e.g. 8 of 12 for LongCat-Flash) */
    double kp, ki, kd;
} lc_bias_pid;
double lc_train_update_bias(lc_train *tr, const lc_bias_pid *pid);
/* FFN experts per token per layer since the last reset (without updating anything). */
double lc_train_ffn_per_token(const lc_train *tr);
void lc_train_reset_stats(lc_train *tr);

/* Width-scaling hyperparameter transfer (SPEC §4.5): with s = hidden_size / proxy_width, every
 * hidden matrix (2-D, not an embedding or lm_head) gets learning rate x 1/s. Returns s. */
double lc_train_width_transfer(lc_train *tr, double proxy_width);
/* 1 for the embedding tables and lm_head (they keep the proxy's settings). */
int lc_is_embedding_tensor(const char *name);

/* Mean cross entropy of rows [0, n) of logits [n, V] against targets. With k != 0 the logits
 * become k * d(mean)/d(logits); with k = 0 they are left as they are. */
double lc_cross_entropy(float *logits, const int32_t *targets, int64_t n, int64_t V, float k);

/* Index of the tensor named `name` in the table, or -1. */
int64_t lc_train_find(const lc_train *tr, const char *name);

#endif
