/* testrng: the small deterministic generator the C tests draw their inputs and weights from (splitmix64,
 * Box-Muller), independent of the library's own counter-based generator so tests do not test it with itself. */
#ifndef BUDGETFORMER_TESTRNG_H
#define BUDGETFORMER_TESTRNG_H

#include <math.h>
#include <stdint.h>

typedef struct {
    uint64_t s;
} test_rng;

static inline uint64_t rng_next(test_rng *r) {
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline double rng_uniform(test_rng *r) { return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0; }

static inline double rng_normal(test_rng *r) {
    double u1 = rng_uniform(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

#endif
