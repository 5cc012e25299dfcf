/* A restricted unpickler: just enough of Python's pickle to read the (Ordered)dict of tensors that
 * torch.save writes as data.pkl, and nothing that runs code.
 *
 * It builds a small tree of typed values. GLOBAL may name only collections.OrderedDict,
 * torch._utils._rebuild_tensor_v2 and torch.{Float,Half,BFloat16}Storage; REDUCE may call only
 * those; a persistent id must be a torch storage reference. Anything else is refused with a
 * message naming it. Depth, stack, marks, memo and the bytes of values are all bounded. */
#ifndef BATON_FORMAT_PICKLE_H
#define BATON_FORMAT_PICKLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"
#include "tensor_set.h"

enum {
    BATON_PICKLE_DEPTH_MAX = 32,
    BATON_PICKLE_STACK_MAX = 1 << 16,
    BATON_PICKLE_MARK_MAX = 64,
    BATON_PICKLE_MEMO_MAX = 1 << 20,
};
#define BATON_PICKLE_VALUE_BYTES_MAX ((size_t)256 << 20)

typedef enum {
    BATON_PICKLE_NONE,
    BATON_PICKLE_BOOL,
    BATON_PICKLE_INT,
    BATON_PICKLE_STR,
    BATON_PICKLE_TUPLE,
    BATON_PICKLE_LIST,
    BATON_PICKLE_DICT,
    BATON_PICKLE_GLOBAL,  /* one of the allowed names */
    BATON_PICKLE_STORAGE, /* a persistent id: ('storage', type, key, location, numel) */
    BATON_PICKLE_TENSOR,  /* _rebuild_tensor_v2(storage, offset, size, stride, grad, hooks) */
} baton_pickle_kind;

typedef enum {
    BATON_PICKLE_ORDERED_DICT,
    BATON_PICKLE_REBUILD_TENSOR,
    BATON_PICKLE_FLOAT_STORAGE,
    BATON_PICKLE_HALF_STORAGE,
    BATON_PICKLE_BFLOAT16_STORAGE,
} baton_pickle_global;

typedef struct {
    const char *bytes; /* UTF-8 inside the pickle's buffer, not NUL-terminated */
    size_t len;
} baton_pickle_str;

typedef struct baton_pickle_value baton_pickle_value;
struct baton_pickle_value {
    baton_pickle_kind kind;
    int depth; /* 1 for a leaf */
    union {
        bool boolean;
        int64_t integer;
        baton_pickle_str str;
        baton_pickle_global global;
        struct {
            baton_pickle_value **items; /* tuple, list: [n]; dict: [2 n] key, value, ... */
            size_t n, cap;
        } seq;
        struct {
            baton_dtype dtype;
            baton_pickle_str key;
            int64_t numel; /* elements of dtype, >= 0 */
        } storage;
        /* As pickled, unchecked beyond types: the caller knows the tensor's name for messages. */
        struct {
            const baton_pickle_value *storage; /* BATON_PICKLE_STORAGE */
            int64_t offset;                    /* in elements, >= 0 */
            int ndim;                          /* 0..BATON_TENSOR_NDIM_MAX */
            int64_t shape[BATON_TENSOR_NDIM_MAX];
            int64_t stride[BATON_TENSOR_NDIM_MAX];
        } tensor;
    };
};

typedef struct baton_pickle baton_pickle;

/* Unpickles data[0, size) up to STOP. Strings point into data, which must outlive the result.
 * Messages say "pickle: byte N: ..." without naming the file (the caller prefixes it). */
baton_status baton_pickle_load(const unsigned char *data, size_t size, baton_pickle **out,
                               baton_error *err);

/* The value STOP returned. */
const baton_pickle_value *baton_pickle_root(const baton_pickle *pickle);

/* Frees every value; NULL is a no-op. */
void baton_pickle_free(baton_pickle *pickle);

/* True when s holds exactly the NUL-free text text. */
bool baton_pickle_str_eq(baton_pickle_str s, const char *text);

#endif
