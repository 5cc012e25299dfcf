#include "device_open.h"

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

typedef struct {
    baton_backend base;
    baton_backend *inner;
    int ms;
} delay_backend;

static baton_status delay_step(baton_backend *b, const baton_step *s, baton_error *e) {
    delay_backend *d = (delay_backend *)b;
    struct timespec t = {.tv_sec = d->ms / 1000, .tv_nsec = (long)(d->ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    return baton_backend_step(d->inner, s, e);
}
static baton_status delay_reset(baton_backend *b, int slot, baton_error *e) {
    delay_backend *d = (delay_backend *)b;
    return d->inner->ops->slot_reset(d->inner, slot, e);
}
static baton_status delay_read(baton_backend *b, int slot, float *state, baton_error *e) {
    delay_backend *d = (delay_backend *)b;
    return d->inner->ops->slot_read(d->inner, slot, state, e);
}
static baton_status delay_write(baton_backend *b, int slot, const float *state, baton_error *e) {
    delay_backend *d = (delay_backend *)b;
    return d->inner->ops->slot_write(d->inner, slot, state, e);
}
static void delay_free(baton_backend *b) {
    delay_backend *d = (delay_backend *)b;
    baton_backend_free(d->inner);
    free(d);
}
static const struct baton_backend_ops delay_ops = {delay_step, delay_reset, delay_read,
                                                   delay_write, delay_free};

static baton_status delay_open(int ms, const baton_model *model, const baton_stage_config *config,
                               baton_backend **out, baton_error *err) {
    baton_backend *inner = NULL;
    baton_status st = baton_cpu_backend_new(model, config, &inner, err);
    if (st != BATON_OK) return st;
    delay_backend *d = calloc(1, sizeof *d);
    if (d == NULL) {
        baton_backend_free(inner);
        return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the backend");
    }
    d->base = *inner;
    d->base.ops = &delay_ops;
    d->inner = inner;
    d->ms = ms;
    *out = &d->base;
    return BATON_OK;
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
        return baton_vulkan_backend_new(model, config, index, out, err);
#else
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "this build has no Vulkan engine");
#endif
    }
    return baton_fail(err, BATON_ERR_ARG, "unknown device '%s' (cpu, vulkan or vulkan:N)", spec);
}
