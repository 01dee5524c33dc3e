/* ckpt_internal: what the checkpoint sources of src/files share (checkpoint.c, ckpt_io.c, ckpt_dir.c). */
#ifndef BUDGETFORMER_FILES_CKPT_INTERNAL_H
#define BUDGETFORMER_FILES_CKPT_INTERNAL_H

#include <stddef.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/util.h"

/* Writes all of buf to a new file and fsyncs it. `data`: this is the checkpoint's own temporary file, where
 * the armed faults act. Returns 0 or -1 with err. */
int bf_write_whole_file(const char *path, const void *buf, size_t len, int data, bf_err *err);
/* Reads a whole file into memory (*buf malloc'd). Returns 0, or -1 with err set. */
int bf_read_whole_file(const char *path, unsigned char **buf, size_t *len, bf_err *err);
/* SIGKILL to this process when `here` is the armed fault (what: for the note on stderr). */
void bf_ckpt_crash_point(bf_ckpt_fault here, const char *what);
/* The armed fault acts on one save only: disarmed when the save ends. */
void bf_ckpt_disarm_fault(void);
/* Lowercase hex SHA-256 of buf. */
void bf_sha256_hex(const void *buf, size_t len, char hex[65]);

/* ckpt_check.c: a state that parses can still be wrong; these refuse it before a save and after a load
 * (`where` names the file; 0 or -1 with err naming the field). */
int bf_ckpt_check_names(const char *where, const bf_model_config *c, const char *const *vocab, size_t nv, const char *const *labels, size_t nl, bf_err *err);
int bf_ckpt_check_weights(const char *where, const bf_model *m, bf_err *err);
int bf_ckpt_check_training(const char *where, const bf_model *m, const float *am, const float *av, long step, long skipped, long nonfinite, const bf_coordinator *co, const int64_t *hs, size_t hs_len, bf_err *err);
int bf_ckpt_check_before_save(const char *path, const bf_model *m, const bf_ckpt_meta *meta, bf_err *err);

#endif
