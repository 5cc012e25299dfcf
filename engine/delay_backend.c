/* A stage whose compute takes a fixed time: it sleeps, then runs the backend it wraps. For tests
 * and benches of the scheduler's pipelining (the hidden device cpu-delay:MS), where a stage's time
 * must not depend on what else the machine is doing. */
#include <stdlib.h>
#include <time.h>

#include "backend.h"

typedef struct {
    baton_backend base;
    baton_backend *inner;
    int ms;
} delay_backend;

static baton_status delay_step(baton_backend *b, const baton_step *s, baton_error *e) {
    delay_backend *d = (delay_backend *)b;
    struct timespec t = {.tv_sec = d->ms / 1000, .tv_nsec = (long)(d->ms % 1000) * 1000000L};
    nanosleep(&t, NULL); /* the stage's compute, not a synchronization */
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

baton_status baton_delay_backend_new(baton_backend *inner, int ms, baton_backend **out,
                                     baton_error *err) {
    *out = NULL;
    if (ms < 0 || ms > 60000)
        return baton_fail(err, BATON_ERR_ARG, "a delay of %d ms is outside [0, 60000]", ms);
    delay_backend *d = calloc(1, sizeof *d);
    if (d == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the backend");
    d->base = *inner;
    d->base.ops = &delay_ops;
    d->inner = inner;
    d->ms = ms;
    *out = &d->base;
    return BATON_OK;
}
