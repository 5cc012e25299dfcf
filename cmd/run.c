/* baton run: generate a completion for a prompt in this process and stream it to stdout. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "device_open.h"
#include "generation.h"
#include "tokenizer.h"

static const char run_usage[] =
    "usage: baton run --model PATH --tokenizer PATH|bytes --prompt TEXT [options]\n\n"
    "  --max-tokens N          tokens to generate at most (default 200)\n"
    "  --temperature T         0 is greedy (default 1.0)\n"
    "  --top-p P               nucleus sampling mass in (0, 1] (default 0.85)\n"
    "  --top-k K               keep the K most likely tokens, 0 for all (default 0)\n"
    "  --presence-penalty X    subtracted from tokens already generated (default 0)\n"
    "  --frequency-penalty X   subtracted per occurrence of tokens generated (default 0)\n"
    "  --seed S                makes sampling repeatable (default: from the clock)\n"
    "  --stop-token IDS        comma-separated ids that end generation (default: the\n"
    "                          tokenizer's end-of-text, if it has one)\n"
    "  --stop TEXT             a string that ends generation (repeatable, up to 8)\n"
    "  --device D              cpu (default), vulkan or vulkan:N\n";

enum { STOPS_MAX = BATON_GEN_STOPS_MAX, PREFILL_CHUNK = 512, MAX_TOKENS_LIMIT = 1 << 20 };

typedef struct {
    const char *model_path, *tokenizer, *prompt, *device;
    long long max_tokens, top_k;
    unsigned long long seed;
    bool seeded;
    baton_sampling sampling;
    int32_t *stop_ids;
    int n_stop_ids;
    bool stop_ids_given;
    const char *stops[STOPS_MAX];
    int n_stops;
} run_args;

static int run_parse(int argc, char **argv, run_args *a) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},       {"tokenizer", required_argument, 0, 'z'},
        {"prompt", required_argument, 0, 'p'},      {"max-tokens", required_argument, 0, 'n'},
        {"temperature", required_argument, 0, 't'}, {"top-p", required_argument, 0, 'P'},
        {"top-k", required_argument, 0, 'k'},       {"presence-penalty", required_argument, 0, 'r'},
        {"frequency-penalty", required_argument, 0, 'f'}, {"seed", required_argument, 0, 's'},
        {"stop-token", required_argument, 0, 'T'},  {"stop", required_argument, 0, 'S'},
        {"device", required_argument, 0, 'd'},      {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->device = "cpu";
    a->max_tokens = 200;
    a->sampling = (baton_sampling){.temperature = 1.0f, .top_p = 0.85f};
    opterr = 0;
    optind = 1;
    int c;
    double v;
    long long n;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'm': a->model_path = optarg; break;
        case 'z': a->tokenizer = optarg; break;
        case 'p': a->prompt = optarg; break;
        case 'd': a->device = optarg; break;
        case 'n':
            if (!args_int("run", "--max-tokens", optarg, 0, MAX_TOKENS_LIMIT, &a->max_tokens))
                return BATON_EXIT_USAGE;
            break;
        case 't':
            if (!args_float("run", "--temperature", optarg, 0, 100, &v)) return BATON_EXIT_USAGE;
            a->sampling.temperature = (float)v;
            break;
        case 'P':
            if (!args_float("run", "--top-p", optarg, 1e-6, 1, &v)) return BATON_EXIT_USAGE;
            a->sampling.top_p = (float)v;
            break;
        case 'k':
            if (!args_int("run", "--top-k", optarg, 0, INT32_MAX, &a->top_k)) return BATON_EXIT_USAGE;
            a->sampling.top_k = (int32_t)a->top_k;
            break;
        case 'r':
            if (!args_float("run", "--presence-penalty", optarg, -100, 100, &v)) return BATON_EXIT_USAGE;
            a->sampling.presence_penalty = (float)v;
            break;
        case 'f':
            if (!args_float("run", "--frequency-penalty", optarg, -100, 100, &v)) return BATON_EXIT_USAGE;
            a->sampling.frequency_penalty = (float)v;
            break;
        case 's':
            if (!args_int("run", "--seed", optarg, 0, INT64_MAX, &n)) return BATON_EXIT_USAGE;
            a->seed = (unsigned long long)n;
            a->seeded = true;
            break;
        case 'T':
            free(a->stop_ids);
            a->stop_ids = NULL;
            if (!args_int_list("run", "--stop-token", optarg, 0, INT32_MAX, &a->stop_ids, &a->n_stop_ids))
                return BATON_EXIT_USAGE;
            if (a->n_stop_ids > BATON_GEN_STOP_IDS_MAX)
                return args_usage_error("run", "--stop-token: at most %d ids", BATON_GEN_STOP_IDS_MAX);
            a->stop_ids_given = true;
            break;
        case 'S':
            if (a->n_stops == STOPS_MAX) return args_usage_error("run", "at most %d --stop strings", STOPS_MAX);
            if (optarg[0] == '\0' || strlen(optarg) > BATON_GEN_STOP_BYTES_MAX)
                return args_usage_error("run", "--stop: 1 to %d bytes", BATON_GEN_STOP_BYTES_MAX);
            a->stops[a->n_stops++] = optarg;
            break;
        case 'h': fputs(run_usage, stdout); return -1;
        default: return args_usage_error("run", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return args_usage_error("run", "unexpected argument '%s'", argv[optind]);
    if (a->model_path == NULL) return args_usage_error("run", "--model is required");
    if (a->tokenizer == NULL) return args_usage_error("run", "--tokenizer is required");
    if (a->prompt == NULL || a->prompt[0] == '\0') return args_usage_error("run", "--prompt is required and not empty");
    if (!device_spec_valid(a->device))
        return args_usage_error("run", "--device: '%s' is not cpu, vulkan or vulkan:N", a->device);
    return 0;
}

/* Feeds the prompt in chunks, then generates until a stop; prints text as it becomes safe to
 * (the same rules as a server stream, in pipeline/generation.c). */
static baton_status generate(const run_args *a, baton_backend *b, const baton_tokenizer *tok,
                             const int32_t *prompt, size_t n_prompt, baton_error *err) {
    baton_rng rng;
    baton_rng_seed(&rng, a->seeded ? a->seed : (uint64_t)time(NULL) ^ (uint64_t)clock());
    baton_gen_config gc = {.n_stop_ids = a->n_stop_ids, .max_tokens = (uint32_t)a->max_tokens};
    if (a->n_stop_ids > 0) /* stop_ids is NULL when there are none */
        memcpy(gc.stop_ids, a->stop_ids, (size_t)a->n_stop_ids * sizeof *a->stop_ids);
    for (int i = 0; i < a->n_stops; i++) snprintf(gc.stops[gc.n_stops++], sizeof gc.stops[0], "%s", a->stops[i]);
    baton_gen *gen = NULL;
    baton_status st = baton_gen_open(tok, &gc, &gen, err);
    if (st != BATON_OK) return st;

    baton_sampling sampling = a->sampling;
    int32_t next = -1;
    for (size_t done = 0; st == BATON_OK && done < n_prompt;) {
        size_t n = n_prompt - done < PREFILL_CHUNK ? n_prompt - done : PREFILL_CHUNK;
        bool last = done + n == n_prompt;
        baton_seq seq = {.slot = 0, .n_tokens = (int32_t)n};
        sampling.uniform = baton_rng_uniform(&rng);
        baton_step step = {.n_seqs = 1, .seqs = &seq, .tokens = prompt + done,
                           .sampling = last ? &sampling : NULL, .tokens_out = &next};
        st = baton_backend_step(b, &step, err);
        done += n;
    }
    baton_gen_out out = {.finish = BATON_FINISH_NONE};
    while (st == BATON_OK) {
        st = baton_gen_push(gen, next, &out, err);
        if (st == BATON_OK && out.len > 0) {
            fwrite(out.text, 1, out.len, stdout);
            fflush(stdout);
        }
        if (st != BATON_OK || out.finish != BATON_FINISH_NONE) break;
        baton_seq seq = {.slot = 0, .n_tokens = 1};
        sampling.uniform = baton_rng_uniform(&rng);
        baton_step step = {.n_seqs = 1, .seqs = &seq, .tokens = &next, .sampling = &sampling,
                           .tokens_out = &next};
        st = baton_backend_step(b, &step, err);
    }
    fputc('\n', stdout);
    fflush(stdout);
    baton_gen_free(gen);
    return st;
}

int cmd_run(int argc, char **argv) {
    run_args a;
    int rc = run_parse(argc, argv, &a);
    if (rc != 0) {
        free(a.stop_ids);
        return rc < 0 ? BATON_EXIT_OK : rc;
    }
    baton_error err = {0};
    baton_tokenizer *tok = NULL;
    baton_model *model = NULL;
    baton_backend *backend = NULL;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    rc = BATON_EXIT_FAIL;
    if (baton_tokenizer_open(a.tokenizer, &tok, &err) != BATON_OK) goto out;
    if (!a.stop_ids_given && baton_tokenizer_eot(tok) >= 0) {
        a.stop_ids = malloc(sizeof *a.stop_ids);
        if (a.stop_ids == NULL) goto out;
        a.stop_ids[0] = baton_tokenizer_eot(tok);
        a.n_stop_ids = 1;
    }
    if (baton_tokenizer_encode(tok, a.prompt, strlen(a.prompt), &prompt, &n_prompt, &err) != BATON_OK)
        goto out;
    if (n_prompt == 0) {
        baton_fail(&err, BATON_ERR_ARG, "the prompt encodes to no tokens");
        goto out;
    }
    baton_model_options mopt = {.prefetch = strcmp(a.device, "cpu") == 0};
    if (baton_model_load(a.model_path, &mopt, &model, &err) != BATON_OK) goto out;
    if (baton_tokenizer_n_vocab(tok) > model->n_vocab) {
        baton_fail(&err, BATON_ERR_ARG, "the tokenizer has %d ids but the model only %d",
                   baton_tokenizer_n_vocab(tok), model->n_vocab);
        goto out;
    }
    baton_stage_config config = {
        .layer_end = model->n_layer, .with_embedding = true, .with_head = true,
        .n_slots = 1, .max_seqs = 1,
        .max_tokens = n_prompt < PREFILL_CHUNK ? (int)n_prompt : PREFILL_CHUNK,
    };
    if (device_backend_open(a.device, model, &config, &backend, &err) != BATON_OK) goto out;
    if (generate(&a, backend, tok, prompt, n_prompt, &err) != BATON_OK) goto out;
    rc = BATON_EXIT_OK;
out:
    if (rc != BATON_EXIT_OK) fprintf(stderr, "baton run: %s\n", err.msg);
    baton_backend_free(backend);
    baton_model_free(model);
    baton_tokenizer_free(tok);
    free(prompt);
    free(a.stop_ids);
    return rc;
}
