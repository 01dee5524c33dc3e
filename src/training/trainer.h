/* trainer: the state of one training run and what train.c, step.c, save.c and resume.c share (internal to
 * src/training; the public entry point is train.h). */
#ifndef BUDGETFORMER_TRAINING_TRAINER_H
#define BUDGETFORMER_TRAINING_TRAINER_H

#include <stdio.h>

#include "budgetformer/checkpoint.h"
#include "budgetformer/dataset.h"
#include "budgetformer/dist.h"
#include "budgetformer/headstats.h"
#include "budgetformer/model.h"
#include "budgetformer/node_shared.h"
#include "budgetformer/rundir.h"
#include "budgetformer/runlog.h"
#include "budgetformer/sampler.h"
#include "budgetformer/schedule.h"
#include "budgetformer/shard.h"
#include "budgetformer/train.h"
#include "faults.h"

typedef struct {
    const bf_config *cfg;
    bf_dataset train, valid, test;
    int have_valid, have_test;
    bf_node_shared *shared[3];       /* the node's windows holding train, valid, test rows (NULL: own copy) */
    bf_model model;
    float *adam_m, *adam_v;     /* [n_params], or sharded [shard.hi - shard.lo]: element i is parameter shard.lo + i */
    int sharded;                /* dist.shard_optimizer on more than one rank (shard.c) */
    bf_shard shard;             /* sharded: the rank's part [shard.lo, shard.hi) of the parameter block */
    bf_param_gather *pgather;   /* sharded: the allgather of the updated weights, by segment */
    size_t *seg_lo, *seg_hi;    /* sharded: [n_segs] the segments: the gradient buckets, then tok_emb */
    int n_segs;
    bf_row_gather *rgather;     /* sharded: the next update's token-embedding rows, gathered from their owners */
    int32_t *next_rows;         /* sharded: [min(V, B T)] those rows */
    uint8_t *next_seen;         /* sharded: [V] */
    int table_stale;            /* sharded: rows outside the last gather may be old outside this rank's part */
    long gathered_batch;        /* sharded: the 0-based batch whose rows the last update gathered */
    bf_sampler sampler;
    bf_dist *dist;
    int rank, world;      /* data-parallel position */
    bf_coordinator coord; /* exploration schedule: decided on rank 0, broadcast */
    bf_grad_sync *sync;   /* bucketed gradient allreduce */
    int micro;            /* inputs per forward pass */
    /* step buffers */
    int64_t *index, *epoch;      /* [B] the rank's inputs of the step */
    /* Sparse allreduce of the token-embedding gradient: only the rows the global batch touched. */
    int64_t *all_index, *all_epoch; /* [B] every input of the global batch */
    uint8_t *row_seen;           /* [V] */
    int32_t *rows;               /* [min(V, B T)] touched rows, in first-seen order */
    size_t n_rows;               /* rows listed for the update in progress */
    int rows_listed;             /* 1 from the listing until bf_trainer_zero_grad (row_seen marks them) */
    float *row_buf;              /* [min(V, B T), D] */
    uint16_t *row_wire;          /* [min(V, B T), D] the rows as bf16 (dist.grad_precision = bf16), else NULL */
    int32_t *tokens, *lengths, *labels; /* [micro*T], [micro], [micro] */
    float *gumbel;               /* [micro*L*H] */
    int32_t *k_random;           /* [micro*L] */
    float *teacher;              /* [micro*C] sandwich: the k = H pass's probabilities, mixed with the labels */
    float *ce_full;              /* [micro] budget supervision: cross-entropy at k = H */
    float *k_star;               /* [micro] budget supervision: the target budget k* */
    float *ce_by_k;              /* [H-1, micro] budget supervision: cross-entropy at k = 1..H-1 */
    int *micro_starts;           /* [B+1] */
    char *config_text;
    bf_runlog log;
    bf_headstats heads;   /* head usage since the last /heads record (this rank's inputs) */
    FILE *trace;          /* BF_TRACE: per-rank step trace for tests (eps, loss, weight checksum) */
    /* resume and checkpoints */
    const bf_train_options *opts;
    int resumed;          /* the state was loaded from a checkpoint */
    long start_step;      /* updates already done when this run started */
    long last_saved;      /* step of the last checkpoint saved by this run (-1: none) */
    int log_write_warned; /* a failed rewrite of log.h5 between its synced writes was reported once */
    long skipped_total;   /* updates skipped for non-finite numbers, since step 1 */
    long nonfinite_run;   /* consecutive ones up to the current step */
    long newest_ckpt;     /* step of the newest checkpoint known valid (resumed from or written); -1: none */
    int saves;            /* checkpoint saves attempted by this process */
    int64_t *heads_keep;  /* [heads.block_len] the counts kept across an early /heads record */
    int check_alloc;      /* BF_CHECK_ALLOC=1: the training step must not allocate after the first */
    fault_plan fault;     /* BF_FAULT */
    bf_run_lock lock;     /* run.dir/.lock, held by rank 0 for the whole run */
    int wrote_run;        /* rank 0 has written into run.dir (else a failed start removes what it created) */
} trainer;

/* What the rank's part of one update sums (forward_backward); reduced over ranks by the loop. */
typedef struct {
    double ce_sum;       /* summed cross-entropy of the rank's inputs (the learned-budget pass) */
    double *budget_sum;  /* [L] summed k */
    double exploit_sum;  /* summed k/H over inputs and layers, k = clamp(round(k^), 1, H): the budget controller */
    int count;           /* inputs */
} step_stats;

/* train.c */
/* Every rank learns whether any rank failed, so no rank continues alone into a collective. The failing
 * rank keeps its own message; the others say which rank failed. */
int bf_trainer_agree(trainer *t, int rc, bf_err *err);
/* The first of run.dir's config.ini, log.h5, checkpoints/ that exists (written to p), or 0. */
int bf_trainer_run_dir_marker(const char *dir, char *p, size_t len);

/* data.c: data.train, data.valid, data.test loaded (their rows once per node with dist.shared_dataset),
 * validated and checked to come from one prepare run; collective, every rank returns the same status. The
 * bytes of their row arrays; freeing them (collective: the shared windows). */
int bf_trainer_load_data(trainer *t, bf_err *err);
size_t bf_trainer_data_bytes(const trainer *t);
void bf_trainer_free_data(trainer *t);

/* save.c: the checkpoint after update `step`, collective (rank 0 writes); the newest checkpoint for messages;
 * checkpoint.on_error after a failed periodic write (0: go on, -1: stop with err). */
int bf_trainer_save_checkpoint(trainer *t, long step, bf_err *err);
void bf_trainer_describe_newest(const trainer *t, char *buf, size_t len);
int bf_trainer_after_write_failure(trainer *t, const char *what, bf_err *err);

/* step.c: the model, its buffers and the gradient allreduce; one update's forward, backward and AdamW step. */
int bf_trainer_build_model(trainer *t, bf_err *err);
void bf_trainer_forward_backward(trainer *t, long step_no, float eps, float lambda, step_stats *st);
void bf_trainer_allreduce_token_embedding(trainer *t, long step_no);
double bf_trainer_grad_norm(const trainer *t);
void bf_trainer_zero_grad(trainer *t);
/* The rows of tok_emb that global batch `batch_no` (0-based) reads, in first-seen order, into rows[]
 * (room for min(V, B T)), each marked in seen[V] (the caller clears the marks). Every rank lists the same
 * rows itself: the sampler is a pure function of seed and step. Returns how many. */
size_t bf_trainer_list_rows(trainer *t, long batch_no, uint8_t *seen, int32_t *rows);
void bf_trainer_optimizer_step(trainer *t, long step, float lr, float grad_scale);

/* shard.c: the sharded optimiser (dist.shard_optimizer). setup after the gradient sync exists: returns the
 * floats of each AdamW moment array to allocate (n_params when not sharded). */
size_t bf_trainer_shard_setup(trainer *t);
void bf_trainer_shard_free(trainer *t);
/* Sharded: gathers the whole token embedding if rows of it are stale here (after an update); collective.
 * Before anything reads the whole table: a checkpoint, an evaluation, the BF_TRACE checksum. */
void bf_trainer_shard_sync_weights(trainer *t);
double bf_trainer_shard_sum_squares(const trainer *t);
void bf_trainer_shard_optimizer_step(trainer *t, long step, float lr, float grad_scale);
void bf_trainer_shard_gather_moments(trainer *t, float **m_full, float **v_full);
void bf_trainer_shard_scatter_moments(trainer *t, const float *m_full, const float *v_full);
size_t bf_trainer_optimizer_bytes(const trainer *t);

/* resume.c: rank 0 chooses and loads the checkpoint of --resume, then every rank gets the same state; and
 * rank 0 reads back the log of the steps before it. */
int bf_trainer_resume_state(trainer *t, bf_err *err);
int bf_trainer_resume_log(trainer *t, bf_err *err);

#endif
