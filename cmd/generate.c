/* baton generate: the gRPC client of `baton serve`. Streams a completion to stdout exactly as
 * `baton run` prints it; a failed call prints its gRPC status and message and exits 1. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "baton/v1/inference.pb-c.h"
#include "commands.h"
#include "rpc_client.h"

static const char generate_usage[] =
    "usage: baton generate --server HOST:PORT --prompt TEXT [options]\n\n"
    "  --max-tokens N          tokens to generate at most (default: the server's, 200)\n"
    "  --temperature T         0 is greedy (default 1.0)\n"
    "  --top-p P               nucleus sampling mass in (0, 1] (default 0.85)\n"
    "  --top-k K               keep the K most likely tokens, 0 for all (default 0)\n"
    "  --presence-penalty X    subtracted from tokens already generated (default 0)\n"
    "  --frequency-penalty X   subtracted per occurrence of tokens generated (default 0)\n"
    "  --seed S                makes sampling repeatable (default: random)\n"
    "  --stop-token IDS        comma-separated ids that end generation (default: the\n"
    "                          tokenizer's end-of-text, if it has one)\n"
    "  --stop TEXT             a string that ends generation (repeatable, up to 8)\n"
    "  --timeout-s N           deadline of the whole call (default 300)\n";

enum { STOPS_MAX = 8 };

typedef struct {
    const char *server, *prompt;
    long long timeout_s;
    Baton__V1__Sampling sampling;
    Baton__V1__GenerateRequest request;
    char *stops[STOPS_MAX];
    int32_t *stop_ids;
    int n_stop_ids;
} generate_args;

/* Values are range-checked here for a clear usage error; the server checks them again. */
static int generate_parse(int argc, char **argv, generate_args *a) {
    static const struct option options[] = {
        {"server", required_argument, 0, 'a'},      {"prompt", required_argument, 0, 'p'},
        {"max-tokens", required_argument, 0, 'n'},  {"temperature", required_argument, 0, 't'},
        {"top-p", required_argument, 0, 'P'},       {"top-k", required_argument, 0, 'k'},
        {"presence-penalty", required_argument, 0, 'r'},
        {"frequency-penalty", required_argument, 0, 'f'}, {"seed", required_argument, 0, 's'},
        {"stop-token", required_argument, 0, 'T'},  {"stop", required_argument, 0, 'S'},
        {"timeout-s", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    a->sampling = (Baton__V1__Sampling)BATON__V1__SAMPLING__INIT;
    a->request = (Baton__V1__GenerateRequest)BATON__V1__GENERATE_REQUEST__INIT;
    a->timeout_s = 300;
    opterr = 0;
    optind = 1;
    int c;
    double v;
    long long n;
    Baton__V1__Sampling *s = &a->sampling;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'a': a->server = optarg; break;
        case 'p': a->prompt = optarg; break;
        case 'n':
            if (!args_int("generate", "--max-tokens", optarg, 0, UINT32_MAX, &n)) return BATON_EXIT_USAGE;
            a->request.max_tokens_set_case = BATON__V1__GENERATE_REQUEST__MAX_TOKENS_SET_MAX_TOKENS;
            a->request.max_tokens = (uint32_t)n;
            break;
        case 't':
            if (!args_float("generate", "--temperature", optarg, 0, 100, &v)) return BATON_EXIT_USAGE;
            s->temperature_set_case = BATON__V1__SAMPLING__TEMPERATURE_SET_TEMPERATURE;
            s->temperature = (float)v;
            break;
        case 'P':
            if (!args_float("generate", "--top-p", optarg, 1e-6, 1, &v)) return BATON_EXIT_USAGE;
            s->top_p_set_case = BATON__V1__SAMPLING__TOP_P_SET_TOP_P;
            s->top_p = (float)v;
            break;
        case 'k':
            if (!args_int("generate", "--top-k", optarg, 0, INT32_MAX, &n)) return BATON_EXIT_USAGE;
            s->top_k_set_case = BATON__V1__SAMPLING__TOP_K_SET_TOP_K;
            s->top_k = (int32_t)n;
            break;
        case 'r':
            if (!args_float("generate", "--presence-penalty", optarg, -100, 100, &v)) return BATON_EXIT_USAGE;
            s->presence_penalty_set_case = BATON__V1__SAMPLING__PRESENCE_PENALTY_SET_PRESENCE_PENALTY;
            s->presence_penalty = (float)v;
            break;
        case 'f':
            if (!args_float("generate", "--frequency-penalty", optarg, -100, 100, &v)) return BATON_EXIT_USAGE;
            s->frequency_penalty_set_case = BATON__V1__SAMPLING__FREQUENCY_PENALTY_SET_FREQUENCY_PENALTY;
            s->frequency_penalty = (float)v;
            break;
        case 's':
            if (!args_int("generate", "--seed", optarg, 0, INT64_MAX, &n)) return BATON_EXIT_USAGE;
            s->seed_set_case = BATON__V1__SAMPLING__SEED_SET_SEED;
            s->seed = (uint64_t)n;
            break;
        case 'T':
            free(a->stop_ids);
            a->stop_ids = NULL;
            if (!args_int_list("generate", "--stop-token", optarg, 0, INT32_MAX, &a->stop_ids, &a->n_stop_ids))
                return BATON_EXIT_USAGE;
            break;
        case 'S':
            if (a->request.n_stop == STOPS_MAX)
                return args_usage_error("generate", "at most %d --stop strings", STOPS_MAX);
            if (optarg[0] == '\0') return args_usage_error("generate", "--stop: empty string");
            a->stops[a->request.n_stop++] = optarg;
            break;
        case 'o':
            if (!args_int("generate", "--timeout-s", optarg, 1, 86400, &a->timeout_s)) return BATON_EXIT_USAGE;
            break;
        case 'h': fputs(generate_usage, stdout); return -1;
        default: return args_usage_error("generate", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return args_usage_error("generate", "unexpected argument '%s'", argv[optind]);
    if (a->server == NULL) return args_usage_error("generate", "--server is required");
    if (a->prompt == NULL || a->prompt[0] == '\0')
        return args_usage_error("generate", "--prompt is required and not empty");
    a->request.prompt = (char *)a->prompt;
    a->request.sampling = &a->sampling;
    a->request.stop = a->stops;
    a->request.n_stop_token_ids = (size_t)a->n_stop_ids;
    a->request.stop_token_ids = a->stop_ids;
    return 0;
}

int cmd_generate(int argc, char **argv) {
    generate_args a;
    memset(&a, 0, sizeof a);
    int rc = generate_parse(argc, argv, &a);
    if (rc != 0) {
        free(a.stop_ids);
        return rc < 0 ? BATON_EXIT_OK : rc;
    }
    baton_error err = {0};
    rpc_channel *ch = NULL;
    rpc_limits limits = rpc_limits_default();
    if (rpc_channel_open(a.server, &limits, &ch, &err) != BATON_OK) {
        fprintf(stderr, "baton generate: %s\n", err.msg);
        free(a.stop_ids);
        return BATON_EXIT_FAIL;
    }
    rpc_stream *stream = rpc_stream_open(ch, "/baton.v1.Inference/Generate", &a.request.base,
                                         a.timeout_s * 1000);
    rc = BATON_EXIT_FAIL;
    if (stream == NULL) {
        fprintf(stderr, "baton generate: out of memory\n");
    } else {
        bool wrote = false;
        Baton__V1__GenerateResponse *m;
        while ((m = (Baton__V1__GenerateResponse *)rpc_stream_next(
                    stream, &baton__v1__generate_response__descriptor)) != NULL) {
            size_t len = strlen(m->text);
            if (len > 0) {
                fwrite(m->text, 1, len, stdout);
                fflush(stdout);
                wrote = true;
            }
            protobuf_c_message_free_unpacked(&m->base, NULL);
        }
        const rpc_status *st = rpc_stream_status(stream);
        if (st->code == GRPC_STATUS_OK) {
            fputc('\n', stdout); /* as baton run ends its output */
            rc = BATON_EXIT_OK;
        } else {
            if (wrote) fputc('\n', stdout);
            fprintf(stderr, "baton generate: %s: %s\n", rpc_status_name(st->code), st->message);
        }
        fflush(stdout);
    }
    rpc_stream_free(stream);
    rpc_channel_free(ch);
    free(a.stop_ids);
    return rc;
}
