/* save: the checkpoints of a training run: log.h5 first, then run.dir/checkpoints/step-XXXXXXXX.h5 committed
 * by the files layer (checkpoint.h: temporary file, fsync, rename), then rotation; what a failed write means
 * for the run (checkpoint.on_error). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/optim.h"
#include "trainer.h"

static void checkpoint_path(const trainer *t, long step, char *buf, size_t len) {
    snprintf(buf, len, "%s/checkpoints/step-%08ld.h5", t->cfg->run_dir, step);
}

/* Rank 0's part of save_checkpoint: log first (so log.h5 always covers a checkpoint's steps), then the
 * checkpoint, then rotation. */
static int write_checkpoint(trainer *t, long step, const int64_t *headstats, const float *adam_m,
                            const float *adam_v, bf_err *err) {
    const bf_config *c = t->cfg;
    if (bf_runlog_flush(&t->log, err)) return -1;
    char path[BF_CKPT_PATH_LEN], dir[BF_CKPT_PATH_LEN];
    checkpoint_path(t, step, path, sizeof path);
    snprintf(dir, sizeof dir, "%s/checkpoints", c->run_dir);
    if (bf_path_exists(path)) {
        bf_err why;
        int valid = bf_checkpoint_validate(path, &why) == 0;
        if (valid) {
            /* Only reached when a valid checkpoint of this step exists already (e.g. written by another run
             * into the same directory): it is never overwritten. */
            bf_warn("%s exists and is valid: it is kept, not overwritten", path);
            return 0;
        }
        bf_warn("replacing the invalid checkpoint %s (%s)", path, why.msg);
    }
    bf_ckpt_meta meta = {.step = step, .seed = c->seed, .world_size = t->world, .batch_size = c->batch_size,
                         .n_train = (int64_t)t->train.n, .skipped_steps = t->skipped_total,
                         .nonfinite_run = t->nonfinite_run,
                         .lr = bf_lr_at(step, c->steps, c->warmup, c->lr, c->lr_min),
                         .adam_m = adam_m, .adam_v = adam_v, .coord = &t->coord,
                         .headstats = headstats, .headstats_len = t->heads.block_len,
                         .config_text = t->config_text,
                         .vocab = (const char *const *)t->train.vocab, .vocab_size = t->train.vocab_size,
                         .label_names = (const char *const *)t->train.label_names,
                         .n_classes = (size_t)t->train.n_classes, .blas_config = openblas_get_config(),
                         .mpi_library_version = bf_dist_library_version()};
    if (t->fault.save_fault && (t->fault.save_step < 0 ? t->saves == 1 : t->fault.save_step == step))
        bf_checkpoint_arm_fault(t->fault.save_fault, t->fault.save_delay_ms);
    if (bf_checkpoint_save(path, &t->model, &meta, err)) return -1;
    bf_info("saved checkpoint %s", path);
    /* Keep the newest checkpoint.keep valid files; only after the new one is committed. */
    if (bf_checkpoint_rotate(dir, c->checkpoint_keep, step, err) < 0) return -1;
    return 0;
}

/* Saves the training state after update `step` as run.dir/checkpoints/step-XXXXXXXX.h5 and rotates old
 * checkpoints. Collective: every rank calls it after the same update (the head-usage counts are summed
 * over ranks); rank 0 writes. It can be called at any step boundary (periodically, at the end, on request);
 * a second call for the same step does nothing. Returns the status agreed by all ranks. */
int bf_trainer_save_checkpoint(trainer *t, long step, bf_err *err) {
    if (step == t->last_saved) return 0;
    bf_trainer_shard_sync_weights(t); /* sharded: the whole token embedding, not only the next update's rows */
    t->saves++;
    int64_t *hs = bf_xmalloc(t->heads.block_len * sizeof(int64_t));
    memcpy(hs, t->heads.block, t->heads.block_len * sizeof(int64_t));
    bf_dist_allreduce_sum_i64(t->dist, hs, t->heads.block_len);
    /* Sharded, rank 0 gathers the full AdamW moments first: the file is the same as an unsharded run's. */
    float *m_full = NULL, *v_full = NULL;
    if (t->sharded) bf_trainer_shard_gather_moments(t, &m_full, &v_full);
    int rc = t->rank == 0 ? write_checkpoint(t, step, hs, t->sharded ? m_full : t->adam_m,
                                             t->sharded ? v_full : t->adam_v, err) : 0;
    free(hs);
    free(m_full);
    free(v_full);
    rc = bf_trainer_agree(t, rc, err);
    if (rc == 0) t->last_saved = t->newest_ckpt = step;
    return rc;
}

/* "the newest checkpoint, step-XXXXXXXX.h5, is intact" or that there is none, for messages. */
void bf_trainer_describe_newest(const trainer *t, char *buf, size_t len) {
    if (t->newest_ckpt < 0) snprintf(buf, len, "no checkpoint of this run exists yet");
    else snprintf(buf, len, "the newest checkpoint, %s/checkpoints/step-%08ld.h5, is intact", t->cfg->run_dir,
                  t->newest_ckpt);
}

/* A periodic save or log write failed (every rank has rc -1): checkpoint.on_error decides. Returns 0 to go
 * on, -1 to stop (err then says why). */
int bf_trainer_after_write_failure(trainer *t, const char *what, bf_err *err) {
    char newest[BF_PATH_LEN + 96];
    bf_trainer_describe_newest(t, newest, sizeof newest);
    if (t->cfg->checkpoint_on_error == BF_ON_ERROR_CONTINUE) {
        if (t->rank == 0)
            bf_warn("%s failed: %s; training goes on (checkpoint.on_error = continue) and %s", what, err->msg, newest);
        err->msg[0] = '\0';
        return 0;
    }
    char msg[BF_ERR_LEN];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return bf_fail(err, "%s failed: %s; stopping (checkpoint.on_error = stop); %s: free space or fix the cause, then "
                        "continue with --resume auto", what, msg, newest);
}
