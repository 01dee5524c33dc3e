/* step: the training step of one update: the model and its buffers, the gradient allreduce (buckets sent
 * while backward runs, the token embedding's touched rows apart), the passes of each micro-batch, AdamW. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/optim.h"
#include "budgetformer/rng.h"
#include "budgetformer/router.h"
#include "trainer.h"

static void on_grad_ready(void *ctx, int tensor) {
    trainer *t = ctx;
    /* ranges were registered in backward order: tensor n-1 first; tok_emb (tensor 0) is not among them */
    if (tensor > 0) bf_grad_sync_ready(t->sync, t->model.n_tensors - 1 - tensor);
}

size_t bf_trainer_list_rows(trainer *t, long batch_no, uint8_t *seen, int32_t *rows) {
    int n = bf_sampler_shard(&t->sampler, batch_no, t->cfg->batch_size, 0, 1, t->all_index, t->all_epoch);
    size_t nrows = 0;
    for (int i = 0; i < n; i++) {
        size_t src = (size_t)t->all_index[i];
        for (int k = 0; k < t->train.lengths[src]; k++) {
            int32_t id = bf_dataset_token(&t->train, src, (size_t)k);
            if (!seen[id]) {
                seen[id] = 1;
                rows[nrows++] = id;
            }
        }
    }
    return nrows;
}

/* The rows of tok_emb that global batch `step_no` touches, into t->rows. They stay marked in t->row_seen
 * until bf_trainer_zero_grad: outside them the token-embedding gradient is zero on every rank, which the
 * allreduce below, the gradient norm and the zeroing use. */
static void list_touched_rows(trainer *t, long step_no) {
    if (t->rows_listed) return;
    t->n_rows = bf_trainer_list_rows(t, step_no, t->row_seen, t->rows);
    t->rows_listed = 1;
}

/* Only the touched rows of the token-embedding gradient are summed over the ranks: a few hundred rows
 * instead of the whole [V, D] table.
 * The sharded optimiser keeps this allreduce rather than reduce-scattering the rows: the rows are a tiny
 * part of the step's traffic (B T D floats at most against the V D of the table), a reduce-scatter of them
 * would save at most (P-1)/P of that, and every rank then holds the summed rows, so the owner of each part
 * of tok_emb reads its gradient in place like every other part. */
void bf_trainer_allreduce_token_embedding(trainer *t, long step_no) {
    list_touched_rows(t, step_no);
    if (t->world == 1) return;
    bf_model *m = &t->model;
    size_t D = (size_t)m->cfg.d_model, nrows = t->n_rows;
    float *g = m->g.tok_emb;
    for (size_t r = 0; r < nrows; r++) memcpy(t->row_buf + r * D, g + (size_t)t->rows[r] * D, D * sizeof(float));
    if (t->row_wire) bf_dist_allreduce_sum_bf16(t->dist, t->row_buf, nrows * D, t->row_wire);
    else bf_dist_allreduce_sum_f32(t->dist, t->row_buf, nrows * D);
    for (size_t r = 0; r < nrows; r++) memcpy(g + (size_t)t->rows[r] * D, t->row_buf + r * D, D * sizeof(float));
}

/* Zeroes the gradients before an update. After an update whose touched rows are listed, the token
 * embedding's gradient is zero except in those rows: only they are cleared (the table is most of the
 * parameters; clearing it whole was a few per cent of a WordNet update). */
void bf_trainer_zero_grad(trainer *t) {
    bf_model *m = &t->model;
    if (!t->rows_listed) {
        bf_model_zero_grad(m);
        return;
    }
    size_t D = (size_t)m->cfg.d_model, lo = (size_t)(m->g.tok_emb - m->grads), hi = lo + (size_t)m->cfg.vocab_size * D;
    memset(m->grads, 0, lo * sizeof(float));
    memset(m->grads + hi, 0, (m->n_params - hi) * sizeof(float));
    for (size_t r = 0; r < t->n_rows; r++) {
        memset(m->g.tok_emb + (size_t)t->rows[r] * D, 0, D * sizeof(float));
        t->row_seen[t->rows[r]] = 0;
    }
    t->n_rows = 0;
    t->rows_listed = 0;
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
    if (t->cfg->grad_precision && t->world > 1) { /* bf16 exchange: the buckets and the embedding rows */
        bf_grad_sync_bf16(t->sync);
        t->row_wire = bf_xcalloc(maxrows * (size_t)m->cfg.d_model, sizeof(uint16_t));
    }
    free(r);
}

int bf_trainer_build_model(trainer *t, bf_err *err) {
    const bf_config *c = t->cfg;
    bf_model_config mc = {.vocab_size = (int)t->train.vocab_size, .max_len = t->train.max_len,
                          .d_model = c->d_model, .n_heads = c->n_heads, .n_layers = c->n_layers,
                          .d_ff = c->d_ff, .n_classes = t->train.n_classes, .full_heads = c->full_heads,
                          .fixed_budget = c->fixed_budget, .gate_norm = c->gate_norm,
                          .budget_hidden = c->budget_hidden};
    int per_layer = bf_config_layer_budgets(c, mc.layer_budgets, err);
    if (per_layer < 0) return -1;
    if (per_layer) mc.fixed_budget = BF_FIXED_PER_LAYER;
    /* a full-heads or fixed-budget model (one k, or one per layer) has no budget predictor to widen */
    mc.budget_hidden = mc.full_heads || mc.fixed_budget ? 0 : mc.budget_hidden;
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
    if (bf_model_set_precision(&t->model, (bf_precision)c->precision, err)) {
        bf_alloc_context(NULL);
        return -1;
    }
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
    if (c->balance_shards && t->world > 1) {
        /* An input's compute: its tokens through the layers' products (4D^2 + 2DF per token) plus attention
         * over them (2 len D per token), relative: len (1 + len / (2D + F)). */
        double *cost = bf_xmalloc((t->train.n ? t->train.n : 1) * sizeof *cost);
        double q = 1.0 / (2.0 * mc.d_model + mc.d_ff);
        for (size_t i = 0; i < t->train.n; i++) {
            double len = t->train.lengths[i];
            cost[i] = len * (1.0 + q * len);
        }
        bf_sampler_balance(&t->sampler, cost, c->batch_size);
        free(cost);
    }
    bf_coordinator_init(&t->coord, c);
    bf_headstats_init(&t->heads, mc.n_classes, mc.n_layers, mc.n_heads);
    t->heads_keep = bf_xcalloc(t->heads.block_len, sizeof(int64_t));
    create_grad_sync(t);
    size_t n_opt = bf_trainer_shard_setup(t); /* sharded: the moments of this rank's part only */
    t->adam_m = bf_xcalloc(n_opt, sizeof(float));
    t->adam_v = bf_xcalloc(n_opt, sizeof(float));
    bf_alloc_context(NULL);
    return 0;
}

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
    int supervise =
        learned && (c->budget_supervise > 0.0f || c->supervise_rel > 0.0f || c->supervise_rank) && !warm;
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
        if (c->supervise_rank) {
            /* Batch-ranked: the heads the budget target allows this micro-batch (its ramped fraction r(t) of
             * n H) go where they lower the cross-entropy most; the controller keeps holding the mean. */
            memcpy(t->ce_by_k + (size_t)(H - 1) * nn, t->ce_full, nn * sizeof(float));
            double r = bf_coordinator_budget_target(&t->coord, step_no + 1);
            long total = lround(r * (double)H * (double)n);
            total = total < n ? n : total > (long)H * n ? (long)H * n : total;
            bf_budget_allocate(t->ce_by_k, n, H, total, t->k_star);
        } else {
            for (int i = 0; i < n; i++) {
                float gain = t->ce_by_k[i] - t->ce_full[i]; /* CE_1 - CE_H */
                float thr = t->ce_full[i] + fmaxf(c->budget_supervise, c->supervise_rel * gain);
                t->k_star[i] = (float)H;
                for (int k = H - 1; k >= 1; k--)
                    if (t->ce_by_k[(size_t)(k - 1) * nn + (size_t)i] <= thr) t->k_star[i] = (float)k;
            }
        }
        ex.k_target = t->k_star;
        ex.sup_scale = c->supervise_weight / (float)(c->batch_size * m->cfg.n_layers);
        ex.sup_center = c->supervise_center;
    }
    if (learned && c->budget_spread > 0.0f && !warm) {
        ex.spread_sd = c->budget_spread;
        ex.spread_scale = c->spread_weight / (float)(c->batch_size * m->cfg.n_layers);
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
void bf_trainer_forward_backward(trainer *t, long step_no, float eps, float lambda, step_stats *st) {
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
            bf_dataset_rows(&t->train, src, 1, t->tokens + (size_t)i * T); /* widened to the model's int32 */
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

double bf_trainer_grad_norm(const trainer *t) {
    const bf_model *m = &t->model;
    if (!t->rows_listed) return sqrt(bf_sum_squares(m->grads, m->n_params));
    /* Bit for bit the sum over the whole block: the token embedding's untouched rows are zero. */
    size_t lo = (size_t)(m->g.tok_emb - m->grads);
    return sqrt(bf_sum_squares_rows(m->grads, m->n_params, lo, (size_t)m->cfg.d_model, (size_t)m->cfg.vocab_size,
                                    t->row_seen));
}

void bf_trainer_optimizer_step(trainer *t, long step, float lr, float grad_scale) {
    if (t->sharded) {
        bf_trainer_shard_optimizer_step(t, step, lr, grad_scale); /* every rank's weights whole again */
        bf_model_params_updated(&t->model);
        return;
    }
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    bf_adamw_hparams hp = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->adam_eps};
    for (int i = 0; i < m->n_tensors; i++) {
        const bf_tensor_info *ti = &m->tensors[i];
        size_t o = ti->offset;
        bf_adamw_update(m->params + o, m->grads + o, t->adam_m + o, t->adam_v + o, ti->numel, step, lr,
                        ti->decay ? c->weight_decay : 0.0f, grad_scale, &hp);
    }
    bf_model_params_updated(m); /* bf16: the weight copies are made again, once, before the next forward */
}
