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
/* Puts a complete written file in place without making it durable: rename(tmp, path) only. The new file
 * survives a kill of the process (the kernel holds its pages) but not necessarily a crash of the machine;
 * for files rewritten so often that an fsync each time would cost more than the work they record (log.h5
 * after every update, between its durable writes). Returns 0 or -1 with err set (tmp left to the caller). */
int bf_replace_file(const char *tmp, const char *path, bf_err *err);
/* fsync of a directory (renames and unlinks in it become durable); errors are ignored (some file systems
 * refuse it). */
void bf_fsync_dir(const char *dir);

#endif
