/* train.h — training a byte-level BPE tokenizer on text files and writing it as Hugging Face
 * tokenizer.json + tokenizer_config.json (with the LongCat special tokens and chat template). */
#ifndef LC_TOKENIZER_TRAIN_H
#define LC_TOKENIZER_TRAIN_H

#include "../base/base.h"

typedef struct {
    int64_t vocab_size;    /* total ids, specials and the 256 bytes included */
    int64_t min_frequency; /* stop when the best pair occurs fewer times (default 2) */
    int64_t max_position;  /* model_max_length written to tokenizer_config.json */
    int verbose;
} lc_bpe_train_options;

/* Token ids of the written tokenizer: 0 <longcat_unk>, 1 <longcat_s> (bos), 2 </longcat_s>
 * (eos / end of turn), 3 <longcat_pad>, 4..7 the tool-call and tool-response tags, 8..263 the
 * 256 byte symbols, then one id per merge. */
#define LC_TOK_N_SPECIAL 8
lc_status lc_bpe_train(const char *const *files, int n_files, const lc_bpe_train_options *o, const char *out_dir);

#endif
