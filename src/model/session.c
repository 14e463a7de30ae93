/* session.c — per-conversation state: the compressed MLA cache (latent + roped key per token
 * per attention sublayer, never expanded K/V) for the main model and the MTP head. */
#include "model.h"

#include <stdlib.h>
#include <string.h>

lc_status lc_session_new(lc_session **out, const lc_model *m, int64_t n_ctx) {
    const lc_config *c = &m->cfg;
    *out = NULL;
    if (n_ctx <= 0 || n_ctx > c->max_position_embeddings) n_ctx = LC_MIN(c->max_position_embeddings, 4096);
    lc_session *s = lc_calloc(1, sizeof *s, "session");
    if (!s) return LC_ERR_NOMEM;
    s->m = m;
    s->n_ctx = n_ctx;
    size_t n_attn = (size_t)(2 * c->num_layers);
    s->kv_latent = lc_calloc(n_attn * (size_t)n_ctx, (size_t)c->kv_lora_rank * sizeof(float), "KV cache latents");
    s->kv_rope = lc_calloc(n_attn * (size_t)n_ctx, (size_t)c->qk_rope_head_dim * sizeof(float), "KV cache rope keys");
    int ok = s->kv_latent && s->kv_rope;
    if (ok && m->has_mtp) {
        s->mtp_latent = lc_calloc((size_t)n_ctx, (size_t)c->kv_lora_rank * sizeof(float), "MTP cache latents");
        s->mtp_rope = lc_calloc((size_t)n_ctx, (size_t)c->qk_rope_head_dim * sizeof(float), "MTP cache rope keys");
        ok = s->mtp_latent && s->mtp_rope;
    }
    if (!ok) {
        lc_session_free(s);
        return LC_ERR_NOMEM;
    }
    *out = s;
    return LC_OK;
}

void lc_session_reset(lc_session *s) {
    s->pos = 0;
    s->mtp_pos = 0;
}

void lc_session_free(lc_session *s) {
    if (!s) return;
    free(s->kv_latent);
    free(s->kv_rope);
    free(s->mtp_latent);
    free(s->mtp_rope);
    free(s);
}
