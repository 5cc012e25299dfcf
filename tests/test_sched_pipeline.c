/* The scheduler over an in-process pipe of three stages whose compute takes a fixed time per
 * step (CPU stages wrapped so that each step also sleeps STAGE_MS):
 *   - with one micro-batch per stage in flight the stages work at once: micro-batches complete at
 *     >= 2.5x the rate of one micro-batch in flight (the pipeline really fills);
 *   - every stream's greedy tokens are the same either way, and the same as alone on a
 *     one-stage pipe (a stream does not depend on what shares its steps);
 *   - a 10,000-token prompt prefilled in chunks beside decoding streams does not stall them: the
 *     largest gap between two tokens of a decoding stream (measured, printed) stays well under
 *     the time the prompt takes to prefill (its chunks take turns with their steps). */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "scheduler.h"

enum { STAGES = 3, STAGE_MS = 20, STREAMS = 12, MAX_TOKENS = 16, LONG_PROMPT = 10000 };

/* ---- a stage that takes at least STAGE_MS per step ---- */

/* The stage's compute: STAGE_MS per step, whatever else the machine does. */
static baton_backend *delay_wrap(baton_backend *inner) {
    baton_backend *d = NULL;
    baton_error err = {0};
    REQUIRE(baton_delay_backend_new(inner, STAGE_MS, &d, &err) == BATON_OK);
    return d;
}

/* ---- streams ---- */

typedef struct {
    pthread_mutex_t *mu;
    pthread_cond_t *cond;
    int *n_done;
    int32_t ids[MAX_TOKENS + 8];
    int n_ids;
    baton_finish finish;
    long long t_first_ns, t_last_ns, gap_max_ns; /* the first token, gaps between tokens */
} result;

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void on_emit(void *user, const char *text, size_t len, int32_t id) {
    result *r = user;
    (void)text, (void)len;
    long long now = now_ns();
    if (r->n_ids > 0 && now - r->t_last_ns > r->gap_max_ns) r->gap_max_ns = now - r->t_last_ns;
    if (r->n_ids == 0) r->t_first_ns = now;
    r->t_last_ns = now;
    if (id >= 0 && r->n_ids < (int)(sizeof r->ids / sizeof r->ids[0])) r->ids[r->n_ids++] = id;
}
static void on_finish(void *user, baton_finish reason, uint32_t p, uint32_t c, const char *m) {
    result *r = user;
    (void)p, (void)c, (void)m;
    pthread_mutex_lock(r->mu);
    r->finish = reason;
    (*r->n_done)++;
    pthread_cond_broadcast(r->cond);
    pthread_mutex_unlock(r->mu);
}
static bool never(void *user) {
    (void)user;
    return false;
}
static const baton_stream_sink sink = {on_emit, on_finish, never, never};

static baton_model *model;
static baton_tokenizer *tok;

/* A pipe of n stages (splitting the model's layers evenly), each delayed when delayed. */
static baton_pipe *pipe_open(int n, int depth, bool delayed, int streams) {
    baton_backend *stages[STAGES];
    int per = model->n_layer / n;
    for (int i = 0; i < n; i++) {
        baton_stage_config c = {.layer_begin = i * per,
                                .layer_end = i == n - 1 ? model->n_layer : (i + 1) * per,
                                .with_embedding = i == 0, .with_head = i == n - 1,
                                .n_slots = streams, .max_seqs = streams,
                                .max_tokens = 512 + streams};
        REQUIRE(baton_cpu_backend_new(model, &c, &stages[i], NULL) == BATON_OK);
        if (delayed) stages[i] = delay_wrap(stages[i]);
    }
    baton_pipe *p = NULL;
    REQUIRE(baton_pipe_local_new(stages, n, depth, &p, NULL) == BATON_OK);
    return p;
}

typedef struct {
    long long t0_ns;
    double seconds;
    uint64_t steps;
    result results[STREAMS + 1];
} run_result;

/* Runs STREAMS greedy streams (prompts of 1..STREAMS bytes), plus one LONG_PROMPT-token prompt
 * submitted after them when with_long; waits for all. */
static void run(baton_pipe *p, int streams, bool with_long, run_result *out) {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    int n_done = 0;
    baton_scheduler_limits limits = {.max_streams = streams, .max_queue = STREAMS + 1,
                                     .prefill_chunk = 512};
    baton_scheduler *s = NULL;
    REQUIRE(baton_scheduler_start(p, tok, &limits, &s, NULL) == BATON_OK);
    memset(out, 0, sizeof *out);
    long long t0 = now_ns();
    out->t0_ns = t0;
    int n = STREAMS + (with_long ? 1 : 0);
    for (int i = 0; i < n; i++) {
        result *r = &out->results[i];
        r->mu = &mu;
        r->cond = &cond;
        r->n_done = &n_done;
        bool is_long = i == STREAMS;
        size_t n_prompt = is_long ? LONG_PROMPT : (size_t)(1 + i);
        int32_t *prompt = malloc(n_prompt * sizeof *prompt);
        REQUIRE(prompt != NULL);
        for (size_t k = 0; k < n_prompt; k++) prompt[k] = (int32_t)('a' + (k * 7 + (size_t)i) % 26);
        baton_gen_request req = {.prompt = prompt, .n_prompt = n_prompt,
                                 .sampling = {.top_p = 1}, .seed = 1,
                                 .gen = {.max_tokens = is_long ? 1 : MAX_TOKENS},
                                 .timeout_ms = 600000, .sink = &sink, .user = r};
        REQUIRE(baton_scheduler_submit(s, &req, NULL) == BATON_OK);
    }
    pthread_mutex_lock(&mu);
    while (n_done < n) pthread_cond_wait(&cond, &mu);
    pthread_mutex_unlock(&mu);
    out->seconds = (double)(now_ns() - t0) / 1e9;
    baton_scheduler_stats stats;
    baton_scheduler_stats_get(s, &stats);
    out->steps = stats.steps;
    baton_scheduler_free(s);
    for (int i = 0; i < n; i++) CHECK(out->results[i].finish == BATON_FINISH_MAX_TOKENS);
}

static bool same_tokens(const result *a, const result *b) {
    return a->n_ids == b->n_ids && memcmp(a->ids, b->ids, (size_t)a->n_ids * sizeof a->ids[0]) == 0;
}

int main(void) {
    char path[512];
    cli_tmp(path, sizeof path, "sched-pipeline.pth");
    REQUIRE(cli_run("synth --layers 3 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null",
                    path) == 0);
    REQUIRE(baton_model_load(path, NULL, &model, NULL) == BATON_OK);
    REQUIRE(baton_tokenizer_open("bytes", &tok, NULL) == BATON_OK);

    static run_result one, full, alone;
    baton_pipe *p = pipe_open(STAGES, 1, true, STREAMS);
    run(p, STREAMS, false, &one);
    baton_pipe_free(p);
    p = pipe_open(STAGES, 0, true, STREAMS);
    run(p, STREAMS, false, &full);
    baton_pipe_free(p);
    double rate_one = (double)one.steps / one.seconds, rate_full = (double)full.steps / full.seconds;
    printf("one micro-batch in flight: %llu steps in %.2f s (%.1f/s); one per stage: %llu in %.2f s "
           "(%.1f/s), %.2fx\n",
           (unsigned long long)one.steps, one.seconds, rate_one, (unsigned long long)full.steps,
           full.seconds, rate_full, rate_full / rate_one);
    CHECK(rate_full >= 2.5 * rate_one);

    /* Each stream alone, on one undelayed stage: the same tokens. */
    for (int i = 0; i < STREAMS; i++) {
        CHECK(one.results[i].n_ids == MAX_TOKENS);
        CHECK(same_tokens(&one.results[i], &full.results[i]));
    }
    p = pipe_open(1, 1, false, 1);
    run(p, 1, false, &alone);
    baton_pipe_free(p);
    for (int i = 0; i < STREAMS; i++) CHECK(same_tokens(&alone.results[i], &full.results[i]));

    /* A long prompt beside the decoding streams: its chunks take turns with their steps, so a
     * decoding stream waits at most about one chunk's step more per token. */
    static run_result with_long;
    p = pipe_open(STAGES, 0, true, STREAMS + 1);
    run(p, STREAMS + 1, true, &with_long);
    baton_pipe_free(p);
    long long gap_base = 0, gap_long = 0;
    for (int i = 0; i < STREAMS; i++) {
        CHECK(same_tokens(&with_long.results[i], &full.results[i]));
        if (full.results[i].gap_max_ns > gap_base) gap_base = full.results[i].gap_max_ns;
        if (with_long.results[i].gap_max_ns > gap_long) gap_long = with_long.results[i].gap_max_ns;
    }
    const result *lr = &with_long.results[STREAMS];
    long long prefill_ns = lr->t_first_ns - with_long.t0_ns;
    printf("largest gap between two tokens of a stream: %.1f ms alone, %.1f ms beside a %d-token "
           "prompt (%d chunks, %.1f ms to its first token)\n",
           gap_base / 1e6, gap_long / 1e6, LONG_PROMPT, (LONG_PROMPT + 511) / 512, prefill_ns / 1e6);
    /* Stalled, a stream would wait for the whole prompt; taking turns, about one chunk's step. */
    CHECK(gap_long < prefill_ns / 4);
    baton_tokenizer_free(tok);
    baton_model_free(model);
    remove(path);
    return check_failures ? 1 : 0;
}
