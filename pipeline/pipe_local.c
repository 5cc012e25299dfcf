/* The stages of one process as a pipe: a thread per stage, a FIFO of jobs in front of each, and
 * a FIFO of finished jobs for collect. A job is one step in flight with its own hidden-state
 * buffers, so stage s can write micro-batch i+1's output while stage s+1 still reads
 * micro-batch i's. */
#include "pipe.h"

#include "chain_backend.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { LOCAL_DEPTH_MAX = 64 };
#define STAGE_MS_WEIGHT 0.2 /* of the newest step in the moving average */

typedef struct {
    const baton_step *step;
    void *tag;
    int32_t *resets;       /* [max_seqs] slots to make fresh before the step, on every stage */
    int n_resets;
    float *x[2];           /* [max_tokens][n_embd] each: stage s writes x[s % 2] */
    baton_status status;
    baton_error err;
} job;

/* A FIFO of job indices; never holds more than depth, the jobs there are. */
typedef struct {
    int at[LOCAL_DEPTH_MAX];
    int head, len;
} fifo;

typedef struct local_pipe local_pipe;

typedef struct {
    local_pipe *p;
    int index;
    baton_backend *backend;
    pthread_t thread;
    bool thread_started;
    fifo in;               /* guarded by p->mu */
    pthread_cond_t cond;   /* in has a job, or stopping */
    double ms;             /* moving average of the step time; guarded by p->mu */
} stage;

struct local_pipe {
    baton_pipe base;
    stage stages[BATON_PIPE_STAGES_MAX];
    job jobs[LOCAL_DEPTH_MAX];
    bool job_busy[LOCAL_DEPTH_MAX]; /* the scheduler thread's own */
    bool *pending_reset;   /* [n_slots] the scheduler thread's own */
    int in_flight;         /* the scheduler thread's own */
    char name[256];

    pthread_mutex_t mu;    /* guards the fifos, ms and stopping */
    pthread_cond_t done_cond;
    fifo done;
    bool stopping;
};

static void fifo_push(fifo *f, int j) {
    assert(f->len < LOCAL_DEPTH_MAX);
    f->at[(f->head + f->len) % LOCAL_DEPTH_MAX] = j;
    f->len++;
}

static int fifo_pop(fifo *f) {
    assert(f->len > 0);
    int j = f->at[f->head];
    f->head = (f->head + 1) % LOCAL_DEPTH_MAX;
    f->len--;
    return j;
}

static double elapsed_ms(const struct timespec *a) {
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

/* Stage s's part of job j: the resets, then its layers. */
static void stage_run(stage *s, job *j) {
    local_pipe *p = s->p;
    for (int k = 0; k < j->n_resets && j->status == BATON_OK; k++)
        j->status = s->backend->ops->slot_reset(s->backend, j->resets[k], &j->err);
    if (j->status != BATON_OK) return;
    const baton_step *in = j->step;
    bool last = s->index == p->base.n_stages - 1;
    baton_step step = {.n_seqs = in->n_seqs, .seqs = in->seqs};
    if (s->index == 0) step.tokens = in->tokens;
    else step.x_in = j->x[(s->index - 1) % 2];
    if (!last) {
        step.x_out = j->x[s->index % 2];
    } else {
        step.logits = in->logits;
        step.logits_all_tokens = in->logits_all_tokens;
        step.sampling = in->sampling;
        step.tokens_out = in->tokens_out;
    }
    j->status = baton_backend_step(s->backend, &step, &j->err);
    if (j->status != BATON_OK && p->base.n_stages > 1) baton_error_prefix(&j->err, "stage %d", s->index);
}

static void *stage_thread(void *arg) {
    stage *s = arg;
    local_pipe *p = s->p;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stopping && s->in.len == 0) pthread_cond_wait(&s->cond, &p->mu);
        if (p->stopping) break;
        int ji = fifo_pop(&s->in);
        pthread_mutex_unlock(&p->mu);
        job *j = &p->jobs[ji];
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (j->status == BATON_OK) stage_run(s, j); /* a failed job passes through untouched */
        double ms = elapsed_ms(&t0);
        pthread_mutex_lock(&p->mu);
        if (j->status == BATON_OK)
            s->ms = s->ms == 0 ? ms : (1 - STAGE_MS_WEIGHT) * s->ms + STAGE_MS_WEIGHT * ms;
        if (s->index + 1 < p->base.n_stages) {
            stage *next = &p->stages[s->index + 1];
            fifo_push(&next->in, ji);
            pthread_cond_signal(&next->cond);
        } else {
            fifo_push(&p->done, ji);
            pthread_cond_signal(&p->done_cond);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static baton_status local_submit(baton_pipe *b, const baton_step *step, void *tag,
                                 baton_error *err) {
    local_pipe *p = (local_pipe *)b;
    assert(p->in_flight < b->depth);
    baton_status st = baton_pipe_step_check(b, step, err);
    if (st != BATON_OK) return st;
    int ji = 0;
    while (p->job_busy[ji]) ji++;
    job *j = &p->jobs[ji];
    j->step = step;
    j->tag = tag;
    j->status = BATON_OK;
    memset(&j->err, 0, sizeof j->err);
    j->n_resets = 0;
    for (int i = 0; i < step->n_seqs; i++) {
        int slot = step->seqs[i].slot;
        if (p->pending_reset[slot]) {
            p->pending_reset[slot] = false;
            j->resets[j->n_resets++] = slot;
        }
    }
    p->job_busy[ji] = true;
    p->in_flight++;
    pthread_mutex_lock(&p->mu);
    fifo_push(&p->stages[0].in, ji);
    pthread_cond_signal(&p->stages[0].cond);
    pthread_mutex_unlock(&p->mu);
    return BATON_OK;
}

static bool local_collect(baton_pipe *b, baton_pipe_done *done) {
    local_pipe *p = (local_pipe *)b;
    if (p->in_flight == 0) return false;
    pthread_mutex_lock(&p->mu);
    while (p->done.len == 0) pthread_cond_wait(&p->done_cond, &p->mu);
    int ji = fifo_pop(&p->done);
    pthread_mutex_unlock(&p->mu);
    job *j = &p->jobs[ji];
    done->tag = j->tag;
    done->status = j->status;
    done->err = j->err;
    p->job_busy[ji] = false;
    p->in_flight--;
    return true;
}

static baton_status local_slot_reset(baton_pipe *b, int slot, baton_error *err) {
    local_pipe *p = (local_pipe *)b;
    if (slot < 0 || slot >= b->config.n_slots)
        return baton_fail(err, BATON_ERR_ARG, "slot %d is outside [0, %d)", slot, b->config.n_slots);
    p->pending_reset[slot] = true;
    return BATON_OK;
}

static void local_stage_ms(baton_pipe *b, double *ms) {
    local_pipe *p = (local_pipe *)b;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < b->n_stages; i++) ms[i] = p->stages[i].ms;
    pthread_mutex_unlock(&p->mu);
}

static void local_free(baton_pipe *b) {
    local_pipe *p = (local_pipe *)b;
    assert(p->in_flight == 0);
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    for (int i = 0; i < b->n_stages; i++) pthread_cond_signal(&p->stages[i].cond);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < b->n_stages; i++) {
        stage *s = &p->stages[i];
        if (s->thread_started) pthread_join(s->thread, NULL);
        pthread_cond_destroy(&s->cond);
        baton_backend_free(s->backend);
    }
    for (int k = 0; k < LOCAL_DEPTH_MAX; k++) {
        free(p->jobs[k].resets);
        free(p->jobs[k].x[0]);
        free(p->jobs[k].x[1]);
    }
    free(p->pending_reset);
    pthread_cond_destroy(&p->done_cond);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static const struct baton_pipe_ops local_ops = {
    .submit = local_submit, .collect = local_collect, .slot_reset = local_slot_reset,
    .stage_ms = local_stage_ms, .free = local_free,
};

baton_status baton_pipe_local_new(baton_backend **stages, int n, int depth, baton_pipe **out,
                                  baton_error *err) {
    *out = NULL;
    if (n < 1 || n > BATON_PIPE_STAGES_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d stages, expected 1 to %d", n,
                          BATON_PIPE_STAGES_MAX);
    if (depth == 0) depth = n;
    if (depth < 1 || depth > LOCAL_DEPTH_MAX)
        return baton_fail(err, BATON_ERR_ARG, "%d steps in flight, expected 1 to %d", depth,
                          LOCAL_DEPTH_MAX);
    baton_stage_config cfg;
    baton_status cst = baton_chain_config(stages, n, &cfg, err);
    if (cst != BATON_OK) return cst;
    local_pipe *p = calloc(1, sizeof *p);
    if (p == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipe");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->done_cond, NULL);
    p->base.ops = &local_ops;
    p->base.name = p->name;
    p->base.model = stages[0]->model;
    p->base.config = cfg;
    p->base.n_stages = n;
    p->base.depth = depth;
    for (int i = 0; i < n; i++) {
        p->stages[i].p = p;
        p->stages[i].index = i;
        pthread_cond_init(&p->stages[i].cond, NULL);
    }
    size_t x_floats = n > 1 ? (size_t)cfg.max_tokens * (size_t)stages[0]->model->n_embd : 0;
    bool ok = (p->pending_reset = calloc((size_t)cfg.n_slots, sizeof *p->pending_reset)) != NULL;
    for (int k = 0; ok && k < depth; k++) {
        job *j = &p->jobs[k];
        ok = (j->resets = calloc((size_t)cfg.max_seqs, sizeof *j->resets)) != NULL;
        if (ok && x_floats > 0) {
            j->x[0] = malloc(x_floats * sizeof(float));
            j->x[1] = n > 2 ? malloc(x_floats * sizeof(float)) : NULL;
            ok = j->x[0] != NULL && (n <= 2 || j->x[1] != NULL);
        }
    }
    if (!ok) {
        local_free(&p->base); /* owns no stage yet: n_stages is what it has started */
        return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipe's buffers");
    }
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        int k = snprintf(p->name + at, sizeof p->name - at, "%s%s", i ? " | " : "", stages[i]->name);
        if (k > 0) at = at + (size_t)k < sizeof p->name ? at + (size_t)k : sizeof p->name - 1;
    }
    for (int i = 0; i < n; i++) {
        stage *s = &p->stages[i];
        if (pthread_create(&s->thread, NULL, stage_thread, s) != 0) {
            /* The caller keeps the stages: the pipe lets go of them before freeing. */
            for (int k = 0; k < n; k++) p->stages[k].backend = NULL;
            local_free(&p->base);
            return baton_fail(err, BATON_ERR_NOMEM, "cannot start the stage threads");
        }
        s->thread_started = true;
    }
    for (int i = 0; i < n; i++) p->stages[i].backend = stages[i];
    *out = &p->base;
    return BATON_OK;
}

baton_status baton_pipe_step_check(const baton_pipe *p, const baton_step *step, baton_error *err) {
    baton_backend as = {.model = p->model, .config = p->config};
    return baton_step_check(&as, step, err);
}

/* ---- one backend, one step at a time ---- */

typedef struct {
    baton_pipe base;
    baton_backend *backend; /* not owned */
    bool have;              /* a step ran and waits for collect */
    baton_pipe_done done;
    double ms;              /* guarded by mu: stage_ms may come from any thread */
    pthread_mutex_t mu;
} sync_pipe;

static baton_status sync_submit(baton_pipe *b, const baton_step *step, void *tag,
                                baton_error *err) {
    sync_pipe *p = (sync_pipe *)b;
    assert(!p->have);
    baton_status st = baton_step_check(p->backend, step, err);
    if (st != BATON_OK) return st;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(&p->done, 0, sizeof p->done);
    p->done.tag = tag;
    p->done.status = baton_backend_step(p->backend, step, &p->done.err);
    double ms = elapsed_ms(&t0);
    pthread_mutex_lock(&p->mu);
    if (p->done.status == BATON_OK)
        p->ms = p->ms == 0 ? ms : (1 - STAGE_MS_WEIGHT) * p->ms + STAGE_MS_WEIGHT * ms;
    pthread_mutex_unlock(&p->mu);
    p->have = true;
    return BATON_OK;
}

static bool sync_collect(baton_pipe *b, baton_pipe_done *done) {
    sync_pipe *p = (sync_pipe *)b;
    if (!p->have) return false;
    *done = p->done;
    p->have = false;
    return true;
}

static baton_status sync_slot_reset(baton_pipe *b, int slot, baton_error *err) {
    sync_pipe *p = (sync_pipe *)b;
    return p->backend->ops->slot_reset(p->backend, slot, err);
}

static void sync_stage_ms(baton_pipe *b, double *ms) {
    sync_pipe *p = (sync_pipe *)b;
    pthread_mutex_lock(&p->mu);
    ms[0] = p->ms;
    pthread_mutex_unlock(&p->mu);
}

static void sync_free(baton_pipe *b) {
    sync_pipe *p = (sync_pipe *)b;
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static const struct baton_pipe_ops sync_ops = {
    .submit = sync_submit, .collect = sync_collect, .slot_reset = sync_slot_reset,
    .stage_ms = sync_stage_ms, .free = sync_free,
};

baton_status baton_pipe_sync_new(baton_backend *backend, baton_pipe **out, baton_error *err) {
    *out = NULL;
    sync_pipe *p = calloc(1, sizeof *p);
    if (p == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the pipe");
    pthread_mutex_init(&p->mu, NULL);
    p->backend = backend;
    p->base.ops = &sync_ops;
    p->base.name = backend->name;
    p->base.model = backend->model;
    p->base.config = backend->config;
    p->base.n_stages = 1;
    p->base.depth = 1;
    *out = &p->base;
    return BATON_OK;
}
