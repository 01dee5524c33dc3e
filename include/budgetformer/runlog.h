/* runlog: the run's log.h5 (FILES.md): /metrics per logged step (and, later, /heads statistics).
 *
 * log.h5 must be readable at any moment, also while training writes it and after a kill. Chosen way: the
 * records are kept in memory and every flush writes a complete new file under a temporary name in the same
 * directory and renames it over log.h5 (atomic on POSIX). A reader therefore always opens a complete file,
 * never sees a lock held by the writer, and a kill loses at most the records since the last write. The
 * trainer writes after every update (train.log_write_every, rename only) and syncs at train.log_every
 * (fsync of the file and its directory), so a kill of the process loses nothing completed and a crash of the
 * machine at most the updates since the last synced write. */
#ifndef BUDGETFORMER_RUNLOG_H
#define BUDGETFORMER_RUNLOG_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/headstats.h"
#include "budgetformer/util.h"

typedef struct {
    char path[BF_ERR_LEN];
    int n_layers;
    size_t n, cap;
    int64_t *step;
    float *loss, *lr, *eps;
    float *mean_budget;    /* [S, L] */
    float *samples_per_s;  /* throughput over the step */
    float *grad_norm;      /* global gradient norm before clipping */
    float *comm_fraction;  /* fraction of the step's wall time spent waiting on communication */
    int64_t *skipped;      /* updates skipped for non-finite numbers since step 1, up to this one (cumulative);
                              /metrics/skipped, written once it is non-zero */
    int64_t skipped_now;   /* the count bf_runlog_append records with the next row (the trainer keeps it) */
    float *lambda;         /* budget multiplier lambda in force at the update (/metrics/budget_lambda) */
    float lambda_now;      /* the lambda bf_runlog_append records with the next row (the trainer sets it) */
    /* /heads records (R of them) */
    int n_classes, n_heads;
    size_t nh, cap_h;
    int64_t *h_step, *h_count;  /* [R] */
    int64_t *h_class_count;     /* [R, C] */
    float *h_usage;             /* [R, L, H] fractions of the interval's inputs */
    float *h_budget_hist;       /* [R, L, H] */
    float *h_class_usage;       /* [R, C, L, H] */
    int khat_bins;              /* bins of h_khat_hist per layer (headstats.h) */
    int64_t *h_logit_hist;      /* [R, L, BF_LOGIT_BINS] counts */
    int64_t *h_khat_hist;       /* [R, L, khat_bins] counts */
    int64_t *h_mass_hist;       /* [R, L, BF_MASS_BINS] counts */
    /* /memory: every rank's memory when the run's last update was done (the trainer sets it then, with
     * bf_runlog_set_memory; none before, none in a run stopped early) */
    int mem_ranks;              /* 0: no /memory */
    int64_t *mem;               /* [mem_ranks, 4]: peak RSS, RSS, PSS, private memory in KiB (memusage.h) */
    int64_t mem_rows_bytes;     /* bytes of the datasets' row arrays (tokens, lengths, labels) */
    int mem_shared;             /* 1: those rows held once per node (dist.shared_dataset) */
} bf_runlog;

void bf_runlog_init(bf_runlog *lg, const char *path, int n_classes, int n_layers, int n_heads);
void bf_runlog_append(bf_runlog *lg, int64_t step, float loss, float lr, float eps, const float *mean_budget,
                      float samples_per_s, float grad_norm, float comm_fraction);
/* Makes room for `rows` /metrics and `head_rows` /heads records in all, so appending up to them allocates
 * nothing (the training step allocates nothing after the first). */
void bf_runlog_reserve(bf_runlog *lg, size_t rows, size_t head_rows);
/* Appends a /heads record covering the interval that ended at `step` (counts summed over all ranks). */
void bf_runlog_append_heads(bf_runlog *lg, int64_t step, const bf_headstats *s);
/* Writes every record into a new log.h5 and syncs it (bf_commit_file): durable across a machine crash. */
int bf_runlog_flush(const bf_runlog *lg, bf_err *err);
/* The same write; durable = 0 only renames (bf_replace_file): a kill of the process keeps it, a machine
 * crash may not, and it costs no fsync (the per-update writes between synced ones). */
int bf_runlog_write(const bf_runlog *lg, int durable, bf_err *err);
/* The /memory record of the next flush: `ranks` rows of 4 values (copied). */
void bf_runlog_set_memory(bf_runlog *lg, int ranks, const int64_t *kb, int64_t rows_bytes, int shared);
/* Resume: reads back the records of the existing file at lg->path whose step is <= max_step (records after
 * it belong to updates that the resumed run makes again), so the next flush writes them once followed by the
 * new ones. Datasets added later are optional: a log without them reads back with lambda NaN and all-zero
 * diagnostics histograms for its records. Returns 0 when read, 1 when there is no file, -1 (err set) when it cannot be used (unreadable,
 * or made for another number of layers, heads or classes). */
int bf_runlog_load(bf_runlog *lg, int64_t max_step, bf_err *err);
void bf_runlog_free(bf_runlog *lg);

/* ---- reading any log.h5 (budgetformer heads): whatever shape it has, checked for consistency ---- */

/* Which of /records (an evaluation records file, records.h), /metrics and /heads (a log) the HDF5 file
 * holds. Returns 0, or -1 with err set when it cannot be opened as HDF5. */
int bf_h5_groups_of(const char *path, int *has_records, int *has_metrics, int *has_heads, bf_err *err);

/* A log.h5 as read back for reports: /metrics and /heads (either may be absent). */
typedef struct {
    int has_metrics, has_heads;
    size_t S, R, C, L, H;                     /* H and C are 0 without /heads */
    int64_t *m_step;                          /* [S] */
    float *m_eps, *m_budget;                  /* [S], [S,L] */
    int64_t *h_step, *h_count, *h_class_count; /* [R], [R], [R,C] */
    float *h_usage, *h_class_usage;           /* [R,L,H], [R,C,L,H] */
    float *m_lambda;                          /* [S] or NULL (a log without /metrics/budget_lambda) */
    int has_diag;                             /* the three diagnostics histograms below are present */
    size_t KB;                                /* k^ bins per layer */
    int64_t *h_logit, *h_khat, *h_mass;       /* [R,L,24], [R,L,KB], [R,L,20] */
} bf_runlog_view;

/* Reads /metrics (has_metrics) and /heads (has_heads) of the log at path; shapes are taken from the file and
 * checked against each other. Returns 0, or -1 with err naming the file and dataset (free lg either way). */
int bf_runlog_view_read(const char *path, int has_metrics, int has_heads, bf_runlog_view *lg, bf_err *err);
void bf_runlog_view_free(bf_runlog_view *lg);

#endif
