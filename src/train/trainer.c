/* trainer.c — the training loop. Each step: B windows of seq_len+1 tokens drawn with the
 * run's RNG, forward + backward (gradients averaged), clip, AdamW at the scheduled rate, then
 * the expert-bias controller. Everything that decides the next step (weights, moments,
 * per-tensor steps, controller state, RNG, step) is saved, so a resumed run is bit-identical
 * to an uninterrupted one. */
#include "trainer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../tokenizer/train.h"
#include "data.h"

lc_trainer_options lc_trainer_defaults(void) {
    lc_trainer_options o = {0};
    o.preset = "tiny";
    o.steps = 300;
    o.batch = 8;
    o.seq_len = 64;
    o.warmup = 20;
    o.eval_every = 50;
    o.eval_windows = 16;
    o.log_every = 10;
    o.save_every = 100;
    o.lr = 3e-3f;
    o.min_lr = 3e-4f;
    o.weight_decay = 0.1f;
    o.beta1 = 0.9f;
    o.beta2 = 0.95f;
    o.clip = 1.0f;
    o.init_std = 0.02f;
    o.seed = 1337;
    o.bias_control = 1;
    o.pid = (lc_bias_pid){.target = 0, .kp = 0.01, .ki = 0, .kd = 0};
    o.aux = (lc_aux_losses){.lm_weight = 1, .z_lambda = 1e-6f, .lb_alpha = 1e-3f, .lb_groups = 1, .lb_target = 0,
                            .mtp_weight = 0.1f};
    o.router_ratio_bound = 0.1;
    return o;
}

static float lr_at(const lc_trainer_options *o, int64_t step) {
    if (step < o->warmup) return o->lr * (float)(step + 1) / (float)o->warmup;
    double p = (double)(step - o->warmup) / (double)LC_MAX(1, o->steps - o->warmup);
    return o->min_lr + (o->lr - o->min_lr) * (float)(0.5 * (1.0 + cos(3.141592653589793 * LC_MIN(p, 1.0))));
}

/* Mean next-token loss over eval_windows fixed windows of the validation split. */
static lc_status val_loss(const lc_train *tr, const lc_data *d, const lc_trainer_options *o, double *out) {
    const int64_t T = o->seq_len + 1, V = tr->cfg.vocab_size, span = d->n - d->n_train - T;
    if (span <= 0) return lc_error(LC_ERR_ARG, "train: the validation split is shorter than one window");
    float *logits = lc_malloc((size_t)(T * V) * sizeof *logits, "validation logits");
    lc_session *s = NULL;
    lc_status st = logits ? lc_session_new(&s, tr->params, T) : LC_ERR_NOMEM;
    double total = 0;
    for (int64_t w = 0; w < o->eval_windows && !st; w++) {
        const int32_t *tok = d->tokens + d->n_train + span * w / LC_MAX(1, o->eval_windows - 1);
        lc_session_reset(s);
        lc_forward_out fo = {.logits = logits};
        st = lc_forward(s, tok, T, &fo);
        if (!st) total += lc_cross_entropy(logits, tok + 1, T - 1, V, 0);
    }
    *out = total / (double)o->eval_windows;
    lc_session_free(s);
    free(logits);
    return st;
}

/* ---- checkpoints ---- */

static lc_status save_run(const lc_train *tr, const lc_trainer_options *o, int64_t step, const lc_rng *rng) {
    const int64_t n = tr->n_specs;
    lc_st_entry *e = lc_calloc((size_t)(3 * n + 3), sizeof *e, "checkpoint entries");
    char (*names)[140] = lc_calloc((size_t)(2 * n), sizeof *names, "names");
    lc_status s = (e && names) ? LC_OK : LC_ERR_NOMEM;
    for (int64_t i = 0; i < n && !s; i++) {
        const lc_tensor_spec *sp = &tr->specs[i];
        e[i] = (lc_st_entry){sp->name, LC_DT_F32, sp->cols ? 2 : 1, {sp->rows, sp->cols}, tr->param + tr->offset[i]};
    }
    if (!s) s = lc_st_write_dir(o->out, e, (int)n, 0, NULL, NULL);
    if (!s) {
        char *p = lc_path_join(o->out, "config.json");
        s = p ? lc_config_save(&tr->cfg, p) : LC_ERR_NOMEM;
        free(p);
    }
    /* optimizer state: moments, per-tensor steps, controller state */
    int k = 0;
    const int64_t LN = tr->cfg.num_layers * tr->cfg.n_routed_experts;
    for (int64_t i = 0; i < n && !s; i++) {
        const lc_tensor_spec *sp = &tr->specs[i];
        snprintf(names[2 * i], sizeof names[0], "m.%s", sp->name);
        snprintf(names[2 * i + 1], sizeof names[0], "v.%s", sp->name);
        e[k++] = (lc_st_entry){names[2 * i], LC_DT_F32, sp->cols ? 2 : 1, {sp->rows, sp->cols}, tr->m + tr->offset[i]};
        e[k++] = (lc_st_entry){names[2 * i + 1], LC_DT_F32, sp->cols ? 2 : 1, {sp->rows, sp->cols}, tr->v + tr->offset[i]};
    }
    if (!s) {
        e[k++] = (lc_st_entry){"steps", LC_DT_I64, 1, {n}, tr->steps};
        e[k++] = (lc_st_entry){"pid.integral", LC_DT_F64, 1, {LN}, tr->pid_integral};
        e[k++] = (lc_st_entry){"pid.prev", LC_DT_F64, 1, {LN}, tr->pid_prev};
        e[k++] = (lc_st_entry){"lb_alpha", LC_DT_F32, 1, {1}, &tr->aux.lb_alpha}; /* adapted by the R bound */
        char *p = lc_path_join(o->out, "optimizer.safetensors");
        s = p ? lc_st_write(p, e, k, NULL, NULL) : LC_ERR_NOMEM;
        free(p);
    }
    if (!s) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddNumberToObject(j, "step", (double)step);
        char buf[64];
        for (int i = 0; i < 4; i++) {
            snprintf(buf, sizeof buf, "%016llx", (unsigned long long)rng->s[i]);
            cJSON_AddStringToObject(j, i == 0 ? "rng0" : i == 1 ? "rng1" : i == 2 ? "rng2" : "rng3", buf);
        }
        cJSON_AddNumberToObject(j, "steps", (double)o->steps);
        cJSON_AddNumberToObject(j, "batch", (double)o->batch);
        cJSON_AddNumberToObject(j, "seq_len", (double)o->seq_len);
        cJSON_AddNumberToObject(j, "lr", o->lr);
        cJSON_AddNumberToObject(j, "seed", (double)o->seed);
        char *text = cJSON_Print(j);
        cJSON_Delete(j);
        char *p = lc_path_join(o->out, "trainer_state.json");
        s = p && text ? lc_write_text(p, text) : LC_ERR_NOMEM;
        free(p);
        free(text);
    }
    free(e);
    free(names);
    return s;
}

static lc_status load_optimizer(lc_train *tr, const char *out, int64_t *step, lc_rng *rng) {
    char *p = lc_path_join(out, "optimizer.safetensors");
    lc_st st;
    lc_status s = p ? lc_st_open(&st, p) : LC_ERR_NOMEM;
    free(p);
    if (s) return lc_error_context(s, "%s", "--resume: ");
    char name[160];
    for (int64_t i = 0; i < tr->n_specs && !s; i++) {
        int64_t n = tr->specs[i].rows * (tr->specs[i].cols ? tr->specs[i].cols : 1);
        for (int mv = 0; mv < 2 && !s; mv++) {
            snprintf(name, sizeof name, "%c.%s", mv ? 'v' : 'm', tr->specs[i].name);
            const lc_st_tensor *t = lc_st_find(&st, name);
            if (!t || t->dtype != LC_DT_F32 || lc_st_numel(t) != n) s = lc_error(LC_ERR_SHAPE, "optimizer state: %s missing or wrong", name);
            else memcpy((mv ? tr->v : tr->m) + tr->offset[i], t->data, (size_t)n * 4);
        }
    }
    const int64_t LN = tr->cfg.num_layers * tr->cfg.n_routed_experts;
    const lc_st_tensor *t = lc_st_find(&st, "steps"), *pi = lc_st_find(&st, "pid.integral"), *pp = lc_st_find(&st, "pid.prev");
    const lc_st_tensor *la = lc_st_find(&st, "lb_alpha");
    if (!s && la && la->dtype == LC_DT_F32 && lc_st_numel(la) == 1) memcpy(&tr->aux.lb_alpha, la->data, 4);
    if (!s && (!t || lc_st_numel(t) != tr->n_specs || !pi || lc_st_numel(pi) != LN || !pp || lc_st_numel(pp) != LN))
        s = lc_error(LC_ERR_SHAPE, "optimizer state: steps / pid tensors missing or wrong");
    if (!s) {
        memcpy(tr->steps, t->data, (size_t)tr->n_specs * 8);
        memcpy(tr->pid_integral, pi->data, (size_t)LN * 8);
        memcpy(tr->pid_prev, pp->data, (size_t)LN * 8);
    }
    lc_st_close(&st);
    char *text;
    size_t len;
    p = lc_path_join(out, "trainer_state.json");
    if (!s) s = lc_read_file(p, &text, &len);
    free(p);
    if (!s) {
        cJSON *j = cJSON_ParseWithLength(text, len);
        free(text);
        const cJSON *js = j ? cJSON_GetObjectItem(j, "step") : NULL;
        if (!cJSON_IsNumber(js)) s = lc_error(LC_ERR_FORMAT, "trainer_state.json: missing $.step");
        else *step = (int64_t)js->valuedouble;
        const char *keys[4] = {"rng0", "rng1", "rng2", "rng3"};
        for (int i = 0; i < 4 && !s; i++) {
            const cJSON *r = cJSON_GetObjectItem(j, keys[i]);
            if (!cJSON_IsString(r)) s = lc_error(LC_ERR_FORMAT, "trainer_state.json: missing $.%s", keys[i]);
            else rng->s[i] = strtoull(r->valuestring, NULL, 16);
        }
        cJSON_Delete(j);
    }
    return s;
}

/* ---- metrics and plot ---- */

typedef struct {
    double *step, *loss, *val, *ffn;
    int64_t n, cap;
} series;

static void series_add(series *m, double step, double loss, double val, double ffn) {
    if (m->n == m->cap) {
        int64_t c = m->cap ? 2 * m->cap : 256;
        double *a = realloc(m->step, (size_t)c * 8), *b = a ? realloc(m->loss, (size_t)c * 8) : NULL;
        if (a) m->step = a;
        if (b) m->loss = b;
        double *v = b ? realloc(m->val, (size_t)c * 8) : NULL, *f = v ? realloc(m->ffn, (size_t)c * 8) : NULL;
        if (v) m->val = v;
        if (!f) return;
        m->ffn = f;
        m->cap = c;
    }
    m->step[m->n] = step;
    m->loss[m->n] = loss;
    m->val[m->n] = val;
    m->ffn[m->n++] = ffn;
}

static void svg_panel(FILE *f, const series *m, int y0, const char *title, const double *a, const double *b,
                      const char *la, const char *lb, double ref) {
    double lo = 1e30, hi = -1e30, xmax = m->n ? m->step[m->n - 1] : 1;
    for (int64_t i = 0; i < m->n; i++)
        for (int k = 0; k < 2; k++) {
            const double *v = k ? b : a;
            if (!v || isnan(v[i])) continue;
            lo = fmin(lo, v[i]);
            hi = fmax(hi, v[i]);
        }
    if (ref > 0) {
        lo = fmin(lo, ref);
        hi = fmax(hi, ref);
    }
    if (lo > hi) lo = 0, hi = 1;
    if (hi - lo < 1e-9) hi = lo + 1;
    const int X = 60, W = 620, H = 220;
    fprintf(f, "<text x='%d' y='%d' font-size='14'>%s</text>\n", X, y0 - 8, title);
    fprintf(f, "<rect x='%d' y='%d' width='%d' height='%d' fill='none' stroke='#999'/>\n", X, y0, W, H);
    fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='end'>%.3g</text>\n", X - 4, y0 + 10, hi);
    fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='end'>%.3g</text>\n", X - 4, y0 + H, lo);
    fprintf(f, "<text x='%d' y='%d' font-size='11' text-anchor='end'>step %.0f</text>\n", X + W, y0 + H + 14, xmax);
    if (ref > 0) {
        double y = y0 + H - (ref - lo) / (hi - lo) * H;
        fprintf(f, "<line x1='%d' x2='%d' y1='%.1f' y2='%.1f' stroke='#aaa' stroke-dasharray='4'/>\n", X, X + W, y, y);
    }
    const char *color[2] = {"#1f77b4", "#d62728"};
    for (int k = 0; k < 2; k++) {
        const double *v = k ? b : a;
        if (!v) continue;
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", color[k]);
        for (int64_t i = 0; i < m->n; i++)
            if (!isnan(v[i]))
                fprintf(f, "%.1f,%.1f ", X + m->step[i] / xmax * W, y0 + H - (v[i] - lo) / (hi - lo) * H);
        fprintf(f, "'/>\n<text x='%d' y='%d' font-size='12' fill='%s'>%s</text>\n", X + W - 150, y0 + 16 + 14 * k, color[k],
                k ? lb : la);
    }
}

static void write_plot(const series *m, const char *out, double target) {
    char *p = lc_path_join(out, "training.svg");
    FILE *f = p ? fopen(p, "w") : NULL;
    free(p);
    if (!f) return;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='720' height='560' font-family='sans-serif'>\n"
               "<rect width='100%%' height='100%%' fill='white'/>\n");
    svg_panel(f, m, 30, "loss", m->loss, m->val, "train loss", "val loss", 0);
    char title[96];
    snprintf(title, sizeof title, "FFN experts per token per layer (dashed: target %.2f)", target);
    svg_panel(f, m, 300, title, m->ffn, NULL, "measured", "", target);
    fprintf(f, "</svg>\n");
    fclose(f);
}

/* ---- the loop ---- */

lc_status lc_trainer_run(const lc_trainer_options *o, lc_trainer_result *res) {
    memset(res, 0, sizeof *res);
    res->first_val_loss = NAN;
    lc_status s = lc_mkdirs(o->out);
    if (s) return s;
    if (o->batch < 1 || o->seq_len < 2 || o->steps < 1 || !(o->lr > 0))
        return lc_error(LC_ERR_ARG, "train: need --batch >= 1, --seq-len >= 2, --steps >= 1, --lr > 0");
    char *tok_path = lc_path_join(o->out, "tokenizer.json"), *cache = lc_path_join(o->out, "tokens.bin");
    char *csv_path = lc_path_join(o->out, "metrics.csv");
    lc_config cfg;
    lc_tokenizer *tok = NULL;
    lc_model *model = NULL;
    lc_train *tr = NULL;
    lc_data data = {0};
    series met = {0};
    lc_rng rng;
    lc_rng_seed(&rng, o->seed);
    int64_t step = 0;
    if (!tok_path || !cache || !csv_path) s = LC_ERR_NOMEM;
    if (!s && o->resume) {
        s = lc_model_load(&model, o->out);
        if (s) lc_error_context(s, "%s", "--resume: ");
    } else if (!s && o->init_from) {
        const char *files[2] = {"tokenizer.json", "tokenizer_config.json"};
        for (int f = 0; f < 2 && !s; f++) {
            char *from = lc_path_join(o->init_from, files[f]), *to = lc_path_join(o->out, files[f]);
            s = from && to ? lc_copy_text_file(from, to, 0) : LC_ERR_NOMEM;
            free(from);
            free(to);
        }
        if (!s) s = lc_model_load(&model, o->init_from);
        if (!s) remove(csv_path);
    } else if (!s) {
        s = lc_config_preset(&cfg, o->preset);
        for (int i = 0; i < o->n_sets && !s; i++) s = lc_config_set(&cfg, o->sets[i]);
        if (!s) s = lc_config_validate(&cfg, "--preset/--set");
        if (!s && !lc_file_exists(tok_path)) {
            lc_bpe_train_options to = {.vocab_size = cfg.vocab_size, .min_frequency = 2, .max_position = cfg.max_position_embeddings};
            if (!o->quiet) fprintf(stderr, "train: training a %lld-token BPE tokenizer on the data\n", (long long)cfg.vocab_size);
            s = lc_bpe_train(o->data, o->n_data, &to, o->out);
        }
        lc_init_options io = {.seed = o->seed, .dtype = LC_DT_F32, .init_std = o->init_std};
        if (o->width_proxy > 0) /* hidden matrices: variance x 1/s */
            io.hidden_std_scale = (float)sqrt(o->width_proxy / (double)cfg.hidden_size);
        if (!s) s = lc_model_init_write(&cfg, &io, o->out);
        if (!s) s = lc_model_load(&model, o->out);
        if (!s) remove(csv_path);
    }
    if (!s) s = lc_tokenizer_load(&tok, o->out);
    if (!s && lc_tokenizer_vocab_size(tok) > model->cfg.vocab_size)
        s = lc_error(LC_ERR_CONFIG, "train: the tokenizer has %lld ids, the model's vocab_size is %lld",
                     (long long)lc_tokenizer_vocab_size(tok), (long long)model->cfg.vocab_size);
    if (!s) s = lc_train_from_model(&tr, model);
    if (!s) {
        tr->aux = o->aux;
        tr->grad_shards = o->grad_shards;
        if (tr->aux.lb_target <= 0) tr->aux.lb_target = o->pid.target; /* one K_e for both mechanisms */
    }
    if (!s && o->resume) s = load_optimizer(tr, o->out, &step, &rng);
    if (!s && o->width_proxy > 0) {
        double sc = lc_train_width_transfer(tr, o->width_proxy);
        if (!o->quiet)
            fprintf(stderr, "train: width transfer from %.0f to %lld (s = %.3g): hidden matrices lr %.3g (x1/s), init std x%.3g\n",
                    o->width_proxy, (long long)tr->cfg.hidden_size, sc, o->lr / sc, 1.0 / sqrt(sc));
    }
    if (!s) s = lc_data_open(&data, tok, o->data, o->n_data, cache, 0.1);
    if (!s && data.n_train < o->seq_len + 2) s = lc_error(LC_ERR_ARG, "train: the data has only %lld tokens", (long long)data.n);
    const lc_config *c = s ? NULL : &tr->cfg;
    lc_bias_pid pid = o->pid;
    if (!s && pid.target <= 0)
        pid.target = (double)c->moe_topk * (double)c->n_routed_experts / (double)(c->n_routed_experts + c->zero_expert_num);
    FILE *csv = s ? NULL : fopen(csv_path, "a");
    if (!s && !csv) s = lc_error(LC_ERR_IO, "%s: cannot open", csv_path);
    if (csv && ftell(csv) == 0)
        fprintf(csv, "step,loss,val_loss,lr,grad_norm,tok_s,mtp_loss,z_loss,lb_loss,lb_alpha,router_ratio,max_abs_h,"
                     "ffn_experts_per_token\n");
    if (!s && !o->quiet)
        fprintf(stderr, "train: %s, %lld parameters, %lld train / %lld val tokens, batch %lld x %lld, steps %lld -> %lld%s\n",
                o->out, (long long)tr->n_params, (long long)data.n_train, (long long)(data.n - data.n_train),
                (long long)o->batch, (long long)o->seq_len, (long long)step, (long long)o->steps, o->resume ? " (resumed)" : "");
    const int64_t T = o->seq_len + 1;
    double last_val = NAN, t_start = lc_time_sec();
    int64_t *offsets = s ? NULL : lc_malloc((size_t)o->batch * sizeof *offsets, "batch offsets");
    int32_t *batch_tokens = s ? NULL : lc_malloc((size_t)(o->batch * T) * sizeof *batch_tokens, "batch tokens");
    float *check = s || o->verify_every <= 0 ? NULL : lc_malloc((size_t)tr->n_params * sizeof *check, "verify copy");
    if (!s && (!offsets || !batch_tokens || (o->verify_every > 0 && !check))) s = LC_ERR_NOMEM;
    if (!s) s = val_loss(tr, &data, o, &res->first_val_loss); /* where this run starts from */
    if (!s && !o->quiet) fprintf(stderr, "train: validation loss before this run %.4f\n", res->first_val_loss);
    int tty = isatty(2);
    while (!s && step < o->steps) {
        double t0 = lc_time_sec(), loss = 0;
        float lr = lr_at(o, step);
        for (int64_t b = 0; b < o->batch; b++) offsets[b] = (int64_t)(lc_rng_u64(&rng) % (uint64_t)(data.n_train - T));
        int verify = o->verify_every > 0 && (step + 1) % o->verify_every == 0;
        for (int pass = 0; pass < 1 + verify && !s; pass++) {
            if (pass == 1) memcpy(check, tr->grad, (size_t)tr->n_params * sizeof *check);
            lc_train_zero_grad(tr);
            loss = 0;
            for (int64_t b = 0; b < o->batch; b++)
                memcpy(batch_tokens + b * T, data.tokens + offsets[b], (size_t)T * sizeof *batch_tokens);
            float l = 0;
            s = lc_train_forward_backward(tr, batch_tokens, o->batch, T, 1.0f / (float)o->batch, &l);
            loss = l;
        }
        /* SPEC §4.8: the same inputs must give the same bits; a difference means silent corruption */
        if (!s && verify && memcmp(check, tr->grad, (size_t)tr->n_params * sizeof *check))
            s = lc_error(LC_ERR_IO, "train: step %lld recomputed to different gradients: silent data corruption suspected",
                         (long long)(step + 1));
        if (s) break;
        lc_train_merge_aux_grads(tr);
        double R = tr->router_ratio, alpha = tr->aux.lb_alpha;
        if (o->router_ratio_bound > 0 && R > o->router_ratio_bound) /* keep the LB gradient from dominating */
            tr->aux.lb_alpha = (float)(alpha * o->router_ratio_bound / R);
        double gnorm = 0;
        s = lc_train_clip_grad(tr, o->clip, &gnorm);
        lc_adamw opt = {lr, o->beta1, o->beta2, 1e-8f, o->weight_decay};
        if (!s) s = lc_train_adamw_step(tr, &opt);
        if (s) break;
        double ffn = o->bias_control ? lc_train_update_bias(tr, &pid) : lc_train_ffn_per_token(tr);
        if (!o->bias_control) lc_train_reset_stats(tr);
        step++;
        double tok_s = (double)(o->batch * o->seq_len) / (lc_time_sec() - t0);
        int halt = (o->stop && *o->stop) || (o->stop_after > 0 && step == o->stop_after);
        int eval = step % o->eval_every == 0 || step == o->steps || halt;
        if (eval) s = val_loss(tr, &data, o, &last_val);
        fprintf(csv, "%lld,%.6f,%.6f,%.6g,%.4f,%.1f,%.6f,%.6g,%.6g,%.6g,%.4f,%.3f,%.4f\n", (long long)step, loss,
                eval ? last_val : NAN, lr, gnorm, tok_s, tr->loss_mtp, tr->loss_z, tr->loss_lb, alpha, R, tr->max_abs_h, ffn);
        series_add(&met, (double)step, loss, eval ? last_val : NAN, ffn);
        res->step = step;
        res->loss = loss;
        res->val_loss = last_val;
        res->ffn_per_token = ffn;
        res->tok_s = tok_s;
        if (!o->quiet && (step % o->log_every == 0 || eval || step == o->steps))
            fprintf(stderr, "%sstep %5lld/%lld | loss %.4f | mtp %.3f | val %.4f | %6.0f tok/s | lr %.2e | gnorm %.3f | R %.3f | max|h| %.1f"
                            " | FFN experts/token %.2f (target %.2f)%s",
                    tty ? "\r" : "", (long long)step, (long long)o->steps, loss, tr->loss_mtp, last_val, tok_s, lr, gnorm, R,
                    tr->max_abs_h,
                    ffn, pid.target, tty && !eval ? "" : "\n");
        if (step % o->save_every == 0 || step == o->steps || halt) {
            fflush(csv);
            s = save_run(tr, o, step, &rng);
            write_plot(&met, o->out, pid.target);
        }
        if (halt) {
            if (!o->quiet) fprintf(stderr, "\ntrain: stopped at step %lld and saved; continue with --resume\n", (long long)step);
            break;
        }
    }
    if (!s && !o->quiet)
        fprintf(stderr, "\ntrain: done in %.1f s; checkpoint, metrics.csv and training.svg in %s\n", lc_time_sec() - t_start, o->out);
    if (csv) fclose(csv);
    free(offsets);
    free(batch_tokens);
    free(check);
    free(met.step);
    free(met.loss);
    free(met.val);
    free(met.ffn);
    lc_data_close(&data);
    lc_train_free(tr);
    lc_model_free(model);
    lc_tokenizer_free(tok);
    free(tok_path);
    free(cache);
    free(csv_path);
    return s;
}
