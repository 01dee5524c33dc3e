/* cmd_train: `budgetformer train --config FILE [--set key=value ...]`. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/cli.h"
#include "budgetformer/config.h"
#include "budgetformer/dist.h"
#include "budgetformer/durable.h"
#include "budgetformer/files.h"
#include "budgetformer/textread.h"
#include "budgetformer/ops.h"
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
               "  --quiet         no progress lines and info messages (results, warnings and errors still print)\n"
               "  --help-config   list every configuration key with its type, default and range\n"
               "exit status: 0 done, 1 failed, 2 usage error, 75 stopped by SIGTERM/SIGUSR1/SIGINT/SIGHUP (or a\n"
               "closed stderr, SIGPIPE) after writing a "
               "checkpoint (continue with --resume auto); see docs/FAILURES.md\n");
}

/* One OpenBLAS thread per process unless the user asked otherwise: ranks are the parallelism. */
static void pin_blas_threads(void) {
    if (!getenv("OPENBLAS_NUM_THREADS") && !getenv("OMP_NUM_THREADS")) openblas_set_num_threads(1);
}

/* What the run writes in run.dir must not be, or link to, what it reads: --config run.dir/config.ini would
 * be replaced by the resolved configuration, a data file named log.h5 by the log. */
static int check_outputs(const bf_config *c, const char *config_path, const char *resume, bf_err *err) {
    static const char *const names[] = {"config.ini", ".config.ini.tmp", "log.h5", "log.h5.tmp", ".lock"};
    char paths[5][BF_PATH_LEN + 32];
    bf_named_path out[5];
    for (int i = 0; i < 5; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/%s", c->run_dir, names[i]);
        out[i] = (bf_named_path){i < 2 ? "run.dir/config.ini" : i < 4 ? "run.dir/log.h5" : "run.dir/.lock", paths[i]};
    }
    const bf_named_path in[] = {{"--config", config_path}, {"data.train", c->data_train}, {"data.valid", c->data_valid},
                                {"data.test", c->data_test}, {"--resume", resume && strcmp(resume, "auto") ? resume : NULL}};
    return bf_check_outputs(out, 5, in, 5, err);
}

/* BF_STATUS_FILE (set by launch/bf-mpirun.sh): rank 0 leaves the run's exit status there. When a scheduler
 * sends SIGTERM to mpirun as well as to the ranks, mpirun's own status says only that it was signalled; the
 * wrapper reads this file to exit 75 after the ranks checkpointed (docs/FAILURES.md). Every rank agreed on
 * the status before it is written. */
static void write_status_file(int status) {
    const char *path = getenv("BF_STATUS_FILE");
    if (!path || !*path) return;
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) return;
    FILE *f = fopen(tmp, "w");
    if (!f) return;
    int ok = fprintf(f, "%d\n", status) > 0;
    bf_err ignore;
    if (fclose(f) != 0 || !ok || bf_commit_file(tmp, path, &ignore)) {
        remove(tmp);
        bf_warn("BF_STATUS_FILE=%s: cannot write the exit status there", path);
    }
}

/* Over 80 lines on purpose: argument parsing and the configuration's checks, then MPI start, the run and
 * the mapping of its outcome to the exit status and messages of docs/FAILURES.md. */
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
    if (check_outputs(&cfg, config_path, opts.resume, &err)) {
        fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
        return 2;
    }
    bf_files_init();
    pin_blas_threads();
    bf_dist dist;
    if (bf_dist_init(&dist, NULL, NULL)) return 1;
    /* Only rank 0 talks, except for errors. */
    if (dist.rank != 0) bf_set_quiet(1);
    /* After MPI_Init, so that ours are the handlers in force (docs/FAILURES.md). */
    if (bf_train_install_signal_handlers(dist.rank == 0))
        bf_warn("cannot install the SIGTERM/SIGUSR1/SIGINT/SIGHUP/SIGPIPE handlers: a signal ends the run without a checkpoint");
    /* OpenBLAS's buffers now, under any address-space limit: later it would hang retrying (docs/FAILURES.md). */
    if (bf_ops_reserve_blas(&err)) {
        fprintf(stderr, "budgetformer train: error%s: %s\n", dist.world > 1 ? " on a rank" : "", err.msg);
        if (dist.world > 1) bf_dist_abort(&dist, 1);
        bf_dist_finalize(&dist);
        return 1;
    }
    int rc = bf_train_run_opts(&cfg, &dist, &opts, &err);
    if (rc < 0) {
        /* A dataset that could not be opened: say which key named it and what the fix is (a missing file, a
         * directory, unprepared text). */
        const char *const data_keys[3] = {"data.train", "data.valid", "data.test"};
        const char *const data_paths[3] = {cfg.data_train, cfg.data_valid, cfg.data_test};
        for (int k = 0; k < 3; k++) {
            size_t n = strlen(data_paths[k]);
            /* the loader's message is "PATH: ..." or, naming the key, "KEY: PATH: ..." */
            const char *msg = err.msg;
            size_t kl = strlen(data_keys[k]);
            if (!strncmp(msg, data_keys[k], kl) && msg[kl] == ':' && msg[kl + 1] == ' ') msg += kl + 2;
            bf_err hint;
            /* A link problem is already named exactly by the loader; otherwise the hint (the key and the fix)
             * comes first and the loader's finding follows. */
            if (n && !strncmp(msg, data_paths[k], n) && msg[n] == ':' && !strstr(msg, "symbolic link") &&
                bf_text_check_dataset_path(data_keys[k], data_paths[k], &hint)) {
                bf_err both;
                if (strstr(msg, "no such file")) both = hint;
                else snprintf(both.msg, sizeof both.msg, "%.*s (%.*s)", (int)(sizeof both.msg / 2), hint.msg,
                              (int)(sizeof both.msg / 2 - 8), msg);
                err = both;
                break;
            }
        }
    }
    if (rc < 0 && (dist.rank == 0 || !strstr(err.msg, "(its message is above)")))
    {
        if (dist.world > 1) fprintf(stderr, "budgetformer train: error on rank %d: %s\n", dist.rank, err.msg);
        else fprintf(stderr, "budgetformer train: error: %s\n", err.msg);
    }
    int rank = dist.rank;
    bf_dist_finalize(&dist);
    /* 0 done, 1 failed, 2 usage (above), 75 stopped on request with a checkpoint written (requeue). */
    int status = rc == BF_EXIT_PREEMPTED ? BF_EXIT_PREEMPTED : rc ? 1 : 0;
    if (rank == 0) write_status_file(status);
    return status;
}
