/* exp_inline: the vectorisable exp and the softmax row helpers that ops.c and attention_infer.c share.
 * Internal to the kernels (not part of the public headers). */
#ifndef BF_EXP_INLINE_H
#define BF_EXP_INLINE_H

#include <stddef.h>

#include "vec16.h"

/* exp on 16 values, written on v16 values so that it vectorises without masked operations (libm's expf is
 * a scalar call per element, and attention softmax and GELU call it tens of millions of times per step).
 * Cephes' expf: x = n ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n built in the exponent
 * bits. Relative error below 2e-7 over the clamped range; inputs below -87.3 give 0 (as softmax of a masked
 * score should), above 88.7 are clamped; NaN stays NaN, so a diverged model does not print plausible numbers.
 * Rounding to nearest uses the 1.5 * 2^23 trick, so there are no calls and no branches. */
static inline v16 exp16(v16 in) {
    v16i lo = in < -87.3f, hi = in > 88.7f;
    v16 x = (v16)((lo & (v16i)v16_splat(-87.3f)) | (hi & (v16i)v16_splat(88.7f)) | (~(lo | hi) & (v16i)in));
    v16 t = x * 1.44269504088896341f + 12582912.0f;
    v16 fn = t - 12582912.0f;
    v16 r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    v16 y = v16_splat(1.9875691500e-4f);
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    v16i scale = (__builtin_convertvector(fn, v16i) + 127) << 23;
    return (v16)((v16i)(y * (v16)scale) & ~lo);
}

/* exp of one value (the tails of rows that are not a multiple of 16 long): lane 0 of exp16. */
static inline float exp_one(float in) { return exp16(v16_splat(in))[0]; }

/* p[i] = exp(p[i] - mx) in place, returning the sum: the softmax numerator in one pass over the row, the
 * partial sums kept in one vector (separate subtract, exp and sum passes cost about 1.5 times as much on
 * 128-wide attention rows). */
static inline float exp_shift_sum_inplace(float *restrict p, size_t n, float mx) {
    v16 acc = v16_splat(0.0f), m = v16_splat(mx);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        v16 e = exp16(v16_load(p + i) - m);
        v16_store(p + i, e);
        acc += e;
    }
    float s = v16_sum(acc);
    for (; i < n; i++) {
        float e = exp_one(p[i] - mx);
        p[i] = e;
        s += e;
    }
    return s;
}

/* Largest of x[0..n), in one vector of running maxima (16 lanes). */
static inline float max_lanes(const float *restrict x, size_t n) {
    size_t i = 0;
    float mx = x[0];
    if (n >= 16) {
        v16 acc = v16_load(x);
        for (i = 16; i + 16 <= n; i += 16) acc = v16_max(v16_load(x + i), acc);
        mx = v16_hmax(acc);
    }
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}

#endif
