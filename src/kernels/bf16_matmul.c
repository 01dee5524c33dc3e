/* bf16_matmul: C (+)= op(A) op(B) with bf16 A, B and fp32 C through oneDNN's matmul (see bf16.h).
 *
 * Two kinds of primitive, all made once and kept:
 *   - sixteen with every size and stride a run-time value (DNNL_RUNTIME_DIM_VAL), one per layout (A or A^T,
 *     B or B^T, = or +=, single or batched), made in bf_bf16_gemm_create: packed batches change the row
 *     count from one batch to the next and attention's size is each input's length, and a primitive per
 *     shape would mean creating primitives (about 0.4 ms each) inside training steps. oneDNN 2.6 runs them
 *     with its jit bf16 gemm (avx512_core_bf16 dot products);
 *   - fixed-shape blocks of BLOCK rows (or, for a product that reduces over the rows, such as a weight
 *     gradient, BLOCK of the reduction), made at a product's first use: there oneDNN picks its brgemm
 *     kernels, which use AMX tiles where the CPU has them (measured on a Sapphire Rapids core: 1000-1150
 *     GFLOP/s against the run-time primitive's 440 on the projections' shapes) and avx512_core_bf16
 *     otherwise. A large product runs as whole blocks plus a remainder through the run-time primitive; the
 *     blocks of a reduction accumulate into C in a fixed order, so results repeat bit for bit.
 * The memory objects that describe the operands are kept too, one per shape and operand, and pointed at the
 * data of each call (dnnl_memory_set_data_handle), so that after the first update a step allocates nothing
 * in oneDNN either (until the table of shapes is full, after which a new shape's objects are made and freed
 * per call). The scratchpad is ours (user mode), one block grown to the largest primitive's need. */
#include "budgetformer/bf16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "budgetformer/util.h"

#ifdef BF_HAVE_DNNL
#include <cblas.h>
#include <dnnl.h>

/* oneDNN (Debian's build) runs its threads through OpenMP, which takes every core unless OMP_NUM_THREADS
 * says otherwise, while the program sets OpenBLAS to one thread when neither variable is set (ranks are
 * the parallelism, docs/CLUSTER.md). libgomp comes with libdnnl; a weak reference finds its
 * omp_set_num_threads without linking OpenMP into the project. */
extern void omp_set_num_threads(int n) __attribute__((weak));

enum { BLOCK = 512, MAX_BLOCKS = 64, MEM_SLOTS = 4096 };

/* A fixed-shape product of BLOCK rows (or reduction) and its operands' memory objects. */
typedef struct {
    int idx;                     /* layout, as the run-time primitives' index (never batched) */
    size_t M, N, K, lda, ldb, ldc; /* the block's shape, one of M or K being BLOCK */
    dnnl_primitive_t prim;
    dnnl_memory_t a, b, c, scratch;
    size_t scratch_bytes;
} block_prim;

/* One operand's memory object for one shape: the key is every field but mem. */
typedef struct {
    dnnl_memory_t mem;
    int role, dt, trans; /* role: 0 A, 1 B, 2 C (one call uses three objects at once) */
    size_t batch, stride, rows, cols, ld;
} mem_slot;

struct bf_bf16_gemm {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t prim[16]; /* index trans_a | trans_b << 1 | accumulate << 2 | batched << 3 */
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t scratch_mem[16];
    dnnl_memory_desc_t scratch_md[16]; /* each primitive's scratchpad, kept from its creation */
    block_prim blocks[MAX_BLOCKS];
    int n_blocks;
    mem_slot *slots; /* [MEM_SLOTS] open addressing on the shape */
    int n_slots;
};

#define DNNL_OK(call)                                                                                              \
    do {                                                                                                           \
        dnnl_status_t st_ = (call);                                                                                \
        BF_CHECK(st_ == dnnl_success, "oneDNN: %s failed (status %d)", #call, (int)st_);                          \
    } while (0)

/* A 2-D (or, batched, 3-D: a batch of matrices) memory descriptor of data type dt, every size and stride
 * unknown until execution; column-major strides (1, ld) for a transposed operand. */
static void runtime_md(dnnl_memory_desc_t *md, dnnl_data_type_t dt, int trans, int batched) {
    dnnl_dim_t R = DNNL_RUNTIME_DIM_VAL;
    dnnl_dims_t dims = {R, R, R}, strides = {0};
    int nd = batched ? 3 : 2;
    if (batched) strides[0] = R;
    strides[nd - 2] = trans ? 1 : R;
    strides[nd - 1] = trans ? R : 1;
    DNNL_OK(dnnl_memory_desc_init_by_strides(md, nd, dims, dt, strides));
}

/* The primitive descriptor of C (+)= A B for these descriptors, with our scratchpad and, for +=, the sum
 * post-op (it reads the destination before writing it: beta = 1). */
static dnnl_status_t matmul_pd(const bf_bf16_gemm *g, const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b,
                               const dnnl_memory_desc_t *c, int acc, dnnl_primitive_desc_t *pd) {
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po = NULL;
    DNNL_OK(dnnl_matmul_desc_init(&md, a, b, NULL, c));
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (acc) {
        DNNL_OK(dnnl_post_ops_create(&po));
        DNNL_OK(dnnl_post_ops_append_sum(po, 1.0f));
        DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    dnnl_status_t st = dnnl_primitive_desc_create(pd, &md, attr, g->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    return st;
}

static int make_primitive(bf_bf16_gemm *g, int idx, size_t *scratch_bytes, bf_err *err) {
    int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1, batched = idx >> 3 & 1;
    dnnl_memory_desc_t a, b, c;
    runtime_md(&a, dnnl_bf16, ta, batched);
    runtime_md(&b, dnnl_bf16, tb, batched);
    runtime_md(&c, dnnl_f32, 0, batched);
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = matmul_pd(g, &a, &b, &c, acc, &pd);
    if (st != dnnl_success)
        return bf_fail(err, "oneDNN has no bf16 matmul for layout %d (status %d)", idx, (int)st);
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (sp) g->scratch_md[idx] = *sp;
    if (need > *scratch_bytes) *scratch_bytes = need;
    st = dnnl_primitive_create(&g->prim[idx], pd);
    dnnl_primitive_desc_destroy(pd);
    if (st != dnnl_success) return bf_fail(err, "oneDNN: creating the bf16 matmul failed (status %d)", (int)st);
    return 0;
}

bf_bf16_gemm *bf_bf16_gemm_create(bf_err *err) {
    if (bf_bf16_check(err)) return NULL;
    if (!getenv("OMP_NUM_THREADS") && omp_set_num_threads) { /* the same thread count as OpenBLAS */
        int threads = openblas_get_num_threads();
        omp_set_num_threads(threads > 0 ? threads : 1);
    }
    bf_bf16_gemm *g = bf_xcalloc(1, sizeof *g);
    if (dnnl_engine_create(&g->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success) {
        bf_fail(err, "oneDNN: no CPU engine");
        bf_bf16_gemm_free(g);
        return NULL;
    }
    size_t scratch = 0;
    for (int i = 0; i < 16; i++)
        if (make_primitive(g, i, &scratch, err)) {
            bf_bf16_gemm_free(g);
            return NULL;
        }
    /* One scratchpad for all (one product runs at a time); a byte descriptor wraps it for each primitive. */
    g->scratch_bytes = scratch;
    g->scratch = bf_xmalloc(scratch ? scratch : 64);
    g->slots = bf_xcalloc(MEM_SLOTS, sizeof(mem_slot));
    for (int i = 0; i < 16; i++)
        if (dnnl_memory_desc_get_size(&g->scratch_md[i]) > 0)
            DNNL_OK(dnnl_memory_create(&g->scratch_mem[i], &g->scratch_md[i], g->engine, g->scratch));
    return g;
}

void bf_bf16_gemm_free(bf_bf16_gemm *g) {
    if (!g) return;
    for (int i = 0; i < 16; i++) {
        if (g->scratch_mem[i]) dnnl_memory_destroy(g->scratch_mem[i]);
        if (g->prim[i]) dnnl_primitive_destroy(g->prim[i]);
    }
    for (int i = 0; i < g->n_blocks; i++) {
        block_prim *bp = &g->blocks[i];
        dnnl_memory_t mems[4] = {bp->a, bp->b, bp->c, bp->scratch};
        for (int j = 0; j < 4; j++)
            if (mems[j]) dnnl_memory_destroy(mems[j]);
        if (bp->prim) dnnl_primitive_destroy(bp->prim);
    }
    if (g->slots)
        for (int i = 0; i < MEM_SLOTS; i++)
            if (g->slots[i].mem) dnnl_memory_destroy(g->slots[i].mem);
    free(g->slots);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    free(g->scratch);
    free(g);
}

/* The memory descriptor of caller data: rows x cols, row-major with leading dimension ld, or (trans) stored
 * column-major, i.e. the transpose of a row-major [cols, rows] array with leading dimension ld; batch > 0:
 * that many such matrices, `stride` elements apart. */
static void plain_md(dnnl_memory_desc_t *md, dnnl_data_type_t dt, size_t batch, size_t stride, size_t rows,
                     size_t cols, size_t ld, int trans) {
    dnnl_dims_t dims = {0}, strides = {0};
    int nd = batch ? 3 : 2;
    if (batch) {
        dims[0] = (dnnl_dim_t)batch;
        strides[0] = (dnnl_dim_t)stride;
    }
    dims[nd - 2] = (dnnl_dim_t)rows;
    dims[nd - 1] = (dnnl_dim_t)cols;
    strides[nd - 2] = trans ? 1 : (dnnl_dim_t)ld;
    strides[nd - 1] = trans ? (dnnl_dim_t)ld : 1;
    DNNL_OK(dnnl_memory_desc_init_by_strides(md, nd, dims, dt, strides));
}

/* oneDNN's handle is not const, but a source is only read */
static void *unconst(const void *p) { return (void *)(uintptr_t)p; }

static dnnl_memory_t new_memory(const bf_bf16_gemm *g, dnnl_data_type_t dt, size_t batch, size_t stride,
                                size_t rows, size_t cols, size_t ld, int trans, const void *data) {
    dnnl_memory_desc_t md;
    plain_md(&md, dt, batch, stride, rows, cols, ld, trans);
    dnnl_memory_t mem;
    DNNL_OK(dnnl_memory_create(&mem, &md, g->engine, unconst(data)));
    return mem;
}

/* The kept memory object of this operand and shape, pointed at data; *made = 1 when the table was full and
 * the caller must destroy the object after use. */
static dnnl_memory_t kept_memory(bf_bf16_gemm *g, int role, dnnl_data_type_t dt, size_t batch, size_t stride,
                                 size_t rows, size_t cols, size_t ld, int trans, const void *data, int *made) {
    uint64_t h = 1469598103934665603ull;
    size_t key[8] = {(size_t)role, (size_t)dt, (size_t)trans, batch, stride, rows, cols, ld};
    for (int i = 0; i < 8; i++) h = (h ^ (uint64_t)key[i]) * 1099511628211ull;
    for (size_t probe = 0; probe < MEM_SLOTS; probe++) {
        mem_slot *sl = &g->slots[(h + probe) % MEM_SLOTS];
        if (!sl->mem) {
            if (g->n_slots >= MEM_SLOTS * 3 / 4) break; /* full enough: make and free per call */
            *sl = (mem_slot){.role = role, .dt = (int)dt, .trans = trans, .batch = batch, .stride = stride,
                             .rows = rows, .cols = cols, .ld = ld};
            sl->mem = new_memory(g, dt, batch, stride, rows, cols, ld, trans, data);
            g->n_slots++;
            *made = 0;
            return sl->mem;
        }
        if (sl->role == role && sl->dt == (int)dt && sl->trans == trans && sl->batch == batch &&
            sl->stride == stride && sl->rows == rows && sl->cols == cols && sl->ld == ld) {
            DNNL_OK(dnnl_memory_set_data_handle(sl->mem, unconst(data)));
            *made = 0;
            return sl->mem;
        }
    }
    *made = 1;
    return new_memory(g, dt, batch, stride, rows, cols, ld, trans, data);
}

/* A product through a run-time primitive: batch 0 is a single product, batch >= 1 that many. */
static void run_runtime(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t sc, const bf_bf16 *A,
                        size_t lda, size_t sa, int trans_a, const bf_bf16 *B, size_t ldb, size_t sb, int trans_b,
                        size_t M, size_t N, size_t K, int accumulate) {
    int idx = (trans_a ? 1 : 0) | (trans_b ? 2 : 0) | (accumulate ? 4 : 0) | (batch ? 8 : 0);
    int made[3];
    dnnl_memory_t a = kept_memory(g, 0, dnnl_bf16, batch, sa, M, K, lda, trans_a, A, &made[0]);
    dnnl_memory_t b = kept_memory(g, 1, dnnl_bf16, batch, sb, K, N, ldb, trans_b, B, &made[1]);
    dnnl_memory_t c = kept_memory(g, 2, dnnl_f32, batch, sc, M, N, ldc, 0, C, &made[2]);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, g->scratch_mem[idx]}};
    DNNL_OK(dnnl_primitive_execute(g->prim[idx], g->stream, g->scratch_mem[idx] ? 4 : 3, args));
    DNNL_OK(dnnl_stream_wait(g->stream));
    if (made[0]) dnnl_memory_destroy(a);
    if (made[1]) dnnl_memory_destroy(b);
    if (made[2]) dnnl_memory_destroy(c);
}

/* Points every scratchpad memory object at g->scratch again after it moved. */
static void repoint_scratch(bf_bf16_gemm *g) {
    for (int i = 0; i < 16; i++)
        if (g->scratch_mem[i]) DNNL_OK(dnnl_memory_set_data_handle(g->scratch_mem[i], g->scratch));
    for (int i = 0; i < g->n_blocks; i++)
        if (g->blocks[i].scratch) DNNL_OK(dnnl_memory_set_data_handle(g->blocks[i].scratch, g->scratch));
}

/* The fixed-shape primitive of this block, made at its first use; NULL when the table is full or oneDNN
 * refuses the shape (the caller then uses the run-time primitive). */
static block_prim *block_for(bf_bf16_gemm *g, int idx, size_t M, size_t N, size_t K, size_t lda, size_t ldb,
                             size_t ldc) {
    for (int i = 0; i < g->n_blocks; i++) {
        block_prim *bp = &g->blocks[i];
        if (bp->idx == idx && bp->M == M && bp->N == N && bp->K == K && bp->lda == lda && bp->ldb == ldb &&
            bp->ldc == ldc)
            return bp;
    }
    if (g->n_blocks == MAX_BLOCKS) return NULL;
    int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1;
    dnnl_memory_desc_t a, b, c;
    plain_md(&a, dnnl_bf16, 0, 0, M, K, lda, ta);
    plain_md(&b, dnnl_bf16, 0, 0, K, N, ldb, tb);
    plain_md(&c, dnnl_f32, 0, 0, M, N, ldc, 0);
    dnnl_primitive_desc_t pd;
    if (matmul_pd(g, &a, &b, &c, acc, &pd) != dnnl_success) return NULL;
    dnnl_status_t st;
    block_prim *bp = &g->blocks[g->n_blocks];
    *bp = (block_prim){.idx = idx, .M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldc = ldc};
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t need = sp ? dnnl_memory_desc_get_size(sp) : 0;
    st = dnnl_primitive_create(&bp->prim, pd);
    if (st != dnnl_success) {
        dnnl_primitive_desc_destroy(pd);
        return NULL;
    }
    if (need > g->scratch_bytes) {
        free(g->scratch);
        g->scratch = bf_xmalloc(need);
        g->scratch_bytes = need;
        repoint_scratch(g);
    }
    if (need) DNNL_OK(dnnl_memory_create(&bp->scratch, sp, g->engine, g->scratch));
    dnnl_primitive_desc_destroy(pd);
    bp->a = new_memory(g, dnnl_bf16, 0, 0, M, K, lda, ta, g->scratch);
    bp->b = new_memory(g, dnnl_bf16, 0, 0, K, N, ldb, tb, g->scratch);
    bp->c = new_memory(g, dnnl_f32, 0, 0, M, N, ldc, 0, g->scratch);
    g->n_blocks++;
    return bp;
}

static void run_block(bf_bf16_gemm *g, block_prim *bp, float *C, const bf_bf16 *A, const bf_bf16 *B) {
    DNNL_OK(dnnl_memory_set_data_handle(bp->a, unconst(A)));
    DNNL_OK(dnnl_memory_set_data_handle(bp->b, unconst(B)));
    DNNL_OK(dnnl_memory_set_data_handle(bp->c, C));
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, bp->a}, {DNNL_ARG_WEIGHTS, bp->b}, {DNNL_ARG_DST, bp->c}, {DNNL_ARG_SCRATCHPAD, bp->scratch}};
    DNNL_OK(dnnl_primitive_execute(bp->prim, g->stream, bp->scratch ? 4 : 3, args));
    DNNL_OK(dnnl_stream_wait(g->stream));
}

/* The one execution path. A single product of at least BLOCK rows runs as blocks of BLOCK rows (the rows of
 * A and C are independent) and the remaining rows at run time; one of fewer rows but a reduction of at least
 * BLOCK runs as blocks of the reduction, the first with the caller's accumulate flag and the rest adding to
 * C, then the remainder. Batched products (attention's, each input's length) use the run-time primitives. */
static void run_product(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t sc, const bf_bf16 *A,
                        size_t lda, size_t sa, int trans_a, const bf_bf16 *B, size_t ldb, size_t sb, int trans_b,
                        size_t M, size_t N, size_t K, int accumulate) {
    int layout = (trans_a ? 1 : 0) | (trans_b ? 2 : 0);
    block_prim *bp = NULL;
    if (batch == 0 && M >= BLOCK) {
        bp = block_for(g, layout | (accumulate ? 4 : 0), BLOCK, N, K, lda, ldb, ldc);
        if (bp) {
            size_t r = 0;
            for (; r + BLOCK <= M; r += BLOCK) /* A's rows r.. are at A + r lda, or A + r when stored transposed */
                run_block(g, bp, C + r * ldc, A + (trans_a ? r : r * lda), B);
            if (r < M)
                run_runtime(g, 0, C + r * ldc, ldc, 0, A + (trans_a ? r : r * lda), lda, 0, trans_a, B, ldb, 0,
                            trans_b, M - r, N, K, accumulate);
            return;
        }
    } else if (batch == 0 && K >= BLOCK) {
        block_prim *first = block_for(g, layout | (accumulate ? 4 : 0), M, N, BLOCK, lda, ldb, ldc);
        block_prim *rest = first ? block_for(g, layout | 4, M, N, BLOCK, lda, ldb, ldc) : NULL;
        if (first && rest) {
            size_t k = 0;
            for (; k + BLOCK <= K; k += BLOCK) /* reduction index k: A's column k, B's row k */
                run_block(g, k == 0 ? first : rest, C, A + (trans_a ? k * lda : k), B + (trans_b ? k : k * ldb));
            if (k < K)
                run_runtime(g, 0, C, ldc, 0, A + (trans_a ? k * lda : k), lda, 0, trans_a,
                            B + (trans_b ? k : k * ldb), ldb, 0, trans_b, M, N, K - k, 1);
            return;
        }
    }
    run_runtime(g, batch, C, ldc, sc, A, lda, sa, trans_a, B, ldb, sb, trans_b, M, N, K, accumulate);
}

void bf_bf16_matmul_batched(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t stride_c, const bf_bf16 *A,
                            size_t lda, size_t stride_a, int trans_a, const bf_bf16 *B, size_t ldb, size_t stride_b,
                            int trans_b, size_t M, size_t N, size_t K, int accumulate) {
    BF_CHECK(g && C && A && B && K > 0, "bf16 batched matmul: NULL operand or K = 0");
    BF_CHECK(ldc >= N && lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N),
             "bf16 matmul: leading dimensions %zu, %zu, %zu too small for %zu x %zu x %zu", lda, ldb, ldc, M, N, K);
    if (batch == 0 || M == 0 || N == 0) return;
    run_product(g, batch, C, ldc, stride_c, A, lda, stride_a, trans_a, B, ldb, stride_b, trans_b, M, N, K, accumulate);
}

void bf_bf16_matmul(bf_bf16_gemm *g, float *C, size_t ldc, const bf_bf16 *A, size_t lda, int trans_a,
                    const bf_bf16 *B, size_t ldb, int trans_b, size_t M, size_t N, size_t K, int accumulate) {
    BF_CHECK(g && C && A && B, "bf16 matmul: NULL operand");
    BF_CHECK(ldc >= N && lda >= (trans_a ? M : K) && ldb >= (trans_b ? K : N),
             "bf16 matmul: leading dimensions %zu, %zu, %zu too small for %zu x %zu x %zu", lda, ldb, ldc, M, N, K);
    if (M == 0 || N == 0) return;
    if (K == 0) {
        if (!accumulate)
            for (size_t r = 0; r < M; r++) memset(C + r * ldc, 0, N * sizeof(float));
        return;
    }
    run_product(g, 0, C, ldc, 0, A, lda, 0, trans_a, B, ldb, 0, trans_b, M, N, K, accumulate);
}

const char *bf_bf16_backend(void) {
    static char buf[128];
    const dnnl_version_t *v = dnnl_version();
    int avx512 = bf_bf16_check(NULL) == 0;
    snprintf(buf, sizeof buf, "oneDNN %d.%d.%d%s", v->major, v->minor, v->patch,
             avx512 ? "" : " (bf16 refused on this CPU)");
    return buf;
}

#else /* built without oneDNN: bf_bf16_check refuses, so nothing below is reached */

struct bf_bf16_gemm {
    int unused;
};

bf_bf16_gemm *bf_bf16_gemm_create(bf_err *err) {
    bf_bf16_check(err);
    return NULL;
}

void bf_bf16_gemm_free(bf_bf16_gemm *g) { free(g); }

void bf_bf16_matmul_batched(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t stride_c, const bf_bf16 *A,
                            size_t lda, size_t stride_a, int trans_a, const bf_bf16 *B, size_t ldb, size_t stride_b,
                            int trans_b, size_t M, size_t N, size_t K, int accumulate) {
    (void)g, (void)batch, (void)C, (void)ldc, (void)stride_c, (void)A, (void)lda, (void)stride_a, (void)trans_a,
        (void)B, (void)ldb, (void)stride_b, (void)trans_b, (void)M, (void)N, (void)K, (void)accumulate;
    BF_CHECK(0, "bf16 matmul: this build lacks oneDNN");
}

void bf_bf16_matmul(bf_bf16_gemm *g, float *C, size_t ldc, const bf_bf16 *A, size_t lda, int trans_a,
                    const bf_bf16 *B, size_t ldb, int trans_b, size_t M, size_t N, size_t K, int accumulate) {
    (void)g, (void)C, (void)ldc, (void)A, (void)lda, (void)trans_a, (void)B, (void)ldb, (void)trans_b, (void)M,
        (void)N, (void)K, (void)accumulate;
    BF_CHECK(0, "bf16 matmul: this build lacks oneDNN");
}

const char *bf_bf16_backend(void) { return "none (built without oneDNN)"; }

#endif
