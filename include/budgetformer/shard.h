/* shard: the sharded optimiser's side of MPI (dist.shard_optimizer = 1, ZeRO stage 1; docs/SCALING.md).
 *
 * The partition: the flat parameter block of n floats (the model's one block, the same offsets for params,
 * grads and the AdamW moments) is cut into P contiguous parts in rank order, rank r owning
 * [floor(r n / P), floor((r + 1) n / P)). The owner alone keeps the AdamW moments of its part and updates
 * its part of the weights; the other ranks get the new weights by an allgather.
 *
 * Use: bf_shard_init once; bf_grad_sync_shard (dist.h) turns the gradient buckets into reduce-scatters
 * that leave each rank the summed gradient of its part; after the rank has updated its part of a segment of
 * the block, bf_param_gather_start(k) sends it while the next segment is updated; bf_param_gather_wait
 * before the weights are read. bf_shard_gather_f32 / bf_shard_scatter_f32 move a [n] array between rank 0
 * (checkpoints: the file holds the full state) and the parts. src/training/shard.c is the compiled example.
 * Every call is collective unless it says otherwise; at world size 1 the one part is the whole block. */
#ifndef BUDGETFORMER_SHARD_H
#define BUDGETFORMER_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/dist.h"

typedef struct {
    size_t n;             /* floats in the block */
    size_t lo, hi;        /* this rank's part [lo, hi) */
    int world;
    int *counts, *displs; /* [world] every rank's part in floats: displs[r] = lo of rank r (MPI's int counts) */
} bf_shard;

/* Not collective: every rank computes every part. The block must hold fewer than INT_MAX floats. */
void bf_shard_init(bf_shard *s, size_t n, int rank, int world);
void bf_shard_free(bf_shard *s);
/* Not collective: the part [lo, hi) of `rank` out of `world` in a block of n. */
void bf_shard_range(size_t n, int rank, int world, size_t *lo, size_t *hi);
/* Largest part in floats (what the busiest rank holds). Not collective. */
size_t bf_shard_max_part(const bf_shard *s);

/* Rank 0 receives every rank's part (hi - lo floats at `part`) into full[n]; full is ignored elsewhere. */
void bf_shard_gather_f32(bf_dist *d, const bf_shard *s, const float *part, float *full);
/* Every rank receives its part of rank 0's full[n] into part; full is ignored elsewhere. */
void bf_shard_scatter_f32(bf_dist *d, const bf_shard *s, const float *full, float *part);

/* Turns the gradient buckets of s (dist.h) into reduce-scatters: each bucket's MPI_Ireduce_scatter starts
 * when backward completes it, as the allreduce did, and leaves every rank the sum over ranks of its own part
 * of the bucket. After bf_grad_sync_wait the gradient block holds the global sum inside [sh->lo, sh->hi)
 * only; outside it keeps this rank's own gradient, which nothing may read. Allocates here, never in a step.
 * Not collective. */
void bf_grad_sync_shard(bf_grad_sync *s, const bf_shard *sh);
/* The float range [lo, hi) of the gradient block that bucket k covers. */
void bf_grad_sync_bucket_range(const bf_grad_sync *s, int k, size_t *lo, size_t *hi);

/* The allgather of the updated weights, in segments of the block (contiguous, disjoint, given once): each
 * segment's MPI_Iallgatherv (in place) starts when this rank's part of it is final, so the allgather of one
 * segment overlaps the update of the next. Allocates only in create. */
typedef struct bf_param_gather bf_param_gather;
bf_param_gather *bf_param_gather_create(bf_dist *d, const bf_shard *s, float *block, const size_t *seg_lo,
                                        const size_t *seg_hi, int n_segs);
void bf_param_gather_free(bf_param_gather *g);
/* This rank's part of segment k is final: starts the segment's allgather. */
void bf_param_gather_start(bf_param_gather *g, int k);
/* Starts any segment not started yet and waits for all: every rank then holds the whole block. */
void bf_param_gather_wait(bf_param_gather *g);

/* Skips segment k in this round: bf_param_gather_wait does not send it (the caller moves it otherwise, e.g.
 * by bf_row_gather). Not collective, but every rank must skip the same segments. */
void bf_param_gather_skip(bf_param_gather *g, int k);

/* The rows of a [n_rows, width] table inside the block (at table_lo) that the next update reads, gathered
 * from their owners instead of the whole table: every rank sends the elements of the listed rows inside its
 * own part, in list order, and writes the other ranks' elements into its block. All ranks pass the same
 * list. The table's other rows are then stale outside each rank's part until the segment is gathered whole
 * (bf_param_gather_start + wait). Allocates only in create (lists of at most max_rows rows). */
typedef struct bf_row_gather bf_row_gather;
bf_row_gather *bf_row_gather_create(bf_dist *d, const bf_shard *s, float *block, size_t table_lo, size_t width,
                                    size_t max_rows);
void bf_row_gather_free(bf_row_gather *g);
void bf_row_gather_start(bf_row_gather *g, const int32_t *rows, size_t n);
void bf_row_gather_wait(bf_row_gather *g);

#endif
