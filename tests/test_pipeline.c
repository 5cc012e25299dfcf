/* The distributed pipeline on loopback, against `baton run` in one process:
 *   - three `baton node`s and a coordinator with a three-way split: greedy (and seeded) streams
 *     equal `baton run` byte for byte; Info lists the three stages on their nodes;
 *   - the embedded default with two stages on one device (--split 3,3, and --devices cpu,cpu):
 *     the same equality;
 *   - two stages on one node and one on another: the node passes steps between its stages in
 *     process, and the same equality; a node's stages Loaded into a loop end a step, not spin;
 *   - a node with another model is refused: other data (same shapes) by the range checksum,
 *     another shape by the header fingerprint;
 *   - a node killed mid-generation: its stream ends UNAVAILABLE within 5 s, Health says
 *     NOT_SERVING, new streams get UNAVAILABLE; the node restarted on its port is taken back
 *     (SERVING, equal output again); a stalled node (SIGSTOP) the same, within the step timeout;
 *     the coordinator never exits and stops cleanly. */
#include "baton/v1/inference.pb-c.h"
#include "baton/v1/stage.pb-c.h"
#include "test_serve_harness.h"

enum { NODES = 3, PIDS_MAX = 16, RECOVER_MS = 30000 };

static char model[512], model_other[512], model_shape[512];
static pid_t started[PIDS_MAX];
static int n_started;

/* Whatever the test started dies with it, even when a REQUIRE stops it early. */
static void kill_started(void) {
    for (int i = 0; i < n_started; i++) {
        if (started[i] > 0 && kill(started[i], SIGKILL) == 0) waitpid(started[i], NULL, 0);
    }
}

static void remember(pid_t pid) {
    REQUIRE(n_started < PIDS_MAX);
    started[n_started++] = pid;
}

static void forget(pid_t pid) {
    for (int i = 0; i < n_started; i++)
        if (started[i] == pid) started[i] = 0;
}

static void pause_ms(int ms) { /* polling, not synchronizing */
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* Starts `baton node --listen LISTEN --model PATH [EXTRA]` and reads the address it prints. */
static void node_start_with(test_server *n, const char *listen, const char *path, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "exec '%s' node --listen %s --model '%s' %s", cli_bin(), listen, path,
             extra);
    test_spawn(n, cmd, "baton node");
    remember(n->pid);
}

static void node_start(test_server *n, const char *listen, const char *path) {
    node_start_with(n, listen, path, "");
}

static void node_kill(test_server *n) {
    kill(n->pid, SIGKILL);
    waitpid(n->pid, NULL, 0);
    forget(n->pid);
    close(n->out_fd);
}

static int node_stop(test_server *n) {
    pid_t pid = n->pid;
    int rc = serve_stop(n); /* reaps it, killed if it does not stop in time */
    forget(pid);
    return rc;
}

static void coordinator_start(test_server *s, const char *args) {
    serve_start(s, args);
    remember(s->pid);
}

static int coordinator_stop(test_server *s) {
    int rc = serve_stop(s);
    forget(s->pid);
    return rc;
}

static void check_same(const test_server *s, const char *opts) {
    char cmd[8192];
    int rc_local = -1, rc_remote = -1;
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --tokenizer bytes %s", cli_bin(), model, opts);
    char *local = test_capture(cmd, &rc_local);
    snprintf(cmd, sizeof cmd, "'%s' generate --server %s %s", cli_bin(), s->addr, opts);
    char *remote = test_capture(cmd, &rc_remote);
    REQUIRE(local != NULL && remote != NULL);
    CHECK_MSG(rc_local == 0 && rc_remote == 0, "%s: run %d, generate %d", opts, rc_local, rc_remote);
    CHECK_MSG(strcmp(local, remote) == 0, "%.80s:\n  run:      [%s]\n  generate: [%s]", opts,
              local, remote);
    CHECK_MSG(strlen(local) > 1, "%s: nothing generated", opts);
    free(local);
    free(remote);
}

static void check_prompts(const test_server *s) {
    check_same(s, "--prompt 'Hello there' --temperature 0 --max-tokens 60");
    check_same(s, "--prompt 'x' --temperature 0 --max-tokens 1");
    check_same(s, "--prompt 'The quick brown fox' --temperature 0 --max-tokens 80");
    check_same(s, "--prompt 'penalties' --temperature 0 --presence-penalty 0.5 "
                  "--frequency-penalty 0.3 --max-tokens 50");
    check_same(s, "--prompt 'seeded' --temperature 0.9 --top-p 0.7 --seed 7 --max-tokens 60");
    char opts[2048], prompt[701];
    for (int i = 0; i < 700; i++) prompt[i] = (char)('a' + (i * 7) % 26);
    prompt[700] = '\0';
    snprintf(opts, sizeof opts, "--prompt '%s' --temperature 0 --max-tokens 30", prompt);
    check_same(s, opts); /* two prefill chunks */
}

static bool wait_health(const test_server *s, int want, int ms) {
    long long until = test_now_ms() + ms;
    while (test_now_ms() < until) {
        if (serve_health(s->channel, "") == want) return true;
        pause_ms(20);
    }
    return false;
}

/* A long greedy stream that a node fault cuts: returns its status and how long after fault()
 * the stream ended. */
static grpc_status_code cut_stream(const test_server *s, void (*fault)(test_server *),
                                   test_server *victim, long long *after_ms) {
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    Baton__V1__Sampling sampling = BATON__V1__SAMPLING__INIT;
    sampling.temperature_set_case = BATON__V1__SAMPLING__TEMPERATURE_SET_TEMPERATURE;
    sampling.temperature = 0;
    req.sampling = &sampling;
    req.prompt = "a stream that a fault will cut";
    req.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
    req.max_tokens = 4096;
    rpc_stream *st = rpc_stream_open(s->channel, "/baton.v1.Inference/Generate", &req.base, 60000);
    REQUIRE(st != NULL);
    ProtobufCMessage *m = rpc_stream_next(st, &baton__v1__generate_response__descriptor);
    REQUIRE(m != NULL); /* generating */
    protobuf_c_message_free_unpacked(m, NULL);
    fault(victim);
    long long t0 = test_now_ms();
    bool finished_normally = false;
    while ((m = rpc_stream_next(st, &baton__v1__generate_response__descriptor)) != NULL) {
        const Baton__V1__GenerateResponse *r = (const Baton__V1__GenerateResponse *)m;
        if (r->finish != NULL && r->finish->reason == BATON__V1__FINISH_REASON__FINISH_REASON_MAX_TOKENS)
            finished_normally = true;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    *after_ms = test_now_ms() - t0;
    grpc_status_code code = rpc_stream_status(st)->code;
    printf("stream cut: %s after %lld ms (%s)\n", rpc_status_name(code), *after_ms,
           rpc_stream_status(st)->message);
    CHECK_MSG(!finished_normally, "the stream finished before the fault");
    rpc_stream_free(st);
    return code;
}

static void fault_kill(test_server *n) {
    node_kill(n);
}

static void fault_stop(test_server *n) {
    kill(n->pid, SIGSTOP);
}

static void check_nodes(void) {
    test_server nodes[NODES];
    for (int i = 0; i < NODES; i++) node_start(&nodes[i], "127.0.0.1:0", model);
    char args[2048];
    snprintf(args, sizeof args,
             "--model '%s' --tokenizer bytes --nodes %s,%s,%s --split 2,2,2 --step-timeout-ms 5000",
             model, nodes[0].addr, nodes[1].addr, nodes[2].addr);
    test_server s;
    coordinator_start(&s, args);
    check_prompts(&s);

    Baton__V1__InfoResponse *in = serve_info(&s);
    CHECK(in->n_stages == NODES);
    for (size_t i = 0; i < in->n_stages && i < NODES; i++) {
        const Baton__V1__StageInfo *st = in->stages[i];
        CHECK_MSG(st->layer_begin == 2 * i && st->layer_end == 2 * i + 2 &&
                      strcmp(st->host, nodes[i].addr) == 0 && st->with_embedding == (i == 0) &&
                      st->with_head == (i == NODES - 1),
                  "stage %zu: [%u, %u) on %s", i, st->layer_begin, st->layer_end, st->host);
    }
    protobuf_c_message_free_unpacked(&in->base, NULL);

    /* Kill the middle node mid-stream. */
    long long after = 0;
    CHECK(cut_stream(&s, fault_kill, &nodes[1], &after) == GRPC_STATUS_UNAVAILABLE);
    CHECK_MSG(after <= 5000, "the stream took %lld ms to end", after);
    CHECK(wait_health(&s, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING, 5000));
    int rc = -1;
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' generate --server %s --prompt hi --max-tokens 3 2>&1",
             cli_bin(), s.addr);
    char *out = test_capture(cmd, &rc);
    CHECK_MSG(rc == 1 && out != NULL && strstr(out, "UNAVAILABLE") != NULL, "while down: %d %s", rc,
              out ? out : "");
    free(out);
    /* Back on the same port: taken back, same output. */
    char listen[64];
    snprintf(listen, sizeof listen, "%s", nodes[1].addr);
    node_start(&nodes[1], listen, model);
    CHECK(wait_health(&s, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, RECOVER_MS));
    check_same(&s, "--prompt 'Hello there' --temperature 0 --max-tokens 60");

    /* Stall the last node: the stream ends within the step timeout; it comes back on SIGCONT. */
    CHECK(cut_stream(&s, fault_stop, &nodes[2], &after) == GRPC_STATUS_UNAVAILABLE);
    CHECK_MSG(after <= 5000 + 1000, "the stream took %lld ms to end", after);
    CHECK(wait_health(&s, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING, 5000));
    kill(nodes[2].pid, SIGCONT);
    CHECK(wait_health(&s, GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING, RECOVER_MS));
    check_same(&s, "--prompt 'The quick brown fox' --temperature 0 --max-tokens 80");

    CHECK(waitpid(s.pid, NULL, WNOHANG) == 0); /* the coordinator never exited */
    CHECK(coordinator_stop(&s) == 0);
    for (int i = 0; i < NODES; i++) CHECK(node_stop(&nodes[i]) == 0);
}

static void check_embedded(const char *args_extra, int n_stages) {
    char args[2048];
    snprintf(args, sizeof args, "--model '%s' --tokenizer bytes %s", model, args_extra);
    test_server s;
    coordinator_start(&s, args);
    Baton__V1__InfoResponse *in = serve_info(&s);
    CHECK_MSG(in->n_stages == (size_t)n_stages, "%s: %zu stages", args_extra, in->n_stages);
    if (in->n_stages == 2)
        CHECK(in->stages[0]->layer_end == 3 && in->stages[1]->layer_begin == 3 &&
              in->stages[0]->host[0] == '\0');
    protobuf_c_message_free_unpacked(&in->base, NULL);
    check_prompts(&s);
    CHECK(coordinator_stop(&s) == 0);
}

/* Two stages on one node (--devices cpu,cpu) and the third on another: the first node hands
 * its steps from its first stage to its second in process (it says so), and the output is still
 * `baton run`'s. */
static void check_same_node(void) {
    test_server a, b;
    node_start_with(&a, "127.0.0.1:0", model, "--devices cpu,cpu");
    node_start(&b, "127.0.0.1:0", model);
    char args[2048];
    snprintf(args, sizeof args,
             "--model '%s' --tokenizer bytes --nodes %s,%s --split 2,2,2 --step-timeout-ms 5000",
             model, a.addr, b.addr);
    test_server s;
    coordinator_start(&s, args);
    char rest[256];
    CHECK_MSG(serve_read_line(&a, "baton node: stage 0 hands its steps to stage ", rest, sizeof rest,
                              5000) &&
                  strncmp(rest, "1 in this process", 17) == 0,
              "node %s did not pass stage 0's steps to stage 1 in process", a.addr);
    Baton__V1__InfoResponse *in = serve_info(&s);
    CHECK(in->n_stages == 3);
    for (size_t i = 0; i < in->n_stages && i < 3; i++)
        CHECK_MSG(strcmp(in->stages[i]->host, i < 2 ? a.addr : b.addr) == 0, "stage %zu on %s", i,
                  in->stages[i]->host);
    protobuf_c_message_free_unpacked(&in->base, NULL);
    check_prompts(&s);
    CHECK(coordinator_stop(&s) == 0);
    CHECK(node_stop(&a) == 0);
    CHECK(node_stop(&b) == 0);
}

/* A node's two stages Loaded into a loop (0 hands to 1, 1 to 0, both middle stages): a step
 * ends with FAILED_PRECONDITION instead of going round for ever. */
static void check_loop(void) {
    test_server n;
    node_start_with(&n, "127.0.0.1:0", model, "--devices cpu,cpu");
    rpc_limits limits = rpc_limits_default();
    rpc_channel *ch = NULL;
    REQUIRE(rpc_channel_open(n.addr, &limits, &ch, NULL) == BATON_OK);
    ProtobufCMessage *resp = NULL;
    rpc_status st;
    for (uint32_t i = 0; i < 2; i++) {
        Baton__V1__LoadRequest load = BATON__V1__LOAD_REQUEST__INIT;
        load.stage = i;
        load.epoch = 1;
        load.layer_begin = 2;
        load.layer_end = 4;
        load.n_slots = load.max_seqs = load.max_tokens = 1;
        load.next_target = n.addr;
        load.next_stage = 1 - i;
        load.next_same_node = true;
        bool ok = rpc_call_unary(ch, "/baton.v1.Stage/Load", &load.base,
                                 &baton__v1__load_response__descriptor, 20000, &resp, &st);
        CHECK_MSG(ok, "Load of stage %u: %s", i, ok ? "" : st.message);
        if (ok) protobuf_c_message_free_unpacked(resp, NULL);
    }
    Baton__V1__StepRequest step = BATON__V1__STEP_REQUEST__INIT;
    int32_t slot = 0, count = 1;
    float hidden[64] = {0}; /* the model's n_embd */
    step.epoch = 1;
    step.n_slots = step.n_seq_tokens = 1;
    step.slots = &slot;
    step.seq_tokens = &count;
    step.hidden.data = (uint8_t *)hidden;
    step.hidden.len = sizeof hidden;
    bool ok = rpc_call_unary(ch, "/baton.v1.Stage/Step", &step.base,
                             &baton__v1__step_response__descriptor, 10000, &resp, &st);
    CHECK_MSG(!ok && st.code == GRPC_STATUS_FAILED_PRECONDITION && strstr(st.message, "loop"),
              "a step through a loop: %s (%s)", ok ? "answered" : rpc_status_name(st.code),
              ok ? "" : st.message);
    if (ok) protobuf_c_message_free_unpacked(resp, NULL);
    rpc_channel_free(ch);
    CHECK(node_stop(&n) == 0);
}

/* A coordinator over one node with path: it must refuse, naming why. */
static void check_refused(const char *path, const char *why) {
    test_server n;
    node_start(&n, "127.0.0.1:0", path);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "'%s' serve --listen 127.0.0.1:0 --model '%s' --nodes %s --connect-timeout-s 20 2>&1",
             cli_bin(), model, n.addr);
    int rc = -1;
    char *out = test_capture(cmd, &rc);
    CHECK_MSG(rc == 1 && out != NULL && strstr(out, why) != NULL, "exit %d, expected '%s' in: %s",
              rc, why, out ? out : "");
    free(out);
    CHECK(node_stop(&n) == 0);
}

int main(void) {
    atexit(kill_started);
    signal(SIGPIPE, SIG_IGN);
    cli_tmp(model, sizeof model, "pipe-model.pth");
    cli_tmp(model_other, sizeof model_other, "pipe-model-seed2.pth");
    cli_tmp(model_shape, sizeof model_shape, "pipe-model-7.pth");
    REQUIRE(cli_run("synth --layers 6 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null", model) == 0);
    REQUIRE(cli_run("synth --layers 6 --embd 64 --vocab 256 --dtype fp16 --seed 2 -o '%s' >/dev/null", model_other) == 0);
    REQUIRE(cli_run("synth --layers 7 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null", model_shape) == 0);

    check_embedded("--split 3,3", 2);
    check_embedded("--devices cpu,cpu", 2);
    check_refused(model_other, "loaded different data");
    check_refused(model_shape, "different model");
    check_same_node();
    check_loop();
    check_nodes();
    return test_result();
}
