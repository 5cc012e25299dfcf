#include "scheduler.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { IDLE_WAIT_MS = 500, BACKLOG_WAIT_MS = 5, RATE_WINDOW_MS = 1000 };
#define BATCH_MEAN_WEIGHT 0.1 /* of the newest step in the moving average */

typedef enum { PHASE_FREE, PHASE_PREFILL, PHASE_DECODE } stream_phase;

typedef struct {
    stream_phase phase;
    bool in_flight;    /* in a micro-batch on the pipe: not to be touched until it is back */
    baton_gen_request req;
    baton_gen *gen;
    baton_rng rng;
    size_t prefilled;  /* prompt tokens already in the slot */
    int32_t next;      /* the last token sampled: the input of the next decode step */
    int64_t deadline_ns;
} stream;

/* One step on the pipe: its own buffers, untouched while in flight. */
typedef struct {
    bool busy;
    bool sampled;           /* decode tokens and prompts' last chunks; otherwise prompt chunks */
    int n;
    baton_seq *seqs;        /* [max_streams] */
    int *seq_stream;        /* [max_streams] the stream of each seq */
    baton_sampling *sampling; /* [max_streams] */
    int32_t *tokens;        /* [step_tokens] */
    int32_t *tokens_out;    /* [max_streams] */
    baton_step step;
} micro_batch;

struct baton_scheduler {
    baton_pipe *pipe;
    const baton_tokenizer *tok;
    baton_scheduler_limits limits;
    int step_tokens;
    pthread_t thread;
    bool thread_started;

    stream *streams;        /* [max_streams]; stream i uses slot i */
    micro_batch *mbs;       /* [depth] */
    int depth;              /* micro-batches in flight at most */
    int in_flight;
    bool last_was_prefill;  /* prompt-chunk micro-batches take turns with sampled ones */
    int rr_sample, rr_chunk; /* where the next micro-batch of each kind starts looking */
    int64_t rate_start_ns, log_last_ns;
    uint64_t rate_tokens;

    pthread_mutex_t mu;     /* guards what follows */
    pthread_cond_t cond;
    bool stopping;
    baton_gen_request *queue; /* ring of [max_queue + max_streams] */
    int64_t *queue_deadline_ns; /* beside queue: when each request expires */
    int queue_head, queue_len;
    int n_active;
    baton_scheduler_stats stats; /* but for the stage times, which the pipe keeps */
};

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void wait_ms(baton_scheduler *s, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)ms * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&s->cond, &s->mu, &until);
}

/* The queue's ring: the waiting requests, and those that came for free slots before the
 * scheduler thread took them. */
static int queue_cap(const baton_scheduler *s) {
    return s->limits.max_queue + s->limits.max_streams;
}

int baton_scheduler_step_tokens(const baton_scheduler_limits *limits) {
    /* A whole prompt chunk beside one token of every other stream. */
    return limits->prefill_chunk + limits->max_streams;
}

/* Ends stream i: the sink's last call, then the slot is free. Not while it is in flight. */
static void stream_finish(baton_scheduler *s, int i, baton_finish reason, const char *message) {
    stream *st = &s->streams[i];
    assert(!st->in_flight);
    uint32_t completion = st->gen != NULL ? baton_gen_count(st->gen) : 0;
    st->req.sink->finish(st->req.user, reason, (uint32_t)st->req.n_prompt, completion, message);
    baton_gen_free(st->gen);
    free(st->req.prompt);
    memset(st, 0, sizeof *st);
    st->phase = PHASE_FREE;
    pthread_mutex_lock(&s->mu);
    s->n_active--;
    pthread_mutex_unlock(&s->mu);
}

/* Moves queued requests into free slots, first come first served. Holding s->mu; returns the
 * slots to set up. */
static int admit(baton_scheduler *s, int *admitted) {
    int n = 0;
    for (int i = 0; i < s->limits.max_streams && s->queue_len > 0; i++) {
        if (s->streams[i].phase != PHASE_FREE) continue;
        stream *st = &s->streams[i];
        memset(st, 0, sizeof *st);
        st->req = s->queue[s->queue_head];
        st->deadline_ns = s->queue_deadline_ns[s->queue_head];
        s->queue_head = (s->queue_head + 1) % queue_cap(s);
        s->queue_len--;
        st->phase = PHASE_PREFILL;
        s->n_active++;
        admitted[n++] = i;
    }
    return n;
}

/* Makes the slot fresh (with its first step, on every stage) and the stream ready to prefill. */
static void stream_setup(baton_scheduler *s, int i) {
    stream *st = &s->streams[i];
    baton_error err = {0};
    if (baton_gen_open(s->tok, &st->req.gen, &st->gen, &err) != BATON_OK ||
        s->pipe->ops->slot_reset(s->pipe, i, &err) != BATON_OK) {
        stream_finish(s, i, BATON_FINISH_ERROR, err.msg);
        return;
    }
    baton_rng_seed(&st->rng, st->req.seed);
    /* baton run draws once per prompt chunk and uses only the last draw. */
    size_t chunks = (st->req.n_prompt + (size_t)s->limits.prefill_chunk - 1) / (size_t)s->limits.prefill_chunk;
    for (size_t c = 1; c < chunks; c++) baton_rng_uniform(&st->rng);
}

/* Ends streams whose consumer left or whose deadline passed (those in flight when they are
 * back: at their next step). */
static void sweep(baton_scheduler *s) {
    int64_t now = now_ns();
    for (int i = 0; i < s->limits.max_streams; i++) {
        stream *st = &s->streams[i];
        if (st->phase == PHASE_FREE || st->in_flight) continue;
        if (st->req.sink->cancelled(st->req.user))
            stream_finish(s, i, BATON_FINISH_CANCELLED, "the client went away");
        else if (now > st->deadline_ns)
            stream_finish(s, i, BATON_FINISH_DEADLINE, "the deadline passed");
    }
}

/* How a failed step ends its streams: a lost pipeline node is UNAVAILABLE, not an engine
 * error. */
static baton_finish step_finish(baton_status status) {
    return status == BATON_ERR_UNAVAILABLE ? BATON_FINISH_UNAVAILABLE : BATON_FINISH_ERROR;
}

static bool wants_chunk(const baton_scheduler *s, const stream *st) {
    return st->phase == PHASE_PREFILL &&
           st->req.n_prompt - st->prefilled > (size_t)s->limits.prefill_chunk;
}

/* A decoding stream or a prompt's last chunk: this step samples. */
static bool wants_sample(const baton_scheduler *s, const stream *st) {
    if (st->phase == PHASE_DECODE) return !st->req.sink->backlogged(st->req.user);
    return st->phase == PHASE_PREFILL && !wants_chunk(s, st);
}

/* How many micro-batches to keep in flight: enough that the slowest stage never waits,
 * ceil(sum of the stages' step times / the slowest stage's), within [1, depth]; one per stage
 * while the stages are not measured yet. */
static int choose_micro_batches(baton_scheduler *s) {
    double ms[BATON_PIPE_STAGES_MAX], sum = 0, max = 0;
    s->pipe->ops->stage_ms(s->pipe, ms);
    bool measured = true;
    for (int i = 0; i < s->pipe->n_stages; i++) {
        measured = measured && ms[i] > 0;
        sum += ms[i];
        if (ms[i] > max) max = ms[i];
    }
    int d = s->depth;
    if (measured && max > 0) {
        int fill = (int)(sum / max + 0.999);
        if (fill < d) d = fill;
    }
    return d < 1 ? 1 : d;
}

static micro_batch *free_micro_batch(baton_scheduler *s) {
    for (int k = 0; k < s->depth; k++)
        if (!s->mbs[k].busy) return &s->mbs[k];
    return NULL;
}

static void mb_add(baton_scheduler *s, micro_batch *mb, int i, int count, const int32_t *src,
                   int *used) {
    memcpy(mb->tokens + *used, src, (size_t)count * sizeof(int32_t));
    mb->seqs[mb->n] = (baton_seq){.slot = i, .n_tokens = count};
    mb->seq_stream[mb->n++] = i;
    *used += count;
    s->streams[i].in_flight = true;
}

/* Prompt chunks that are not a prompt's last (no sampling), within the step's tokens. */
static void mb_fill_prefill(baton_scheduler *s, micro_batch *mb) {
    int used = 0, chunk = s->limits.prefill_chunk, m = s->limits.max_streams;
    for (int k = 0; k < m; k++) {
        int i = (s->rr_chunk + k) % m;
        stream *st = &s->streams[i];
        if (st->in_flight || !wants_chunk(s, st)) continue;
        if (used + chunk > s->step_tokens) break;
        mb_add(s, mb, i, chunk, st->req.prompt + st->prefilled, &used);
        s->rr_chunk = (i + 1) % m;
    }
    mb->step = (baton_step){.n_seqs = mb->n, .seqs = mb->seqs, .tokens = mb->tokens};
}

/* Up to size sampled sequences: decoding streams first (their latency matters), then prompts'
 * last chunks, within the step's tokens. Round robin from where the last one stopped, so a ready
 * stream is taken within (ready streams / size) micro-batches, whatever its slot. */
static void mb_fill_sampled(baton_scheduler *s, micro_batch *mb, int size) {
    int used = 0, m = s->limits.max_streams, start = s->rr_sample;
    for (int pass = 0; pass < 2 && mb->n < size; pass++) {
        for (int k = 0; k < m && mb->n < size; k++) {
            int i = (start + k) % m;
            stream *st = &s->streams[i];
            if (st->in_flight || !wants_sample(s, st)) continue;
            bool decode = st->phase == PHASE_DECODE;
            if (decode != (pass == 0)) continue;
            int count = decode ? 1 : (int)(st->req.n_prompt - st->prefilled);
            if (used + count > s->step_tokens) continue;
            mb->sampling[mb->n] = st->req.sampling;
            mb->sampling[mb->n].uniform = baton_rng_uniform(&st->rng);
            mb_add(s, mb, i, count, decode ? &st->next : st->req.prompt + st->prefilled, &used);
            s->rr_sample = (i + 1) % m;
        }
    }
    mb->step = (baton_step){.n_seqs = mb->n, .seqs = mb->seqs, .tokens = mb->tokens,
                            .sampling = mb->sampling, .tokens_out = mb->tokens_out};
}

/* Submits one micro-batch if there is a free lane and work for it; false otherwise. */
static bool submit_next(baton_scheduler *s, int target) {
    if (s->in_flight >= target) return false;
    micro_batch *mb = free_micro_batch(s);
    if (mb == NULL) return false;
    int n_chunk = 0, n_sample = 0, n_sample_ready = 0;
    for (int i = 0; i < s->limits.max_streams; i++) {
        const stream *st = &s->streams[i];
        if (st->phase == PHASE_FREE) continue;
        if (wants_chunk(s, st)) {
            n_chunk += !st->in_flight;
        } else if (st->in_flight || wants_sample(s, st)) {
            n_sample++;
            n_sample_ready += !st->in_flight;
        }
    }
    if (n_chunk == 0 && n_sample_ready == 0) return false;
    mb->n = 0;
    if (n_chunk > 0 && (n_sample_ready == 0 || !s->last_was_prefill)) {
        mb->sampled = false;
        mb_fill_prefill(s, mb);
    } else {
        /* The sampled streams shared among the micro-batches in flight. */
        int size = (n_sample + target - 1) / target;
        mb->sampled = true;
        mb_fill_sampled(s, mb, size < 1 ? 1 : size);
    }
    s->last_was_prefill = !mb->sampled;
    if (mb->n == 0) return false;
    baton_error err = {0};
    baton_status status = s->pipe->ops->submit(s->pipe, &mb->step, mb, &err);
    if (status != BATON_OK) { /* our own mistake in building it; end its streams, go on */
        for (int k = 0; k < mb->n; k++) {
            s->streams[mb->seq_stream[k]].in_flight = false;
            stream_finish(s, mb->seq_stream[k], BATON_FINISH_ERROR, err.msg);
        }
        return true;
    }
    mb->busy = true;
    s->in_flight++;
    return true;
}

/* A micro-batch is back: its prompts advance, its samples go to their streams. */
static void micro_batch_done(baton_scheduler *s, micro_batch *mb, const baton_pipe_done *done) {
    uint64_t generated = 0, prefilled = 0;
    for (int k = 0; k < mb->n; k++) {
        int i = mb->seq_stream[k];
        stream *st = &s->streams[i];
        st->in_flight = false;
        if (done->status != BATON_OK) {
            stream_finish(s, i, step_finish(done->status), done->err.msg);
            continue;
        }
        prefilled += (uint64_t)(st->phase == PHASE_PREFILL ? mb->seqs[k].n_tokens : 0);
        if (!mb->sampled) {
            st->prefilled += (size_t)mb->seqs[k].n_tokens;
            continue;
        }
        generated++;
        st->prefilled = st->req.n_prompt;
        st->phase = PHASE_DECODE;
        st->next = mb->tokens_out[k];
        baton_gen_out out;
        baton_error gen_err = {0};
        baton_status gs = baton_gen_push(st->gen, st->next, &out, &gen_err);
        if (out.len > 0 || out.token_sent)
            st->req.sink->emit(st->req.user, out.text, out.len, out.token_sent ? st->next : -1);
        if (gs != BATON_OK) stream_finish(s, i, BATON_FINISH_ERROR, gen_err.msg);
        else if (out.finish != BATON_FINISH_NONE) stream_finish(s, i, out.finish, "");
    }
    mb->busy = false;
    s->in_flight--;
    s->rate_tokens += generated;
    pthread_mutex_lock(&s->mu);
    baton_scheduler_stats *t = &s->stats;
    t->steps++;
    t->tokens_generated += generated;
    t->tokens_prefilled += prefilled;
    t->batch_mean = t->steps == 1 ? mb->n
                                  : (1 - BATCH_MEAN_WEIGHT) * t->batch_mean + BATCH_MEAN_WEIGHT * mb->n;
    pthread_mutex_unlock(&s->mu);
}

/* The rate over the last window, and the periodic log line. */
static void account(baton_scheduler *s, bool idle) {
    int64_t now = now_ns();
    if (idle) {
        pthread_mutex_lock(&s->mu);
        s->stats.tokens_per_s = 0;
        pthread_mutex_unlock(&s->mu);
        s->rate_tokens = 0;
        s->rate_start_ns = now;
        return;
    }
    if (now - s->rate_start_ns >= (int64_t)RATE_WINDOW_MS * 1000000) {
        double rate = (double)s->rate_tokens * 1e9 / (double)(now - s->rate_start_ns);
        pthread_mutex_lock(&s->mu);
        s->stats.tokens_per_s = rate;
        pthread_mutex_unlock(&s->mu);
        s->rate_tokens = 0;
        s->rate_start_ns = now;
    }
    if (s->limits.log_interval_s <= 0 ||
        now - s->log_last_ns < (int64_t)s->limits.log_interval_s * 1000000000LL)
        return;
    s->log_last_ns = now;
    baton_scheduler_stats t;
    baton_scheduler_stats_get(s, &t);
    char stages[256];
    size_t at = 0;
    stages[0] = '\0';
    for (int i = 0; i < t.n_stages && at + 16 < sizeof stages; i++)
        at += (size_t)snprintf(stages + at, sizeof stages - at, "%s%.2f", i ? "/" : "", t.stage_ms[i]);
    fprintf(stderr,
            "baton serve: %d/%d slots, %d queued, %.1f seqs/step, %.1f tokens/s, %d/%d "
            "micro-batches, stage ms %s\n",
            t.streams, t.max_streams, t.queued, t.batch_mean, t.tokens_per_s, t.micro_batches,
            t.micro_batches_target, stages);
}

static void *scheduler_thread(void *arg) {
    baton_scheduler *s = arg;
    int *admitted = calloc((size_t)s->limits.max_streams, sizeof *admitted);
    s->rate_start_ns = s->log_last_ns = now_ns();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool idle = false;
        while (!s->stopping && s->n_active == 0 && s->queue_len == 0) {
            idle = true;
            s->stats.tokens_per_s = 0;
            wait_ms(s, IDLE_WAIT_MS);
        }
        bool stopping = s->stopping;
        int n_admitted = admitted != NULL && !stopping ? admit(s, admitted) : 0;
        pthread_mutex_unlock(&s->mu);
        if (idle) account(s, true);
        if (stopping) break;
        for (int k = 0; k < n_admitted; k++) stream_setup(s, admitted[k]);
        sweep(s);
        int target = choose_micro_batches(s);
        while (submit_next(s, target)) {
        }
        pthread_mutex_lock(&s->mu);
        s->stats.micro_batches = s->in_flight;
        s->stats.micro_batches_target = target;
        pthread_mutex_unlock(&s->mu);
        baton_pipe_done done;
        if (s->pipe->ops->collect(s->pipe, &done)) {
            micro_batch_done(s, done.tag, &done);
        } else { /* every stream waits on a slow client (or there were none) */
            pthread_mutex_lock(&s->mu);
            if (!s->stopping) wait_ms(s, BACKLOG_WAIT_MS);
            pthread_mutex_unlock(&s->mu);
        }
        account(s, false);
    }
    baton_pipe_done done;
    while (s->pipe->ops->collect(s->pipe, &done)) micro_batch_done(s, done.tag, &done);
    for (int i = 0; i < s->limits.max_streams; i++)
        if (s->streams[i].phase != PHASE_FREE)
            stream_finish(s, i, BATON_FINISH_SHUTDOWN, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    while (s->queue_len > 0) {
        baton_gen_request *r = &s->queue[s->queue_head];
        s->queue_head = (s->queue_head + 1) % queue_cap(s);
        s->queue_len--;
        pthread_mutex_unlock(&s->mu);
        r->sink->finish(r->user, BATON_FINISH_SHUTDOWN, (uint32_t)r->n_prompt, 0,
                        "the server is shutting down");
        free(r->prompt);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    free(admitted);
    return NULL;
}

void baton_scheduler_stats_get(baton_scheduler *s, baton_scheduler_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->streams = s->n_active;
    out->queued = s->queue_len;
    out->max_streams = s->limits.max_streams;
    pthread_mutex_unlock(&s->mu);
    out->n_stages = s->pipe->n_stages;
    s->pipe->ops->stage_ms(s->pipe, out->stage_ms);
}

static void micro_batches_free(baton_scheduler *s) {
    for (int k = 0; s->mbs != NULL && k < s->depth; k++) {
        micro_batch *mb = &s->mbs[k];
        free(mb->seqs);
        free(mb->seq_stream);
        free(mb->sampling);
        free(mb->tokens);
        free(mb->tokens_out);
    }
    free(s->mbs);
    s->mbs = NULL;
}

static bool micro_batches_alloc(baton_scheduler *s) {
    s->mbs = calloc((size_t)s->depth, sizeof *s->mbs);
    if (s->mbs == NULL) return false;
    size_t m = (size_t)s->limits.max_streams;
    bool ok = true;
    for (int k = 0; k < s->depth; k++) {
        micro_batch *mb = &s->mbs[k];
        mb->seqs = calloc(m, sizeof *mb->seqs);
        mb->seq_stream = calloc(m, sizeof *mb->seq_stream);
        mb->sampling = calloc(m, sizeof *mb->sampling);
        mb->tokens_out = calloc(m, sizeof *mb->tokens_out);
        mb->tokens = calloc((size_t)s->step_tokens, sizeof *mb->tokens);
        ok = ok && mb->seqs != NULL && mb->seq_stream != NULL && mb->sampling != NULL &&
             mb->tokens_out != NULL && mb->tokens != NULL;
    }
    return ok;
}

baton_status baton_scheduler_start(baton_pipe *pipe, const baton_tokenizer *tok,
                                   const baton_scheduler_limits *limits, baton_scheduler **out,
                                   baton_error *err) {
    *out = NULL;
    const baton_stage_config *c = &pipe->config;
    int step_tokens = baton_scheduler_step_tokens(limits);
    assert(limits->max_streams >= 1 && limits->max_queue >= 1 && limits->prefill_chunk >= 1);
    assert(limits->micro_batches >= 0);
    assert(c->with_embedding && c->with_head);
    assert(c->n_slots >= limits->max_streams && c->max_seqs >= limits->max_streams);
    assert(c->max_tokens >= step_tokens);
    (void)c; /* only asserted */
    baton_scheduler *s = calloc(1, sizeof *s);
    if (s == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the scheduler");
    s->pipe = pipe;
    s->tok = tok;
    s->limits = *limits;
    s->step_tokens = step_tokens;
    s->depth = limits->micro_batches > 0 && limits->micro_batches < pipe->depth
                   ? limits->micro_batches
                   : pipe->depth;
    s->streams = calloc((size_t)limits->max_streams, sizeof *s->streams);
    s->queue = calloc((size_t)queue_cap(s), sizeof *s->queue);
    s->queue_deadline_ns = calloc((size_t)queue_cap(s), sizeof *s->queue_deadline_ns);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (s->streams == NULL || s->queue == NULL || s->queue_deadline_ns == NULL ||
        !micro_batches_alloc(s)) {
        baton_scheduler_free(s);
        return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the scheduler");
    }
    if (pthread_create(&s->thread, NULL, scheduler_thread, s) != 0) {
        baton_scheduler_free(s);
        return baton_fail(err, BATON_ERR_NOMEM, "cannot start the scheduler thread");
    }
    s->thread_started = true;
    *out = s;
    return BATON_OK;
}

baton_status baton_scheduler_submit(baton_scheduler *s, baton_gen_request *req, baton_error *err) {
    assert(req->n_prompt >= 1 && req->prompt != NULL && req->sink != NULL);
    pthread_mutex_lock(&s->mu);
    baton_status st = BATON_OK;
    if (s->stopping) {
        st = baton_fail(err, BATON_ERR_UNAVAILABLE, "the server is shutting down");
    } else if (s->n_active + s->queue_len >= s->limits.max_streams + s->limits.max_queue) {
        /* Requests for slots that are free but not yet taken by the scheduler thread count as
         * running, not waiting: only a full queue beyond every slot refuses. */
        st = baton_fail(err, BATON_ERR_NOMEM, "%d requests already wait for a slot (--max-queue)",
                        s->limits.max_queue);
    } else {
        int at = (s->queue_head + s->queue_len) % queue_cap(s);
        int64_t timeout_ms = req->timeout_ms < 0 ? 0 : req->timeout_ms;
        if (timeout_ms > INT64_MAX / 4000000) timeout_ms = INT64_MAX / 4000000;
        s->queue[at] = *req;
        s->queue_deadline_ns[at] = now_ns() + timeout_ms * 1000000;
        s->queue_len++;
        req->prompt = NULL;
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

void baton_scheduler_stop(baton_scheduler *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
}

void baton_scheduler_free(baton_scheduler *s) {
    if (s == NULL) return;
    baton_scheduler_stop(s);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s->streams);
    micro_batches_free(s);
    free(s->queue);
    free(s->queue_deadline_ns);
    free(s);
}
