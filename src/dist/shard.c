/* shard: the partition of the parameter block for the sharded optimiser, the gather and scatter of a
 * sharded array through rank 0, and the segmented allgather of the updated weights (see shard.h). */
#include "budgetformer/shard.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/util.h"
#include "dist_internal.h"

void bf_shard_range(size_t n, int rank, int world, size_t *lo, size_t *hi) {
    /* n < INT_MAX (bf_shard_init) and an int world keep n * world within size_t's 64 bits. */
    *lo = n * (size_t)rank / (size_t)world;
    *hi = n * (size_t)(rank + 1) / (size_t)world;
}

void bf_shard_init(bf_shard *s, size_t n, int rank, int world) {
    BF_CHECK(world >= 1 && rank >= 0 && rank < world, "rank %d of %d", rank, world);
    /* MPI counts and displacements are int: a larger block would need derived datatypes. */
    BF_CHECK(n < (size_t)INT_MAX, "the sharded optimiser needs fewer than %d parameters, not %zu", INT_MAX, n);
    memset(s, 0, sizeof *s);
    s->n = n;
    s->world = world;
    s->counts = bf_xcalloc((size_t)world, sizeof(int));
    s->displs = bf_xcalloc((size_t)world, sizeof(int));
    for (int r = 0; r < world; r++) {
        size_t lo, hi;
        bf_shard_range(n, r, world, &lo, &hi);
        s->counts[r] = (int)(hi - lo);
        s->displs[r] = (int)lo;
        if (r == rank) {
            s->lo = lo;
            s->hi = hi;
        }
    }
}

void bf_shard_free(bf_shard *s) {
    free(s->counts);
    free(s->displs);
    s->counts = s->displs = NULL;
}

size_t bf_shard_max_part(const bf_shard *s) {
    size_t mx = 0;
    for (int r = 0; r < s->world; r++)
        if ((size_t)s->counts[r] > mx) mx = (size_t)s->counts[r];
    return mx;
}

void bf_shard_gather_f32(bf_dist *d, const bf_shard *s, const float *part, float *full) {
    size_t own = s->hi - s->lo;
    if (d->world == 1) {
        memcpy(full, part, own * sizeof(float));
        return;
    }
    double t = bf_wall_seconds();
    MPI_Request req;
    BF_MPI_CHECK(d, MPI_Igatherv(part, (int)own, MPI_FLOAT, full, s->counts, s->displs, MPI_FLOAT, 0,
                                 MPI_COMM_WORLD, &req));
    bf_dist_wait_request(d, &req, "the gather of the sharded optimiser state");
    d->comm_seconds += bf_wall_seconds() - t;
}

void bf_shard_scatter_f32(bf_dist *d, const bf_shard *s, const float *full, float *part) {
    size_t own = s->hi - s->lo;
    if (d->world == 1) {
        memcpy(part, full, own * sizeof(float));
        return;
    }
    double t = bf_wall_seconds();
    MPI_Request req;
    BF_MPI_CHECK(d, MPI_Iscatterv(full, s->counts, s->displs, MPI_FLOAT, part, (int)own, MPI_FLOAT, 0,
                                  MPI_COMM_WORLD, &req));
    bf_dist_wait_request(d, &req, "the scatter of the sharded optimiser state");
    d->comm_seconds += bf_wall_seconds() - t;
}

/* ---- the segmented allgather of the weights ---- */

typedef struct {
    size_t lo, hi;
    int *counts, *displs; /* [world] each rank's part of the segment, displacements from lo */
    int started;
    MPI_Request req;
} segment;

struct bf_param_gather {
    bf_dist *d;
    float *block;
    segment *segs;
    int n_segs;
};

bf_param_gather *bf_param_gather_create(bf_dist *d, const bf_shard *s, float *block, const size_t *seg_lo,
                                        const size_t *seg_hi, int n_segs) {
    bf_param_gather *g = bf_xcalloc(1, sizeof *g);
    g->d = d;
    g->block = block;
    g->n_segs = n_segs;
    g->segs = bf_xcalloc((size_t)n_segs, sizeof(segment));
    for (int k = 0; k < n_segs; k++) {
        segment *sg = &g->segs[k];
        sg->lo = seg_lo[k];
        sg->hi = seg_hi[k];
        sg->counts = bf_xcalloc((size_t)s->world, sizeof(int));
        sg->displs = bf_xcalloc((size_t)s->world, sizeof(int));
        /* Rank r's part of the segment is the segment cut with [displs[r], displs[r] + counts[r]); the parts
         * follow each other in rank order, so the displacements grow with r as MPI_Allgatherv needs. */
        for (int r = 0; r < s->world; r++) {
            size_t a = (size_t)s->displs[r], b = a + (size_t)s->counts[r];
            size_t lo = a > sg->lo ? a : sg->lo, hi = b < sg->hi ? b : sg->hi;
            if (lo > sg->hi) lo = sg->hi;
            if (hi < lo) hi = lo; /* no part of this segment */
            sg->counts[r] = (int)(hi - lo);
            sg->displs[r] = (int)(lo - sg->lo);
        }
        sg->req = MPI_REQUEST_NULL;
    }
    return g;
}

void bf_param_gather_free(bf_param_gather *g) {
    if (!g) return;
    for (int k = 0; k < g->n_segs; k++) {
        free(g->segs[k].counts);
        free(g->segs[k].displs);
    }
    free(g->segs);
    free(g);
}

void bf_param_gather_start(bf_param_gather *g, int k) {
    BF_CHECK(k >= 0 && k < g->n_segs, "weight segment %d out of 0..%d", k, g->n_segs - 1);
    segment *sg = &g->segs[k];
    sg->started = 1;
    if (g->d->world == 1) return;
    BF_MPI_CHECK(g->d, MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g->block + sg->lo, sg->counts,
                                       sg->displs, MPI_FLOAT, MPI_COMM_WORLD, &sg->req));
    /* Progress for the segments in flight while the caller updates the next one. */
    int flag;
    for (int j = 0; j < k; j++)
        if (g->segs[j].req != MPI_REQUEST_NULL)
            BF_MPI_CHECK(g->d, MPI_Test(&g->segs[j].req, &flag, MPI_STATUS_IGNORE));
}

void bf_param_gather_wait(bf_param_gather *g) {
    double t = bf_wall_seconds();
    for (int k = 0; k < g->n_segs; k++) {
        segment *sg = &g->segs[k];
        if (!sg->started) bf_param_gather_start(g, k);
        if (g->d->world > 1) bf_dist_wait_request(g->d, &sg->req, "the allgather of the updated weights");
        sg->started = 0;
        sg->req = MPI_REQUEST_NULL;
    }
    g->d->comm_seconds += bf_wall_seconds() - t;
}

void bf_param_gather_skip(bf_param_gather *g, int k) {
    BF_CHECK(k >= 0 && k < g->n_segs, "weight segment %d out of 0..%d", k, g->n_segs - 1);
    g->segs[k].started = 1;
    g->segs[k].req = MPI_REQUEST_NULL;
}

/* ---- the gather of a table's listed rows ---- */

struct bf_row_gather {
    bf_dist *d;
    const bf_shard *s;
    float *block;
    size_t table_lo, width, max_rows;
    float *send, *recv;   /* [max_rows * width] */
    int *counts, *displs; /* [world] */
    const int32_t *rows;
    size_t n;
    MPI_Request req;
};

bf_row_gather *bf_row_gather_create(bf_dist *d, const bf_shard *s, float *block, size_t table_lo, size_t width,
                                    size_t max_rows) {
    bf_row_gather *g = bf_xcalloc(1, sizeof *g);
    g->d = d;
    g->s = s;
    g->block = block;
    g->table_lo = table_lo;
    g->width = width;
    g->max_rows = max_rows;
    size_t cap = (max_rows ? max_rows : 1) * width;
    BF_CHECK(cap < (size_t)INT_MAX, "row gather of %zu floats exceeds MPI's int counts", cap);
    g->send = bf_xcalloc(cap, sizeof(float));
    g->recv = bf_xcalloc(cap, sizeof(float));
    g->counts = bf_xcalloc((size_t)s->world, sizeof(int));
    g->displs = bf_xcalloc((size_t)s->world, sizeof(int));
    g->req = MPI_REQUEST_NULL;
    return g;
}

void bf_row_gather_free(bf_row_gather *g) {
    if (!g) return;
    free(g->send);
    free(g->recv);
    free(g->counts);
    free(g->displs);
    free(g);
}

/* The elements [*lo, *hi) of row `row` that rank r owns (empty: *lo == *hi). */
static void row_part(const bf_row_gather *g, int32_t row, int r, size_t *lo, size_t *hi) {
    size_t a = g->table_lo + (size_t)row * g->width, b = a + g->width;
    size_t pa = (size_t)g->s->displs[r], pb = pa + (size_t)g->s->counts[r];
    *lo = a > pa ? a : pa;
    *hi = b < pb ? b : pb;
    if (*hi < *lo) *hi = *lo;
}

void bf_row_gather_start(bf_row_gather *g, const int32_t *rows, size_t n) {
    BF_CHECK(n <= g->max_rows, "row gather of %zu rows, room for %zu", n, g->max_rows);
    g->rows = rows;
    g->n = n;
    int W = g->s->world, me = g->d->rank;
    size_t off = 0;
    for (int r = 0; r < W; r++) {
        size_t cnt = 0, lo, hi;
        for (size_t i = 0; i < n; i++) {
            row_part(g, rows[i], r, &lo, &hi);
            if (r == me && hi > lo) memcpy(g->send + cnt, g->block + lo, (hi - lo) * sizeof(float));
            cnt += hi - lo;
        }
        g->counts[r] = (int)cnt;
        g->displs[r] = (int)off;
        off += cnt;
    }
    if (W == 1) return;
    BF_MPI_CHECK(g->d, MPI_Iallgatherv(g->send, g->counts[me], MPI_FLOAT, g->recv, g->counts, g->displs, MPI_FLOAT,
                                       MPI_COMM_WORLD, &g->req));
}

void bf_row_gather_wait(bf_row_gather *g) {
    if (g->s->world == 1) return;
    double t = bf_wall_seconds();
    bf_dist_wait_request(g->d, &g->req, "the allgather of the embedding rows of the next update");
    g->req = MPI_REQUEST_NULL;
    g->d->comm_seconds += bf_wall_seconds() - t;
    for (int r = 0; r < g->s->world; r++) {
        if (r == g->d->rank) continue;
        const float *src = g->recv + g->displs[r];
        size_t lo, hi;
        for (size_t i = 0; i < g->n; i++) {
            row_part(g, g->rows[i], r, &lo, &hi);
            if (hi > lo) memcpy(g->block + lo, src, (hi - lo) * sizeof(float));
            src += hi - lo;
        }
    }
}
