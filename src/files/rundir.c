/* rundir: the run directory's lock (see rundir.h). */
#include "budgetformer/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

void bf_run_dir_lock_holder(const char *lock_path, char *buf, size_t len) {
    buf[0] = '\0';
    int fd = open(lock_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, len - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
}

/* The holder's note: a refused run reads it to name us. */
static void write_note(int fd) {
    char host[256] = "", note[400];
    if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
    int n = snprintf(note, sizeof note, "pid=%ld host=%s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) == 0 && pwrite(fd, note, (size_t)n, 0) == n) fsync(fd);
}

/* Takes the lock on an open lock file; -1 with errno EWOULDBLOCK while another process holds it. The file
 * must still be the one at that name after locking (a holder that undoes a new run unlinks it): else retry. */
static int lock_at(const char *path, int *fd_out) {
    for (int attempt = 0; attempt < 5; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return -1;
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
            *fd_out = fd;
            return 0;
        }
        close(fd); /* we locked a file that was unlinked meanwhile: take the new one */
    }
    errno = EAGAIN;
    return -1;
}

static void undo_made(bf_run_lock *lk) {
    if (!lk->made[0]) return;
    /* Deepest first, up to the topmost one we made: rmdir only removes empty directories. */
    char p[BF_PATH_LEN + 16];
    snprintf(p, sizeof p, "%s", lk->path);
    size_t top = strlen(lk->made);
    for (char *s = strrchr(p, '/'); s && (size_t)(s - p) >= top; s = strrchr(p, '/')) {
        *s = '\0';
        rmdir(p);
    }
    lk->made[0] = '\0';
}

int bf_run_dir_lock(bf_run_lock *lk, const char *dir, bf_err *err) {
    memset(lk, 0, sizeof *lk);
    lk->fd = -1;
    if (!dir[0]) return bf_fail(err, "run.dir is empty: give the run directory ([run] dir = PATH)");
    if (bf_mkdir_p_ex(dir, lk->made, sizeof lk->made, err)) {
        char msg[BF_ERR_LEN];
        snprintf(msg, sizeof msg, "%s", err->msg);
        return bf_fail(err, "run.dir = %s: %s", dir, msg);
    }
    snprintf(lk->path, sizeof lk->path, "%s/.lock", dir);
    if (lock_at(lk->path, &lk->fd) == 0) {
        write_note(lk->fd);
        return 0;
    }
    int e = errno;
    if (e == EWOULDBLOCK || e == EAGAIN) {
        char holder[512];
        bf_run_dir_lock_holder(lk->path, holder, sizeof holder);
        bf_fail(err, "run.dir = %s is in use by another training (%s; lock %s): two runs in one run.dir would mix "
                     "their checkpoints and logs; nothing was changed: wait for that run to end (or stop it), or "
                     "choose another run.dir", dir, holder[0] ? holder : "its pid and host are not written yet",
                lk->path);
    } else {
        bf_fail(err, "run.dir = %s: cannot create or lock %s: %s", dir, lk->path, strerror(e));
    }
    undo_made(lk);
    return -1;
}

void bf_run_dir_unlock(bf_run_lock *lk, int undo) {
    if (lk->fd < 0) return;
    /* Unlinked while still locked: another process that opened the old file sees it is gone and retries. */
    if (undo && lk->made[0]) unlink(lk->path);
    close(lk->fd); /* releases the flock */
    lk->fd = -1;
    if (undo) undo_made(lk);
}
