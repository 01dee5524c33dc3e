/* eval_dist: reductions for distributed evaluation (see eval_dist.h). */
#include "budgetformer/eval_dist.h"

#include <stdlib.h>
#include <string.h>

void bf_eval_shard(size_t n, int rank, int world, size_t *lo, size_t *hi) {
    *lo = n * (size_t)rank / (size_t)world;
    *hi = n * (size_t)(rank + 1) / (size_t)world;
}

void bf_eval_counts_reduce(bf_dist *d, bf_eval_counts *e) {
    if (d->world == 1) return;
    size_t C = (size_t)e->n_classes, L = (size_t)e->n_layers, H = (size_t)e->n_heads;
    bf_dist_allreduce_sum_i64(d, e->confusion, C * C);
    bf_dist_allreduce_sum_i64(d, e->budget_count, L * H);
    bf_dist_allreduce_sum_i64(d, &e->n, 1);
    bf_dist_allreduce_sum_f64(d, e->budget_sum, L);
    double s[5] = {e->ce_sum, e->flops_used, e->flops_full, e->attn_flops_used, e->attn_flops_full};
    bf_dist_allreduce_sum_f64(d, s, 5);
    e->ce_sum = s[0];
    e->flops_used = s[1];
    e->flops_full = s[2];
    e->attn_flops_used = s[3];
    e->attn_flops_full = s[4];
    /* Throughput: the shards run at the same time, so the slowest rank's wall time counts. */
    double mx[3] = {e->seconds, e->attn_bytes, e->attn_bytes_all_heads};
    bf_dist_allreduce_max_f64(d, mx, 3);
    e->seconds = mx[0];
    e->attn_bytes = mx[1];
    e->attn_bytes_all_heads = mx[2];
}

/* Gathers one per-input array: `width` items of `size` bytes per row. */
static void gather_rows(bf_dist *d, void *base, size_t n, size_t width, size_t size) {
    size_t lo, hi;
    bf_eval_shard(n, d->rank, d->world, &lo, &hi);
    size_t row = width * size;
    void *mine = bf_xmalloc((hi - lo) * row + 1);
    memcpy(mine, (char *)base + lo * row, (hi - lo) * row);
    /* Shards are contiguous and in rank order, so the gathered buffer is in dataset order. */
    bf_dist_gather_bytes(d, mine, (hi - lo) * width, size, base);
    free(mine);
}

void bf_eval_records_gather(bf_dist *d, bf_eval_records *r, size_t n, int n_classes, int n_layers) {
    if (d->world == 1) return;
    gather_rows(d, r->label, n, 1, sizeof(int32_t));
    gather_rows(d, r->pred, n, 1, sizeof(int32_t));
    gather_rows(d, r->length, n, 1, sizeof(int32_t));
    gather_rows(d, r->logits, n, (size_t)n_classes, sizeof(float));
    gather_rows(d, r->budget, n, (size_t)n_layers, sizeof(int32_t));
    gather_rows(d, r->head_mask, n, (size_t)n_layers, sizeof(uint32_t));
    gather_rows(d, r->khat, n, (size_t)n_layers, sizeof(float));
    gather_rows(d, r->sel_mass, n, (size_t)n_layers, sizeof(float));
}

void bf_eval_budget_control(bf_dist *d, bf_budget_control c, uint64_t seed, const int32_t *budget, size_t n,
                            int n_layers, int n_heads, int32_t *k_override) {
    size_t L = (size_t)n_layers, lo, hi;
    bf_eval_shard(n, d->rank, d->world, &lo, &hi);
    int32_t *all = bf_xcalloc(n * L + 1, sizeof(int32_t));
    if (d->world == 1) {
        memcpy(all, budget, n * L * sizeof(int32_t));
    } else {
        /* An all-gather as a sum: every rank contributes its rows, zeros elsewhere. */
        int64_t *buf = bf_xcalloc(n * L + 1, sizeof(int64_t));
        for (size_t i = lo * L; i < hi * L; i++) buf[i] = budget[i];
        bf_dist_allreduce_sum_i64(d, buf, n * L);
        for (size_t i = 0; i < n * L; i++) all[i] = (int32_t)buf[i];
        free(buf);
    }
    bf_budget_control_make(c, seed, all, n, n_layers, n_heads, k_override);
    free(all);
}
