/* grow.h — `longcat grow`: stack a trained checkpoint's layers into a deeper model (SPEC §4.6). */
#ifndef LC_GROW_H
#define LC_GROW_H

#include "../base/base.h"

/* Writes DST: SRC's config with num_layers * factor, layer l copying SRC's layer l % L, every
 * other tensor and the tokenizer files copied; weights in F32. */
lc_status lc_grow(const char *src, const char *dst, int64_t factor);

#endif
