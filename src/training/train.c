/* train: a training run (see train.h): data, run directory, the loop of updates, checkpoints, evaluation.
 * The update itself is in step.c, the checkpoints of a run in save.c, resume in resume.c, the stop signals in
 * signals.c, BF_FAULT in faults.c. */
#include "budgetformer/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "budgetformer/eval_dist.h"
#include "budgetformer/evaluate.h"
#include "budgetformer/memusage.h"
#include "budgetformer/optim.h"
#include "signals.h"
#include "trainer.h"

/* FNV-1a over the bytes of the weights: equal checksums on every rank mean bitwise-equal replicas. */
static uint64_t weights_checksum(const bf_model *m) {
    const unsigned char *p = (const unsigned char *)m->params;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < m->n_params * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* BF_TRACE=PREFIX makes each rank write PREFIX.rank<r>: one line per update with the eps it applied, the
 * global loss and a checksum of its weights. Tests use it to check that ranks agree bit for bit. */
static void open_trace(trainer *t) {
    const char *prefix = getenv("BF_TRACE");
    if (!prefix || !*prefix) return;
    char path[BF_PATH_LEN + 32];
    snprintf(path, sizeof path, "%s.rank%d", prefix, t->rank);
    t->trace = fopen(path, "w");
    if (!t->trace) bf_warn("BF_TRACE: cannot write %s", path);
}

/* Every rank must train on the same bytes: a file that differs between nodes (a stale copy, another
 * version at the same path) would otherwise train silently or fail later in an MPI call that names no
 * file. Each rank compares its digest of each set with rank 0's; the differing rank names the file. */
static int check_same_data(trainer *t, bf_err *err) {
    if (t->world == 1) return 0;
    const bf_dataset *sets[3] = {&t->train, t->have_valid ? &t->valid : NULL, t->have_test ? &t->test : NULL};
    const char *keys[3] = {"data.train", "data.valid", "data.test"};
    const char *paths[3] = {t->cfg->data_train, t->cfg->data_valid, t->cfg->data_test};
    int rc = 0;
    for (int k = 0; k < 3; k++) {
        if (!sets[k]) continue;
        int64_t mine[4], root[4];
        bf_dataset_digest(sets[k], (unsigned char *)mine);
        memcpy(root, mine, sizeof root);
        bf_dist_bcast_i64(t->dist, root, 4, 0);
        if (rc == 0 && memcmp(mine, root, sizeof mine)) {
            char host[256] = "?";
            if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "?");
            rc = bf_fail(err, "%s = %s on rank %d (host %s) holds other data than on rank 0 (%zu inputs here; the "
                              "SHA-256 of the loaded contents differs): every rank must read the same file; copy the "
                              "same version to every node or put it on a shared file system", keys[k], paths[k],
                         t->rank, host, sets[k]->n);
        }
    }
    return rc;
}

int bf_trainer_run_dir_marker(const char *dir, char *p, size_t len) {
    const char *markers[] = {"config.ini", "log.h5", "checkpoints"};
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
        snprintf(p, len, "%s/%s", dir, markers[i]);
        if (bf_path_exists(p)) return 1;
    }
    return 0;
}

static int prepare_run_dir(trainer *t, bf_err *err) {
    const char *dir = t->cfg->run_dir;
    char p[BF_PATH_LEN + 64], tmp[BF_PATH_LEN + 64];
    /* A new run never writes over another; --resume (auto or a file) continues in the run directory. */
    if (!t->opts->resume && bf_trainer_run_dir_marker(dir, p, sizeof p))
        return bf_fail(err, "run.dir = %s already holds a run (%s exists); choose another run.dir, remove it, or "
                            "continue it with --resume auto", dir, p);
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    if (bf_mkdir_p(p, err)) return -1;
    t->wrote_run = 1;
    /* config.ini: the resolved configuration of the run as it goes on now (a resume may change stop_at...). */
    snprintf(p, sizeof p, "%s/config.ini", dir);
    snprintf(tmp, sizeof tmp, "%s/.config.ini.tmp", dir);
    if (bf_config_write(t->cfg, tmp, err) || bf_commit_file(tmp, p, err)) return -1;
    /* The same text goes into every checkpoint. */
    size_t len = 0;
    FILE *ms = open_memstream(&t->config_text, &len);
    if (!ms || bf_config_write_file(t->cfg, ms, err)) {
        if (ms) fclose(ms);
        return -1;
    }
    fclose(ms);
    return 0;
}

int bf_trainer_agree(trainer *t, int rc, bf_err *err) {
    if (t->world == 1) return rc;
    double v[2] = {rc ? 1.0 : 0.0, rc ? (double)t->rank : 1e9};
    double mx[2] = {v[0], -v[1]};
    bf_dist_allreduce_max_f64(t->dist, mx, 2);
    if (mx[0] == 0.0) return 0;
    if (!rc) bf_fail(err, "rank %d failed (its message is above)", (int)-mx[1]);
    return -1;
}

static void format_eta(char *buf, size_t len, double seconds) {
    long s = seconds > 0 && seconds < 1e9 ? (long)(seconds + 0.5) : 0;
    if (s >= 3600) snprintf(buf, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
}

static void report_eval(const char *what, const bf_eval_counts *e) {
    char heads[256] = "";
    for (int l = 0; l < e->n_layers; l++) {
        size_t k = strlen(heads);
        snprintf(heads + k, sizeof heads - k, "%s%.2f", l ? " " : "", e->n ? e->budget_sum[l] / (double)e->n : 0.0);
    }
    fprintf(stderr, "budgetformer: %s: accuracy %.4f  macro-F1 %.4f  mean heads per layer [%s] of %d  (%lld inputs)\n",
            what, bf_eval_accuracy(e), bf_eval_macro_f1(e), heads, e->n_heads, (long long)e->n);
}

/* Asked before every evaluation batch: a stop request ends the evaluation there (BF_FAULT=slow_eval pauses
 * first, so tests can signal during one). */
static int eval_should_stop(void *ctx) {
    const trainer *t = ctx;
    if (t->fault.eval_delay_ms > 0) {
        struct timespec ts = {.tv_sec = t->fault.eval_delay_ms / 1000, .tv_nsec = t->fault.eval_delay_ms % 1000 * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !bf_train_stop_signal()) {}
    }
    return bf_train_stop_signal() != 0;
}

/* Evaluates a set over the ranks and reports it (rank 0). Returns 1 when a stop request (on any rank)
 * interrupted it: nothing is reported then, and the caller stops as on a request after an update. A periodic
 * evaluation during training is progress, so train --quiet leaves its line out; the final ones are results
 * and always print. */
static int evaluate_set(trainer *t, const bf_dataset *d, const char *what, int periodic) {
    bf_trainer_shard_sync_weights(t); /* every row of the token embedding is read */
    bf_eval_counts e;
    bf_eval_counts_init(&e, &t->model.cfg);
    /* Each rank evaluates a contiguous shard; the counts add up. */
    size_t lo, hi;
    bf_eval_shard(d->n, t->rank, t->world, &lo, &hi);
    double cut[1] = {bf_evaluate_until(&t->model, d, lo, hi, &e, NULL, eval_should_stop, t) ? 1.0 : 0.0};
    bf_dist_allreduce_max_f64(t->dist, cut, 1); /* every rank learns that one was interrupted */
    if (cut[0] > 0.0) {
        if (t->rank == 0)
            bf_info("%s evaluation interrupted by a stop request (at a batch boundary); it is not reported", what);
        bf_eval_counts_free(&e);
        return 1;
    }
    bf_eval_counts_reduce(t->dist, &e);
    if (t->rank == 0 && !(periodic && bf_quiet())) report_eval(what, &e);
    bf_eval_counts_free(&e);
    return 0;
}

/* eps and the budget multiplier lambda of update `step`: the coordinator on rank 0 decides, every rank
 * receives the same values in one broadcast. */
static void coordinated_controls(trainer *t, long step, float *eps, float *lambda) {
    float v[2] = {0.0f, 0.0f};
    if (t->rank == 0) {
        v[0] = bf_coordinator_eps(&t->coord, step);
        v[1] = bf_coordinator_lambda(&t->coord);
    }
    if (t->model.cfg.full_heads) v[0] = 0.0f; /* the baseline has nothing to explore */
    bf_dist_bcast_f32(t->dist, v, 2, 0);
    *eps = v[0];
    *lambda = v[1];
}

/* The stop on request (SIGTERM, SIGUSR1, SIGINT), agreed by every rank after update `step`: the checkpoint of
 * that update (log.h5 first), then BF_EXIT_PREEMPTED. Further signals meanwhile are only counted. */
static int stop_on_request(trainer *t, long step, bf_err *err) {
    int root = t->rank == 0;
    if (root)
        bf_info("stopping after update %ld on %s: writing its checkpoint", step,
                bf_train_stop_signal() ? bf_train_signal_name(bf_train_stop_signal()) : "a signal to another rank");
    if (bf_trainer_save_checkpoint(t, step, err)) {
        char newest[BF_PATH_LEN + 96], msg[BF_ERR_LEN];
        bf_trainer_describe_newest(t, newest, sizeof newest);
        snprintf(msg, sizeof msg, "%s", err->msg);
        return bf_fail(err, "stop on request: the checkpoint of update %ld could not be written (%s); %s", step, msg,
                       newest);
    }
    if (root)
        bf_info("stopped on request after update %ld: %s/checkpoints/step-%08ld.h5 is written; exit status %d: run the "
                "same command with --resume auto to continue", step, t->cfg->run_dir, step, BF_EXIT_PREEMPTED);
    return BF_EXIT_PREEMPTED;
}

/* BF_CHECK_ALLOC=1: the allocations made through bf_xmalloc & co. during update `step` (after the first of
 * this process; saves, evaluation and log writes are not part of it) must be none. Every rank learns the
 * outcome (one extra reduction per step, only in this mode). */
static int check_step_allocations(trainer *t, long step, size_t before, bf_err *err) {
    size_t made = bf_alloc_count() - before;
    int rc = 0;
    if (made)
        rc = bf_fail(err, "BF_CHECK_ALLOC: update %ld allocated %zu time%s through bf_xmalloc & co. (rank %d); the "
                          "training step must allocate nothing after the first: preallocate in build_model",
                     step, made, made > 1 ? "s" : "", t->rank);
    return bf_trainer_agree(t, rc, err);
}

/* The values of one update summed over ranks in its one reduction: named views into the buffer it sends. */
typedef struct {
    double *buf;         /* [L + 4], in this order: */
    double *ce_sum;      /* cross-entropy summed over the global batch */
    double *count;       /* inputs covered (must be the global batch) */
    double *budget_sum;  /* [L] summed budget k of each layer */
    double *stop;        /* ranks that had received a stop signal when the update ended */
    double *exploit_sum; /* summed k/H of the budgets inference would use (the budget controller) */
    double *grad_sq;     /* sharded optimiser only: the squared gradient norm, each rank's part (else NULL) */
    size_t len;
} update_sums;

/* The sharded slot is appended only when sharding, so the unsharded reduction is the one it always was. */
static void update_sums_init(update_sums *r, int L, int sharded) {
    r->len = (size_t)L + 4 + (sharded ? 1 : 0);
    r->buf = bf_xcalloc(r->len, sizeof(double));
    r->ce_sum = r->buf;
    r->count = r->buf + 1;
    r->budget_sum = r->buf + 2;
    r->stop = r->buf + 2 + L;
    r->exploit_sum = r->buf + 3 + L;
    r->grad_sq = sharded ? r->buf + 4 + L : NULL;
}

/* One update as the loop sees it after the reduction: the same numbers on every rank. */
typedef struct {
    double ts, comm0;     /* wall clock and communication seconds when it began */
    float eps, lambda, lr;
    double loss;          /* mean cross-entropy of the global batch */
    double exploit_frac;  /* mean k/H (the budget controller's measure) */
    double norm;          /* global gradient norm */
    double heads;         /* mean heads per layer */
    float *mean_budget;   /* [L] mean budget of each layer */
    int stopped;          /* a stop request on some rank */
    int skip;             /* non-finite loss or norm: the update is skipped */
} update_result;

/* The progress line's sums since the last line. */
typedef struct {
    double t_start, t_mark, comm_mark;
    long mark_step;
    double loss_acc, heads_acc;
    double *heads_acc_l; /* [L] */
    long acc_steps;
} progress;

/* The first info line of the run and room for every log record, so appending in the step allocates nothing. */
static void announce_run(trainer *t, long first, long last) {
    const bf_config *c = t->cfg;
    const bf_model *m = &t->model;
    if (t->rank != 0 || first > last) return;
    char span[96];
    if (t->start_step) snprintf(span, sizeof span, "steps %ld..%ld of %ld", first, last, c->steps);
    else snprintf(span, sizeof span, "%ld steps", c->steps);
    bf_info("training %zu parameters on %zu inputs: %s, global batch %d on %d rank%s, %d heads x %d "
            "layers%s, %d gradient buckets%s", m->n_params, t->train.n, span, c->batch_size, t->world,
            t->world > 1 ? "s" : "", m->cfg.n_heads, m->cfg.n_layers,
            m->cfg.full_heads ? " (full heads)"
            : m->cfg.fixed_budget == BF_FIXED_PER_LAYER ? " (fixed budget per layer, model.layer_budgets)"
            : m->cfg.fixed_budget ? " (fixed budget)" : "",
            bf_grad_sync_buckets(t->sync), t->row_wire ? " exchanged in bf16 (dist.grad_precision)" : "");
    size_t opt = bf_trainer_optimizer_bytes(t);
    if (t->sharded)
        bf_info("optimiser state %.3f MiB per rank (%zu bytes of AdamW moments; sharded 1/%d: parameters "
                "%zu..%zu of %zu on rank 0)", (double)opt / 1048576.0, opt, t->world, t->shard.lo, t->shard.hi,
                m->n_params);
    else
        bf_info("optimiser state %.3f MiB per rank (%zu bytes of AdamW moments; not sharded%s)",
                (double)opt / 1048576.0, opt, c->shard_optimizer ? ": dist.shard_optimizer = 1 on one rank" : "");
    bf_runlog_reserve(&t->log, t->log.n + (size_t)(last - t->start_step),
                      t->log.nh + (size_t)((last - t->start_step) / c->heads_every) + 2);
}

/* Update `step` up to its reduction: controls, forward and backward of the rank's inputs, the gradient
 * allreduce, then one reduction of the update's sums (u gets the global values). */
static void compute_update(trainer *t, long step, step_stats *st, update_sums *r, update_result *u) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int L = m->cfg.n_layers;
    u->ts = bf_wall_seconds();
    u->comm0 = t->dist->comm_seconds;
    coordinated_controls(t, step, &u->eps, &u->lambda);
    u->lr = bf_lr_at(step, c->steps, c->warmup, c->lr, c->lr_min);
    bf_trainer_zero_grad(t);
    /* BF_FAULT=nan_at_step: a NaN gradient (accumulated into by backward, then summed over ranks) and loss
     * on the highest rank only; the reductions carry it to every rank. */
    int poison = t->fault.nan_step && step >= t->fault.nan_step &&
                 step < t->fault.nan_step + t->fault.nan_count && t->rank == t->world - 1;
    if (poison) m->grads[m->tensors[m->n_tensors - 1].offset] = NAN;
    /* Sharded: the last update gathered the token-embedding rows of this batch; after a skipped update (or
     * anything else) it gathered another's: then the whole table. The same decision on every rank. */
    if (t->sharded && t->table_stale && t->gathered_batch != step - 1) bf_trainer_shard_sync_weights(t);
    bf_trainer_forward_backward(t, step - 1, u->eps, u->lambda, st);
    if (poison) st->ce_sum = NAN;
    if (t->fault.alloc_step == step) free(bf_xmalloc(16)); /* BF_FAULT=alloc_in_step: BF_CHECK_ALLOC must see it */
    bf_grad_sync_wait(t->sync); /* gradients now summed over ranks: the global-batch mean */
    bf_trainer_allreduce_token_embedding(t, step - 1);
    *r->ce_sum = st->ce_sum;
    *r->count = st->count;
    for (int l = 0; l < L; l++) r->budget_sum[l] = st->budget_sum[l];
    *r->stop = bf_train_stop_signal() ? 1.0 : 0.0; /* read once here: every rank decides on the same sum */
    *r->exploit_sum = st->exploit_sum;
    if (r->grad_sq) *r->grad_sq = bf_trainer_shard_sum_squares(t);
    bf_dist_allreduce_sum_f64(t->dist, r->buf, r->len);
    u->loss = *r->ce_sum / (double)c->batch_size;
    u->exploit_frac = *r->exploit_sum / ((double)c->batch_size * L);
    u->stopped = *r->stop > 0.0;
    /* Every rank holds the same summed gradient, so every rank computes the same norm and makes the
     * same skip decision below without another message. Sharded, each rank holds the sum of its part only:
     * the parts' squares went into the reduction above, the same total on every rank. */
    u->norm = r->grad_sq ? sqrt(*r->grad_sq) : bf_trainer_grad_norm(t);
    u->heads = 0.0;
    for (int l = 0; l < L; l++) {
        u->mean_budget[l] = (float)(r->budget_sum[l] / (double)c->batch_size);
        u->heads += u->mean_budget[l] / L;
    }
    BF_CHECK((long)*r->count == c->batch_size, "step %ld covered %.0f inputs, not the global batch %d", step,
             *r->count, c->batch_size);
    u->skip = !isfinite(u->loss) || !isfinite(u->norm);
}

/* A non-finite update: counted and skipped; train.max_nonfinite in a row stop the run (-1 with err). */
static int skip_update(trainer *t, long step, bf_err *err) {
    const bf_config *c = t->cfg;
    int root = t->rank == 0;
    t->skipped_total++;
    t->nonfinite_run++;
    if (root)
        bf_warn("step %ld: non-finite loss or gradient norm; the update is skipped (%ld in a row, %ld in all)",
                step, t->nonfinite_run, t->skipped_total);
    if (t->nonfinite_run < c->max_nonfinite) return 0;
    /* Nothing of the diverged state is saved: the newest checkpoint stays the last good one. The log is
     * written up to the last good update. */
    char newest[BF_PATH_LEN + 96];
    bf_trainer_describe_newest(t, newest, sizeof newest);
    if (root) {
        bf_err ignore;
        if (bf_runlog_flush(&t->log, &ignore)) bf_warn("%s", ignore.msg);
    }
    return bf_fail(err, "stopping at step %ld: %ld updates in a row had a non-finite loss or gradient norm "
                        "(train.max_nonfinite = %ld; %ld skipped in all); nothing was saved after them: %s; "
                        "lower train.lr or set train.grad_clip, then continue with --resume auto",
                   step, t->nonfinite_run, c->max_nonfinite, t->skipped_total, newest);
}

/* A finite update: the coordinator observes it, AdamW applies it, the trace, the log and the progress sums
 * record it. */
static void apply_update(trainer *t, long step, const update_result *u, progress *pg) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int L = m->cfg.n_layers, root = t->rank == 0;
    t->nonfinite_run = 0;
    if (root) {
        bf_coordinator_observe(&t->coord, step, u->loss);
        bf_coordinator_observe_budget(&t->coord, step, u->exploit_frac);
    }
    bf_trainer_optimizer_step(t, step, u->lr, bf_clip_scale(u->norm, c->grad_clip));
    if (t->trace) bf_trainer_shard_sync_weights(t); /* the checksum reads every weight (BF_TRACE: every rank) */
    if (t->trace)
        fprintf(t->trace, "%ld %.9g %.9g %016llx\n", step, (double)u->eps, u->loss,
                (unsigned long long)weights_checksum(m));
    double dt = bf_wall_seconds() - u->ts, comm = t->dist->comm_seconds - u->comm0;
    if (root) {
        t->log.skipped_now = t->skipped_total;
        t->log.lambda_now = u->lambda;
        bf_runlog_append(&t->log, step, (float)u->loss, u->lr, u->eps, u->mean_budget, (float)(c->batch_size / dt),
                         (float)u->norm, (float)(comm / dt));
    }
    pg->loss_acc += u->loss;
    pg->heads_acc += u->heads;
    for (int l = 0; l < L; l++) pg->heads_acc_l[l] += u->mean_budget[l];
    pg->acc_steps++;
}

/* The /heads record of an interval that ends at `step` (every heads.every updates and at the last). */
static void record_heads(trainer *t, long step, long last) {
    const bf_config *c = t->cfg;
    if (step % c->heads_every != 0 && step != last) return;
    /* A record off the heads.every grid (a stop at train.stop_at, or the last update when train.steps is not
     * a multiple) ends the interval early only in the log: the counts go on into the checkpoint, so a run
     * resumed from it, or extended to more steps, writes the records of an uninterrupted run (the resume drops
     * this early record again). */
    int early = step % c->heads_every != 0;
    if (early) memcpy(t->heads_keep, t->heads.block, t->heads.block_len * sizeof(int64_t));
    /* One exact integer reduction: the record counts every input of the interval once. */
    bf_dist_allreduce_sum_i64(t->dist, t->heads.block, t->heads.block_len);
    if (t->rank == 0) bf_runlog_append_heads(&t->log, step, &t->heads);
    if (early) memcpy(t->heads.block, t->heads_keep, t->heads.block_len * sizeof(int64_t));
    else bf_headstats_reset(&t->heads);
}

/* The progress line of the updates since the last one (rank 0), then log.h5 written. Returns 0, or -1 when
 * the write failed and checkpoint.on_error stops the run. */
static int report_progress(trainer *t, long step, long last, const update_result *u, progress *pg, bf_err *err) {
    const bf_config *c = t->cfg;
    const bf_model *m = &t->model;
    int L = m->cfg.n_layers, H = m->cfg.n_heads, root = t->rank == 0;
    double now = bf_wall_seconds();
    double sps = (double)(step - pg->mark_step) * c->batch_size / (now - pg->t_mark);
    double comm_frac = (t->dist->comm_seconds - pg->comm_mark) / (now - pg->t_mark);
    char eta[32];
    format_eta(eta, sizeof eta, (double)(last - step) * (now - pg->t_start) / (double)(step - t->start_step));
    char budget_note[96] = "";
    if (c->budget_target > 0.0f && !m->cfg.full_heads && !m->cfg.fixed_budget)
        snprintf(budget_note, sizeof budget_note, " | k/H %.3f (target %.3f, lambda %.3g)", u->exploit_frac,
                 bf_coordinator_budget_target(&t->coord, step), (double)u->lambda);
    char per_layer[64 * 8] = ""; /* mean heads of each layer since the last line */
    for (int l = 0, k = 0; l < L && k < (int)sizeof per_layer - 8; l++)
        k += snprintf(per_layer + k, sizeof per_layer - (size_t)k, "%s%.2f", l ? " " : "",
                      pg->heads_acc_l[l] / pg->acc_steps);
    if (root && !bf_quiet()) /* train --quiet: no progress lines (the results still print) */
        fprintf(stderr, "step %6ld/%ld | loss %.4f | eps %.3f | heads [%s]/%d%s | lr %.2e | %.0f samples/s | "
                        "comm %.0f%% | ETA %s\n",
                step, c->steps, pg->loss_acc / pg->acc_steps, u->eps, per_layer, H, budget_note, u->lr, sps,
                100.0 * comm_frac, eta);
    pg->t_mark = now;
    pg->comm_mark = t->dist->comm_seconds;
    pg->mark_step = step;
    pg->loss_acc = pg->heads_acc = 0.0;
    memset(pg->heads_acc_l, 0, (size_t)L * sizeof *pg->heads_acc_l);
    pg->acc_steps = 0;
    if (bf_trainer_agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err) &&
        bf_trainer_after_write_failure(t, "writing log.h5", err))
        return -1;
    return 0;
}

static double mib(int64_t kb) { return kb < 0 ? -1.0 : (double)kb / 1024.0; }

/* The memory of every rank (memusage.h), gathered and printed by rank 0 after the summary line, and written
 * into log.h5 (/memory, a rewrite of the same records plus it: failing is only a warning, the run's results
 * are complete). Peak RSS counts the shared dataset pages in every rank that read them; PSS and private
 * memory show whether the datasets' rows are held once per node or once per rank. */
static void report_memory(trainer *t) {
    bf_memusage mine;
    bf_memusage_read(&mine);
    int64_t v[4] = {mine.peak_rss_kb, mine.rss_kb, mine.pss_kb, mine.private_kb};
    int64_t *all = t->rank == 0 ? bf_xcalloc((size_t)t->world * 4, sizeof *all) : NULL;
    bf_dist_gather_bytes(t->dist, v, 4, sizeof *v, all);
    if (t->rank == 0) {
        int64_t pss = 0, priv = 0;
        for (int r = 0; r < t->world; r++) {
            const int64_t *a = all + 4 * r;
            bf_info("memory of rank %d: peak RSS %.1f MiB; now RSS %.1f MiB, PSS %.1f MiB, private %.1f MiB", r,
                    mib(a[0]), mib(a[1]), mib(a[2]), mib(a[3]));
            pss = pss < 0 || a[2] < 0 ? -1 : pss + a[2]; /* -1: not known on some rank */
            priv = priv < 0 || a[3] < 0 ? -1 : priv + a[3];
        }
        bf_info("memory of the %d rank%s: PSS %.1f MiB, private %.1f MiB in all; the datasets' rows are %.2f MiB, "
                "held %s", t->world, t->world > 1 ? "s" : "", mib(pss), mib(priv),
                (double)bf_trainer_data_bytes(t) / (1024.0 * 1024.0),
                t->shared[0] ? "once per node (dist.shared_dataset = 1)" : "by every rank");
        bf_runlog_set_memory(&t->log, t->world, all, (int64_t)bf_trainer_data_bytes(t), t->shared[0] != NULL);
        bf_err e;
        if (bf_runlog_flush(&t->log, &e)) bf_warn("the memory report was not written into log.h5: %s", e.msg);
    }
    free(all);
}

/* After the last update of this run: log, final checkpoint, the summary line; then, unless stopped
 * (train.stop_at or a request), the final evaluation. */
static int finish_run(trainer *t, long first, long last, double t_start, bf_err *err) {
    const bf_config *c = t->cfg;
    int root = t->rank == 0;
    if (first > last) {
        /* Resumed at or beyond the end: the checkpoint already holds the final state. */
        if (root)
            bf_info("the checkpoint is at step %ld and this run ends at step %ld (train.%s): nothing to train",
                    t->start_step, last, last < c->steps ? "stop_at" : "steps");
        if (last < c->steps) return 0;
    } else {
        if (root && t->skipped_total)
            bf_warn("%ld steps were skipped for non-finite numbers", t->skipped_total);
        if (bf_trainer_agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err)) return -1;
        if (bf_trainer_save_checkpoint(t, last, err)) return -1;
        long done = last - t->start_step;
        double wall = bf_wall_seconds() - t_start;
        double cpu[1] = {bf_cpu_seconds()};
        bf_dist_allreduce_sum_f64(t->dist, cpu, 1);
        if (root)
            bf_info("trained %ld steps in %.1f s wall, %.1f s CPU over %d rank%s (%.2f ms CPU per input)", done, wall,
                    cpu[0], t->world, t->world > 1 ? "s" : "", 1e3 * cpu[0] / ((double)done * c->batch_size));
        report_memory(t);
    }
    if (last < c->steps) {
        if (root) bf_info("stopped after step %ld as train.stop_at asks (train.steps = %ld)", last, c->steps);
        return 0;
    }
    /* A stop request during the last update's save: the final checkpoint is written, the evaluation is left
     * to the resumed run (which has nothing to train and evaluates). */
    double req[1] = {bf_train_stop_signal() ? 1.0 : 0.0};
    bf_dist_allreduce_max_f64(t->dist, req, 1);
    if (req[0] > 0.0) {
        if (root)
            bf_info("stop requested by %s after the last update: its checkpoint is written; the final evaluation is "
                    "skipped (--resume auto runs it); exit status %d", bf_train_signal_name(bf_train_stop_signal()),
                    BF_EXIT_PREEMPTED);
        return BF_EXIT_PREEMPTED;
    }
    if ((t->have_valid && evaluate_set(t, &t->valid, "valid", 0)) ||
        (t->have_test && evaluate_set(t, &t->test, "test", 0))) {
        if (root)
            bf_info("stopped on request during the final evaluation: the final checkpoint is written; exit status %d "
                    "(--resume auto has nothing to train and runs the evaluation)", BF_EXIT_PREEMPTED);
        return BF_EXIT_PREEMPTED;
    }
    return 0;
}

/* log.h5 rewritten after an update that is not a train.log_every boundary, so that a killed run loses no
 * completed record (FILES.md). Rank 0 alone, no collective and no fsync (a rename survives a kill of the
 * process; the synced writes at train.log_every cover a crash of the machine). A failure here is a warning,
 * once: the synced write that follows applies checkpoint.on_error. */
static void write_log_between_syncs(trainer *t) {
    if (t->rank != 0) return;
    bf_err e;
    if (bf_runlog_write(&t->log, 0, &e) == 0 || t->log_write_warned) return;
    t->log_write_warned = 1;
    bf_warn("%s (log.h5 rewritten between the synced writes of train.log_every; the next synced write applies "
            "checkpoint.on_error if it fails too; not repeated)", e.msg);
}

/* The updates of this run, each: compute, skip or apply, head records, then at a boundary the progress line,
 * validation and the periodic checkpoint. A stop request ends the loop after an update (its checkpoint). */
static int run_loop(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    int L = t->model.cfg.n_layers;
    long last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    step_stats st = {.budget_sum = bf_xcalloc((size_t)L, sizeof(double))};
    update_sums sums;
    update_sums_init(&sums, L, t->sharded);
    update_result u = {.mean_budget = bf_xcalloc((size_t)L, sizeof(float))};
    long first = t->start_step + 1;
    progress pg = {.t_start = bf_wall_seconds(), .mark_step = t->start_step,
                   .heads_acc_l = bf_xcalloc((size_t)L, sizeof(double))};
    pg.t_mark = pg.t_start;
    int rc = 0, stopped = 0;
    long stop_step = 0;
    announce_run(t, first, last);
    for (long step = first; step <= last; step++) {
        t->dist->step = step; /* for the watchdog's message */
        size_t allocs_before = bf_alloc_count();
        compute_update(t, step, &st, &sums, &u);
        stopped = u.stopped;
        if (u.skip && skip_update(t, step, err)) {
            rc = -1;
            break;
        }
        if (!u.skip) apply_update(t, step, &u, &pg);
        if (!u.skip) record_heads(t, step, last);
        /* The step ends here: what follows (log writes, evaluation, checkpoints) may allocate. */
        if (t->check_alloc && step > first && check_step_allocations(t, step, allocs_before, err)) {
            rc = -1;
            break;
        }
        if (stopped) { /* a stop request: the checkpoint of this step is written below */
            stop_step = step;
            break;
        }
        if (u.skip) continue;
        /* At train.steps the final evaluation (finish_run) reports valid: not twice. */
        int eval_now = t->have_valid && c->eval_every > 0 && step % c->eval_every == 0 && step != c->steps;
        if (step % c->log_every == 0 || step == last || eval_now) {
            if (report_progress(t, step, last, &u, &pg, err)) {
                rc = -1;
                break;
            }
        } else if (c->log_write_every > 0 && step % c->log_write_every == 0) {
            write_log_between_syncs(t);
        }
        if (eval_now && evaluate_set(t, &t->valid, "valid", 1)) { /* a stop request during validation */
            stopped = 1;
            stop_step = step;
            break;
        }
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step != last &&
            bf_trainer_save_checkpoint(t, step, err) && bf_trainer_after_write_failure(t, "the periodic checkpoint", err)) {
            rc = -1;
            break;
        }
    }
    free(st.budget_sum);
    free(sums.buf);
    free(u.mean_budget);
    free(pg.heads_acc_l);
    if (rc) return -1;
    if (stopped) return stop_on_request(t, stop_step, err);
    return finish_run(t, first, last, pg.t_start, err);
}

static void trainer_free(trainer *t) {
    bf_trainer_free_data(t);
    bf_model_free(&t->model);
    bf_sampler_free(&t->sampler);
    free(t->adam_m);
    free(t->adam_v);
    free(t->index);
    free(t->all_index);
    free(t->all_epoch);
    free(t->row_seen);
    free(t->rows);
    free(t->row_buf);
    free(t->row_wire);
    free(t->epoch);
    free(t->tokens);
    free(t->lengths);
    free(t->labels);
    free(t->gumbel);
    free(t->k_random);
    free(t->teacher);
    free(t->ce_full);
    free(t->k_star);
    free(t->ce_by_k);
    free(t->micro_starts);
    free(t->heads_keep);
    free(t->config_text);
    bf_trainer_shard_free(t);
    bf_grad_sync_free(t->sync);
    bf_runlog_free(&t->log);
    if (t->trace) fclose(t->trace);
    bf_headstats_free(&t->heads);
}

int bf_train_run_opts(const bf_config *cfg, bf_dist *dist, const bf_train_options *opts, bf_err *err) {
    static const bf_train_options kNew = {.resume = NULL};
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.dist = dist;
    t.rank = dist->rank;
    t.world = dist->world;
    t.opts = opts ? opts : &kNew;
    t.last_saved = t.newest_ckpt = -1;
    err->msg[0] = '\0';
    const char *check = getenv("BF_CHECK_ALLOC");
    t.check_alloc = check && *check && strcmp(check, "0") != 0;
    /* Before the first collective of the run: none waits for ever on a rank that stopped. */
    bf_dist_set_watchdog(dist, cfg->dist_timeout, bf_train_stop_signal);
    bf_dist_set_spin(dist, cfg->spin_us * 1e-6);
    if (bf_train_parse_faults(getenv("BF_FAULT"), &t.fault, err)) return bf_trainer_agree(&t, -1, err);
    if (t.rank == 0 && getenv("BF_FAULT") && *getenv("BF_FAULT"))
        bf_warn("BF_FAULT=%s: fault injection for tests is on", getenv("BF_FAULT"));
    if (cfg->batch_size < t.world) {
        bf_fail(err, "train.batch_size = %d is smaller than the %d ranks: every rank needs at least one input",
                cfg->batch_size, t.world);
        return bf_trainer_agree(&t, -1, err);
    }
    t.lock.fd = -1;
    int rc = bf_trainer_load_data(&t, err);
    if (rc == 0) rc = bf_trainer_agree(&t, check_same_data(&t, err), err);
    if (rc == 0) rc = bf_trainer_agree(&t, bf_trainer_build_model(&t, err), err);
    /* The lock before the first read of run.dir: a second run is refused before it reads or writes anything. */
    if (rc == 0) rc = bf_trainer_agree(&t, t.rank == 0 ? bf_run_dir_lock(&t.lock, cfg->run_dir, err) : 0, err);
    if (rc == 0) rc = bf_trainer_resume_state(&t, err);
    if (rc == 0) rc = bf_trainer_agree(&t, t.rank == 0 ? prepare_run_dir(&t, err) : 0, err);
    if (rc == 0) {
        char path[BF_PATH_LEN + 16];
        snprintf(path, sizeof path, "%s/log.h5", cfg->run_dir);
        bf_runlog_init(&t.log, path, t.model.cfg.n_classes, t.model.cfg.n_layers, t.model.cfg.n_heads);
        rc = bf_trainer_agree(&t, t.rank == 0 ? bf_trainer_resume_log(&t, err) : 0, err);
    }
    if (rc == 0) {
        if (t.resumed) t.newest_ckpt = t.start_step;
        open_trace(&t);
        if (t.check_alloc && t.rank == 0)
            bf_info("BF_CHECK_ALLOC: checking that no update after the first allocates");
        rc = run_loop(&t, err);
        if (t.check_alloc && rc != -1 && t.rank == 0)
            bf_info("BF_CHECK_ALLOC: no update after the first allocated (bf_alloc_count unchanged)");
    }
    trainer_free(&t);
    bf_run_dir_unlock(&t.lock, !t.wrote_run);
    return rc;
}

