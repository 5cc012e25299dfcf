/* A model file's identity, so that a coordinator can check that every node serves the same model.
 *
 * Two parts, both 64-bit XXH64 hashes:
 *   - the header fingerprint: every tensor's name, dtype and shape, in name order. Cheap (no
 *     tensor data is read) and covers the whole file, so a node with another model, another
 *     shape or another dtype is told apart at once;
 *   - the range checksum: the bytes of the tensors a stage loads (layers [begin, end), with the
 *     embedding and/or the head), in name order. It reads only those tensors' pages, so a node
 *     checks what it loaded without touching the rest; the coordinator computes the same value
 *     from its own mapping of its own copy and compares.
 *
 * Which tensors belong where, by name (official or Hugging Face spelling): emb, ln0 and pre_ln
 * are the embedding; head and ln_out the head; blocks.N.* (rwkv.blocks.N.*) layer N. Any other
 * tensor is in the header fingerprint only. */
#ifndef BATON_FINGERPRINT_H
#define BATON_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tensor_set.h"

/* XXH64 of n bytes with seed (the reference algorithm). */
uint64_t baton_xxh64(const void *data, size_t n, uint64_t seed);

/* Names, dtypes and shapes of every tensor of set. */
uint64_t baton_fingerprint_header(const baton_tensor_set *set);

/* The bytes of the tensors of layers [layer_begin, layer_end) and, when asked, of the embedding
 * and the head. */
uint64_t baton_fingerprint_range(const baton_tensor_set *set, int layer_begin, int layer_end,
                                 bool with_embedding, bool with_head);

#endif
