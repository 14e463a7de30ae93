/* grow.c — model-growth initialisation (SPEC §4.6): a trained checkpoint of L layers becomes
 * one of k*L layers by stacking copies of its layers (0..L-1, then 0..L-1 again, ...). Every
 * other tensor (embeddings, final norm, lm_head, MTP head) is copied as it is. */
#include "grow.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train.h"

/* The source tensor a grown tensor copies: "model.layers.7.x" -> "model.layers.(7 % L).x". */
static void source_name(char *dst, size_t n, const char *name, int64_t L) {
    long long l;
    int off = 0;
    if (sscanf(name, "model.layers.%lld.%n", &l, &off) == 1 && off > 0)
        snprintf(dst, n, "model.layers.%lld.%s", l % L, name + off);
    else snprintf(dst, n, "%s", name);
}

lc_status lc_grow(const char *src, const char *dst, int64_t factor) {
    if (factor < 2) return lc_error(LC_ERR_ARG, "grow: --factor must be at least 2");
    lc_model *m = NULL;
    lc_train *tr = NULL;
    lc_status s = lc_model_load(&m, src);
    if (!s) s = lc_train_from_model(&tr, m);
    if (s) {
        lc_model_free(m);
        return s;
    }
    lc_config c = tr->cfg;
    c.num_layers *= factor;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    c.fp8 = 0;
    s = lc_config_validate(&c, "grow");
    int64_t n = s ? 0 : lc_model_tensor_specs(&c, NULL, NULL);
    lc_tensor_spec *sp = s ? NULL : lc_calloc((size_t)n, sizeof *sp, "tensor table");
    lc_st_entry *e = s ? NULL : lc_calloc((size_t)n, sizeof *e, "entries");
    if (!s && (!sp || !e)) s = LC_ERR_NOMEM;
    if (!s) lc_model_tensor_specs(&c, NULL, sp);
    for (int64_t i = 0; i < n && !s; i++) {
        char from[160];
        source_name(from, sizeof from, sp[i].name, tr->cfg.num_layers);
        int64_t k = lc_train_find(tr, from);
        if (k < 0) {
            s = lc_error(LC_ERR_SHAPE, "grow: %s has no tensor %s", src, from);
            break;
        }
        e[i] = (lc_st_entry){sp[i].name, LC_DT_F32, sp[i].cols ? 2 : 1, {sp[i].rows, sp[i].cols}, tr->param + tr->offset[k]};
    }
    if (!s) s = lc_mkdirs(dst);
    if (!s) s = lc_st_write_dir(dst, e, (int)n, 0, NULL, NULL);
    if (!s) {
        char *p = lc_path_join(dst, "config.json");
        s = p ? lc_config_save(&c, p) : LC_ERR_NOMEM;
        free(p);
    }
    const char *files[2] = {"tokenizer.json", "tokenizer_config.json"};
    for (int f = 0; f < 2 && !s; f++) { /* the tokenizer travels with the model */
        char *from = lc_path_join(src, files[f]), *to = lc_path_join(dst, files[f]);
        s = from && to ? lc_copy_text_file(from, to, 1) : LC_ERR_NOMEM;
        free(from);
        free(to);
    }
    free(sp);
    free(e);
    lc_train_free(tr);
    lc_model_free(m);
    return s;
}
