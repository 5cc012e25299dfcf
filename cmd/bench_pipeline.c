/* baton bench-pipeline: the cost per hop of the distributed pipeline. Starts N `baton node`
 * processes on loopback (this executable, one stage each), chains them with an even split, and
 * times steps through them beside the same layers in this process: one CPU backend, and the same
 * N stages chained in memory. Per hop = (chain over nodes - one process) / N, since a step makes
 * N calls (coordinator to node 1, node to node), each answered back along the chain. */
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "chain_backend.h"
#include "commands.h"
#include "device_open.h"
#include "fingerprint.h"
#include "remote_backend.h"
#include "scheduler.h"

static const char bench_pipeline_usage[] =
    "usage: baton bench-pipeline --model PATH [--stages N] [--batch B] [--prefill T] [--steps K]\n\n"
    "  --stages N    nodes (processes) on loopback, one stage each (default 3)\n"
    "  --batch B     sequences per decode step (default 1)\n"
    "  --prefill T   tokens of the prefill step timed beside decode (default 512)\n"
    "  --steps K     decode steps timed per setup; the median is reported (default 200)\n"
    "  --load T      instead: generated tokens/s at 1, 8, 64 and 256 concurrent streams of T\n"
    "                tokens through the scheduler, on one stage and on N (in this process\n"
    "                and over nodes), N with one micro-batch in flight and as chosen\n"
    "  --device D    every stage's device: cpu (default), vulkan or vulkan:N (the nodes too)\n";

enum { NODES_MAX = 8 };

/* --device: where every stage runs, in this process and on the nodes. */
static const char *bench_device = "cpu";

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median seconds of one decode step of batch sequences (slots 0..batch-1), and of one prefill
 * step of prefill tokens on slot 0; -1 on a failed step. */
static double time_steps(baton_backend *b, int batch, int prefill, int steps, double *prefill_s,
                         baton_error *err) {
    int n_tok = batch > prefill ? batch : prefill;
    baton_seq *seqs = calloc((size_t)batch, sizeof *seqs);
    baton_sampling *sp = calloc((size_t)batch, sizeof *sp);
    int32_t *tokens = calloc((size_t)n_tok, sizeof *tokens), *out = calloc((size_t)batch, sizeof *out);
    double *t = calloc((size_t)steps, sizeof *t), median = -1;
    if (seqs == NULL || sp == NULL || tokens == NULL || out == NULL || t == NULL) goto done;
    for (int i = 0; i < batch; i++) {
        seqs[i] = (baton_seq){.slot = i, .n_tokens = 1};
        sp[i] = (baton_sampling){.temperature = 0, .top_p = 1};
        if (b->ops->slot_reset(b, i, err) != BATON_OK) goto done;
    }
    for (int i = 0; i < n_tok; i++) tokens[i] = (i * 7 + 1) % b->model->n_vocab;
    baton_step pre = {.n_seqs = 1, .seqs = &(baton_seq){.slot = 0, .n_tokens = prefill},
                      .tokens = tokens, .sampling = sp, .tokens_out = out};
    double t0 = now_s();
    if (baton_backend_step(b, &pre, err) != BATON_OK) goto done;
    *prefill_s = now_s() - t0;
    baton_step step = {.n_seqs = batch, .seqs = seqs, .tokens = tokens, .sampling = sp,
                       .tokens_out = out};
    for (int k = -5; k < steps; k++) { /* five to warm up */
        t0 = now_s();
        if (baton_backend_step(b, &step, err) != BATON_OK) goto done;
        if (k >= 0) t[k] = now_s() - t0;
        for (int i = 0; i < batch; i++) tokens[i] = out[i];
    }
    qsort(t, (size_t)steps, sizeof *t, cmp_double);
    median = t[steps / 2];
done:
    free(seqs);
    free(sp);
    free(tokens);
    free(out);
    free(t);
    return median;
}

static pid_t node_spawn(const char *model, char *addr, size_t addr_size) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, STDERR_FILENO);
        execl("/proc/self/exe", "baton", "node", "--listen", "127.0.0.1:0", "--model", model,
              "--devices", bench_device, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[256];
    bool ok = false;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) { /* ends when the node exits */
        if (sscanf(line, "baton node: listening on %63s", addr) == 1) {
            ok = true;
            break;
        }
    }
    (void)addr_size;
    if (f != NULL) fclose(f);
    if (!ok && pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    return pid;
}

/* ---- --load: aggregate tokens/s against concurrency through the scheduler ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int done, failed;
    uint64_t tokens;
    char why[160]; /* the first failed stream's reason */
} load_count;

static void load_emit(void *user, const char *text, size_t len, int32_t id) {
    (void)user, (void)text, (void)len, (void)id; /* counted at the finish */
}
static void load_finish(void *user, baton_finish reason, uint32_t p, uint32_t c, const char *m) {
    load_count *n = user;
    (void)p;
    pthread_mutex_lock(&n->mu);
    n->done++;
    n->tokens += c;
    if (reason != BATON_FINISH_MAX_TOKENS && n->failed++ == 0)
        snprintf(n->why, sizeof n->why, "%s", m != NULL && m[0] != '\0' ? m : "(no message)");
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->mu);
}
static bool load_never(void *user) {
    (void)user;
    return false;
}

/* Runs streams greedy streams at once (16-token prompts, max_tokens tokens each) and returns
 * the generated tokens per second over the whole run; -1 on failure, a stream that ended before
 * its max_tokens included. */
static double load_run(baton_pipe *p, const baton_tokenizer *tok, int streams, int max_tokens,
                       int micro_batches, int *target, baton_error *err) {
    static const baton_stream_sink sink = {load_emit, load_finish, load_never, load_never};
    load_count n = {.mu = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    baton_scheduler_limits limits = {.max_streams = streams, .max_queue = 1, .prefill_chunk = 512,
                                     .micro_batches = micro_batches};
    baton_scheduler *s = NULL;
    if (baton_scheduler_start(p, tok, &limits, &s, err) != BATON_OK) return -1;
    double t0 = now_s();
    for (int i = 0; i < streams; i++) {
        int32_t *prompt = malloc(16 * sizeof *prompt);
        if (prompt == NULL) break;
        for (int k = 0; k < 16; k++) prompt[k] = (int32_t)(32 + (i * 31 + k * 7) % 95);
        baton_gen_request req = {.prompt = prompt, .n_prompt = 16, .sampling = {.top_p = 1},
                                 .seed = 1, .gen = {.max_tokens = (uint32_t)max_tokens},
                                 .timeout_ms = 600000, .sink = &sink, .user = &n};
        if (baton_scheduler_submit(s, &req, err) != BATON_OK) {
            free(req.prompt);
            break;
        }
    }
    pthread_mutex_lock(&n.mu);
    while (n.done < streams) pthread_cond_wait(&n.cond, &n.mu);
    pthread_mutex_unlock(&n.mu);
    double t = now_s() - t0;
    baton_scheduler_stats st;
    baton_scheduler_stats_get(s, &st);
    *target = st.micro_batches_target;
    baton_scheduler_free(s);
    if (n.failed > 0) {
        baton_fail(err, BATON_ERR_UNAVAILABLE, "%d of %d streams ended before %d tokens: %s",
                   n.failed, streams, max_tokens, n.why);
        return -1;
    }
    return (double)n.tokens / t;
}

static const int load_levels[] = {1, 8, 64, 256};
enum { LOAD_LEVELS = 4, LOAD_SLOTS = 256 };

/* One table row per setup: tokens/s at each level. */
static bool load_row(const char *what, baton_pipe *p, const baton_tokenizer *tok, int max_tokens,
                     int micro_batches, baton_error *err) {
    printf("  %-40s", what);
    for (int k = 0; k < LOAD_LEVELS; k++) {
        int target = 0;
        double r = load_run(p, tok, load_levels[k], max_tokens, micro_batches, &target, err);
        if (r < 0) return false;
        printf(" %9.0f (%d)", r, target);
        fflush(stdout);
    }
    printf("\n");
    return true;
}

/* --load: the layers in one process (one stage; n stages one thread each) and over nodes (one
 * node; n nodes), n stages with one micro-batch in flight and with the scheduler's choice. */
static int bench_load(const char *model_path, int n, int max_tokens) {
    baton_error err = {0};
    baton_model *model = NULL;
    baton_tensor_set *set = NULL;
    baton_tokenizer *tok = NULL;
    int rc = BATON_EXIT_FAIL;
    baton_model_options mopt = {.prefetch = true};
    if (baton_model_load(model_path, &mopt, &model, &err) != BATON_OK ||
        baton_tensor_set_open(model_path, &set, &err) != BATON_OK ||
        baton_tokenizer_open("bytes", &tok, &err) != BATON_OK)
        goto out;
    if (model->n_vocab > baton_tokenizer_n_vocab(tok)) {
        baton_fail(&err, BATON_ERR_ARG, "--load generates text through the bytes tokenizer, which "
                   "has %d ids; this model has %d (baton synth --vocab 256 makes one that fits)",
                   baton_tokenizer_n_vocab(tok), model->n_vocab);
        goto out;
    }
    printf("model %s: %d layers, n_embd %d; %d tokens per stream (16-token prompts), greedy; "
           "generated tokens/s at 1, 8, 64, 256 streams (micro-batches chosen)\n",
           model_path, model->n_layer, model->n_embd, max_tokens);
    int counts[2] = {1, n};
    for (int ci = 0; ci < 2; ci++) { /* in this process */
        int m = counts[ci];
        baton_backend *stages[NODES_MAX];
        for (int i = 0; i < m; i++) {
            baton_stage_config sc = {.layer_begin = model->n_layer * i / m,
                                     .layer_end = model->n_layer * (i + 1) / m,
                                     .with_embedding = i == 0, .with_head = i == m - 1,
                                     .n_slots = LOAD_SLOTS, .max_seqs = LOAD_SLOTS,
                                     .max_tokens = 512 + LOAD_SLOTS};
            if (device_backend_open(bench_device, model, &sc, &stages[i], &err) != BATON_OK) {
                for (int k = 0; k < i; k++) baton_backend_free(stages[k]);
                goto out;
            }
        }
        baton_pipe *p = NULL;
        if (baton_pipe_local_new(stages, m, 0, &p, &err) != BATON_OK) {
            for (int k = 0; k < m; k++) baton_backend_free(stages[k]);
            goto out;
        }
        char what[96];
        bool ok = true;
        if (m > 1) {
            snprintf(what, sizeof what, "in process, %d stages, 1 micro-batch:", m);
            ok = load_row(what, p, tok, max_tokens, 1, &err);
        }
        snprintf(what, sizeof what, "in process, %d stage%s:", m, m > 1 ? "s" : "");
        ok = ok && load_row(what, p, tok, max_tokens, 0, &err);
        baton_pipe_free(p);
        if (!ok) goto out;
    }
    for (int ci = 0; ci < 2; ci++) { /* over nodes on loopback */
        int m = counts[ci];
        pid_t pids[NODES_MAX] = {0};
        char addrs[NODES_MAX][64];
        baton_remote *remote = NULL;
        baton_pipe *p = NULL;
        baton_plan plan = {.n_stages = m};
        baton_remote_config rcfg = {.n_nodes = m, .limits = rpc_limits_default(),
                                    .step_timeout_ms = 60000, .load_timeout_ms = 60000,
                                    .connect_timeout_ms = 30000, .probe_ms = 1000};
        rcfg.limits.message_bytes_max = 256 << 20;
        bool ok = true;
        for (int i = 0; i < m && ok; i++) {
            baton_plan_stage *s = &plan.stages[i];
            s->layer_begin = model->n_layer * i / m;
            s->layer_end = model->n_layer * (i + 1) / m;
            s->with_embedding = i == 0;
            s->with_head = i == m - 1;
            pids[i] = node_spawn(model_path, addrs[i], sizeof addrs[i]);
            ok = pids[i] > 0;
            if (!ok) baton_fail(&err, BATON_ERR_UNAVAILABLE, "cannot start node %d", i);
            rcfg.nodes[i] = addrs[i];
            snprintf(s->device.host, sizeof s->device.host, "%s", addrs[i]);
        }
        baton_plan_device devices[BATON_PLAN_STAGES_MAX];
        int n_devices = 0;
        ok = ok && baton_remote_new(&rcfg, &remote, &err) == BATON_OK &&
             baton_remote_describe(remote, model, baton_fingerprint_header(set), devices,
                                   BATON_PLAN_STAGES_MAX, &n_devices, &err) == BATON_OK &&
             baton_remote_start(remote, &plan, model, set, LOAD_SLOTS, LOAD_SLOTS,
                                512 + LOAD_SLOTS, &err) == BATON_OK &&
             baton_remote_pipe_new(remote, 0, &p, &err) == BATON_OK;
        char what[96];
        if (ok && m > 1) {
            snprintf(what, sizeof what, "%d nodes on loopback, 1 micro-batch:", m);
            ok = load_row(what, p, tok, max_tokens, 1, &err);
        }
        snprintf(what, sizeof what, "%d node%s on loopback:", m, m > 1 ? "s" : "");
        ok = ok && load_row(what, p, tok, max_tokens, 0, &err);
        baton_pipe_free(p);
        baton_remote_free(remote);
        for (int i = 0; i < m; i++) {
            if (pids[i] > 0) {
                kill(pids[i], SIGTERM);
                waitpid(pids[i], NULL, 0);
            }
        }
        if (!ok) goto out;
    }
    rc = BATON_EXIT_OK;
out:
    if (rc != BATON_EXIT_OK) fprintf(stderr, "baton bench-pipeline: %s\n", err.msg);
    baton_tokenizer_free(tok);
    baton_tensor_set_free(set);
    baton_model_free(model);
    return rc;
}

int cmd_bench_pipeline(int argc, char **argv) {
    static const struct option options[] = {
        {"model", required_argument, 0, 'm'},   {"stages", required_argument, 0, 'n'},
        {"batch", required_argument, 0, 'b'},   {"prefill", required_argument, 0, 'p'},
        {"steps", required_argument, 0, 'k'},   {"help", no_argument, 0, 'h'},
        {"load", required_argument, 0, 'L'},   {"device", required_argument, 0, 'd'},
        {0, 0, 0, 0},
    };
    const char *model_path = NULL;
    long long n = 3, batch = 1, prefill = 512, steps = 200, load = 0;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "", options, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': model_path = optarg; break;
        case 'n': ok = args_int("bench-pipeline", "--stages", optarg, 1, NODES_MAX, &n); break;
        case 'b': ok = args_int("bench-pipeline", "--batch", optarg, 1, 64, &batch); break;
        case 'p': ok = args_int("bench-pipeline", "--prefill", optarg, 1, 4096, &prefill); break;
        case 'k': ok = args_int("bench-pipeline", "--steps", optarg, 1, 100000, &steps); break;
        case 'L': ok = args_int("bench-pipeline", "--load", optarg, 1, 4096, &load); break;
        case 'd':
            bench_device = optarg;
            if (!device_spec_valid(optarg))
                return args_usage_error("bench-pipeline", "--device: '%s' is not cpu, vulkan or "
                                        "vulkan:N", optarg);
            break;
        case 'h': fputs(bench_pipeline_usage, stdout); return BATON_EXIT_OK;
        default:
            return args_usage_error("bench-pipeline", "unknown or incomplete option '%s'",
                                    argv[optind - 1]);
        }
        if (!ok) return BATON_EXIT_USAGE;
    }
    if (model_path == NULL) return args_usage_error("bench-pipeline", "--model is required");
    signal(SIGPIPE, SIG_IGN);
    if (load > 0) return bench_load(model_path, (int)n, (int)load);

    baton_error err = {0};
    baton_model *model = NULL;
    baton_tensor_set *set = NULL;
    baton_backend *local = NULL, *chain = NULL;
    baton_remote *remote = NULL;
    pid_t pids[NODES_MAX] = {0};
    char addrs[NODES_MAX][64];
    int rc = BATON_EXIT_FAIL;
    int max_tokens = (int)(prefill > batch ? prefill : batch);
    baton_model_options mopt = {.prefetch = true};
    if (baton_model_load(model_path, &mopt, &model, &err) != BATON_OK ||
        baton_tensor_set_open(model_path, &set, &err) != BATON_OK)
        goto out;
    if (n > model->n_layer) {
        baton_fail(&err, BATON_ERR_ARG, "%lld stages for %d layers", n, model->n_layer);
        goto out;
    }
    baton_plan plan = {.n_stages = (int)n};
    for (int i = 0; i < n; i++) {
        baton_plan_stage *s = &plan.stages[i];
        s->layer_begin = (int)(model->n_layer * i / n);
        s->layer_end = (int)(model->n_layer * (i + 1) / n);
        s->with_embedding = i == 0;
        s->with_head = i == n - 1;
    }
    baton_stage_config all = {.layer_end = model->n_layer, .with_embedding = true,
                              .with_head = true, .n_slots = (int)batch, .max_seqs = (int)batch,
                              .max_tokens = max_tokens};
    if (device_backend_open(bench_device, model, &all, &local, &err) != BATON_OK) goto out;
    baton_backend *stages[NODES_MAX];
    for (int i = 0; i < n; i++) {
        baton_stage_config sc = all;
        sc.layer_begin = plan.stages[i].layer_begin;
        sc.layer_end = plan.stages[i].layer_end;
        sc.with_embedding = plan.stages[i].with_embedding;
        sc.with_head = plan.stages[i].with_head;
        if (device_backend_open(bench_device, model, &sc, &stages[i], &err) != BATON_OK) {
            for (int k = 0; k < i; k++) baton_backend_free(stages[k]);
            goto out;
        }
    }
    if (baton_chain_backend_new(stages, (int)n, &chain, &err) != BATON_OK) {
        for (int k = 0; k < n; k++) baton_backend_free(stages[k]);
        goto out;
    }

    baton_remote_config rcfg = {.n_nodes = (int)n, .limits = rpc_limits_default(),
                                .step_timeout_ms = 60000, .load_timeout_ms = 60000,
                                .connect_timeout_ms = 30000, .probe_ms = 1000};
    rcfg.limits.message_bytes_max = 256 << 20;
    for (int i = 0; i < n; i++) {
        pids[i] = node_spawn(model_path, addrs[i], sizeof addrs[i]);
        if (pids[i] < 0) {
            baton_fail(&err, BATON_ERR_UNAVAILABLE, "cannot start node %d", i);
            goto out;
        }
        rcfg.nodes[i] = addrs[i];
        snprintf(plan.stages[i].device.host, sizeof plan.stages[i].device.host, "%s", addrs[i]);
    }
    baton_plan_device devices[BATON_PLAN_STAGES_MAX];
    int n_devices = 0;
    if (baton_remote_new(&rcfg, &remote, &err) != BATON_OK ||
        baton_remote_describe(remote, model, baton_fingerprint_header(set), devices,
                              BATON_PLAN_STAGES_MAX, &n_devices, &err) != BATON_OK ||
        baton_remote_start(remote, &plan, model, set, (int)batch, (int)batch, max_tokens, &err) !=
            BATON_OK)
        goto out;

    printf("model %s: %d layers, n_embd %d; %lld stages; decode batch %lld; median of %lld steps\n",
           model_path, model->n_layer, model->n_embd, n, batch, steps);
    double pre[3] = {0};
    double one = time_steps(local, (int)batch, (int)prefill, (int)steps, &pre[0], &err);
    double mem = one < 0 ? -1 : time_steps(chain, (int)batch, (int)prefill, (int)steps, &pre[1], &err);
    double net = mem < 0 ? -1 : time_steps(baton_remote_backend(remote), (int)batch, (int)prefill,
                                           (int)steps, &pre[2], &err);
    if (net < 0) goto out;
    printf("  %-34s decode %8.3f ms/step   prefill %lld: %8.2f ms\n", "one process, one backend:",
           one * 1e3, prefill, pre[0] * 1e3);
    printf("  %-34s decode %8.3f ms/step   prefill %lld: %8.2f ms\n", "one process, stages chained:",
           mem * 1e3, prefill, pre[1] * 1e3);
    printf("  %-34s decode %8.3f ms/step   prefill %lld: %8.2f ms\n", "nodes on loopback:", net * 1e3,
           prefill, pre[2] * 1e3);
    printf("  per hop (%lld hops): decode %.3f ms, prefill %.2f ms (%.1f KiB of hidden states)\n", n,
           (net - one) * 1e3 / (double)n, (pre[2] - pre[0]) * 1e3 / (double)n,
           (double)prefill * model->n_embd * 4 / 1024.0);
    rc = BATON_EXIT_OK;
out:
    if (rc != BATON_EXIT_OK) fprintf(stderr, "baton bench-pipeline: %s\n", err.msg);
    if (remote != NULL) baton_remote_free(remote);
    for (int i = 0; i < n; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            waitpid(pids[i], NULL, 0);
        }
    }
    baton_backend_free(chain);
    baton_backend_free(local);
    baton_tensor_set_free(set);
    baton_model_free(model);
    return rc;
}
