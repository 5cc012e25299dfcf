/* What baton bench shares between its devices: a random RWKV-4 model built in memory (fp16
 * matrices of any shape filled fast by a cheap PRNG on several threads, float vectors in the
 * ranges real models have; owned by the bench: free it with bench_model_free, never
 * baton_model_free), the named shapes and a clock. */
#ifndef BATON_BENCH_MODEL_H
#define BATON_BENCH_MODEL_H

#include "model.h"

/* n_layer layers of width n_embd, vocabulary n_vocab, FFN 4 n_embd; seed picks the weights.
 * Returns NULL when memory runs out. */
baton_model *bench_model_new(int n_layer, int n_embd, int n_vocab, uint64_t seed);
void bench_model_free(baton_model *model);

/* Bytes of the fp16 matrices that a step reads (every layer's and the head). */
double bench_model_weight_bytes(int n_layer, int n_embd, int n_vocab);

/* "14b", "7b", "3b", "1b5" or "L,C,V" (L 1..256, C 8..16384 a multiple of 8, V 2..1000000). */
bool bench_shape_parse(const char *text, int *n_layer, int *n_embd, int *n_vocab);

/* Seconds on the monotonic clock. */
double bench_now_s(void);

#endif
