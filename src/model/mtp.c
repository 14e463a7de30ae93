/* mtp.c — the multi-token-prediction head (SPEC §3, MTP): one dense MLA+FFN block that drafts
 * the token after next from the main model's lm_head input and the next token. It keeps its
 * own MLA cache in the session. Speculative decoding that uses it lives in src/generate. */
#include "sublayers.h"

#include <stdlib.h>
#include <string.h>

lc_status lc_mtp_forward(lc_session *s, const float *normed, const int32_t *next_tokens, int64_t T, float *logits) {
    const lc_model *mdl = s->m;
    const lc_config *c = &mdl->cfg;
    const lc_mtp_weights *w = &mdl->mtp;
    const int64_t H = c->hidden_size, V = c->vocab_size;
    const float eps = (float)c->rms_norm_eps;
    if (!mdl->has_mtp) return lc_error(LC_ERR_ARG, "%s: this checkpoint has no MTP head", mdl->path);
    if (T <= 0) return lc_error(LC_ERR_ARG, "mtp: no rows");
    if (s->mtp_pos + T > s->n_ctx)
        return lc_error(LC_ERR_ARG, "mtp: %lld cached + %lld new rows exceed the context of %lld",
                        (long long)s->mtp_pos, (long long)T, (long long)s->n_ctx);
    for (int64_t t = 0; t < T; t++)
        if (next_tokens[t] < 0 || next_tokens[t] >= V)
            return lc_error(LC_ERR_ARG, "mtp: token %d at index %lld is outside the vocabulary", next_tokens[t],
                            (long long)t);
    int absorbed = s->attn_mode == LC_ATTN_ABSORBED || (s->attn_mode == LC_ATTN_AUTO && T == 1);
    float *eg = lc_malloc((size_t)(T * 2 * H) * sizeof *eg, "MTP concat(e, g)");
    float *u = lc_malloc((size_t)(T * H) * sizeof *u, "MTP state");
    float *xn = lc_malloc((size_t)(T * H) * sizeof *xn, "MTP normed");
    float *y = lc_malloc((size_t)(T * H) * sizeof *y, "MTP sublayer output");
    lc_status st = (eg && u && xn && y) ? LC_OK : LC_ERR_NOMEM;
    if (!st) {
        /* u = eh_proj @ [rmsnorm(embed(y_{t+1}), enorm) ; rmsnorm(h_t, hnorm)] */
        for (int64_t t = 0; t < T; t++) {
            float *e = eg + t * 2 * H, *g = e + H;
            lc_mat_row(e, &w->embed_tokens, next_tokens[t]);
            lc_rmsnorm(e, e, w->enorm, H, eps);
            lc_rmsnorm(g, normed + t * H, w->hnorm, H, eps);
        }
        lc_matmul(u, eg, &w->eh_proj, T);
        rmsnorm_rows(xn, u, w->input_layernorm, T, H, eps);
        mla_seq seq = {.latent = s->mtp_latent, .rope = s->mtp_rope, .p0 = s->mtp_pos, .T = T, .absorbed = absorbed};
        st = mla_forward(y, xn, &seq, 1, &w->self_attn, c, NULL);
    }
    if (!st) {
        for (int64_t i = 0; i < T * H; i++) u[i] += y[i];
        rmsnorm_rows(xn, u, w->post_attention_layernorm, T, H, eps);
        st = ffn_forward(y, xn, &w->mlp, T, NULL);
    }
    if (!st) {
        for (int64_t i = 0; i < T * H; i++) u[i] += y[i];
        rmsnorm_rows(xn, u, w->norm, T, H, eps);
        lc_matmul(logits, xn, &mdl->lm_head, T); /* lm_head shared with the main model */
        s->mtp_pos += T;
    }
    free(eg);
    free(u);
    free(xn);
    free(y);
    return st;
}
