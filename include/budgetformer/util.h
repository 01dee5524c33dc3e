/* util: checked wrappers that report file:line and a hint, error messages for bad input, logging.
 *
 * Two kinds of failure:
 *   - programming or resource errors (out of memory, a kernel called with wrong sizes): BF_CHECK and
 *     bf_xmalloc print file:line and exit(1); they are always on (never assert()).
 *   - bad input from a user (a dataset row, a config key, a checkpoint): functions return -1 and fill a
 *     bf_err with a message that names the file, line or key and what was expected; the caller decides.
 */
#ifndef BUDGETFORMER_UTIL_H
#define BUDGETFORMER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdnoreturn.h>

#define BF_ERR_LEN 1024
typedef struct {
    char msg[BF_ERR_LEN];
} bf_err;

/* Formats a message into err (if not NULL) and returns -1, so `return bf_fail(err, ...);` reads well. */
int bf_fail(bf_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

noreturn void bf_die_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define BF_DIE(...) bf_die_at(__FILE__, __LINE__, __VA_ARGS__)
/* Always-on precondition check (kernels, internal invariants). */
#define BF_CHECK(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond)) bf_die_at(__FILE__, __LINE__, __VA_ARGS__);                                   \
    } while (0)

void *bf_malloc_at(size_t size, const char *file, int line);
void *bf_calloc_at(size_t n, size_t size, const char *file, int line);
void *bf_realloc_at(void *p, size_t size, const char *file, int line);
char *bf_strdup_at(const char *s, const char *file, int line);
#define bf_xmalloc(size) bf_malloc_at((size), __FILE__, __LINE__)
#define bf_xcalloc(n, size) bf_calloc_at((n), (size), __FILE__, __LINE__)
#define bf_xrealloc(p, size) bf_realloc_at((p), (size), __FILE__, __LINE__)
#define bf_xstrdup(s) bf_strdup_at((s), __FILE__, __LINE__)

/* Names what the allocations from now on are for ("the model of model.d_model = 64 ..."; a static or long-lived
 * string; NULL = nothing): an allocation that fails says so, with its size and any address-space limit. */
void bf_alloc_context(const char *what);

/* Number of allocations made through the wrappers above since the start: tests use it to show that the
 * training step allocates nothing after the first. */
size_t bf_alloc_count(void);

/* Messages to stderr, prefixed "budgetformer: " (and "warning: "). Quiet mode silences bf_info. */
void bf_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bf_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void bf_set_quiet(int quiet);
int bf_quiet(void); /* 1 after bf_set_quiet(1): callers skip progress output of their own */

/* Wall-clock seconds (monotonic) and CPU seconds of this process. */
double bf_wall_seconds(void);
double bf_cpu_seconds(void);

/* Creates a directory and its parents (like mkdir -p). Returns 0 or -1 with err set. */
int bf_mkdir_p(const char *path, bf_err *err);
/* The same; on failure the directories it created are removed again (nothing is left). On success `made`
 * (if not NULL) receives the topmost directory it created, "" when all existed. */
int bf_mkdir_p_ex(const char *path, char *made, size_t made_len, bf_err *err);
/* The one path-length rule: a path the user gives (a configuration key, an option) holds at most
 * BF_PATH_LEN - 1 bytes (config.c and the commands refuse longer ones); buffers for names built from such a
 * path (run.dir/checkpoints/step-XXXXXXXX.h5, temporary and digest names) are BF_PATH_BUF bytes. */
#define BF_PATH_LEN 1024
#define BF_PATH_BUF (BF_PATH_LEN + 176)

/* 1 if path exists. */
int bf_path_exists(const char *path);
/* Which file path names, as the system knows it (device, inode, size, modification time in ns): equal
 * identities on one machine are the same file. All zero when it cannot be stat'ed. */
void bf_file_identity(const char *path, int64_t id[4]);

/* 0 when path can be opened as an input file; else -1 with err saying why in the user's words: no such file,
 * a dangling symbolic link (naming its target), a symbolic link loop, a directory, permission denied. */
int bf_check_input_file(const char *path, bf_err *err);

/* 1 if both paths exist and name one file (symbolic links followed, hard links alike): st_dev and st_ino. */
int bf_same_file(const char *a, const char *b);

/* 1 when the two string lists are equal (same length, same strings in the same order). */
int bf_same_strings(char *const *a, size_t na, char *const *b, size_t nb);
/* Frees n malloc'd strings and their array (NULL: nothing). */
void bf_free_strings(char **strs, size_t n);

/* A file a command writes or reads, and the option or key that named it (for messages). */
typedef struct {
    const char *what; /* "--records", "data.train", "run.dir/log.h5" */
    const char *path; /* NULL or "" = not given */
} bf_named_path;
/* Outputs never overwrite inputs: -1 with err naming both (and saying when a link joins them) if an output
 * that exists is one of the inputs, compared by device and inode, not by name. */
int bf_check_outputs(const bf_named_path *out, size_t n_out, const bf_named_path *in, size_t n_in, bf_err *err);

#endif
