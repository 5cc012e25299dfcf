/* baton serve: the Inference gRPC service over a model in this process (embedded mode: one stage
 * per device of --devices, chained in memory) or over a chain of `baton node`s (--nodes); the
 * plan and the backends are cmd/serve_pipeline.c's.
 *
 * The server listens first and prints its address (so "--listen 127.0.0.1:0" can be used and
 * found), answers Health with NOT_SERVING while the model loads, then SERVING. SIGTERM or SIGINT
 * stops it cleanly: new calls are refused, running streams end (UNAVAILABLE), exit code 0. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "device_list.h"
#include "inference_service.h"
#include "rpc_server.h"
#include "serve_pipeline.h"
#include "tokenizer.h"

static const char serve_usage[] =
    "usage: baton serve --listen ADDR --model PATH [--tokenizer PATH|bytes] [options]\n\n"
    "  --listen ADDR           host:port to serve on; port 0 picks a free one (printed)\n"
    "  --tokenizer PATH|bytes  tokenizer.json, a World vocabulary, or bytes (default)\n"
    "  --devices LIST          this process's stages: cpu (default), vulkan, vulkan:N or N,\n"
    "                          comma-separated, one stage each (--device D: the same)\n"
    "  --nodes HOST:PORT,...   run the stages on these `baton node`s, chained in this order\n"
    "  --split auto|N,N,...    layers per stage (default auto: in proportion to free memory);\n"
    "                          with one device, N,N,... makes that many stages on it\n"
    "  --step-timeout-ms N     with --nodes: a step through the chain (default 5000)\n"
    "  --load-timeout-s N      with --nodes: a node loading its layers (default 600)\n"
    "  --connect-timeout-s N   with --nodes: waiting for every node at start (default 60)\n"
    "  --max-streams N         streams generating at once (default 8)\n"
    "  --max-queue N           streams waiting for a slot; more get RESOURCE_EXHAUSTED (default 32)\n"
    "  --max-prompt-tokens N   longest prompt accepted (default 8192)\n"
    "  --max-tokens N          largest max_tokens a request may ask (default 4096)\n"
    "  --max-message-bytes N   largest request or response message (default 4194304)\n"
    "  --generate-timeout-s N  deadline of a Generate whose client sets none (default 300)\n"
    "  --prefill-chunk N       prompt tokens per stream per step (default 512, as baton run)\n"
    "  --grace-s N             on SIGTERM, seconds for calls to finish sending (default 5)\n"
    "  --micro-batches N       micro-batches in flight at most (default 0: one per stage that\n"
    "                          can compute at the same time: stages sharing a GPU count once)\n"
    "  --log-interval-s N      a load line on stderr this often while busy (default 10, 0 off)\n";

/* Largest message between nodes: a 520-token step of n_embd 5120 is 10.6 MB. */
enum { NODE_MESSAGE_BYTES = 256 << 20 };

typedef struct {
    const char *listen, *model_path, *tokenizer, *device;
    long long max_streams, max_queue, max_prompt_tokens, max_tokens, message_bytes;
    long long timeout_s, prefill_chunk, grace_s, micro_batches, log_interval_s;
    const char *nodes, *split;
    long long step_timeout_ms, load_timeout_s, connect_timeout_s;
} serve_args;

static int serve_parse(int argc, char **argv, serve_args *a) {
    static const struct option options[] = {
        {"listen", required_argument, 0, 'l'},        {"model", required_argument, 0, 'm'},
        {"tokenizer", required_argument, 0, 'z'},     {"device", required_argument, 0, 'd'},
        {"max-streams", required_argument, 0, 's'},   {"max-queue", required_argument, 0, 'q'},
        {"max-prompt-tokens", required_argument, 0, 'p'}, {"max-tokens", required_argument, 0, 'n'},
        {"max-message-bytes", required_argument, 0, 'b'},
        {"generate-timeout-s", required_argument, 0, 't'},
        {"prefill-chunk", required_argument, 0, 'c'}, {"grace-s", required_argument, 0, 'g'},
        {"devices", required_argument, 0, 'd'},      {"nodes", required_argument, 0, 'N'},
        {"split", required_argument, 0, 'S'},        {"step-timeout-ms", required_argument, 0, 'T'},
        {"load-timeout-s", required_argument, 0, 'L'},
        {"connect-timeout-s", required_argument, 0, 'C'},
        {"micro-batches", required_argument, 0, 'M'}, {"log-interval-s", required_argument, 0, 'I'},
        {"help", no_argument, 0, 'h'},                {0, 0, 0, 0},
    };
    *a = (serve_args){.tokenizer = "bytes", .device = "cpu", .max_streams = 8, .max_queue = 32,
                      .max_prompt_tokens = 8192, .max_tokens = 4096,
                      .message_bytes = RPC_MESSAGE_BYTES_DEFAULT, .timeout_s = 300,
                      .prefill_chunk = 512, .grace_s = 5, .step_timeout_ms = 5000,
                      .load_timeout_s = 600, .connect_timeout_s = 60,
                      .log_interval_s = 10};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'l': a->listen = optarg; break;
        case 'm': a->model_path = optarg; break;
        case 'z': a->tokenizer = optarg; break;
        case 'd': a->device = optarg; break;
        case 's': ok = args_int("serve", "--max-streams", optarg, 1, 1024, &a->max_streams); break;
        case 'q': ok = args_int("serve", "--max-queue", optarg, 1, 1 << 16, &a->max_queue); break;
        case 'p':
            ok = args_int("serve", "--max-prompt-tokens", optarg, 1, 1 << 24, &a->max_prompt_tokens);
            break;
        case 'n': ok = args_int("serve", "--max-tokens", optarg, 1, 1 << 24, &a->max_tokens); break;
        case 'b':
            ok = args_int("serve", "--max-message-bytes", optarg, 1 << 16, 1 << 30, &a->message_bytes);
            break;
        case 't': ok = args_int("serve", "--generate-timeout-s", optarg, 1, 86400, &a->timeout_s); break;
        case 'c': ok = args_int("serve", "--prefill-chunk", optarg, 1, 1 << 16, &a->prefill_chunk); break;
        case 'g': ok = args_int("serve", "--grace-s", optarg, 0, 600, &a->grace_s); break;
        case 'N': a->nodes = optarg; break;
        case 'S': a->split = optarg; break;
        case 'T':
            ok = args_int("serve", "--step-timeout-ms", optarg, 1, 3600000, &a->step_timeout_ms);
            break;
        case 'L': ok = args_int("serve", "--load-timeout-s", optarg, 1, 86400, &a->load_timeout_s); break;
        case 'C':
            ok = args_int("serve", "--connect-timeout-s", optarg, 0, 86400, &a->connect_timeout_s);
            break;
        case 'M': ok = args_int("serve", "--micro-batches", optarg, 0, 64, &a->micro_batches); break;
        case 'I':
            ok = args_int("serve", "--log-interval-s", optarg, 0, 86400, &a->log_interval_s);
            break;
        case 'h': fputs(serve_usage, stdout); return -1;
        default: return args_usage_error("serve", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
        if (!ok) return BATON_EXIT_USAGE;
    }
    if (optind < argc) return args_usage_error("serve", "unexpected argument '%s'", argv[optind]);
    if (a->listen == NULL) return args_usage_error("serve", "--listen is required");
    if (a->model_path == NULL) return args_usage_error("serve", "--model is required");
    char specs[DEVICE_LIST_MAX][DEVICE_SPEC_MAX];
    int n_specs;
    if (!device_list_parse(a->device, specs, DEVICE_LIST_MAX, &n_specs))
        return args_usage_error("serve", "--devices: '%s' is not a list of cpu, vulkan, vulkan:N",
                                a->device);
    return 0;
}

static void serve_available(void *user, bool available) {
    baton_inference_service_set_available(user, available);
}

/* Waits for SIGTERM or SIGINT (blocked in every thread, so only this wait sees them). */
static void wait_for_signal(const sigset_t *signals) {
    struct timespec tick = {.tv_sec = 1};
    for (;;) {
        int sig = sigtimedwait(signals, NULL, &tick);
        if (sig == SIGTERM || sig == SIGINT) return;
    }
}

int cmd_serve(int argc, char **argv) {
    serve_args a;
    int rc = serve_parse(argc, argv, &a);
    if (rc != 0) return rc < 0 ? BATON_EXIT_OK : rc;

    /* Block the stop signals before any thread starts, so that all threads inherit the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    baton_service_limits limits = {
        .max_prompt_tokens = (uint32_t)a.max_prompt_tokens,
        .max_tokens = (uint32_t)a.max_tokens,
        .generate_timeout_s = (uint32_t)a.timeout_s,
        .message_bytes_max = (uint32_t)a.message_bytes,
        .scheduler = {.max_streams = (int)a.max_streams, .max_queue = (int)a.max_queue,
                      .prefill_chunk = (int)a.prefill_chunk,
                      .micro_batches = (int)a.micro_batches,
                      .log_interval_s = (int)a.log_interval_s},
    };
    rpc_limits rlimits = rpc_limits_default();
    rlimits.message_bytes_max = (int)a.message_bytes;
    /* One client may hold every slot and fill the queue over one connection, and still see the
     * next call refused by us (RESOURCE_EXHAUSTED) rather than held back by HTTP/2. */
    long long per_connection = a.max_streams + a.max_queue + 16;
    if (per_connection > rlimits.streams_per_connection_max)
        rlimits.streams_per_connection_max = (int)per_connection;

    baton_error err = {0};
    baton_inference_service *svc = NULL;
    rpc_server *server = NULL;
    baton_tokenizer *tok = NULL;
    serve_pipeline pipe;
    memset(&pipe, 0, sizeof pipe);
    baton_scheduler *scheduler = NULL;
    rc = BATON_EXIT_FAIL;

    if (baton_inference_service_new(&limits, &svc, &err) != BATON_OK) goto out;
    rpc_method methods[BATON_SERVICE_METHODS];
    baton_inference_service_methods(svc, methods);
    int port = 0;
    if (rpc_server_start(a.listen, &rlimits, methods, BATON_SERVICE_METHODS, &server, &port, &err) !=
        BATON_OK)
        goto out;
    const char *colon = strrchr(a.listen, ':');
    int host_len = colon != NULL ? (int)(colon - a.listen) : (int)strlen(a.listen);
    printf("baton serve: listening on %.*s:%d\n", host_len, a.listen, port);
    fflush(stdout);

    if (baton_tokenizer_open(a.tokenizer, &tok, &err) != BATON_OK) goto out;
    serve_pipeline_args pargs = {
        .model_path = a.model_path, .devices = a.device, .split = a.split, .nodes = a.nodes,
        .n_slots = limits.scheduler.max_streams, .max_seqs = limits.scheduler.max_streams,
        .max_tokens = baton_scheduler_step_tokens(&limits.scheduler),
        .step_timeout_ms = (int)a.step_timeout_ms, .load_timeout_ms = (int)a.load_timeout_s * 1000,
        .connect_timeout_ms = (int)a.connect_timeout_s * 1000, .limits = rpc_limits_default(),
        .on_available = serve_available, .user = svc,
    };
    /* Hidden states of a whole step travel in one message between nodes. */
    pargs.limits.message_bytes_max = NODE_MESSAGE_BYTES;
    if (serve_pipeline_open(&pargs, &pipe, &err) != BATON_OK) goto out;
    const baton_model *model = pipe.model;
    if (baton_tokenizer_n_vocab(tok) > model->n_vocab) {
        baton_fail(&err, BATON_ERR_ARG, "the tokenizer has %d ids but the model only %d",
                   baton_tokenizer_n_vocab(tok), model->n_vocab);
        goto out;
    }
    /* Stages that share a GPU take turns: more micro-batches than stages that can compute at
     * once would only read every weight again per micro-batch (docs/PERFORMANCE.md). */
    if (limits.scheduler.micro_batches == 0)
        limits.scheduler.micro_batches = baton_plan_parallel_stages(&pipe.plan);
    if (baton_scheduler_start(pipe.pipe, tok, &limits.scheduler, &scheduler, &err) != BATON_OK)
        goto out;
    baton_inference_service_ready(svc, model, tok, scheduler, pipe.stages, pipe.plan.n_stages);
    printf("baton serve: serving %s (%d layers) on %s\n", a.model_path, model->n_layer,
           pipe.pipe->name);
    fflush(stdout);

    wait_for_signal(&signals);
    printf("baton serve: stopping\n");
    fflush(stdout);
    rc = BATON_EXIT_OK;
out:
    if (rc != BATON_EXIT_OK) fprintf(stderr, "baton serve: %s\n", err.msg);
    if (svc != NULL) baton_inference_service_stop(svc);
    if (scheduler != NULL) baton_scheduler_stop(scheduler);
    if (server != NULL && !rpc_server_stop(server, (int)a.grace_s * 1000)) {
        fprintf(stderr, "baton serve: gRPC did not stop in time; exiting without cleanup\n");
        return BATON_EXIT_FAIL;
    }
    rpc_server_free(server);
    baton_scheduler_free(scheduler);
    baton_inference_service_free(svc);
    serve_pipeline_close(&pipe);
    baton_tokenizer_free(tok);
    return rc;
}
