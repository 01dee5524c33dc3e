/* ckpt_dir: a run's checkpoints/ directory: listing by step, rotation (keep the newest valid ones) and the
 * removal of what a killed writer left (see checkpoint.h). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/durable.h"

/* step-<digits>.h5, optionally followed by `suffix`; returns the step or -1. The digits are the step as
 * "%08ld" prints it: exactly 8 (leading zeros, the only form before steps could pass 99,999,999), or 9 and more
 * without a leading zero, up to the 10 that train.steps' 10^9 needs. Only that canonical form is accepted, so
 * each step has one name. */
static long parse_name(const char *name, const char *suffix) {
    if (strncmp(name, "step-", 5) != 0) return -1;
    size_t nd = 0;
    while (name[5 + nd] >= '0' && name[5 + nd] <= '9') nd++;
    if (nd < 8 || nd > 12 || (nd > 8 && name[5] == '0')) return -1;
    long step = 0;
    for (size_t i = 0; i < nd; i++) step = step * 10 + (name[5 + i] - '0');
    const char *rest = name + 5 + nd;
    if (strncmp(rest, ".h5", 3) != 0 || strcmp(rest + 3, suffix) != 0) return -1;
    return step;
}

static int by_step_desc(const void *a, const void *b) {
    long x = ((const bf_ckpt_entry *)a)->step, y = ((const bf_ckpt_entry *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

int bf_checkpoint_list(const char *dir, bf_ckpt_entry **entries, size_t *n, bf_err *err) {
    *entries = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return bf_fail(err, "cannot list %s: %s", dir, strerror(errno));
    }
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long step = parse_name(e->d_name, "");
        if (step < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *entries = bf_xrealloc(*entries, cap * sizeof **entries);
        }
        (*entries)[*n].step = step;
        snprintf((*entries)[*n].path, sizeof(*entries)[*n].path, "%s/%s", dir, e->d_name);
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(*entries, *n, sizeof **entries, by_step_desc);
    return 0;
}

static void remove_pair(const char *path) {
    char side[2 * BF_CKPT_PATH_LEN + 160];
    bf_checkpoint_sidecar_name(side, sizeof side, path);
    /* The checkpoint first: a checkpoint without its sidecar would count as unverified, not as valid. */
    unlink(path);
    unlink(side);
}

/* Temporary files (".step-XXXXXXXX.h5.tmp", ".step-XXXXXXXX.h5.sha256.tmp") and digest files without a
 * checkpoint (".step-XXXXXXXX.h5.sha256"), of steps <= up_to: leftovers of a writer that was killed. */
static void remove_leftovers(const char *dir, long up_to) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[BF_CKPT_PATH_LEN + 300], h5[BF_CKPT_PATH_LEN + 300];
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        size_t len = strlen(nm);
        char inner[300];
        if (nm[0] != '.' || len < 6 || len - 1 >= sizeof inner) continue;
        memcpy(inner, nm + 1, len); /* without the leading '.' */
        long step = -1;
        int orphan = 0;
        if (!strcmp(nm + len - 4, ".tmp")) {
            inner[len - 5] = '\0';
            step = parse_name(inner, "");
            if (step < 0) step = parse_name(inner, ".sha256");
        } else if ((step = parse_name(inner, ".sha256")) >= 0) {
            snprintf(h5, sizeof h5, "%s/%.*s", dir, (int)(len - 8), inner);
            orphan = !bf_path_exists(h5);
            if (!orphan) continue;
        }
        if (step < 0 || step > up_to) continue;
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        if (unlink(p) == 0) bf_info("removed %s %s", orphan ? "orphan digest file" : "temporary file", p);
    }
    closedir(d);
}

int bf_checkpoint_rotate(const char *dir, int keep, long up_to_step, bf_err *err) {
    if (keep < 1) keep = 1;
    bf_ckpt_entry *e;
    size_t n;
    if (bf_checkpoint_list(dir, &e, &n, err)) return -1;
    int kept = 0, deleted = 0;
    for (size_t i = 0; i < n; i++) {
        bf_err ignore;
        /* Valid = what a resume accepts (digest and meaning), not only the digest: a checkpoint that a resume
         * would refuse must not count as kept, or the good ones before it would go. */
        int ok = bf_checkpoint_validate(e[i].path, &ignore) == 0;
        if (!ok) continue;  /* invalid files are never deleted (nor counted as kept) */
        if (kept < keep) {  /* the newest valid ones, by step */
            kept++;
            continue;
        }
        remove_pair(e[i].path);
        deleted++;
    }
    free(e);
    if (deleted) bf_fsync_dir(dir);
    remove_leftovers(dir, up_to_step);
    return deleted;
}
