/* libFuzzer target: the zip directory reader. Every listed entry must lie inside the input. */
#include <stdint.h>
#include <stdlib.h>

#include "format_zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    baton_zip *zip = NULL;
    baton_error err;
    if (baton_zip_open(data, size, &zip, &err) != BATON_OK) return 0;
    for (size_t i = 0; i < baton_zip_count(zip); i++) {
        const baton_zip_entry *e = baton_zip_entry_at(zip, i);
        if (e->data_offset > size || e->size > size - e->data_offset) abort();
        if (baton_zip_find(zip, e->name) != e) abort();
    }
    baton_zip_free(zip);
    return 0;
}
