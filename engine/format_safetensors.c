/* safetensors: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}}
 * and the data section, to which the offsets are relative. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "tensor_set.h"

#define HEADER_BYTES_MAX ((uint64_t)100 << 20) /* the limit the reference implementation sets */
/* cJSON makes about one node per value; counting the separators first bounds its allocations. */
enum { HEADER_VALUES_MAX = 16 * BATON_TENSOR_COUNT_MAX };

/* Counts the values in a JSON text by its ',', '[' and '{' outside strings. */
static size_t st_count_values(const char *json, size_t len) {
    size_t n = 1;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];
        if (in_string) {
            if (c == '\\') i++;
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == ',' || c == '[' || c == '{') {
            n++;
        }
    }
    return n;
}

/* A JSON number that is an integer in [0, 2^53] (exact in a double). */
static int st_uint(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return 0;
    double d = v->valuedouble;
    if (!(d >= 0.0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static baton_status st_dtype(const baton_tensor *t, const cJSON *dtype, baton_dtype *out,
                             baton_error *err) {
    if (!cJSON_IsString(dtype)) return baton_fail(err, BATON_ERR_FORMAT, "%s: no dtype", t->name);
    const char *s = dtype->valuestring;
    if (strcmp(s, "F32") == 0) *out = BATON_F32;
    else if (strcmp(s, "F16") == 0) *out = BATON_F16;
    else if (strcmp(s, "BF16") == 0) *out = BATON_BF16;
    else {
        return baton_fail(err, BATON_ERR_UNSUPPORTED,
                          "%s: dtype %.32s is not supported (F32, F16 and BF16 are)", t->name, s);
    }
    return BATON_OK;
}

static baton_status st_tensor(const cJSON *item, uint64_t data_begin, uint64_t data_size,
                              baton_tensor *t, uint64_t *end, baton_error *err) {
    size_t len = strlen(item->string);
    if (len == 0 || len >= BATON_TENSOR_NAME_MAX) {
        return baton_fail(err, BATON_ERR_FORMAT, "tensor name '%.40s...' is not 1..%d bytes",
                          item->string, BATON_TENSOR_NAME_MAX - 1);
    }
    memcpy(t->name, item->string, len + 1);
    if (!cJSON_IsObject(item)) return baton_fail(err, BATON_ERR_FORMAT, "%s: not an object", t->name);
    baton_status st = st_dtype(t, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &t->dtype, err);
    if (st != BATON_OK) return st;
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsArray(shape)) return baton_fail(err, BATON_ERR_FORMAT, "%s: no shape", t->name);
    int ndim = cJSON_GetArraySize(shape);
    if (ndim > BATON_TENSOR_NDIM_MAX) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "%s: %d dimensions, more than %d", t->name,
                          ndim, BATON_TENSOR_NDIM_MAX);
    }
    uint64_t n = 1;
    const cJSON *dim;
    t->ndim = 0;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t d;
        if (!st_uint(dim, &d) || __builtin_mul_overflow(n, d, &n) || n > (UINT64_MAX >> 3)) {
            return baton_fail(err, BATON_ERR_FORMAT, "%s: bad shape", t->name);
        }
        t->shape[t->ndim++] = (int64_t)d;
    }
    t->n_elements = n;
    uint64_t begin, stop;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        !st_uint(cJSON_GetArrayItem(offsets, 0), &begin) ||
        !st_uint(cJSON_GetArrayItem(offsets, 1), &stop) || begin > stop) {
        return baton_fail(err, BATON_ERR_FORMAT, "%s: bad data_offsets", t->name);
    }
    if (stop > data_size) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "%s: data_offsets [%llu, %llu] run past the data section of %llu bytes",
                          t->name, (unsigned long long)begin, (unsigned long long)stop,
                          (unsigned long long)data_size);
    }
    if (stop - begin != n * baton_dtype_size(t->dtype)) {
        return baton_fail(err, BATON_ERR_FORMAT,
                          "%s: data_offsets span %llu bytes but the shape needs %llu", t->name,
                          (unsigned long long)(stop - begin),
                          (unsigned long long)(n * baton_dtype_size(t->dtype)));
    }
    t->file_offset = data_begin + begin;
    *end = data_begin + stop;
    return BATON_OK;
}

static int st_by_offset(const void *a, const void *b) {
    const baton_tensor *x = *(const baton_tensor *const *)a, *y = *(const baton_tensor *const *)b;
    return (x->file_offset > y->file_offset) - (x->file_offset < y->file_offset);
}

/* Tensors must not share bytes (empty tensors share nothing wherever they point). */
static baton_status st_check_overlap(baton_tensor_set *set, baton_error *err) {
    const baton_tensor **order = malloc((set->n_tensors ? set->n_tensors : 1) * sizeof *order);
    if (order == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < set->n_tensors; i++) {
        if (set->tensors[i].n_elements) order[n++] = &set->tensors[i];
    }
    qsort(order, n, sizeof *order, st_by_offset);
    baton_status st = BATON_OK;
    for (size_t i = 1; i < n && st == BATON_OK; i++) {
        const baton_tensor *prev = order[i - 1];
        uint64_t prev_end = prev->file_offset + prev->n_elements * baton_dtype_size(prev->dtype);
        if (order[i]->file_offset < prev_end) {
            st = baton_fail(err, BATON_ERR_FORMAT, "tensors %s and %s overlap", prev->name,
                            order[i]->name);
        }
    }
    free(order);
    return st;
}

static baton_status st_list(baton_tensor_set *set, const cJSON *root, uint64_t data_begin,
                            baton_error *err) {
    if (!cJSON_IsObject(root)) return baton_fail(err, BATON_ERR_FORMAT, "header is not a JSON object");
    size_t n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, root) n++;
    if (n > BATON_TENSOR_COUNT_MAX) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "%zu tensors, more than the %d read", n,
                          BATON_TENSOR_COUNT_MAX);
    }
    set->tensors = calloc(n ? n : 1, sizeof *set->tensors);
    if (set->tensors == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for %zu tensors", n);
    cJSON_ArrayForEach(item, root) {
        if (item->string != NULL && strcmp(item->string, "__metadata__") == 0) continue;
        baton_tensor *t = &set->tensors[set->n_tensors];
        uint64_t end;
        baton_status st = st_tensor(item, data_begin, set->size - data_begin, t, &end, err);
        if (st != BATON_OK) return st;
        t->data = set->base + t->file_offset;
        set->n_tensors++;
    }
    return st_check_overlap(set, err);
}

baton_status baton_format_safetensors_list(baton_tensor_set *set, baton_error *err) {
    if (set->size < 8) return baton_fail(err, BATON_ERR_FORMAT, "too short for a safetensors header");
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | set->base[i];
    if (header_len > HEADER_BYTES_MAX) {
        return baton_fail(err, BATON_ERR_FORMAT, "header of %llu bytes is over the 100 MiB limit",
                          (unsigned long long)header_len);
    }
    if (header_len > set->size - 8) {
        return baton_fail(err, BATON_ERR_FORMAT, "header of %llu bytes runs past the end of the file",
                          (unsigned long long)header_len);
    }
    const char *json = (const char *)set->base + 8;
    if (st_count_values(json, (size_t)header_len) > HEADER_VALUES_MAX) {
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "header holds more values than %d tensors need",
                          BATON_TENSOR_COUNT_MAX);
    }
    cJSON *root = cJSON_ParseWithLength(json, (size_t)header_len);
    if (root == NULL) return baton_fail(err, BATON_ERR_FORMAT, "header is not valid JSON");
    baton_status st = st_list(set, root, 8 + header_len, err);
    cJSON_Delete(root);
    return st;
}
