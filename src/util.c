/* util: checked wrappers, error messages and logging (see util.h). */
#include "budgetformer/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

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

void *bf_malloc_at(size_t size, const char *file, int line) {
    g_allocs++;
    void *p = malloc(size ? size : 1);
    if (!p) bf_die_at(file, line, "out of memory allocating %zu bytes; reduce the batch or model size", size);
    return p;
}

void *bf_calloc_at(size_t n, size_t size, const char *file, int line) {
    g_allocs++;
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) bf_die_at(file, line, "out of memory allocating %zu x %zu bytes; reduce the batch or model size", n, size);
    return p;
}

void *bf_realloc_at(void *p, size_t size, const char *file, int line) {
    g_allocs++;
    void *q = realloc(p, size ? size : 1);
    if (!q) bf_die_at(file, line, "out of memory reallocating to %zu bytes", size);
    return q;
}

char *bf_strdup_at(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    char *p = bf_malloc_at(n, file, line);
    memcpy(p, s, n);
    return p;
}

void bf_set_quiet(int quiet) { g_quiet = quiet; }

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

int bf_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int bf_mkdir_p(const char *path, bf_err *err) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return bf_fail(err, "directory path '%s' is empty or too long", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return bf_fail(err, "cannot create directory '%s': %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return bf_fail(err, "'%s' exists and is not a directory", path);
    return 0;
}
