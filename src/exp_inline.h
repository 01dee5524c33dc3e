/* exp_inline: the vectorisable exp and the softmax row helpers that ops.c and attention_infer.c share.
 * Internal to the kernels (not part of the public headers). */
#ifndef BF_EXP_INLINE_H
#define BF_EXP_INLINE_H

#include <stddef.h>
#include <stdint.h>

/* exp of one float, written so that loops calling it vectorise (libm's expf is a scalar call per element, and
 * attention softmax and GELU call it tens of millions of times per step). Cephes' expf: x = n ln2 + r with
 * |r| <= ln2/2, a degree-6 polynomial for e^r, and 2^n built in the exponent bits. Relative error below 2e-7
 * over the clamped range; inputs below -87.3 give 0 (as softmax of a masked score should), above 88.7 are
 * clamped. Rounding to nearest uses the 1.5 * 2^23 trick, so there are no calls and no branches. */
static inline float exp_one(float in) {
    float x = in < -87.3f ? -87.3f : (in > 88.7f ? 88.7f : in);
    float t = x * 1.44269504088896341f + 12582912.0f;
    float fn = t - 12582912.0f;
    float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * r + 1.3981999507e-3f;
    y = y * r + 8.3334519073e-3f;
    y = y * r + 4.1665795894e-2f;
    y = y * r + 1.6666665459e-1f;
    y = y * r + 5.0000001201e-1f;
    y = y * r * r + r + 1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = ((int32_t)fn + 127) << 23};
    return in < -87.3f ? 0.0f : y * scale.f;
}

/* p[i] = exp(p[i] - mx) in place, returning the sum: the softmax numerator in one pass over the row, with 16
 * partial sums so the vector loop carries no reduction (separate subtract, exp and sum passes cost about 1.5
 * times as much on 128-wide attention rows). */
#define EXP_SUM_LANES 16
static inline float exp_shift_sum_inplace(float *restrict p, size_t n, float mx) {
    float acc[EXP_SUM_LANES] = {0};
    size_t i = 0;
    for (; i + EXP_SUM_LANES <= n; i += EXP_SUM_LANES)
        for (size_t j = 0; j < EXP_SUM_LANES; j++) {
            float e = exp_one(p[i + j] - mx);
            p[i + j] = e;
            acc[j] += e;
        }
    float s = 0.0f;
    for (; i < n; i++) {
        float e = exp_one(p[i] - mx);
        p[i] = e;
        s += e;
    }
    for (size_t j = 0; j < EXP_SUM_LANES; j++) s += acc[j];
    return s;
}

/* Largest of x[0..n), with 8 running maxima so the loop vectorises. */
#define MAX_LANES 8
static inline float max_lanes(const float *restrict x, size_t n) {
    float acc[MAX_LANES];
    for (size_t j = 0; j < MAX_LANES; j++) acc[j] = x[0];
    size_t i = 0;
    for (; i + MAX_LANES <= n; i += MAX_LANES)
        for (size_t j = 0; j < MAX_LANES; j++) acc[j] = x[i + j] > acc[j] ? x[i + j] : acc[j];
    float mx = x[0];
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (size_t j = 0; j < MAX_LANES; j++) mx = acc[j] > mx ? acc[j] : mx;
    return mx;
}

#endif
