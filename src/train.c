/* train: the training loop (see train.h). */
#include "budgetformer/train.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/dataset.h"
#include "budgetformer/dist.h"
#include "budgetformer/eval_dist.h"
#include "budgetformer/evaluate.h"
#include "budgetformer/headstats.h"
#include "budgetformer/model.h"
#include "budgetformer/optim.h"
#include "budgetformer/runlog.h"
#include "budgetformer/sampler.h"
#include "budgetformer/schedule.h"

/* Consecutive non-finite steps after which the run stops (the last good checkpoint stays intact). */
#define MAX_NONFINITE_IN_A_ROW 10

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
    int32_t *tokens, *lengths, *labels; /* [micro*T], [micro], [micro] */
    float *gumbel;               /* [micro*L*H] */
    int32_t *k_random;           /* [micro*L] */
    int *micro_starts;           /* [B+1] */
    char *config_text;
    bf_runlog log;
    bf_headstats heads;   /* head usage since the last /heads record (this rank's inputs) */
    FILE *trace;          /* BF_TRACE: per-rank step trace for tests (eps, loss, weight checksum) */
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

static int load_data(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    if (bf_dataset_load(&t->train, c->data_train, err)) return -1;
    if (c->data_valid[0]) {
        if (bf_dataset_load(&t->valid, c->data_valid, err)) return -1;
        t->have_valid = 1;
        if (check_compatible(&t->train, &t->valid, "data.valid", c->data_valid, err)) return -1;
    }
    if (c->data_test[0]) {
        if (bf_dataset_load(&t->test, c->data_test, err)) return -1;
        t->have_test = 1;
        if (check_compatible(&t->train, &t->test, "data.test", c->data_test, err)) return -1;
    }
    return 0;
}

static int prepare_run_dir(trainer *t, bf_err *err) {
    const char *dir = t->cfg->run_dir;
    char p[BF_PATH_LEN + 64];
    const char *markers[] = {"config.ini", "log.h5", "checkpoints"};
    for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, markers[i]);
        if (bf_path_exists(p))
            return bf_fail(err, "run.dir = %s already holds a run (%s exists); choose another run.dir or remove it",
                           dir, p);
    }
    snprintf(p, sizeof p, "%s/checkpoints", dir);
    if (bf_mkdir_p(p, err)) return -1;
    snprintf(p, sizeof p, "%s/config.ini", dir);
    if (bf_config_write(t->cfg, p, err)) return -1;
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
    /* ranges were registered in backward order: tensor n-1 first */
    bf_grad_sync_ready(t->sync, t->model.n_tensors - 1 - tensor);
}

static void create_grad_sync(trainer *t) {
    bf_model *m = &t->model;
    bf_grad_range *r = bf_xcalloc((size_t)m->n_tensors, sizeof *r);
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *ti = &m->tensors[m->n_tensors - 1 - i];
        r[i].offset = ti->offset;
        r[i].count = ti->numel;
    }
    t->sync = bf_grad_sync_create(t->dist, m->grads, r, m->n_tensors, (size_t)t->cfg->bucket_kb * 1024);
    free(r);
}

static int build_model(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    bf_model_config mc = {.vocab_size = (int)t->train.vocab_size, .max_len = t->train.max_len,
                          .d_model = c->d_model, .n_heads = c->n_heads, .n_layers = c->n_layers,
                          .d_ff = c->d_ff, .n_classes = t->train.n_classes, .full_heads = c->full_heads,
                          .fixed_budget = c->fixed_budget};
    char msg[256];
    if (bf_model_config_check(&mc, msg, sizeof msg))
        return bf_fail(err, "model.* settings with data.train = %s give an invalid model: %s", c->data_train, msg);
    int part = (c->batch_size + t->world - 1) / t->world;
    t->micro = c->micro_batch > 0 && c->micro_batch < part ? c->micro_batch : part;
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
    t->micro_starts = bf_xcalloc(B + 2, sizeof(int));
    bf_sampler_init(&t->sampler, t->train.n, c->seed);
    bf_coordinator_init(&t->coord, c);
    create_grad_sync(t);
    return 0;
}

typedef struct {
    double ce_sum;       /* summed cross-entropy of the rank's inputs */
    double *budget_sum;  /* [L] summed k */
    int count;           /* inputs */
} step_stats;

/* Forward and backward of the rank's part of global batch `step_no` (0-based), gradients accumulated. */
static void forward_backward(trainer *t, long step_no, float eps, step_stats *st) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    size_t T = (size_t)m->cfg.max_len, L = (size_t)m->cfg.n_layers;
    int count = bf_sampler_shard(&t->sampler, step_no, c->batch_size, t->rank, t->world, t->index, t->epoch);
    int nmicro = count > 0 ? bf_split_micro(count, t->micro, t->micro_starts) : 0;
    float ce_scale = 1.0f / (float)c->batch_size;
    float cost_scale = c->budget_cost / ((float)c->batch_size * (float)L);
    bf_explore ex = {.eps = eps, .tau = c->tau, .gumbel = t->gumbel, .k_random = t->k_random};
    st->ce_sum = 0.0;
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
        st->ce_sum += bf_model_forward(m, &b, &ex);
        /* Gradients are final only in the last micro-batch's backward: only then may buckets be sent. */
        m->grad_ready = mi == nmicro - 1 ? on_grad_ready : NULL;
        m->grad_ready_ctx = t;
        bf_model_backward(m, &b, &ex, ce_scale, cost_scale);
        m->grad_ready = NULL;
        for (int i = 0; i < n; i++)
            for (size_t l = 0; l < L; l++) st->budget_sum[l] += m->budget[(size_t)i * L + l];
        bf_headstats_add(&t->heads, t->labels, m->budget, m->head_mask, n);
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

static int save_checkpoint(trainer *t, long step, bf_err *err) {
    if (t->rank != 0) return 0;
    char path[BF_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/checkpoints/step-%08ld.h5", t->cfg->run_dir, step);
    bf_ckpt_meta meta = {.step = step, .seed = t->cfg->seed, .world_size = t->world,
                         .adam_m = t->adam_m, .adam_v = t->adam_v, .config_text = t->config_text,
                         .vocab = (const char *const *)t->train.vocab, .vocab_size = t->train.vocab_size,
                         .label_names = (const char *const *)t->train.label_names,
                         .n_classes = (size_t)t->train.n_classes};
    if (bf_checkpoint_save(path, &t->model, &meta, err)) return -1;
    /* Keep the newest checkpoint.keep files. */
    long keep = t->cfg->checkpoint_keep, every = t->cfg->checkpoint_every;
    if (every > 0) {
        long old = step - keep * every;
        if (old > 0 && old % every == 0) {
            snprintf(path, sizeof path, "%s/checkpoints/step-%08ld.h5", t->cfg->run_dir, old);
            remove(path);
        }
    }
    bf_info("saved checkpoint %s/checkpoints/step-%08ld.h5", t->cfg->run_dir, step);
    return 0;
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

static void evaluate_set(trainer *t, const bf_dataset *d, const char *what, double *acc) {
    bf_eval_counts e;
    bf_eval_counts_init(&e, &t->model.cfg);
    /* Each rank evaluates a contiguous shard; the counts add up. */
    size_t lo, hi;
    bf_eval_shard(d->n, t->rank, t->world, &lo, &hi);
    bf_evaluate(&t->model, d, lo, hi, &e, NULL);
    bf_eval_counts_reduce(t->dist, &e);
    if (t->rank == 0) report_eval(what, &e);
    if (acc) *acc = bf_eval_accuracy(&e);
    bf_eval_counts_free(&e);
}

/* eps of update `step`: the coordinator on rank 0 decides, every rank receives the same value. */
static float coordinated_eps(trainer *t, long step) {
    float eps = t->rank == 0 ? bf_coordinator_eps(&t->coord, step) : 0.0f;
    if (t->model.cfg.full_heads) eps = 0.0f; /* the baseline has nothing to explore */
    bf_dist_bcast_f32(t->dist, &eps, 1, 0);
    return eps;
}

static int run_loop(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    int L = m->cfg.n_layers, H = m->cfg.n_heads, root = t->rank == 0;
    long last = c->stop_at > 0 && c->stop_at < c->steps ? c->stop_at : c->steps;
    step_stats st = {.budget_sum = bf_xcalloc((size_t)L, sizeof(double))};
    double *red = bf_xcalloc((size_t)L + 2, sizeof(double)); /* ce sum, input count, budget sums */
    float *mean_budget = bf_xcalloc((size_t)L, sizeof(float));
    double t_start = bf_wall_seconds(), t_mark = t_start, comm_mark = 0.0;
    long mark_step = 0, nonfinite_run = 0, nonfinite_total = 0;
    double loss_acc = 0.0, heads_acc = 0.0;
    long acc_steps = 0;
    int rc = 0;
    if (root)
        bf_info("training %zu parameters on %zu inputs: %ld steps, global batch %d on %d rank%s, %d heads x %d "
                "layers%s, %d gradient buckets", m->n_params, t->train.n, c->steps, c->batch_size, t->world,
                t->world > 1 ? "s" : "", H, L,
                m->cfg.full_heads ? " (full heads)" : m->cfg.fixed_budget ? " (fixed budget)" : "",
                bf_grad_sync_buckets(t->sync));
    for (long step = 1; step <= last; step++) {
        double ts = bf_wall_seconds(), comm0 = t->dist->comm_seconds;
        float eps = coordinated_eps(t, step);
        float lr = bf_lr_at(step, c->steps, c->warmup, c->lr, c->lr_min);
        bf_model_zero_grad(m);
        forward_backward(t, step - 1, eps, &st);
        bf_grad_sync_wait(t->sync); /* gradients now summed over ranks: the global-batch mean */
        red[0] = st.ce_sum;
        red[1] = st.count;
        for (int l = 0; l < L; l++) red[2 + l] = st.budget_sum[l];
        bf_dist_allreduce_sum_f64(t->dist, red, (size_t)L + 2);
        double loss = red[0] / (double)c->batch_size;
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
        if (!isfinite(loss) || !isfinite(norm)) {
            nonfinite_total++;
            if (root)
                bf_warn("step %ld: non-finite loss or gradient norm; the update is skipped (%ld in a row)", step,
                        nonfinite_run + 1);
            if (++nonfinite_run >= MAX_NONFINITE_IN_A_ROW) {
                rc = bf_fail(err, "%ld non-finite steps in a row: stopping; lower train.lr or set train.grad_clip; "
                                  "earlier checkpoints are intact", nonfinite_run);
                break;
            }
            continue;
        }
        nonfinite_run = 0;
        if (root) bf_coordinator_observe(&t->coord, step, loss);
        optimizer_step(t, step, lr, bf_clip_scale(norm, c->grad_clip));
        if (t->trace)
            fprintf(t->trace, "%ld %.9g %.9g %016llx\n", step, (double)eps, loss,
                    (unsigned long long)weights_checksum(m));
        double dt = bf_wall_seconds() - ts, comm = t->dist->comm_seconds - comm0;
        if (root)
            bf_runlog_append(&t->log, step, (float)loss, lr, eps, mean_budget, (float)(c->batch_size / dt),
                             (float)norm, (float)(comm / dt));
        loss_acc += loss;
        heads_acc += heads;
        acc_steps++;
        if (step % c->heads_every == 0 || step == last) {
            /* One exact integer reduction: the record counts every input of the interval once. */
            bf_dist_allreduce_sum_i64(t->dist, t->heads.block, t->heads.block_len);
            if (root) bf_runlog_append_heads(&t->log, step, &t->heads);
            bf_headstats_reset(&t->heads);
        }
        int eval_now = t->have_valid && c->eval_every > 0 && step % c->eval_every == 0;
        if (step % c->log_every == 0 || step == last || eval_now) {
            double now = bf_wall_seconds();
            double sps = (double)(step - mark_step) * c->batch_size / (now - t_mark);
            double comm_frac = (t->dist->comm_seconds - comm_mark) / (now - t_mark);
            char eta[32];
            format_eta(eta, sizeof eta, (double)(last - step) * (now - t_start) / (double)step);
            if (root)
                fprintf(stderr, "step %6ld/%ld | loss %.4f | eps %.3f | heads %.2f/%d | lr %.2e | %.0f samples/s | "
                                "comm %.0f%% | ETA %s\n",
                        step, c->steps, loss_acc / acc_steps, eps, heads_acc / acc_steps, H, lr, sps,
                        100.0 * comm_frac, eta);
            t_mark = now;
            comm_mark = t->dist->comm_seconds;
            mark_step = step;
            loss_acc = heads_acc = 0.0;
            acc_steps = 0;
            if (agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err)) {
                rc = -1;
                break;
            }
        }
        if (eval_now) evaluate_set(t, &t->valid, "valid", NULL);
        if (c->checkpoint_every > 0 && step % c->checkpoint_every == 0 && step != last)
            if (agree(t, save_checkpoint(t, step, err), err)) {
                rc = -1;
                break;
            }
    }
    free(st.budget_sum);
    free(red);
    free(mean_budget);
    if (rc) return -1;
    if (root && nonfinite_total) bf_warn("%ld steps were skipped for non-finite numbers", nonfinite_total);
    if (agree(t, root ? bf_runlog_flush(&t->log, err) : 0, err)) return -1;
    if (agree(t, save_checkpoint(t, last, err), err)) return -1;
    double wall = bf_wall_seconds() - t_start;
    double cpu[1] = {bf_cpu_seconds()};
    bf_dist_allreduce_sum_f64(t->dist, cpu, 1);
    if (root)
        bf_info("trained %ld steps in %.1f s wall, %.1f s CPU over %d rank%s (%.2f ms CPU per input)", last, wall,
                cpu[0], t->world, t->world > 1 ? "s" : "", 1e3 * cpu[0] / ((double)last * c->batch_size));
    if (last < c->steps) {
        if (root) bf_info("stopped after step %ld as train.stop_at asks (train.steps = %ld)", last, c->steps);
        return 0;
    }
    if (t->have_valid) evaluate_set(t, &t->valid, "valid", NULL);
    if (t->have_test) evaluate_set(t, &t->test, "test", NULL);
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
    free(t->epoch);
    free(t->tokens);
    free(t->lengths);
    free(t->labels);
    free(t->gumbel);
    free(t->k_random);
    free(t->micro_starts);
    free(t->config_text);
    bf_grad_sync_free(t->sync);
    bf_runlog_free(&t->log);
    if (t->trace) fclose(t->trace);
    bf_headstats_free(&t->heads);
}

int bf_train_run(const bf_config *cfg, bf_dist *dist, bf_err *err) {
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = cfg;
    t.dist = dist;
    t.rank = dist->rank;
    t.world = dist->world;
    err->msg[0] = '\0';
    if (cfg->batch_size < t.world) {
        bf_fail(err, "train.batch_size = %d is smaller than the %d ranks: every rank needs at least one input",
                cfg->batch_size, t.world);
        return agree(&t, -1, err);
    }
    int rc = agree(&t, load_data(&t, err), err);
    if (rc == 0) rc = agree(&t, t.rank == 0 ? prepare_run_dir(&t, err) : 0, err);
    if (rc == 0) rc = agree(&t, build_model(&t, err), err);
    if (rc == 0) {
        char path[BF_PATH_LEN + 16];
        snprintf(path, sizeof path, "%s/log.h5", cfg->run_dir);
        bf_runlog_init(&t.log, path, t.model.cfg.n_classes, t.model.cfg.n_layers, t.model.cfg.n_heads);
        bf_headstats_init(&t.heads, t.model.cfg.n_classes, t.model.cfg.n_layers, t.model.cfg.n_heads);
        open_trace(&t);
        rc = run_loop(&t, err);
    }
    trainer_free(&t);
    return rc;
}
