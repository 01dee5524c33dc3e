/* fuzz_cmdline: libFuzzer target for the command-line parsing of `prepare`, `train` and `eval`
 * (bf_cmd_prepare, bf_cmd_train, bf_cmd_eval of cli.h), called with argv built from the input.
 *
 * Input: byte 0 picks the command (0 prepare, 1 train, 2 eval, modulo 3); the rest, split on NUL bytes, is
 * argv[1..] (at most 64 arguments).
 *
 * No input may name an existing file, so that a command cannot do real work: the value of every option
 * that takes a path (--train, --test, --out, --config, --checkpoint, --data, --records, --resume), as
 * "--opt VALUE" or "--opt=VALUE", is moved under a directory that does not exist. The token after a path
 * option is rewritten even where the parser reads it as something else, which only costs coverage. So
 * prepare stops at reading --train, train at loading --config (the --set overrides after it are covered
 * by fuzz_config) and eval at reading --checkpoint.
 *
 * Besides "no crash, leak, hang or undefined behaviour", it checks that the exit status is 0, 1 or 2, and 0
 * only when --help, -h or --help-config was given. Run with -close_fd_mask=3: the commands print usage
 * text on every error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "budgetformer/cli.h"
#include "budgetformer/util.h"
#include "fuzz_common.h"

#define MAX_ARGS 64
#define NOWHERE "/nonexistent-budgetformer-fuzz/"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    struct stat st;
    if (stat(NOWHERE, &st) == 0) {
        fprintf(stderr, "fuzz_cmdline: %s exists; it must not (the target relies on it)\n", NOWHERE);
        abort();
    }
    return 0;
}

static const char *const kPathOptions[] = {"--train",      "--test", "--out",     "--config",
                                           "--checkpoint", "--data", "--records", "--resume"};

/* 1 if the option part of arg (before any '=') is a path option. */
static int is_path_option(const char *arg, size_t len) {
    for (size_t i = 0; i < sizeof kPathOptions / sizeof *kPathOptions; i++)
        if (strlen(kPathOptions[i]) == len && !strncmp(arg, kPathOptions[i], len)) return 1;
    return 0;
}

/* A malloc'd "PREFIX" NOWHERE "REST", PREFIX being prefix[0..prefix_len). */
static char *relocate(const char *prefix, size_t prefix_len, const char *rest) {
    size_t rl = strlen(rest), n = prefix_len + strlen(NOWHERE) + rl + 1;
    char *s = malloc(n);
    BF_FUZZ_REQUIRE(s != NULL, "out of memory");
    memcpy(s, prefix, prefix_len);
    snprintf(s + prefix_len, n - prefix_len, "%s%s", NOWHERE, rest);
    return s;
}

static char *copy(const char *s) {
    size_t n = strlen(s) + 1;
    char *c = malloc(n);
    BF_FUZZ_REQUIRE(c != NULL, "out of memory");
    memcpy(c, s, n);
    return c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    static char kCommands[3][8] = {"prepare", "train", "eval"}; /* argv[0]; writable as argv is */
    const int cmd = data[0] % 3;

    char *in = malloc(size); /* data[1..size) plus a final NUL */
    BF_FUZZ_REQUIRE(in != NULL, "out of memory");
    memcpy(in, data + 1, size - 1);
    in[size - 1] = '\0';

    char *argv[MAX_ARGS + 2];
    int argc = 0;
    argv[argc++] = kCommands[cmd];
    int help = 0, path_next = 0;
    const char *p = in, *end = in + size;
    while (p < end && argc <= MAX_ARGS) {
        const char *tok = p;
        p += strlen(tok) + 1;
        const char *eq = strchr(tok, '=');
        size_t opt_len = eq ? (size_t)(eq - tok) : strlen(tok);
        char *arg;
        if (path_next && tok[0]) arg = relocate("", 0, tok);
        else if (eq && is_path_option(tok, opt_len) && eq[1]) arg = relocate(tok, opt_len + 1, eq + 1);
        else arg = copy(tok);
        path_next = !eq && is_path_option(tok, opt_len);
        help |= !strcmp(tok, "--help") || !strcmp(tok, "-h") || !strcmp(tok, "--help-config");
        argv[argc++] = arg;
    }
    argv[argc] = NULL;

    int rc;
    switch (cmd) {
    case 0: rc = bf_cmd_prepare(argc, argv); break;
    case 1: rc = bf_cmd_train(argc, argv); break;
    default: rc = bf_cmd_eval(argc, argv); break;
    }
    bf_set_quiet(0); /* train --quiet sets it for the process */
    BF_FUZZ_REQUIRE(rc == 0 || rc == 1 || rc == 2, "%s returned exit status %d", kCommands[cmd], rc);
    BF_FUZZ_REQUIRE(rc != 0 || help, "%s succeeded without --help and without any existing file", kCommands[cmd]);
    for (int i = 1; i < argc; i++) free(argv[i]);
    free(in);
    return 0;
}
