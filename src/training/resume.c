/* resume: continuing a run from a checkpoint (--resume auto or FILE): choosing the checkpoint, checking that
 * it fits this configuration and data (model, vocabulary, changed keys), loading it and its log
 * (docs/CHECKPOINTS.md). */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "trainer.h"

/* Keys a resumed run may change without a word beyond an info line: they do not alter the model, and the
 * updates they touch are the same (run length, stop point, logging, evaluation, checkpoints, transport).
 * model.* keys are refused; every other change (learning rate, seed, batch, exploration, ...) is allowed
 * with a warning that the continuation differs from an uninterrupted run. */
static const char *const kFreeOnResume[] = {
    "train.steps", "train.stop_at", "train.log_every", "train.log_write_every", "train.eval_every", "train.micro_batch", "data.train",
    "data.valid", "data.test", "run.dir", "checkpoint.every", "checkpoint.keep", "heads.every", "dist.bucket_kb",
    "dist.timeout", "dist.shard_optimizer", "dist.shared_dataset", "dist.spin_us",
    "train.max_nonfinite", "checkpoint.on_error"};

/* Compares this run's configuration with the one stored in the checkpoint. Returns 0 (changes reported),
 * or -1 for a change that alters the model. */
static int compare_configs(const trainer *t, const bf_config *old, const char *path, bf_err *err) {
    int rc = 0;
    for (size_t i = 0; i < bf_config_key_count() && rc == 0; i++) {
        char key[96], now[BF_PATH_LEN], was[BF_PATH_LEN];
        bf_config_key_name(i, key, sizeof key);
        if (!strcmp(bf_config_key_value(old, i, was, sizeof was), bf_config_key_value(t->cfg, i, now, sizeof now)))
            continue;
        int free_key = 0;
        for (size_t k = 0; k < sizeof kFreeOnResume / sizeof *kFreeOnResume; k++)
            free_key |= !strcmp(kFreeOnResume[k], key);
        if (!strncmp(key, "model.", 6))
            rc = bf_fail(err, "%s = %s in this configuration but %s in checkpoint %s: resuming cannot change the "
                              "model (set %s = %s, or train a new model in another run.dir)", key, now, was, path,
                         key, was);
        else if (free_key)
            bf_info("resume: %s = %s (the checkpoint's run had %s)", key, now, was);
        else
            bf_warn("resume: %s = %s here but %s in the checkpoint: the continuation will differ from an "
                    "uninterrupted run", key, now, was);
    }
    return rc;
}

/* The checkpoint's model against the one this configuration and data.train make. */
static int compare_models(const trainer *t, const bf_model_config *fc, const char *old_train, const char *path,
                          bf_err *err) {
    for (int i = 0; i < BF_MODEL_N_FIELDS; i++) {
        const char *what = bf_model_fields[i].name, *key = bf_model_fields[i].key;
        int have = bf_model_field_get(&t->model.cfg, i), was = bf_model_field_get(fc, i);
        if (have == was) continue;
        if (!strcmp(key, "data.train"))
            return bf_fail(err, "data.train = %s gives %s %d but checkpoint %s has %s %d (trained on data.train = "
                                "%s): resuming cannot change the vocabulary, max_len or classes",
                           t->cfg->data_train, what, have, path, what, was, old_train);
        return bf_fail(err, "%s = %d in this configuration but %d in checkpoint %s: resuming cannot change the "
                            "model (set %s = %d, or train a new model in another run.dir)",
                       key, have, was, path, key, was);
    }
    char have[4 * BF_MAX_LAYERS], was[4 * BF_MAX_LAYERS];
    bf_model_layer_budgets_text(&t->model.cfg, have, sizeof have);
    bf_model_layer_budgets_text(fc, was, sizeof was);
    if (strcmp(have, was))
        return bf_fail(err, "model.layer_budgets = %s in this configuration but %s in checkpoint %s: resuming cannot "
                            "change the model (set model.layer_budgets = %s, or train a new model in another run.dir)",
                       have, was, path, was);
    return 0;
}

static int compare_names(const trainer *t, const bf_ckpt_file *cf, const char *old_train, bf_err *err) {
    char **v = NULL, **l = NULL;
    size_t nv = 0, nl = 0;
    int rc = bf_checkpoint_file_names(cf, &v, &nv, &l, &nl, err);
    if (rc == 0 && (!bf_same_strings(v, nv, t->train.vocab, t->train.vocab_size) ||
                    !bf_same_strings(l, nl, t->train.label_names, (size_t)t->train.n_classes)))
        rc = bf_fail(err, "data.train = %s has another vocabulary or label set than checkpoint %s (trained on "
                          "data.train = %s): resuming cannot change them", t->cfg->data_train, cf->path, old_train);
    bf_free_strings(v, nv);
    bf_free_strings(l, nl);
    return rc;
}

/* Loads the training state of one checkpoint into the trainer (rank 0). Returns 0; -1 when the file is not a
 * valid checkpoint; -2 when it is valid but does not fit this configuration. `expect_step` >= 0 also checks
 * that the file holds the step its name says. */
static int try_resume(trainer *t, const char *path, long expect_step, bf_err *err) {
    bf_ckpt_file cf;
    bf_ckpt_state st;
    memset(&st, 0, sizeof st);
    int rc = bf_checkpoint_open(path, BF_DIGEST_REQUIRED, &cf, err) ? -1 : 0;
    bf_model_config fc;
    if (rc == 0 && (bf_checkpoint_file_model_config(&cf, &fc, err) || bf_checkpoint_read_state(&cf, &st, err)))
        rc = -1;
    if (rc == 0 && expect_step >= 0 && st.step != expect_step)
        rc = bf_fail(err, "%s is named for step %ld but holds step %ld", path, expect_step, st.step);
    bf_config old;
    bf_config_defaults(&old);
    int have_old = 0;
    if (rc == 0) {
        bf_err cerr;
        have_old = bf_config_load_string(&old, st.config_text, path, &cerr) == 0;
        if (!have_old) bf_warn("%s: the stored configuration cannot be read (%s): changes are not checked", path, cerr.msg);
    }
    const char *old_train = have_old ? old.data_train : "?";
    if (rc == 0 && compare_models(t, &fc, old_train, path, err)) rc = -2;
    if (rc == 0) {
        bf_ckpt_state_free(&st);
        if (bf_checkpoint_read_training(&cf, &t->model, t->adam_m, t->adam_v, t->heads.block_len, &st, err)) rc = -1;
    }
    if (rc == 0 && compare_names(t, &cf, old_train, err)) rc = -2;
    if (rc == 0 && have_old && compare_configs(t, &old, path, err)) rc = -2;
    if (rc == 0) {
        if (st.n_train != (int64_t)t->train.n)
            bf_warn("resume: data.train has %zu inputs but the checkpoint's had %lld: the data order from here "
                    "differs from an uninterrupted run", t->train.n, (long long)st.n_train);
        /* The coordinator's settings follow this configuration; its decisions so far come from the file. */
        t->coord.anneal_from = st.coord.anneal_from;
        t->coord.window_sum = st.coord.window_sum;
        t->coord.window_n = st.coord.window_n;
        t->coord.prev_mean = st.coord.prev_mean;
        t->coord.lambda = st.coord.lambda;
        t->coord.lambda_i = st.coord.lambda_i;
        memcpy(t->heads.block, st.headstats, t->heads.block_len * sizeof(int64_t));
        t->start_step = st.step;
        t->skipped_total = st.skipped_steps;
        t->nonfinite_run = st.nonfinite_run;
        t->resumed = 1;
        bf_info("resuming from %s: step %ld (epoch %lld, input %lld of %lld in its order), written on %d rank%s, "
                "continuing on %d", path, st.step, (long long)st.epoch, (long long)st.epoch_position,
                (long long)st.n_train, st.world_size, st.world_size > 1 ? "s" : "", t->world);
    }
    bf_ckpt_state_free(&st);
    bf_checkpoint_close(&cf);
    return rc;
}

/* Back to a fresh start after candidates were tried (they may have written into the state). */
static void reset_state(trainer *t) {
    bf_model_init_weights(&t->model, t->cfg->seed);
    memset(t->adam_m, 0, t->model.n_params * sizeof(float));
    memset(t->adam_v, 0, t->model.n_params * sizeof(float));
    bf_coordinator_init(&t->coord, t->cfg);
    bf_headstats_reset(&t->heads);
    t->start_step = t->skipped_total = t->nonfinite_run = 0;
    t->resumed = 0;
}

static int same_dir(const char *a, const char *b) {
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* --resume auto: the newest valid checkpoint that fits; none at all: a fresh start. */
static int resume_auto(trainer *t, bf_err *err) {
    char dir[BF_CKPT_PATH_LEN];
    snprintf(dir, sizeof dir, "%s/checkpoints", t->cfg->run_dir);
    bf_ckpt_entry *e;
    size_t n;
    if (bf_checkpoint_list(dir, &e, &n, err)) return -1;
    size_t invalid = 0, misfit = 0;
    bf_err first_misfit = {{0}};
    for (size_t i = 0; i < n; i++) {
        bf_err why = {{0}};
        int rc = try_resume(t, e[i].path, e[i].step, &why);
        if (rc == 0) {
            free(e);
            if (invalid + misfit) bf_info("resume: skipped %zu newer checkpoint%s (kept as they are)", invalid + misfit,
                                          invalid + misfit > 1 ? "s" : "");
            return 0;
        }
        if (rc == -2 && misfit++ == 0) first_misfit = why;
        if (rc == -1) invalid++;
        bf_warn("--resume auto: skipping %s: %s", e[i].path, why.msg);
    }
    free(e);
    if (misfit) {
        /* Checkpoints exist but none fits: that is a changed configuration, not a new run. */
        return bf_fail(err, "--resume auto: no checkpoint in %s fits this configuration; the newest that is valid "
                            "says: %s", dir, first_misfit.msg);
    }
    reset_state(t);
    if (invalid)
        bf_warn("--resume auto: no valid checkpoint in %s (%zu invalid file%s kept as they are): starting a new "
                "run from step 0", dir, invalid, invalid > 1 ? "s" : "");
    else
        bf_info("--resume auto: no checkpoint in %s: starting a new run from step 0", dir);
    return 0;
}

/* --resume FILE: that checkpoint or an error. */
static int resume_file(trainer *t, const char *path, bf_err *err) {
    if (try_resume(t, path, -1, err)) return -1;
    char dir[BF_CKPT_PATH_LEN], own[BF_CKPT_PATH_LEN], marker[BF_PATH_LEN + 64];
    snprintf(own, sizeof own, "%s/checkpoints", t->cfg->run_dir);
    snprintf(dir, sizeof dir, "%s", path);
    /* A checkpoint from elsewhere continues into a new run.dir: another run's log and checkpoints would
     * be mixed with this one's. */
    if (!same_dir(dirname(dir), own) && bf_trainer_run_dir_marker(t->cfg->run_dir, marker, sizeof marker))
        return bf_fail(err, "--resume %s: run.dir = %s already holds another run (%s exists); continue a "
                            "checkpoint from elsewhere into a new run.dir", path, t->cfg->run_dir, marker);
    /* Newer valid checkpoints in run.dir would be overwritten as training goes on: refuse. */
    bf_ckpt_entry *e;
    size_t n;
    if (bf_checkpoint_list(own, &e, &n, err)) return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (e[i].step <= t->start_step) break;
        bf_err ignore;
        int valid = bf_checkpoint_validate(e[i].path, &ignore) == 0;
        if (valid)
            rc = bf_fail(err, "--resume %s: run.dir holds a newer valid checkpoint %s that continuing from step %ld "
                              "could overwrite; use --resume auto, or move the newer checkpoints away first",
                         path, e[i].path, t->start_step);
    }
    free(e);
    return rc;
}

/* Rank 0 chooses and loads the checkpoint; then every rank gets the same state (trainer.h). Sharded, rank 0
 * reads the full moments into arrays of its own for the time of the resume, and every rank keeps its part. */
int bf_trainer_resume_state(trainer *t, bf_err *err) {
    const char *r = t->opts->resume;
    int rc = 0;
    float *own_m = t->adam_m, *own_v = t->adam_v;
    int full = t->sharded && t->rank == 0 && r;
    if (full) {
        t->adam_m = bf_xcalloc(t->model.n_params, sizeof(float));
        t->adam_v = bf_xcalloc(t->model.n_params, sizeof(float));
    }
    if (t->rank == 0 && r) rc = !strcmp(r, "auto") ? resume_auto(t, err) : resume_file(t, r, err);
    float *full_m = t->adam_m, *full_v = t->adam_v;
    t->adam_m = own_m;
    t->adam_v = own_v;
    if (bf_trainer_agree(t, rc, err)) {
        if (full) {
            free(full_m);
            free(full_v);
        }
        return -1;
    }
    int64_t hdr[4] = {t->resumed, t->start_step, t->skipped_total, t->nonfinite_run};
    bf_dist_bcast_i64(t->dist, hdr, 4, 0);
    t->resumed = (int)hdr[0];
    t->start_step = (long)hdr[1];
    t->skipped_total = (long)hdr[2];
    t->nonfinite_run = (long)hdr[3];
    if (t->resumed) {
        /* Bit-exact copies: every replica starts from the same bytes. */
        bf_dist_bcast_f32(t->dist, t->model.params, t->model.n_params, 0);
        if (t->sharded) {
            bf_trainer_shard_scatter_moments(t, full_m, full_v);
        } else {
            bf_dist_bcast_f32(t->dist, t->adam_m, t->model.n_params, 0);
            bf_dist_bcast_f32(t->dist, t->adam_v, t->model.n_params, 0);
        }
    }
    if (full) {
        free(full_m);
        free(full_v);
    }
    return 0;
}

/* Rank 0: the log of the steps before the checkpoint, read back from run.dir/log.h5. */
int bf_trainer_resume_log(trainer *t, bf_err *err) {
    if (!t->resumed) return 0;
    int rc = bf_runlog_load(&t->log, t->start_step, err);
    if (rc < 0) return -1;
    int64_t have = t->log.n ? t->log.step[t->log.n - 1] : 0;
    /* A /heads record at the checkpoint's step whose counts the checkpoint kept (an early record: the run
     * stopped at train.stop_at, or ended at a train.steps off the heads.every grid) is dropped when the run
     * goes on: those counts came back from the checkpoint and go into the next record. A record whose counts
     * were reset (on the grid, or the last record of an older build) has an all-zero checkpoint count and
     * stays, so no input is counted twice or lost, whatever heads.every is now. */
    const bf_config *c = t->cfg;
    long last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    if (t->log.nh && t->log.h_step[t->log.nh - 1] == t->start_step && t->heads.count[0] > 0 &&
        t->start_step < last)
        t->log.nh--;
    if (rc == 1)
        bf_warn("resume: %s does not exist: the new log starts at step %ld", t->log.path, t->start_step + 1);
    else if (have < t->start_step)
        bf_warn("resume: %s ends at step %lld: the records of steps %lld..%ld are missing", t->log.path,
                (long long)have, (long long)have + 1, t->start_step);
    return 0;
}
