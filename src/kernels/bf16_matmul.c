/* bf16_matmul: C (+)= op(A) op(B) with bf16 A, B and fp32 C through oneDNN's matmul (see bf16.h).
 *
 * Every size and stride is a run-time value (DNNL_RUNTIME_DIM_VAL), so the eight layouts (A or A^T, B or
 * B^T, = or +=), single or batched, are sixteen primitives made once in bf_bf16_gemm_create: packed batches change the row count
 * from one batch to the next, and a primitive per shape would mean creating primitives inside training
 * steps. With run-time sizes oneDNN 2.6 picks its jit bf16 gemm (avx512_core_bf16 dot products, AMX where
 * present), measured here as fast as the fixed-shape brgemm kernels on the model's projections. The
 * scratchpad is ours (user mode), one block sized at creation for the largest primitive. */
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

struct bf_bf16_gemm {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_primitive_t prim[16]; /* index trans_a | trans_b << 1 | accumulate << 2 | batched << 3 */
    void *scratch;
    size_t scratch_bytes;
    dnnl_memory_t scratch_mem[16];
    dnnl_memory_desc_t scratch_md[16]; /* each primitive's scratchpad, kept from its creation */
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

static int make_primitive(bf_bf16_gemm *g, int idx, size_t *scratch_bytes, bf_err *err) {
    int ta = idx & 1, tb = idx >> 1 & 1, acc = idx >> 2 & 1, batched = idx >> 3 & 1;
    dnnl_memory_desc_t a, b, c;
    runtime_md(&a, dnnl_bf16, ta, batched);
    runtime_md(&b, dnnl_bf16, tb, batched);
    runtime_md(&c, dnnl_f32, 0, batched);
    dnnl_matmul_desc_t md;
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po = NULL;
    DNNL_OK(dnnl_matmul_desc_init(&md, &a, &b, NULL, &c));
    DNNL_OK(dnnl_primitive_attr_create(&attr));
    DNNL_OK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (acc) { /* C += : the sum post-op reads the destination before writing it (beta = 1) */
        DNNL_OK(dnnl_post_ops_create(&po));
        DNNL_OK(dnnl_post_ops_append_sum(po, 1.0f));
        DNNL_OK(dnnl_primitive_attr_set_post_ops(attr, po));
    }
    dnnl_primitive_desc_t pd;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &md, attr, g->engine, NULL);
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
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
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    free(g->scratch);
    free(g);
}

/* A memory object over caller data: rows x cols, row-major with leading dimension ld, or (trans) stored
 * column-major, i.e. the transpose of a row-major [cols, rows] array with leading dimension ld; batch > 0:
 * that many such matrices, `stride` elements apart. */
static dnnl_memory_t wrap(const bf_bf16_gemm *g, dnnl_data_type_t dt, size_t batch, size_t stride, size_t rows,
                          size_t cols, size_t ld, int trans, const void *data) {
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
    dnnl_memory_desc_t md;
    DNNL_OK(dnnl_memory_desc_init_by_strides(&md, nd, dims, dt, strides));
    dnnl_memory_t mem;
    /* oneDNN's handle is not const, but a source is only read */
    DNNL_OK(dnnl_memory_create(&mem, &md, g->engine, (void *)(uintptr_t)data));
    return mem;
}

/* The one execution path: batch 0 is a single product, batch >= 1 that many (the 3-D primitives). */
static void run_product(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t sc, const bf_bf16 *A,
                        size_t lda, size_t sa, int trans_a, const bf_bf16 *B, size_t ldb, size_t sb, int trans_b,
                        size_t M, size_t N, size_t K, int accumulate) {
    int idx = (trans_a ? 1 : 0) | (trans_b ? 2 : 0) | (accumulate ? 4 : 0) | (batch ? 8 : 0);
    dnnl_memory_t a = wrap(g, dnnl_bf16, batch, sa, M, K, lda, trans_a, A);
    dnnl_memory_t b = wrap(g, dnnl_bf16, batch, sb, K, N, ldb, trans_b, B);
    dnnl_memory_t c = wrap(g, dnnl_f32, batch, sc, M, N, ldc, 0, C);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}, {DNNL_ARG_SCRATCHPAD, g->scratch_mem[idx]}};
    DNNL_OK(dnnl_primitive_execute(g->prim[idx], g->stream, g->scratch_mem[idx] ? 4 : 3, args));
    DNNL_OK(dnnl_stream_wait(g->stream));
    dnnl_memory_destroy(a);
    dnnl_memory_destroy(b);
    dnnl_memory_destroy(c);
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
