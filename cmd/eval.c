/* baton eval: the logits (and state) after a list of tokens, for checking engines against
 * references. Token by token by default; --prefill runs the list as one sequence; --batch runs
 * several lists as concurrent streams that share steps. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "device_open.h"

static const char eval_usage[] =
    "usage: baton eval --model PATH [--device cpu|vulkan[:N]] (--tokens IDS | --batch FILE)\n"
    "                  --logits-out FILE [--state-out FILE] [--prefill]\n\n"
    "  --tokens IDS       comma-separated token ids, e.g. 34,105,110\n"
    "  --batch FILE       one token list per line (ids separated by commas); the lists run as\n"
    "                     concurrent streams in shared steps\n"
    "  --logits-out FILE  the logits after each token, [n_tokens][n_vocab] little-endian float32,\n"
    "                     stream after stream; with --prefill only each stream's last row\n"
    "  --state-out FILE   the final state of each stream, [n_layer][5][n_embd] float32\n"
    "                     (att_xx, att_aa, att_bb, att_pp, ffn_xx)\n"
    "  --prefill          process each list as one sequence instead of token by token\n"
    "  --device D         cpu (default), vulkan (the best device) or vulkan:N\n";

enum { STREAMS_MAX = 4096, STREAM_TOKENS_MAX = 1 << 20 };

typedef struct {
    int32_t *ids;
    int n;
} stream;

typedef struct {
    stream *streams;
    int n;
} stream_list;

static void streams_free(stream_list *list) {
    for (int i = 0; i < list->n; i++) free(list->streams[i].ids);
    free(list->streams);
}

/* Reads one token list per non-empty line. Errors name the file and line. */
static bool streams_read(const char *path, stream_list *list) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "baton eval: %s: cannot open\n", path);
        return false;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int line_no = 0;
    bool ok = true;
    list->streams = calloc(STREAMS_MAX, sizeof *list->streams);
    list->n = 0;
    ok = list->streams != NULL;
    while (ok && (len = getline(&line, &cap, f)) >= 0) {
        line_no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len == 0) continue;
        if (list->n == STREAMS_MAX) {
            fprintf(stderr, "baton eval: %s: more than %d streams\n", path, STREAMS_MAX);
            ok = false;
            break;
        }
        stream *s = &list->streams[list->n];
        char where[64];
        snprintf(where, sizeof where, "%s line %d", path, line_no);
        if (!args_int_list("eval", where, line, 0, INT32_MAX, &s->ids, &s->n)) {
            ok = false;
            break;
        }
        list->n++;
    }
    free(line);
    fclose(f);
    if (ok && list->n == 0) {
        fprintf(stderr, "baton eval: %s: no token lists\n", path);
        ok = false;
    }
    return ok;
}

static bool write_all(FILE *f, const void *data, size_t bytes) {
    return fwrite(data, 1, bytes, f) == bytes;
}

typedef struct {
    const char *model_path, *device, *tokens, *batch, *logits_out, *state_out;
    bool prefill;
} eval_args;

static int eval_parse(int argc, char **argv, eval_args *a) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},      {"device", required_argument, 0, 'd'},
        {"tokens", required_argument, 0, 't'},     {"batch", required_argument, 0, 'b'},
        {"logits-out", required_argument, 0, 'l'}, {"state-out", required_argument, 0, 's'},
        {"prefill", no_argument, 0, 'p'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    memset(a, 0, sizeof *a);
    a->device = "cpu";
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (c) {
        case 'm': a->model_path = optarg; break;
        case 'd': a->device = optarg; break;
        case 't': a->tokens = optarg; break;
        case 'b': a->batch = optarg; break;
        case 'l': a->logits_out = optarg; break;
        case 's': a->state_out = optarg; break;
        case 'p': a->prefill = true; break;
        case 'h': fputs(eval_usage, stdout); return -1;
        default: return args_usage_error("eval", "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return args_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (a->model_path == NULL) return args_usage_error("eval", "--model is required");
    if ((a->tokens == NULL) == (a->batch == NULL))
        return args_usage_error("eval", "give exactly one of --tokens and --batch");
    if (a->logits_out == NULL) return args_usage_error("eval", "--logits-out is required");
    if (!device_spec_valid(a->device))
        return args_usage_error("eval", "--device: '%s' is not cpu, vulkan or vulkan:N", a->device);
    return 0;
}

/* Token by token: at step t every stream longer than t advances one token. */
static baton_status eval_stepwise(baton_backend *b, const stream_list *list, float **logits,
                                  baton_error *err) {
    int V = b->model->n_vocab, max_len = 0;
    for (int i = 0; i < list->n; i++) max_len = list->streams[i].n > max_len ? list->streams[i].n : max_len;
    baton_seq *seqs = malloc((size_t)list->n * sizeof *seqs);
    int32_t *tokens = malloc((size_t)list->n * sizeof *tokens);
    int *which = malloc((size_t)list->n * sizeof *which);
    float *rows = malloc((size_t)list->n * V * sizeof(float));
    baton_status st = BATON_OK;
    if (!seqs || !tokens || !which || !rows) st = baton_fail(err, BATON_ERR_NOMEM, "out of memory");
    for (int t = 0; st == BATON_OK && t < max_len; t++) {
        int n = 0;
        for (int i = 0; i < list->n; i++) {
            if (list->streams[i].n <= t) continue;
            seqs[n] = (baton_seq){.slot = i, .n_tokens = 1};
            tokens[n] = list->streams[i].ids[t];
            which[n++] = i;
        }
        baton_step step = {.n_seqs = n, .seqs = seqs, .tokens = tokens, .logits = rows};
        st = baton_backend_step(b, &step, err);
        for (int j = 0; st == BATON_OK && j < n; j++)
            memcpy(logits[which[j]] + (size_t)t * V, rows + (size_t)j * V, (size_t)V * sizeof(float));
    }
    free(seqs);
    free(tokens);
    free(which);
    free(rows);
    return st;
}

/* Prefill: every stream's whole list as one sequence, all in one step. */
static baton_status eval_prefill(baton_backend *b, const stream_list *list, float **logits,
                                 baton_error *err) {
    int V = b->model->n_vocab;
    size_t total = 0;
    for (int i = 0; i < list->n; i++) total += (size_t)list->streams[i].n;
    baton_seq *seqs = malloc((size_t)list->n * sizeof *seqs);
    int32_t *tokens = malloc(total * sizeof *tokens);
    float *rows = malloc((size_t)list->n * V * sizeof(float));
    baton_status st = BATON_OK;
    if (!seqs || !tokens || !rows) st = baton_fail(err, BATON_ERR_NOMEM, "out of memory");
    if (st == BATON_OK) {
        size_t at = 0;
        for (int i = 0; i < list->n; i++) {
            seqs[i] = (baton_seq){.slot = i, .n_tokens = list->streams[i].n};
            memcpy(tokens + at, list->streams[i].ids, (size_t)list->streams[i].n * sizeof *tokens);
            at += (size_t)list->streams[i].n;
        }
        baton_step step = {.n_seqs = list->n, .seqs = seqs, .tokens = tokens, .logits = rows};
        st = baton_backend_step(b, &step, err);
        for (int i = 0; st == BATON_OK && i < list->n; i++)
            memcpy(logits[i], rows + (size_t)i * V, (size_t)V * sizeof(float));
    }
    free(seqs);
    free(tokens);
    free(rows);
    return st;
}

static int eval_write(const eval_args *a, baton_backend *b, const stream_list *list,
                      float **logits) {
    const baton_model *m = b->model;
    FILE *f = fopen(a->logits_out, "wb");
    bool ok = f != NULL;
    for (int i = 0; ok && i < list->n; i++) {
        size_t rows = a->prefill ? 1 : (size_t)list->streams[i].n;
        ok = write_all(f, logits[i], rows * (size_t)m->n_vocab * sizeof(float));
    }
    if (f != NULL && fclose(f) != 0) ok = false;
    if (!ok) {
        fprintf(stderr, "baton eval: %s: cannot write\n", a->logits_out);
        return BATON_EXIT_FAIL;
    }
    if (a->state_out == NULL) return BATON_EXIT_OK;
    size_t state_floats = (size_t)m->n_layer * BATON_STATE_ROWS * m->n_embd;
    float *state = malloc(state_floats * sizeof(float));
    f = fopen(a->state_out, "wb");
    ok = f != NULL && state != NULL;
    for (int i = 0; ok && i < list->n; i++) {
        baton_error err = {0};
        if (b->ops->slot_read(b, i, state, &err) != BATON_OK) {
            fprintf(stderr, "baton eval: %s\n", err.msg);
            ok = false;
            break;
        }
        ok = write_all(f, state, state_floats * sizeof(float));
    }
    if (f != NULL && fclose(f) != 0) ok = false;
    free(state);
    if (!ok) fprintf(stderr, "baton eval: %s: cannot write the state\n", a->state_out);
    return ok ? BATON_EXIT_OK : BATON_EXIT_FAIL;
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = eval_parse(argc, argv, &a);
    if (rc != 0) return rc < 0 ? BATON_EXIT_OK : rc;

    stream_list list = {0};
    if (a.tokens != NULL) {
        list.streams = calloc(1, sizeof *list.streams);
        if (list.streams == NULL) return BATON_EXIT_FAIL;
        if (!args_int_list("eval", "--tokens", a.tokens, 0, INT32_MAX, &list.streams[0].ids,
                           &list.streams[0].n)) {
            free(list.streams);
            return BATON_EXIT_USAGE;
        }
        list.n = 1;
    } else if (!streams_read(a.batch, &list)) {
        streams_free(&list);
        return BATON_EXIT_FAIL;
    }

    baton_error err = {0};
    baton_model *model = NULL;
    baton_backend *backend = NULL;
    float **logits = NULL;
    rc = BATON_EXIT_FAIL;
    baton_model_options mopt = {.prefetch = strcmp(a.device, "cpu") == 0};
    if (baton_model_load(a.model_path, &mopt, &model, &err) != BATON_OK) goto out;
    size_t total = 0;
    for (int i = 0; i < list.n; i++) {
        total += (size_t)list.streams[i].n;
        for (int t = 0; t < list.streams[i].n; t++) {
            if (list.streams[i].ids[t] >= model->n_vocab) {
                baton_fail(&err, BATON_ERR_ARG, "token %d is outside the model's vocabulary [0, %d)",
                           list.streams[i].ids[t], model->n_vocab);
                rc = BATON_EXIT_USAGE;
                goto out;
            }
        }
    }
    if (a.prefill && total > STREAM_TOKENS_MAX) {
        baton_fail(&err, BATON_ERR_ARG, "%zu tokens: at most %d with --prefill", total, STREAM_TOKENS_MAX);
        goto out;
    }
    baton_stage_config config = {
        .layer_begin = 0,
        .layer_end = model->n_layer,
        .with_embedding = true,
        .with_head = true,
        .n_slots = list.n,
        .max_seqs = list.n,
        .max_tokens = a.prefill ? (int)total : list.n,
    };
    if (device_backend_open(a.device, model, &config, &backend, &err) != BATON_OK) goto out;
    logits = calloc((size_t)list.n, sizeof *logits);
    if (logits == NULL) goto out;
    for (int i = 0; i < list.n; i++) {
        size_t rows = a.prefill ? 1 : (size_t)list.streams[i].n;
        logits[i] = malloc(rows * (size_t)model->n_vocab * sizeof(float));
        if (logits[i] == NULL) {
            baton_fail(&err, BATON_ERR_NOMEM, "out of memory for the logits");
            goto out;
        }
    }
    baton_status st = a.prefill ? eval_prefill(backend, &list, logits, &err)
                                : eval_stepwise(backend, &list, logits, &err);
    if (st != BATON_OK) goto out;
    rc = eval_write(&a, backend, &list, logits);
    err.msg[0] = '\0';
out:
    if (rc != BATON_EXIT_OK && err.msg[0] != '\0') fprintf(stderr, "baton eval: %s\n", err.msg);
    if (logits != NULL)
        for (int i = 0; i < list.n; i++) free(logits[i]);
    free(logits);
    baton_backend_free(backend);
    baton_model_free(model);
    streams_free(&list);
    return rc;
}
