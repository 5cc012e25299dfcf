/* Steps in flight: the scheduler's view of a pipeline whose stages work on different steps at the
 * same time. While micro-batch i is on stage s+1, micro-batch i+1 runs on stage s.
 *
 * A pipe takes at most depth steps at once (submit) and gives them back as they finish
 * (collect). The caller keeps a submitted step's buffers (seqs, tokens, sampling, tokens_out)
 * untouched until its collect. Two steps in flight never share a slot: a sequence's next step
 * needs the token its previous one sampled. Within a stage, steps run in the order they arrive.
 *
 * Slot resets ride on the next submitted step that uses the slot (on every stage, before it
 * computes), so they never race with a step in flight.
 *
 * Threads: one caller (the scheduler thread) for submit, collect and slot_reset. */
#ifndef BATON_PIPE_H
#define BATON_PIPE_H

#include "backend.h"

enum { BATON_PIPE_STAGES_MAX = 64 };

typedef struct baton_pipe baton_pipe;

typedef struct {
    void *tag;             /* what submit was given */
    baton_status status;   /* of the step; on error its slots are in an unknown state */
    baton_error err;
} baton_pipe_done;

struct baton_pipe_ops {
    /* Starts a step; the caller has fewer than depth in flight. Errors: the step itself is bad
     * (nothing was started). */
    baton_status (*submit)(baton_pipe *p, const baton_step *step, void *tag, baton_error *err);
    /* Waits (bounded by the stages' own timeouts) for one step in flight to finish; false when
     * none is in flight. */
    bool (*collect)(baton_pipe *p, baton_pipe_done *done);
    /* The slot is fresh for the next step that names it. */
    baton_status (*slot_reset)(baton_pipe *p, int slot, baton_error *err);
    /* Each stage's time per step in ms (a moving average; 0 while unknown) into ms[n_stages].
     * Any thread. */
    void (*stage_ms)(baton_pipe *p, double *ms);
    void (*free)(baton_pipe *p);
};

struct baton_pipe {
    const struct baton_pipe_ops *ops;
    const char *name;
    const baton_model *model;  /* not owned */
    baton_stage_config config; /* of the whole pipeline: embedding in front, head behind */
    int n_stages;
    int depth;                 /* steps in flight at most, >= 1 */
};

/* Stages in this process, one thread each, with a queue between consecutive stages (bounded by
 * depth, steps in flight at most; 0: one per stage). stages[0..n) are consecutive layer ranges,
 * the first with embedding, the last with head. On success the pipe owns the stages; on failure
 * the caller keeps them. */
baton_status baton_pipe_local_new(baton_backend **stages, int n, int depth, baton_pipe **out,
                                  baton_error *err);

/* One backend driven one step at a time (depth 1, one stage as the pipe sees it), stepped on
 * the caller's thread in submit. backend is not owned and outlives the pipe. */
baton_status baton_pipe_sync_new(baton_backend *backend, baton_pipe **out, baton_error *err);

/* Frees; NULL is a no-op. Nothing may be in flight. */
static inline void baton_pipe_free(baton_pipe *p) {
    if (p != NULL) p->ops->free(p);
}

/* Checks a step as baton_step_check does for a backend of this pipe's config. */
baton_status baton_pipe_step_check(const baton_pipe *p, const baton_step *step, baton_error *err);

#endif
