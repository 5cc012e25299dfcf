/* Load on a two-stage pipeline on loopback (two `baton node`s and a coordinator), from a C client
 * that runs every stream through one completion queue:
 *   - 256 concurrent Generate streams (128 under ASan) with mixed prompt lengths (1 to 1100 tokens, so some
 *     prefill in chunks) and max_tokens: every one completes, and its greedy tokens equal the
 *     same request run alone (in this process, on one CPU stage);
 *   - the same with every other stream cancelled after its first tokens: the others still equal
 *     their solo runs, and Info's slots in use and queue return to 0;
 *   - with every slot taken and the queue full, one more Generate is refused with
 *     RESOURCE_EXHAUSTED within 100 ms;
 *   - three nodes whose stages take a fixed 40 ms per step (hidden device cpu-delay:40): with a
 *     micro-batch per stage in flight, steps complete at >= 2.5x the rate of one at a time;
 *   - the coordinator's and nodes' resident memory after all that is what it was after a
 *     warm-up run (plain build; under ASan the leak check at exit does that job), and every
 *     process stops cleanly (exit 0: under ASan, no leaks). */
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <pthread.h>
#include <stdint.h>

#include "baton/v1/inference.pb-c.h"
#include "scheduler.h"
#include "test_serve_harness.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Under ASan the engine is ~15x slower: half the streams and no separate warm-up run (the memory
 * comparison is the leak checker's there), to stay within a couple of minutes. */
#define STREAMS (UNDER_ASAN ? 128 : 256)
enum {
    STREAMS_MAX = 256,
    SLOTS = 64,
    CALL_MS = 300000,
    TOKENS_MAX = 64,
    RSS_SLACK_KB = 8192,
};

static char model_path[512];
static pid_t started[8];
static int n_started;

static void kill_started(void) {
    for (int i = 0; i < n_started; i++)
        if (started[i] > 0 && kill(started[i], SIGKILL) == 0) waitpid(started[i], NULL, 0);
}

/* ---- the requests and their solo runs ---- */

typedef struct {
    int32_t prompt[1100];
    int n_prompt;
    int max_tokens;
    int32_t solo[TOKENS_MAX];
    int n_solo;
} spec;

static spec specs[STREAMS_MAX];

static void specs_make(void) {
    static const int lengths[] = {1, 3, 17, 64, 200, 511, 512, 513, 1100};
    uint32_t x = 12345;
    for (int i = 0; i < STREAMS; i++) {
        spec *s = &specs[i];
        s->n_prompt = lengths[i % 9] + (i % 9 == 0 || i % 9 >= 5 ? 0 : i % 5);
        for (int k = 0; k < s->n_prompt; k++) {
            x = x * 1664525u + 1013904223u;
            s->prompt[k] = (int32_t)(32 + (x >> 24) % 95);
        }
        s->max_tokens = 1 + (i * 37) % 48;
    }
}

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool done;
    spec *s;
} solo_run;

static void solo_emit(void *user, const char *text, size_t len, int32_t id) {
    solo_run *r = user;
    (void)text, (void)len;
    if (id >= 0 && r->s->n_solo < TOKENS_MAX) r->s->solo[r->s->n_solo++] = id;
}
static void solo_finish(void *user, baton_finish reason, uint32_t p, uint32_t c, const char *m) {
    solo_run *r = user;
    (void)reason, (void)p, (void)c, (void)m;
    pthread_mutex_lock(&r->mu);
    r->done = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->mu);
}
static bool solo_never(void *user) {
    (void)user;
    return false;
}

/* Every spec alone on one CPU stage in this process: what the server must give each stream. */
static void solo_all(void) {
    baton_model *model = NULL;
    baton_tokenizer *tok = NULL;
    REQUIRE(baton_model_load(model_path, NULL, &model, NULL) == BATON_OK);
    REQUIRE(baton_tokenizer_open("bytes", &tok, NULL) == BATON_OK);
    baton_scheduler_limits limits = {.max_streams = 1, .max_queue = 1, .prefill_chunk = 512};
    baton_stage_config c = {.layer_begin = 0, .layer_end = model->n_layer, .with_embedding = true,
                            .with_head = true, .n_slots = 1, .max_seqs = 1,
                            .max_tokens = baton_scheduler_step_tokens(&limits)};
    baton_backend *cpu = NULL;
    baton_pipe *sp = NULL;
    baton_scheduler *sched = NULL;
    REQUIRE(baton_cpu_backend_new(model, &c, &cpu, NULL) == BATON_OK);
    REQUIRE(baton_pipe_sync_new(cpu, &sp, NULL) == BATON_OK);
    REQUIRE(baton_scheduler_start(sp, tok, &limits, &sched, NULL) == BATON_OK);
    static const baton_stream_sink sink = {solo_emit, solo_finish, solo_never, solo_never};
    for (int i = 0; i < STREAMS; i++) {
        spec *s = &specs[i];
        solo_run r = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER, .s = s};
        int32_t *prompt = malloc((size_t)s->n_prompt * sizeof *prompt);
        REQUIRE(prompt != NULL);
        memcpy(prompt, s->prompt, (size_t)s->n_prompt * sizeof *prompt);
        baton_gen_request req = {.prompt = prompt, .n_prompt = (size_t)s->n_prompt,
                                 .sampling = {.top_p = 1}, .seed = 1,
                                 .gen = {.max_tokens = (uint32_t)s->max_tokens},
                                 .timeout_ms = CALL_MS, .sink = &sink, .user = &r};
        if (baton_tokenizer_eot(tok) >= 0) { /* as the server does when a request names none */
            req.gen.stop_ids[0] = baton_tokenizer_eot(tok);
            req.gen.n_stop_ids = 1;
        }
        REQUIRE(baton_scheduler_submit(sched, &req, NULL) == BATON_OK);
        pthread_mutex_lock(&r.mu);
        while (!r.done) pthread_cond_wait(&r.cond, &r.mu);
        pthread_mutex_unlock(&r.mu);
    }
    baton_scheduler_free(sched);
    baton_pipe_free(sp);
    baton_backend_free(cpu);
    baton_tokenizer_free(tok);
    baton_model_free(model);
}

/* ---- many streams through one completion queue ---- */

enum { OP_SEND = 0, OP_RECV = 1, OP_STATUS = 2 };

typedef struct {
    const spec *s;
    int cancel_after;          /* tokens; < 0: never */
    grpc_call *call;
    grpc_byte_buffer *request, *message;
    grpc_metadata_array initial_md, trailing_md;
    grpc_status_code code;
    grpc_slice details;
    int pending;               /* batches not completed */
    bool got_initial, got_status, cancelled;
    int32_t ids[TOKENS_MAX + 1];
    int n_ids;
    int finish_reason;
    long long t_start_ms, t_status_ms;
} gstream;

typedef struct {
    grpc_channel *channel;
    grpc_completion_queue *cq;
    gstream *streams;
    int n, n_open;
} client;

static void *tag_of(gstream *g, int op) {
    return (void *)((uintptr_t)g | (uintptr_t)op);
}

static void start_recv(gstream *g) {
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    int n = 0;
    if (!g->got_initial) {
        ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
        ops[n++].data.recv_initial_metadata.recv_initial_metadata = &g->initial_md;
        g->got_initial = true;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &g->message;
    REQUIRE(grpc_call_start_batch(g->call, ops, (size_t)n, tag_of(g, OP_RECV), NULL) == GRPC_CALL_OK);
    g->pending++;
}

static void stream_open(client *c, gstream *g) {
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__Sampling sampling = BATON__V1__SAMPLING__INIT;
    sampling.temperature_set_case = BATON__V1__SAMPLING__TEMPERATURE_SET_TEMPERATURE;
    sampling.temperature = 0;
    req.sampling = &sampling;
    req.n_prompt_tokens = (size_t)g->s->n_prompt;
    req.prompt_tokens = (int32_t *)g->s->prompt;
    req.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
    req.max_tokens = (uint32_t)g->s->max_tokens;
    g->request = rpc_buffer_pack(&req.base);
    REQUIRE(g->request != NULL);
    grpc_slice method = grpc_slice_from_static_string("/baton.v1.Inference/Generate");
    g->call = grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, c->cq, method,
                                       NULL, rpc_deadline_ms(CALL_MS), NULL);
    REQUIRE(g->call != NULL);
    grpc_metadata_array_init(&g->initial_md);
    grpc_metadata_array_init(&g->trailing_md);
    g->details = grpc_empty_slice();
    g->t_start_ms = test_now_ms();
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = g->request;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    REQUIRE(grpc_call_start_batch(g->call, ops, 3, tag_of(g, OP_SEND), NULL) == GRPC_CALL_OK);
    grpc_op st = {.op = GRPC_OP_RECV_STATUS_ON_CLIENT};
    st.data.recv_status_on_client.trailing_metadata = &g->trailing_md;
    st.data.recv_status_on_client.status = &g->code;
    st.data.recv_status_on_client.status_details = &g->details;
    REQUIRE(grpc_call_start_batch(g->call, &st, 1, tag_of(g, OP_STATUS), NULL) == GRPC_CALL_OK);
    g->pending += 2;
    start_recv(g);
    c->n_open++;
}

static void stream_close(client *c, gstream *g) {
    grpc_call_unref(g->call);
    g->call = NULL;
    grpc_byte_buffer_destroy(g->request);
    g->request = NULL;
    grpc_metadata_array_destroy(&g->initial_md);
    grpc_metadata_array_destroy(&g->trailing_md);
    grpc_slice_unref(g->details);
    c->n_open--;
}

static void client_open(client *c, const char *addr, gstream *streams, int n) {
    rpc_acquire();
    grpc_channel_credentials *creds = grpc_insecure_credentials_create();
    c->channel = grpc_channel_create(addr, creds, NULL);
    grpc_channel_credentials_release(creds);
    c->cq = grpc_completion_queue_create_for_next(NULL);
    c->streams = streams;
    c->n = n;
    c->n_open = 0;
    for (int i = 0; i < n; i++) stream_open(c, &streams[i]);
}

/* Handles completions until every stream is over or ms pass; true when all are over. */
static bool client_poll(client *c, int ms) {
    long long until = test_now_ms() + ms;
    while (c->n_open > 0 && test_now_ms() < until) {
        grpc_event ev = grpc_completion_queue_next(c->cq, rpc_deadline_ms(50), NULL);
        if (ev.type != GRPC_OP_COMPLETE) continue;
        gstream *g = (gstream *)((uintptr_t)ev.tag & ~(uintptr_t)3);
        int op = (int)((uintptr_t)ev.tag & 3);
        g->pending--;
        if (op == OP_RECV && ev.success && g->message != NULL) {
            Baton__V1__GenerateResponse *m = (Baton__V1__GenerateResponse *)rpc_buffer_unpack(
                g->message, &baton__v1__generate_response__descriptor);
            grpc_byte_buffer_destroy(g->message);
            g->message = NULL;
            REQUIRE(m != NULL);
            for (size_t k = 0; k < m->n_token_ids && g->n_ids <= TOKENS_MAX; k++)
                g->ids[g->n_ids++] = m->token_ids[k];
            if (m->finish != NULL) g->finish_reason = m->finish->reason;
            protobuf_c_message_free_unpacked(&m->base, NULL);
            if (g->cancel_after >= 0 && g->n_ids >= g->cancel_after && !g->cancelled) {
                g->cancelled = true;
                grpc_call_cancel(g->call, NULL);
            }
            start_recv(g);
        } else if (op == OP_STATUS) {
            g->got_status = true;
            g->t_status_ms = test_now_ms();
        }
        if (g->got_status && g->pending == 0) stream_close(c, g);
    }
    return c->n_open == 0;
}

static void client_close(client *c) {
    for (int i = 0; i < c->n; i++)
        if (c->streams[i].call != NULL) grpc_call_cancel(c->streams[i].call, NULL);
    REQUIRE(client_poll(c, 30000));
    grpc_completion_queue_shutdown(c->cq);
    while (grpc_completion_queue_next(c->cq, rpc_deadline_ms(1000), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->cq);
    grpc_channel_destroy(c->channel);
    rpc_release();
}

/* ---- the server side ---- */

/* Info, which must carry the load. */
static Baton__V1__InfoResponse *info(const test_server *s) {
    Baton__V1__InfoResponse *i = serve_info(s);
    REQUIRE(i->load != NULL);
    return i;
}

/* Polls Info (bounded) until streams and queued are as wanted. */
static bool wait_load(const test_server *s, uint32_t streams, uint32_t queued, int ms) {
    long long until = test_now_ms() + ms;
    for (;;) {
        Baton__V1__InfoResponse *i = info(s);
        bool ok = i->load->streams == streams && i->load->queued == queued;
        protobuf_c_message_free_unpacked(&i->base, NULL);
        if (ok) return true;
        if (test_now_ms() > until) return false;
        struct timespec t = {.tv_nsec = 20000000}; /* polling a server */
        nanosleep(&t, NULL);
    }
}

static long rss_kb(pid_t pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (f == NULL) return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static void node_start(test_server *n, const char *devices) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec '%s' node --listen 127.0.0.1:0 --model '%s' --devices %s",
             cli_bin(), model_path, devices);
    test_spawn(n, cmd, "baton node");
    started[n_started++] = n->pid;
}

/* Runs every spec at once; cancel_odd makes streams 1, 3, 5, ... long and cancels them after
 * their first tokens. */
static void run_load(const test_server *srv, bool cancel_odd, const char *what) {
    static gstream streams[STREAMS_MAX];
    static spec longs[STREAMS_MAX];
    memset(streams, 0, sizeof streams);
    for (int i = 0; i < STREAMS; i++) {
        streams[i].s = &specs[i];
        streams[i].cancel_after = -1;
        if (cancel_odd && i % 2 == 1) {
            longs[i] = specs[i];
            longs[i].max_tokens = 4000;
            streams[i].s = &longs[i];
            streams[i].cancel_after = 1 + i % 7;
        }
    }
    client c;
    long long t0 = test_now_ms();
    client_open(&c, srv->addr, streams, STREAMS);
    CHECK_MSG(client_poll(&c, CALL_MS), "%s: streams still open", what);
    long long t1 = test_now_ms();
    int equal = 0, cancelled = 0, tokens = 0;
    for (int i = 0; i < STREAMS; i++) {
        gstream *g = &streams[i];
        const spec *s = g->s;
        tokens += g->n_ids;
        if (g->cancelled) {
            cancelled += g->code == GRPC_STATUS_CANCELLED;
            continue;
        }
        bool same = g->code == GRPC_STATUS_OK && g->n_ids == s->n_solo &&
                    memcmp(g->ids, s->solo, (size_t)s->n_solo * sizeof s->solo[0]) == 0;
        CHECK_MSG(same, "%s: stream %d (prompt %d, max_tokens %d): status %d, %d tokens, solo %d",
                  what, i, s->n_prompt, s->max_tokens, (int)g->code, g->n_ids, s->n_solo);
        equal += same;
    }
    client_close(&c);
    printf("%s: %d streams in %.2f s, %d tokens (%.0f tokens/s), %d equal their solo run, %d "
           "cancelled\n",
           what, STREAMS, (t1 - t0) / 1e3, tokens, tokens * 1e3 / (double)(t1 - t0 + 1), equal,
           cancelled);
    if (cancel_odd) CHECK(cancelled == STREAMS / 2);
    /* Slots and queue come back once the streams are over (cancelled ones at their next step). */
    CHECK_MSG(wait_load(srv, 0, 0, 10000), "%s: slots or queue still taken", what);
}

/* Fills every slot and the queue with long streams, then one more: RESOURCE_EXHAUSTED at once. */
static void run_overflow(const test_server *srv) {
    static spec longs[STREAMS_MAX + 1];
    static gstream streams[STREAMS_MAX + 1];
    memset(streams, 0, sizeof streams);
    int n = STREAMS; /* every slot and the whole queue */
    for (int i = 0; i <= n; i++) {
        longs[i] = specs[i % STREAMS];
        longs[i].max_tokens = 4000;
        streams[i].s = &longs[i];
        streams[i].cancel_after = -1;
    }
    client c;
    client_open(&c, srv->addr, streams, n);
    long long until = test_now_ms() + 60000;
    bool full = false;
    while (!full && test_now_ms() < until) {
        client_poll(&c, 20);
        full = wait_load(srv, SLOTS, STREAMS - SLOTS, 0);
    }
    REQUIRE(full);
    gstream *extra = &streams[n];
    stream_open(&c, extra);
    c.n = n + 1;
    long long t_limit = test_now_ms() + 5000;
    while (!extra->got_status && test_now_ms() < t_limit) client_poll(&c, 10);
    long long ms = extra->t_status_ms - extra->t_start_ms;
    printf("overflow: refused with status %d in %lld ms\n", (int)extra->code, ms);
    CHECK(extra->got_status && extra->code == GRPC_STATUS_RESOURCE_EXHAUSTED);
    CHECK(ms < 100);
    client_close(&c); /* cancels the rest */
    CHECK_MSG(wait_load(srv, 0, 0, 10000), "overflow: slots or queue still taken after cancel");
}

/* Steps per second of PIPE_STREAMS streams of PIPE_TOKENS tokens through coordinator args. */
enum { PIPE_STREAMS = 12, PIPE_TOKENS = 16, PIPE_DELAY_MS = 40 };
static double pipe_rate(const char *args) {
    test_server srv;
    serve_start(&srv, args);
    started[n_started++] = srv.pid;
    static spec short_specs[PIPE_STREAMS];
    static gstream streams[PIPE_STREAMS];
    memset(streams, 0, sizeof streams);
    for (int i = 0; i < PIPE_STREAMS; i++) {
        short_specs[i] = specs[i % 5]; /* prompts of one chunk at most */
        short_specs[i].max_tokens = PIPE_TOKENS;
        streams[i].s = &short_specs[i];
        streams[i].cancel_after = -1;
    }
    Baton__V1__InfoResponse *i0 = info(&srv);
    uint64_t steps0 = i0->load->steps;
    protobuf_c_message_free_unpacked(&i0->base, NULL);
    client c;
    long long t0 = test_now_ms();
    client_open(&c, srv.addr, streams, PIPE_STREAMS);
    CHECK(client_poll(&c, CALL_MS));
    long long t1 = test_now_ms();
    client_close(&c);
    for (int i = 0; i < PIPE_STREAMS; i++)
        CHECK(streams[i].code == GRPC_STATUS_OK && streams[i].n_ids == PIPE_TOKENS);
    Baton__V1__InfoResponse *i1 = info(&srv);
    uint64_t steps = i1->load->steps - steps0;
    printf("  %s: %llu steps in %.2f s (%.1f steps/s), %u micro-batches chosen, stage ms",
           strstr(args, "--micro-batches") != NULL ? "one micro-batch" : "as chosen",
           (unsigned long long)steps, (t1 - t0) / 1e3, steps * 1e3 / (double)(t1 - t0),
           i1->load->micro_batches_target);
    for (size_t k = 0; k < i1->load->n_stage_ms; k++) printf(" %.1f", i1->load->stage_ms[k]);
    printf("\n");
    protobuf_c_message_free_unpacked(&i1->base, NULL);
    CHECK(serve_stop(&srv) == 0);
    n_started--;
    return steps * 1e3 / (double)(t1 - t0);
}

/* Three nodes whose stage takes PIPE_DELAY_MS more per step (hidden device cpu-delay:MS): with a
 * micro-batch per stage in flight, micro-batches complete at >= 2.5x the rate of one at a time,
 * so the nodes really compute at once (forwarding does not wait for the next stage). */
static void run_pipelining(void) {
    test_server nodes[3];
    char devices[32], args[2048];
    snprintf(devices, sizeof devices, "cpu-delay:%d", PIPE_DELAY_MS);
    for (int k = 0; k < 3; k++) node_start(&nodes[k], devices);
    printf("three nodes, %d ms per stage step:\n", PIPE_DELAY_MS);
    snprintf(args, sizeof args,
             "--model '%s' --nodes %s,%s,%s --max-streams %d --log-interval-s 0 "
             "--micro-batches 1",
             model_path, nodes[0].addr, nodes[1].addr, nodes[2].addr, PIPE_STREAMS);
    double one = pipe_rate(args);
    *strstr(args, " --micro-batches 1") = '\0';
    double full = pipe_rate(args);
    printf("  %.2fx\n", full / one);
    CHECK(full >= 2.5 * one);
    for (int k = 0; k < 3; k++) CHECK(serve_stop(&nodes[k]) == 0);
}

int main(void) {
    atexit(kill_started);
    cli_tmp(model_path, sizeof model_path, "load.pth");
    REQUIRE(cli_run("synth --layers 4 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null",
                    model_path) == 0);
    specs_make();
    long long t = test_now_ms();
    solo_all();
    printf("solo runs: %.2f s\n", (test_now_ms() - t) / 1e3);

    test_server nodes[2], srv;
    node_start(&nodes[0], "cpu");
    node_start(&nodes[1], "cpu");
    char args[2048];
    snprintf(args, sizeof args,
             "--model '%s' --nodes %s,%s --max-streams %d --max-queue %d --log-interval-s 2",
             model_path, nodes[0].addr, nodes[1].addr, SLOTS, STREAMS - SLOTS);
    serve_start(&srv, args);
    started[n_started++] = srv.pid;

    if (!UNDER_ASAN) run_load(&srv, false, "warm-up");
    long rss0[3] = {rss_kb(srv.pid), rss_kb(nodes[0].pid), rss_kb(nodes[1].pid)};
    run_load(&srv, false, "load");
    run_load(&srv, true, "cancel half");
    run_overflow(&srv);
    long rss1[3] = {rss_kb(srv.pid), rss_kb(nodes[0].pid), rss_kb(nodes[1].pid)};
    Baton__V1__InfoResponse *i = info(&srv);
    printf("Info: %llu steps, %llu tokens generated, %llu prefilled, %.1f seqs/step, stage ms",
           (unsigned long long)i->load->steps, (unsigned long long)i->load->tokens_generated,
           (unsigned long long)i->load->tokens_prefilled, i->load->batch_mean);
    for (size_t k = 0; k < i->load->n_stage_ms; k++) printf(" %.3f", i->load->stage_ms[k]);
    printf("\n");
    CHECK(i->load->n_stage_ms == 2 && i->load->stage_ms[0] > 0 && i->load->stage_ms[1] > 0);
    CHECK(i->load->steps > 0 && i->load->rss_bytes > 0);
    protobuf_c_message_free_unpacked(&i->base, NULL);
    static const char *names[3] = {"coordinator", "node 1", "node 2"};
    for (int k = 0; k < 3; k++) {
        printf("%s: VmRSS %ld kB %s, %ld kB at the end\n", names[k], rss0[k],
               UNDER_ASAN ? "before the load" : "after the warm-up", rss1[k]);
        if (!UNDER_ASAN) CHECK(rss0[k] > 0 && rss1[k] <= rss0[k] + RSS_SLACK_KB);
    }

    CHECK(serve_stop(&srv) == 0);
    for (int k = 0; k < 2; k++) CHECK_MSG(serve_stop(&nodes[k]) == 0, "node %d did not stop cleanly", k + 1);
    n_started = 0;
    run_pipelining();
    n_started = 0;
    remove(model_path);
    return check_failures ? 1 : 0;
}
