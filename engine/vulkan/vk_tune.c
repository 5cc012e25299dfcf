/* Timing the stage's own matrix products on its device: the bench's per-matrix profile of the
 * one-token matmul, and the kernel tuning a backend runs once it has its weights.
 *
 * Tuning is safe to do by measurement because every configuration of a kind sums in the same
 * order (vk_kernels.h): which one runs changes the speed, never a bit of the results. */
#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vk_backend_impl.h"
#include "vk_kernels.h"

static const char *const profile_names[BATON_VK_PROFILE_MATRICES] = {
    "att.kvr", "att.output", "ffn.kr", "ffn.value", "head",
};

const char *baton_vk_profile_name(int i) {
    return i >= 0 && i < BATON_VK_PROFILE_MATRICES ? profile_names[i] : "?";
}

/* Profile matrix i (0..3: the stage's first layer's att.kvr, att.output, ffn.kr and ffn.value,
 * stacked as the engine runs them; 4: the head) with the parts, input and output a step uses,
 * every epilogue plain (nothing accumulates); NULL when the stage lacks it. */
static const vk_matrix *profile_matrix(const vk_backend *b, int i, vk_matmul_part parts[3],
                                       const vk_buffer **x, const vk_buffer **y) {
    uint32_t C = (uint32_t)b->C, F = (uint32_t)b->F, S = b->act_stride;
    const vk_matrix *w = NULL;
    if (i < 4 && b->n_layers > 0) {
        const vk_layer *ly = &b->layers[0];
        const vk_matrix *ws[4] = {&ly->att_kvr, &ly->att_output, &ly->ffn_kr, &ly->ffn_value};
        w = ws[i];
    } else if (i == 4 && b->base.config.with_head) {
        w = &b->head;
    }
    for (int p = 0; p < 3; p++)
        parts[p] = (vk_matmul_part){.x_off = p * S, .y_off = p * S, .y_stride = C};
    *x = &b->xs;
    *y = &b->kvr;
    if (i == 1) {
        *x = &b->att;
        *y = &b->x;
    } else if (i == 2) {
        parts[0].y_stride = F;
        parts[1].y_off = b->kf_stride;
        *y = &b->kfr;
    } else if (i == 3) {
        *x = &b->kfr;
        *y = &b->x;
    } else if (i == 4) {
        *x = &b->xx;
        *y = &b->logits;
        parts[0].y_stride = (uint32_t)b->V;
    }
    return w;
}

baton_status baton_vk_matmul_profile(baton_backend *base, int tokens, int reps, double *secs,
                                     baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    vk_context *ctx = &b->ctx;
    for (int i = 0; i < BATON_VK_PROFILE_MATRICES; i++) secs[i] = 0.0;
    if (tokens < 1 || tokens > b->max_tokens)
        return baton_fail(err, BATON_ERR_ARG, "profile at %d tokens: the stage runs 1 to %d", tokens,
                          b->max_tokens);
    if (ctx->queries == VK_NULL_HANDLE) return BATON_OK; /* no timestamps: nothing to say */
    for (int i = 0; i < BATON_VK_PROFILE_MATRICES; i++) {
        vk_matmul_part parts[3];
        const vk_buffer *x, *y;
        const vk_matrix *w = profile_matrix(b, i, parts, &x, &y);
        if (w == NULL || (i == 4 && tokens > b->head_rows)) continue;
        baton_status st = vk_begin(ctx, err);
        if (st != BATON_OK) return st;
        vk_timestamp(ctx, 0);
        for (int r = 0; r < reps; r++) {
            vk_record_matmul_parts(ctx, w, parts, x, y, NULL, 0, (uint32_t)tokens);
            vk_barrier(ctx);
        }
        vk_timestamp(ctx, 1);
        st = vk_submit_wait(ctx, err);
        if (st != BATON_OK) return st;
        double t = vk_elapsed_s(ctx);
        if (t > 0.0) secs[i] = t / reps;
    }
    return BATON_OK;
}

void baton_vk_profile_shape(const baton_backend *base, int i, uint64_t *rows, uint64_t *cols) {
    const vk_backend *b = (const vk_backend *)base;
    vk_matmul_part parts[3];
    const vk_buffer *x, *y;
    const vk_matrix *w = profile_matrix(b, i, parts, &x, &y);
    *rows = w != NULL ? (uint64_t)w->rows : 0;
    *cols = w != NULL ? (uint64_t)w->cols : 0;
}

/* The device time of one layer's four products at T tokens (T <= max_tokens), the mean of `reps`
 * in a row: each rep runs the four in the step's order with a barrier after each, so a matrix is
 * read from memory, not from a cache that held it a moment ago. each: NULL, or the mean time of
 * each product [4] (a timestamp after each barrier; zeros where the device gives none). */
enum { LAYER_REPS_MAX = 16 };
static baton_status time_layer(vk_backend *b, uint32_t T, int reps, double *secs, double *each,
                               baton_error *err) {
    vk_context *ctx = &b->ctx;
    baton_status st = vk_begin(ctx, err);
    if (st != BATON_OK) return st;
    if (each != NULL) vk_timestamps_reset(ctx, 2, 1 + 4 * reps);
    vk_timestamp(ctx, 0);
    if (each != NULL) vk_timestamp(ctx, 2);
    for (int r = 0; r < reps; r++)
        for (int i = 0; i < 4; i++) {
            vk_matmul_part parts[3];
            const vk_buffer *x, *y;
            const vk_matrix *w = profile_matrix(b, i, parts, &x, &y);
            vk_record_matmul_parts(ctx, w, parts, x, y, NULL, 0, T);
            vk_barrier(ctx);
            if (each != NULL) vk_timestamp(ctx, 3 + 4 * r + i);
        }
    vk_timestamp(ctx, 1);
    st = vk_submit_wait(ctx, err);
    *secs = vk_elapsed_s(ctx) / reps;
    if (each != NULL) {
        double d[4 * LAYER_REPS_MAX];
        for (int i = 0; i < 4; i++) each[i] = 0.0;
        if (st == BATON_OK && vk_timestamps_deltas(ctx, 2, 1 + 4 * reps, d))
            for (int k = 0; k < 4 * reps; k++) each[k % 4] += d[k] / reps;
    }
    return st;
}

/* The kinds of matmul configuration tuning chooses, each timed at its own token count. */
enum { K_MATVEC = VK_KIND_MATVEC, K_B8 = VK_KIND_B8, K_B32 = VK_KIND_B32, K_B64 = VK_KIND_B64,
       K_COOP_FEW = VK_KIND_COOP_FEW, K_COOP_MANY = VK_KIND_COOP_MANY, K_COOP_LARGE = VK_KIND_COOP_LARGE,
       K_KINDS = VK_KINDS };
#define TUNE_CONFIGS_MAX 24
_Static_assert((int)VK_MATVEC_CONFIGS <= TUNE_CONFIGS_MAX && (int)VK_BATCHED_CONFIGS <= TUNE_CONFIGS_MAX &&
               (int)VK_COOP_CONFIGS <= TUNE_CONFIGS_MAX, "tuning's table of times");

static const char *const kind_names[K_KINDS] = {
    "matvec", "8-token", "32-token", "64-token", "tensor-core few-token", "tensor-core many-token",
    "tensor-core large",
};

/* The kinds' tables (vk_backend_impl.h). */
int vk_kind_size(int kind) {
    return kind == K_MATVEC ? VK_MATVEC_CONFIGS
         : kind <= K_B64    ? VK_BATCHED_CONFIGS
                            : VK_COOP_CONFIGS;
}

bool vk_kind_has(int kind, int i) {
    switch (kind) {
    case K_B8: return vk_batched_fits(i, VK_TIER_8);
    case K_B32: return vk_batched_fits(i, VK_TIER_32);
    case K_B64: return vk_batched_fits(i, VK_TIER_64);
    case K_COOP_FEW: return vk_coop_few(i);
    case K_COOP_MANY:
    case K_COOP_LARGE: return !vk_coop_few(i);
    default: return true;
    }
}

const char *vk_kind_config_name(int kind, int i) {
    return kind == K_MATVEC ? vk_matvec_configs[i].name
         : kind <= K_B64    ? vk_batched_configs[i].name
                            : vk_coop_configs[i].name;
}

int *vk_kind_start(vk_context *ctx, int kind) {
    int *const starts[K_KINDS] = {&ctx->start.matvec, &ctx->start.mm8, &ctx->start.mm32,
                                  &ctx->start.mm64, &ctx->start.coop_few, &ctx->start.coop_many,
                                  &ctx->start.coop_large};
    return starts[kind];
}

/* Makes configuration i the kind's, for every role's matrices. */
static baton_status kind_select(vk_context *ctx, int kind, int i, baton_error *err) {
    vk_kind_clear_roles(ctx, kind);
    switch (kind) {
    case K_MATVEC: return vk_matvec_select(ctx, i, err);
    case K_B8: return vk_batched_set(ctx, VK_TIER_8, i, err);
    case K_B32: return vk_batched_set(ctx, VK_TIER_32, i, err);
    case K_B64: return vk_batched_set(ctx, VK_TIER_64, i, err);
    case K_COOP_FEW: return vk_coop_select(ctx, i, ctx->coop_many, ctx->coop_large, err);
    case K_COOP_MANY: return vk_coop_select(ctx, ctx->coop_few, i, ctx->coop_large, err);
    default: return vk_coop_select(ctx, ctx->coop_few, ctx->coop_many, i, err);
    }
}

/* The tokens a kind is timed at on its path (0: this stage never runs it): 1, 8, 32, and 64 for
 * the 64-token tier and the tensor-core many-token kind (the batch the goals name; on the fp32
 * path a prefill runs the same kernel), 512 for the tensor cores' large kind (the bench's
 * prefill), within max_tokens. kind_tokens: the same, 0 for the other path's kinds. */
static uint32_t kind_tokens_on_path(const vk_backend *b, int kind) {
    uint32_t most = (uint32_t)b->max_tokens;
    if (kind == K_MATVEC || kind == K_COOP_FEW) return 1;
    if (kind == K_B8) return most >= 2 ? (most < 8 ? most : 8) : 0;
    if (kind == K_B32) return most > 8 ? (most < 32 ? most : 32) : 0;
    if (kind == K_B64) return most > 32 ? (most < 64 ? most : 64) : 0;
    if (kind == K_COOP_LARGE) return most > VK_COOP_MANY_TOKENS ? (most < 512 ? most : 512) : 0;
    return most > 8 ? (most < 64 ? most : 64) : 0;
}

static uint32_t kind_tokens(const vk_backend *b, int kind) {
    if ((kind >= K_COOP_FEW) != b->ctx.coopmat) return 0; /* the other path's kernels never run */
    return kind_tokens_on_path(b, kind);
}

enum { TUNE_ROUNDS = 3 };
static const double TUNE_REP_S = 0.004;   /* a timing lasts about this long (reps of a layer) */
static const double TUNE_WARM_S = 0.3;    /* the device kept busy this long before the first */
static const double TUNE_KIND_S = 2.0;    /* a kind's rounds beyond this: one round */
static const double TUNE_TOTAL_S = 12.0;  /* past this, the kinds left keep their defaults (the
                                             * 14B shape on the H100, run E: 6.7 s before the
                                             * tensor cores' many-token kind) */
static const double TUNE_MARGIN = 0.97;   /* the default gives way to one at least 3% faster */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* What the last timing left in x (T tokens: the ffn.value product of the ffn.kr product of the
 * inputs), through the host-visible probe: floats [T][C] into out. */
static baton_status read_x(vk_backend *b, uint32_t T, const vk_buffer *probe, float *out,
                           baton_error *err) {
    size_t bytes = (size_t)T * (size_t)b->C * sizeof(float);
    assert(bytes <= probe->size);
    baton_status st = vk_begin(&b->ctx, err);
    if (st != BATON_OK) return st;
    vk_copy(&b->ctx, &b->x, 0, probe, 0, bytes);
    st = vk_submit_wait(&b->ctx, err);
    if (st == BATON_OK) memcpy(out, probe->mapped, bytes);
    return st;
}

static void append(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *out, size_t size, const char *fmt, ...) {
    size_t len = strlen(out);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + len, size - len, fmt, ap);
    va_end(ap);
}

/* Appends "<kind> <configuration> (<what>)" to out, after "; " unless out is empty. */
static void note_kind(char *out, size_t size, int kind, int config, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void note_kind(char *out, size_t size, int kind, int config, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    append(out, size, "%s%s %s (%s)", out[0] ? "; " : "", kind_names[kind],
           vk_kind_config_name(kind, config), what);
}

/* Each of the layer's products (time_layer's order: att.kvr, att.output, ffn.kr, ffn.value) may
 * run its own configuration of the kind: from each configuration's time on it within the layer
 * (parts; secs[i] <= 0: not timed, or not bitwise the default's, never chosen), where one is at
 * least 3% faster on that product than the kind's pick, that product's matrices run it (the
 * shapes differ: att.output and ffn.value have C rows, a fifth of ffn.kr's, so a kernel of many
 * rows per workgroup may leave SMs idle on them). Appended to out as "matvec wr8 u8 for
 * att.output (1.10x as fast as wr32 u8 xs there)". *layer: the layer's time as it will run (the
 * four products' own times under their choices, which add up to about the layer's), where every
 * product has one. */
static baton_status pick_per_role(vk_backend *b, int kind, const double *secs, const double parts[][4],
                                  int pick, char *out, size_t size, double *layer, baton_error *err) {
    vk_context *ctx = &b->ctx;
    int n = vk_kind_size(kind);
    double sum = 0.0;
    for (int p = 0; p < 4; p++) {
        int role = VK_ROLE_ATT_KVR + p;
        double t[TUNE_CONFIGS_MAX];
        for (int i = 0; i < n; i++) t[i] = secs[i] > 0.0 && vk_kind_has(kind, i) ? parts[i][p] : 0.0;
        int own = t[pick] > 0.0 ? vk_tune_pick(t, n, pick, TUNE_MARGIN) : pick;
        sum = sum >= 0.0 && t[own] > 0.0 ? sum + t[own] : -1.0;
        ctx->start.role_config[kind][role] = own != pick ? own : -1;
        baton_status st = vk_kind_select_role(ctx, kind, role, ctx->start.role_config[kind][role], err);
        if (st != BATON_OK) return st;
        if (own != pick)
            append(out, size, "; %s %s for %s (%.2fx as fast as %s there)", kind_names[kind],
                   vk_kind_config_name(kind, own), profile_names[p], t[pick] / t[own],
                   vk_kind_config_name(kind, pick));
    }
    if (sum > 0.0) *layer = sum;
    return BATON_OK;
}

/* Builds the pipeline of every configuration tuning may time, the tensor cores' too where it may
 * choose them, then puts the start configurations back: with the warm-up after it, each kernel
 * is timed at least TUNE_WARM_S after it was made, as a served one runs. On the H100 (run E)
 * tuning timed the tensor cores, built moments before, at 0.27x the matvec at one token and 2.90x
 * the fp32 path at 64, where whole steps ran them at 0.81x and 1.31x: a lead that new pipelines
 * run slow at first, not a proof. */
static baton_status prebuild(vk_backend *b, baton_error *err) {
    vk_context *ctx = &b->ctx;
    bool coop_may = ctx->coopmat || (ctx->coopmat_ready && ctx->coop_mode == VK_COOP_AUTO);
    for (int kind = 0; kind < K_KINDS; kind++) {
        bool coop = kind >= K_COOP_FEW;
        if (coop ? !coop_may : ctx->coopmat) continue;
        if (kind_tokens_on_path(b, kind) == 0) continue;
        for (int i = 0; i < vk_kind_size(kind); i++) {
            baton_error why = {0}; /* one the device cannot run is named when timed */
            if (vk_kind_has(kind, i)) (void)kind_select(ctx, kind, i, &why);
        }
    }
    return vk_kernels_reset(ctx, err);
}

/* Keeps the device busy for about TUNE_WARM_S with the first layer's one-token products before
 * the first timing, so that tuning times at the clocks a serving device runs at. On the H100 (run
 * E) tuning right after the upload timed a one-token layer at 0.70 ms where a served step spends
 * 0.33, and chose a matvec 12% slower than the default there. */
static baton_status warm_up(vk_backend *b, baton_error *err) {
    double one = 0.0;
    baton_status st = time_layer(b, 1, 1, &one, NULL, err);
    if (st != BATON_OK || !(one > 0.0)) return st;
    double reps = TUNE_WARM_S / one;
    return reps >= 1.0 ? time_layer(b, 1, reps < 4096.0 ? (int)reps : 4096, &one, NULL, err) : BATON_OK;
}

/* Times every configuration of one kind (the fastest of up to TUNE_ROUNDS rounds, the
 * configurations interleaved so that a clock change hits them alike) and makes the pick its
 * start; appends what it chose to out. A configuration whose results after its first timing
 * are not bitwise the default's (a driver that compiles one variant's sums differently) is
 * never chosen, and named: on such a device tuning must not trade batch invariance for speed.
 * ref and got: [T][C] floats each; probe: a host-visible buffer of as many. *best: the
 * pick's time (0: none was timed). */
static baton_status tune_kind(vk_backend *b, int kind, uint32_t T, const vk_buffer *probe,
                              float *ref, float *got, char *out, size_t size, double *best,
                              baton_error *err) {
    vk_context *ctx = &b->ctx;
    int *start = vk_kind_start(ctx, kind);
    int n = vk_kind_size(kind), def = *start, members = 0;
    for (int i = 0; i < n; i++) members += vk_kind_has(kind, i);
    double secs[TUNE_CONFIGS_MAX] = {0}, one = 0.0, parts[TUNE_CONFIGS_MAX][4] = {{0}};
    bool differs[TUNE_CONFIGS_MAX] = {false};
    size_t bytes = (size_t)T * (size_t)b->C * sizeof(float);
    baton_status st = kind_select(ctx, kind, def, err);
    if (st == BATON_OK) st = time_layer(b, T, 1, &one, NULL, err); /* builds caches and clocks up */
    if (st == BATON_OK && one < 0.1) st = time_layer(b, T, 1, &one, NULL, err); /* then steady */
    if (st == BATON_OK) st = read_x(b, T, probe, ref, err);
    if (st != BATON_OK) return st;
    if (!(one > 0.0) || members * one > 2 * TUNE_KIND_S) {
        note_kind(out, size, kind, def, "kept: %.3f s a layer is too slow to time each", one);
        return BATON_OK;
    }
    int reps = one >= TUNE_REP_S ? 1 : (int)(TUNE_REP_S / one) + 1;
    if (reps > LAYER_REPS_MAX) reps = LAYER_REPS_MAX;
    int rounds = members * reps * one * TUNE_ROUNDS > TUNE_KIND_S ? 1 : TUNE_ROUNDS;
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) {
            if (!vk_kind_has(kind, i) || secs[i] < 0.0) continue;
            baton_error why = {0};
            if (kind_select(ctx, kind, i, &why) != BATON_OK) {
                secs[i] = -1.0; /* the device cannot run it (shared memory, workgroup size) */
                continue;
            }
            double t = 0.0, each[4];
            st = time_layer(b, T, reps, &t, each, err);
            if (st == BATON_OK && r == 0) st = read_x(b, T, probe, got, err);
            if (st != BATON_OK) return st;
            if (r == 0 && memcmp(got, ref, bytes) != 0) {
                differs[i] = true;
                secs[i] = -1.0;
                continue;
            }
            if (t > 0.0 && (secs[i] == 0.0 || t < secs[i])) secs[i] = t;
            for (int p = 0; p < 4; p++)
                if (each[p] > 0.0 && (parts[i][p] == 0.0 || each[p] < parts[i][p])) parts[i][p] = each[p];
        }
    int pick = vk_tune_pick(secs, n, def, TUNE_MARGIN);
    *start = pick;
    *best = secs[pick] > 0.0 ? secs[pick] : 0.0;
    st = kind_select(ctx, kind, pick, err);
    if (pick == def)
        note_kind(out, size, kind, pick, "the default");
    else if (!(secs[def] > 0.0)) /* the default gave no time: no ratio to print */
        note_kind(out, size, kind, pick, "the default %s gave no time", vk_kind_config_name(kind, def));
    else
        note_kind(out, size, kind, pick, "%.2fx as fast as %s", secs[def] / secs[pick],
                  vk_kind_config_name(kind, def));
    for (int i = 0; i < n; i++)
        if (differs[i])
            append(out, size, "; %s %s NOT BITWISE THE DEFAULT'S HERE, not used", kind_names[kind],
                   vk_kind_config_name(kind, i));
    if (st == BATON_OK) st = pick_per_role(b, kind, secs, parts, pick, out, size, best, err);
    return st;
}

const char *vk_backend_path(const vk_backend *b) {
    const vk_context *ctx = &b->ctx;
    if (ctx->coopmat)
        return ctx->coopmat_emulated ? "tensor cores, emulated (BATON_VK_COOPMAT=emulate)"
                                     : "tensor cores (BATON_VK_COOPMAT=1)";
    switch (ctx->coop_mode) {
    case VK_COOP_OFF: return "fp32 (BATON_VK_COOPMAT=0)";
    case VK_COOP_READY: return "fp32 (BATON_VK_COOPMAT=ready: the tensor cores only when asked)";
    case VK_COOP_ON: return "fp32 (BATON_VK_COOPMAT=1, but no tensor cores here)";
    default:
        return ctx->coopmat_ready ? "fp32 (the tensor cores only where tuning finds them faster)"
                                  : "fp32 (no tensor cores)";
    }
}

/* n made-up floats in [-1, 1), the same every time. */
static void fill_noise(float *out, size_t n) {
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (float)(seed >> 40) * 0x1.0p-23f - 1.0f;
    }
}

/* What tuning has timed so far: when its timings began (after the pipelines were built and the
 * device warmed up), and each kind's tokens and best time. */
typedef struct {
    double t0;
    uint32_t tokens[K_KINDS];
    double best[K_KINDS];
} tune_times;


/* Tunes every kind the stage runs on the path in use (kind_tokens), within the time left. */
static baton_status tune_path(vk_backend *b, const vk_buffer *probe, float *ref, float *got,
                              char *out, size_t size, tune_times *tt, baton_error *err) {
    for (int kind = 0; kind < K_KINDS; kind++) {
        uint32_t T = kind_tokens(b, kind);
        if (T == 0) continue;
        tt->tokens[kind] = T;
        if (now_s() - tt->t0 > TUNE_TOTAL_S) {
            note_kind(out, size, kind, *vk_kind_start(&b->ctx, kind), "kept: out of tuning time");
            continue;
        }
        baton_status st = tune_kind(b, kind, T, probe, ref, got, out, size, &tt->best[kind], err);
        if (st != BATON_OK) return st;
    }
    return BATON_OK;
}

/* The tensor cores' results on the guard's inputs must be within this much of the fp32 path's,
 * relative to the largest of each product's outputs. Their products of fp16 halves are exact,
 * so with fp32 sums they differ from it by the order of sums and x's 22 bits: 2e-7 to 5e-7
 * emulated on lavapipe. Tensor cores that truncate their fp32 sums (a bias toward zero of up to
 * about half an ulp of the running sum per 8-term product, some 2e-5 over a segment's 2560
 * terms) pass; x rounded to fp16 alone (about 2e-4, past the fixtures' bounds in runs C and D),
 * fp16 sums or garbage do not. The fixture tests hold the path to the references themselves. */
static const double COOP_TOLERANCE = 1e-4;

/* The floats guard_outputs reads back at T tokens: the ffn.value product's [T][C], att.kvr's
 * three [T][C], att.output's [T][C], ffn.kr's [T][F] and [T][C]. */
enum { GUARD_PARTS = 7 };
static void guard_layout(const vk_backend *b, uint32_t T, size_t at[GUARD_PARTS + 1]) {
    size_t tc = (size_t)T * (size_t)b->C, tf = (size_t)T * (size_t)b->F;
    const size_t sizes[GUARD_PARTS] = {tc, tc, tc, tc, tc, tf, tc};
    at[0] = 0;
    for (int i = 0; i < GUARD_PARTS; i++) at[i + 1] = at[i] + sizes[i];
}

/* The stage's first layer's four products at T tokens, each on made-up inputs of its own (none
 * reads another's output, so no product's error feeds the next and every input is well inside
 * fp16's normal range, where the tensor cores' hi + lo halves keep 22 bits), every epilogue
 * plain, their outputs read back into out (guard_layout). noise: host-visible, [-1, 1) floats,
 * T x max(C, F) of them; back: host-visible, as large as out. */
static baton_status guard_outputs(vk_backend *b, uint32_t T, const vk_buffer *noise,
                                  const vk_buffer *back, float *out, baton_error *err) {
    vk_context *ctx = &b->ctx;
    VkDeviceSize tc = (VkDeviceSize)T * (VkDeviceSize)b->C * 4, tf = (VkDeviceSize)T * (VkDeviceSize)b->F * 4;
    VkDeviceSize S = (VkDeviceSize)b->act_stride * 4, KF = (VkDeviceSize)b->kf_stride * 4;
    size_t at[GUARD_PARTS + 1];
    guard_layout(b, T, at);
    baton_status st = vk_begin(ctx, err);
    if (st != BATON_OK) return st;
    for (VkDeviceSize p = 0; p < 3; p++) vk_copy(ctx, noise, 0, &b->xs, p * S, tc);
    vk_copy(ctx, noise, 0, &b->att, 0, tc);
    vk_copy(ctx, noise, 0, &b->kfr, 0, tf);
    vk_barrier(ctx);
    const int order[4] = {3, 0, 1, 2}; /* ffn.value first: ffn.kr then writes its input */
    for (int o = 0; o < 4; o++) {
        vk_matmul_part parts[3];
        const vk_buffer *x, *y;
        const vk_matrix *w = profile_matrix(b, order[o], parts, &x, &y);
        vk_record_matmul_parts(ctx, w, parts, x, y, NULL, 0, T);
        vk_barrier(ctx);
        if (o == 0) {
            vk_copy(ctx, &b->x, 0, back, at[0] * 4, tc);
            vk_barrier(ctx);
        }
    }
    for (VkDeviceSize p = 0; p < 3; p++) vk_copy(ctx, &b->kvr, p * S, back, at[1 + p] * 4, tc);
    vk_copy(ctx, &b->x, 0, back, at[4] * 4, tc);
    vk_copy(ctx, &b->kfr, 0, back, at[5] * 4, tf);
    vk_copy(ctx, &b->kfr, KF, back, at[6] * 4, tc);
    st = vk_submit_wait(ctx, err);
    if (st == BATON_OK) memcpy(out, back->mapped, at[GUARD_PARTS] * sizeof *out);
    return st;
}

/* The largest of each part's max |got - ref| / max |ref| (NaN where anything is NaN). */
static double guard_diff(const vk_backend *b, uint32_t T, const float *ref, const float *got) {
    size_t at[GUARD_PARTS + 1];
    guard_layout(b, T, at);
    double worst = 0.0;
    for (int p = 0; p < GUARD_PARTS; p++) {
        double diff = 0.0, big = 0.0;
        for (size_t i = at[p]; i < at[p + 1]; i++) {
            double d = fabs((double)got[i] - (double)ref[i]);
            if (!(d <= diff)) diff = d; /* a NaN stays */
            if (fabs((double)ref[i]) > big) big = fabs((double)ref[i]);
        }
        double rel = big > 0.0 ? diff / big : diff;
        if (!(rel <= worst)) worst = rel;
    }
    return worst;
}

/* Holds the tensor cores to the fp32 path at T tokens (guard_outputs on both); the relative
 * difference into *rel. The tensor cores are in use after it. */
static baton_status guard_coop(vk_backend *b, uint32_t T, double *rel, baton_error *err) {
    size_t at[GUARD_PARTS + 1];
    guard_layout(b, T, at);
    size_t n = at[GUARD_PARTS], n_noise = (size_t)T * (size_t)(b->F > b->C ? b->F : b->C);
    vk_buffer noise = {0}, back = {0};
    float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
    baton_status st = ref && got ? vk_buffer_create(&b->ctx, n_noise * 4, true, &noise, err)
                                 : baton_fail(err, BATON_ERR_NOMEM, "out of memory for tuning");
    if (st == BATON_OK) st = vk_buffer_create(&b->ctx, n * 4, true, &back, err);
    if (st == BATON_OK) {
        fill_noise(noise.mapped, n_noise);
        st = guard_outputs(b, T, &noise, &back, ref, err);
    }
    if (st == BATON_OK && !vk_coopmat_use(&b->ctx, true, err)) st = BATON_ERR_UNSUPPORTED;
    if (st == BATON_OK) st = guard_outputs(b, T, &noise, &back, got, err);
    if (st == BATON_OK) *rel = guard_diff(b, T, ref, got);
    vk_buffer_destroy(&b->ctx, &back);
    vk_buffer_destroy(&b->ctx, &noise);
    free(ref);
    free(got);
    return st;
}

/* One layer at one token and at T tokens (T 0: one alone) on the fp32 path ([0]) and on the
 * tensor cores ([1]), each running its tuned configurations, the paths alternating for
 * TUNE_ROUNDS rounds, the fastest of each (0: not timed). The path is chosen on these times,
 * taken side by side: each kind's own times were taken seconds apart, the fp32 kinds' before the
 * tensor cores', and in run E4 on the H100 they put the tensor cores at 0.27x the matvec at one
 * token and 2.90x the fp32 path at 64 where whole steps ran them at 0.81x and 1.31x. The tensor
 * cores are in use before it (guard_coop set them up: pipelines and split x) and after it; it
 * switches paths by the flag alone, where vk_coopmat_use would free the split x at every switch
 * to fp32 and make it again at every switch back. */
static baton_status time_paths(vk_backend *b, uint32_t T, const double est[2], double one[2],
                               double many[2], baton_error *err) {
    vk_context *ctx = &b->ctx;
    assert(ctx->coopmat);
    const uint32_t tokens[2] = {1, T};
    int reps[2]; /* est: a layer's time at each, about (<= 0: unknown) */
    for (int k = 0; k < 2; k++) {
        reps[k] = est[k] > 0.0 && est[k] < TUNE_REP_S ? (int)(TUNE_REP_S / est[k]) + 1 : 1;
        if (reps[k] > LAYER_REPS_MAX) reps[k] = LAYER_REPS_MAX;
    }
    one[0] = one[1] = many[0] = many[1] = 0.0;
    for (int r = 0; r < TUNE_ROUNDS; r++)
        for (int path = 0; path < 2; path++) {
            if (ctx->coopmat != (path == 1)) vk_replays_invalidate(ctx);
            ctx->coopmat = path == 1;
            for (int k = 0; k < 2; k++) {
                if (tokens[k] == 0) continue;
                double t = 0.0, *best = k == 0 ? &one[path] : &many[path];
                baton_status st = time_layer(b, tokens[k], reps[k], &t, NULL, err);
                if (st != BATON_OK) return st;
                if (t > 0.0 && (*best == 0.0 || t < *best)) *best = t;
            }
        }
    return BATON_OK;
}

/* BATON_VK_COOPMAT auto, on a device with the tensor-core path, after the fp32 path's tuning:
 * holds the tensor cores' results to the fp32 path's (guard_coop), tunes their kinds, and keeps
 * them for every matmul when vk_tune_coop_wins says so (else goes back to the fp32 path). */
static baton_status choose_path(vk_backend *b, const vk_buffer *probe, float *ref, float *got,
                                char *out, size_t size, tune_times *tt, baton_error *err) {
    vk_context *ctx = &b->ctx;
    int fp_many = -1; /* the fp32 kind timed at the most tokens, beyond 8 */
    for (int kind = K_B8; kind <= K_B64; kind++)
        if (tt->tokens[kind] > 8 && (fp_many < 0 || tt->tokens[kind] > tt->tokens[fp_many])) fp_many = kind;
    uint32_t T = fp_many >= 0 ? tt->tokens[fp_many] : 1;
    double rel = 0.0;
    baton_error why = {0};
    baton_status st = guard_coop(b, T, &rel, &why);
    if (st == BATON_ERR_UNSUPPORTED) { /* its pipelines did not build: the fp32 path it is */
        append(out, size, "; path: fp32 (%.150s)", why.msg);
        return BATON_OK;
    }
    if (st != BATON_OK) {
        *err = why;
        return st;
    }
    if (!(rel <= COOP_TOLERANCE)) {
        vk_coopmat_use(ctx, false, NULL);
        append(out, size, "; path: fp32 (the tensor cores' results differ from it by %.2g of the "
               "largest, beyond %.0e)", rel, COOP_TOLERANCE);
        return BATON_OK;
    }
    append(out, size, "; tensor cores within %.1g of fp32", rel);
    st = tune_path(b, probe, ref, got, out, size, tt, err);
    if (st != BATON_OK) return st;
    double one[2], many[2];
    const double est[2] = {tt->best[K_MATVEC], fp_many >= 0 ? tt->best[fp_many] : 0.0};
    st = time_paths(b, fp_many >= 0 ? T : 0, est, one, many, err);
    if (st != BATON_OK) return st;
    bool wins = vk_tune_coop_wins(one[0], one[1], many[0], many[1]);
    if (!wins) vk_coopmat_use(ctx, false, NULL);
    append(out, size, "; path: %s (the tensor cores, timed side by side, ", wins ? "tensor cores" : "fp32");
    if (many[0] > 0.0 && many[1] > 0.0)
        append(out, size, "%.2fx as fast at %u tokens (a layer %.3f ms, fp32 %.3f), ", many[0] / many[1],
               T, many[1] * 1e3, many[0] * 1e3);
    if (one[0] > 0.0 && one[1] > 0.0)
        append(out, size, "%.2fx at one (%.3f ms, fp32 %.3f)", one[0] / one[1], one[1] * 1e3, one[0] * 1e3);
    else
        append(out, size, "not timed at one");
    /* the kinds' own times, for a device where they disagree */
    double k_one = tt->best[K_MATVEC], k_one_coop = tt->best[K_COOP_FEW];
    double k_many = fp_many >= 0 ? tt->best[fp_many] : 0.0, k_many_coop = tt->best[K_COOP_MANY];
    if (k_many > 0.0 && k_many_coop > 0.0 && k_one > 0.0 && k_one_coop > 0.0)
        append(out, size, "; tuning's kinds: %.2fx and %.2fx", k_many / k_many_coop, k_one / k_one_coop);
    append(out, size, ")");
    return BATON_OK;
}

/* What the BATON_VK_FUSE_* flags fuse, in words. */
static const char *fuse_name(uint32_t flags) {
    static const char *const names[4] = {"none", "LayerNorms", "WKV", "LayerNorms and WKV"};
    return names[flags & 3];
}

/* "; read ahead: ..." and "; fused: ..." where tuning did not choose them. */
static void prefetch_note(const vk_backend *b, char *out, size_t size) {
    if (b->prefetch_pinned)
        append(out, size, "; read ahead: %u MiB (BATON_VK_PREFETCH)", b->prefetch_mib);
    else
        append(out, size, "; read ahead: none (untuned)");
}

static void fuse_note(const vk_backend *b, char *out, size_t size) {
    if (b->fuse_pinned)
        append(out, size, "; fused: %s (BATON_VK_FUSE)", fuse_name(b->fuse));
    else
        append(out, size, "; fused: none (untuned)");
}

void vk_one_token_notes(const vk_backend *b, char *out, size_t size) {
    prefetch_note(b, out, size);
    fuse_note(b, out, size);
}

/* A setting of one-token steps that tuning chooses by timing whole layers. */
typedef struct {
    uint32_t prefetch_mib;
    uint32_t fuse; /* BATON_VK_FUSE_* */
} one_token_setting;

/* The device time of one layer of a one-token step, the real one (vk_record_layer: the
 * LayerNorms, WKV and the state updates beside the products) in slot 0, under setting `set`: the
 * mean of `reps` layers in a row, walking the stage's layers as a step does, so that each reads
 * ahead the product that really comes next. */
static baton_status time_one_token_layer(vk_backend *b, one_token_setting set, int reps,
                                         double *secs, baton_error *err) {
    vk_context *ctx = &b->ctx;
    baton_seq seq = {.slot = 0, .n_tokens = 1};
    vk_step_info(b, &(baton_step){.n_seqs = 1, .seqs = &seq});
    baton_status st = vk_begin(ctx, err);
    if (st != BATON_OK) return st;
    vk_copy(ctx, &b->up, 0, &b->info, 0, (VkDeviceSize)b->info_words * 4);
    vk_barrier(ctx);
    b->prefetch_mib = set.prefetch_mib;
    b->fuse = set.fuse;
    b->pf_step = set.prefetch_mib > 0;
    b->pf_w = NULL;
    vk_timestamp(ctx, 0);
    for (int r = 0; r < reps; r++) vk_record_layer(b, r % b->n_layers, 1, 1);
    vk_timestamp(ctx, 1);
    b->pf_step = false;
    st = vk_submit_wait(ctx, err);
    *secs = vk_elapsed_s(ctx) / reps;
    return st;
}

/* Times a one-token layer under each of n settings, the fastest of up to TUNE_ROUNDS interleaved
 * rounds (secs[i], 0 where not timed), then resets slot 0, which the timing ran in, to fresh.
 * *rounds: how many ran, 0 when the layer was not timed (*why says why). */
static baton_status time_settings(vk_backend *b, const one_token_setting *sets, int n,
                                  const tune_times *tt, double *secs, int *rounds,
                                  const char **why, baton_error *err) {
    double one = 0.0;
    baton_status st = time_one_token_layer(b, sets[0], 1, &one, err);
    int reps = one > 0.0 && one < TUNE_REP_S ? (int)(TUNE_REP_S / one) + 1 : 1;
    if (reps > 64) reps = 64;
    *rounds = reps * one * n * TUNE_ROUNDS > TUNE_KIND_S ? 1 : TUNE_ROUNDS;
    *why = NULL;
    if (st == BATON_OK &&
        (!(one > 0.0) || now_s() - tt->t0 > TUNE_TOTAL_S || reps * one * n > TUNE_KIND_S)) {
        *why = one > 0.0 ? "out of tuning time" : "no device time";
        *rounds = 0;
    }
    for (int i = 0; i < n; i++) secs[i] = 0.0;
    for (int r = 0; r < *rounds && st == BATON_OK; r++)
        for (int i = 0; i < n && st == BATON_OK; i++) {
            double t = 0.0;
            st = time_one_token_layer(b, sets[i], reps, &t, err);
            if (t > 0.0 && (secs[i] == 0.0 || t < secs[i])) secs[i] = t;
        }
    if (st != BATON_OK) return st;
    st = vk_begin(&b->ctx, err);
    if (st != BATON_OK) return st;
    vk_record_slot_reset(b, 0);
    return vk_submit_wait(&b->ctx, err);
}

/* What one-token products compute themselves (unless BATON_VK_FUSE pins it): their LayerNorms,
 * WKV or both, where the matvec configurations of the products have such twins; whole one-token
 * layers timed each way, and none gives way only to one at least 3% faster. */
static baton_status tune_fuse(vk_backend *b, char *out, size_t size, const tune_times *tt,
                              baton_error *err) {
    if (b->fuse_pinned) {
        fuse_note(b, out, size);
        return BATON_OK;
    }
    b->fuse = 0;
    vk_context *ctx = &b->ctx;
    if (ctx->coopmat) {
        append(out, size, "; fused: none (the tensor-core path)");
        return BATON_OK;
    }
    const vk_layer *ly = &b->layers[0];
    bool ln = vk_matvec_ln_ready(ctx, &ly->att_kvr) || vk_matvec_ln_ready(ctx, &ly->ffn_kr);
    bool wkv = vk_matvec_wkv_ready(ctx, &ly->att_output);
    if (!ln && !wkv) {
        append(out, size, "; fused: none (the matvec %s does not stage x)",
               vk_matvec_configs[vk_kind_config(ctx, VK_KIND_MATVEC, VK_ROLE_ATT_KVR)].name);
        return BATON_OK;
    }
    /* (The read-ahead is still none here, or BATON_VK_PREFETCH's.) */
    one_token_setting sets[4];
    int n = 0;
    for (uint32_t f = 0; f < 4; f++)
        if ((!(f & BATON_VK_FUSE_LN) || ln) && (!(f & BATON_VK_FUSE_WKV) || wkv))
            sets[n++] = (one_token_setting){.prefetch_mib = b->prefetch_mib, .fuse = f};
    double secs[4];
    int rounds = 0;
    const char *why = NULL;
    baton_status st = time_settings(b, sets, n, tt, secs, &rounds, &why, err);
    if (st != BATON_OK) return st;
    if (rounds == 0) {
        append(out, size, "; fused: none (not timed: %s)", why);
        return BATON_OK;
    }
    b->fuse = sets[vk_tune_pick(secs, n, 0, TUNE_MARGIN)].fuse;
    append(out, size, "; fused: %s (", fuse_name(b->fuse));
    const char *sep = "";
    for (int i = 1; i < n; i++)
        if (secs[i] > 0.0 && secs[0] > 0.0) {
            append(out, size, "%s%s %.2fx", sep, fuse_name(sets[i].fuse), secs[0] / secs[i]);
            sep = ", ";
        }
    append(out, size, " as fast a one-token layer as none)");
    return BATON_OK;
}

/* How much to read ahead in one-token steps (unless BATON_VK_PREFETCH pins it), with the fusing
 * already chosen: each amount timed on whole one-token layers; none gives way only to one at
 * least 3% faster. */
static const uint32_t prefetch_mibs[] = {0, 2, 4, 8, 16, 32};
enum { PREFETCH_TRIES = sizeof prefetch_mibs / sizeof prefetch_mibs[0] };

static baton_status tune_prefetch(vk_backend *b, char *out, size_t size, const tune_times *tt,
                                  baton_error *err) {
    if (b->prefetch_pinned) {
        prefetch_note(b, out, size);
        return BATON_OK;
    }
    one_token_setting sets[PREFETCH_TRIES];
    for (int i = 0; i < PREFETCH_TRIES; i++)
        sets[i] = (one_token_setting){.prefetch_mib = prefetch_mibs[i], .fuse = b->fuse};
    double secs[PREFETCH_TRIES];
    int rounds = 0;
    const char *why = NULL;
    baton_status st = time_settings(b, sets, PREFETCH_TRIES, tt, secs, &rounds, &why, err);
    int pick = rounds > 0 ? vk_tune_pick(secs, PREFETCH_TRIES, 0, TUNE_MARGIN) : 0;
    b->prefetch_mib = prefetch_mibs[pick];
    if (st != BATON_OK) return st;
    if (rounds == 0) {
        append(out, size, "; read ahead: none (not timed: %s)", why);
        return BATON_OK;
    }
    if (pick == 0)
        append(out, size, "; read ahead: none (");
    else
        append(out, size, "; read ahead: %u MiB (", prefetch_mibs[pick]);
    /* What the rest of a layer costs beside its products (timed alone, at one token). */
    double products = tt->best[b->ctx.coopmat ? K_COOP_FEW : K_MATVEC];
    if (secs[0] > 0.0 && products > 0.0)
        append(out, size, "a one-token layer %.3f ms, its products alone %.3f ms; ", secs[0] * 1e3,
               products * 1e3);
    const char *sep = "";
    for (int i = 1; i < PREFETCH_TRIES; i++)
        if (secs[i] > 0.0 && secs[0] > 0.0) {
            append(out, size, "%s%u MiB %.2fx", sep, prefetch_mibs[i], secs[0] / secs[i]);
            sep = ", ";
        }
    append(out, size, " as fast a one-token layer as none)");
    return BATON_OK;
}

baton_status vk_backend_tune(vk_backend *b, baton_error *err) {
    vk_context *ctx = &b->ctx;
    if (ctx->queries == VK_NULL_HANDLE) {
        snprintf(b->tuning, sizeof b->tuning, "not tuned: the device's queue has no timestamps; "
                 "path: %s", vk_backend_path(b));
        vk_one_token_notes(b, b->tuning, sizeof b->tuning);
        return BATON_OK;
    }
    if (b->n_layers == 0) {
        snprintf(b->tuning, sizeof b->tuning, "not tuned: the stage has no layers; path: %s",
                 vk_backend_path(b));
        vk_one_token_notes(b, b->tuning, sizeof b->tuning);
        return BATON_OK;
    }
    double t0 = now_s();
    /* The same made-up inputs for every configuration (xk, xv, xr and the time mix's output:
     * no timing depends on leftover bits, and results can be compared), and room to read the
     * results back. */
    uint32_t most = 1; /* the most tokens any kind is timed at (either path's) */
    for (int kind = 0; kind < K_KINDS; kind++)
        if (kind_tokens_on_path(b, kind) > most) most = kind_tokens_on_path(b, kind);
    size_t bytes = (size_t)most * (size_t)b->C * sizeof(float);
    vk_buffer probe = {0};
    float *ref = malloc(bytes), *got = malloc(bytes);
    baton_status st = ref && got ? vk_buffer_create(ctx, bytes, true, &probe, err)
                                 : baton_fail(err, BATON_ERR_NOMEM, "out of memory for tuning");
    if (st == BATON_OK) {
        fill_noise(probe.mapped, bytes / sizeof(float));
        st = vk_begin(ctx, err);
    }
    if (st == BATON_OK) {
        for (uint32_t p = 0; p < 3; p++) vk_copy(ctx, &probe, 0, &b->xs, (VkDeviceSize)p * b->act_stride * 4, bytes);
        vk_copy(ctx, &probe, 0, &b->att, 0, bytes);
        vk_barrier(ctx);
        st = vk_submit_wait(ctx, err);
    }
    char chose[sizeof b->tuning] = "";
    tune_times tt = {.t0 = t0};
    if (st == BATON_OK) st = prebuild(b, err);
    if (st == BATON_OK) st = warm_up(b, err);
    /* TUNE_TOTAL_S counts from here: building every configuration's pipeline (the driver
     * compiles each as it is made) must not leave the tensor cores' kinds untimed. "tuned in"
     * counts it all. */
    tt.t0 = now_s();
    st = st == BATON_OK ? tune_path(b, &probe, ref, got, chose, sizeof chose, &tt, err) : st;
    if (st == BATON_OK && !ctx->coopmat && ctx->coopmat_ready && ctx->coop_mode == VK_COOP_AUTO)
        st = choose_path(b, &probe, ref, got, chose, sizeof chose, &tt, err);
    else if (st == BATON_OK)
        append(chose, sizeof chose, "; path: %s", vk_backend_path(b));
    if (st == BATON_OK) st = vk_kernels_reset(ctx, err);
    if (st == BATON_OK) st = tune_fuse(b, chose, sizeof chose, &tt, err);
    if (st == BATON_OK) st = tune_prefetch(b, chose, sizeof chose, &tt, err);
    vk_buffer_destroy(ctx, &probe);
    free(ref);
    free(got);
    if (st != BATON_OK) return st;
    snprintf(b->tuning, sizeof b->tuning, "tuned in %.2f s: %s", now_s() - t0, chose);
    return BATON_OK;
}
