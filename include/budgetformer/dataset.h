/* dataset: the prepared dataset file of FILES.md (train.h5, valid.h5, test.h5), read and written whole.
 * Loading validates everything a trainer relies on, so a wrong or damaged file is refused with a message
 * naming the file and dataset: types and shapes, token ids in [0, V), lengths in [1, T], labels in [0, C),
 * and PAD exactly at the positions >= length. */
#ifndef BUDGETFORMER_DATASET_H
#define BUDGETFORMER_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

typedef struct {
    size_t n;             /* inputs */
    int max_len;          /* T */
    int n_classes;        /* C */
    int32_t *tokens;      /* [n, T] */
    int32_t *lengths;     /* [n] */
    int32_t *labels;      /* [n] */
    int64_t *source_line; /* [n] */
    char **vocab;         /* [vocab_size] */
    size_t vocab_size;
    char **label_names;   /* [n_classes] */
    char *source;         /* the file it was made from */
} bf_dataset;

int bf_dataset_load(bf_dataset *d, const char *path, bf_err *err);
/* The same from a file image in memory (the libFuzzer target; `name` appears in messages). */
int bf_dataset_load_image(bf_dataset *d, const void *buf, size_t len, const char *name, bf_err *err);
/* Writes a complete file (to a temporary name, then renamed into place, so a partial file never looks
 * valid). */
int bf_dataset_write(const bf_dataset *d, const char *path, bf_err *err);
void bf_dataset_free(bf_dataset *d);
/* SHA-256 of the loaded contents (shape, tokens, lengths, labels, vocabulary, class names): ranks compare it
 * to be sure they all train on the same data. */
void bf_dataset_digest(const bf_dataset *d, unsigned char out[32]);

/* The class names (/label_names) of the dataset file `data`, which must have C of them, as the classes of
 * `file` (a log or records file, for the message). Returns 0 (free with bf_free_strings(*names, C)), or -1. */
int bf_dataset_class_names(const char *data, size_t C, const char *file, char ***names, bf_err *err);

#endif
