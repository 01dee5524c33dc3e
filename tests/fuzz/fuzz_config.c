/* fuzz_config: libFuzzer target for the configuration parser (config.h).
 *
 * Input: INI text up to the first NUL byte; after it, NUL-separated "section.key=value" overrides.
 * Each step runs on the configuration the previous steps left:
 *   bf_config_load_string(text) and bf_config_load(file holding the same text), bf_config_validate,
 *   bf_config_set(each override), bf_config_validate, bf_config_write_file, and the written text read back.
 *
 * Besides "no crash, leak, hang or undefined behaviour", it checks:
 *   - reading the text from memory and from a file give the same result and message;
 *   - a failed load or set returns -1, leaves the configuration unchanged (byte for byte) and has a message
 *     naming where ("NAME:LINE" or "NAME: ..." for a file, "--set ARG" for an override);
 *   - a configuration that can be written reads back and writes again to the same text (docs/CONFIG.md:
 *     "reads back to identical values"), and validates the same way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/config.h"
#include "fuzz_common.h"

#define MAX_SETS 16

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    return 0;
}

/* The configuration written as INI into a malloc'd string, or NULL when it cannot be written. */
static char *write_text(const bf_config *c, bf_err *err) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    BF_FUZZ_REQUIRE(f != NULL, "open_memstream failed");
    int rc = bf_config_write_file(c, f, err);
    fclose(f);
    if (rc) {
        BF_FUZZ_REQUIRE(rc == -1 && err->msg[0], "bf_config_write_file failed without a message");
        free(buf);
        return NULL;
    }
    return buf;
}

static void check_roundtrip(const bf_config *c) {
    bf_err err = {{0}};
    char *text = write_text(c, &err);
    if (!text) return;
    bf_config back;
    bf_config_defaults(&back);
    int rc = bf_config_load_string(&back, text, "written.ini", &err);
    BF_FUZZ_REQUIRE(rc == 0, "the written configuration does not read back: %s\n%s", err.msg, text);
    char *again = write_text(&back, &err);
    BF_FUZZ_REQUIRE(again != NULL, "the configuration read back cannot be written: %s", err.msg);
    BF_FUZZ_REQUIRE(!strcmp(text, again), "the configuration changed on a write/read round trip:\n%s\n---\n%s", text,
                    again);
    bf_err e1 = {{0}}, e2 = {{0}};
    int v1 = bf_config_validate(c, &e1), v2 = bf_config_validate(&back, &e2);
    BF_FUZZ_REQUIRE(v1 == v2 && !strcmp(e1.msg, e2.msg), "validation differs after the round trip: '%s' / '%s'",
                    e1.msg, e2.msg);
    free(text);
    free(again);
}

static void check_validate(const bf_config *c) {
    bf_err err = {{0}};
    int rc = bf_config_validate(c, &err);
    BF_FUZZ_REQUIRE(rc == 0 || (rc == -1 && err.msg[0]), "bf_config_validate returned %d, message '%s'", rc, err.msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *in = malloc(size + 1);
    BF_FUZZ_REQUIRE(in != NULL, "out of memory");
    memcpy(in, data, size);
    in[size] = '\0';
    const char *text = in;
    size_t text_len = strlen(in);

    /* The INI text, from memory and from a file; the file's path names both in messages. */
    const char *path = bf_fuzz_memfile(text, text_len);
    bf_config c, c_file, before;
    bf_config_defaults(&c);
    memcpy(&before, &c, sizeof c);
    memcpy(&c_file, &c, sizeof c);
    bf_err err = {{0}}, err_file = {{0}};
    int rc = bf_config_load_string(&c, text, path, &err);
    int rc_file = bf_config_load(&c_file, path, &err_file);
    BF_FUZZ_REQUIRE(rc == 0 || rc == -1, "bf_config_load_string returned %d", rc);
    BF_FUZZ_REQUIRE(rc == rc_file && !strcmp(err.msg, err_file.msg),
                    "memory and file parsing differ: %d '%s' / %d '%s'", rc, err.msg, rc_file, err_file.msg);
    if (rc) {
        BF_FUZZ_REQUIRE(!memcmp(&c, &before, sizeof c), "a failed load changed the configuration");
        size_t pl = strlen(path);
        BF_FUZZ_REQUIRE(!strncmp(err.msg, path, pl) && err.msg[pl] == ':', "the message does not name the file: %s",
                        err.msg);
    } else {
        char *a = write_text(&c, &err), *b = write_text(&c_file, &err_file);
        BF_FUZZ_REQUIRE((a == NULL) == (b == NULL) && (!a || !strcmp(a, b)),
                        "memory and file parsing give different configurations");
        free(a);
        free(b);
    }
    check_validate(&c);

    /* The overrides. */
    const char *p = in + text_len + 1, *end = in + size + 1;
    for (int k = 0; k < MAX_SETS && p < end; k++) {
        const char *arg = p;
        p += strlen(arg) + 1;
        memcpy(&before, &c, sizeof c);
        bf_err serr = {{0}};
        int src = bf_config_set(&c, arg, &serr);
        BF_FUZZ_REQUIRE(src == 0 || src == -1, "bf_config_set returned %d", src);
        if (src) {
            BF_FUZZ_REQUIRE(!memcmp(&c, &before, sizeof c), "a failed --set changed the configuration");
            BF_FUZZ_REQUIRE(!strncmp(serr.msg, "--set ", 6), "the message does not name the --set: %s", serr.msg);
        }
    }
    check_validate(&c);
    check_roundtrip(&c);
    free(in);
    return 0;
}
