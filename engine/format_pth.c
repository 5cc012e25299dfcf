/* torch.save checkpoints: a zip archive whose <prefix>/data.pkl pickles a dict of tensors, each
 * a view of a storage held as the stored entry <prefix>/data/<key>. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format_pickle.h"
#include "format_zip.h"
#include "tensor_set.h"

enum { ENTRY_NAME_MAX = 8192 };

/* Finds the single "<prefix>/data.pkl"; torch names the prefix after the file (or "archive"). */
static baton_status pth_find_pickle(const baton_zip *zip, const baton_zip_entry **pickle,
                                    size_t *prefix_len, baton_error *err) {
    *pickle = NULL;
    for (size_t i = 0; i < baton_zip_count(zip); i++) {
        const baton_zip_entry *e = baton_zip_entry_at(zip, i);
        const char *slash = strchr(e->name, '/');
        if (slash == NULL || slash == e->name || strcmp(slash, "/data.pkl") != 0) continue;
        if (*pickle != NULL) {
            return baton_fail(err, BATON_ERR_FORMAT, "zip holds both %s and %s", (*pickle)->name,
                              e->name);
        }
        *pickle = e;
        *prefix_len = (size_t)(slash - e->name);
    }
    if (*pickle == NULL) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "no <name>/data.pkl in the zip (not written by torch.save?)");
    }
    return BATON_OK;
}

static void pth_format_dims(char *buf, size_t cap, const int64_t *dims, int n) {
    size_t at = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < n && at < cap; i++) {
        at += (size_t)snprintf(buf + at, cap - at, i ? ", %lld" : "%lld", (long long)dims[i]);
    }
    if (at < cap) snprintf(buf + at, cap - at, ")");
}

/* Checks the tensor's view against its storage and the storage against its zip entry. */
static baton_status pth_resolve(const unsigned char *base, const baton_zip *zip, const char *prefix,
                                size_t prefix_len, const baton_pickle_value *v, baton_tensor *t,
                                baton_error *err) {
    const baton_pickle_value *s = v->tensor.storage;
    t->dtype = s->storage.dtype;
    t->ndim = v->tensor.ndim;
    uint64_t elem = baton_dtype_size(t->dtype), n = 1;
    for (int d = 0; d < t->ndim; d++) {
        int64_t dim = v->tensor.shape[d];
        if (dim < 0 || __builtin_mul_overflow(n, (uint64_t)dim, &n) || n > (UINT64_MAX >> 3)) {
            return baton_fail(err, BATON_ERR_FORMAT, "%s: bad shape", t->name);
        }
        t->shape[d] = dim;
    }
    t->n_elements = n;
    /* Row-major as torch's is_contiguous sees it: strides of size-1 dims do not matter. */
    int64_t expected = 1;
    for (int d = t->ndim - 1; d >= 0 && n > 0; d--) {
        if (t->shape[d] == 1) continue;
        if (v->tensor.stride[d] != expected) {
            char shape[128], stride[128];
            pth_format_dims(shape, sizeof shape, t->shape, t->ndim);
            pth_format_dims(stride, sizeof stride, v->tensor.stride, t->ndim);
            return baton_fail(err, BATON_ERR_UNSUPPORTED,
                              "%s: strides %s are not contiguous row-major for shape %s", t->name,
                              stride, shape);
        }
        expected *= t->shape[d]; /* no overflow: the product of all dims fit above */
    }
    uint64_t numel = (uint64_t)s->storage.numel, offset = (uint64_t)v->tensor.offset;
    if (offset > numel || n > numel - offset) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "%s: elements [%llu, %llu) lie outside its storage of %llu", t->name,
                          (unsigned long long)offset, (unsigned long long)offset + n,
                          (unsigned long long)numel);
    }
    char entry_name[ENTRY_NAME_MAX];
    int len = snprintf(entry_name, sizeof entry_name, "%.*s/data/%.*s", (int)prefix_len, prefix,
                       (int)s->storage.key.len, s->storage.key.bytes);
    if (len < 0 || (size_t)len >= sizeof entry_name || memchr(s->storage.key.bytes, 0, s->storage.key.len)) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: bad storage key", t->name);
    }
    const baton_zip_entry *e = baton_zip_find(zip, entry_name);
    if (e == NULL) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: storage %s is not in the zip", t->name, entry_name);
    }
    if (numel > UINT64_MAX / elem || e->size < numel * elem) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "%s: storage %s holds %llu bytes, fewer than %llu %s elements", t->name,
                          entry_name, (unsigned long long)e->size, (unsigned long long)numel,
                          baton_dtype_name(t->dtype));
    }
    t->file_offset = e->data_offset + offset * elem;
    t->data = base + t->file_offset;
    return BATON_OK;
}

static baton_status pth_list_dict(baton_tensor_set *set, const baton_zip *zip, const char *prefix,
                                  size_t prefix_len, const baton_pickle_value *root,
                                  baton_error *err) {
    if (root->kind != BATON_PICKLE_DICT) {
        return baton_fail(err, BATON_ERR_FORMAT, "data.pkl does not hold a dict of tensors");
    }
    size_t n = root->seq.n / 2;
    if (n > BATON_TENSOR_COUNT_MAX) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "%zu tensors, more than the %d read", n,
                          BATON_TENSOR_COUNT_MAX);
    }
    set->tensors = calloc(n ? n : 1, sizeof *set->tensors);
    if (set->tensors == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for %zu tensors", n);
    for (size_t i = 0; i < n; i++) {
        const baton_pickle_value *key = root->seq.items[2 * i], *value = root->seq.items[2 * i + 1];
        baton_tensor *t = &set->tensors[i];
        if (key->kind != BATON_PICKLE_STR || key->str.len == 0 ||
            key->str.len >= BATON_TENSOR_NAME_MAX || memchr(key->str.bytes, 0, key->str.len)) {
            return baton_fail(err, BATON_ERR_FORMAT,
                              "dict key %zu is not a tensor name (a string of 1..%d bytes)", i,
                              BATON_TENSOR_NAME_MAX - 1);
        }
        memcpy(t->name, key->str.bytes, key->str.len);
        t->name[key->str.len] = '\0';
        if (value->kind != BATON_PICKLE_TENSOR) {
            return baton_fail(err, BATON_ERR_FORMAT, "%s: not a tensor", t->name);
        }
        baton_status st = pth_resolve(set->base, zip, prefix, prefix_len, value, t, err);
        if (st != BATON_OK) return st;
        set->n_tensors++;
    }
    return BATON_OK;
}

baton_status baton_format_pth_list(baton_tensor_set *set, baton_error *err) {
    baton_zip *zip = NULL;
    baton_pickle *pickle = NULL;
    baton_status st = baton_zip_open(set->base, set->size, &zip, err);
    const baton_zip_entry *pkl = NULL;
    size_t prefix_len = 0;
    if (st == BATON_OK) st = pth_find_pickle(zip, &pkl, &prefix_len, err);
    if (st == BATON_OK) {
        st = baton_pickle_load(set->base + pkl->data_offset, (size_t)pkl->size, &pickle, err);
        if (st != BATON_OK) baton_error_prefix(err, "%s", pkl->name);
    }
    if (st == BATON_OK) {
        st = pth_list_dict(set, zip, pkl->name, prefix_len, baton_pickle_root(pickle), err);
    }
    baton_pickle_free(pickle);
    baton_zip_free(zip);
    return st;
}
