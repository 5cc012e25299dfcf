/* `baton serve` + `baton generate` on loopback against `baton run` on the same model:
 *   - greedy (and seeded) generation through the server equals `baton run` byte for byte,
 *     including a prompt longer than one prefill chunk and a stop string;
 *   - six concurrent streams on four slots (two queued) each equal their solo run;
 *   - bad requests get INVALID_ARGUMENT naming the field, an unknown method UNIMPLEMENTED;
 *   - Info, Tokenize, Detokenize and Health answer;
 *   - a full queue gives RESOURCE_EXHAUSTED; a cancelled stream frees its slot;
 *   - SIGTERM during a stream: the stream ends UNAVAILABLE and the server exits 0. */
#include "baton/v1/inference.pb-c.h"
#include "test_serve_harness.h"

static char model[512];

static void make_model(void) {
    cli_tmp(model, sizeof model, "serve-model.pth");
    REQUIRE(cli_run("synth --layers 4 --embd 64 --vocab 256 --dtype fp16 --seed 1 -o '%s' >/dev/null",
                    model) == 0);
}

/* Output of `baton CMD ARGS` run and generate alike; options shared by both. */
static char *run_local(const char *opts, int *rc) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' run --model '%s' --tokenizer bytes %s", cli_bin(), model, opts);
    return test_capture(cmd, rc);
}

static char *run_remote(const test_server *s, const char *opts, int *rc) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' generate --server %s %s", cli_bin(), s->addr, opts);
    return test_capture(cmd, rc);
}

static void check_same(const test_server *s, const char *opts) {
    int rc_local = -1, rc_remote = -1;
    char *local = run_local(opts, &rc_local);
    char *remote = run_remote(s, opts, &rc_remote);
    REQUIRE(local != NULL && remote != NULL);
    CHECK_MSG(rc_local == 0 && rc_remote == 0, "%s: run %d, generate %d", opts, rc_local, rc_remote);
    CHECK_MSG(strcmp(local, remote) == 0, "%s:\n  run:      [%s]\n  generate: [%s]", opts, local,
              remote);
    CHECK_MSG(strlen(local) > 1, "%s: nothing generated", opts);
    free(local);
    free(remote);
}

static void check_equal_to_run(const test_server *s) {
    check_same(s, "--prompt 'Hello there' --temperature 0 --max-tokens 60");
    check_same(s, "--prompt 'x' --temperature 0 --max-tokens 1");
    check_same(s, "--prompt 'The quick brown fox' --temperature 0.9 --top-p 0.7 --seed 7 --max-tokens 80");
    check_same(s, "--prompt 'penalties' --temperature 1 --top-k 20 --presence-penalty 0.5 "
                  "--frequency-penalty 0.3 --seed 3 --max-tokens 80");
    /* A prompt of 1200 tokens: three prefill chunks. */
    char opts[2048];
    char prompt[1201];
    for (int i = 0; i < 1200; i++) prompt[i] = (char)('a' + (i * 7) % 26);
    prompt[1200] = '\0';
    snprintf(opts, sizeof opts, "--prompt '%s' --temperature 0.5 --seed 11 --max-tokens 40", prompt);
    check_same(s, opts);
    /* A stop string that the greedy text contains (found from the text itself). */
    int rc = -1;
    char *text = run_local("--prompt 'Hello there' --temperature 0 --max-tokens 60", &rc);
    REQUIRE(text != NULL && strlen(text) > 12);
    /* A whole UTF-8 character that first appears mid-text (stop strings must be UTF-8). */
    char stop[8] = {0};
    bool quotable = false;
    for (size_t at = 8; text[at] != '\0' && !quotable; at++) {
        unsigned char lead = (unsigned char)text[at];
        if ((lead & 0xc0) == 0x80) continue;
        size_t len = lead < 0x80 ? 1 : lead < 0xe0 ? 2 : lead < 0xf0 ? 3 : 4;
        memset(stop, 0, sizeof stop);
        memcpy(stop, text + at, len);
        quotable = memmem(text, at, stop, len) == NULL && strchr(stop, '\'') == NULL &&
                   strchr(stop, '\n') == NULL;
    }
    free(text);
    printf("stop string test: %s\n", quotable ? stop : "(no candidate in the text)");
    if (quotable) {
        snprintf(opts, sizeof opts, "--prompt 'Hello there' --temperature 0 --max-tokens 60 --stop '%s'", stop);
        check_same(s, opts);
    }
    printf("serve equals run: ok\n");
}

/* Six streams at once on four slots: each equals its solo run. */
static void check_concurrent(const test_server *s) {
    enum { N = 6 };
    FILE *pipes[N];
    char cmd[1024];
    for (int i = 0; i < N; i++) {
        snprintf(cmd, sizeof cmd, "'%s' generate --server %s --prompt 'stream %d says' "
                 "--temperature %s --seed %d --max-tokens %d", cli_bin(), s->addr, i,
                 i % 2 ? "0" : "0.8", i, 50 + 20 * i);
        pipes[i] = popen(cmd, "r");
        REQUIRE(pipes[i] != NULL);
    }
    for (int i = 0; i < N; i++) {
        char got[8192];
        size_t n = fread(got, 1, sizeof got - 1, pipes[i]);
        got[n] = '\0';
        CHECK(pclose(pipes[i]) == 0);
        char opts[256];
        snprintf(opts, sizeof opts, "--prompt 'stream %d says' --temperature %s --seed %d --max-tokens %d",
                 i, i % 2 ? "0" : "0.8", i, 50 + 20 * i);
        int rc = -1;
        char *solo = run_local(opts, &rc);
        REQUIRE(solo != NULL);
        CHECK_MSG(strcmp(solo, got) == 0, "stream %d:\n  solo: [%s]\n  batch: [%s]", i, solo, got);
        free(solo);
    }
    printf("concurrent streams: ok\n");
}

/* Runs Generate with req to its end; returns the status code; *n_messages gets the count. */
static grpc_status_code generate_status(const test_server *s, const Baton__V1__GenerateRequest *req,
                                        char *message, size_t size) {
    rpc_stream *st = rpc_stream_open(s->channel, "/baton.v1.Inference/Generate", &req->base, 30000);
    REQUIRE(st != NULL);
    ProtobufCMessage *m;
    while ((m = rpc_stream_next(st, &baton__v1__generate_response__descriptor)) != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    grpc_status_code code = rpc_stream_status(st)->code;
    if (message != NULL) snprintf(message, size, "%s", rpc_stream_status(st)->message);
    rpc_stream_free(st);
    return code;
}

static void expect_invalid(const test_server *s, const Baton__V1__GenerateRequest *req,
                           const char *what, const char *field) {
    char message[512];
    grpc_status_code code = generate_status(s, req, message, sizeof message);
    CHECK_MSG(code == GRPC_STATUS_INVALID_ARGUMENT, "%s: got %s (%s)", what, rpc_status_name(code),
              message);
    CHECK_MSG(strstr(message, field) != NULL, "%s: message '%s' does not name '%s'", what, message,
              field);
}

static void check_invalid(const test_server *s) {
    Baton__V1__Sampling sp = BATON__V1__SAMPLING__INIT;
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    req.sampling = &sp;
    expect_invalid(s, &req, "empty prompt", "prompt");

    req.prompt = "hi";
    sp.temperature_set_case = BATON__V1__SAMPLING__TEMPERATURE_SET_TEMPERATURE;
    sp.temperature = -1;
    expect_invalid(s, &req, "negative temperature", "temperature");
    sp.temperature = 0;
    sp.top_p_set_case = BATON__V1__SAMPLING__TOP_P_SET_TOP_P;
    sp.top_p = 0;
    expect_invalid(s, &req, "top_p 0", "top_p");
    sp.top_p = 1.5f;
    expect_invalid(s, &req, "top_p 1.5", "top_p");
    sp.top_p_set_case = BATON__V1__SAMPLING__TOP_P_SET__NOT_SET;
    sp.top_k_set_case = BATON__V1__SAMPLING__TOP_K_SET_TOP_K;
    sp.top_k = -3;
    expect_invalid(s, &req, "negative top_k", "top_k");
    sp.top_k_set_case = BATON__V1__SAMPLING__TOP_K_SET__NOT_SET;
    sp.presence_penalty_set_case = BATON__V1__SAMPLING__PRESENCE_PENALTY_SET_PRESENCE_PENALTY;
    sp.presence_penalty = NAN;
    expect_invalid(s, &req, "NaN penalty", "presence_penalty");
    sp.presence_penalty_set_case = BATON__V1__SAMPLING__PRESENCE_PENALTY_SET__NOT_SET;

    req.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
    req.max_tokens = 100000;
    expect_invalid(s, &req, "max_tokens over the limit", "max_tokens");
    req.max_tokens = 5;

    int32_t ids[3] = {1, 2, 300};
    req.n_prompt_tokens = 3;
    req.prompt_tokens = ids;
    expect_invalid(s, &req, "prompt and prompt_tokens", "prompt_tokens");
    req.prompt = "";
    expect_invalid(s, &req, "token out of range", "prompt_tokens[2]");
    req.n_prompt_tokens = 0;

    char long_prompt[1601];
    memset(long_prompt, 'z', sizeof long_prompt - 1);
    long_prompt[sizeof long_prompt - 1] = '\0';
    req.prompt = long_prompt;
    expect_invalid(s, &req, "prompt over the limit", "limit of 1500");
    req.prompt = "hi";

    char *stops[1] = {""};
    req.n_stop = 1;
    req.stop = stops;
    expect_invalid(s, &req, "empty stop string", "stop[0]");
    char bad_utf8[] = "\xc3";
    stops[0] = bad_utf8;
    expect_invalid(s, &req, "stop string not UTF-8", "stop[0]");
    req.n_stop = 0;
    int32_t stop_ids[1] = {-1};
    req.n_stop_token_ids = 1;
    req.stop_token_ids = stop_ids;
    expect_invalid(s, &req, "negative stop id", "stop_token_ids[0]");
    req.n_stop_token_ids = 0;

    /* Bytes that do not parse as a GenerateRequest: field 2 (packed prompt_tokens) holding
     * an InfoResponse's stage "2a 01 ff", whose last varint is cut short. */
    Baton__V1__StageInfo stage = BATON__V1__STAGE_INFO__INIT;
    stage.host = "\xff";
    Baton__V1__StageInfo *stages[1] = {&stage};
    Baton__V1__InfoResponse junk = BATON__V1__INFO_RESPONSE__INIT;
    junk.n_stages = 1;
    junk.stages = stages;
    rpc_stream *st = rpc_stream_open(s->channel, "/baton.v1.Inference/Generate", &junk.base, 10000);
    ProtobufCMessage *m;
    while ((m = rpc_stream_next(st, &baton__v1__generate_response__descriptor)) != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    grpc_status_code code = rpc_stream_status(st)->code;
    rpc_stream_free(st);
    CHECK_MSG(code == GRPC_STATUS_INVALID_ARGUMENT, "junk request: %s", rpc_status_name(code));

    /* The server still answers after all that, and an unknown method is UNIMPLEMENTED. */
    CHECK(generate_status(s, &req, NULL, 0) == GRPC_STATUS_OK);
    Baton__V1__InfoRequest info_req = BATON__V1__INFO_REQUEST__INIT;
    ProtobufCMessage *resp = NULL;
    rpc_status rs;
    CHECK(!rpc_call_unary(s->channel, "/baton.v1.Inference/Nope", &info_req.base,
                          &baton__v1__info_response__descriptor, 5000, &resp, &rs));
    CHECK_MSG(rs.code == GRPC_STATUS_UNIMPLEMENTED, "unknown method: %s", rpc_status_name(rs.code));
    CHECK(serve_health(s->channel, "no.such.Service") == -1);
    CHECK(serve_health(s->channel, "baton.v1.Inference") ==
          GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    printf("invalid requests: ok\n");
}

static void check_unary(const test_server *s) {
    rpc_status rs;
    ProtobufCMessage *resp = NULL;
    Baton__V1__InfoResponse *info = serve_info(s);
    CHECK(info->model != NULL && info->model->n_layer == 4 && info->model->n_embd == 64 &&
          info->model->n_vocab == 256 && strcmp(info->model->dtype, "fp16") == 0);
    CHECK(info->n_stages == 1 && info->stages[0]->layer_begin == 0 &&
          info->stages[0]->layer_end == 4 && info->stages[0]->with_head);
    CHECK(info->limits != NULL && info->limits->max_streams == 4 &&
          info->limits->max_prompt_tokens == 1500);
    protobuf_c_message_free_unpacked(&info->base, NULL);

    Baton__V1__TokenizeRequest tok_req = BATON__V1__TOKENIZE_REQUEST__INIT;
    tok_req.text = "AB";
    REQUIRE(rpc_call_unary(s->channel, "/baton.v1.Inference/Tokenize", &tok_req.base,
                           &baton__v1__tokenize_response__descriptor, 5000, &resp, &rs));
    Baton__V1__TokenizeResponse *tr = (Baton__V1__TokenizeResponse *)resp;
    CHECK(tr->n_token_ids == 2 && tr->token_ids[0] == 'A' && tr->token_ids[1] == 'B');
    protobuf_c_message_free_unpacked(resp, NULL);

    int32_t ids[2] = {0xc3, 0xa9};
    Baton__V1__DetokenizeRequest detok_req = BATON__V1__DETOKENIZE_REQUEST__INIT;
    detok_req.n_token_ids = 2;
    detok_req.token_ids = ids;
    REQUIRE(rpc_call_unary(s->channel, "/baton.v1.Inference/Detokenize", &detok_req.base,
                           &baton__v1__detokenize_response__descriptor, 5000, &resp, &rs));
    Baton__V1__DetokenizeResponse *dr = (Baton__V1__DetokenizeResponse *)resp;
    CHECK(dr->text.len == 2 && memcmp(dr->text.data, "\xc3\xa9", 2) == 0);
    protobuf_c_message_free_unpacked(resp, NULL);
    ids[1] = 256;
    CHECK(!rpc_call_unary(s->channel, "/baton.v1.Inference/Detokenize", &detok_req.base,
                          &baton__v1__detokenize_response__descriptor, 5000, &resp, &rs) &&
          rs.code == GRPC_STATUS_INVALID_ARGUMENT);
    printf("info, tokenize, detokenize: ok\n");
}

/* Reads one message of a stream, or fails the test. */
static void first_message(rpc_stream *st) {
    ProtobufCMessage *m = rpc_stream_next(st, &baton__v1__generate_response__descriptor);
    REQUIRE(m != NULL);
    protobuf_c_message_free_unpacked(m, NULL);
}

/* One slot and a queue of one: a running stream, a queued one, and a third refused. Then the
 * running one is cancelled and the queued one gets the slot and completes. */
static void check_queue_and_cancel(void) {
    test_server s;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s' --max-streams 1 --max-queue 1", model);
    serve_start(&s, args);
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    req.prompt = "long";
    req.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
    req.max_tokens = 4096;
    rpc_stream *running = rpc_stream_open(s.channel, "/baton.v1.Inference/Generate", &req.base, 60000);
    first_message(running); /* it holds the slot now */
    req.max_tokens = 20;
    rpc_stream *queued = rpc_stream_open(s.channel, "/baton.v1.Inference/Generate", &req.base, 60000);
    /* The queued request has surely arrived once a later call on the same connection has. */
    CHECK(serve_health(s.channel, "") == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
    char message[512];
    grpc_status_code code = generate_status(&s, &req, message, sizeof message);
    CHECK_MSG(code == GRPC_STATUS_RESOURCE_EXHAUSTED, "third stream: %s (%s)", rpc_status_name(code), message);
    rpc_stream_free(running); /* cancels it: its slot goes to the queued stream */
    ProtobufCMessage *m;
    Baton__V1__Finish *finish = NULL;
    while ((m = rpc_stream_next(queued, &baton__v1__generate_response__descriptor)) != NULL) {
        Baton__V1__GenerateResponse *r = (Baton__V1__GenerateResponse *)m;
        if (r->finish != NULL)
            CHECK(r->finish->reason == BATON__V1__FINISH_REASON__FINISH_REASON_MAX_TOKENS &&
                  r->finish->completion_tokens == 20 && r->finish->prompt_tokens == 4);
        finish = r->finish != NULL ? (Baton__V1__Finish *)1 : finish;
        protobuf_c_message_free_unpacked(m, NULL);
    }
    CHECK(rpc_stream_status(queued)->code == GRPC_STATUS_OK);
    CHECK(finish != NULL);
    rpc_stream_free(queued);
    CHECK(serve_stop(&s) == 0);
    printf("queue full, cancel frees the slot: ok\n");
}

/* SIGTERM with a stream running: the stream ends UNAVAILABLE, the server exits 0. */
static void check_sigterm(void) {
    test_server s;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s' --max-streams 2", model);
    serve_start(&s, args);
    Baton__V1__GenerateRequest req = BATON__V1__GENERATE_REQUEST__INIT;
    req.prompt = "long";
    req.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
    req.max_tokens = 4096;
    rpc_limits limits = rpc_limits_default();
    rpc_channel *ch = NULL;
    REQUIRE(rpc_channel_open(s.addr, &limits, &ch, NULL) == BATON_OK);
    rpc_stream *st = rpc_stream_open(ch, "/baton.v1.Inference/Generate", &req.base, 60000);
    first_message(st);
    CHECK(serve_stop(&s) == 0);
    ProtobufCMessage *m;
    while ((m = rpc_stream_next(st, &baton__v1__generate_response__descriptor)) != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
    CHECK_MSG(rpc_stream_status(st)->code == GRPC_STATUS_UNAVAILABLE, "stream ended %s: %s",
              rpc_status_name(rpc_stream_status(st)->code), rpc_stream_status(st)->message);
    rpc_stream_free(st);
    rpc_channel_free(ch);
    printf("SIGTERM: ok\n");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    make_model();
    test_server s;
    char args[1024];
    snprintf(args, sizeof args, "--model '%s' --max-streams 4 --max-prompt-tokens 1500", model);
    serve_start(&s, args);
    check_unary(&s);
    check_invalid(&s);
    check_equal_to_run(&s);
    check_concurrent(&s);
    CHECK(serve_stop(&s) == 0);
    check_queue_and_cancel();
    check_sigterm();
    remove(model);
    return test_result();
}
