/* Choosing the next token from logits: greedy, temperature, top-k, top-p, presence and frequency
 * penalties. Randomness comes in as one uniform number per draw, so a stream seeded on the host
 * gives the same tokens on any backend and under any batch. */
#ifndef BATON_SAMPLER_H
#define BATON_SAMPLER_H

#include <stddef.h>
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

/* Bytes of scratch that baton_sample needs for n_vocab tokens. */
size_t baton_sample_scratch_bytes(int32_t n_vocab);

/* Returns the chosen token; logits are not modified. counts (may be NULL) holds how often each
 * token was generated so far. scratch: baton_sample_scratch_bytes(n_vocab) bytes.
 *
 * The exact procedure, which the device sampler reproduces:
 *   1. l_i = logits_i - presence_penalty * (counts_i > 0) - frequency_penalty * counts_i
 *   2. temperature 0: the argmax of l (lowest id on ties); done.
 *   3. p_i = exp((l_i - max l) / temperature)
 *   4. rank tokens by p descending, ties by lower id; keep the first top_k (all when 0);
 *      then keep the shortest prefix of that ranking whose mass is >= top_p * (mass kept so far).
 *   5. target = uniform * (mass of the kept tokens, summed in id order); walk the kept tokens in
 *      id order summing p; the first token where the sum exceeds target is chosen (the last kept
 *      token if rounding leaves none). */
int32_t baton_sample(const float *logits, int32_t n_vocab, const baton_sampling *params,
                     const uint32_t *counts, void *scratch);

#endif
