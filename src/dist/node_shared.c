/* node_shared: one copy per node through MPI_Win_allocate_shared (see node_shared.h). */
#include "budgetformer/node_shared.h"

#include <mpi.h>
#include <stdlib.h>

#include "budgetformer/util.h"
#include "dist_internal.h"

struct bf_node_shared {
    bf_dist *d;
    void *ptr;
    size_t bytes;
    int writer, ranks;
    int mpi;       /* 1: a window over node (below); 0: malloc */
    MPI_Comm node; /* the ranks of this node (MPI_COMM_TYPE_SHARED) */
    MPI_Win win;
};

bf_node_shared *bf_node_shared_alloc(bf_dist *d, size_t bytes) {
    bf_node_shared *s = bf_xcalloc(1, sizeof *s);
    s->d = d;
    s->writer = s->ranks = 1;
    s->bytes = bytes;
    if (!d->mpi || d->world == 1) {
        s->ptr = bf_xmalloc(bytes ? bytes : 1);
        return s;
    }
    s->mpi = 1;
    MPI_CHECK(d, MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &s->node));
    MPI_CHECK(d, MPI_Comm_set_errhandler(s->node, MPI_ERRORS_RETURN));
    int node_rank = 0;
    MPI_CHECK(d, MPI_Comm_rank(s->node, &node_rank));
    MPI_CHECK(d, MPI_Comm_size(s->node, &s->ranks));
    s->writer = node_rank == 0;
    /* All the memory in the writer's segment; the others allocate nothing and map the writer's. */
    void *base = NULL;
    MPI_CHECK(d, MPI_Win_allocate_shared(s->writer ? (MPI_Aint)bytes : 0, 1, MPI_INFO_NULL, s->node, &base, &s->win));
    MPI_Aint size = 0;
    int disp = 0;
    MPI_CHECK(d, MPI_Win_shared_query(s->win, 0, &size, &disp, &s->ptr));
    s->bytes = (size_t)size;
    return s;
}

void *bf_node_shared_ptr(const bf_node_shared *s) { return s->ptr; }
size_t bf_node_shared_bytes(const bf_node_shared *s) { return s->bytes; }
int bf_node_shared_writer(const bf_node_shared *s) { return s->writer; }
int bf_node_shared_ranks(const bf_node_shared *s) { return s->ranks; }

int bf_node_shared_publish(bf_node_shared *s, int rc) {
    if (!s->mpi) return rc;
    /* The fence completes the writer's stores for every rank of the window (MPI's memory model for shared
     * windows); the reduction over the node is the barrier after which the readers look, and carries the
     * writer's outcome to them. */
    MPI_CHECK(s->d, MPI_Win_fence(0, s->win));
    int mine = rc ? 1 : 0, any = 0;
    MPI_CHECK(s->d, MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, s->node));
    return any ? -1 : 0;
}

void bf_node_shared_bcast(bf_node_shared *s, void *buf, size_t bytes) {
    if (s->mpi) MPI_CHECK(s->d, MPI_Bcast(buf, (int)bytes, MPI_BYTE, 0, s->node));
}

void bf_node_shared_free(bf_node_shared *s) {
    if (!s) return;
    if (s->mpi) {
        MPI_Win_free(&s->win);
        MPI_Comm_free(&s->node);
    } else {
        free(s->ptr);
    }
    free(s);
}
