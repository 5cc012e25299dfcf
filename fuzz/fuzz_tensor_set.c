/* libFuzzer target: a whole model file, .pth or .safetensors, through the tensor set and, when
 * that accepts it, through baton_model_load (over a memfd, since the loader maps a path). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "model.h"
#include "tensor_set.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void load_model(const uint8_t *data, size_t size) {
    int fd = memfd_create("fuzz-model", MFD_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        baton_model *m = NULL;
        baton_error err;
        baton_model_options opt = {.layer_begin = 0, .layer_end = 1};
        if (baton_model_load(path, NULL, &m, &err) == BATON_OK) {
            (void)baton_model_weight_bytes(m);
            baton_model_free(m);
        }
        if (baton_model_load(path, &opt, &m, &err) == BATON_OK) baton_model_free(m);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    baton_tensor_set *set = NULL;
    baton_error err;
    if (baton_tensor_set_from_memory(data, size, "fuzz", &set, &err) != BATON_OK) return 0;
    for (size_t i = 0; i < set->n_tensors; i++) {
        const baton_tensor *t = &set->tensors[i];
        uint64_t bytes = t->n_elements * baton_dtype_size(t->dtype);
        if (t->file_offset > size || bytes > size - t->file_offset) abort();
        if (baton_tensor_set_find(set, t->name) != t) abort();
    }
    baton_tensor_set_free(set);
    load_model(data, size);
    return 0;
}
