/* sampler: the data order (see sampler.h). */
#include "budgetformer/sampler.h"

#include <stdlib.h>

#include "budgetformer/rng.h"
#include "budgetformer/util.h"

void bf_sampler_init(bf_sampler *s, size_t n, uint64_t seed) {
    s->n = n;
    s->seed = seed;
    s->cost = s->load = s->pcost = NULL;
    s->order = s->owner = s->room = NULL;
    s->max_batch = 0;
    /* Both permutation slots are allocated here, so drawing batches never allocates (the training step
     * after the first allocates nothing). */
    for (int i = 0; i < 2; i++) {
        s->epoch_cached[i] = -1;
        s->perm[i] = bf_xmalloc((n ? n : 1) * sizeof *s->perm[i]);
    }
}

/* Frees the balanced deal's arrays (bf_sampler_balance); the sampler deals contiguous parts again. */
static void free_deal(bf_sampler *s) {
    free(s->cost);
    free(s->order);
    free(s->owner);
    free(s->load);
    free(s->room);
    free(s->pcost);
    s->cost = s->load = s->pcost = NULL;
    s->order = s->owner = s->room = NULL;
}

void bf_sampler_balance(bf_sampler *s, const double *cost, int max_batch) {
    BF_CHECK(max_batch >= 1, "balanced sampler for batches of %d", max_batch);
    free_deal(s);
    size_t n = s->n ? s->n : 1, B = (size_t)max_batch;
    s->cost = bf_xmalloc(n * sizeof *s->cost);
    for (size_t i = 0; i < s->n; i++) s->cost[i] = cost[i];
    s->max_batch = max_batch;
    s->order = bf_xmalloc(B * sizeof *s->order);
    s->owner = bf_xmalloc(B * sizeof *s->owner);
    s->load = bf_xmalloc(B * sizeof *s->load);
    s->room = bf_xmalloc(B * sizeof *s->room);
    s->pcost = bf_xmalloc(B * sizeof *s->pcost);
}

void bf_sampler_free(bf_sampler *s) {
    free_deal(s);
    for (int i = 0; i < 2; i++) {
        free(s->perm[i]);
        s->perm[i] = NULL;
        s->epoch_cached[i] = -1;
    }
}

/* Fisher-Yates from the identity, one keyed draw per position i (so it is the same on every rank). */
static void shuffle(int64_t *restrict perm, size_t n, uint64_t seed, int64_t epoch) {
    for (size_t i = 0; i < n; i++) perm[i] = (int64_t)i;
    for (size_t i = n; i-- > 1;) {
        uint64_t h = bf_rng_key(seed, (uint64_t)epoch, (uint64_t)i, 0, BF_STREAM_SHUFFLE, 0);
        size_t j = (size_t)(h % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static const int64_t *epoch_perm(bf_sampler *s, int64_t epoch) {
    int slot = (int)(epoch & 1);
    if (s->epoch_cached[slot] != epoch) {
        shuffle(s->perm[slot], s->n, s->seed, epoch);
        s->epoch_cached[slot] = epoch;
    }
    return s->perm[slot];
}

/* Dataset index of stream position p (and its epoch). */
static int64_t at_position(bf_sampler *s, int64_t p, int64_t *epoch) {
    const int64_t n = (int64_t)s->n, e = p / n;
    *epoch = e;
    return epoch_perm(s, e)[p % n];
}

/* The balanced deal of sampler.h: owner[k] = the rank of batch position k. Insertion sort (no allocation,
 * a total order so every rank sorts alike); batches are small next to the work of training them. */
static void deal(bf_sampler *s, int64_t first, int B, int W) {
    int64_t e;
    double *pc = s->pcost;
    for (int k = 0; k < B; k++) pc[k] = s->cost[at_position(s, first + k, &e)];
    for (int k = 0; k < B; k++) {
        int j = k;
        for (; j > 0; j--) {
            if (pc[s->order[j - 1]] >= pc[k]) break; /* earlier positions stay first among equal costs */
            s->order[j] = s->order[j - 1];
        }
        s->order[j] = k;
    }
    for (int r = 0; r < W; r++) {
        s->load[r] = 0.0;
        s->room[r] = (int)(((int64_t)r + 1) * B / W - (int64_t)r * B / W);
    }
    for (int i = 0; i < B; i++) {
        int k = s->order[i], best = -1;
        for (int r = 0; r < W; r++)
            if (s->room[r] > 0 && (best < 0 || s->load[r] < s->load[best])) best = r;
        s->owner[k] = best;
        s->room[best]--;
        s->load[best] += pc[k];
    }
}

int bf_sampler_shard(bf_sampler *s, long batch_no, int batch_size, int rank, int world, int64_t *index,
                     int64_t *epoch) {
    BF_CHECK(s->n > 0, "sampler over an empty dataset");
    BF_CHECK(batch_no >= 0 && batch_size >= 1, "bad batch %ld of size %d", batch_no, batch_size);
    BF_CHECK(world >= 1 && rank >= 0 && rank < world, "bad rank %d of world %d", rank, world);
    /* 64-bit positions: batch_no * batch_size reaches 1e15 at the configuration limits. */
    const int64_t B = batch_size, W = world, n = (int64_t)s->n;
    const int64_t lo = (int64_t)rank * B / W, hi = ((int64_t)rank + 1) * B / W;
    const int64_t first = (int64_t)batch_no * B;
    if (s->cost && world > 1 && batch_size <= s->max_batch && world <= s->max_batch) {
        deal(s, first, batch_size, world);
        int m = 0;
        for (int k = 0; k < batch_size; k++)
            if (s->owner[k] == rank) {
                index[m] = at_position(s, first + k, &epoch[m]);
                m++;
            }
        return m;
    }
    for (int64_t k = lo; k < hi; k++) {
        const int64_t p = first + k, e = p / n;
        index[k - lo] = epoch_perm(s, e)[p % n];
        epoch[k - lo] = e;
    }
    return (int)(hi - lo);
}

int bf_split_micro(int count, int micro, int *starts) {
    BF_CHECK(count >= 0 && micro >= 0, "bad micro-batch split of %d by %d", count, micro);
    if (micro == 0 || micro > count) micro = count;
    int m = 0;
    for (int start = 0; start < count; start += micro) starts[m++] = start;
    starts[m] = count;
    return m;
}
