/* node_shared: memory that the ranks of one node share (an MPI-3 shared-memory window), so data that every
 * rank reads and none writes after loading (the training set's rows) is held once per node, not once per rank.
 *
 * Use: every rank calls bf_node_shared_alloc (collective, as are publish, bcast and free: every rank of the
 * job makes them in the same order); the node's first rank (bf_node_shared_writer) fills
 * bf_node_shared_ptr; every rank then calls bf_node_shared_publish, after which every rank of the node sees
 * the bytes and learns whether the writer failed; from then on the memory is only read; bf_node_shared_free
 * before bf_dist_finalize. Without MPI, or in a job of one rank, it is plain malloc and the process is the
 * writer. src/training/data.c (load_shared) is the compiled example. */
#ifndef BUDGETFORMER_NODE_SHARED_H
#define BUDGETFORMER_NODE_SHARED_H

#include <stddef.h>

#include "budgetformer/dist.h"

typedef struct bf_node_shared bf_node_shared;

/* bytes counts on the writer (the node's first rank); the others get the writer's size (bf_node_shared_bytes). */
bf_node_shared *bf_node_shared_alloc(bf_dist *d, size_t bytes);
void *bf_node_shared_ptr(const bf_node_shared *s);
size_t bf_node_shared_bytes(const bf_node_shared *s);
int bf_node_shared_writer(const bf_node_shared *s);
int bf_node_shared_ranks(const bf_node_shared *s); /* ranks on this node that share it */
/* rc: this rank's outcome (the writer's read). Returns -1 when some rank of the node passed non-zero, else 0. */
int bf_node_shared_publish(bf_node_shared *s, int rc);
/* The writer's `bytes` bytes of buf copied into buf on every rank of the node (collective over the node). */
void bf_node_shared_bcast(bf_node_shared *s, void *buf, size_t bytes);
void bf_node_shared_free(bf_node_shared *s);

#endif
