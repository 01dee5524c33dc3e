/* util: checked wrappers, error messages and logging (see util.h). */
#include "budgetformer/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int g_quiet = 0;
static size_t g_allocs = 0; /* single-threaded by design: one process per rank, one thread */

size_t bf_alloc_count(void) { return g_allocs; }

int bf_fail(bf_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

noreturn void bf_die_at(const char *file, int line, const char *fmt, ...) {
    fprintf(stderr, "budgetformer: error: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (at %s:%d)\n", file, line);
    exit(1);
}

static const char *g_alloc_what = NULL; /* what the large allocations now being made are for */

void bf_alloc_context(const char *what) { g_alloc_what = what; }

/* Out of memory: what was being allocated, how much, and the address-space limit when one is set. No
 * "(at file:line)": the user's data or settings caused it, not a broken invariant (the place comes last). */
static noreturn void out_of_memory(size_t bytes, const char *file, int line) {
    char limit[160] = "";
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        snprintf(limit, sizeof limit, " under the address-space limit of %llu MiB (ulimit -v, or the scheduler's "
                 "h_vmem / mem limit)", (unsigned long long)(rl.rlim_cur >> 20));
    fprintf(stderr, "budgetformer: error: out of memory: allocating %.1f MiB%s%s failed%s; %s [%s:%d]\n",
            (double)bytes / 1048576.0, g_alloc_what ? " for " : "", g_alloc_what ? g_alloc_what : "", limit,
            limit[0] ? "raise the limit or reduce the batch, model or data size"
                     : "reduce the batch, model or data size, or use more ranks",
            file, line);
    exit(1);
}

void *bf_malloc_at(size_t size, const char *file, int line) {
    g_allocs++;
    void *p = malloc(size ? size : 1);
    if (!p) out_of_memory(size, file, line);
    return p;
}

void *bf_calloc_at(size_t n, size_t size, const char *file, int line) {
    g_allocs++;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n && size > SIZE_MAX / n ? SIZE_MAX : n * size, file, line);
    return p;
}

void *bf_realloc_at(void *p, size_t size, const char *file, int line) {
    g_allocs++;
    void *q = realloc(p, size ? size : 1);
    if (!q) out_of_memory(size, file, line);
    return q;
}

char *bf_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = bf_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

void bf_set_quiet(int quiet) { g_quiet = quiet; }
int bf_quiet(void) { return g_quiet; }

void bf_info(const char *fmt, ...) {
    if (g_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "budgetformer: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void bf_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "budgetformer: warning: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

double bf_wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bf_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void bf_file_identity(const char *path, int64_t id[4]) {
    struct stat st;
    memset(id, 0, 4 * sizeof *id);
    if (stat(path, &st) != 0) return;
    id[0] = (int64_t)st.st_dev;
    id[1] = (int64_t)st.st_ino;
    id[2] = (int64_t)st.st_size;
    id[3] = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

int bf_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* mkdir -p that leaves nothing behind when it fails: the directories it made are removed again, deepest
 * first, so a run.dir that cannot be created does not leave a half-made tree (docs/FAILURES.md). */
int bf_mkdir_p_ex(const char *path, char *made, size_t made_len, bf_err *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (made && made_len) made[0] = '\0';
    if (n == 0 || n >= sizeof buf) return bf_fail(err, "directory path '%s' is empty or too long", path);
    memcpy(buf, path, n + 1);
    size_t first_made = 0; /* end of the first prefix this call created; 0 = none yet */
    int rc = 0;
    for (size_t i = 1; i <= n && rc == 0; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) == 0) {
            if (!first_made) first_made = i;
        } else if (errno != EEXIST) {
            int e = errno;
            rc = bf_fail(err, "cannot create directory '%s': %s%s", buf, strerror(e),
                         e == ENOTDIR ? " (a part of the path is a file, not a directory)" : "");
        }
        buf[i] = c;
    }
    struct stat st;
    if (rc == 0 && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        int e = errno;
        rc = bf_fail(err, "'%s' exists and is not a directory%s", path, e == ELOOP ? " (a symbolic link loop)" : "");
    }
    if (rc && first_made) {
        /* Undo, deepest first: every prefix from the first one made on was made by this call. */
        memcpy(buf, path, n + 1);
        for (size_t i = n; i >= first_made; i--) {
            if (buf[i] != '/' && buf[i] != '\0') continue;
            buf[i] = '\0';
            rmdir(buf); /* only empty directories go; one that fails to go was not ours to remove */
        }
    } else if (rc == 0 && first_made && made && made_len) {
        snprintf(made, made_len, "%.*s", (int)first_made, path);
    }
    return rc;
}

int bf_mkdir_p(const char *path, bf_err *err) { return bf_mkdir_p_ex(path, NULL, 0, err); }

int bf_same_file(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

int bf_check_outputs(const bf_named_path *out, size_t n_out, const bf_named_path *in, size_t n_in, bf_err *err) {
    for (size_t i = 0; i < n_out; i++) {
        if (!out[i].path || !out[i].path[0]) continue;
        for (size_t j = 0; j < n_in; j++) {
            if (!in[j].path || !in[j].path[0] || !bf_same_file(out[i].path, in[j].path)) continue;
            struct stat ls;
            int link = lstat(out[i].path, &ls) == 0 && S_ISLNK(ls.st_mode);
            const char *rel = link ? "a symbolic link to the input"
                              : strcmp(out[i].path, in[j].path) ? "the same file (another path or a hard link) as the input"
                                                                : "the input";
            return bf_fail(err, "the output %s = %s is %s %s = %s: writing it would overwrite that input; choose "
                                "another output path", out[i].what, out[i].path, rel, in[j].what, in[j].path);
        }
    }
    return 0;
}

/* Why a path cannot be read as a file, in the user's words: the errno of stat alone reads "no such file" for
 * a dangling link and "Too many levels of symbolic links" for a loop, and a directory fails later as a
 * "truncated" file. */
int bf_check_input_file(const char *path, bf_err *err) {
    struct stat st, ls;
    if (!path[0]) return bf_fail(err, "an empty path was given for a file");
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return bf_fail(err, "%s: is a directory, not a file", path);
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
            return bf_fail(err, "%s: not a regular file (a socket or device?)", path);
        return 0;
    }
    int e = errno;
    if (e == ELOOP) return bf_fail(err, "%s: a symbolic link loop (too many levels of symbolic links)", path);
    if (e == ENOENT && lstat(path, &ls) == 0 && S_ISLNK(ls.st_mode)) {
        char target[1024];
        ssize_t n = readlink(path, target, sizeof target - 1);
        target[n > 0 ? n : 0] = '\0';
        return bf_fail(err, "%s: a dangling symbolic link (to '%s', which does not exist)", path, target);
    }
    if (e == ENOENT) return bf_fail(err, "%s: no such file", path);
    if (e == ENOTDIR) return bf_fail(err, "%s: a part of the path is a file, not a directory", path);
    if (e == EACCES) return bf_fail(err, "%s: permission denied", path);
    return bf_fail(err, "%s: cannot open: %s", path, strerror(e));
}

int bf_same_strings(char *const *a, size_t na, char *const *b, size_t nb) {
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return 0;
    return 1;
}

void bf_free_strings(char **strs, size_t n) {
    if (!strs) return;
    for (size_t i = 0; i < n; i++) free(strs[i]);
    free(strs);
}
