/* What the tokenizer kinds share behind engine/tokenizer.h: the handle's layout, a growable id
 * list, a byte trie for longest matches, file reading. Not part of the public contract. */
#ifndef BATON_TOKENIZER_INTERNAL_H
#define BATON_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"
#include "tokenizer.h"

/* A growable list of token ids. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} tok_ids;

/* Appends id; false when memory runs out. */
bool tok_ids_push(tok_ids *a, int32_t id);

/* Encodes text[0..len) by appending to out; fails only for memory (BATON_ERR_NOMEM). */
typedef baton_status (*tok_encode_fn)(const baton_tokenizer *tok, const uint8_t *text, size_t len,
                                      tok_ids *out, baton_error *err);

struct baton_tokenizer {
    baton_tokenizer_kind kind;
    int32_t n_vocab;
    int32_t eot;          /* -1 when none */
    uint32_t *token_off;  /* [n_vocab + 1]: token id's bytes are token_data[off[id], off[id+1]) */
    char *token_data;
    tok_encode_fn encode;
    void *impl;           /* the kind's own tables */
    void (*impl_free)(void *impl);
};

/* Allocates tok->token_off for n_vocab ids (all empty) and token_data for total bytes; the
 * loaders fill them in id order. */
baton_status tok_alloc_tokens(baton_tokenizer *tok, int32_t n_vocab, size_t total_bytes,
                              baton_error *err);

/* Reads a whole file of at most BATON_TOKENIZER_FILE_MAX bytes into a malloc'ed buffer with a NUL
 * after it. */
baton_status tok_read_file(const char *path, char **data, size_t *len, baton_error *err);

/* The loaders: fill tok (already zeroed, kind set) from a file's contents; on failure the caller
 * frees tok. Messages name path. */
baton_status tok_bpe_load(baton_tokenizer *tok, const char *path, const char *data, size_t len,
                          baton_error *err);
baton_status tok_world_load(baton_tokenizer *tok, const char *path, const char *data, size_t len,
                            baton_error *err);

/* A byte trie mapping byte strings to values >= 0, for longest-prefix matches. Edges live in one
 * open-addressing hash table keyed by (node, byte), so a node costs 4 bytes whatever its
 * fan-out. */
typedef struct {
    int32_t *value;   /* [n_nodes]: the value of the string ending here, or -1 */
    uint32_t n_nodes, cap_nodes;
    uint64_t *edge_key; /* [cap_edges]: (node << 8 | byte) + 1, 0 when empty */
    uint32_t *edge_child;
    uint32_t n_edges, cap_edges; /* cap_edges a power of two */
} tok_trie;

/* Zeroes t and makes its root. */
bool tok_trie_init(tok_trie *t);
void tok_trie_free(tok_trie *t);
/* Adds s[0..n) (n >= 1) with value. Returns BATON_OK, BATON_ERR_NOMEM, or BATON_ERR_FORMAT when
 * s is already there (*old gets its value). */
baton_status tok_trie_insert(tok_trie *t, const uint8_t *s, size_t n, int32_t value, int32_t *old);
/* The value of the longest string in t that is a prefix of s[0..n), its length in *match_len;
 * -1 (and *match_len 0) when none is. */
int32_t tok_trie_longest(const tok_trie *t, const uint8_t *s, size_t n, size_t *match_len);

#endif
