/* durable: the one durable write of the program (see durable.h): a complete temporary file, fsync, rename
 * over the target, fsync of the directory. */
#include "budgetformer/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void bf_fsync_dir(const char *dir) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return;
    fsync(dfd); /* makes renames and unlinks durable; some file systems refuse fsync on directories */
    close(dfd);
}

static void fsync_dir_of(const char *path) {
    char dir[BF_PATH_BUF];
    snprintf(dir, sizeof dir, "%s", path);
    bf_fsync_dir(dirname(dir));
}

int bf_replace_file(const char *tmp, const char *path, bf_err *err) {
    if (rename(tmp, path) != 0) return bf_fail(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    return 0;
}

int bf_commit_file(const char *tmp, const char *path, bf_err *err) {
    int fd = open(tmp, O_RDONLY);
    if (fd < 0) return bf_fail(err, "%s: cannot reopen to sync: %s", tmp, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return bf_fail(err, "%s: fsync failed: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) return bf_fail(err, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    fsync_dir_of(path);
    return 0;
}
