/* Choosing the next token from logits: greedy, temperature, top-k, top-p, presence and frequency
 * penalties. Randomness comes in as one uniform number per draw, so a stream seeded on the host
 * gives the same tokens on any backend and under any batch. */
#ifndef BATON_SAMPLER_H
#define BATON_SAMPLER_H

#include <stdint.h>

#include "status.h"

typedef struct {
    float temperature;       /* 0: greedy (argmax, lowest id on ties); else > 0, at most 100 */
    int32_t top_k;           /* 0: off; else keep the k most likely */
    float top_p;             /* 1: off; else in (0, 1]: keep the smallest set with mass >= top_p */
    float presence_penalty;  /* subtracted once from each token already generated */
    float frequency_penalty; /* subtracted per occurrence of each token already generated */
    float uniform;           /* the draw, in [0, 1) */
} baton_sampling;

/* Checks ranges; a bad value gives BATON_ERR_ARG with a message naming it. */
baton_status baton_sampling_check(const baton_sampling *params, baton_error *err);

/* Splitmix64-seeded xoshiro256** stream of uniforms; the same seed gives the same sequence. */
typedef struct {
    uint64_t s[4];
} baton_rng;

void baton_rng_seed(baton_rng *rng, uint64_t seed);
/* Uniform in [0, 1) with 24 bits, exactly representable as float. */
float baton_rng_uniform(baton_rng *rng);

/* Returns the chosen token. counts (may be NULL) holds how often each token was generated so far.
 * scratch must hold 2 * n_vocab floats. logits are not modified. */
int32_t baton_sample(const float *logits, int32_t n_vocab, const baton_sampling *params,
                     const uint32_t *counts, float *scratch);

#endif
