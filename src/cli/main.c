/* budgetformer: command-line entry point; dispatches to one subcommand per file (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "budgetformer/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: budgetformer <command> [options]\n"
            "commands:\n"
            "  prepare  --train FILE --test FILE --out DIR [...]   text CSV/TSV/JSONL -> dataset .h5 files\n"
            "  train    --config FILE [--set key=value ...]        train a model\n"
            "  eval     --checkpoint FILE --data FILE [--records FILE] [--json]\n"
            "  predict  --checkpoint FILE [--input FILE|-] [--top-k N]  classify text lines (head-skipping)\n"
            "  heads    FILE [--json]                              head usage from a log.h5 or records file\n"
            "  inspect  FILE                                       a checkpoint's step, configuration, shapes\n"
            "  bench    [--d-model 256 ...]                        time training and inference (JSON)\n"
            "run 'budgetformer <command> --help' for a command's options\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "prepare")) return bf_cmd_prepare(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return bf_cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return bf_cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "heads")) return bf_cmd_heads(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return bf_cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return bf_cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "predict")) return bf_cmd_predict(argc - 1, argv + 1);
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("budgetformer %s\n", BF_VERSION);
        return 0;
    }
    fprintf(stderr, "budgetformer: error: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
