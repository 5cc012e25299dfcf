#include "fingerprint.h"

#include <stdlib.h>
#include <string.h>

/* XXH64 as Yann Collet specifies it. */
static const uint64_t P1 = 11400714785074694791ull, P2 = 14029467366897019727ull,
                      P3 = 1609587929392839161ull, P4 = 9650029242287828579ull,
                      P5 = 2870177450012600261ull;

static uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

static uint64_t read64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v; /* little-endian hosts only, as the rest of Baton */
}

static uint32_t read32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static uint64_t round64(uint64_t acc, uint64_t input) {
    return rotl(acc + input * P2, 31) * P1;
}

static uint64_t merge64(uint64_t acc, uint64_t val) {
    return (acc ^ round64(0, val)) * P1 + P4;
}

uint64_t baton_xxh64(const void *data, size_t n, uint64_t seed) {
    const unsigned char *p = data, *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = seed + P1 + P2, v2 = seed + P2, v3 = seed, v4 = seed - P1;
        const unsigned char *limit = end - 32;
        do {
            v1 = round64(v1, read64(p));
            v2 = round64(v2, read64(p + 8));
            v3 = round64(v3, read64(p + 16));
            v4 = round64(v4, read64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = merge64(h, v1);
        h = merge64(h, v2);
        h = merge64(h, v3);
        h = merge64(h, v4);
    } else {
        h = seed + P5;
    }
    h += (uint64_t)n;
    for (; p + 8 <= end; p += 8) h = rotl(h ^ round64(0, read64(p)), 27) * P1 + P4;
    if (p + 4 <= end) {
        h = rotl(h ^ ((uint64_t)read32(p) * P1), 23) * P2 + P3;
        p += 4;
    }
    for (; p < end; p++) h = rotl(h ^ (*p * P5), 11) * P1;
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

typedef enum { PART_OTHER, PART_EMBEDDING, PART_HEAD, PART_LAYER } tensor_part;

/* Where a tensor belongs by its name; *layer is set for PART_LAYER. */
static tensor_part part_of(const char *name, int *layer) {
    if (strstr(name, "emb") != NULL || strstr(name, "ln0") != NULL ||
        strstr(name, "pre_ln") != NULL)
        return PART_EMBEDDING;
    if (strstr(name, "head") != NULL || strstr(name, "ln_out") != NULL) return PART_HEAD;
    const char *b = strstr(name, "blocks.");
    if (b == NULL || b[7] < '0' || b[7] > '9') return PART_OTHER;
    char *after = NULL;
    long v = strtol(b + 7, &after, 10);
    if (*after != '.' || v > 1 << 20) return PART_OTHER;
    *layer = (int)v;
    return PART_LAYER;
}

uint64_t baton_fingerprint_header(const baton_tensor_set *set) {
    uint64_t h = baton_xxh64("baton header v1", 15, 0);
    for (size_t k = 0; k < set->n_tensors; k++) {
        const baton_tensor *t = &set->tensors[set->by_name[k]];
        int64_t desc[2 + BATON_TENSOR_NDIM_MAX] = {t->dtype, t->ndim};
        for (int d = 0; d < t->ndim; d++) desc[2 + d] = t->shape[d];
        h = baton_xxh64(t->name, strlen(t->name) + 1, h);
        h = baton_xxh64(desc, sizeof desc, h);
    }
    return h;
}

uint64_t baton_fingerprint_range(const baton_tensor_set *set, int layer_begin, int layer_end,
                                 bool with_embedding, bool with_head) {
    uint64_t h = baton_xxh64("baton data v1", 13, 0);
    for (size_t k = 0; k < set->n_tensors; k++) {
        const baton_tensor *t = &set->tensors[set->by_name[k]];
        int layer = -1;
        tensor_part part = part_of(t->name, &layer);
        bool in = (part == PART_EMBEDDING && with_embedding) || (part == PART_HEAD && with_head) ||
                  (part == PART_LAYER && layer >= layer_begin && layer < layer_end);
        if (!in) continue;
        size_t bytes = (size_t)t->n_elements * baton_dtype_size(t->dtype);
        h = baton_xxh64(t->name, strlen(t->name) + 1, h);
        h = baton_xxh64(t->data, bytes, h);
    }
    return h;
}
