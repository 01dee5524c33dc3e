/* files: what the commands need of the files layer (src/files) besides the formats' own headers
 * (dataset.h, checkpoint.h, runlog.h, records.h, durable.h). HDF5 itself is internal to src/files. */
#ifndef BUDGETFORMER_FILES_H
#define BUDGETFORMER_FILES_H

/* Once, before any file is read or written: HDF5's own error printing off (every failure comes back as a
 * message of ours naming file and dataset). */
void bf_files_init(void);

#endif
