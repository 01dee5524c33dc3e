/* checkpoint: HDF5 save and load of a model and its training state.
 *
 * Layout (see docs/FILES.md): /model (MODEL.md names and attributes), /vocab, /label_names, /optim/m and
 * /optim/v (AdamW moments, flat in the parameter table's order), attributes of /state (format_version, step,
 * seed, world_size, config: the resolved configuration as INI text) and of /provenance (versions).
 * Saving writes "<dir>/.<name>.tmp", flushes, fsyncs, renames into place and fsyncs the directory, so a file
 * named like a checkpoint is always complete. */
#ifndef BUDGETFORMER_CHECKPOINT_H
#define BUDGETFORMER_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/model.h"
#include "budgetformer/util.h"

#define BF_CHECKPOINT_FORMAT 1

typedef struct {
    long step;
    uint64_t seed;
    int world_size;
    const float *adam_m, *adam_v; /* [n_params] each, or NULL (model only) */
    const char *config_text;      /* resolved configuration, INI */
    const char *const *vocab;
    size_t vocab_size;
    const char *const *label_names;
    size_t n_classes;
} bf_ckpt_meta;

int bf_checkpoint_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err);

/* Reads the model hyperparameters from /model's attributes. */
int bf_checkpoint_read_config(const char *path, bf_model_config *cfg, bf_err *err);

/* Loads every /model tensor into an initialised model whose configuration matches the file, and (when the
 * pointers are not NULL) the vocabulary and class names (free with bf_h5_free_strings). */
int bf_checkpoint_load_model(const char *path, bf_model *m, char ***vocab, size_t *vocab_size, char ***label_names,
                             size_t *n_classes, bf_err *err);

/* Writes a file atomically: fsync(file), rename(tmp, path), fsync(dir). */
int bf_commit_file(const char *tmp, const char *path, bf_err *err);

#endif
