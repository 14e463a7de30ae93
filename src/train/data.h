/* data.h — training data: text files tokenized once into a token cache (raw int32 file,
 * memory-mapped), split into train / validation, and sampled as packed windows. */
#ifndef LC_DATA_H
#define LC_DATA_H

#include "../tokenizer/tokenizer.h"

typedef struct {
    lc_mmap map;
    const int32_t *tokens; /* all tokens of the corpus, documents joined by EOS */
    int64_t n;
    int64_t n_train;       /* tokens [0, n_train) train, [n_train, n) validation */
} lc_data;

/* Tokenizes `files` into cache_path (unless it already exists) and maps it. val_fraction of
 * the tokens (at the end) are held out. */
lc_status lc_data_open(lc_data *d, const lc_tokenizer *t, const char *const *files, int n_files, const char *cache_path,
                       double val_fraction);
void lc_data_close(lc_data *d);

#endif
