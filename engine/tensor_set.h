/* A model file seen as a set of named tensors, whatever its format.
 *
 * baton_tensor_set_open maps the file (it is never read twice into memory), recognises the format
 * by its first bytes (a zip archive written by torch.save, or safetensors) and lists every tensor
 * with its dtype, shape and where its bytes lie in the mapping. Every offset, length and shape has
 * been checked against the file's size before it is listed: a listed tensor's bytes are readable.
 * Tensor data keeps the file's dtype and may be unaligned. */
#ifndef BATON_TENSOR_SET_H
#define BATON_TENSOR_SET_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

enum {
    BATON_TENSOR_NDIM_MAX = 4,
    BATON_TENSOR_NAME_MAX = 128,
    BATON_TENSOR_COUNT_MAX = 65536,
};

typedef enum {
    BATON_FORMAT_PTH = 0,         /* torch.save zip archive with a pickled dict of tensors */
    BATON_FORMAT_SAFETENSORS = 1,
} baton_format;

typedef struct {
    char name[BATON_TENSOR_NAME_MAX]; /* NUL-terminated */
    baton_dtype dtype;
    int ndim;                               /* 0..BATON_TENSOR_NDIM_MAX */
    int64_t shape[BATON_TENSOR_NDIM_MAX];   /* row-major, contiguous */
    uint64_t n_elements;
    const void *data;                       /* n_elements * dtype size bytes inside the mapping */
    uint64_t file_offset;                   /* where data starts in the file */
} baton_tensor;

typedef struct baton_tensor_set {
    baton_format format;
    const char *path;        /* owned copy */
    const unsigned char *base; /* the whole file, mapped read-only (or the caller's buffer) */
    uint64_t size;
    size_t n_tensors;
    baton_tensor *tensors;   /* [n_tensors], in file order */
    int owns_mapping;
    size_t *by_name;         /* [n_tensors] indexes into tensors, sorted by name (for find) */
} baton_tensor_set;

/* Maps path and lists its tensors. On error *out is NULL and err says what is wrong. */
baton_status baton_tensor_set_open(const char *path, baton_tensor_set **out, baton_error *err);

/* Same over a buffer the caller keeps alive until free (used by the fuzzers and tests).
 * name appears in error messages. */
baton_status baton_tensor_set_from_memory(const void *data, uint64_t size, const char *name,
                                          baton_tensor_set **out, baton_error *err);

/* Unmaps and frees; NULL is a no-op. */
void baton_tensor_set_free(baton_tensor_set *set);

/* The tensor called name, or NULL. */
const baton_tensor *baton_tensor_set_find(const baton_tensor_set *set, const char *name);

/* The format readers behind open and from_memory, exposed for the fuzzers. Each lists the tensors
 * of set->base[0, set->size) into set->tensors and set->n_tensors (calloc'ed, freed by
 * baton_tensor_set_free); their messages do not name the file. */
baton_status baton_format_pth_list(baton_tensor_set *set, baton_error *err);
baton_status baton_format_safetensors_list(baton_tensor_set *set, baton_error *err);

#endif
