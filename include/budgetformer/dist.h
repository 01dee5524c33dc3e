/* dist: the MPI side of data parallelism, behind a small interface that is a no-op at world size 1.
 *
 * Use: bf_dist_init (MPI only when launched by mpirun/srun with more than 1 rank); reductions and broadcasts;
 * for the gradients bf_grad_sync_create over the gradient ranges in backward order, bf_grad_sync_ready as
 * each range is final during backward, bf_grad_sync_wait before the optimiser step; bf_dist_finalize.
 * src/training/step.c (the buckets) and src/training/train.c are the compiled examples.
 *
 * Every MPI failure is reported with the call, the rank and MPI's message, and aborts the job (MPI_Abort),
 * so one failing rank never leaves the others waiting in a collective. The model and kernels never see MPI.
 *
 * A rank that dies (SIGKILL, a crash) ends the job: MPI_COMM_WORLD has MPI_ERRORS_RETURN, so a collective
 * that notices the loss returns an error, which is reported and turned into MPI_Abort; and Open MPI's
 * mpirun (like srun --kill-on-bad-exit=1) kills the remaining ranks as soon as one exits abnormally,
 * usually before they notice (docs/FAILURES.md). */
#ifndef BUDGETFORMER_DIST_H
#define BUDGETFORMER_DIST_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int rank, world;
    int mpi;             /* 1 when MPI was initialised */
    double comm_seconds; /* wall time spent waiting in communication since the last reset */
    /* watchdog (bf_dist_set_watchdog): */
    float timeout;       /* seconds a collective may wait; 0 = for ever (the default) */
    double spin_s;       /* a waiting collective polls without pause this long, then sleeps between polls
                            (bf_dist_set_spin; default 0.01 s) */
    long step;           /* the update in progress, for the watchdog's message (set by the training loop) */
    int (*stop_requested)(void); /* non-zero once a stop signal arrived: noted while a collective waits */
    int stop_noted;
} bf_dist;

int bf_dist_init(bf_dist *d, int *argc, char ***argv);
void bf_dist_finalize(bf_dist *d);
/* Ends every rank of the job with status (after printing the reason on this rank). */
void bf_dist_abort(const bf_dist *d, int status);
/* The MPI library's own version text (MPI_Get_library_version, on one line) while MPI is initialised,
 * else "MPI not initialised" (a run without a launcher). Static storage; for checkpoint provenance. */
const char *bf_dist_library_version(void);

/* Turns the watchdog on: from now on a collective that waits more than timeout_s seconds (0 = off) for the
 * other ranks ends the job with a message naming d->step, the collective and the ranks that did not arrive
 * (a roll call among the waiting ranks; docs/FAILURES.md). stop_requested (may be NULL) is asked while a
 * collective waits, so a stop request there is reported. Collective: every rank calls it. */
void bf_dist_set_watchdog(bf_dist *d, double timeout_s, int (*stop_requested)(void));

/* How long a collective that waits (under the watchdog) polls MPI without pause before it sleeps ~20 us
 * between polls: spinning answers fastest on cores of its own; sleeping leaves the core to other processes
 * (a shared node, more ranks than cores). Local: each rank its own. */
void bf_dist_set_spin(bf_dist *d, double spin_s);

void bf_dist_barrier(bf_dist *d);
void bf_dist_allreduce_sum_f64(bf_dist *d, double *buf, size_t n);
void bf_dist_allreduce_sum_f32(bf_dist *d, float *buf, size_t n);
void bf_dist_allreduce_sum_i64(bf_dist *d, int64_t *buf, size_t n);
void bf_dist_allreduce_max_f64(bf_dist *d, double *buf, size_t n);
void bf_dist_bcast_f32(bf_dist *d, float *buf, size_t n, int root);
void bf_dist_bcast_f64(bf_dist *d, double *buf, size_t n, int root);
void bf_dist_bcast_i64(bf_dist *d, int64_t *buf, size_t n, int root);
/* buf (n floats) summed over the ranks through bf16: rounded into wire (n values, the caller's scratch),
 * allreduced with the bf16 sum, widened back into buf. Nothing on one rank. */
void bf_dist_allreduce_sum_bf16(bf_dist *d, float *buf, size_t n, uint16_t *wire);
/* The bf16 sum of the exchange, element by element: inout[i] = bf16(fp32(in[i]) + fp32(inout[i])), round to
 * nearest even (bf16.h), values as their 16 bits. */
void bf_dist_bf16_sum(const uint16_t *in, uint16_t *inout, size_t n);
/* fp32 <-> the bf16 bits of the exchange (round to nearest even one way, exact the other). */
void bf_dist_to_bf16(uint16_t *wire, const float *x, size_t n);
void bf_dist_from_bf16(float *x, const uint16_t *wire, size_t n);
/* Rank 0 receives every rank's `count` items of `size` bytes in rank order into recv (size sum of counts). */
void bf_dist_gather_bytes(bf_dist *d, const void *send, size_t count, size_t size, void *recv);

/* Bucketed, non-blocking gradient allreduce (sum), overlapped with backward. The gradient block is cut
 * into buckets of about bucket_bytes made of whole ranges, in the order the ranges become ready (the order
 * of the `ranges` array: backward order). Each bucket's MPI_Iallreduce starts as soon as all its ranges are
 * ready. With the sharded optimiser (bf_grad_sync_shard in shard.h) each bucket is a reduce-scatter instead. */
typedef struct {
    size_t offset, count; /* floats */
    int new_bucket;       /* 1: this range starts a new bucket (it is ready late, e.g. the embeddings, and
                             must not hold back the ranges before it) */
} bf_grad_range;

typedef struct bf_grad_sync bf_grad_sync;

bf_grad_sync *bf_grad_sync_create(bf_dist *d, float *grads, const bf_grad_range *ranges, int n_ranges,
                                  size_t bucket_bytes);
void bf_grad_sync_free(bf_grad_sync *s);
/* Marks range i ready; starts its bucket's allreduce when the bucket is complete. */
void bf_grad_sync_ready(bf_grad_sync *s, int i);
/* From now on the buckets travel as bf16 (dist.grad_precision = bf16): each is rounded to bf16 (nearest
 * even) when it starts and summed by bf_dist_bf16_sum in MPI; the sums are widened back to fp32 in place.
 * Every rank gets the same bits. Call before the first step, before or after bf_grad_sync_shard. */
void bf_grad_sync_bf16(bf_grad_sync *s);
/* Starts whatever is not started yet and waits for every bucket. */
void bf_grad_sync_wait(bf_grad_sync *s);
int bf_grad_sync_buckets(const bf_grad_sync *s);

#endif
