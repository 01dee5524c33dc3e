/* rng: counter-based random numbers with no hidden state.
 *
 * Every draw is a pure function of a key: value = mix(seed, epoch, index, layer, stream, head), where mix is
 * a chain of splitmix64 finalisers (one absorb-and-mix round per key word). Nothing depends on the rank, the
 * batch position or the world size, so any rank can recompute any draw, and a resumed run draws the same
 * numbers. Streams separate the independent uses of the same key.
 */
#ifndef BUDGETFORMER_RNG_H
#define BUDGETFORMER_RNG_H

#include <stdint.h>

enum bf_rng_stream {
    BF_STREAM_GUMBEL = 1,  /* exploration: Gumbel noise per (input, layer, head) */
    BF_STREAM_COIN = 2,    /* exploration: explore-or-not coin per (input, layer) */
    BF_STREAM_KDRAW = 3,   /* exploration: the random budget per (input, layer) */
    BF_STREAM_SHUFFLE = 4, /* epoch order: Fisher-Yates swaps, index = position */
    BF_STREAM_INIT = 5,    /* parameter initialisation: index = element, layer = tensor number */
    BF_STREAM_SPLIT = 6,   /* dataset hold-out split */
    BF_STREAM_SANDWICH = 7 /* train.sandwich: the random budget of an update, epoch = update number */
};

/* splitmix64 finaliser: a bijection on 64-bit words with full avalanche. */
uint64_t bf_mix64(uint64_t x);

/* The 64-bit hash of a full key. */
uint64_t bf_rng_key(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t layer, uint32_t stream,
                    uint32_t head);

/* Uniform double in the open interval (0, 1) from a 64-bit hash: ((h >> 11) + 0.5) / 2^53. */
double bf_rng_uniform(uint64_t h);

/* Standard Gumbel draw -log(-log U), U = bf_rng_uniform(h). */
double bf_rng_gumbel(uint64_t h);

/* Standard normal draw (Box-Muller on two uniforms from h and mix(h)). */
double bf_rng_normal(uint64_t h);

#endif
