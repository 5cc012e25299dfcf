/* baton bench: decode and prefill speed of the Vulkan engine on a random fp16 model of a given
 * shape, beside the device's own copy bandwidth measured in the same run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "bench_cpu.h"
#include "bench_model.h"
#include "commands.h"
#include "thread_pool.h"

static const char *usage_text =
    "usage: baton bench [--device cpu|vulkan[:N|:NAME]] [--shape 14b|7b|3b|1b5|L,C,V]\n"
    "                   [--layers N] [--batch 1,8,64] [--prefill 512] [--seconds S] [--sweep]\n"
    "\n"
    "Builds a random fp16 RWKV-4 model of the shape in memory (FFN 4C), uploads it, and prints\n"
    "decode tokens/s for each batch size, prefill tokens/s, the weight bandwidth of batch-1 decode\n"
    "beside the device's copy bandwidth (a compute-shader copy, bytes read + written, and\n"
    "vkCmdCopyBuffer; timestamps), and the ratios. Each step line also gives the device's busy\n"
    "time (timestamps; -1000 when the queue has none) and the host's recording time per step.\n"
    "The figures are the engine as it chose to run on the device: its kernel tuning (BATON_VK_TUNE)\n"
    "and, where the device has tensor cores, fp32 or tensor-core matmuls (BATON_VK_COOPMAT): the\n"
    "`kernels:` line says which. After batch 1 and the last batch listed it decodes again with\n"
    "sampling on the device (top-p 0.85; with top-k 40; at temperature 0.2), beside greedy's step,\n"
    "and profiles those steps and the prefill: device time per step by kernel (`profile`).\n"
    "On cpu (the CPU engine, on BATON_CPU_THREADS threads, else one per processor) it prints the\n"
    "same decode and prefill figures beside the same engine's on one thread, measured in the\n"
    "same run, and memcpy's bandwidth on as many threads as the yardstick.\n"
    "  --shape S     14b = 40 layers C 5120, 7b = 32/4096, 3b = 32/2560, 1b5 = 24/2048 (V 50277),\n"
    "                or L,C,V explicitly (default 1b5)\n"
    "  --layers N    use N layers instead of the shape's (quick runs)\n"
    "  --batch LIST  decode batch sizes (default 1,8,64)\n"
    "  --prefill T   tokens of the prefill measurement, 0 to skip (default 512)\n"
    "  --seconds S   time spent per measurement, at least 2 steps, after a quarter as long\n"
    "                of warm-up steps (default 1)\n"
    "  --sweep       then batch-1 decode reading 0, 2, 4, 8, 16 and 32 MiB of each product's\n"
    "                weights ahead (BATON_VK_PREFETCH), each checked bitwise against none's\n"
    "                logits; then batch-1 decode under each one-token matmul configuration (rows per\n"
    "                workgroup, weight loads in flight, x staged in shared memory; those that\n"
    "                stage x also with their products computing their LayerNorms, WKV or both,\n"
    "                BATON_VK_FUSE), S/2 each, on the same weights, each checked bitwise\n"
    "                against the first's logits; then\n"
    "                the batched matmuls under each configuration (8, 32 or 64 tokens and rows\n"
    "                per thread per workgroup) at batch 8, the largest batch and the prefill,\n"
    "                each checked bitwise; then,\n"
    "                where the device has VK_NV_cooperative_matrix, every matmul on the tensor\n"
    "                cores (BATON_VK_COOPMAT) under each of their configurations: batch 1 for\n"
    "                the few-token ones, the largest batch and the prefill for the others, each\n"
    "                checked bitwise against the default pair's logits\n";

#ifdef BATON_HAVE_VULKAN
#include "vk_backend.h"

/* Per step, on average: the device's busy time (timestamps; < 0 when unknown) and the host's
 * recording time; and the warm-up's steps, the first's and the last's device time. */
typedef struct {
    double gpu_s, record_s;
    int warm_steps;
    double warm_first_s, warm_last_s;
} step_split;

/* Runs steps of n_seqs sequences of n_tokens each, sampled as `how` says (NULL: greedy), for
 * about `seconds`; returns seconds per step, or a negative value on error (err filled), and
 * *split. */
static double time_steps_sampled(baton_backend *be, int n_seqs, int n_tokens, double seconds,
                                 int32_t *tokens, baton_seq *seqs, baton_sampling *sampling,
                                 int32_t *out, step_split *split, const baton_sampling *how,
                                 baton_error *err) {
    *split = (step_split){0};
    const bench_buffers buf = {tokens, out, seqs, sampling};
    baton_step step;
    if (bench_step_fresh(be, &buf, n_seqs, n_tokens, how, &step, err) != BATON_OK) return -1.0;
    /* Warm-up: a quarter of the time, at least one step. On the H100 (run E) the first second of
     * batch-1 steps after loading and tuning took 13.55 ms each, the same kernels a moment later
     * 11.75 ms, at the same clocks. */
    double t0 = bench_now_s(), t = t0;
    for (int w = 0; w < 1 || t - t0 < seconds / 4; w++) {
        if (baton_backend_step(be, &step, err) != BATON_OK) return -1.0;
        t = bench_now_s();
        double g, r;
        baton_vk_step_times(be, &g, &r);
        if (w == 0) split->warm_first_s = g;
        split->warm_last_s = g;
        split->warm_steps = w + 1;
    }
    int steps = 0;
    t0 = t;
    while (steps < 2 || t - t0 < seconds) {
        if (n_tokens == 1) {
            for (int i = 0; i < n_seqs; i++) tokens[i] = out[i];
        }
        if (baton_backend_step(be, &step, err) != BATON_OK) return -1.0;
        steps++;
        t = bench_now_s();
        double g, r;
        baton_vk_step_times(be, &g, &r);
        split->gpu_s = g >= 0.0 && split->gpu_s >= 0.0 ? split->gpu_s + g : -1.0;
        split->record_s += r;
    }
    if (split->gpu_s > 0.0) split->gpu_s /= steps;
    split->record_s /= steps;
    return (t - t0) / steps;
}

static double time_steps(baton_backend *be, int n_seqs, int n_tokens, double seconds, int32_t *tokens,
                         baton_seq *seqs, baton_sampling *sampling, int32_t *out, step_split *split,
                         baton_error *err) {
    return time_steps_sampled(be, n_seqs, n_tokens, seconds, tokens, seqs, sampling, out, split,
                              NULL, err);
}


/* The first layer's matrices and the head, each product alone at T tokens under the kernels
 * selected now (20 in a row): weight GB/s at one token, TFLOP/s at more (what: "batched " or
 * "coopmat " before the name, or ""). */
static int print_profile(baton_backend *be, const char *what, const char *name, int T) {
    baton_error err = {0};
    double secs[BATON_VK_PROFILE_MATRICES];
    if (baton_vk_matmul_profile(be, T, 20, secs, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: sweep %s%s: %s\n", what, name, err.msg);
        return BATON_EXIT_FAIL;
    }
    if (T == 1)
        printf(what[0] ? "sweep %s%-28s: alone (20 in a row), weights at GB/s:"
                       : "sweep %s%-22s: alone (20 in a row), weights at GB/s:", what, name);
    else
        printf("sweep %s%-28s: alone at %d tokens (20 in a row), TFLOP/s:", what, name, T);
    for (int m = 0; m < BATON_VK_PROFILE_MATRICES; m++) {
        uint64_t rows, cols;
        baton_vk_profile_shape(be, m, &rows, &cols);
        double per_s = secs[m] > 0.0 ? (double)rows * (double)cols / secs[m] : 0.0;
        printf(" %s %.3g%s", baton_vk_profile_name(m), T == 1 ? per_s * 2.0 * 1e-9 : per_s * 2.0 * T * 1e-12,
               m + 1 < BATON_VK_PROFILE_MATRICES ? "," : "\n");
    }
    fflush(stdout);
    return BATON_EXIT_OK;
}

/* What the batched and tensor-core sweeps measure against: the default path's results and
 * figures. */
typedef struct {
    baton_backend *be;
    int V, largest, prefill;
    double weight_bytes, copy_bw, seconds;
    const double *tps;       /* the default path's batch 1, largest batch, prefill, batch 8 (0: not
                              * measured) */
    const float *want;       /* the default path's logits of `probe` from a fresh slot */
    int32_t probe, *tokens, *out;
    baton_seq *seqs;
    baton_sampling *sampling;
} sweep_ctx;

/* Probe steps of 9 sequences run the 32-token matmul tier (and the tensor-core many-token
 * configurations), of 33 the 64-token tier. */
enum { PROBE_SEQS = 9, PROBE_SEQS_64 = 33 };

/* One step of n sequences (n <= PROBE_SEQS_64) in slots 0..n-1, each the token `token` from a fresh
 * slot: their logits [n][V]. */
static baton_status probe_step(baton_backend *be, int n, int32_t token, float *logits,
                               baton_error *err) {
    int32_t toks[PROBE_SEQS_64];
    baton_seq seqs[PROBE_SEQS_64];
    for (int i = 0; i < n; i++) {
        baton_status s = be->ops->slot_reset(be, i, err);
        if (s != BATON_OK) return s;
        seqs[i] = (baton_seq){.slot = i, .n_tokens = 1};
        toks[i] = token;
    }
    baton_step step = {.n_seqs = n, .seqs = seqs, .tokens = toks, .logits = logits};
    return baton_backend_step(be, &step, err);
}

static baton_status probe_logits(const sweep_ctx *cb, int n, float *logits, baton_error *err) {
    return probe_step(cb->be, n, cb->probe, logits, err);
}

/* Decode at batch B (prefill of T tokens when T > 1): tokens/s, printed beside the engine's own
 * figure (base: the bench's measurement above, with the kernels and path tuning chose; what:
 * "coopmat" or "batched"). */
static double sweep_time(const sweep_ctx *cb, const char *what, const char *name, int B, int T,
                         double base) {
    baton_error err = {0};
    step_split sp;
    double dt = time_steps(cb->be, B, T, cb->seconds, cb->tokens, cb->seqs, cb->sampling, cb->out,
                           &sp, &err);
    if (dt < 0) {
        fprintf(stderr, "baton bench: %s %s: %s\n", what, name, err.msg);
        return -1.0;
    }
    double t = (double)B * T / dt;
    printf("sweep %s %-28s: %s %4d: %9.1f tokens/s  (%.2f ms/step, device %.2f ms", what, name,
           T > 1 ? "prefill" : "batch  ", T > 1 ? T : B, t, dt * 1e3, sp.gpu_s * 1e3);
    if (B == 1 && T == 1)
        printf(", weights at %.1f GB/s, %.2f of copy", cb->weight_bytes / dt * 1e-9,
               cb->weight_bytes / dt / cb->copy_bw);
    printf("; %.2fx the engine's own)\n", base > 0 ? t / base : 0.0);
    fflush(stdout);
    return t;
}

/* The batched matmul configurations: each first checked bitwise (the probe as the first of 2
 * sequences in a step for an 8-token one, of 9 for a 32-token one, of 33 for a 64-token one,
 * against the default path's logits of it alone), then timed: 8-token ones at batch 8 (or the
 * largest batch below it), the others at the largest batch and the prefill (where those are
 * steps they serve: above 8 tokens for 32, above 32 for 64). */
static int bench_batched(const sweep_ctx *cb) {
    baton_backend *be = cb->be;
    baton_error err = {0};
    int V = cb->V, rc = BATON_EXIT_OK, n = baton_vk_batched_count();
    float *got = malloc((size_t)PROBE_SEQS_64 * V * sizeof *got);
    if (got == NULL) {
        fprintf(stderr, "baton bench: out of memory\n");
        return BATON_EXIT_FAIL;
    }
    printf("sweep batched: the batched matmuls under each configuration (b: tokens, wr: lanes, "
           "rt: rows per thread)\n");
    int b8 = cb->tps[3] > 0.0 ? 8 : cb->largest < 8 ? cb->largest : 8;
    for (int i = 0; i < n && rc == BATON_EXIT_OK; i++) {
        const char *name = baton_vk_batched_name(i);
        int tokens = baton_vk_batched_tokens(i), least = tokens == 64 ? 32 : 8;
        bool eight = tokens == 8;
        int probe_seqs = eight ? 2 : tokens == 64 ? PROBE_SEQS_64 : PROBE_SEQS;
        if (baton_vk_batched_select(be, i, &err) != BATON_OK) {
            printf("sweep batched %-28s: skipped (%s)\n", name, err.msg);
            continue;
        }
        if (cb->largest >= probe_seqs) {
            if (probe_logits(cb, probe_seqs, got, &err) != BATON_OK) {
                fprintf(stderr, "baton bench: batched %s: %s\n", name, err.msg);
                rc = BATON_EXIT_FAIL;
                break;
            }
            bool same = memcmp(got, cb->want, (size_t)V * sizeof *got) == 0;
            printf("sweep batched %-28s: logits of the probe as 1 of %d sequences in a step %s\n",
                   name, probe_seqs, same ? "bitwise equal to the default path's alone"
                                          : "DIFFER FROM THE DEFAULT PATH'S ALONE");
            if (!same) {
                rc = BATON_EXIT_FAIL;
                break;
            }
        }
        if (eight && b8 >= 2 && sweep_time(cb, "batched", name, b8, 1, cb->tps[3]) < 0)
            rc = BATON_EXIT_FAIL;
        if (!eight && cb->largest > least && cb->tps[1] > 0.0 &&
            (sweep_time(cb, "batched", name, cb->largest, 1, cb->tps[1]) < 0 ||
             print_profile(be, "batched ", name, cb->largest) != BATON_EXIT_OK))
            rc = BATON_EXIT_FAIL;
        if (!eight && cb->prefill > least && cb->tps[2] > 0.0 &&
            sweep_time(cb, "batched", name, 1, cb->prefill, cb->tps[2]) < 0)
            rc = BATON_EXIT_FAIL;
    }
    if (baton_vk_kernels_reset(be, &err) != BATON_OK) rc = BATON_EXIT_FAIL;
    fflush(stdout);
    free(got);
    return rc;
}

/* The same shapes with every matmul on the tensor cores (BATON_VK_COOPMAT), where the device has
 * them, under each of its configurations: few-token ones (steps of up to 8 tokens) at batch 1,
 * many-token ones at the largest batch and the prefill. Before timing, each configuration's
 * logits of the probe must be bitwise those of the default pair (alone for a few-token one, as
 * the first of 9 sequences in one step for a many-token one: batch invariance across the two);
 * the default pair's are compared with the default path's (max |diff|). Then the three goal
 * ratios with the best configurations. */
static int bench_coopmat(const sweep_ctx *cb) {
    baton_backend *be = cb->be;
    baton_error err = {0};
    bool ready = false, active = false;
    const char *why = baton_vk_coopmat_state(be, &ready, &active);
    if (!ready) {
        printf("sweep coopmat: skipped (%s)\n", why);
        return BATON_EXIT_OK;
    }
    int V = cb->V, rc = BATON_EXIT_OK, n = baton_vk_coop_count();
    float *ref = malloc((size_t)V * sizeof *ref);
    float *many = malloc((size_t)PROBE_SEQS * V * sizeof *many);
    if (ref == NULL || many == NULL) {
        fprintf(stderr, "baton bench: out of memory\n");
        rc = BATON_EXIT_FAIL;
        goto out;
    }
    if (baton_vk_coopmat_use(be, true, &err) != BATON_OK || probe_logits(cb, 1, ref, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: coopmat: %s\n", err.msg);
        rc = BATON_EXIT_FAIL;
        goto out;
    }
    double diff = 0.0, big = 0.0;
    for (int i = 0; i < V; i++) {
        double d = fabs((double)ref[i] - (double)cb->want[i]);
        if (!(d <= diff)) diff = d; /* a NaN shows as NaN */
        if (fabs((double)cb->want[i]) > big) big = fabs((double)cb->want[i]);
    }
    printf("sweep coopmat: every matmul on the tensor cores (16x8x8 fp16 products, x as fp16 hi + lo, "
           "fp32 sums); one token's logits vs the default path: max |diff| %.3g (max |logit| %.3g)\n",
           diff, big);
    bool invariance = cb->largest >= PROBE_SEQS;
    double best[3] = {0.0, 0.0, 0.0}; /* batch 1, largest batch, prefill */
    int best_cfg[3] = {-1, -1, -1};
    for (int i = 0; i < n && rc == BATON_EXIT_OK; i++) {
        bool few = baton_vk_coop_few(i);
        const char *name = baton_vk_coop_name(i);
        int pair_few = few ? i : baton_vk_coop_default(true);
        int pair_many = few ? baton_vk_coop_default(false) : i;
        if (baton_vk_coop_select(be, pair_few, pair_many, &err) != BATON_OK) {
            printf("sweep coopmat %-28s: skipped (%s)\n", name, err.msg);
            continue;
        }
        bool same = true;
        if (few || invariance) {
            if (probe_logits(cb, few ? 1 : PROBE_SEQS, many, &err) != BATON_OK) {
                fprintf(stderr, "baton bench: coopmat %s: %s\n", name, err.msg);
                rc = BATON_EXIT_FAIL;
                break;
            }
            same = memcmp(many, ref, (size_t)V * sizeof *ref) == 0;
            printf("sweep coopmat %-28s: logits of the probe %s %s\n", name,
                   few ? "alone" : "as 1 of 9 sequences in a step",
                   same ? "bitwise equal to the default pair's alone"
                        : "DIFFER FROM THE DEFAULT PAIR'S ALONE");
        }
        if (!same) rc = BATON_EXIT_FAIL;
        const int whiches[2] = {few ? 0 : 1, few ? -1 : 2}; /* few: batch 1; many: largest, prefill */
        for (int r = 0; r < 2 && rc == BATON_EXIT_OK; r++) {
            int which = whiches[r];
            if (which < 0 || cb->tps[which] <= 0.0 || (which == 1 && cb->largest <= 1)) continue;
            int B = which == 1 ? cb->largest : 1, T = which == 2 ? cb->prefill : 1;
            double t = sweep_time(cb, "coopmat", name, B, T, cb->tps[which]);
            if (t < 0) {
                rc = BATON_EXIT_FAIL;
                break;
            }
            if (t > best[which]) {
                best[which] = t;
                best_cfg[which] = i;
            }
            /* Each product alone: at one token for a few-token one, the largest batch else. */
            if (which != 2 && print_profile(be, "coopmat ", name, which == 1 ? cb->largest : 1) !=
                                  BATON_EXIT_OK)
                rc = BATON_EXIT_FAIL;
        }
    }
    if (rc == BATON_EXIT_OK && best[0] > 0.0) {
        printf("sweep coopmat best: batch 1 %s, batch %d %s, prefill %s\n",
               baton_vk_coop_name(best_cfg[0]), cb->largest,
               best_cfg[1] >= 0 ? baton_vk_coop_name(best_cfg[1]) : "-",
               best_cfg[2] >= 0 ? baton_vk_coop_name(best_cfg[2]) : "-");
        printf("ratio coopmat batch-1 weight bandwidth / shader copy bandwidth: %.2f  (goal >= 0.80)\n",
               cb->weight_bytes * best[0] / cb->copy_bw);
        if (best[1] > 0.0)
            printf("ratio coopmat batch-%d / batch-1 tokens/s: %.1f  (goal >= 30 at batch 64)\n",
                   cb->largest, best[1] / best[0]);
        if (best[2] > 0.0)
            printf("ratio coopmat prefill / batch-1 tokens/s: %.1f  (goal >= 20)\n", best[2] / best[0]);
    }
out:
    if (baton_vk_kernels_reset(be, &err) != BATON_OK || baton_vk_coopmat_use(be, false, &err) != BATON_OK)
        rc = BATON_EXIT_FAIL;
    fflush(stdout);
    free(ref);
    free(many);
    return rc;
}

/* Batch-1 decode reading each amount of every product's weights ahead (baton_vk_prefetch_set),
 * on the engine's own kernels and path: each amount's logits of the probe first checked bitwise
 * against none's, then timed beside the engine's own figure; then back to the engine's own. */
static int bench_prefetch(const sweep_ctx *cb) {
    static const uint32_t mibs[] = {0, 2, 4, 8, 16, 32};
    baton_backend *be = cb->be;
    baton_error err = {0};
    uint32_t own = baton_vk_prefetch_mib(be);
    float *ref = malloc((size_t)cb->V * sizeof *ref), *got = malloc((size_t)cb->V * sizeof *got);
    int rc = ref && got ? BATON_EXIT_OK : BATON_EXIT_FAIL;
    if (rc == BATON_EXIT_OK)
        printf("sweep read-ahead: batch-1 decode reading the next product's first weights beside "
               "each dispatch before it (the engine's own: %u MiB), %.2f s each\n", own, cb->seconds);
    for (size_t i = 0; i < sizeof mibs / sizeof mibs[0] && rc == BATON_EXIT_OK; i++) {
        char name[32];
        snprintf(name, sizeof name, i == 0 ? "none" : "%u MiB", mibs[i]);
        if (baton_vk_prefetch_set(be, mibs[i], &err) != BATON_OK ||
            probe_logits(cb, 1, i == 0 ? ref : got, &err) != BATON_OK) {
            fprintf(stderr, "baton bench: sweep read-ahead %s: %s\n", name, err.msg);
            rc = BATON_EXIT_FAIL;
            break;
        }
        bool same = i == 0 || memcmp(ref, got, (size_t)cb->V * sizeof *got) == 0;
        if (i > 0)
            printf("sweep read-ahead %-28s: logits of the probe %s\n", name,
                   same ? "bitwise equal to none's" : "DIFFER FROM NONE'S");
        if (!same || sweep_time(cb, "read-ahead", name, 1, 1, cb->tps[0]) < 0) rc = BATON_EXIT_FAIL;
    }
    if (baton_vk_prefetch_set(be, own, &err) != BATON_OK) rc = BATON_EXIT_FAIL;
    if (ref == NULL || got == NULL) fprintf(stderr, "baton bench: out of memory\n");
    free(ref);
    free(got);
    fflush(stdout);
    return rc;
}

/* The largest batch and the prefill with the LayerNorm kernels spread over each number of
 * workgroups (baton_vk_ln_spread_set), on the engine's own kernels and path: each spread's logits
 * of a probe step of 9 sequences first checked bitwise against the engine's own spread's, then
 * timed beside the engine's own figures; then back to the engine's own. */
static int bench_ln_spread(const sweep_ctx *cb) {
    static const uint32_t spreads[] = {32, 128, 512, 2048};
    baton_backend *be = cb->be;
    baton_error err = {0};
    uint32_t own = baton_vk_ln_spread(be);
    size_t n = (size_t)PROBE_SEQS * cb->V;
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    int rc = ref && got ? BATON_EXIT_OK : BATON_EXIT_FAIL;
    if (rc == BATON_EXIT_OK && probe_logits(cb, PROBE_SEQS, ref, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: sweep ln-spread: %s\n", err.msg);
        rc = BATON_EXIT_FAIL;
    }
    if (rc == BATON_EXIT_OK)
        printf("sweep ln-spread: the LayerNorms of a step spread over about N workgroups where it "
               "has fewer tokens (the engine's own: %u), %.2f s each\n", own, cb->seconds);
    for (size_t i = 0; i < sizeof spreads / sizeof spreads[0] && rc == BATON_EXIT_OK; i++) {
        char name[32];
        snprintf(name, sizeof name, "%u", spreads[i]);
        if (baton_vk_ln_spread_set(be, spreads[i], &err) != BATON_OK ||
            probe_logits(cb, PROBE_SEQS, got, &err) != BATON_OK) {
            fprintf(stderr, "baton bench: sweep ln-spread %s: %s\n", name, err.msg);
            rc = BATON_EXIT_FAIL;
            break;
        }
        bool same = memcmp(ref, got, n * sizeof *got) == 0;
        printf("sweep ln-spread %-28s: logits of a step of %d sequences %s\n", name, PROBE_SEQS,
               same ? "bitwise equal to the engine's own spread's" : "DIFFER FROM THE ENGINE'S OWN");
        if (!same) rc = BATON_EXIT_FAIL;
        if (rc == BATON_EXIT_OK && cb->largest > 1 && cb->tps[1] > 0.0 &&
            sweep_time(cb, "ln-spread", name, cb->largest, 1, cb->tps[1]) < 0)
            rc = BATON_EXIT_FAIL;
        if (rc == BATON_EXIT_OK && cb->tps[2] > 0.0 &&
            sweep_time(cb, "ln-spread", name, 1, cb->prefill, cb->tps[2]) < 0)
            rc = BATON_EXIT_FAIL;
    }
    if (baton_vk_ln_spread_set(be, own, &err) != BATON_OK) rc = BATON_EXIT_FAIL;
    if (ref == NULL || got == NULL) fprintf(stderr, "baton bench: out of memory\n");
    free(ref);
    free(got);
    fflush(stdout);
    return rc;
}

/* Batch-1 decode under every matvec configuration of the engine (0, the GPUs' default, first:
 * the baseline under the same conditions), each first checked bitwise against configuration 0's
 * logits of one step; then the batched and tensor-core sweeps. Returns BATON_EXIT_OK or
 * BATON_EXIT_FAIL (a step failed or a configuration's logits differ: a broken configuration must
 * not pass for a fast one). */
static int bench_sweep(baton_backend *be, int V, double weight_bytes, double copy_bw, double seconds,
                       int largest, int prefill, const double *tps, int32_t *tokens, baton_seq *seqs,
                       baton_sampling *sampling, int32_t *out) {
    baton_error err = {0};
    int n = baton_vk_matvec_count(), rc = BATON_EXIT_OK, best = 0;
    const int32_t probe = tokens[0]; /* time_steps feeds sampled tokens back into tokens[] */
    double base_dt = 0.0, best_dt = 0.0;
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    if (want == NULL || got == NULL) {
        fprintf(stderr, "baton bench: out of memory\n");
        free(want);
        free(got);
        return BATON_EXIT_FAIL;
    }
    const sweep_ctx sc = {
        .be = be, .V = V, .largest = largest, .prefill = prefill, .weight_bytes = weight_bytes,
        .copy_bw = copy_bw, .seconds = seconds, .tps = tps, .want = want, .probe = probe,
        .tokens = tokens, .out = out, .seqs = seqs, .sampling = sampling};
    /* Reading ahead and spreading LayerNorms on the engine's own path and kernels; then the fp32
     * path's configurations, whichever path the backend chose; then the tensor cores'
     * (bench_coopmat); then the backend's own choice again. */
    if (bench_prefetch(&sc) != BATON_EXIT_OK || bench_ln_spread(&sc) != BATON_EXIT_OK) {
        free(want);
        free(got);
        return BATON_EXIT_FAIL;
    }
    bool ready = false, coop_chosen = false;
    baton_vk_coopmat_state(be, &ready, &coop_chosen);
    if (coop_chosen && baton_vk_coopmat_use(be, false, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: sweep: %s\n", err.msg);
        free(want);
        free(got);
        return BATON_EXIT_FAIL;
    }
    static const char *const fusing[4] = {"", " +ln", " +wkv", " +ln+wkv"}; /* BATON_VK_FUSE_* */
    uint32_t own_fuse = baton_vk_fuse(be);
    printf("sweep: batch-1 decode under each one-token matmul configuration (wr: rows per "
           "workgroup, u: weight loads in flight per thread, xs: x staged in shared memory; "
           "+ln, +wkv: the same, its products computing their LayerNorms, WKV), %.2f s each\n",
           seconds);
    for (int i = 0; i < n && rc == BATON_EXIT_OK; i++) {
        for (uint32_t fused = 0; fused < (baton_vk_matvec_fuses(i) ? 4u : 1u); fused++) {
            char name[48];
            snprintf(name, sizeof name, "%s%s", baton_vk_matvec_name(i), fusing[fused]);
            baton_vk_fuse_set(be, fused);
            if (baton_vk_matvec_select(be, i, &err) != BATON_OK) {
                printf("sweep %-22s: skipped (%s)\n", name, err.msg);
                break;
            }
            bool first = base_dt == 0.0; /* the first configuration the device runs */
            if (probe_step(be, 1, probe, first ? want : got, &err) != BATON_OK) {
                fprintf(stderr, "baton bench: sweep %s: %s\n", name, err.msg);
                rc = BATON_EXIT_FAIL;
                break;
            }
            bool same = first || memcmp(want, got, (size_t)V * sizeof *got) == 0;
            step_split sp;
            double dt = time_steps(be, 1, 1, seconds, tokens, seqs, sampling, out, &sp, &err);
            if (dt < 0) {
                fprintf(stderr, "baton bench: sweep %s: %s\n", name, err.msg);
                rc = BATON_EXIT_FAIL;
                break;
            }
            if (first) base_dt = dt;
            if (same && (best_dt == 0.0 || dt < best_dt)) {
                best = 4 * i + (int)fused;
                best_dt = dt;
            }
            printf("sweep %-22s: batch 1 %7.1f tokens/s  (%.2f ms/step, device %.2f ms, weights at "
                   "%.1f GB/s, %.2f of copy; %.2fx the first)  logits %s\n", name, 1.0 / dt,
                   dt * 1e3, sp.gpu_s * 1e3, weight_bytes / dt * 1e-9, weight_bytes / dt / copy_bw,
                   base_dt / dt, first ? "(the reference)"
                                 : same ? "bitwise equal to the first's"
                                        : "DIFFER FROM THE FIRST'S");
            /* The products alone are the same kernels either way (fused, a product only adds
             * its input's computation): timed once. */
            if (!fused && print_profile(be, "", name, 1) != BATON_EXIT_OK) rc = BATON_EXIT_FAIL;
            if (!same) rc = BATON_EXIT_FAIL;
            if (rc != BATON_EXIT_OK) break;
        }
    }
    baton_vk_fuse_set(be, own_fuse);
    if (rc == BATON_EXIT_OK && best_dt > 0.0)
        printf("sweep best: %s%s, %.2f ms/step (%.2fx the first)\n", baton_vk_matvec_name(best / 4),
               fusing[best % 4], best_dt * 1e3, base_dt / best_dt);
    if (baton_vk_kernels_reset(be, &err) != BATON_OK) rc = BATON_EXIT_FAIL;
    fflush(stdout);
    /* Then the batched configurations, and last the tensor-core path (a failure there
     * must not hide the lines above). */
    if (rc == BATON_EXIT_OK) rc = bench_batched(&sc);
    if (rc == BATON_EXIT_OK) rc = bench_coopmat(&sc);
    if (baton_vk_coopmat_use(be, coop_chosen, &err) != BATON_OK) rc = BATON_EXIT_FAIL;
    free(want);
    free(got);
    return rc;
}

/* Decode at batch B again with sampling on the device: as `baton run` samples by default
 * (temperature 1, top-p 0.85; the random model's logits are nearly flat, so the top-p cut keeps
 * thousands of tokens), with top-k 40 as well, and at temperature 0.2 (a distribution as peaked
 * as a trained model's: few tokens kept). What the sampler's cuts cost a step beyond greedy
 * (greedy_dt: the greedy step just measured). */
static int sample_lines(baton_backend *be, int B, double greedy_dt, double seconds, int32_t *tokens,
                        baton_seq *seqs, baton_sampling *sampling, int32_t *out) {
    static const baton_sampling hows[3] = {
        {.temperature = 1.0f, .top_p = 0.85f},
        {.temperature = 1.0f, .top_k = 40, .top_p = 0.85f},
        {.temperature = 0.2f, .top_p = 0.85f},
    };
    static const char *const names[3] = {"top-p 0.85", "top-p 0.85, top-k 40", "top-p 0.85, T 0.2"};
    for (int h = 0; h < 3; h++) {
        baton_error err = {0};
        step_split sp;
        double dt = time_steps_sampled(be, B, 1, seconds, tokens, seqs, sampling, out, &sp,
                                       &hows[h], &err);
        if (dt < 0) {
            fprintf(stderr, "baton bench: sampled decode batch %d: %s\n", B, err.msg);
            return BATON_EXIT_FAIL;
        }
        printf("decode batch %3d sampled (%s): %9.1f tokens/s  (%.2f ms/step, %.2fx greedy's step "
               "time; device busy %.2f ms)\n", B, names[h], B / dt, dt * 1e3, dt / greedy_dt,
               sp.gpu_s * 1e3);
        fflush(stdout);
    }
    return BATON_EXIT_OK;
}

/* The same steps again with the backend's profiling on: where a step's device time goes, kernel
 * by kernel (the groups of dispatches between barriers, each charged to the first kernel in it),
 * per step, the longest first. */
static int profile_line(baton_backend *be, const char *what, int B, int T, double seconds,
                        int32_t *tokens, baton_seq *seqs, baton_sampling *sampling, int32_t *out) {
    if (!baton_vk_profile(be, true)) {
        printf("profile %s: none (the queue has no timestamps)\n", what);
        return BATON_EXIT_OK;
    }
    baton_error err = {0};
    step_split sp;
    double dt = time_steps(be, B, T, seconds, tokens, seqs, sampling, out, &sp, &err);
    baton_vk_profile(be, false);
    if (dt < 0) {
        fprintf(stderr, "baton bench: profile %s: %s\n", what, err.msg);
        return BATON_EXIT_FAIL;
    }
    baton_vk_profile_entry e[12];
    uint32_t steps = 0;
    int n = baton_vk_profile_read(be, 12, e, &steps);
    double total = 0.0;
    for (int i = 0; i < n; i++) total += e[i].secs;
    if (steps == 0) steps = 1;
    printf("profile %s (device ms per step by kernel, %.2f in all; groups of dispatches per step):",
           what, total / steps * 1e3);
    for (int i = 0; i < n; i++)
        printf(" %s %.3f (%.0f)%s", e[i].name, e[i].secs / steps * 1e3, (double)e[i].groups / steps,
               i + 1 < n ? "," : "\n");
    if (n == 0) printf(" nothing\n");
    fflush(stdout);
    return BATON_EXIT_OK;
}

static int bench_run(int device, int L, int C, int V, const int32_t *batches, int n_batches,
                     int prefill, double seconds, bool sweep) {
    baton_error err = {0};
    int max_batch = 1;
    for (int i = 0; i < n_batches; i++) max_batch = batches[i] > max_batch ? batches[i] : max_batch;

    double dma_bw = 0.0, copy_bw = 0.0;
    char dev_name[256] = "";
    if (baton_vk_copy_bandwidth(device, (uint64_t)1 << 30, 10, &dma_bw, &copy_bw, dev_name,
                                sizeof dev_name, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: %s\n", err.msg);
        return BATON_EXIT_FAIL;
    }
    printf("device: %s\n", dev_name);
    printf("shape: %d layers, C %d, F %d, V %d\n", L, C, 4 * C, V);
    printf("copy bandwidth: %.1f GB/s read+written by a compute-shader copy; vkCmdCopyBuffer "
           "copies %.1f GB/s\n", copy_bw * 1e-9, dma_bw * 1e-9);
    fflush(stdout);

    baton_model *model = bench_model_announce(L, C, V);
    if (model == NULL) return BATON_EXIT_FAIL;
    double weight_bytes = bench_model_weight_bytes(L, C, V);
    baton_stage_config cfg = bench_stage_config(L, max_batch, prefill > max_batch ? prefill : max_batch);
    double t0 = bench_now_s();
    baton_backend *be = NULL;
    int rc = BATON_EXIT_FAIL;
    if (baton_vulkan_backend_new(model, &cfg, device, &be, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: %s\n", err.msg);
        goto out_model;
    }
    printf("upload: %.1f s (%s); ready in %.1f s, tuning included\n", baton_vk_upload_s(be),
           be->name, bench_now_s() - t0);
    printf("kernels: %s\n", baton_vk_tuning(be));
    fflush(stdout);

    int max_tokens = cfg.max_tokens;
    bench_buffers buf = {0};
    if (!bench_buffers_new(&buf, max_batch, max_tokens, V)) goto out_buffers;
    int32_t *tokens = buf.tokens, *out = buf.out;
    baton_seq *seqs = buf.seqs;
    baton_sampling *sampling = buf.sampling;

    double tps1 = 0.0, tps_max_batch = 0.0, step1 = 0.0, tps8 = 0.0;
    int largest = 0;
    for (int bi = 0; bi < n_batches; bi++) {
        int B = batches[bi];
        step_split sp;
        double dt = time_steps(be, B, 1, seconds, tokens, seqs, sampling, out, &sp, &err);
        if (dt < 0) {
            fprintf(stderr, "baton bench: decode batch %d: %s\n", B, err.msg);
            goto out_buffers;
        }
        double tps = B / dt;
        uint32_t dispatches = 0, barriers = 0;
        baton_vk_step_counts(be, &dispatches, &barriers);
        printf("decode batch %3d: %9.1f tokens/s  (%.2f ms/step, weights at %.1f GB/s; %u dispatches, "
               "%u barriers per step; device busy %.2f ms, recording %.2f ms; after %d warm-up "
               "steps, the first %.2f ms of device time, the last %.2f)\n", B, tps, dt * 1e3,
               weight_bytes / dt * 1e-9, dispatches, barriers, sp.gpu_s * 1e3, sp.record_s * 1e3,
               sp.warm_steps, sp.warm_first_s * 1e3, sp.warm_last_s * 1e3);
        fflush(stdout);
        if (B == 1) {
            tps1 = tps;
            step1 = dt;
        }
        if ((B == 1 || bi + 1 == n_batches) && sample_lines(be, B, dt, seconds, tokens, seqs,
                                                             sampling, out) != BATON_EXIT_OK)
            goto out_buffers;
        char what[48];
        snprintf(what, sizeof what, "decode batch %d", B);
        if ((B == 1 || bi + 1 == n_batches) &&
            profile_line(be, what, B, 1, seconds / 2, tokens, seqs, sampling, out) != BATON_EXIT_OK)
            goto out_buffers;
        if (B == 8) tps8 = tps;
        if (B >= largest) {
            largest = B;
            tps_max_batch = tps;
        }
    }
    double prefill_tps = 0.0;
    if (prefill > 0) {
        step_split sp;
        double dt = time_steps(be, 1, prefill, seconds, tokens, seqs, sampling, out, &sp, &err);
        if (dt < 0) {
            fprintf(stderr, "baton bench: prefill: %s\n", err.msg);
            goto out_buffers;
        }
        prefill_tps = prefill / dt;
        uint32_t dispatches = 0, barriers = 0;
        baton_vk_step_counts(be, &dispatches, &barriers);
        printf("prefill %d tokens: %9.1f tokens/s  (%.1f ms; %u dispatches, %u barriers; device busy "
               "%.1f ms, recording %.2f ms)\n", prefill, prefill_tps, dt * 1e3, dispatches, barriers,
               sp.gpu_s * 1e3, sp.record_s * 1e3);
        char what[48];
        snprintf(what, sizeof what, "prefill %d", prefill);
        if (profile_line(be, what, 1, prefill, seconds / 2, tokens, seqs, sampling, out) != BATON_EXIT_OK)
            goto out_buffers;
    }
    if (tps1 > 0) {
        printf("ratio batch-1 weight bandwidth / shader copy bandwidth: %.2f  (goal >= 0.80)\n",
               weight_bytes / step1 / copy_bw);
        if (largest > 1)
            printf("ratio batch-%d / batch-1 tokens/s: %.1f  (goal >= 30 at batch 64)\n", largest,
                   tps_max_batch / tps1);
        else
            printf("ratio batch-64 / batch-1 tokens/s: not measured (no batch above 1)\n");
        if (prefill_tps > 0)
            printf("ratio prefill / batch-1 tokens/s: %.1f  (goal >= 20)\n", prefill_tps / tps1);
    }
    fflush(stdout);
    const double tps[4] = {tps1, tps_max_batch, prefill_tps, tps8};
    rc = sweep ? bench_sweep(be, V, weight_bytes, copy_bw, seconds / 2, largest, prefill, tps, tokens,
                             seqs, sampling, out)
               : BATON_EXIT_OK;
out_buffers:
    bench_buffers_free(&buf);
    baton_backend_free(be);
out_model:
    bench_model_free(model);
    return rc;
}
#endif

int cmd_bench(int argc, char **argv) {
    const char *device = "vulkan", *shape = "1b5";
    long long layers = 0, prefill = 512;
    double seconds = 1.0;
    bool sweep = false;
    int32_t *batches = NULL;
    int n_batches = 0;
    int rc = BATON_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            free(batches);
            return BATON_EXIT_OK;
        }
        if (strcmp(a, "--sweep") == 0) {
            sweep = true;
            continue;
        }
        if (i + 1 >= argc) {
            rc = args_usage_error("bench", "'%s' needs a value or is unknown", a);
            goto out;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--device") == 0) {
            device = v;
        } else if (strcmp(a, "--shape") == 0) {
            shape = v;
        } else if (strcmp(a, "--layers") == 0) {
            if (!args_int("bench", a, v, 1, 256, &layers)) goto out;
        } else if (strcmp(a, "--prefill") == 0) {
            if (!args_int("bench", a, v, 0, 16384, &prefill)) goto out;
        } else if (strcmp(a, "--seconds") == 0) {
            if (!args_float("bench", a, v, 0.0, 600.0, &seconds)) goto out;
        } else if (strcmp(a, "--batch") == 0) {
            free(batches);
            batches = NULL;
            if (!args_int_list("bench", a, v, 1, 1024, &batches, &n_batches)) goto out;
        } else {
            rc = args_usage_error("bench", "unknown option '%s'", a);
            goto out;
        }
    }
    int L, C, V;
    if (!bench_shape_parse(shape, &L, &C, &V)) {
        rc = args_usage_error("bench", "--shape: '%s' is not 14b, 7b, 3b, 1b5 or L,C,V (C a "
                              "multiple of 8)", shape);
        goto out;
    }
    if (layers > 0) L = (int)layers;
    bool cpu = strcmp(device, "cpu") == 0;
    if (!cpu && (strncmp(device, "vulkan", 6) != 0 || (device[6] != '\0' && device[6] != ':'))) {
        rc = args_usage_error("bench", "--device: '%s' is not cpu, vulkan, vulkan:N or vulkan:NAME",
                              device);
        goto out;
    }
    if (cpu && sweep) {
        rc = args_usage_error("bench", "--sweep times the Vulkan engine's kernels; not on cpu");
        goto out;
    }
    if (n_batches == 0) {
        static const int32_t defaults[] = {1, 8, 64};
        batches = malloc(sizeof defaults);
        if (batches == NULL) {
            rc = BATON_EXIT_FAIL;
            goto out;
        }
        memcpy(batches, defaults, sizeof defaults);
        n_batches = 3;
    }
    baton_error err = {0};
    if (cpu) {
        int threads = 1;
        if (baton_pool_threads_default(&threads, &err) != BATON_OK) {
            fprintf(stderr, "baton bench: %s\n", err.msg);
            rc = BATON_EXIT_FAIL;
            goto out;
        }
        rc = bench_cpu_run(threads, L, C, V, batches, n_batches, (int)prefill, seconds);
        goto out;
    }
#ifdef BATON_HAVE_VULKAN
    int index = -1;
    if (baton_vk_device_resolve(device[6] == ':' ? device + 7 : "", &index, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: %s\n", err.msg);
        rc = BATON_EXIT_FAIL;
        goto out;
    }
    rc = bench_run(index, L, C, V, batches, n_batches, (int)prefill, seconds, sweep);
#else
    fprintf(stderr, "baton bench: this build has no Vulkan engine (--device cpu has none to need)\n");
    rc = BATON_EXIT_FAIL;
#endif
out:
    free(batches);
    return rc;
}
