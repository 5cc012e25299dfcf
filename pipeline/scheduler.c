#include "scheduler.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { IDLE_WAIT_MS = 500, BACKLOG_WAIT_MS = 5 };

typedef enum { PHASE_FREE, PHASE_PREFILL, PHASE_DECODE } stream_phase;

typedef struct {
    stream_phase phase;
    baton_gen_request req;
    baton_gen *gen;
    baton_rng rng;
    size_t prefilled;  /* prompt tokens already in the slot */
    int32_t next;      /* the last token sampled: the input of the next decode step */
    int64_t deadline_ns;
} stream;

struct baton_scheduler {
    baton_backend *backend;
    const baton_tokenizer *tok;
    baton_scheduler_limits limits;
    int step_tokens;
    pthread_t thread;
    bool thread_started;

    stream *streams;        /* [max_streams]; stream i uses slot i */
    baton_seq *seqs;        /* [max_streams] */
    int *seq_stream;        /* [max_streams] stream of each seq of a step */
    baton_sampling *sampling; /* [max_streams] */
    int32_t *tokens;        /* [step_tokens] */
    int32_t *tokens_out;    /* [max_streams] */

    pthread_mutex_t mu;     /* guards what follows */
    pthread_cond_t cond;
    bool stopping;
    baton_gen_request *queue; /* ring of [max_queue] */
    int64_t *queue_deadline_ns; /* [max_queue] beside queue: when each request expires */
    int queue_head, queue_len;
    int n_active;
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

int baton_scheduler_step_tokens(const baton_scheduler_limits *limits) {
    /* A whole prompt chunk beside one token of every other stream. */
    return limits->prefill_chunk + limits->max_streams;
}

/* Ends stream i: the sink's last call, then the slot is free. */
static void stream_finish(baton_scheduler *s, int i, baton_finish reason, const char *message) {
    stream *st = &s->streams[i];
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

/* Moves queued requests into free slots. Holding s->mu; returns the slots to set up. */
static int admit(baton_scheduler *s, int *admitted) {
    int n = 0;
    for (int i = 0; i < s->limits.max_streams && s->queue_len > 0; i++) {
        if (s->streams[i].phase != PHASE_FREE) continue;
        stream *st = &s->streams[i];
        memset(st, 0, sizeof *st);
        st->req = s->queue[s->queue_head];
        st->deadline_ns = s->queue_deadline_ns[s->queue_head];
        s->queue_head = (s->queue_head + 1) % s->limits.max_queue;
        s->queue_len--;
        st->phase = PHASE_PREFILL;
        s->n_active++;
        admitted[n++] = i;
    }
    return n;
}

/* Makes the slot fresh and the stream ready to prefill. */
static void stream_setup(baton_scheduler *s, int i) {
    stream *st = &s->streams[i];
    baton_error err = {0};
    if (baton_gen_open(s->tok, &st->req.gen, &st->gen, &err) != BATON_OK ||
        s->backend->ops->slot_reset(s->backend, i, &err) != BATON_OK) {
        stream_finish(s, i, BATON_FINISH_ERROR, err.msg);
        return;
    }
    baton_rng_seed(&st->rng, st->req.seed);
    /* baton run draws once per prompt chunk and uses only the last draw. */
    size_t chunks = (st->req.n_prompt + (size_t)s->limits.prefill_chunk - 1) / (size_t)s->limits.prefill_chunk;
    for (size_t c = 1; c < chunks; c++) baton_rng_uniform(&st->rng);
}

/* Ends streams whose consumer left or whose deadline passed. */
static void sweep(baton_scheduler *s) {
    int64_t now = now_ns();
    for (int i = 0; i < s->limits.max_streams; i++) {
        stream *st = &s->streams[i];
        if (st->phase == PHASE_FREE) continue;
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

/* Runs the prompt chunks that are not a prompt's last (no sampling). Returns seqs run. */
static int step_prefill(baton_scheduler *s) {
    int n = 0, used = 0;
    for (int i = 0; i < s->limits.max_streams; i++) {
        stream *st = &s->streams[i];
        if (st->phase != PHASE_PREFILL) continue;
        size_t left = st->req.n_prompt - st->prefilled;
        if (left <= (size_t)s->limits.prefill_chunk) continue; /* the last chunk samples */
        int chunk = s->limits.prefill_chunk;
        if (used + chunk > s->step_tokens) break;
        memcpy(s->tokens + used, st->req.prompt + st->prefilled, (size_t)chunk * sizeof(int32_t));
        s->seqs[n] = (baton_seq){.slot = i, .n_tokens = chunk};
        s->seq_stream[n++] = i;
        used += chunk;
    }
    if (n == 0) return 0;
    baton_step step = {.n_seqs = n, .seqs = s->seqs, .tokens = s->tokens};
    baton_error err = {0};
    baton_status status = baton_backend_step(s->backend, &step, &err);
    for (int k = 0; k < n; k++) {
        int i = s->seq_stream[k];
        if (status != BATON_OK) stream_finish(s, i, step_finish(status), err.msg);
        else s->streams[i].prefilled += (size_t)s->seqs[k].n_tokens;
    }
    return n;
}

/* One token for every decoding stream and the last chunk of prompts: sampled. */
static int step_sample(baton_scheduler *s) {
    int n = 0, used = 0;
    for (int pass = 0; pass < 2; pass++) { /* decoding streams first: their latency matters */
        for (int i = 0; i < s->limits.max_streams; i++) {
            stream *st = &s->streams[i];
            int count;
            const int32_t *src;
            if (pass == 0 && st->phase == PHASE_DECODE) {
                if (st->req.sink->backlogged(st->req.user)) continue;
                count = 1;
                src = &st->next;
            } else if (pass == 1 && st->phase == PHASE_PREFILL) {
                size_t left = st->req.n_prompt - st->prefilled;
                if (left > (size_t)s->limits.prefill_chunk) continue;
                count = (int)left;
                src = st->req.prompt + st->prefilled;
            } else {
                continue;
            }
            if (used + count > s->step_tokens) continue;
            memcpy(s->tokens + used, src, (size_t)count * sizeof(int32_t));
            s->seqs[n] = (baton_seq){.slot = i, .n_tokens = count};
            s->sampling[n] = st->req.sampling;
            s->sampling[n].uniform = baton_rng_uniform(&st->rng);
            s->seq_stream[n++] = i;
            used += count;
        }
    }
    if (n == 0) return 0;
    baton_step step = {.n_seqs = n, .seqs = s->seqs, .tokens = s->tokens,
                       .sampling = s->sampling, .tokens_out = s->tokens_out};
    baton_error err = {0};
    baton_status status = baton_backend_step(s->backend, &step, &err);
    for (int k = 0; k < n; k++) {
        int i = s->seq_stream[k];
        stream *st = &s->streams[i];
        if (status != BATON_OK) {
            stream_finish(s, i, step_finish(status), err.msg);
            continue;
        }
        st->prefilled = st->req.n_prompt;
        st->phase = PHASE_DECODE;
        st->next = s->tokens_out[k];
        baton_gen_out out;
        baton_error gen_err = {0};
        baton_status gs = baton_gen_push(st->gen, st->next, &out, &gen_err);
        if (out.len > 0 || out.token_sent)
            st->req.sink->emit(st->req.user, out.text, out.len, out.token_sent ? st->next : -1);
        if (gs != BATON_OK) stream_finish(s, i, BATON_FINISH_ERROR, gen_err.msg);
        else if (out.finish != BATON_FINISH_NONE) stream_finish(s, i, out.finish, "");
    }
    return n;
}

static void *scheduler_thread(void *arg) {
    baton_scheduler *s = arg;
    int *admitted = calloc((size_t)s->limits.max_streams, sizeof *admitted);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_active == 0 && s->queue_len == 0) wait_ms(s, IDLE_WAIT_MS);
        if (s->stopping) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        int n_admitted = admitted != NULL ? admit(s, admitted) : 0;
        pthread_mutex_unlock(&s->mu);
        for (int k = 0; k < n_admitted; k++) stream_setup(s, admitted[k]);
        sweep(s);
        int ran = step_prefill(s);
        ran += step_sample(s);
        if (ran == 0) { /* every stream waits on a slow client (or there were none) */
            pthread_mutex_lock(&s->mu);
            if (!s->stopping) wait_ms(s, BACKLOG_WAIT_MS);
            pthread_mutex_unlock(&s->mu);
        }
    }
    for (int i = 0; i < s->limits.max_streams; i++)
        if (s->streams[i].phase != PHASE_FREE)
            stream_finish(s, i, BATON_FINISH_SHUTDOWN, "the server is shutting down");
    pthread_mutex_lock(&s->mu);
    while (s->queue_len > 0) {
        baton_gen_request *r = &s->queue[s->queue_head];
        s->queue_head = (s->queue_head + 1) % s->limits.max_queue;
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

baton_status baton_scheduler_start(baton_backend *backend, const baton_tokenizer *tok,
                                   const baton_scheduler_limits *limits, baton_scheduler **out,
                                   baton_error *err) {
    *out = NULL;
    const baton_stage_config *c = &backend->config;
    int step_tokens = baton_scheduler_step_tokens(limits);
    assert(limits->max_streams >= 1 && limits->max_queue >= 1 && limits->prefill_chunk >= 1);
    assert(c->with_embedding && c->with_head);
    assert(c->n_slots >= limits->max_streams && c->max_seqs >= limits->max_streams);
    assert(c->max_tokens >= step_tokens);
    (void)c; /* only asserted */
    baton_scheduler *s = calloc(1, sizeof *s);
    if (s == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory for the scheduler");
    s->backend = backend;
    s->tok = tok;
    s->limits = *limits;
    s->step_tokens = step_tokens;
    size_t m = (size_t)limits->max_streams;
    s->streams = calloc(m, sizeof *s->streams);
    s->seqs = calloc(m, sizeof *s->seqs);
    s->seq_stream = calloc(m, sizeof *s->seq_stream);
    s->sampling = calloc(m, sizeof *s->sampling);
    s->tokens_out = calloc(m, sizeof *s->tokens_out);
    s->tokens = calloc((size_t)step_tokens, sizeof *s->tokens);
    s->queue = calloc((size_t)limits->max_queue, sizeof *s->queue);
    s->queue_deadline_ns = calloc((size_t)limits->max_queue, sizeof *s->queue_deadline_ns);
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (s->streams == NULL || s->seqs == NULL || s->seq_stream == NULL || s->sampling == NULL ||
        s->tokens_out == NULL || s->tokens == NULL || s->queue == NULL ||
        s->queue_deadline_ns == NULL) {
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
    } else if (s->queue_len == s->limits.max_queue) {
        st = baton_fail(err, BATON_ERR_NOMEM, "%d requests already wait for a slot (--max-queue)",
                        s->limits.max_queue);
    } else {
        int at = (s->queue_head + s->queue_len) % s->limits.max_queue;
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
    free(s->seqs);
    free(s->seq_stream);
    free(s->sampling);
    free(s->tokens_out);
    free(s->tokens);
    free(s->queue);
    free(s->queue_deadline_ns);
    free(s);
}
