#include "device_open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* "cpu-delay:MS", for tests only (not in any usage text): the CPU backend, each step taking MS
 * more milliseconds, a stage whose compute takes a fixed time (tests of pipelining). */
static bool delay_ms(const char *spec, int *ms) {
    if (strncmp(spec, "cpu-delay:", 10) != 0 || spec[10] < '0' || spec[10] > '9') return false;
    char *end = NULL;
    long v = strtol(spec + 10, &end, 10);
    if (*end != '\0' || v > 10000) return false;
    *ms = (int)v;
    return true;
}

static baton_status delay_open(int ms, const baton_model *model, const baton_stage_config *config,
                               baton_backend **out, baton_error *err) {
    baton_backend *inner = NULL;
    baton_status st = baton_cpu_backend_new(model, config, &inner, err);
    if (st != BATON_OK) return st;
    st = baton_delay_backend_new(inner, ms, out, err);
    if (st != BATON_OK) baton_backend_free(inner);
    return st;
}

bool device_spec_valid(const char *spec) {
    int index, ms;
    return strcmp(spec, "cpu") == 0 || vulkan_index(spec, &index) || delay_ms(spec, &ms);
}

baton_status device_backend_open(const char *spec, const baton_model *model,
                                 const baton_stage_config *config, baton_backend **out,
                                 baton_error *err) {
    int index, ms;
    if (strcmp(spec, "cpu") == 0) return baton_cpu_backend_new(model, config, out, err);
    if (delay_ms(spec, &ms)) return delay_open(ms, model, config, out, err);
    if (vulkan_index(spec, &index)) {
#ifdef BATON_HAVE_VULKAN
        baton_status st = baton_vulkan_backend_new(model, config, index, out, err);
        /* What tuning chose goes to the log: it explains the speed, never the results. */
        if (st == BATON_OK && strncmp(baton_vk_tuning(*out), "tuned", 5) == 0)
            fprintf(stderr, "baton: %s: matmul kernels %s\n", (*out)->name, baton_vk_tuning(*out));
        return st;
#else
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "this build has no Vulkan engine");
#endif
    }
    return baton_fail(err, BATON_ERR_ARG, "unknown device '%s' (cpu, vulkan or vulkan:N)", spec);
}
