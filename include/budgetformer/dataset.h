/* dataset: the prepared dataset file of FILES.md (train.h5, valid.h5, test.h5), read and written whole.
 * Loading validates everything a trainer relies on, so a wrong or damaged file is refused with a message
 * naming the file and dataset: types and shapes, token ids in [0, V), lengths in [1, T], labels in [0, C),
 * and PAD exactly at the positions >= length.
 *
 * In memory the token ids are uint16 when the vocabulary allows (V <= 65536: half the bytes of the largest
 * array) and int32 otherwise; the file holds int32 either way (FILES.md). Read them through bf_dataset_token
 * and bf_dataset_rows, which widen to the model's int32.
 *
 * Two-phase load, for a caller that places the row arrays (tokens, lengths, labels) itself, e.g. once per
 * node in memory the node's ranks share (the trainer, with src/dist's bf_node_shared):
 *   bf_dataset_load_header   everything but the row arrays (NULL then); bf_dataset_rows_bytes gives their sizes
 *   the caller points d->tokens, d->lengths, d->labels at its memory and sets d->rows_borrowed = 1
 *   bf_dataset_read_rows     fills them from the file, validating every row (one process per copy)
 *   bf_dataset_check         validates what another process filled (every other process of the copy)
 * bf_dataset_load is all of it with malloc. */
#ifndef BUDGETFORMER_DATASET_H
#define BUDGETFORMER_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

typedef struct {
    size_t n;             /* inputs */
    int max_len;          /* T */
    int n_classes;        /* C */
    int token_bytes;      /* 2: tokens is uint16_t[n * T] (V <= 65536), 4: int32_t[n * T] */
    void *tokens;         /* [n, T], read with bf_dataset_token / bf_dataset_rows */
    int32_t *lengths;     /* [n] */
    int32_t *labels;      /* [n] */
    int64_t *source_line; /* [n] */
    char **vocab;         /* [vocab_size] */
    size_t vocab_size;
    char **label_names;   /* [n_classes] */
    char *source;         /* the file it was made from */
    int rows_borrowed;    /* tokens, lengths, labels belong to the caller: bf_dataset_free leaves them */
} bf_dataset;

/* Token t of input i, and inputs lo..lo+n-1 widened to int32 into out[n * T] (the model's batch). */
int32_t bf_dataset_token(const bf_dataset *d, size_t i, size_t t);
void bf_dataset_rows(const bf_dataset *d, size_t lo, size_t n, int32_t *out);
/* The in-memory token width of a vocabulary of V entries (2 or 4 bytes). */
int bf_dataset_token_bytes(size_t vocab_size);

int bf_dataset_load(bf_dataset *d, const char *path, bf_err *err);
/* The same from a file image in memory (the libFuzzer target; `name` appears in messages). */
int bf_dataset_load_image(bf_dataset *d, const void *buf, size_t len, const char *name, bf_err *err);
/* The two phases (above). bf_dataset_rows_bytes returns the bytes of tokens, lengths, labels in out[3]. */
int bf_dataset_load_header(bf_dataset *d, const char *path, bf_err *err);
void bf_dataset_rows_bytes(const bf_dataset *d, size_t out[3]);
int bf_dataset_read_rows(bf_dataset *d, const char *path, bf_err *err);
int bf_dataset_check(const bf_dataset *d, const char *path, bf_err *err);
/* Writes a complete file (to a temporary name, then renamed into place, so a partial file never looks
 * valid); /tokens is int32 whatever d->token_bytes is. */
int bf_dataset_write(const bf_dataset *d, const char *path, bf_err *err);
void bf_dataset_free(bf_dataset *d);
/* SHA-256 of the loaded contents (shape, tokens, lengths, labels, vocabulary, class names): ranks compare it
 * to be sure they all train on the same data. Tokens are hashed as int32, so the width in memory does not
 * change it. */
void bf_dataset_digest(const bf_dataset *d, unsigned char out[32]);

/* The class names (/label_names) of the dataset file `data`, which must have C of them, as the classes of
 * `file` (a log or records file, for the message). Returns 0 (free with bf_free_strings(*names, C)), or -1. */
int bf_dataset_class_names(const char *data, size_t C, const char *file, char ***names, bf_err *err);

#endif
