/* bf16_convert: fp32 -> bf16 with round to nearest even (see bf16.h). The AVX512_BF16 form converts 32
 * values per instruction (vcvtne2ps2bf16); the plain C form gives the same bits, so a build for a CPU
 * without the instruction still converts the same way (only slower). */
#include "budgetformer/bf16.h"

#include <string.h>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define BF16_HAVE_CVT 1
#endif

const char *bf_precision_name(bf_precision p) { return p == BF_PREC_BF16 ? "bf16" : "fp32"; }

int bf_precision_parse(const char *s, bf_precision *p, bf_err *err) {
    if (!strcmp(s, "fp32")) *p = BF_PREC_FP32;
    else if (!strcmp(s, "bf16")) *p = BF_PREC_BF16;
    else return bf_fail(err, "precision '%s': expected fp32 or bf16", s);
    return 0;
}

bf_bf16 bf_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf_bf16)((u >> 16) | 0x0040u); /* NaN stays a quiet NaN */
    if ((u & 0x7f800000u) == 0) return (bf_bf16)((u >> 16) & 0x8000u);          /* denormal: signed zero */
    /* Adding 0x7fff plus the lowest kept bit rounds half to even; a carry into the exponent is the right
     * result (up to infinity for values above bf16's largest). */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf_bf16)(u >> 16);
}

float bf_bf16_to_f32(bf_bf16 v) {
    uint32_t u = (uint32_t)v << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

void bf_bf16_from_f32(bf_bf16 *restrict dst, const float *restrict src, size_t n, float scale) {
    size_t i = 0;
#ifdef BF16_HAVE_CVT
    __m512 s = _mm512_set1_ps(scale);
    for (; i + 32 <= n; i += 32) {
        __m512 lo = _mm512_mul_ps(_mm512_loadu_ps(src + i), s), hi = _mm512_mul_ps(_mm512_loadu_ps(src + i + 16), s);
        __m512bh v = _mm512_cvtne2ps_pbh(hi, lo); /* lanes 0-15 from lo, 16-31 from hi */
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
#endif
    for (; i < n; i++) dst[i] = bf_bf16_round(src[i] * scale);
}
