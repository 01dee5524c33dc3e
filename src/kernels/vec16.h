/* vec16: 16 floats (and 8 doubles) as one GCC vector value, for the kernels whose loops the auto-vectoriser
 * handles badly (reductions kept in lanes, register-blocked products). The compiler maps a v16 onto the widest
 * registers (one AVX-512 register, two AVX registers, or scalar code). Loads and stores go through memcpy,
 * so pointers need no alignment. Reductions add the lanes in a fixed order: results are reproducible. */
#ifndef BF_VEC16_H
#define BF_VEC16_H

#include <stddef.h>
#include <string.h>

/* Without AVX-512 (the Debug/sanitizer build has no -march=native) GCC warns that passing a 64-byte vector
 * by value has an ABI that changes with -mavx512f. These helpers are static inline and never cross a
 * library boundary, so the warning does not apply. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

static inline v16 v16_load(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void v16_store(float *p, v16 v) { memcpy(p, &v, sizeof v); }

static inline v16 v16_splat(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

/* The lanes halved in a fixed tree (v[j] += v[j + 8], then + 4, + 2, + 1). */
static inline float v16_sum(v16 v) {
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) v[j] += v[j + w];
    return v[0];
}

/* 8 doubles, for sums of many floats kept in double (the gradient norm). */
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));

static inline v8d v8d_from_floats(const float *p) {
    v8f f;
    memcpy(&f, p, sizeof f);
    return __builtin_convertvector(f, v8d);
}

static inline double v8d_sum(v8d v) {
    for (int w = 4; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) v[j] += v[j + w];
    return v[0];
}

/* Lane-wise maximum (a compare and a blend; C has no vector ?:). A NaN in a is dropped, one in b kept. */
static inline v16 v16_max(v16 a, v16 b) {
    v16i gt = a > b;
    return (v16)((gt & (v16i)a) | (~gt & (v16i)b));
}

static inline float v16_hmax(v16 v) {
    for (int w = 8; w >= 1; w /= 2)
        for (int j = 0; j < w; j++) v[j] = v[j] > v[j + w] ? v[j] : v[j + w];
    return v[0];
}

#endif
