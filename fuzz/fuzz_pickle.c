/* libFuzzer target: the restricted unpickler, fed raw data.pkl bytes. */
#include <stdint.h>

#include "format_pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    baton_pickle *pickle = NULL;
    baton_error err;
    if (baton_pickle_load(data, size, &pickle, &err) == BATON_OK) (void)baton_pickle_root(pickle);
    baton_pickle_free(pickle);
    return 0;
}
