/* grad_bf16: the gradient exchange in bf16 (dist.grad_precision = bf16, as PyTorch DDP's bf16_compress_hook):
 * the values travel as bf16, half the bytes of fp32, and are summed by a user-defined MPI operation that
 * adds each pair in fp32 and rounds the sum to bf16 (round to nearest even, bf16.h). Every rank receives the
 * same bits, so the replicas stay identical; the rounding is what the option costs in accuracy
 * (docs/SCALING.md measures it). */
#include <mpi.h>

#include "budgetformer/bf16.h"
#include "budgetformer/dist.h"
#include "dist_internal.h"

void bf_dist_bf16_sum(const uint16_t *in, uint16_t *inout, size_t n) {
    for (size_t i = 0; i < n; i++) inout[i] = bf_bf16_round(bf_bf16_to_f32(in[i]) + bf_bf16_to_f32(inout[i]));
}

static void bf16_sum_op(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type; /* only ever MPI_UINT16_T (bf_dist_bf16_op's callers) */
    bf_dist_bf16_sum(in, inout, (size_t)*len);
}

/* One operation for the whole run, created on first use and freed with MPI (MPI_Finalize frees it). fp32
 * addition is commutative bit for bit, so MPI may combine in either order of a pair; the grouping of more
 * than two ranks is Open MPI's fixed choice for a given size, as with MPI_SUM over floats. */
MPI_Op bf_dist_bf16_op(bf_dist *d) {
    static MPI_Op op = MPI_OP_NULL;
    if (op == MPI_OP_NULL) MPI_CHECK(d, MPI_Op_create(bf16_sum_op, 1, &op));
    return op;
}

void bf_dist_to_bf16(uint16_t *wire, const float *x, size_t n) { bf_bf16_from_f32(wire, x, n, 1.0f); }

void bf_dist_from_bf16(float *x, const uint16_t *wire, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = bf_bf16_to_f32(wire[i]);
}

void bf_dist_allreduce_sum_bf16(bf_dist *d, float *buf, size_t n, uint16_t *wire) {
    if (d->world == 1 || n == 0) return;
    bf_dist_to_bf16(wire, buf, n);
    bf_dist_allreduce(d, wire, n, MPI_UINT16_T, bf_dist_bf16_op(d));
    bf_dist_from_bf16(buf, wire, n);
}
