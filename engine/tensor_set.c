#include "tensor_set.h"

#include <stdlib.h>
#include <string.h>

#include "mapped_file.h"

static int ts_by_name_ctx_cmp(const void *a, const void *b, void *ctx) {
    const baton_tensor *t = ctx;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Sorts an index by name for find, refusing a name given twice (a dict or JSON object that names
 * a tensor twice means one of them would be silently lost). */
static baton_status ts_index(baton_tensor_set *set, baton_error *err) {
    set->by_name = malloc((set->n_tensors ? set->n_tensors : 1) * sizeof *set->by_name);
    if (set->by_name == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < set->n_tensors; i++) set->by_name[i] = i;
    qsort_r(set->by_name, set->n_tensors, sizeof *set->by_name, ts_by_name_ctx_cmp, set->tensors);
    for (size_t i = 1; i < set->n_tensors; i++) {
        const char *name = set->tensors[set->by_name[i]].name;
        if (strcmp(set->tensors[set->by_name[i - 1]].name, name) == 0) {
            return baton_fail(err, BATON_ERR_FORMAT, "tensor %s appears twice", name);
        }
    }
    return BATON_OK;
}

static int ts_is_zip(const unsigned char *p, uint64_t size) {
    return size >= 4 && p[0] == 'P' && p[1] == 'K' &&
           ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

/* safetensors starts with an 8-byte length and then the JSON header's '{'. */
static int ts_is_safetensors(const unsigned char *p, uint64_t size) {
    return size >= 9 && p[8] == '{';
}

static baton_status ts_list(baton_tensor_set *set, baton_error *err) {
    baton_status st;
    if (ts_is_zip(set->base, set->size)) {
        set->format = BATON_FORMAT_PTH;
        st = baton_format_pth_list(set, err);
    } else if (ts_is_safetensors(set->base, set->size)) {
        set->format = BATON_FORMAT_SAFETENSORS;
        st = baton_format_safetensors_list(set, err);
    } else if (set->size >= 2 && set->base[0] == 0x80 && set->base[1] <= 5) {
        st = baton_fail(err, BATON_ERR_UNSUPPORTED,
                        "a legacy torch.save file (a bare pickle, before PyTorch 1.6); save it "
                        "again with a current torch.save, which writes a zip");
    } else {
        st = baton_fail(err, BATON_ERR_FORMAT,
                        "neither a torch.save .pth (zip) nor a .safetensors file");
    }
    if (st == BATON_OK) st = ts_index(set, err);
    if (st != BATON_OK) baton_error_prefix(err, "%s", set->path);
    return st;
}

static baton_status ts_new(const char *name, baton_tensor_set **out, baton_error *err) {
    *out = calloc(1, sizeof **out);
    char *path = strdup(name);
    if (*out == NULL || path == NULL) {
        free(*out);
        free(path);
        *out = NULL;
        return baton_fail(err, BATON_ERR_NOMEM, "%s: out of memory", name);
    }
    (*out)->path = path;
    return BATON_OK;
}

baton_status baton_tensor_set_open(const char *path, baton_tensor_set **out, baton_error *err) {
    baton_tensor_set *set;
    baton_status st = ts_new(path, &set, err);
    if (st != BATON_OK) {
        *out = NULL;
        return st;
    }
    baton_mapped_file file;
    st = baton_mapped_file_open(path, &file, err);
    if (st == BATON_OK) {
        set->base = file.data;
        set->size = file.size;
        set->owns_mapping = 1;
        st = ts_list(set, err);
    }
    if (st != BATON_OK) {
        baton_tensor_set_free(set);
        set = NULL;
    }
    *out = set;
    return st;
}

baton_status baton_tensor_set_from_memory(const void *data, uint64_t size, const char *name,
                                          baton_tensor_set **out, baton_error *err) {
    baton_tensor_set *set;
    baton_status st = ts_new(name, &set, err);
    if (st != BATON_OK) {
        *out = NULL;
        return st;
    }
    set->base = data;
    set->size = size;
    st = ts_list(set, err);
    if (st != BATON_OK) {
        baton_tensor_set_free(set);
        set = NULL;
    }
    *out = set;
    return st;
}

void baton_tensor_set_free(baton_tensor_set *set) {
    if (set == NULL) return;
    if (set->owns_mapping) {
        baton_mapped_file file = {set->base, set->size};
        baton_mapped_file_close(&file);
    }
    free(set->tensors);
    free(set->by_name);
    free((char *)set->path);
    free(set);
}

const baton_tensor *baton_tensor_set_find(const baton_tensor_set *set, const char *name) {
    size_t lo = 0, hi = set->n_tensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const baton_tensor *t = &set->tensors[set->by_name[mid]];
        int c = strcmp(t->name, name);
        if (c == 0) return t;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}
