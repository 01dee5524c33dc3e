/* dist: MPI wrappers and the bucketed gradient allreduce (see dist.h). */
#include "budgetformer/dist.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/util.h"

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

static void check_mpi(const bf_dist *d, int rc, const char *call) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    fprintf(stderr, "budgetformer: error: %s failed on rank %d of %d: %s\n", call, d->rank, d->world, msg);
    MPI_Abort(MPI_COMM_WORLD, 1);
    exit(1);
}

#define MPI_CHECK(d, call) check_mpi((d), (call), #call)

int bf_dist_init(bf_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->world = 1;
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
    MPI_CHECK(d, MPI_Barrier(MPI_COMM_WORLD));
    d->comm_seconds += bf_wall_seconds() - t;
}

static void allreduce(bf_dist *d, void *buf, size_t n, MPI_Datatype type, MPI_Op op) {
    if (d->world == 1 || n == 0) return;
    double t = bf_wall_seconds();
    MPI_CHECK(d, MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, type, op, MPI_COMM_WORLD));
    d->comm_seconds += bf_wall_seconds() - t;
}

void bf_dist_allreduce_sum_f32(bf_dist *d, float *buf, size_t n) { allreduce(d, buf, n, MPI_FLOAT, MPI_SUM); }
void bf_dist_allreduce_sum_f64(bf_dist *d, double *buf, size_t n) { allreduce(d, buf, n, MPI_DOUBLE, MPI_SUM); }
void bf_dist_allreduce_sum_i64(bf_dist *d, int64_t *buf, size_t n) { allreduce(d, buf, n, MPI_INT64_T, MPI_SUM); }
void bf_dist_allreduce_max_f64(bf_dist *d, double *buf, size_t n) { allreduce(d, buf, n, MPI_DOUBLE, MPI_MAX); }

static void bcast(bf_dist *d, void *buf, size_t n, MPI_Datatype type, int root) {
    if (d->world == 1 || n == 0) return;
    double t = bf_wall_seconds();
    MPI_CHECK(d, MPI_Bcast(buf, (int)n, type, root, MPI_COMM_WORLD));
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
    MPI_CHECK(d, MPI_Gather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (d->rank == 0)
        for (int r = 1; r < d->world; r++) displs[r] = displs[r - 1] + counts[r - 1];
    MPI_CHECK(d, MPI_Gatherv(send, bytes, MPI_BYTE, recv, counts, displs, MPI_BYTE, 0, MPI_COMM_WORLD));
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
} bucket;

struct bf_grad_sync {
    bf_dist *d;
    float *grads;
    int n_ranges;
    int *bucket_of;    /* [n_ranges] */
    bucket *buckets;
    int n_buckets;
};

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

void bf_grad_sync_free(bf_grad_sync *s) {
    if (!s) return;
    free(s->bucket_of);
    free(s->buckets);
    free(s);
}

int bf_grad_sync_buckets(const bf_grad_sync *s) { return s->n_buckets; }

static void start_bucket(bf_grad_sync *s, bucket *b) {
    b->started = 1;
    if (s->d->world == 1) return;
    MPI_CHECK(s->d, MPI_Iallreduce(MPI_IN_PLACE, s->grads + b->lo, (int)(b->hi - b->lo), MPI_FLOAT, MPI_SUM,
                                   MPI_COMM_WORLD, &b->req));
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
        if (s->d->world > 1) MPI_CHECK(s->d, MPI_Wait(&b->req, MPI_STATUS_IGNORE));
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
