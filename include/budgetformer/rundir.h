/* rundir: the run directory's lock, so that two trainings never share one run.dir (docs/FAILURES.md).
 *
 * Use: bf_run_dir_lock before the run (creates run.dir if needed; refused if held), bf_run_dir_unlock after
 * it (the OS also releases the lock when the process dies); src/training/train.c is the compiled example.
 *
 * The lock is flock(LOCK_EX | LOCK_NB) on run.dir/.lock, held by rank 0 for the whole run. The holder writes
 * "pid=N host=H" into the file, so a refused run can say who holds it. flock (not fcntl) locks belong to the
 * open file description: no other open or close of the file in this process can drop it by accident. */
#ifndef BUDGETFORMER_RUNDIR_H
#define BUDGETFORMER_RUNDIR_H

#include <stddef.h>

#include "budgetformer/config.h"
#include "budgetformer/util.h"

typedef struct {
    int fd;                         /* the open lock file; -1 when not held */
    char path[BF_PATH_LEN + 16];    /* run.dir/.lock */
    char made[BF_PATH_LEN];         /* the topmost directory this process created for run.dir ("" none) */
} bf_run_lock;

/* Creates run.dir (and its parents) when missing, then takes the lock. Refused (-1, err names the holder's
 * pid and host) while another process holds it; a refused call leaves nothing it created. */
int bf_run_dir_lock(bf_run_lock *lk, const char *dir, bf_err *err);

/* Releases the lock. `undo`: the run wrote nothing, so the lock file and the directories this process created
 * for run.dir are removed again. Safe on a lock that is not held. */
void bf_run_dir_unlock(bf_run_lock *lk, int undo);

/* Reads the holder's note of a lock file ("pid=N host=H") into buf ("" when unreadable). */
void bf_run_dir_lock_holder(const char *lock_path, char *buf, size_t len);

#endif
