/* baton bench --device cpu: the CPU engine on its threads beside the same engine on one thread,
 * both in this run on the same weights, and memcpy's bandwidth as the yardstick a batch-1 step
 * (which reads every weight once) is held to. */
#include "bench_cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "backend.h"
#include "bench_model.h"
#include "thread_pool.h"

typedef struct {
    uint8_t *dst;
    const uint8_t *src;
    size_t bytes;
} copy_job;

static void copy_part(void *arg, int part, int parts) {
    const copy_job *j = arg;
    size_t begin = j->bytes * (size_t)part / (size_t)parts;
    size_t end = j->bytes * (size_t)(part + 1) / (size_t)parts;
    memcpy(j->dst + begin, j->src + begin, end - begin);
}

/* Bytes read plus written per second by memcpy of 512 MiB split over the pool's threads, the
 * best of 5; <= 0 when memory runs out. */
static double copy_bandwidth(baton_pool *pool) {
    size_t bytes = (size_t)512 << 20;
    uint8_t *src = malloc(bytes), *dst = malloc(bytes);
    double best = 0.0;
    if (src != NULL && dst != NULL) {
        memset(src, 1, bytes);
        memset(dst, 2, bytes);
        copy_job job = {dst, src, bytes};
        for (int i = 0; i < 5; i++) {
            double t0 = bench_now_s();
            baton_pool_run(pool, copy_part, &job);
            double bw = 2.0 * (double)bytes / (bench_now_s() - t0);
            best = bw > best ? bw : best;
        }
    }
    free(src);
    free(dst);
    return best;
}

/* Greedy steps of n_seqs sequences of n_tokens each from fresh slots, a quarter of `seconds` of
 * warm-up first, then at least 2 steps and about `seconds`; seconds per step, < 0 on error. */
static double time_steps(baton_backend *be, const bench_buffers *buf, int n_seqs, int n_tokens,
                         double seconds, baton_error *err) {
    baton_step step;
    if (bench_step_fresh(be, buf, n_seqs, n_tokens, NULL, &step, err) != BATON_OK) return -1.0;
    double t0 = bench_now_s(), t = t0;
    for (int w = 0; w < 1 || t - t0 < seconds / 4; w++) {
        if (baton_backend_step(be, &step, err) != BATON_OK) return -1.0;
        t = bench_now_s();
    }
    int steps = 0;
    for (t0 = t; steps < 2 || t - t0 < seconds; steps++) {
        if (n_tokens == 1) memcpy(buf->tokens, buf->out, (size_t)n_seqs * sizeof *buf->tokens);
        if (baton_backend_step(be, &step, err) != BATON_OK) return -1.0;
        t = bench_now_s();
    }
    return (t - t0) / steps;
}

/* One step of n sequences of `len` tokens each from fresh slots, the last token's logits of
 * each into logits ([n][V]); false on error. */
static bool probe_step(baton_backend *be, const bench_buffers *buf, int n, int len, float *logits,
                       baton_error *err) {
    baton_step step;
    if (bench_step_fresh(be, buf, n, len, NULL, &step, err) != BATON_OK) return false;
    step.sampling = NULL;
    step.tokens_out = NULL;
    step.logits = logits;
    return baton_backend_step(be, &step, err) == BATON_OK;
}

/* The largest batch's and the prefill's logits on `threads` threads, bitwise against one
 * thread's; false (and a line saying so) where they differ or a step fails. */
static bool check_threads(baton_backend *const be[2], int threads, int max_batch, int prefill, int V,
                          const bench_buffers *buf) {
    baton_error err = {0};
    float *got = malloc((size_t)max_batch * V * sizeof(float));
    float *want = malloc((size_t)max_batch * V * sizeof(float));
    bool ok = got != NULL && want != NULL;
    for (int k = 0; ok && k < (prefill > 0 ? 2 : 1); k++) {
        int n = k == 0 ? max_batch : 1, len = k == 0 ? 1 : prefill;
        ok = probe_step(be[0], buf, n, len, got, &err) && probe_step(be[1], buf, n, len, want, &err);
        if (!ok) {
            fprintf(stderr, "baton bench: %s\n", err.msg);
            break;
        }
        bool same = memcmp(got, want, (size_t)n * V * sizeof(float)) == 0;
        printf("check: %s, logits on %d threads %s one thread's\n",
               k == 0 ? "a decode step of the largest batch" : "the prefill",
               threads, same ? "bitwise equal to" : "DIFFER from");
        ok = same;
    }
    free(got);
    free(want);
    return ok;
}

int bench_cpu_run(int threads, int L, int C, int V, const int32_t *batches, int n_batches,
                  int prefill, double seconds) {
    baton_error err = {0};
    int max_batch = 1, rc = BATON_EXIT_FAIL;
    for (int i = 0; i < n_batches; i++) max_batch = batches[i] > max_batch ? batches[i] : max_batch;
    int max_tokens = prefill > max_batch ? prefill : max_batch;
    baton_pool *pool = NULL;
    baton_model *model = NULL;
    baton_backend *be[2] = {NULL, NULL}; /* on `threads` threads, on one */
    bench_buffers buf = {0};
    if (!bench_buffers_new(&buf, max_batch, max_tokens, V)) goto out;
    if (baton_pool_new(threads, &pool, &err) != BATON_OK) {
        fprintf(stderr, "baton bench: %s\n", err.msg);
        goto out;
    }
    printf("device: cpu, %d thread%s (BATON_CPU_THREADS, else one per processor); baseline: the "
           "same engine on one thread, in this run\n", threads, threads == 1 ? "" : "s");
    printf("shape: %d layers, C %d, F %d, V %d\n", L, C, 4 * C, V);
    double copy_bw = copy_bandwidth(pool);
    if (copy_bw <= 0.0) {
        fprintf(stderr, "baton bench: out of memory for the copy\n");
        goto out;
    }
    printf("copy bandwidth: %.1f GB/s read+written by memcpy on %d thread%s\n", copy_bw * 1e-9,
           threads, threads == 1 ? "" : "s");
    fflush(stdout);
    model = bench_model_announce(L, C, V);
    if (model == NULL) goto out;
    double weight_bytes = bench_model_weight_bytes(L, C, V);
    baton_stage_config cfg = bench_stage_config(L, max_batch, max_tokens);
    int runs = threads == 1 ? 1 : 2;
    for (int r = 0; r < runs; r++) {
        if (baton_cpu_backend_new_threads(model, &cfg, r == 0 ? threads : 1, &be[r], &err) != BATON_OK) {
            fprintf(stderr, "baton bench: %s\n", err.msg);
            goto out;
        }
    }
    if (runs == 2 && !check_threads(be, threads, max_batch, prefill, V, &buf)) goto out;
    fflush(stdout);
    /* tokens/s on `threads` threads: batch 1, the largest batch, the prefill. */
    double tps[3] = {0}, step1 = 0.0;
    int largest = 0;
    for (int bi = 0; bi <= n_batches; bi++) {
        bool is_prefill = bi == n_batches;
        if (is_prefill && prefill == 0) break;
        int B = is_prefill ? 1 : batches[bi], T = is_prefill ? prefill : 1;
        double dt[2] = {0};
        for (int r = 0; r < runs; r++) {
            dt[r] = time_steps(be[r], &buf, B, T, seconds, &err);
            if (dt[r] < 0) {
                fprintf(stderr, "baton bench: %s: %s\n", is_prefill ? "prefill" : "decode", err.msg);
                goto out;
            }
        }
        double speedup = runs == 2 ? dt[1] / dt[0] : 1.0;
        if (is_prefill)
            printf("prefill %d tokens: %9.1f tokens/s  (%.1f ms; one thread %.1f tokens/s, %.2fx)\n",
                   T, T / dt[0], dt[0] * 1e3, T / dt[runs - 1], speedup);
        else
            printf("decode batch %3d: %9.1f tokens/s  (%.2f ms/step, weights at %.1f GB/s; one "
                   "thread %.1f tokens/s, %.2fx)\n", B, B / dt[0], dt[0] * 1e3,
                   weight_bytes / dt[0] * 1e-9, B / dt[runs - 1], speedup);
        fflush(stdout);
        int k = is_prefill ? 2 : B == 1 ? 0 : 1;
        if (!is_prefill && B == 1) step1 = dt[0];
        if (!is_prefill && B > 1 && B < largest) continue;
        if (!is_prefill && B > 1) largest = B;
        tps[k] = B * T / dt[0];
    }
    if (tps[0] > 0) {
        printf("ratio batch-1 weight bandwidth / memcpy bandwidth: %.2f\n",
               weight_bytes / step1 / copy_bw);
        if (largest > 1)
            printf("ratio batch-%d / batch-1 tokens/s: %.1f\n", largest, tps[1] / tps[0]);
        if (tps[2] > 0)
            printf("ratio prefill / batch-1 tokens/s: %.1f\n", tps[2] / tps[0]);
    }
    rc = BATON_EXIT_OK;
out:
    for (int r = 0; r < 2; r++) baton_backend_free(be[r]);
    bench_model_free(model);
    baton_pool_free(pool);
    bench_buffers_free(&buf);
    return rc;
}
