/* shard: the sharded optimiser of a training run (dist.shard_optimizer = 1, ZeRO stage 1; the partition and
 * its collectives are in src/dist/shard.c): the setup, the rank's part of the squared gradient norm, the AdamW
 * update of the rank's part with the allgather of the new weights, and the moving of the moments between the
 * parts and rank 0 for checkpoints (a file always holds the full state, so it resumes on any number of ranks,
 * sharded or not). */
#include <stdlib.h>
#include <string.h>

#include "budgetformer/optim.h"
#include "trainer.h"

size_t bf_trainer_shard_setup(trainer *t) {
    bf_model *m = &t->model;
    t->sharded = t->cfg->shard_optimizer && t->world > 1; /* one rank: the unsharded step is the same thing */
    if (!t->sharded) return m->n_params;
    bf_shard_init(&t->shard, m->n_params, t->rank, t->world);
    bf_grad_sync_shard(t->sync, &t->shard);
    /* The weights are gathered in segments: first the token embedding (its gradient rows went by their own
     * allreduce, step.c), the largest tensor by far, so that its allgather is in flight while the rest is
     * updated; then the segments the gradients were reduced in (the buckets, in backward order). */
    int nb = bf_grad_sync_buckets(t->sync);
    t->n_segs = nb + 1;
    t->seg_lo = bf_xcalloc((size_t)t->n_segs, sizeof(size_t));
    t->seg_hi = bf_xcalloc((size_t)t->n_segs, sizeof(size_t));
    const bf_tensor_info *tok = &m->tensors[0];
    t->seg_lo[0] = tok->offset;
    t->seg_hi[0] = tok->offset + tok->numel;
    for (int k = 0; k < nb; k++) bf_grad_sync_bucket_range(t->sync, k, &t->seg_lo[k + 1], &t->seg_hi[k + 1]);
    t->pgather = bf_param_gather_create(t->dist, &t->shard, m->params, t->seg_lo, t->seg_hi, t->n_segs);
    /* The token embedding's rows change every update (AdamW's moments decay without a gradient), but the next
     * update reads only the rows of its own inputs: those are gathered, the rest stays with its owner until
     * something reads the whole table (bf_trainer_shard_sync_weights). Every rank lists the same rows from
     * the sampler. */
    size_t V = (size_t)m->cfg.vocab_size, D = (size_t)m->cfg.d_model;
    size_t BT = (size_t)t->cfg->batch_size * (size_t)m->cfg.max_len, max_rows = V < BT ? V : BT;
    t->rgather = bf_row_gather_create(t->dist, &t->shard, m->params, tok->offset, D, max_rows);
    t->next_rows = bf_xcalloc(max_rows ? max_rows : 1, sizeof(int32_t));
    t->next_seen = bf_xcalloc(V, 1);
    return t->shard.hi - t->shard.lo;
}

void bf_trainer_shard_free(trainer *t) {
    if (!t->sharded) return;
    bf_param_gather_free(t->pgather);
    bf_row_gather_free(t->rgather);
    free(t->next_rows);
    free(t->next_seen);
    free(t->seg_lo);
    free(t->seg_hi);
    bf_shard_free(&t->shard);
}

/* After the reduce-scatter only the rank's part of the gradient is summed: its squares, in double, are the
 * rank's term of the global norm (summed over ranks with the update's other sums, train.c). */
double bf_trainer_shard_sum_squares(const trainer *t) {
    return bf_sum_squares(t->model.grads + t->shard.lo, t->shard.hi - t->shard.lo);
}

/* AdamW on the rank's part of each segment, tensor by tensor (weight decay is per tensor): the same
 * element-wise update the unsharded step makes, so the owner computes exactly the weights every rank would
 * have. Each segment's allgather starts as soon as its part is updated and runs during the next one's. */
/* The rows of tok_emb that global batch `batch_no` (0-based) reads, into t->next_rows (next_seen cleared). */
static size_t list_rows(trainer *t, long batch_no) {
    size_t nrows = bf_trainer_list_rows(t, batch_no, t->next_seen, t->next_rows);
    for (size_t r = 0; r < nrows; r++) t->next_seen[t->next_rows[r]] = 0;
    return nrows;
}

void bf_trainer_shard_sync_weights(trainer *t) {
    if (!t->sharded || !t->table_stale) return;
    bf_param_gather_start(t->pgather, 0);
    bf_param_gather_wait(t->pgather);
    t->table_stale = 0;
}

void bf_trainer_shard_optimizer_step(trainer *t, long step, float lr, float grad_scale) {
    const bf_config *c = t->cfg;
    bf_model *m = &t->model;
    bf_adamw_hparams hp = {.beta1 = c->beta1, .beta2 = c->beta2, .eps = c->adam_eps};
    size_t lo = t->shard.lo, hi = t->shard.hi;
    for (int k = 0; k < t->n_segs; k++) {
        size_t a = t->seg_lo[k] > lo ? t->seg_lo[k] : lo, b = t->seg_hi[k] < hi ? t->seg_hi[k] : hi;
        for (int i = 0; i < m->n_tensors && a < b; i++) {
            const bf_tensor_info *ti = &m->tensors[i];
            size_t ta = ti->offset > a ? ti->offset : a, tb = ti->offset + ti->numel < b ? ti->offset + ti->numel : b;
            if (ta >= tb) continue;
            bf_adamw_update(m->params + ta, m->grads + ta, t->adam_m + (ta - lo), t->adam_v + (ta - lo), tb - ta,
                            step, lr, ti->decay ? c->weight_decay : 0.0f, grad_scale, &hp);
        }
        if (k == 0) {
            /* Update `step` read batch step - 1; the next reads batch `step`. */
            bf_row_gather_start(t->rgather, t->next_rows, list_rows(t, step));
            t->gathered_batch = step;
            bf_param_gather_skip(t->pgather, 0);
        } else {
            bf_param_gather_start(t->pgather, k);
        }
    }
    bf_param_gather_wait(t->pgather);
    bf_row_gather_wait(t->rgather);
    t->table_stale = 1;
}

/* The full moments for a checkpoint: rank 0 gets [n_params] of each (allocated here, the caller frees; NULL
 * on the other ranks). Collective. */
void bf_trainer_shard_gather_moments(trainer *t, float **m_full, float **v_full) {
    *m_full = *v_full = NULL;
    if (t->rank == 0) {
        *m_full = bf_xmalloc(t->model.n_params * sizeof(float));
        *v_full = bf_xmalloc(t->model.n_params * sizeof(float));
    }
    bf_shard_gather_f32(t->dist, &t->shard, t->adam_m, *m_full);
    bf_shard_gather_f32(t->dist, &t->shard, t->adam_v, *v_full);
}

/* Rank 0's full moments (read from a checkpoint) into every rank's part. Collective. */
void bf_trainer_shard_scatter_moments(trainer *t, const float *m_full, const float *v_full) {
    bf_shard_scatter_f32(t->dist, &t->shard, m_full, t->adam_m);
    bf_shard_scatter_f32(t->dist, &t->shard, v_full, t->adam_v);
}

/* Bytes of AdamW state (m and v) on the busiest rank. */
size_t bf_trainer_optimizer_bytes(const trainer *t) {
    size_t n = t->sharded ? bf_shard_max_part(&t->shard) : t->model.n_params;
    return 2 * n * sizeof(float);
}
