/* libFuzzer target: the safetensors reader, whatever the first bytes (no format detection). */
#include <stdint.h>
#include <stdlib.h>

#include "tensor_set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    baton_tensor_set *set = calloc(1, sizeof *set);
    if (set == NULL) return 0;
    set->base = data;
    set->size = size;
    baton_error err;
    if (baton_format_safetensors_list(set, &err) == BATON_OK) {
        for (size_t i = 0; i < set->n_tensors; i++) {
            const baton_tensor *t = &set->tensors[i];
            uint64_t bytes = t->n_elements * baton_dtype_size(t->dtype);
            if (t->file_offset > size || bytes > size - t->file_offset) abort();
        }
    }
    baton_tensor_set_free(set);
    return 0;
}
