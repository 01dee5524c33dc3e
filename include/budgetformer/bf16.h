/* bf16: mixed-precision matrix products (train.precision = bf16, --precision bf16; docs/PERFORMANCE.md).
 *
 * bf16 keeps fp32's 8-bit exponent and cuts the mantissa to 7 stored bits (8 with the implicit one), so a
 * value converted to bf16 (round to nearest even) has a relative error of at most 2^-8. The products here
 * take bf16 inputs and accumulate in fp32 into an fp32 output, through oneDNN's matmul (the avx512_core_bf16
 * or AMX kernels); everything else of the model stays fp32.
 *
 * Use: bf_bf16_check (refuses on a CPU without bf16 instructions, or a build without oneDNN), then
 * bf_bf16_gemm_create once; bf_bf16_from_f32 for the inputs; bf_bf16_matmul for each product.
 * src/kernels/model_mm.c and tests/test_bf16.c are the compiled examples. Kernels only: no MPI, no files. */
#ifndef BUDGETFORMER_BF16_H
#define BUDGETFORMER_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "budgetformer/util.h"

/* A bf16 value as its 16 bits: the upper half of the fp32 bit pattern. */
typedef uint16_t bf_bf16;

/* The precision of the matrix products of a model (bf_model.precision). */
typedef enum { BF_PREC_FP32 = 0, BF_PREC_BF16 = 1 } bf_precision;

/* "fp32" or "bf16". */
const char *bf_precision_name(bf_precision p);
/* Parses "fp32" / "bf16"; returns 0, or -1 with err listing the allowed words. */
int bf_precision_parse(const char *s, bf_precision *p, bf_err *err);

/* 0 when bf16 products can run at full speed here; -1 with err saying why not: the build lacks oneDNN, or
 * the CPU has neither avx512_bf16 nor amx_bf16 (named in the message). BF_BF16_EMULATE=1 accepts a CPU
 * without them (oneDNN then emulates bf16, slowly); BF_CPU_NO_BF16=1 makes the CPU check fail as on such a
 * CPU (tests). */
int bf_bf16_check(bf_err *err);
/* Short description of the bf16 back end for logs and provenance ("oneDNN 2.6.3, avx512_bf16"), or why
 * there is none. */
const char *bf_bf16_backend(void);

/* dst[i] = bf16(scale * src[i]), round to nearest even; denormals flush to signed zero (as the AVX512_BF16
 * instruction vcvtne2ps2bf16 does, so the vector and the plain C forms give the same bits); NaN stays NaN. */
void bf_bf16_from_f32(bf_bf16 *restrict dst, const float *restrict src, size_t n, float scale);
/* The fp32 value of a bf16 (exact). */
float bf_bf16_to_f32(bf_bf16 v);
/* One value, the plain C form of bf_bf16_from_f32 (the reference of the tests). */
bf_bf16 bf_bf16_round(float x);

/* The oneDNN engine, stream and matmul primitives: one of each layout (A or A^T, B or B^T, C = or +=),
 * with every size and leading dimension given at run time, so a handful of primitives created here serve
 * every shape and no step creates one. Their scratchpad is ours (user mode), sized at creation. */
typedef struct bf_bf16_gemm bf_bf16_gemm;
/* NULL with err when bf_bf16_check fails or oneDNN refuses. */
bf_bf16_gemm *bf_bf16_gemm_create(bf_err *err);
void bf_bf16_gemm_free(bf_bf16_gemm *g);

/* C[M,N] (+)= op(A)[M,K] · op(B)[K,N] in fp32 accumulation. A is stored [M,K] row-major with leading
 * dimension lda, or [K,M] when trans_a (op(A) = A^T); likewise B [K,N] or [N,K] when trans_b. C is fp32 with
 * leading dimension ldc; accumulate = 1 adds to it (beta 1), 0 overwrites it. M = 0 or N = 0 does nothing;
 * K = 0 clears C unless accumulating. */
void bf_bf16_matmul(bf_bf16_gemm *g, float *C, size_t ldc, const bf_bf16 *A, size_t lda, int trans_a,
                    const bf_bf16 *B, size_t ldb, int trans_b, size_t M, size_t N, size_t K, int accumulate);

/* `batch` products at once: product i uses A + i stride_a, B + i stride_b, C + i stride_c (elements), each
 * as in bf_bf16_matmul (K >= 1). One oneDNN call for the heads of an attention block instead of one per head. */
void bf_bf16_matmul_batched(bf_bf16_gemm *g, size_t batch, float *C, size_t ldc, size_t stride_c, const bf_bf16 *A,
                            size_t lda, size_t stride_a, int trans_a, const bf_bf16 *B, size_t ldb, size_t stride_b,
                            int trans_b, size_t M, size_t N, size_t K, int accumulate);

#endif
