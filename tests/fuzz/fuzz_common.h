/* fuzz_common: helpers shared by the libFuzzer targets in tests/fuzz/ (not part of the program).
 *
 *   const char *path = bf_fuzz_memfile(data, size);   // a path that reads back exactly these bytes
 *   BF_FUZZ_REQUIRE(cond, "what went wrong: %zu", n);  // prints the message and abort()s: libFuzzer keeps
 *                                                     // the input as a crash
 */
#ifndef BF_FUZZ_COMMON_H
#define BF_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry points (declared here so -Wmissing-prototypes stays quiet). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Replaces the contents of one in-memory file (memfd, created on first use) with data[0..size) and returns
 * a path that opens it ("/proc/self/fd/N"). The same path is returned on every call. */
const char *bf_fuzz_memfile(const void *data, size_t size);

/* A failed property: prints "fuzz property failed at FILE:LINE: ..." to stderr and aborts. */
_Noreturn void bf_fuzz_fail_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define BF_FUZZ_REQUIRE(cond, ...)                                                                          \
    do {                                                                                                    \
        if (!(cond)) bf_fuzz_fail_at(__FILE__, __LINE__, __VA_ARGS__);                                     \
    } while (0)

#endif
