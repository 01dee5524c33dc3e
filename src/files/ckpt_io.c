/* ckpt_io: the checkpoint's bytes on disk: whole-file write (fsynced) and read, SHA-256 of a buffer, and the
 * fault injection of tests (bf_checkpoint_arm_fault: BF_FAULT crash, delay and ENOSPC points inside a save). */
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "budgetformer/checkpoint.h"
#include "ckpt_internal.h"

/* ---- fault injection (tests) ---------------------------------------------------------------- */

static bf_ckpt_fault g_fault = BF_CKPT_FAULT_NONE; /* armed for the next save only */
static int g_fault_delay_ms = 0;

void bf_ckpt_disarm_fault(void) { g_fault = BF_CKPT_FAULT_NONE; }

void bf_checkpoint_arm_fault(bf_ckpt_fault fault, int delay_ms) {
    g_fault = fault;
    g_fault_delay_ms = delay_ms;
}

/* SIGKILL to this process at an armed crash point: nothing runs after it, as with a real kill. */
void bf_ckpt_crash_point(bf_ckpt_fault here, const char *what) {
    if (g_fault != here) return;
    fprintf(stderr, "budgetformer: BF_FAULT: killing this process (SIGKILL) %s\n", what);
    fflush(stderr);
    kill(getpid(), SIGKILL);
    for (;;) pause(); /* SIGKILL cannot be caught; this line is never passed */
}

static void sleep_ms(int ms) {
    double end = bf_wall_seconds() + ms / 1000.0;
    for (double left; (left = end - bf_wall_seconds()) > 0;) {
        struct timespec ts = {.tv_sec = (time_t)left, .tv_nsec = (long)((left - (double)(time_t)left) * 1e9)};
        nanosleep(&ts, NULL); /* a signal cuts it short (EINTR): sleep the rest */
    }
}

/* Writes all of buf to a new file and fsyncs it. `data`: this is the checkpoint's own temporary file, where
 * the armed faults act. */
int bf_write_whole_file(const char *path, const void *buf, size_t len, int data, bf_err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return bf_fail(err, "cannot create %s: %s", path, strerror(errno));
    if (data) bf_ckpt_crash_point(BF_CKPT_CRASH_BEFORE_DATA, "after creating the temporary file, before writing data");
    const unsigned char *p = buf;
    size_t done = 0, half = data && g_fault != BF_CKPT_FAULT_NONE && len >= 2 ? len / 2 : len;
    while (done < len) {
        size_t want = done < half ? half - done : len - done;
        ssize_t w = write(fd, p + done, want);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            close(fd);
            return bf_fail(err, "writing %s failed after %zu of %zu bytes: %s", path, done, len, strerror(e));
        }
        done += (size_t)w;
        if (data && done == half && half < len) {
            bf_ckpt_crash_point(BF_CKPT_CRASH_MID_DATA, "half way through writing the temporary file");
            if (g_fault == BF_CKPT_DELAY) sleep_ms(g_fault_delay_ms);
            if (g_fault == BF_CKPT_ENOSPC) { /* what write(2) reports on a full disk */
                close(fd);
                return bf_fail(err, "writing %s failed after %zu of %zu bytes: %s (BF_FAULT=enospc_in_save)", path,
                               done, len, strerror(ENOSPC));
            }
        }
    }
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return bf_fail(err, "%s: fsync failed: %s", path, strerror(e));
    }
    if (close(fd) != 0) return bf_fail(err, "closing %s failed: %s", path, strerror(errno));
    return 0;
}

/* Reads a whole file into memory (*buf malloc'd). Returns 0, or -1 with err set (errno kept in *e). */
int bf_read_whole_file(const char *path, unsigned char **buf, size_t *len, bf_err *err) {
    if (bf_check_input_file(path, err)) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return bf_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return bf_fail(err, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *b = bf_xmalloc(n);
    size_t got = n ? fread(b, 1, n, f) : 0;
    int bad = got != n || ferror(f);
    fclose(f);
    if (bad) {
        free(b);
        return bf_fail(err, "%s: read error after %zu of %zu bytes", path, got, n);
    }
    *buf = b;
    *len = n;
    return 0;
}

void bf_sha256_hex(const void *buf, size_t len, char hex[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    BF_CHECK(EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == 32,
             "OpenSSL EVP_Digest(SHA-256) failed");
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    hex[64] = '\0';
}
