/* cmd_train: `budgetformer train --config FILE [--set key=value ...]`. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/cli.h"
#include "budgetformer/config.h"
#include "budgetformer/dist.h"
#include "budgetformer/h5io.h"
#include "budgetformer/textread.h"
#include "budgetformer/train.h"

static void usage(FILE *f) {
    fprintf(f, "usage: budgetformer train --config FILE [--set section.key=value ...] [--resume auto|FILE] [--quiet]\n"
               "       budgetformer train --help-config     (every configuration key)\n"
               "options:\n"
               "  --config FILE   the INI configuration (docs/CONFIG.md) (required)\n"
               "  --set S.K=V     override one configuration key (repeatable; later ones win)\n"
               "  --resume auto   continue from the newest valid checkpoint in run.dir/checkpoints (a new run\n"
               "                  when there is none)\n"
               "  --resume FILE   continue from that checkpoint\n"
               "  --quiet         no progress lines and info messages (warnings and errors still print)\n"
               "  --help-config   list every configuration key with its type, default and range\n"
               "exit status: 0 done, 1 failed, 2 usage error, 75 stopped by SIGTERM/SIGUSR1/SIGINT after writing a\n"
               "checkpoint (continue with --resume auto); see docs/FAILURES.md\n");
}

/* One OpenBLAS thread per process unless the user asked otherwise: ranks are the parallelism. */
static void pin_blas_threads(void) {
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
}

int bf_cmd_train(int argc, char **argv) {
    const char *config_path = NULL;
    bf_config cfg;
    bf_config_defaults(&cfg);
    bf_err err = {{0}};
    bf_train_options opts = {.resume = NULL};
    /* The file is read first and the --set overrides after it, whatever their order on the line. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "budgetformer train: error: --config needs a FILE\n");
                return 2;
            }
            config_path = argv[++i];
        } else if (!strcmp(argv[i], "--set")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "budgetformer train: error: --set needs section.key=value\n");
                return 2;
            }
            i++;
        } else if (!strcmp(argv[i], "--resume")) {
            if (i + 1 >= argc || !argv[i + 1][0]) {
                fprintf(stderr, "budgetformer train: error: --resume needs 'auto' or a checkpoint FILE\n");
                return 2;
            }
            opts.resume = argv[++i];
        } else if (!strcmp(argv[i], "--quiet")) {
            bf_set_quiet(1);
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--help-config")) {
            bf_config_print_help(stdout);
            return 0;
        } else {
            fprintf(stderr, "budgetformer train: error: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!config_path) {
        fprintf(stderr, "budgetformer train: error: --config FILE is required\n");
        usage(stderr);
        return 2;
    }
    if (bf_config_load(&cfg, config_path, &err)) {
        fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
        return 2;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--set") && bf_config_set(&cfg, argv[++i], &err)) {
            fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
            return 2;
        }
    if (bf_config_validate(&cfg, &err)) {
        fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
        return 2;
    }
    bf_h5_init();
    pin_blas_threads();
    bf_dist dist;
    if (bf_dist_init(&dist, NULL, NULL)) return 1;
    /* Only rank 0 talks, except for errors. */
    if (dist.rank != 0) bf_set_quiet(1);
    /* After MPI_Init, so that ours are the handlers in force (docs/FAILURES.md). */
    if (bf_train_install_signal_handlers(dist.rank == 0))
        bf_warn("cannot install the SIGTERM/SIGUSR1/SIGINT handlers: a signal ends the run without a checkpoint");
    int rc = bf_train_run_opts(&cfg, &dist, &opts, &err);
    if (rc < 0) {
        /* A dataset that could not be opened: say which key named it and what the fix is (a missing file, a
         * directory, unprepared text). */
        const char *const data_keys[3] = {"data.train", "data.valid", "data.test"};
        const char *const data_paths[3] = {cfg.data_train, cfg.data_valid, cfg.data_test};
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(data_paths[k]);
            bf_err hint;
            if (n && !strncmp(err.msg, data_paths[k], n) && err.msg[n] == ':' &&
                bf_text_check_dataset_path(data_keys[k], data_paths[k], &hint)) {
                err = hint;
                break;
            }
        }
    }
    if (rc < 0 && (dist.rank == 0 || !strstr(err.msg, "(its message is above)")))
    {
        if (dist.world > 1) fprintf(stderr, "budgetformer train: error on rank %d: %s\n", dist.rank, err.msg);
        else fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
    }
    bf_dist_finalize(&dist);
    /* 0 done, 1 failed, 2 usage (above), 75 stopped on request with a checkpoint written (requeue). */
    return rc == BF_EXIT_PREEMPTED ? BF_EXIT_PREEMPTED : rc ? 1 : 0;
}
