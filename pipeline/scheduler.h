/* Continuous batching over a pipe (pipeline/pipe.h): a thread that owns the pipe and runs steps
 * for all active streams. Each step every decoding stream advances one token; a new stream's
 * prompt goes in chunks of prefill_chunk tokens alongside; a finished, cancelled or expired
 * stream leaves between steps and its slot goes back to the free list.
 *
 * Pipelining: the active streams are split into micro-batches (disjoint sets of slots), several
 * in flight at once so that the stages compute at the same time. How many: enough to keep the
 * slowest stage busy, ceil(sum of the stages' step times / the slowest one's), at most one per
 * stage (the pipe's depth); as large as the sampled streams divided by that number. A prompt's
 * chunks that are not its last go in micro-batches of their own (no sampling), taking turns
 * with the sampled ones, so a long prompt delays the others by at most one chunk's compute per
 * step of theirs.
 *
 * A stream gives the same tokens whatever else runs beside it: the backend is batch-invariant,
 * prompts are cut into the same chunks as `baton run` cuts them, and each stream draws its
 * uniforms from its own seeded baton_rng in the same order as `baton run` does (one per prompt
 * chunk, the unused ones skipped, then one per token).
 *
 * Threads: submit and stop from any thread; the sink is called on the scheduler thread. */
#ifndef BATON_SCHEDULER_H
#define BATON_SCHEDULER_H

#include "generation.h"
#include "pipe.h"
#include "tokenizer.h"

/* Where a stream's output goes; called on the scheduler thread only. */
typedef struct {
    /* New text (possibly empty) and the token behind it (id < 0: none, e.g. a stop id). */
    void (*emit)(void *user, const char *text, size_t len, int32_t id);
    /* The stream is over; the last call with user. message: why, when not a normal end. */
    void (*finish)(void *user, baton_finish reason, uint32_t prompt_tokens,
                   uint32_t completion_tokens, const char *message);
    /* The consumer went away: the stream leaves at the next step. */
    bool (*cancelled)(void *user);
    /* The consumer has too much unread: the stream waits this step. */
    bool (*backlogged)(void *user);
} baton_stream_sink;

typedef struct {
    int32_t *prompt;             /* [n_prompt] ids < n_vocab, malloc'ed; taken on success */
    size_t n_prompt;             /* >= 1 */
    baton_sampling sampling;     /* checked by the caller; uniform is ignored */
    uint64_t seed;
    baton_gen_config gen;        /* checked by the caller */
    int64_t timeout_ms;          /* from submission; the stream is cancelled past it */
    const baton_stream_sink *sink;
    void *user;
} baton_gen_request;

typedef struct {
    int max_streams;   /* streams generating at once (state slots) */
    int max_queue;     /* streams waiting for a slot */
    int prefill_chunk; /* prompt tokens per stream per step; `baton run` uses 512 */
    int micro_batches; /* in flight at most; 0: the pipe's depth (one per stage) */
    int log_interval_s;/* a line on stderr this often while streams run; 0: never */
} baton_scheduler_limits;

/* What Info and the periodic log line report. */
typedef struct {
    int streams;                /* active: holding a slot on every stage */
    int queued;                 /* waiting for a slot */
    int max_streams;
    int micro_batches;          /* in flight now */
    int micro_batches_target;   /* what the scheduler chose */
    double batch_mean;          /* sequences per step, moving average */
    double tokens_per_s;        /* generated, over the last second or so; 0 when idle */
    uint64_t steps, tokens_generated, tokens_prefilled;
    int n_stages;
    double stage_ms[BATON_PIPE_STAGES_MAX]; /* each stage's time per step, moving average */
} baton_scheduler_stats;

typedef struct baton_scheduler baton_scheduler;

/* The tokens per step the backend must take for these limits (its config.max_tokens). */
int baton_scheduler_step_tokens(const baton_scheduler_limits *limits);

/* Starts the thread. pipe (with embedding and head, n_slots and max_seqs >= max_streams,
 * max_tokens >= baton_scheduler_step_tokens) and tok must outlive the scheduler. */
baton_status baton_scheduler_start(baton_pipe *pipe, const baton_tokenizer *tok,
                                   const baton_scheduler_limits *limits, baton_scheduler **out,
                                   baton_error *err);

/* Queues a stream. BATON_ERR_NOMEM: the queue is full; BATON_ERR_UNAVAILABLE: stopping. On
 * success the prompt is the scheduler's (req->prompt becomes NULL) and the sink will get a
 * finish call; on failure the sink is never called. */
baton_status baton_scheduler_submit(baton_scheduler *s, baton_gen_request *req, baton_error *err);

/* A snapshot of the counters; any thread. */
void baton_scheduler_stats_get(baton_scheduler *s, baton_scheduler_stats *out);

/* Ends every stream (SHUTDOWN, "the server is shutting down") and stops the thread. */
void baton_scheduler_stop(baton_scheduler *s);

/* Stops if needed and frees; NULL is a no-op. */
void baton_scheduler_free(baton_scheduler *s);

#endif
