/* durable: writing a file so that a crash leaves either the old or the new complete file, never a part:
 * the caller writes the complete contents to a temporary name in the target's directory (the name each
 * format documents: FILES.md, LOGS.md, CHECKPOINTS.md), then bf_commit_file makes it durable and puts it in
 * place. Every file the program writes goes this way (checkpoints and their digests, log.h5, config.ini,
 * records, prepared datasets, the status file). */
#ifndef BUDGETFORMER_DURABLE_H
#define BUDGETFORMER_DURABLE_H

#include "budgetformer/util.h"

/* Commits a written file: fsync(tmp), rename(tmp, path), fsync(directory of path). Returns 0 or -1 with err
 * set (tmp is left for the caller to remove). */
int bf_commit_file(const char *tmp, const char *path, bf_err *err);
/* fsync of a directory (renames and unlinks in it become durable); errors are ignored (some file systems
 * refuse it). */
void bf_fsync_dir(const char *dir);

#endif
