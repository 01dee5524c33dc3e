/* sampler: the data order, a pure function of (seed, update number, rank, world size).
 *
 * The training inputs form an endless stream. Stream position p (0-based) lies in epoch e = p / N at
 * slot p % N and holds dataset input perm_e[p % N], where perm_e is a Fisher-Yates permutation of 0..N-1:
 *   for i = N-1 down to 1: swap(perm[i], perm[j]), j = bf_rng_key(seed, e, i, 0, BF_STREAM_SHUFFLE, 0) % (i+1)
 * (the modulo bias is below N / 2^64). Global batch s (0-based; it makes update s+1) is the positions
 * [s*B, (s+1)*B): a batch may straddle two epochs (or more when B > N) and no input is ever dropped.
 * Rank r of W takes B_r = lo_{r+1} - lo_r inputs with lo_r = (r*B)/W (integer division), so the parts of
 * all ranks are exactly the world-1 batch, whatever W: by default the contiguous part [s*B + lo_r,
 * s*B + lo_{r+1}); with per-input costs (bf_sampler_balance) the batch's inputs are dealt so that the parts'
 * costs are close (below), since the slowest rank sets the pace of every update. Nothing is stored
 * between batches: resuming at update u needs only u (and the seed).
 *
 * Balanced parts: the batch's positions sorted by cost, largest first (ties: lower position first), each
 * given to the rank with the smallest cost so far among those that still have room for their B_r (ties:
 * lower rank); each rank keeps its inputs in batch order. A pure function of the batch, so every rank
 * computes the same deal; the counts B_r are those of the contiguous parts.
 *
 * Use: bf_sampler_init (n_train, seed), then per update bf_sampler_shard (the rank's inputs of global batch
 * step - 1) and bf_split_micro (micro-batch j holds inputs starts[j] .. starts[j+1]-1), bf_sampler_free;
 * src/training/step.c and tests/test_sampler.c are the compiled examples.
 *
 * The loss of a micro-batch must be scaled by 1/B (the global batch), not by its own size, so that the
 * summed gradients equal those of one pass over the whole batch.
 */
#ifndef BUDGETFORMER_SAMPLER_H
#define BUDGETFORMER_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

/* n, seed and two cached epoch permutations (slot e % 2 holds epoch e; -1 = empty): a batch that
 * straddles epochs e and e+1 needs both. cost (NULL = contiguous parts) and the deal's scratch of
 * max_batch entries: bf_sampler_balance. */
typedef struct {
    size_t n;
    uint64_t seed;
    int64_t epoch_cached[2];
    int64_t *perm[2];
    double *cost;          /* [n] */
    int max_batch;
    int *order, *owner;    /* [max_batch] */
    double *load;          /* [max_batch]: one per rank (world <= batch size matters only) */
    int *room;             /* [max_batch] */
    double *pcost;         /* [max_batch]: the costs of the batch's positions */
} bf_sampler;

void bf_sampler_init(bf_sampler *s, size_t n, uint64_t seed);
void bf_sampler_free(bf_sampler *s);

/* Deals every later batch of up to max_batch inputs by the costs cost[0..n-1] of the dataset's inputs
 * (copied; e.g. their compute time by the model's cost per token). Allocates now, never in a step. */
void bf_sampler_balance(bf_sampler *s, const double *cost, int max_batch);

/* Fills index[] (dataset indices) and epoch[] of the inputs rank `rank` of `world` takes in global batch
 * `batch_no`; returns how many ((rank+1)*B/W - rank*B/W, possibly 0 when B < W). The arrays need room
 * for batch_size/world + 1 entries. */
int bf_sampler_shard(bf_sampler *s, long batch_no, int batch_size, int rank, int world, int64_t *index,
                     int64_t *epoch);

/* Splits count inputs into micro-batches of at most micro (0 = one micro-batch): returns the number of
 * micro-batches and fills starts[] (size count+1 max) so micro-batch j is [starts[j], starts[j+1]). All but
 * the last have exactly micro inputs. count = 0 gives 0 micro-batches and starts[0] = 0. */
int bf_split_micro(int count, int micro, int *starts);

#endif
