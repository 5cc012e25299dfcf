/* What baton bench shares between its devices: a random RWKV-4 model built in memory (fp16
 * matrices of any shape filled fast by a cheap PRNG on several threads, float vectors in the
 * ranges real models have; owned by the bench: free it with bench_model_free, never
 * baton_model_free), the named shapes and a clock. */
#ifndef BATON_BENCH_MODEL_H
#define BATON_BENCH_MODEL_H

#include "backend.h"
#include "model.h"

/* n_layer layers of width n_embd, vocabulary n_vocab, FFN 4 n_embd; seed picks the weights.
 * Returns NULL when memory runs out. */
baton_model *bench_model_new(int n_layer, int n_embd, int n_vocab, uint64_t seed);
void bench_model_free(baton_model *model);

/* bench_model_new with seed 1, and the "model:" line (size, seconds to build) on stdout; NULL,
 * with a line on stderr, when memory runs out. */
baton_model *bench_model_announce(int n_layer, int n_embd, int n_vocab);

/* The whole model as one stage (embedding and head) with max_batch slots and sequences. */
baton_stage_config bench_stage_config(int n_layer, int max_batch, int max_tokens);

/* A step's buffers for up to max_batch sequences and max_tokens tokens, the tokens filled with
 * ids below n_vocab. */
typedef struct {
    int32_t *tokens;          /* [max_tokens] */
    int32_t *out;             /* [max_batch] sampled tokens */
    baton_seq *seqs;          /* [max_batch] */
    baton_sampling *sampling; /* [max_batch] */
} bench_buffers;

/* false, with a line on stderr, when memory runs out; free with bench_buffers_free either way. */
bool bench_buffers_new(bench_buffers *b, int max_batch, int max_tokens, int n_vocab);
void bench_buffers_free(bench_buffers *b);

/* Resets slots [0, n_seqs) and sets *step to n_seqs sequences of n_tokens each (slot i the
 * i-th) over b's tokens, sampled as `how` says (NULL: greedy), each its own uniform draw, the
 * samples into b->out. */
baton_status bench_step_fresh(baton_backend *be, const bench_buffers *b, int n_seqs, int n_tokens,
                              const baton_sampling *how, baton_step *step, baton_error *err);

/* Bytes of the fp16 matrices that a step reads (every layer's and the head). */
double bench_model_weight_bytes(int n_layer, int n_embd, int n_vocab);

/* "14b", "7b", "3b", "1b5" or "L,C,V" (L 1..256, C 8..16384 a multiple of 8, V 2..1000000). */
bool bench_shape_parse(const char *text, int *n_layer, int *n_embd, int *n_vocab);

/* Seconds on the monotonic clock. */
double bench_now_s(void);

#endif
