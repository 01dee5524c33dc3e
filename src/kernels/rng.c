/* rng: counter-based random numbers (see rng.h). */
#include "budgetformer/rng.h"

#include <math.h>

uint64_t bf_mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

uint64_t bf_rng_key(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t layer, uint32_t stream,
                    uint32_t head) {
    /* Absorb one key word per round: h = mix(h ^ word). Distinct keys give independent-looking words. */
    uint64_t h = bf_mix64(seed);
    h = bf_mix64(h ^ epoch);
    h = bf_mix64(h ^ index);
    h = bf_mix64(h ^ (((uint64_t)stream << 32) | layer));
    h = bf_mix64(h ^ head);
    return h;
}

double bf_rng_uniform(uint64_t h) { return ((double)(h >> 11) + 0.5) * 0x1.0p-53; }

double bf_rng_gumbel(uint64_t h) { return -log(-log(bf_rng_uniform(h))); }

double bf_rng_normal(uint64_t h) {
    const double two_pi = 6.283185307179586476925;
    double u1 = bf_rng_uniform(h), u2 = bf_rng_uniform(bf_mix64(h));
    return sqrt(-2.0 * log(u1)) * cos(two_pi * u2);
}
