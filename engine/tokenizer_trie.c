/* The byte trie behind World's greedy longest match and BPE's added-token matching. */
#include <stdlib.h>

#include "tokenizer_internal.h"

static uint64_t edge_hash(uint64_t key) {
    /* splitmix64's finalizer: keys differ in low bits only, so mix them all up. */
    key ^= key >> 30;
    key *= 0xbf58476d1ce4e5b9ULL;
    key ^= key >> 27;
    key *= 0x94d049bb133111ebULL;
    key ^= key >> 31;
    return key;
}

static uint64_t edge_key(uint32_t node, uint8_t byte) { return (((uint64_t)node << 8) | byte) + 1; }

static uint32_t *edge_slot(const tok_trie *t, uint64_t key) {
    uint32_t mask = t->cap_edges - 1;
    for (uint32_t i = (uint32_t)edge_hash(key) & mask;; i = (i + 1) & mask) {
        if (t->edge_key[i] == key || t->edge_key[i] == 0) return &t->edge_child[i];
    }
}

static bool edges_grow(tok_trie *t) {
    uint32_t cap = t->cap_edges ? t->cap_edges * 2 : 1024;
    if (cap == 0 || cap > (1u << 30)) return false;
    tok_trie bigger = *t;
    bigger.cap_edges = cap;
    bigger.edge_key = calloc(cap, sizeof *bigger.edge_key);
    bigger.edge_child = calloc(cap, sizeof *bigger.edge_child);
    if (bigger.edge_key == NULL || bigger.edge_child == NULL) {
        free(bigger.edge_key);
        free(bigger.edge_child);
        return false;
    }
    for (uint32_t i = 0; i < t->cap_edges; i++) {
        if (t->edge_key[i] == 0) continue;
        uint32_t *slot = edge_slot(&bigger, t->edge_key[i]);
        bigger.edge_key[slot - bigger.edge_child] = t->edge_key[i];
        *slot = t->edge_child[i];
    }
    free(t->edge_key);
    free(t->edge_child);
    *t = bigger;
    return true;
}

bool tok_trie_init(tok_trie *t) {
    *t = (tok_trie){0};
    t->cap_nodes = 256;
    t->value = malloc(t->cap_nodes * sizeof *t->value);
    if (t->value == NULL || !edges_grow(t)) {
        tok_trie_free(t);
        return false;
    }
    t->value[0] = -1;
    t->n_nodes = 1;
    return true;
}

void tok_trie_free(tok_trie *t) {
    free(t->value);
    free(t->edge_key);
    free(t->edge_child);
    *t = (tok_trie){0};
}

baton_status tok_trie_insert(tok_trie *t, const uint8_t *s, size_t n, int32_t value, int32_t *old) {
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = edge_key(node, s[i]);
        uint32_t *slot = edge_slot(t, key);
        if (t->edge_key[slot - t->edge_child] == key) {
            node = *slot;
            continue;
        }
        /* Keep the table at most half full so probes stay short. */
        if ((t->n_edges + 1) * 2 > t->cap_edges) {
            if (!edges_grow(t)) return BATON_ERR_NOMEM;
            slot = edge_slot(t, key);
        }
        if (t->n_nodes == t->cap_nodes) {
            if (t->cap_nodes > (1u << 29)) return BATON_ERR_NOMEM;
            int32_t *grown = realloc(t->value, 2 * (size_t)t->cap_nodes * sizeof *grown);
            if (grown == NULL) return BATON_ERR_NOMEM;
            t->value = grown;
            t->cap_nodes *= 2;
        }
        uint32_t child = t->n_nodes++;
        t->value[child] = -1;
        t->edge_key[slot - t->edge_child] = key;
        *slot = child;
        t->n_edges++;
        node = child;
    }
    if (t->value[node] >= 0) {
        if (old != NULL) *old = t->value[node];
        return BATON_ERR_FORMAT;
    }
    t->value[node] = value;
    return BATON_OK;
}

int32_t tok_trie_longest(const tok_trie *t, const uint8_t *s, size_t n, size_t *match_len) {
    int32_t best = -1;
    size_t best_len = 0;
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = edge_key(node, s[i]);
        const uint32_t *slot = edge_slot(t, key);
        if (t->edge_key[slot - t->edge_child] != key) break;
        node = *slot;
        if (t->value[node] >= 0) {
            best = t->value[node];
            best_len = i + 1;
        }
    }
    *match_len = best_len;
    return best;
}
