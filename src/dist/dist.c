/* dist: MPI wrappers and the bucketed gradient allreduce (see dist.h). */
#include "budgetformer/dist.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include "budgetformer/shard.h"
#include "budgetformer/util.h"
#include "dist_internal.h"

/* Launched by a process manager with more than one process? (Open MPI's mpirun, PMIx, Slurm's srun.) */
static int launched_in_parallel(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 1) return 1;
    }
    /* Open MPI sets this for every launched rank, even with -np 1. */
    return getenv("OMPI_COMM_WORLD_RANK") != NULL;
}

void bf_dist_check_mpi(const bf_dist *d, int rc, const char *call) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "budgetformer: error: %s failed on rank %d of %d: %s\n", call, d->rank, d->world, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}


/* ---- the watchdog (docs/FAILURES.md, "A rank that stops") --------------------------------------------
 *
 * Every collective is started non-blocking and waited for by polling MPI_Test against a deadline of
 * d->timeout seconds. A collective that is not complete by then starts a roll call on a duplicate of
 * MPI_COMM_WORLD: the rank sends "here" to every other rank, and every rank that is waiting in a collective
 * (it polls for such messages) answers the same way. Ranks that have not answered within a few seconds did
 * not arrive; the lowest rank that did names them with the step and the collective, and MPI_Abort ends the
 * job (mpirun then also kills a stopped process). Polling, rather than MPI_Wait, is also what lets a stop
 * signal be noticed while waiting. */

static MPI_Comm g_watch = MPI_COMM_NULL; /* roll calls only */
#define TAG_HERE 7301

/* Sends "here, waiting in collective number seq" to every other rank (once per roll call). */
static void send_here(bf_dist *d, long long *note, MPI_Request *reqs) {
    for (int r = 0, k = 0; r < d->world; r++)
        if (r != d->rank) MPI_Isend(note, 2, MPI_LONG_LONG, r, TAG_HERE, g_watch, &reqs[k++]);
}

/* Receives pending "here" notes; marks their senders in seen[]. Returns how many arrived. */
static int take_here(unsigned char *seen) {
    int got = 0;
    for (;;) {
        int flag = 0;
        MPI_Status st;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_HERE, g_watch, &flag, &st) != MPI_SUCCESS || !flag) return got;
        long long note[2];
        MPI_Recv(note, 2, MPI_LONG_LONG, st.MPI_SOURCE, TAG_HERE, g_watch, MPI_STATUS_IGNORE);
        if (seen) seen[st.MPI_SOURCE] = 1;
        got++;
    }
}

static void pause_us(long us) {
    struct timespec ts = {.tv_sec = 0, .tv_nsec = us * 1000L};
    nanosleep(&ts, NULL);
}

/* The roll call after a timeout (or when another rank started one): who is waiting in a collective? Never
 * returns. */
static void roll_call(bf_dist *d, const char *call, double waited) {
    int W = d->world;
    unsigned char *seen = bf_xcalloc((size_t)W, 1);
    MPI_Request *reqs = bf_xcalloc((size_t)W, sizeof *reqs);
    long long note[2] = {d->step, (long long)d->rank};
    seen[d->rank] = 1;
    send_here(d, note, reqs);
    /* Answers travel in microseconds; a few seconds cover a loaded node. */
    double end = bf_wall_seconds() + (d->timeout < 5.0 ? d->timeout : 5.0);
    while (bf_wall_seconds() < end) {
        take_here(seen);
        pause_us(1000);
    }
    char missing[512] = "";
    int n_missing = 0, lowest = -1;
    for (int r = 0; r < W; r++) {
        if (seen[r]) {
            if (lowest < 0) lowest = r;
            continue;
        }
        size_t k = strlen(missing);
        if (k < sizeof missing - 16) snprintf(missing + k, sizeof missing - k, "%s%d", n_missing ? ", " : "", r);
        n_missing++;
    }
    if (d->rank == lowest) {
        if (n_missing)
            fprintf(stderr, "budgetformer: error: watchdog: %s at step %ld waited %.0f s (dist.timeout = %g s) and "
                            "rank%s %s of %d did not arrive (stopped, a frozen node or a stuck file system?); "
                            "ending the job: the checkpoints written so far stay valid, continue with --resume auto "
                            "once the cause is fixed\n",
                    call, d->step, waited, (double)d->timeout, n_missing > 1 ? "s" : "", missing, W);
        else
            fprintf(stderr, "budgetformer: error: watchdog: %s at step %ld waited %.0f s (dist.timeout = %g s); "
                            "every rank answered the roll call, so the ranks are in different collectives (a "
                            "bug) or the network is stuck; ending the job\n", call, d->step, waited,
                    (double)d->timeout);
        fflush(stderr);
    }
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

/* Waits for one request of a collective, within d->timeout. */
static void wait_req(bf_dist *d, MPI_Request *req, const char *call) {
    if (d->timeout <= 0.0f || g_watch == MPI_COMM_NULL) {
        MPI_CHECK(d, MPI_Wait(req, MPI_STATUS_IGNORE));
        return;
    }
    double t0 = bf_wall_seconds(), deadline = t0 + d->timeout;
    for (long spins = 0;; spins++) {
        int flag = 0;
        bf_dist_check_mpi(d, MPI_Test(req, &flag, MPI_STATUS_IGNORE), call);
        if (flag) return;
        double now = bf_wall_seconds();
        /* Spin first (a collective of a healthy step completes in microseconds); then yield the core. */
        if (now - t0 > d->spin_s) pause_us(now - t0 > 1.0 ? 2000 : now - t0 > 0.01 ? 100 : 20);
        if ((spins & 63) == 0 || now - t0 > 0.01) {
            if (take_here(NULL)) roll_call(d, call, now - t0); /* another rank timed out: answer */
            if (d->stop_requested && d->stop_requested() && !d->stop_noted &&
                now - t0 > (d->timeout < 20.0f ? d->timeout / 2.0 : 10.0)) { /* not during a healthy save */
                d->stop_noted = 1;
                fprintf(stderr, "budgetformer: rank %d: a stop was requested while %s at step %ld waits for the "
                                "other ranks (%.0f s so far): it takes effect when they arrive; the watchdog ends "
                                "the job %.0f s after the wait began if they do not (dist.timeout)\n",
                        d->rank, call, d->step, now - t0, (double)d->timeout);
            }
        }
        if (now > deadline) roll_call(d, call, now - t0);
    }
}

/* The same waits for the other sources of src/dist (dist_internal.h). */
void bf_dist_wait_request(bf_dist *d, MPI_Request *req, const char *call) { wait_req(d, req, call); }

void bf_dist_set_spin(bf_dist *d, double spin_s) {
    d->spin_s = spin_s;
#ifdef __linux__
    /* The sleeps between polls are ~20 us: without this a sleep may last the default 50 us timer slack. */
    if (spin_s < 0.01) prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
}

void bf_dist_set_watchdog(bf_dist *d, double timeout_s, int (*stop_requested)(void)) {
    d->timeout = (float)timeout_s;
    d->stop_requested = stop_requested;
    if (d->mpi && d->world > 1 && g_watch == MPI_COMM_NULL) MPI_CHECK(d, MPI_Comm_dup(MPI_COMM_WORLD, &g_watch));
}

int bf_dist_init(bf_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->world = 1;
    d->spin_s = 0.01;
    if (!launched_in_parallel()) return 0;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "budgetformer: error: MPI_Init_thread failed\n");
        return -1;
    }
    d->mpi = 1;
    /* Errors return codes instead of aborting silently, so we can name the call and the rank. */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_CHECK(d, MPI_Comm_rank(MPI_COMM_WORLD, &d->rank));
    MPI_CHECK(d, MPI_Comm_size(MPI_COMM_WORLD, &d->world));
    return 0;
}

void bf_dist_finalize(bf_dist *d) {
    if (g_watch != MPI_COMM_NULL) MPI_Comm_free(&g_watch);
    if (d->mpi) MPI_Finalize();
    d->mpi = 0;
}

void bf_dist_abort(const bf_dist *d, int status) {
    if (d->mpi && d->world > 1) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

const char *bf_dist_library_version(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int initialized = 0, finalized = 0, len = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) return "MPI not initialised";
    if (MPI_Get_library_version(version, &len) != MPI_SUCCESS) return "unknown (MPI_Get_library_version failed)";
    /* One line for provenance: some libraries end the text with a newline or spread it over lines. */
    for (int i = 0; i < len && version[i]; i++)
        if (version[i] == '\n' || version[i] == '\r' || version[i] == '\t') version[i] = ' ';
    for (size_t n = strlen(version); n > 0 && version[n - 1] == ' ';) version[--n] = '\0';
    return version;
}

void bf_dist_barrier(bf_dist *d) {
    if (d->world == 1) return;
    double t = bf_wall_seconds();
    MPI_Request req;
    MPI_CHECK(d, MPI_Ibarrier(MPI_COMM_WORLD, &req));
    wait_req(d, &req, "a barrier");
    d->comm_seconds += bf_wall_seconds() - t;
}

void bf_dist_allreduce(bf_dist *d, void *buf, size_t n, MPI_Datatype type, MPI_Op op) {
    if (d->world == 1 || n == 0) return;
    double t = bf_wall_seconds();
    MPI_Request req;
    MPI_CHECK(d, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)n, type, op, MPI_COMM_WORLD, &req));
    wait_req(d, &req, "an allreduce");
    d->comm_seconds += bf_wall_seconds() - t;
}

void bf_dist_allreduce_sum_f32(bf_dist *d, float *buf, size_t n) { bf_dist_allreduce(d, buf, n, MPI_FLOAT, MPI_SUM); }
void bf_dist_allreduce_sum_f64(bf_dist *d, double *buf, size_t n) { bf_dist_allreduce(d, buf, n, MPI_DOUBLE, MPI_SUM); }
void bf_dist_allreduce_sum_i64(bf_dist *d, int64_t *buf, size_t n) { bf_dist_allreduce(d, buf, n, MPI_INT64_T, MPI_SUM); }
void bf_dist_allreduce_max_f64(bf_dist *d, double *buf, size_t n) { bf_dist_allreduce(d, buf, n, MPI_DOUBLE, MPI_MAX); }

static void bcast(bf_dist *d, void *buf, size_t n, MPI_Datatype type, int root) {
    if (d->world == 1 || n == 0) return;
    double t = bf_wall_seconds();
    MPI_Request req;
    MPI_CHECK(d, MPI_Ibcast(buf, (int)n, type, root, MPI_COMM_WORLD, &req));
    wait_req(d, &req, "a broadcast");
    d->comm_seconds += bf_wall_seconds() - t;
}

void bf_dist_bcast_f32(bf_dist *d, float *buf, size_t n, int root) { bcast(d, buf, n, MPI_FLOAT, root); }
void bf_dist_bcast_f64(bf_dist *d, double *buf, size_t n, int root) { bcast(d, buf, n, MPI_DOUBLE, root); }
void bf_dist_bcast_i64(bf_dist *d, int64_t *buf, size_t n, int root) { bcast(d, buf, n, MPI_INT64_T, root); }

void bf_dist_gather_bytes(bf_dist *d, const void *send, size_t count, size_t size, void *recv) {
    if (d->world == 1) {
        memcpy(recv, send, count * size);
        return;
    }
    int bytes = (int)(count * size);
    int *counts = NULL, *displs = NULL;
    if (d->rank == 0) {
        counts = bf_xcalloc((size_t)d->world, sizeof(int));
        displs = bf_xcalloc((size_t)d->world, sizeof(int));
    }
    double t = bf_wall_seconds();
    MPI_Request req;
    MPI_CHECK(d, MPI_Igather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD, &req));
    wait_req(d, &req, "a gather");
    if (d->rank == 0)
        for (int r = 1; r < d->world; r++) displs[r] = displs[r - 1] + counts[r - 1];
    MPI_CHECK(d, MPI_Igatherv(send, bytes, MPI_BYTE, recv, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD, &req));
    wait_req(d, &req, "a gather");
    d->comm_seconds += bf_wall_seconds() - t;
    free(counts);
    free(displs);
}

/* ---- bucketed gradient allreduce ---- */

typedef struct {
    size_t lo, hi;     /* float range of the gradient block covered (contiguous) */
    int first, last;   /* ranges first..last (indices into the ranges array) */
    int pending;       /* ranges not yet ready */
    int started;
    MPI_Request req;
    /* reduce-scatter mode (bf_grad_sync_shard): */
    int *rs_counts;    /* [world] each rank's part of the bucket, in rank order */
    size_t own_lo, own_n; /* this rank's part of the bucket in the block */
    size_t recv_off;   /* where it arrives in the sync's receive buffer */
} bucket;

struct bf_grad_sync {
    bf_dist *d;
    float *grads;
    int n_ranges;
    int *bucket_of;    /* [n_ranges] */
    bucket *buckets;
    int n_buckets;
    int sharded;       /* 1: reduce-scatter buckets (bf_grad_sync_shard) */
    float *recv;       /* sharded: the parts received, bucket after bucket (a reduce-scatter may not write
                          into the buffer it reads, so the result arrives here and is copied back) */
    size_t recv_n;     /* sharded: floats of recv */
    int bf16;          /* 1: the exchange travels as bf16 (bf_grad_sync_bf16) */
    uint16_t *wire;    /* bf16: the gradient block as bf16, at the same offsets as grads */
    uint16_t *wire_recv; /* bf16 and sharded: the parts received, laid out as recv */
};

/* The floats of the gradient block that the buckets cover: up to the highest bucket end. */
static size_t covered(const bf_grad_sync *s) {
    size_t hi = 0;
    for (int k = 0; k < s->n_buckets; k++)
        if (s->buckets[k].hi > hi) hi = s->buckets[k].hi;
    return hi;
}

bf_grad_sync *bf_grad_sync_create(bf_dist *d, float *grads, const bf_grad_range *ranges, int n_ranges,
                                  size_t bucket_bytes) {
    bf_grad_sync *s = bf_xcalloc(1, sizeof *s);
    s->d = d;
    s->grads = grads;
    s->n_ranges = n_ranges;
    s->bucket_of = bf_xcalloc((size_t)n_ranges, sizeof(int));
    s->buckets = bf_xcalloc((size_t)n_ranges, sizeof(bucket));
    size_t cap = bucket_bytes / sizeof(float);
    if (cap == 0) cap = 1;
    for (int i = 0; i < n_ranges;) {
        bucket *b = &s->buckets[s->n_buckets];
        b->first = i;
        b->lo = ranges[i].offset;
        b->hi = ranges[i].offset + ranges[i].count;
        size_t size = ranges[i].count;
        s->bucket_of[i] = s->n_buckets;
        i++;
        /* Extend while the next range is adjacent in memory (so the bucket stays one contiguous buffer)
         * and the bucket stays within the size. Ranges come in backward order: each one sits just below
         * the previous in the block. */
        while (i < n_ranges && !ranges[i].new_bucket && size + ranges[i].count <= cap &&
               (ranges[i].offset + ranges[i].count == b->lo || ranges[i].offset == b->hi)) {
            if (ranges[i].offset + ranges[i].count == b->lo) b->lo = ranges[i].offset;
            else b->hi = ranges[i].offset + ranges[i].count;
            size += ranges[i].count;
            s->bucket_of[i] = s->n_buckets;
            i++;
        }
        b->last = i - 1;
        b->pending = b->last - b->first + 1;
        b->req = MPI_REQUEST_NULL;
        s->n_buckets++;
    }
    return s;
}

void bf_grad_sync_shard(bf_grad_sync *s, const bf_shard *sh) {
    BF_CHECK(sh->world == s->d->world, "shard of %d ranks for a world of %d", sh->world, s->d->world);
    size_t total = 0;
    for (int k = 0; k < s->n_buckets; k++) {
        bucket *b = &s->buckets[k];
        b->rs_counts = bf_xcalloc((size_t)sh->world, sizeof(int));
        for (int r = 0; r < sh->world; r++) {
            size_t a = (size_t)sh->displs[r], e = a + (size_t)sh->counts[r];
            size_t lo = a > b->lo ? a : b->lo, hi = e < b->hi ? e : b->hi;
            b->rs_counts[r] = hi > lo ? (int)(hi - lo) : 0;
        }
        b->own_lo = sh->lo > b->lo ? sh->lo : b->lo;
        b->own_n = (size_t)b->rs_counts[s->d->rank];
        b->recv_off = total;
        total += b->own_n;
    }
    s->recv_n = total;
    s->sharded = 1;
    /* Only one of the two receive buffers is ever used: fp32 or, with the bf16 exchange, its bf16 twin. */
    if (s->bf16) s->wire_recv = bf_xcalloc(total ? total : 1, sizeof(uint16_t));
    else s->recv = bf_xcalloc(total ? total : 1, sizeof(float));
}

void bf_grad_sync_bf16(bf_grad_sync *s) {
    if (s->bf16) return;
    s->bf16 = 1;
    s->wire = bf_xcalloc(covered(s) + 1, sizeof(uint16_t));
    if (s->sharded) {
        free(s->recv); /* the bf16 exchange receives into wire_recv instead */
        s->recv = NULL;
        s->wire_recv = bf_xcalloc(s->recv_n ? s->recv_n : 1, sizeof(uint16_t));
    }
}

void bf_grad_sync_bucket_range(const bf_grad_sync *s, int k, size_t *lo, size_t *hi) {
    BF_CHECK(k >= 0 && k < s->n_buckets, "bucket %d out of 0..%d", k, s->n_buckets - 1);
    *lo = s->buckets[k].lo;
    *hi = s->buckets[k].hi;
}

void bf_grad_sync_free(bf_grad_sync *s) {
    if (!s) return;
    for (int k = 0; k < s->n_buckets; k++) free(s->buckets[k].rs_counts);
    free(s->recv);
    free(s->wire);
    free(s->wire_recv);
    free(s->bucket_of);
    free(s->buckets);
    free(s);
}

int bf_grad_sync_buckets(const bf_grad_sync *s) { return s->n_buckets; }

static void start_bucket(bf_grad_sync *s, bucket *b) {
    b->started = 1;
    if (s->d->world == 1) return;
    /* In bf16 the bucket is rounded into the wire buffer first and travels with the bf16 sum; the result
     * is widened back in bf_grad_sync_wait. */
    void *send = s->grads + b->lo;
    MPI_Datatype type = MPI_FLOAT;
    MPI_Op op = MPI_SUM;
    if (s->bf16) {
        bf_dist_to_bf16(s->wire + b->lo, s->grads + b->lo, b->hi - b->lo);
        send = s->wire + b->lo;
        type = MPI_UINT16_T;
        op = bf_dist_bf16_op(s->d);
    }
    if (s->sharded) {
        /* The bucket's parts follow each other in rank order (the partition is contiguous), which is the
         * layout MPI_Reduce_scatter cuts its input into. */
        void *recv = s->bf16 ? (void *)(s->wire_recv + b->recv_off) : (void *)(s->recv + b->recv_off);
        MPI_CHECK(s->d, MPI_Ireduce_scatter(send, recv, b->rs_counts, type, op, MPI_COMM_WORLD, &b->req));
        return;
    }
    MPI_CHECK(s->d, MPI_Iallreduce(MPI_IN_PLACE, send, (int)(b->hi - b->lo), type, op, MPI_COMM_WORLD, &b->req));
}

void bf_grad_sync_ready(bf_grad_sync *s, int i) {
    BF_CHECK(i >= 0 && i < s->n_ranges, "gradient range %d out of 0..%d", i, s->n_ranges - 1);
    bucket *b = &s->buckets[s->bucket_of[i]];
    if (--b->pending == 0 && !b->started) start_bucket(s, b);
    /* Non-blocking collectives progress only inside MPI calls: poke the library so that buckets already
     * in flight move while backward computes. */
    if (s->d->world > 1) {
        int flag;
        for (int k = 0; k < s->n_buckets; k++)
            if (s->buckets[k].started && s->buckets[k].req != MPI_REQUEST_NULL)
                MPI_CHECK(s->d, MPI_Test(&s->buckets[k].req, &flag, MPI_STATUS_IGNORE));
    }
}

void bf_grad_sync_wait(bf_grad_sync *s) {
    double t = bf_wall_seconds();
    for (int k = 0; k < s->n_buckets; k++) {
        bucket *b = &s->buckets[k];
        if (!b->started) start_bucket(s, b);
        if (s->d->world == 1) continue;
        wait_req(s->d, &b->req, s->sharded ? "the gradient reduce-scatter" : "the gradient allreduce");
        if (s->sharded && s->bf16) bf_dist_from_bf16(s->grads + b->own_lo, s->wire_recv + b->recv_off, b->own_n);
        else if (s->sharded) memcpy(s->grads + b->own_lo, s->recv + b->recv_off, b->own_n * sizeof(float));
        else if (s->bf16) bf_dist_from_bf16(s->grads + b->lo, s->wire + b->lo, b->hi - b->lo);
    }
    s->d->comm_seconds += bf_wall_seconds() - t;
    /* Ready for the next step. */
    for (int k = 0; k < s->n_buckets; k++) {
        bucket *b = &s->buckets[k];
        b->pending = b->last - b->first + 1;
        b->started = 0;
        b->req = MPI_REQUEST_NULL;
    }
}
