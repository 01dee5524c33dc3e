/* dist_internal: what dist.c shares with the other sources of src/dist (shard.c, node_shared.c): the checked MPI call and
 * the watchdog's wait, so that every collective of the folder fails and times out the same way. */
#ifndef BUDGETFORMER_DIST_INTERNAL_H
#define BUDGETFORMER_DIST_INTERNAL_H

#include <mpi.h>

#include "budgetformer/dist.h"

/* Reports a failed MPI call (the call, the rank, MPI's message) and ends the job; returns on MPI_SUCCESS. */
void bf_dist_check_mpi(const bf_dist *d, int rc, const char *call);
#define BF_MPI_CHECK(d, call) bf_dist_check_mpi((d), (call), #call)
#define MPI_CHECK(d, call) bf_dist_check_mpi((d), (call), #call)
/* In-place allreduce of n items of type with op, under the watchdog, its wait counted in d->comm_seconds;
 * nothing on one rank. */
void bf_dist_allreduce(bf_dist *d, void *buf, size_t n, MPI_Datatype type, MPI_Op op);
/* The bf16 sum (grad_bf16.c): a user-defined operation on MPI_UINT16_T holding bf16 bits. */
MPI_Op bf_dist_bf16_op(bf_dist *d);
/* Waits for one request of a collective within d->timeout (the watchdog, dist.c). */
void bf_dist_wait_request(bf_dist *d, MPI_Request *req, const char *call);

#endif
