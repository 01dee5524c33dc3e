/* mpi_check: the one report of a failed MPI call, shared by the sources of src/dist (internal). */
#ifndef BUDGETFORMER_DIST_MPI_CHECK_H
#define BUDGETFORMER_DIST_MPI_CHECK_H

#include "budgetformer/dist.h"

/* Returns when rc is MPI_SUCCESS; else prints the call, the rank and MPI's message and ends the job
 * (MPI_Abort), so one failing rank never leaves the others waiting in a collective. */
void bf_dist_check_mpi(const bf_dist *d, int rc, const char *call);
#define MPI_CHECK(d, call) bf_dist_check_mpi((d), (call), #call)

#endif
