#include "device_open.h"

#include <stdlib.h>
#include <string.h>

#ifdef BATON_HAVE_VULKAN
#include "vk_backend.h"
#endif

static bool vulkan_index(const char *spec, int *index) {
    if (strcmp(spec, "vulkan") == 0) {
        *index = -1;
        return true;
    }
    if (strncmp(spec, "vulkan:", 7) != 0 || spec[7] < '0' || spec[7] > '9') return false;
    char *end = NULL;
    long v = strtol(spec + 7, &end, 10);
    if (*end != '\0' || v > 1024) return false;
    *index = (int)v;
    return true;
}

bool device_spec_valid(const char *spec) {
    int index;
    return strcmp(spec, "cpu") == 0 || vulkan_index(spec, &index);
}

baton_status device_backend_open(const char *spec, const baton_model *model,
                                 const baton_stage_config *config, baton_backend **out,
                                 baton_error *err) {
    int index;
    if (strcmp(spec, "cpu") == 0) return baton_cpu_backend_new(model, config, out, err);
    if (vulkan_index(spec, &index)) {
#ifdef BATON_HAVE_VULKAN
        return baton_vulkan_backend_new(model, config, index, out, err);
#else
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "this build has no Vulkan engine");
#endif
    }
    return baton_fail(err, BATON_ERR_ARG, "unknown device '%s' (cpu, vulkan or vulkan:N)", spec);
}
