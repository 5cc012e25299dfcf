/* A random RWKV-4 model built in memory for the bench: fp16 matrices of any shape filled fast
 * (a cheap PRNG, several threads), float vectors in the ranges real models have. Owned by the
 * bench: free it with bench_model_free, never baton_model_free. */
#ifndef BATON_BENCH_MODEL_H
#define BATON_BENCH_MODEL_H

#include "model.h"

/* n_layer layers of width n_embd, vocabulary n_vocab, FFN 4 n_embd; seed picks the weights.
 * Returns NULL when memory runs out. */
baton_model *bench_model_new(int n_layer, int n_embd, int n_vocab, uint64_t seed);
void bench_model_free(baton_model *model);

#endif
