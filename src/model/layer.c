/* layer.c — the shortcut-connected MoE layer (ScMoE, SPEC §3) and the whole-model forward:
 * embedding, layers, final norm, lm_head. The parts of a layer are in mla.c, ffn.c, moe.c;
 * the MTP head is in mtp.c; cache ownership is in session.c. */
#include "sublayers.h"

#include <stdlib.h>
#include <string.h>

/* One layer, in place on h [T, H]:
 *   h += attn0(norm(h));  x = norm(h);  m = moe(x)   <- shortcut branch starts here
 *   h += mlp0(x);  h += attn1(norm(h));  h += mlp1(norm(h)) + m   <- and is added here */
static lc_status scmoe_layer_forward(float *h,            /* [T, H] residual stream */
                                     int32_t *topk_idx,   /* [T, K] out: chosen experts */
                                     int64_t *n_ffn,      /* out: FFN-expert slots used */
                                     lc_session *sess, int64_t layer, int64_t T, int absorbed) {
    const lc_config *c = &sess->m->cfg;
    const lc_layer_weights *w = &sess->m->layers[layer];
    const int64_t H = c->hidden_size, K = c->moe_topk, kvr = c->kv_lora_rank, dr = c->qk_rope_head_dim;
    const float eps = (float)c->rms_norm_eps;
    float *xn = lc_malloc((size_t)(T * H) * sizeof *xn, "layer normed input");
    float *y = lc_malloc((size_t)(T * H) * sizeof *y, "layer sublayer output");
    float *m = lc_malloc((size_t)(T * H) * sizeof *m, "layer MoE output");
    float *tw = lc_malloc((size_t)(T * K) * sizeof *tw, "router weights");
    lc_status s = (xn && y && m && tw) ? LC_OK : LC_ERR_NOMEM;
    for (int sub = 0; sub < 2 && !s; sub++) {
        const int64_t a = 2 * layer + sub; /* attention sublayer index into the cache */
        float *lat = sess->kv_latent + a * sess->n_ctx * kvr, *rope = sess->kv_rope + a * sess->n_ctx * dr;
        rmsnorm_rows(xn, h, w->input_layernorm[sub], T, H, eps);
        s = mla_forward(y, xn, lat, rope, &w->self_attn[sub], c, T, sess->pos, absorbed);
        if (s) break;
        for (int64_t i = 0; i < T * H; i++) h[i] += y[i];
        rmsnorm_rows(xn, h, w->post_attention_layernorm[sub], T, H, eps);
        if (sub == 0) {
            s = router_forward(topk_idx, tw, xn, w, c, T);
            if (!s) s = moe_forward(m, xn, topk_idx, tw, w, c, T, n_ffn);
            if (!s) s = ffn_forward(y, xn, &w->mlps[0], T);
            if (!s)
                for (int64_t i = 0; i < T * H; i++) h[i] += y[i];
        } else {
            s = ffn_forward(y, xn, &w->mlps[1], T);
            if (!s)
                for (int64_t i = 0; i < T * H; i++) h[i] = (h[i] + y[i]) + m[i];
        }
    }
    free(xn);
    free(y);
    free(m);
    free(tw);
    return s;
}

lc_status lc_forward(lc_session *s, const int32_t *tokens, int64_t T, lc_forward_out *out) {
    const lc_model *mdl = s->m;
    const lc_config *c = &mdl->cfg;
    const int64_t H = c->hidden_size, V = c->vocab_size, K = c->moe_topk;
    if (T <= 0) return lc_error(LC_ERR_ARG, "forward: no tokens");
    if (s->pos + T > s->n_ctx)
        return lc_error(LC_ERR_ARG, "forward: %lld cached + %lld new tokens exceed the context of %lld",
                        (long long)s->pos, (long long)T, (long long)s->n_ctx);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return lc_error(LC_ERR_ARG, "forward: token %d at index %lld is outside the vocabulary (0..%lld)",
                            tokens[t], (long long)t, (long long)(V - 1));
    int absorbed = s->attn_mode == LC_ATTN_ABSORBED || (s->attn_mode == LC_ATTN_AUTO && T == 1);
    float *h = lc_malloc((size_t)(T * H) * sizeof *h, "hidden states");
    float *hn = lc_malloc((size_t)(T * H) * sizeof *hn, "final normed states");
    int32_t *idx = lc_malloc((size_t)(T * K) * sizeof *idx, "router choices");
    lc_status st = (h && hn && idx) ? LC_OK : LC_ERR_NOMEM;
    int64_t n_ffn_total = 0;
    for (int64_t t = 0; t < T && !st; t++) lc_mat_row(h + t * H, &mdl->embed_tokens, tokens[t]);
    for (int64_t L = 0; L < c->num_layers && !st; L++) {
        int64_t n_ffn = 0;
        st = scmoe_layer_forward(h, idx, &n_ffn, s, L, T, absorbed);
        n_ffn_total += n_ffn;
        if (!st && out && out->hidden) memcpy(out->hidden + L * T * H, h, (size_t)(T * H) * sizeof *h);
        if (!st && out && out->topk_idx) memcpy(out->topk_idx + L * T * K, idx, (size_t)(T * K) * sizeof *idx);
    }
    if (!st) {
        rmsnorm_rows(hn, h, mdl->norm, T, H, (float)c->rms_norm_eps);
        if (out && out->normed) memcpy(out->normed, hn, (size_t)(T * H) * sizeof *hn);
        if (out && out->logits) {
            if (out->logits_last_only) lc_matmul(out->logits, hn + (T - 1) * H, &mdl->lm_head, 1);
            else lc_matmul(out->logits, hn, &mdl->lm_head, T);
        }
        if (out && out->n_ffn_experts) *out->n_ffn_experts = n_ffn_total;
        s->pos += T;
    }
    free(h);
    free(hn);
    free(idx);
    return st;
}
