/* cmd_logits.c — `longcat logits`: run the forward pass on given token ids (prefill, or one
 * token at a time through the compressed cache with --decode) and write logits, hidden
 * states, router choices and MTP logits to a safetensors file named as in golden/. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int decode, hidden, routes, mtp;
} logits_opts;

/* Runs the model; buffers are [T,V], [L,T,H], [L,T,K], [T-1,V] (NULL when not wanted). */
static lc_status run(lc_session *s, const int32_t *tok, int64_t T, const logits_opts *o, float *logits, float *hidden,
                     int32_t *topk, float *mtp) {
    const lc_config *c = &s->m->cfg;
    const int64_t H = c->hidden_size, K = c->moe_topk, V = c->vocab_size, L = c->num_layers;
    float *normed = lc_malloc((size_t)(T * H) * sizeof *normed, "normed states");
    if (!normed) return LC_ERR_NOMEM;
    lc_status st = LC_OK;
    if (!o->decode) {
        lc_forward_out out = {.logits = logits, .hidden = hidden, .topk_idx = topk, .normed = normed};
        st = lc_forward(s, tok, T, &out);
        if (!st && mtp) st = lc_mtp_forward(s, normed, tok + 1, T - 1, mtp);
    } else {
        /* One token per call: absorbed MLA over the compressed cache. The MTP row t runs as
         * soon as token t+1 is known, as a speculative decoder would. */
        float *h1 = lc_malloc((size_t)(L * H) * sizeof *h1, "hidden row");
        int32_t *k1 = lc_malloc((size_t)(L * K) * sizeof *k1, "routes row");
        if (!h1 || !k1) st = LC_ERR_NOMEM;
        for (int64_t t = 0; t < T && !st; t++) {
            lc_forward_out out = {.logits = logits + t * V, .hidden = h1, .topk_idx = k1, .normed = normed + t * H};
            st = lc_forward(s, tok + t, 1, &out);
            for (int64_t l = 0; l < L && !st; l++) {
                if (hidden) memcpy(hidden + (l * T + t) * H, h1 + l * H, (size_t)H * sizeof *h1);
                if (topk) memcpy(topk + (l * T + t) * K, k1 + l * K, (size_t)K * sizeof *k1);
            }
            if (!st && mtp && t > 0) st = lc_mtp_forward(s, normed + (t - 1) * H, tok + t, 1, mtp + (t - 1) * V);
        }
        lc_free(h1);
        lc_free(k1);
    }
    lc_free(normed);
    return st;
}

static void logits_usage(FILE *f) {
    fprintf(f, "usage: longcat logits MODEL_DIR --tokens ID,ID,... [--decode] [--hidden] [--routes] [--mtp]\n"
               "                      [-o OUT.safetensors] [--threads N]\n"
               "Writes logits F32 [T, V]; --hidden adds hidden.L [T, H] (after layer L); --routes adds\n"
               "router.L.topk_idx I32 [T, k] (ascending); --mtp adds mtp_logits [T-1, V]. --decode feeds one\n"
               "token at a time through the compressed MLA cache (weight absorption) instead of one prefill.\n");
}

int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *tokens_arg = NULL, *out_path = NULL;
    logits_opts o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            logits_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--decode")) o.decode = 1;
        else if (!strcmp(a, "--hidden")) o.hidden = 1;
        else if (!strcmp(a, "--routes")) o.routes = 1;
        else if (!strcmp(a, "--mtp")) o.mtp = 1;
        else if (!strcmp(a, "--tokens") || !strcmp(a, "-o") || !strcmp(a, "--threads")) {
            if (!(v = cli_value(argc, argv, &i))) return 1;
            if (!strcmp(a, "--tokens")) tokens_arg = v;
            else if (!strcmp(a, "-o")) out_path = v;
            else cli_set_threads(atoi(v));
        } else if (a[0] == '-') {
            fprintf(stderr, "longcat logits: unknown option %s\n", a);
            logits_usage(stderr);
            return 1;
        } else dir = a;
    }
    if (!dir || !tokens_arg) {
        logits_usage(stderr);
        return 1;
    }
    int32_t *tok;
    int64_t T;
    lc_status s = cli_parse_tokens(tokens_arg, &tok, &T);
    if (s) return cli_fail(s);
    lc_model *m = NULL;
    lc_session *sess = NULL;
    s = lc_model_load(&m, dir);
    if (!s && o.mtp && !m->has_mtp) s = lc_error(LC_ERR_ARG, "--mtp: %s has no MTP head", dir);
    if (!s && o.mtp && T < 2) s = lc_error(LC_ERR_ARG, "--mtp needs at least 2 tokens");
    if (!s) s = lc_session_new(&sess, m, LC_MIN(T, m->cfg.max_position_embeddings));
    if (!s && T > sess->n_ctx)
        s = lc_error(LC_ERR_ARG, "%lld tokens exceed max_position_embeddings %lld", (long long)T, (long long)sess->n_ctx);
    if (s) {
        lc_free(tok);
        lc_session_free(sess);
        lc_model_free(m);
        return cli_fail(s);
    }
    const lc_config *c = &m->cfg;
    const int64_t H = c->hidden_size, K = c->moe_topk, V = c->vocab_size, L = c->num_layers;
    float *logits = lc_malloc((size_t)(T * V) * sizeof(float), "logits");
    float *hidden = o.hidden ? lc_malloc((size_t)(L * T * H) * sizeof(float), "hidden") : NULL;
    int32_t *topk = o.routes ? lc_malloc((size_t)(L * T * K) * sizeof(int32_t), "routes") : NULL;
    float *mtp = o.mtp ? lc_malloc((size_t)((T - 1) * V) * sizeof(float), "mtp logits") : NULL;
    if (!logits || (o.hidden && !hidden) || (o.routes && !topk) || (o.mtp && !mtp)) s = LC_ERR_NOMEM;
    double t0 = lc_time_sec();
    if (!s) s = run(sess, tok, T, &o, logits, hidden, topk, mtp);
    double dt = lc_time_sec() - t0;
    if (!s) {
        fprintf(stderr, "longcat logits: %lld tokens (%s) in %.3f s, %.1f tok/s\n", (long long)T,
                o.decode ? "decode, one at a time" : "prefill", dt, (double)T / dt);
        /* Summary: argmax per position and a checksum, so runs can be compared at a glance. */
        double sum = 0;
        printf("argmax:");
        for (int64_t t = 0; t < T; t++) {
            int64_t best = 0;
            for (int64_t v = 0; v < V; v++) {
                sum += logits[t * V + v];
                if (logits[t * V + v] > logits[t * V + best]) best = v;
            }
            printf(" %lld", (long long)best);
        }
        printf("\nlogits sum: %.6f\n", sum);
    }
    if (!s && out_path) {
        int n_max = 2 + 2 * (int)L, n = 0;
        lc_st_entry *e = lc_calloc((size_t)n_max, sizeof *e, "entries");
        char (*names)[48] = lc_calloc((size_t)n_max, sizeof *names, "names");
        if (!e || !names) s = LC_ERR_NOMEM;
        if (!s) {
            e[n++] = (lc_st_entry){"logits", LC_DT_F32, 2, {T, V}, logits};
            for (int64_t l = 0; l < L && hidden; l++) {
                snprintf(names[n], sizeof names[n], "hidden.%lld", (long long)l);
                e[n] = (lc_st_entry){names[n], LC_DT_F32, 2, {T, H}, hidden + l * T * H};
                n++;
            }
            for (int64_t l = 0; l < L && topk; l++) {
                snprintf(names[n], sizeof names[n], "router.%lld.topk_idx", (long long)l);
                e[n] = (lc_st_entry){names[n], LC_DT_I32, 2, {T, K}, topk + l * T * K};
                n++;
            }
            if (mtp) e[n++] = (lc_st_entry){"mtp_logits", LC_DT_F32, 2, {T - 1, V}, mtp};
            s = lc_st_write(out_path, e, n, NULL, NULL);
        }
        lc_free(e);
        lc_free(names);
        if (!s) fprintf(stderr, "longcat logits: wrote %s\n", out_path);
    }
    lc_free(logits);
    lc_free(hidden);
    lc_free(topk);
    lc_free(mtp);
    lc_free(tok);
    lc_session_free(sess);
    lc_model_free(m);
    return s ? cli_fail(s) : 0;
}
