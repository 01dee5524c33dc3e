/* train: the training loop (see train.h). */
#include "budgetformer/train.h"

#include <cblas.h>
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/dataset.h"
#include "budgetformer/dist.h"
#include "budgetformer/eval_dist.h"
#include "budgetformer/evaluate.h"
#include "budgetformer/h5io.h"
#include "budgetformer/headstats.h"
#include "budgetformer/model.h"
#include "budgetformer/optim.h"
#include "budgetformer/rng.h"
#include "budgetformer/rundir.h"
#include "budgetformer/runlog.h"
#include "budgetformer/sampler.h"
#include "budgetformer/schedule.h"

/* ---- stop on request: SIGTERM, SIGUSR1, SIGINT, SIGHUP, SIGPIPE --------------------------------------- */

/* The handler only records the signal; the loop reads the flag at the next step boundary, where every rank
 * agrees on it through the step's loss reduction (docs/FAILURES.md). */
static volatile sig_atomic_t g_stop_signal = 0;  /* the first stop signal received; 0 = none */
static volatile sig_atomic_t g_stop_count = 0;   /* stop signals received (capped) */
static int g_announce = 0;                        /* this rank prints the handler's notes (rank 0) */
static volatile sig_atomic_t g_stderr_broken = 0; /* SIGPIPE seen: stderr's reader is gone, say nothing more */

static void say(const char *msg, size_t len) {
    ssize_t r = write(STDERR_FILENO, msg, len); /* async-signal-safe, unlike stdio */
    (void)r;
}
#define SAY(lit) say(lit, sizeof lit - 1)

static void on_stop_signal(int sig) {
    int saved_errno = errno;
    /* A closed stderr pipe (the terminal or `| head` went away): writing a note would raise SIGPIPE again. */
    if (sig == SIGPIPE) g_stderr_broken = 1;
    if (g_stderr_broken) {
        if (g_stop_count < 1000) g_stop_count++;
        if (g_stop_signal == 0) g_stop_signal = sig;
        errno = saved_errno;
        return;
    }
    if (g_stop_count < 1000) g_stop_count++;
    if (g_stop_signal == 0) {
        g_stop_signal = sig;
        if (g_announce)
            SAY("budgetformer: stop requested by a signal: finishing the current update, then a checkpoint and "
                "exit status 75\n");
    } else if (g_announce) {
        SAY("budgetformer: another stop signal: already stopping; it is ignored and the checkpoint being written "
            "is completed (SIGKILL ends at once; the previous checkpoint stays valid)\n");
    }
    errno = saved_errno;
}

int bf_train_install_signal_handlers(int announce) {
    g_announce = announce;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* file writes and MPI's polling carry on; the save is never cut short */
    /* SIGHUP (the terminal or ssh session went away) and SIGPIPE (stderr's reader went away) used to end the
     * run without a checkpoint: they are stop requests like the others. */
    const int sigs[] = {SIGTERM, SIGUSR1, SIGINT, SIGHUP, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) sigaddset(&sa.sa_mask, sigs[i]);
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        if (sigaction(sigs[i], &sa, NULL) != 0) return -1;
    return 0;
}

int bf_train_stop_signal(void) { return (int)g_stop_signal; }

static const char *signal_name(int sig) {
    switch (sig) {
    case SIGTERM: return "SIGTERM";
    case SIGUSR1: return "SIGUSR1";
    case SIGINT: return "SIGINT";
    case SIGHUP: return "SIGHUP";
    case SIGPIPE: return "SIGPIPE (stderr closed)";
    default: return "a signal";
    }
}

/* ---- fault injection for tests: BF_FAULT, read once at the start (docs/FAILURES.md) ---------------- */

typedef struct {
    long nan_step, nan_count;   /* the highest rank's loss and gradient are NaN at updates nan_step.. (+count) */
    bf_ckpt_fault save_fault;   /* armed for one save ... */
    long save_step;             /* ... the save of this step; -1: the first save of this process */
    int save_delay_ms;          /* BF_CKPT_DELAY */
    long alloc_step;            /* one stray allocation inside this update (BF_CHECK_ALLOC catches it) */
    long eval_delay_ms;         /* slow_eval: a pause before every evaluation batch (to signal during one) */
} fault_plan;

static int parse_count(const char *item, const char *text, long lo, long *out, bf_err *err) {
    char *end;
    errno = 0;
    long v = text && *text ? strtol(text, &end, 10) : 0;
    if (!text || !*text || *end || errno || v < lo)
        return bf_fail(err, "BF_FAULT: '%s': expected an integer of at least %ld, got '%s'", item, lo, text ? text : "");
    *out = v;
    return 0;
}

/* Comma-separated items: nan_at_step:N[:COUNT], crash_in_save:PHASE[:STEP], enospc_in_save[:STEP],
 * delay_in_save:MS[:STEP], alloc_in_step:N, slow_eval:MS. */
static int parse_faults(const char *spec, fault_plan *fp, bf_err *err) {
    static const char *const phases[] = {"before_data", "mid_data", "before_rename", "after_rename"};
    static const bf_ckpt_fault phase_fault[] = {BF_CKPT_CRASH_BEFORE_DATA, BF_CKPT_CRASH_MID_DATA,
                                                BF_CKPT_CRASH_BEFORE_RENAME, BF_CKPT_CRASH_AFTER_RENAME};
    memset(fp, 0, sizeof *fp);
    fp->save_step = -1;
    if (!spec || !*spec) return 0;
    char buf[256];
    if (strlen(spec) >= sizeof buf) return bf_fail(err, "BF_FAULT is too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *save_items = NULL;
    for (char *item = strtok_r(buf, ",", &save_items); item; item = strtok_r(NULL, ",", &save_items)) {
        char whole[256];
        snprintf(whole, sizeof whole, "%s", item);
        char *part = NULL, *name = strtok_r(item, ":", &part), *a1 = strtok_r(NULL, ":", &part),
             *a2 = strtok_r(NULL, ":", &part), *extra = strtok_r(NULL, ":", &part);
        int rc = 0;
        if (extra) rc = bf_fail(err, "BF_FAULT: '%s': too many ':' fields", whole);
        else if (!strcmp(name, "nan_at_step")) {
            fp->nan_count = 1;
            rc = parse_count(whole, a1, 1, &fp->nan_step, err) || (a2 && parse_count(whole, a2, 1, &fp->nan_count, err));
        } else if (!strcmp(name, "crash_in_save")) {
            size_t i = 0;
            while (i < 4 && (!a1 || strcmp(a1, phases[i]))) i++;
            if (i == 4)
                rc = bf_fail(err, "BF_FAULT: '%s': the phase must be before_data, mid_data, before_rename or "
                                  "after_rename", whole);
            else {
                fp->save_fault = phase_fault[i];
                rc = a2 && parse_count(whole, a2, 1, &fp->save_step, err);
            }
        } else if (!strcmp(name, "enospc_in_save")) {
            fp->save_fault = BF_CKPT_ENOSPC;
            rc = (a2 ? bf_fail(err, "BF_FAULT: '%s': expected enospc_in_save[:STEP]", whole) : 0) ||
                 (a1 && parse_count(whole, a1, 1, &fp->save_step, err));
        } else if (!strcmp(name, "delay_in_save")) {
            long ms = 0;
            fp->save_fault = BF_CKPT_DELAY;
            rc = parse_count(whole, a1, 0, &ms, err) || (a2 && parse_count(whole, a2, 1, &fp->save_step, err));
            fp->save_delay_ms = (int)(ms > 600000 ? 600000 : ms);
        } else if (!strcmp(name, "slow_eval")) {
            rc = a2 ? bf_fail(err, "BF_FAULT: '%s': expected slow_eval:MS", whole)
                    : parse_count(whole, a1, 0, &fp->eval_delay_ms, err);
            if (fp->eval_delay_ms > 60000) fp->eval_delay_ms = 60000;
        } else if (!strcmp(name, "alloc_in_step")) {
            rc = a2 ? bf_fail(err, "BF_FAULT: '%s': expected alloc_in_step:N", whole)
                    : parse_count(whole, a1, 1, &fp->alloc_step, err);
        } else {
            rc = bf_fail(err, "BF_FAULT: unknown fault '%s' (known: nan_at_step:N[:COUNT], crash_in_save:PHASE[:STEP], "
                              "enospc_in_save[:STEP], delay_in_save:MS[:STEP], alloc_in_step:N, slow_eval:MS)", whole);
        }
        if (rc) return -1;
    }
    return 0;
}

typedef struct {
    const bf_config *cfg;
    bf_dataset train, valid, test;
    int have_valid, have_test;
    bf_model model;
    float *adam_m, *adam_v;
    bf_sampler sampler;
    bf_dist *dist;
    int rank, world;      /* data-parallel position */
    bf_coordinator coord; /* exploration schedule: decided on rank 0, broadcast */
    bf_grad_sync *sync;   /* bucketed gradient allreduce */
    int micro;            /* inputs per forward pass */
    /* step buffers */
    int64_t *index, *epoch;      /* [B] the rank's inputs of the step */
    /* Sparse allreduce of the token-embedding gradient: only the rows the global batch touched. */
    int64_t *all_index, *all_epoch; /* [B] every input of the global batch */
    uint8_t *row_seen;           /* [V] */
    int32_t *rows;               /* [min(V, B T)] touched rows, in first-seen order */
    float *row_buf;              /* [min(V, B T), D] */
    int32_t *tokens, *lengths, *labels; /* [micro*T], [micro], [micro] */
    float *gumbel;               /* [micro*L*H] */
    int32_t *k_random;           /* [micro*L] */
    float *teacher;              /* [micro*C] sandwich: the k = H pass's probabilities, mixed with the labels */
    float *ce_full;              /* [micro] budget supervision: cross-entropy at k = H */
    float *k_star;               /* [micro] budget supervision: the target budget k* */
    float *ce_by_k;              /* [H-1, micro] budget supervision: cross-entropy at k = 1..H-1 */
    int *micro_starts;           /* [B+1] */
    char *config_text;
    bf_runlog log;
    bf_headstats heads;   /* head usage since the last /heads record (this rank's inputs) */
    FILE *trace;          /* BF_TRACE: per-rank step trace for tests (eps, loss, weight checksum) */
    /* resume and checkpoints */
    const bf_train_options *opts;
    int resumed;          /* the state was loaded from a checkpoint */
    long start_step;      /* updates already done when this run started */
    long last_saved;      /* step of the last checkpoint saved by this run (-1: none) */
    long skipped_total;   /* updates skipped for non-finite numbers, since step 1 */
    long nonfinite_run;   /* consecutive ones up to the current step */
    long newest_ckpt;     /* step of the newest checkpoint known valid (resumed from or written); -1: none */
    int saves;            /* checkpoint saves attempted by this process */
    int64_t *heads_keep;  /* [heads.block_len] the counts kept across an early /heads record */
    int check_alloc;      /* BF_CHECK_ALLOC=1: the training step must not allocate after the first */
    fault_plan fault;     /* BF_FAULT */
    bf_run_lock lock;     /* run.dir/.lock, held by rank 0 for the whole run */
    int wrote_run;        /* rank 0 has written into run.dir (else a failed start removes what it created) */
} trainer;

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

static int same_strings(char *const *a, size_t na, char *const *b, size_t nb) {
    if (na != nb) return 0;
    for (size_t i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return 0;
    return 1;
}

/* Valid and test files must come from the same prepare run as the training file. */
static int check_compatible(const bf_dataset *tr, const bf_dataset *d, const char *key, const char *path,
                            bf_err *err) {
    if (d->max_len != tr->max_len || !same_strings(d->vocab, d->vocab_size, tr->vocab, tr->vocab_size) ||
        !same_strings(d->label_names, (size_t)d->n_classes, tr->label_names, (size_t)tr->n_classes))
        return bf_fail(err, "%s = %s: prepared with another vocabulary, max_len or label set than data.train; "
                            "prepare train, valid and test files together", key, path);
    return 0;
}

/* Loads one set; the message starts with the key that named the file (data.train: ...). */
static int load_set(bf_dataset *d, const char *key, const char *path, bf_err *err) {
    static char what[BF_PATH_LEN + 64];
    snprintf(what, sizeof what, "%s = %s", key, path);
    bf_alloc_context(what); /* an allocation that fails names the file */
    int rc = bf_dataset_load(d, path, err);
    bf_alloc_context(NULL);
    if (rc == 0) return 0;
    char msg[BF_ERR_LEN];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return bf_fail(err, "%s: %s", key, msg);
}

static int load_data(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    if (load_set(&t->train, "data.train", c->data_train, err)) return -1;
    if (c->data_valid[0]) {
        if (load_set(&t->valid, "data.valid", c->data_valid, err)) return -1;
        t->have_valid = 1;
        if (check_compatible(&t->train, &t->valid, "data.valid", c->data_valid, err)) return -1;
    }
    if (c->data_test[0]) {
        if (load_set(&t->test, "data.test", c->data_test, err)) return -1;
        t->have_test = 1;
        if (check_compatible(&t->train, &t->test, "data.test", c->data_test, err)) return -1;
    }
    return 0;
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

/* The first of run.dir's config.ini, log.h5, checkpoints/ that exists (written to p), or 0. */
static int run_dir_marker(const char *dir, char *p, size_t len) {
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
    if (!t->opts->resume && run_dir_marker(dir, p, sizeof p))
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

/* Every rank learns whether any rank failed, so no rank continues alone into a collective. The failing
 * rank keeps its own message; the others say which rank failed. */
static int agree(trainer *t, int rc, bf_err *err) {
    if (t->world == 1) return rc;
    double v[2] = {rc ? 1.0 : 0.0, rc ? (double)t->rank : 1e9};
    double mx[2] = {v[0], -v[1]};
    bf_dist_allreduce_max_f64(t->dist, mx, 2);
    if (mx[0] == 0.0) return 0;
    if (!rc) bf_fail(err, "rank %d failed (its message is above)", (int)-mx[1]);
    return -1;
}

static void on_grad_ready(void *ctx, int tensor) {
    trainer *t = ctx;
    /* ranges were registered in backward order: tensor n-1 first; tok_emb (tensor 0) is not among them */
    if (tensor > 0) bf_grad_sync_ready(t->sync, t->model.n_tensors - 1 - tensor);
}

/* The token-embedding gradient is zero outside the rows of the tokens in the global batch, on every rank.
 * Every rank can list those rows itself (the sampler is a pure function of seed and step), so only they
 * are summed: a few hundred rows instead of the whole [V, D] table. */
static void allreduce_token_embedding(trainer *t, long step_no) {
    if (t->world == 1) return;
    bf_model *m = &t->model;
    size_t T = (size_t)m->cfg.max_len, D = (size_t)m->cfg.d_model;
    int n = bf_sampler_shard(&t->sampler, step_no, t->cfg->batch_size, 0, 1, t->all_index, t->all_epoch);
    size_t nrows = 0;
    for (int i = 0; i < n; i++) {
        size_t src = (size_t)t->all_index[i];
        const int32_t *tok = t->train.tokens + src * T;
        for (int k = 0; k < t->train.lengths[src]; k++)
            if (!t->row_seen[tok[k]]) {
                t->row_seen[tok[k]] = 1;
                t->rows[nrows++] = tok[k];
            }
    }
    float *g = m->g.tok_emb;
    for (size_t r = 0; r < nrows; r++) memcpy(t->row_buf + r * D, g + (size_t)t->rows[r] * D, D * sizeof(float));
    bf_dist_allreduce_sum_f32(t->dist, t->row_buf, nrows * D);
    for (size_t r = 0; r < nrows; r++) {
        memcpy(g + (size_t)t->rows[r] * D, t->row_buf + r * D, D * sizeof(float));
        t->row_seen[t->rows[r]] = 0;
    }
}

static void create_grad_sync(trainer *t) {
    bf_model *m = &t->model;
    bf_grad_range *r = bf_xcalloc((size_t)m->n_tensors, sizeof *r);
    /* Every tensor but tok_emb (the last in backward order): that one goes by allreduce_token_embedding. */
    for (int i = 0; i < m->n_tensors - 1; i++) {
        const bf_tensor_info *ti = &m->tensors[m->n_tensors - 1 - i];
        r[i].offset = ti->offset;
        r[i].count = ti->numel;
        /* The embeddings (table entries 0 and 1) are final only when backward ends: a bucket of their
         * own lets the layers' buckets go out while backward still runs. */
        r[i].new_bucket = m->n_tensors - 1 - i == 1;
    }
    t->sync = bf_grad_sync_create(t->dist, m->grads, r, m->n_tensors - 1, (size_t)t->cfg->bucket_kb * 1024);
    size_t V = (size_t)m->cfg.vocab_size, B = (size_t)t->cfg->batch_size, T = (size_t)m->cfg.max_len;
    size_t maxrows = V < B * T ? V : B * T;
    t->all_index = bf_xcalloc(B, sizeof(int64_t));
    t->all_epoch = bf_xcalloc(B, sizeof(int64_t));
    t->row_seen = bf_xcalloc(V, 1);
    t->rows = bf_xcalloc(maxrows, sizeof(int32_t));
    t->row_buf = bf_xcalloc(maxrows * (size_t)m->cfg.d_model, sizeof(float));
    free(r);
}

static int build_model(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    bf_model_config mc = {.vocab_size = (int)t->train.vocab_size, .max_len = t->train.max_len,
                          .d_model = c->d_model, .n_heads = c->n_heads, .n_layers = c->n_layers,
                          .d_ff = c->d_ff, .n_classes = t->train.n_classes, .full_heads = c->full_heads,
                          .fixed_budget = c->fixed_budget, .gate_norm = c->gate_norm};
    char msg[256];
    if (bf_model_config_check(&mc, msg, sizeof msg))
        return bf_fail(err, "model.* settings with data.train = %s give an invalid model: %s", c->data_train, msg);
    int part = (c->batch_size + t->world - 1) / t->world;
    t->micro = c->micro_batch > 0 && c->micro_batch < part ? c->micro_batch : part;
    static char what[256];
    snprintf(what, sizeof what, "the model (model.d_model = %d, n_layers = %d, d_ff = %d, vocabulary %d: weights, "
             "gradients, AdamW moments and activations of a micro-batch of %d)", c->d_model, c->n_layers, c->d_ff,
             mc.vocab_size, t->micro);
    bf_alloc_context(what);
    bf_model_init(&t->model, &mc, t->micro);
    bf_model_init_weights(&t->model, c->seed);
    t->adam_m = bf_xcalloc(t->model.n_params, sizeof(float));
    t->adam_v = bf_xcalloc(t->model.n_params, sizeof(float));
    size_t B = (size_t)c->batch_size, T = (size_t)mc.max_len, L = (size_t)mc.n_layers, H = (size_t)mc.n_heads;
    size_t mb = (size_t)t->micro;
    t->index = bf_xcalloc(B, sizeof(int64_t));
    t->epoch = bf_xcalloc(B, sizeof(int64_t));
    t->tokens = bf_xcalloc(mb * T, sizeof(int32_t));
    t->lengths = bf_xcalloc(mb, sizeof(int32_t));
    t->labels = bf_xcalloc(mb, sizeof(int32_t));
    t->gumbel = bf_xcalloc(mb * L * H, sizeof(float));
    t->k_random = bf_xcalloc(mb * L, sizeof(int32_t));
    t->teacher = bf_xcalloc(mb * (size_t)mc.n_classes, sizeof(float));
    t->ce_full = bf_xcalloc(mb, sizeof(float));
    t->k_star = bf_xcalloc(mb, sizeof(float));
    t->ce_by_k = bf_xcalloc(mb * H, sizeof(float));
    t->micro_starts = bf_xcalloc(B + 2, sizeof(int));
    bf_sampler_init(&t->sampler, t->train.n, c->seed);
    bf_coordinator_init(&t->coord, c);
    bf_headstats_init(&t->heads, mc.n_classes, mc.n_layers, mc.n_heads);
    t->heads_keep = bf_xcalloc(t->heads.block_len, sizeof(int64_t));
    create_grad_sync(t);
    bf_alloc_context(NULL);
    return 0;
}

typedef struct {
    double ce_sum;       /* summed cross-entropy of the rank's inputs (the learned-budget pass) */
    double *budget_sum;  /* [L] summed k */
    double exploit_sum;  /* summed k/H over inputs and layers, k = clamp(round(k^), 1, H): the budget controller */
    int count;           /* inputs */
} step_stats;

/* The passes of one micro-batch (docs/MODEL.md "Training options"): with train.sandwich the k = H pass runs
 * first and gives the targets of the others; with train.budget_supervise forward passes at k = 1..H-1 (no
 * backward) give each input's k*; then the learned-budget pass (its statistics are the step's); then, with
 * the sandwich, a pass at a random k. `last` marks the micro-batch whose final backward may send buckets. */
static double train_micro_batch(trainer *t, const bf_batch *b0, const bf_explore *ex0, long step_no, int last,
                                float ce_scale, float cost_scale) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int n = b0->n, H = m->cfg.n_heads;
    size_t C = (size_t)m->cfg.n_classes;
    int warm = (long)step_no < c->full_warmup; /* step_no is 0-based */
    int learned = !m->cfg.full_heads && !m->cfg.fixed_budget;
    int sandwich = c->sandwich && !warm;
    int supervise = learned && (c->budget_supervise > 0.0f || c->supervise_rel > 0.0f) && !warm;
    bf_batch b = *b0;
    bf_explore ex = *ex0;
    if (sandwich || supervise) {
        bf_explore full = ex;
        full.k_force = H;
        bf_model_forward(m, &b, &full);
        memcpy(t->ce_full, m->ce, (size_t)n * sizeof(float));
        if (sandwich) {
            bf_model_backward(m, &b, &full, ce_scale, 0.0f);
            float a = c->distill;
            for (int i = 0; i < n; i++)
                for (size_t k = 0; k < C; k++)
                    t->teacher[(size_t)i * C + k] =
                        a * m->probs[(size_t)i * C + k] + (1.0f - a) * ((int32_t)k == b.labels[i] ? 1.0f : 0.0f);
            if (a > 0.0f) b.soft_targets = t->teacher;
        }
    }
    if (supervise) {
        /* k* = the smallest k whose cross-entropy is within max(delta, rho (CE_1 - CE_H)) of k = H's (k = H
         * when none is): rho (train.supervise_rel) measures the excess against what the input gains from more
         * heads at all, so inputs that gain little get k* = 1 and those that gain much get more. Gumbel noise
         * stays on (eps > 0), so the head sets are those the learned pass may pick. */
        size_t nn = (size_t)n;
        for (int k = H - 1; k >= 1; k--) {
            bf_explore fk = ex;
            fk.k_force = k;
            bf_model_forward(m, &b, &fk);
            memcpy(t->ce_by_k + (size_t)(k - 1) * nn, m->ce, nn * sizeof(float));
        }
        for (int i = 0; i < n; i++) {
            float gain = t->ce_by_k[i] - t->ce_full[i]; /* CE_1 - CE_H */
            float thr = t->ce_full[i] + fmaxf(c->budget_supervise, c->supervise_rel * gain);
            t->k_star[i] = (float)H;
            for (int k = H - 1; k >= 1; k--)
                if (t->ce_by_k[(size_t)(k - 1) * nn + (size_t)i] <= thr) t->k_star[i] = (float)k;
        }
        ex.k_target = t->k_star;
        ex.sup_scale = c->supervise_weight / (float)(c->batch_size * m->cfg.n_layers);
    }
    if (warm) ex.k_force = H;
    double ce = bf_model_forward(m, &b, &ex);
    m->grad_ready = last && !sandwich ? on_grad_ready : NULL;
    m->grad_ready_ctx = t;
    bf_model_backward(m, &b, &ex, ce_scale, cost_scale);
    m->grad_ready = NULL;
    return ce;
}

/* The sandwich's random-budget pass, after the step's statistics were taken from the learned pass: the same
 * inputs at one k in 1..H-1 drawn from (seed, step), the same on every rank. */
static void train_random_budget(trainer *t, const bf_batch *b0, const bf_explore *ex0, long step_no, int last,
                                float ce_scale) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int H = m->cfg.n_heads;
    bf_batch b = *b0;
    if (c->distill > 0.0f) b.soft_targets = t->teacher;
    bf_explore ex = *ex0;
    double u = bf_rng_uniform(bf_rng_key(c->seed, (uint64_t)step_no, 0, 0, BF_STREAM_SANDWICH, 0));
    int k = 1 + (int)(u * (H - 1));
    ex.k_force = k > H - 1 ? H - 1 : k;
    bf_model_forward(m, &b, &ex);
    m->grad_ready = last ? on_grad_ready : NULL;
    m->grad_ready_ctx = t;
    bf_model_backward(m, &b, &ex, ce_scale, 0.0f);
    m->grad_ready = NULL;
}

/* Forward and backward of the rank's part of global batch `step_no` (0-based), gradients accumulated. */
static void forward_backward(trainer *t, long step_no, float eps, float lambda, step_stats *st) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    size_t T = (size_t)m->cfg.max_len, L = (size_t)m->cfg.n_layers;
    int H = m->cfg.n_heads;
    int count = bf_sampler_shard(&t->sampler, step_no, c->batch_size, t->rank, t->world, t->index, t->epoch);
    int nmicro = count > 0 ? bf_split_micro(count, t->micro, t->micro_starts) : 0;
    float ce_scale = 1.0f / (float)c->batch_size;
    float cost_scale = lambda / ((float)c->batch_size * (float)L);
    bf_explore ex = {.eps = eps, .tau = c->tau, .gumbel = t->gumbel, .k_random = t->k_random};
    int sandwich = c->sandwich && step_no >= c->full_warmup;
    st->ce_sum = 0.0;
    st->exploit_sum = 0.0;
    st->count = count;
    for (size_t l = 0; l < L; l++) st->budget_sum[l] = 0.0;
    for (int mi = 0; mi < nmicro; mi++) {
        int lo = t->micro_starts[mi], n = t->micro_starts[mi + 1] - lo;
        for (int i = 0; i < n; i++) {
            size_t src = (size_t)t->index[lo + i];
            memcpy(t->tokens + (size_t)i * T, t->train.tokens + src * T, T * sizeof(int32_t));
            t->lengths[i] = t->train.lengths[src];
            t->labels[i] = t->train.labels[src];
        }
        bf_explore_draw(&m->cfg, c->seed, t->epoch + lo, t->index + lo, n, eps, t->gumbel, t->k_random);
        bf_batch b = {.n = n, .tokens = t->tokens, .lengths = t->lengths, .labels = t->labels};
        /* Gradients are final only in the last micro-batch's last backward: only then may buckets be sent. */
        int last = mi == nmicro - 1;
        st->ce_sum += train_micro_batch(t, &b, &ex, step_no, last, ce_scale, cost_scale);
        for (int i = 0; i < n; i++)
            for (size_t l = 0; l < L; l++) {
                st->budget_sum[l] += m->budget[(size_t)i * L + l];
                float kh = m->khat[(size_t)i * L + l];
                int ke = (int)floorf(kh + 0.5f);
                ke = ke < 1 ? 1 : ke > H ? H : ke;
                st->exploit_sum += (double)ke / (double)H;
            }
        bf_headstats_add(&t->heads, t->labels, m->budget, m->head_mask, m->khat, m->sel_mass, n);
        if (sandwich) train_random_budget(t, &b, &ex, step_no, last, ce_scale);
    }
}

static double global_grad_norm(const bf_model *m) {
    return sqrt(bf_sum_squares(m->grads, m->n_params));
}

static void optimizer_step(trainer *t, long step, float lr, float grad_scale) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    bf_adamw_hparams hp = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->adam_eps};
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *ti = &m->tensors[i];
        size_t o = ti->offset;
        bf_adamw_update(m->params + o, m->grads + o, t->adam_m + o, t->adam_v + o, ti->numel, step, lr,
                        ti->decay ? c->weight_decay : 0.0f, grad_scale, &hp);
    }
}

static void checkpoint_path(const trainer *t, long step, char *buf, size_t len) {
    snprintf(buf, len, "%s/checkpoints/step-%08ld.h5", t->cfg->run_dir, step);
}

/* Rank 0's part of save_checkpoint: log first (so log.h5 always covers a checkpoint's steps), then the
 * checkpoint, then rotation. */
static int write_checkpoint(trainer *t, long step, const int64_t *headstats, bf_err *err) {
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
                         .adam_m = t->adam_m, .adam_v = t->adam_v, .coord = &t->coord,
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
static int save_checkpoint(trainer *t, long step, bf_err *err) {
    if (step == t->last_saved) return 0;
    t->saves++;
    int64_t *hs = bf_xmalloc(t->heads.block_len * sizeof(int64_t));
    memcpy(hs, t->heads.block, t->heads.block_len * sizeof(int64_t));
    bf_dist_allreduce_sum_i64(t->dist, hs, t->heads.block_len);
    int rc = t->rank == 0 ? write_checkpoint(t, step, hs, err) : 0;
    free(hs);
    rc = agree(t, rc, err);
    if (rc == 0) t->last_saved = t->newest_ckpt = step;
    return rc;
}

/* "the newest checkpoint, step-XXXXXXXX.h5, is intact" or that there is none, for messages. */
static void describe_newest(const trainer *t, char *buf, size_t len) {
    if (t->newest_ckpt < 0) snprintf(buf, len, "no checkpoint of this run exists yet");
    else snprintf(buf, len, "the newest checkpoint, %s/checkpoints/step-%08ld.h5, is intact", t->cfg->run_dir,
                  t->newest_ckpt);
}

/* A periodic save or log write failed (every rank has rc -1): checkpoint.on_error decides. Returns 0 to go
 * on, -1 to stop (err then says why). */
static int after_write_failure(trainer *t, const char *what, bf_err *err) {
    char newest[BF_PATH_LEN + 96];
    describe_newest(t, newest, sizeof newest);
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
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !g_stop_signal) {}
    }
    return g_stop_signal != 0;
}

/* Evaluates a set over the ranks and reports it. Returns 1 when a stop request (on any rank) interrupted it:
 * nothing is reported then, and the caller stops as on a request after an update. */
static int evaluate_set(trainer *t, const bf_dataset *d, const char *what, double *acc) {
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
    if (t->rank == 0) report_eval(what, &e);
    if (acc) *acc = bf_eval_accuracy(&e);
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
                g_stop_signal ? signal_name(g_stop_signal) : "a signal to another rank");
    if (save_checkpoint(t, step, err)) {
        char newest[BF_PATH_LEN + 96], msg[BF_ERR_LEN];
        describe_newest(t, newest, sizeof newest);
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
    return agree(t, rc, err);
}

static int run_loop(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int L = m->cfg.n_layers, H = m->cfg.n_heads, root = t->rank == 0;
    long last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    step_stats st = {.budget_sum = bf_xcalloc((size_t)L, sizeof(double))};
    /* One reduction per update: ce sum, input count, budget sums [L], stop requests (ranks that got a signal),
     * the summed k/H of the budgets inference would use (the budget controller). */
    double *red = bf_xcalloc((size_t)L + 4, sizeof(double));
    float *mean_budget = bf_xcalloc((size_t)L, sizeof(float));
    double *heads_acc_l = bf_xcalloc((size_t)L, sizeof(double)); /* per layer, for the progress line */
    double t_start = bf_wall_seconds(), t_mark = t_start, comm_mark = 0.0;
    long first = t->start_step + 1, mark_step = t->start_step;
    double loss_acc = 0.0, heads_acc = 0.0;
    long acc_steps = 0;
    int rc = 0, stopped = 0;
    long stop_step = 0;
    char span[96];
    if (t->start_step) snprintf(span, sizeof span, "steps %ld..%ld of %ld", first, last, c->steps);
    else snprintf(span, sizeof span, "%ld steps", c->steps);
    if (root && first <= last)
        bf_info("training %zu parameters on %zu inputs: %s, global batch %d on %d rank%s, %d heads x %d "
                "layers%s, %d gradient buckets", m->n_params, t->train.n, span, c->batch_size, t->world,
                t->world > 1 ? "s" : "", H, L,
                m->cfg.full_heads ? " (full heads)" : m->cfg.fixed_budget ? " (fixed budget)" : "",
                bf_grad_sync_buckets(t->sync));
    /* Room for every record of this run, so appending in the step allocates nothing. */
    if (root && first <= last)
        bf_runlog_reserve(&t->log, t->log.n + (size_t)(last - t->start_step),
                          t->log.nh + (size_t)((last - t->start_step) / c->heads_every) + 2);
    for (long step = first; step <= last; step++) {
        t->dist->step = step; /* for the watchdog's message */
        size_t allocs_before = bf_alloc_count();
        double ts = bf_wall_seconds(), comm0 = t->dist->comm_seconds;
        float eps, lambda;
        coordinated_controls(t, step, &eps, &lambda);
        float lr = bf_lr_at(step, c->steps, c->warmup, c->lr, c->lr_min);
        bf_model_zero_grad(m);
        /* BF_FAULT=nan_at_step: a NaN gradient (accumulated into by backward, then summed over ranks) and loss
         * on the highest rank only; the reductions carry it to every rank. */
        int poison = t->fault.nan_step && step >= t->fault.nan_step &&
                     step < t->fault.nan_step + t->fault.nan_count && t->rank == t->world - 1;
        if (poison) m->grads[m->tensors[m->n_tensors - 1].offset] = NAN;
        forward_backward(t, step - 1, eps, lambda, &st);
        if (poison) st.ce_sum = NAN;
        if (t->fault.alloc_step == step) free(bf_xmalloc(16)); /* BF_FAULT=alloc_in_step: BF_CHECK_ALLOC must see it */
        bf_grad_sync_wait(t->sync); /* gradients now summed over ranks: the global-batch mean */
        allreduce_token_embedding(t, step - 1);
        red[0] = st.ce_sum;
        red[1] = st.count;
        for (int l = 0; l < L; l++) red[2 + l] = st.budget_sum[l];
        red[L + 2] = g_stop_signal ? 1.0 : 0.0; /* read once here: every rank decides on the same sum */
        red[L + 3] = st.exploit_sum;
        bf_dist_allreduce_sum_f64(t->dist, red, (size_t)L + 4);
        double loss = red[0] / (double)c->batch_size;
        double exploit_frac = red[L + 3] / ((double)c->batch_size * L);
        stopped = red[L + 2] > 0.0;
        /* Every rank holds the same summed gradient, so every rank computes the same norm and makes the
         * same skip decision below without another message. */
        double norm = global_grad_norm(m);
        double heads = 0.0;
        for (int l = 0; l < L; l++) {
            mean_budget[l] = (float)(red[2 + l] / (double)c->batch_size);
            heads += mean_budget[l] / L;
        }
        BF_CHECK((long)red[1] == c->batch_size, "step %ld covered %.0f inputs, not the global batch %d", step,
                 red[1], c->batch_size);
        int skip = !isfinite(loss) || !isfinite(norm);
        if (skip) {
            t->skipped_total++;
            t->nonfinite_run++;
            if (root)
                bf_warn("step %ld: non-finite loss or gradient norm; the update is skipped (%ld in a row, %ld in all)",
                        step, t->nonfinite_run, t->skipped_total);
            if (t->nonfinite_run >= c->max_nonfinite) {
                /* Nothing of the diverged state is saved: the newest checkpoint stays the last good one. The
                 * log is written up to the last good update. */
                char newest[BF_PATH_LEN + 96];
                describe_newest(t, newest, sizeof newest);
                if (root) {
                    bf_err ignore;
                    if (bf_runlog_flush(&t->log, &ignore)) bf_warn("%s", ignore.msg);
                }
                rc = bf_fail(err, "stopping at step %ld: %ld updates in a row had a non-finite loss or gradient norm "
                                  "(train.max_nonfinite = %ld; %ld skipped in all); nothing was saved after them: %s; "
                                  "lower train.lr or set train.grad_clip, then continue with --resume auto",
                             step, t->nonfinite_run, c->max_nonfinite, t->skipped_total, newest);
                break;
            }
        } else {
            t->nonfinite_run = 0;
            if (root) {
                bf_coordinator_observe(&t->coord, step, loss);
                bf_coordinator_observe_budget(&t->coord, step, exploit_frac);
            }
            optimizer_step(t, step, lr, bf_clip_scale(norm, c->grad_clip));
            if (t->trace)
                fprintf(t->trace, "%ld %.9g %.9g %016llx\n", step, (double)eps, loss,
                        (unsigned long long)weights_checksum(m));
            double dt = bf_wall_seconds() - ts, comm = t->dist->comm_seconds - comm0;
            if (root) {
                t->log.skipped_now = t->skipped_total;
                t->log.lambda_now = lambda;
                bf_runlog_append(&t->log, step, (float)loss, lr, eps, mean_budget, (float)(c->batch_size / dt),
                                 (float)norm, (float)(comm / dt));
            }
            loss_acc += loss;
            heads_acc += heads;
            for (int l = 0; l < L; l++) heads_acc_l[l] += mean_budget[l];
            acc_steps++;
        }
        if (!skip && (step % c->heads_every == 0 || step == last)) {
            /* A stop before train.steps ends the interval early only in the log: the counts go on into the
             * checkpoint, so a resumed run's records are those of an uninterrupted run (the resume drops
             * this early record again). */
            int early = step % c->heads_every != 0 && step < c->steps;
            if (early) memcpy(t->heads_keep, t->heads.block, t->heads.block_len * sizeof(int64_t));
            /* One exact integer reduction: the record counts every input of the interval once. */
            bf_dist_allreduce_sum_i64(t->dist, t->heads.block, t->heads.block_len);
            if (root) bf_runlog_append_heads(&t->log, step, &t->heads);
            if (early) memcpy(t->heads.block, t->heads_keep, t->heads.block_len * sizeof(int64_t));
            else bf_headstats_reset(&t->heads);
        }
        /* The step ends here: what follows (log writes, evaluation, checkpoints) may allocate. */
        if (t->check_alloc && step > first && check_step_allocations(t, step, allocs_before, err)) {
            rc = -1;
            break;
        }
        if (stopped) { /* a stop request: the checkpoint of this step is written below */
            stop_step = step;
            break;
        }
        if (skip) continue;
        int eval_now = t->have_valid && c->eval_every > 0 && step % c->eval_every == 0;
        if (step % c->log_every == 0 || step == last || eval_now) {
            double now = bf_wall_seconds();
            double sps = (double)(step - mark_step) * c->batch_size / (now - t_mark);
            double comm_frac = (t->dist->comm_seconds - comm_mark) / (now - t_mark);
            char eta[32];
            format_eta(eta, sizeof eta, (double)(last - step) * (now - t_start) / (double)(step - t->start_step));
            char budget_note[96] = "";
            if (c->budget_target > 0.0f && !m->cfg.full_heads && !m->cfg.fixed_budget)
                snprintf(budget_note, sizeof budget_note, " | k/H %.3f (target %.3f, lambda %.3g)", exploit_frac,
                         bf_coordinator_budget_target(&t->coord, step), (double)lambda);
            char per_layer[64 * 8] = ""; /* mean heads of each layer since the last line */
            for (int l = 0, k = 0; l < L && k < (int)sizeof per_layer - 8; l++)
                k += snprintf(per_layer + k, sizeof per_layer - (size_t)k, "%s%.2f", l ? " " : "", heads_acc_l[l] / acc_steps);
            if (root)
                fprintf(stderr, "step %6ld/%ld | loss %.4f | eps %.3f | heads [%s]/%d%s | lr %.2e | %.0f samples/s | "
                                "comm %.0f%% | ETA %s\n",
                        step, c->steps, loss_acc / acc_steps, eps, per_layer, H, budget_note, lr, sps,
                        100.0 * comm_frac, eta);
            t_mark = now;
            comm_mark = t->dist->comm_seconds;
            mark_step = step;
            loss_acc = heads_acc = 0.0;
            memset(heads_acc_l, 0, (size_t)L * sizeof *heads_acc_l);
            acc_steps = 0;
            if (agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err) &&
                after_write_failure(t, "writing log.h5", err)) {
                rc = -1;
                break;
            }
        }
        if (eval_now && evaluate_set(t, &t->valid, "valid", NULL)) { /* a stop request during validation */
            stopped = 1;
            stop_step = step;
            break;
        }
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step != last &&
            save_checkpoint(t, step, err) && after_write_failure(t, "the periodic checkpoint", err)) {
            rc = -1;
            break;
        }
    }
    free(st.budget_sum);
    free(red);
    free(mean_budget);
    free(heads_acc_l);
    if (rc) return -1;
    if (stopped) return stop_on_request(t, stop_step, err);
    if (first > last) {
        /* Resumed at or beyond the end: the checkpoint already holds the final state. */
        if (root)
            bf_info("the checkpoint is at step %ld and this run ends at step %ld (train.%s): nothing to train",
                    t->start_step, last, last < c->steps ? "stop_at" : "steps");
        if (last < c->steps) return 0;
    } else {
        if (root && t->skipped_total)
            bf_warn("%ld steps were skipped for non-finite numbers", t->skipped_total);
        if (agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err)) return -1;
        if (save_checkpoint(t, last, err)) return -1;
        long done = last - t->start_step;
        double wall = bf_wall_seconds() - t_start;
        double cpu[1] = {bf_cpu_seconds()};
        bf_dist_allreduce_sum_f64(t->dist, cpu, 1);
        if (root)
            bf_info("trained %ld steps in %.1f s wall, %.1f s CPU over %d rank%s (%.2f ms CPU per input)", done, wall,
                    cpu[0], t->world, t->world > 1 ? "s" : "", 1e3 * cpu[0] / ((double)done * c->batch_size));
    }
    if (last < c->steps) {
        if (root) bf_info("stopped after step %ld as train.stop_at asks (train.steps = %ld)", last, c->steps);
        return 0;
    }
    /* A stop request during the last update's save: the final checkpoint is written, the evaluation is left
     * to the resumed run (which has nothing to train and evaluates). */
    double req[1] = {g_stop_signal ? 1.0 : 0.0};
    bf_dist_allreduce_max_f64(t->dist, req, 1);
    if (req[0] > 0.0) {
        if (root)
            bf_info("stop requested by %s after the last update: its checkpoint is written; the final evaluation is "
                    "skipped (--resume auto runs it); exit status %d", signal_name(g_stop_signal), BF_EXIT_PREEMPTED);
        return BF_EXIT_PREEMPTED;
    }
    if ((t->have_valid && evaluate_set(t, &t->valid, "valid", NULL)) ||
        (t->have_test && evaluate_set(t, &t->test, "test", NULL))) {
        if (root)
            bf_info("stopped on request during the final evaluation: the final checkpoint is written; exit status %d "
                    "(--resume auto has nothing to train and runs the evaluation)", BF_EXIT_PREEMPTED);
        return BF_EXIT_PREEMPTED;
    }
    return 0;
}

/* ---- resume ------------------------------------------------------------------------------------- */

/* Keys a resumed run may change without a word beyond an info line: they do not alter the model, and the
 * updates they touch are the same (run length, stop point, logging, evaluation, checkpoints, transport).
 * model.* keys are refused; every other change (learning rate, seed, batch, exploration, ...) is allowed
 * with a warning that the continuation differs from an uninterrupted run. */
static const char *const kFreeOnResume[] = {
    "train.steps", "train.stop_at", "train.log_every", "train.eval_every", "train.micro_batch", "data.train",
    "data.valid", "data.test", "run.dir", "checkpoint.every", "checkpoint.keep", "heads.every", "dist.bucket_kb",
    "dist.timeout", "train.max_nonfinite", "checkpoint.on_error"};

/* "section.key" -> value lines of a configuration written by bf_config_write_file. */
typedef struct {
    size_t n;
    char (*key)[96];
    char **value;
} kv_list;

static void kv_parse(kv_list *kv, char *text) {
    memset(kv, 0, sizeof *kv);
    size_t cap = 0;
    char section[64] = "";
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == ';' || line[0] == '\0') continue;
        if (line[0] == '[') {
            char *e = strchr(line, ']');
            if (e) snprintf(section, sizeof section, "%.*s", (int)(e - line - 1), line + 1);
            continue;
        }
        char *eq = strstr(line, " =");
        if (!eq) continue;
        if (kv->n == cap) {
            cap = cap ? 2 * cap : 64;
            kv->key = bf_xrealloc(kv->key, cap * sizeof *kv->key);
            kv->value = bf_xrealloc(kv->value, cap * sizeof *kv->value);
        }
        snprintf(kv->key[kv->n], sizeof kv->key[kv->n], "%s.%.*s", section, (int)(eq - line), line);
        char *v = eq + 2;
        while (*v == ' ') v++;
        kv->value[kv->n++] = v;
    }
}

static void kv_free(kv_list *kv) {
    free(kv->key);
    free(kv->value);
}

static char *config_to_text(const bf_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *ms = open_memstream(&text, &len);
    BF_CHECK(ms != NULL, "open_memstream failed");
    bf_err ignore;
    if (bf_config_write_file(c, ms, &ignore)) len = 0;
    fclose(ms);
    if (len == 0) text[0] = '\0';
    return text;
}

/* Compares this run's configuration with the one stored in the checkpoint. Returns 0 (changes reported),
 * or -1 for a change that alters the model. */
static int compare_configs(const trainer *t, const bf_config *old, const char *path, bf_err *err) {
    char *a = config_to_text(old), *b = config_to_text(t->cfg);
    kv_list ka, kb;
    kv_parse(&ka, a);
    kv_parse(&kb, b);
    int rc = 0;
    for (size_t i = 0; i < kb.n && rc == 0; i++) {
        const char *was = NULL;
        for (size_t j = 0; j < ka.n; j++)
            if (!strcmp(ka.key[j], kb.key[i])) was = ka.value[j];
        if (!was || !strcmp(was, kb.value[i])) continue;
        int free_key = 0;
        for (size_t k = 0; k < sizeof kFreeOnResume / sizeof *kFreeOnResume; k++)
            free_key |= !strcmp(kFreeOnResume[k], kb.key[i]);
        if (!strncmp(kb.key[i], "model.", 6))
            rc = bf_fail(err, "%s = %s in this configuration but %s in checkpoint %s: resuming cannot change the "
                              "model (set %s = %s, or train a new model in another run.dir)", kb.key[i],
                         kb.value[i], was, path, kb.key[i], was);
        else if (free_key)
            bf_info("resume: %s = %s (the checkpoint's run had %s)", kb.key[i], kb.value[i], was);
        else
            bf_warn("resume: %s = %s here but %s in the checkpoint: the continuation will differ from an "
                    "uninterrupted run", kb.key[i], kb.value[i], was);
    }
    kv_free(&ka);
    kv_free(&kb);
    free(a);
    free(b);
    return rc;
}

static const char *model_key(int i) {
    static const char *const keys[] = {"data.train", "data.train", "model.d_model", "model.n_heads",
                                       "model.n_layers", "model.d_ff", "data.train", "model.full_heads",
                                       "model.fixed_budget", "model.gate_norm"};
    return keys[i];
}

static int model_value(const bf_model_config *mc, int i) {
    const int v[] = {mc->vocab_size, mc->max_len, mc->d_model, mc->n_heads, mc->n_layers,
                     mc->d_ff, mc->n_classes, mc->full_heads, mc->fixed_budget, mc->gate_norm};
    return v[i];
}

/* The checkpoint's model against the one this configuration and data.train make. */
static int compare_models(const trainer *t, const bf_model_config *fc, const char *old_train, const char *path,
                          bf_err *err) {
    static const char *const what[] = {"vocab_size", "max_len", "d_model", "n_heads", "n_layers",
                                       "d_ff", "n_classes", "full_heads", "fixed_budget", "gate_norm"};
    for (int i = 0; i < 10; i++) {
        int have = model_value(&t->model.cfg, i), was = model_value(fc, i);
        if (have == was) continue;
        if (!strcmp(model_key(i), "data.train"))
            return bf_fail(err, "data.train = %s gives %s %d but checkpoint %s has %s %d (trained on data.train = "
                                "%s): resuming cannot change the vocabulary, max_len or classes",
                           t->cfg->data_train, what[i], have, path, what[i], was, old_train);
        return bf_fail(err, "%s = %d in this configuration but %d in checkpoint %s: resuming cannot change the "
                            "model (set %s = %d, or train a new model in another run.dir)",
                       model_key(i), have, was, path, model_key(i), was);
    }
    return 0;
}

static int compare_names(const trainer *t, const bf_ckpt_file *cf, const char *old_train, bf_err *err) {
    char **v = NULL, **l = NULL;
    size_t nv = 0, nl = 0;
    int rc = bf_h5_read_strings(cf->file, "/vocab", &v, &nv, err);
    if (rc == 0) rc = bf_h5_read_strings(cf->file, "/label_names", &l, &nl, err);
    if (rc == 0 && (!same_strings(v, nv, t->train.vocab, t->train.vocab_size) ||
                    !same_strings(l, nl, t->train.label_names, (size_t)t->train.n_classes)))
        rc = bf_fail(err, "data.train = %s has another vocabulary or label set than checkpoint %s (trained on "
                          "data.train = %s): resuming cannot change them", t->cfg->data_train, cf->path, old_train);
    bf_h5_free_strings(v, nv);
    bf_h5_free_strings(l, nl);
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
    if (!same_dir(dirname(dir), own) && run_dir_marker(t->cfg->run_dir, marker, sizeof marker))
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

/* Rank 0 chooses and loads the checkpoint; then every rank gets the same state. */
static int resume_state(trainer *t, bf_err *err) {
    const char *r = t->opts->resume;
    int rc = 0;
    if (t->rank == 0 && r) rc = !strcmp(r, "auto") ? resume_auto(t, err) : resume_file(t, r, err);
    if (agree(t, rc, err)) return -1;
    int64_t hdr[4] = {t->resumed, t->start_step, t->skipped_total, t->nonfinite_run};
    bf_dist_bcast_i64(t->dist, hdr, 4, 0);
    t->resumed = (int)hdr[0];
    t->start_step = (long)hdr[1];
    t->skipped_total = (long)hdr[2];
    t->nonfinite_run = (long)hdr[3];
    if (t->resumed) {
        /* Bit-exact copies: every replica starts from the same bytes. */
        bf_dist_bcast_f32(t->dist, t->model.params, t->model.n_params, 0);
        bf_dist_bcast_f32(t->dist, t->adam_m, t->model.n_params, 0);
        bf_dist_bcast_f32(t->dist, t->adam_v, t->model.n_params, 0);
    }
    return 0;
}

/* Rank 0: the log of the steps before the checkpoint, read back from run.dir/log.h5. */
static int resume_log(trainer *t, bf_err *err) {
    if (!t->resumed) return 0;
    int rc = bf_runlog_load(&t->log, t->start_step, err);
    if (rc < 0) return -1;
    int64_t have = t->log.n ? t->log.step[t->log.n - 1] : 0;
    /* A /heads record written early at the checkpoint's step because the run stopped there (train.stop_at)
     * is dropped: its counts came back from the checkpoint and go into the next regular record. */
    const bf_config *c = t->cfg;
    long last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    if (t->log.nh && t->log.h_step[t->log.nh - 1] == t->start_step && t->start_step % c->heads_every != 0 &&
        t->start_step < last)
        t->log.nh--;
    if (rc == 1)
        bf_warn("resume: %s does not exist: the new log starts at step %ld", t->log.path, t->start_step + 1);
    else if (have < t->start_step)
        bf_warn("resume: %s ends at step %lld: the records of steps %lld..%ld are missing", t->log.path,
                (long long)have, (long long)have + 1, t->start_step);
    return 0;
}

static void trainer_free(trainer *t) {
    bf_dataset_free(&t->train);
    if (t->have_valid) bf_dataset_free(&t->valid);
    if (t->have_test) bf_dataset_free(&t->test);
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
    if (parse_faults(getenv("BF_FAULT"), &t.fault, err)) return agree(&t, -1, err);
    if (t.rank == 0 && getenv("BF_FAULT") && *getenv("BF_FAULT"))
        bf_warn("BF_FAULT=%s: fault injection for tests is on", getenv("BF_FAULT"));
    if (cfg->batch_size < t.world) {
        bf_fail(err, "train.batch_size = %d is smaller than the %d ranks: every rank needs at least one input",
                cfg->batch_size, t.world);
        return agree(&t, -1, err);
    }
    t.lock.fd = -1;
    int rc = agree(&t, load_data(&t, err), err);
    if (rc == 0) rc = agree(&t, check_same_data(&t, err), err);
    if (rc == 0) rc = agree(&t, build_model(&t, err), err);
    /* The lock before the first read of run.dir: a second run is refused before it reads or writes anything. */
    if (rc == 0) rc = agree(&t, t.rank == 0 ? bf_run_dir_lock(&t.lock, cfg->run_dir, err) : 0, err);
    if (rc == 0) rc = resume_state(&t, err);
    if (rc == 0) rc = agree(&t, t.rank == 0 ? prepare_run_dir(&t, err) : 0, err);
    if (rc == 0) {
        char path[BF_PATH_LEN + 16];
        snprintf(path, sizeof path, "%s/log.h5", cfg->run_dir);
        bf_runlog_init(&t.log, path, t.model.cfg.n_classes, t.model.cfg.n_layers, t.model.cfg.n_heads);
        rc = agree(&t, t.rank == 0 ? resume_log(&t, err) : 0, err);
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

int bf_train_run(const bf_config *cfg, bf_dist *dist, bf_err *err) { return bf_train_run_opts(cfg, dist, NULL, err); }
