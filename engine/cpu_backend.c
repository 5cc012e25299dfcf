/* The CPU reference: RWKV-4 in plain float32 C, following the published math (the RWKV-LM
 * repository's RWKV_v4 inference code, as rwkv.cpp implements it). Weights stay in the file's
 * dtype and are widened row by row. A step's sequences run together in groups of up to `chunk`
 * tokens (a piece of each sequence), so every product reads each weight row once for all the
 * group's tokens, and its rows are split over a pool of threads. Each output is one dot product
 * in one fixed order whatever the group or the threads, so a sequence's results are bitwise the
 * same alone, in any company and on any number of threads. It is the reference for the Vulkan
 * engine and the engine where there is no GPU. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "thread_pool.h"

enum { CHUNK_TOKENS_MAX = 64 }; /* tokens processed together */
/* A product smaller than this (weights x tokens) runs on the calling thread alone: waking the
 * pool costs more than it saves. */
enum { POOL_MIN_MACS = 1 << 20 };

/* T consecutive tokens of one sequence, rows [at, at + T) of a group's workspace. */
typedef struct {
    float *state;          /* the slot's [n_layers][5][C] */
    int at, T;
    const int32_t *tokens; /* with embedding: [T] */
    const float *x_in;     /* without: [T][C] */
    float *x_out;          /* [T][C] or NULL */
    int rows;              /* logits rows wanted: 0, 1 (the last token's) or T */
    float *logits;         /* [rows][V] in the step's output, or NULL (sampled only) */
    int sample;            /* the sequence's index in the step when it samples now, else -1 */
} piece;

typedef struct {
    baton_backend base;
    int n_layers, C, F, V, chunk;
    baton_pool *pool;
    float *slots;        /* [n_slots][n_layers][5][C] */
    uint32_t *counts;    /* [n_slots][V] generated-token counts, with a head */
    int *done;           /* [max_seqs] tokens of each sequence already run in this step */
    piece *pieces;       /* [chunk] the group being run */
    /* Workspace for one group. */
    float *x;            /* [chunk][C] residual stream */
    float *xx;           /* [chunk][C] normalized input of a block */
    float *xk, *xv, *xr; /* [chunk][C] token-shifted mixes */
    float *k, *v, *r;    /* [chunk][C] */
    float *ffk;          /* [chunk][F] */
    float *out;          /* [chunk][C] */
    bool x86;            /* matrix products on the AVX2 + F16C kernels (the same results) */
    float *rowbuf;       /* [threads][4][max(C, F)] weight rows widened to float32 per thread */
    size_t row_len;      /* max(C, F) */
    float *logits;       /* [chunk][V] */
    void *sample_scratch;
} cpu_backend;

static float f16_table[65536];
static pthread_once_t f16_table_once = PTHREAD_ONCE_INIT;

static void f16_table_fill(void) {
    for (uint32_t h = 0; h < 65536; h++) f16_table[h] = baton_f16_to_f32((uint16_t)h);
}

static void row_widen(float *dst, const baton_matrix *w, int64_t row) {
    size_t n = (size_t)w->cols, at = (size_t)row * n;
    switch (w->dtype) {
    case BATON_F32: memcpy(dst, (const float *)w->data + at, n * sizeof(float)); break;
    case BATON_F16: {
        const uint16_t *src = (const uint16_t *)w->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = f16_table[src[i]];
        break;
    }
    case BATON_BF16: {
        const uint16_t *src = (const uint16_t *)w->data + at;
        for (size_t i = 0; i < n; i++) dst[i] = baton_bf16_to_f32(src[i]);
        break;
    }
    }
}

static float dot(const float *a, const float *b, int n) {
    /* Eight partial sums: vectorizable, and a fixed order so results repeat exactly. */
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    float tail = 0.0f;
    for (; i < n; i++) tail += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + tail;
}

/* x86-64 kernels for CPUs with AVX2 and F16C (2013 on): fp16 rows widened 8 at a time, and
 * four dot products at once, each with its 8 partial sums in the lanes of one register. Every
 * lane gets the same multiplies and adds in the same order as dot()'s s[j], and the lanes and
 * the tail are added as dot() adds them (no fused multiply-add), so the results are bitwise
 * dot()'s: only the speed depends on the CPU. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define CPU_X86_KERNELS 1

__attribute__((target("avx2,f16c"))) static void row_widen_x86(float *dst, const baton_matrix *w,
                                                               int64_t row) {
    if (w->dtype != BATON_F16) {
        row_widen(dst, w, row);
        return;
    }
    size_t n = (size_t)w->cols, i = 0;
    const uint16_t *src = (const uint16_t *)w->data + (size_t)row * n;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = f16_table[src[i]];
}

__attribute__((target("avx2"))) static float lanes_sum(__m256 s, float tail) {
    float v[8];
    _mm256_storeu_ps(v, s);
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7])) + tail;
}

/* out[k] = dot(a[k], b[k], n) for k < 4, where a[k] (one_a) or b[k] (one_b) is the same for
 * every k and loaded once. */
__attribute__((target("avx2"))) static inline void dot4_x86(float *out, const float *const a[4],
                                                            const float *const b[4], int n,
                                                            bool one_a, bool one_b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a0 = _mm256_loadu_ps(a[0] + i), b0 = _mm256_loadu_ps(b[0] + i);
        __m256 a1 = one_a ? a0 : _mm256_loadu_ps(a[1] + i), b1 = one_b ? b0 : _mm256_loadu_ps(b[1] + i);
        __m256 a2 = one_a ? a0 : _mm256_loadu_ps(a[2] + i), b2 = one_b ? b0 : _mm256_loadu_ps(b[2] + i);
        __m256 a3 = one_a ? a0 : _mm256_loadu_ps(a[3] + i), b3 = one_b ? b0 : _mm256_loadu_ps(b[3] + i);
        s0 = _mm256_add_ps(s0, _mm256_mul_ps(a0, b0));
        s1 = _mm256_add_ps(s1, _mm256_mul_ps(a1, b1));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(a2, b2));
        s3 = _mm256_add_ps(s3, _mm256_mul_ps(a3, b3));
    }
    float tail[4] = {0};
    for (int k = 0; k < 4; k++)
        for (int j = i; j < n; j++) tail[k] += a[k][j] * b[k][j];
    out[0] = lanes_sum(s0, tail[0]);
    out[1] = lanes_sum(s1, tail[1]);
    out[2] = lanes_sum(s2, tail[2]);
    out[3] = lanes_sum(s3, tail[3]);
}

/* matmul_part's rows on these kernels: at one token four rows at a time against x, at more
 * each row against four tokens at a time. */
__attribute__((target("avx2,f16c"))) static void matmul_rows_x86(float *y, const baton_matrix *w,
                                                                 const float *x, int T, int begin,
                                                                 int end, float *buf) {
    int rows = (int)w->rows, cols = (int)w->cols;
    int i = begin;
    if (T == 1) {
        for (; i + 4 <= end; i += 4) {
            const float *a[4], *b[4] = {x, x, x, x};
            for (int k = 0; k < 4; k++) {
                row_widen_x86(buf + (size_t)k * cols, w, i + k);
                a[k] = buf + (size_t)k * cols;
            }
            dot4_x86(y + i, a, b, cols, false, true);
        }
    }
    for (; i < end; i++) {
        row_widen_x86(buf, w, i);
        int t = 0;
        for (; t + 4 <= T; t += 4) {
            const float *a[4] = {buf, buf, buf, buf}, *b[4];
            float out[4];
            for (int k = 0; k < 4; k++) b[k] = x + (size_t)(t + k) * cols;
            dot4_x86(out, a, b, cols, true, false);
            for (int k = 0; k < 4; k++) y[(size_t)(t + k) * rows + i] = out[k];
        }
        for (; t < T; t++) y[(size_t)t * rows + i] = dot(buf, x + (size_t)t * cols, cols);
    }
}
#endif

/* y[t] = W x[t] for t < T; W is (rows, cols), x is [T][cols], y is [T][rows]. Part `part` of
 * `parts` takes a contiguous range of rows with its own widening buffer. */
typedef struct {
    float *y;
    const baton_matrix *w;
    const float *x;
    int T;
    bool x86;       /* the AVX2 + F16C kernels */
    float *rowbuf;  /* [parts][ROWS_BUFFERED][row_len] */
    size_t row_len;
} matmul_job;

enum { ROWS_BUFFERED = 4 }; /* rows widened at once per thread */

static void matmul_part(void *arg, int part, int parts) {
    const matmul_job *j = arg;
    int rows = (int)j->w->rows, cols = (int)j->w->cols;
    int begin = (int)((int64_t)rows * part / parts), end = (int)((int64_t)rows * (part + 1) / parts);
    float *row = j->rowbuf + (size_t)part * ROWS_BUFFERED * j->row_len;
#ifdef CPU_X86_KERNELS
    if (j->x86) {
        matmul_rows_x86(j->y, j->w, j->x, j->T, begin, end, row);
        return;
    }
#endif
    for (int i = begin; i < end; i++) {
        row_widen(row, j->w, i);
        for (int t = 0; t < j->T; t++)
            j->y[(size_t)t * rows + i] = dot(row, j->x + (size_t)t * cols, cols);
    }
}

static void matmul(cpu_backend *cb, float *y, const baton_matrix *w, const float *x, int T) {
    matmul_job job = {y, w, x, T, cb->x86, cb->rowbuf, cb->row_len};
    if (w->rows * w->cols * T < POOL_MIN_MACS) matmul_part(&job, 0, 1);
    else baton_pool_run(cb->pool, matmul_part, &job);
}

static void layer_norm(float *out, const float *in, const float *w, const float *b, int C) {
    float mean = 0.0f;
    for (int i = 0; i < C; i++) mean += in[i];
    mean /= (float)C;
    float var = 0.0f;
    for (int i = 0; i < C; i++) var += (in[i] - mean) * (in[i] - mean);
    var /= (float)C;
    float inv = 1.0f / sqrtf(var + 1e-5f);
    for (int i = 0; i < C; i++) out[i] = (in[i] - mean) * inv * w[i] + b[i];
}

static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

/* mix[t] = xx[t] * m + prev * (1 - m), where prev is xx[t-1], or the state's last input at t = 0. */
static void token_shift(float *mix, const float *xx, const float *last, const float *m, int T,
                        int C) {
    for (int t = 0; t < T; t++) {
        const float *prev = t == 0 ? last : xx + (size_t)(t - 1) * C;
        const float *cur = xx + (size_t)t * C;
        float *o = mix + (size_t)t * C;
        for (int i = 0; i < C; i++) o[i] = cur[i] * m[i] + prev[i] * (1.0f - m[i]);
    }
}

/* The WKV recurrence, numerically stable: aa and bb are scaled by exp(-pp). For each channel,
 * sequentially over the chunk, wkv[t] overwrites v[t]. */
static void wkv(float *v, const float *k, float *aa, float *bb, float *pp, const float *u,
                const float *w, int T, int C) {
    for (int i = 0; i < C; i++) {
        float a = aa[i], b = bb[i], p = pp[i];
        for (int t = 0; t < T; t++) {
            float kt = k[(size_t)t * C + i], vt = v[(size_t)t * C + i];
            float ww = u[i] + kt;         // ww = u + k
            float qq = fmaxf(p, ww);      // qq = max(pp, ww)
            float e1 = expf(p - qq), e2 = expf(ww - qq);
            v[(size_t)t * C + i] = (e1 * a + e2 * vt) / (e1 * b + e2); // wkv = a / b
            ww = p + w[i];                // ww = pp + w, w = -exp(time_decay)
            qq = fmaxf(ww, kt);           // qq = max(ww, k)
            e1 = expf(ww - qq);
            e2 = expf(kt - qq);
            a = e1 * a + e2 * vt;         // aa = e1 aa + e2 v
            b = e1 * b + e2;              // bb = e1 bb + e2
            p = qq;                       // pp = qq
        }
        aa[i] = a;
        bb[i] = b;
        pp[i] = p;
    }
}

/* The piece's state rows of layer l (counted from the stage's first layer). */
static float *piece_state(const cpu_backend *cb, const piece *p, int l, int row) {
    return p->state + ((size_t)l * BATON_STATE_ROWS + (size_t)row) * (size_t)cb->C;
}

static void time_mixing(cpu_backend *cb, const baton_layer *L, int l, const piece *ps, int n,
                        int T) {
    int C = cb->C;
    size_t all = (size_t)T * C;
    for (int t = 0; t < T; t++)
        layer_norm(cb->xx + (size_t)t * C, cb->x + (size_t)t * C, L->ln1_w, L->ln1_b, C);
    for (const piece *p = ps; p < ps + n; p++) {
        size_t at = (size_t)p->at * C;
        float *att_xx = piece_state(cb, p, l, BATON_ATT_XX);
        token_shift(cb->xk + at, cb->xx + at, att_xx, L->att_time_mix_k, p->T, C);
        token_shift(cb->xv + at, cb->xx + at, att_xx, L->att_time_mix_v, p->T, C);
        token_shift(cb->xr + at, cb->xx + at, att_xx, L->att_time_mix_r, p->T, C);
        memcpy(att_xx, cb->xx + at + (size_t)(p->T - 1) * C, (size_t)C * sizeof(float));
    }
    matmul(cb, cb->r, &L->att_receptance, cb->xr, T);
    matmul(cb, cb->k, &L->att_key, cb->xk, T);
    matmul(cb, cb->v, &L->att_value, cb->xv, T);
    for (const piece *p = ps; p < ps + n; p++) {
        size_t at = (size_t)p->at * C;
        wkv(cb->v + at, cb->k + at, piece_state(cb, p, l, BATON_ATT_AA),
            piece_state(cb, p, l, BATON_ATT_BB), piece_state(cb, p, l, BATON_ATT_PP),
            L->att_time_first, L->att_time_decay, p->T, C);
    }
    for (size_t i = 0; i < all; i++) cb->r[i] = sigmoid(cb->r[i]) * cb->v[i]; // r * wkv
    matmul(cb, cb->out, &L->att_output, cb->r, T);
    for (size_t i = 0; i < all; i++) cb->x[i] += cb->out[i];
}

static void channel_mixing(cpu_backend *cb, const baton_layer *L, int l, const piece *ps, int n,
                           int T) {
    int C = cb->C;
    size_t all = (size_t)T * C, all_f = (size_t)T * cb->F;
    for (int t = 0; t < T; t++)
        layer_norm(cb->xx + (size_t)t * C, cb->x + (size_t)t * C, L->ln2_w, L->ln2_b, C);
    for (const piece *p = ps; p < ps + n; p++) {
        size_t at = (size_t)p->at * C;
        float *ffn_xx = piece_state(cb, p, l, BATON_FFN_XX);
        token_shift(cb->xk + at, cb->xx + at, ffn_xx, L->ffn_time_mix_k, p->T, C);
        token_shift(cb->xr + at, cb->xx + at, ffn_xx, L->ffn_time_mix_r, p->T, C);
        memcpy(ffn_xx, cb->xx + at + (size_t)(p->T - 1) * C, (size_t)C * sizeof(float));
    }
    matmul(cb, cb->r, &L->ffn_receptance, cb->xr, T);
    matmul(cb, cb->ffk, &L->ffn_key, cb->xk, T);
    for (size_t i = 0; i < all_f; i++) {
        float k = cb->ffk[i] > 0.0f ? cb->ffk[i] : 0.0f;
        cb->ffk[i] = k * k; // square(relu(k))
    }
    matmul(cb, cb->out, &L->ffn_value, cb->ffk, T);
    for (size_t i = 0; i < all; i++) cb->x[i] += sigmoid(cb->r[i]) * cb->out[i];
}

/* Runs a group: n pieces of distinct sequences, T tokens in all, through the stage; then the
 * head on the rows the pieces want, copied out and sampled. */
static void group_forward(cpu_backend *cb, const baton_step *s, const piece *ps, int n, int T) {
    const baton_model *m = cb->base.model;
    const baton_stage_config *cfg = &cb->base.config;
    int C = cb->C, V = cb->V;
    for (const piece *p = ps; p < ps + n; p++) {
        float *x = cb->x + (size_t)p->at * C;
        if (!cfg->with_embedding) {
            memcpy(x, p->x_in, (size_t)p->T * C * sizeof(float));
            continue;
        }
        for (int t = 0; t < p->T; t++) {
            row_widen(cb->rowbuf, &m->emb, p->tokens[t]);
            layer_norm(x + (size_t)t * C, cb->rowbuf, m->ln0_w, m->ln0_b, C); // x = ln0(emb[token])
        }
    }
    for (int l = cfg->layer_begin; l < cfg->layer_end; l++) {
        time_mixing(cb, &m->layers[l], l - cfg->layer_begin, ps, n, T);
        channel_mixing(cb, &m->layers[l], l - cfg->layer_begin, ps, n, T);
    }
    int rows = 0;
    for (const piece *p = ps; p < ps + n; p++) {
        if (p->x_out != NULL)
            memcpy(p->x_out, cb->x + (size_t)p->at * C, (size_t)p->T * C * sizeof(float));
        for (int t = p->T - p->rows; t < p->T; t++, rows++)
            layer_norm(cb->xx + (size_t)rows * C, cb->x + (size_t)(p->at + t) * C, m->ln_out_w,
                       m->ln_out_b, C);
    }
    if (rows == 0) return;
    matmul(cb, cb->logits, &m->head, cb->xx, rows);
    const float *row = cb->logits;
    for (const piece *p = ps; p < ps + n; row += (size_t)p->rows * V, p++) {
        if (p->logits != NULL) memcpy(p->logits, row, (size_t)p->rows * V * sizeof(float));
        if (p->sample < 0) continue;
        uint32_t *counts = cb->counts + (size_t)s->seqs[p->sample].slot * V;
        int32_t t = baton_sample(row + (size_t)(p->rows - 1) * V, V, &s->sampling[p->sample],
                                 counts, cb->sample_scratch);
        counts[t]++;
        s->tokens_out[p->sample] = t;
    }
}

static float *slot_state(cpu_backend *cb, int slot) {
    return cb->slots + (size_t)slot * cb->n_layers * BATON_STATE_ROWS * cb->C;
}

/* Cuts the step into groups: each pass over the sequences takes the next piece of every
 * sequence not yet done (at most chunk tokens of it), so a group never holds two pieces of one
 * sequence and a sequence's pieces run in order; a group runs when the next piece would not fit. */
static baton_status cpu_step(baton_backend *b, const baton_step *s, baton_error *err) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_status st = baton_step_check(b, s, err);
    if (st != BATON_OK) return st;
    int C = cb->C, V = cb->V;
    bool want_logits = s->logits != NULL || s->sampling != NULL;
    memset(cb->done, 0, (size_t)s->n_seqs * sizeof *cb->done);
    for (bool more = true; more;) {
        more = false;
        int n = 0, T = 0;
        size_t tok = 0, row = 0; /* the sequence's first token and logits row in the step */
        for (int i = 0; i < s->n_seqs; i++) {
            const baton_seq *q = &s->seqs[i];
            int done = cb->done[i], left = q->n_tokens - done;
            size_t first_tok = tok, first_row = row;
            tok += (size_t)q->n_tokens;
            row += s->logits_all_tokens ? (size_t)q->n_tokens : 1;
            if (left == 0) continue;
            int take = left < cb->chunk ? left : cb->chunk;
            if (T + take > cb->chunk) {
                group_forward(cb, s, cb->pieces, n, T);
                n = T = 0;
            }
            bool last = take == left;
            piece *p = &cb->pieces[n++];
            size_t at = first_tok + (size_t)done;
            *p = (piece){
                .state = slot_state(cb, q->slot), .at = T, .T = take,
                .tokens = s->tokens ? s->tokens + at : NULL,
                .x_in = s->x_in ? s->x_in + at * C : NULL,
                .x_out = s->x_out ? s->x_out + at * C : NULL,
                .rows = !want_logits ? 0 : s->logits_all_tokens ? take : last ? 1 : 0,
                .sample = last && s->sampling != NULL ? i : -1,
            };
            if (s->logits != NULL && p->rows > 0)
                p->logits = s->logits + (first_row + (s->logits_all_tokens ? (size_t)done : 0)) * V;
            T += take;
            cb->done[i] += take;
            more |= !last;
        }
        if (n > 0) group_forward(cb, s, cb->pieces, n, T);
    }
    return BATON_OK;
}

static baton_status cpu_slot_check(cpu_backend *cb, int slot, baton_error *err) {
    if (slot < 0 || slot >= cb->base.config.n_slots)
        return baton_fail(err, BATON_ERR_ARG, "slot %d is outside [0, %d)", slot,
                          cb->base.config.n_slots);
    return BATON_OK;
}

static baton_status cpu_slot_reset(baton_backend *b, int slot, baton_error *err) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_status st = cpu_slot_check(cb, slot, err);
    if (st != BATON_OK) return st;
    baton_state_init(slot_state(cb, slot), cb->n_layers, cb->C);
    if (cb->counts != NULL) memset(cb->counts + (size_t)slot * cb->V, 0, (size_t)cb->V * 4);
    return BATON_OK;
}

static size_t slot_bytes(const cpu_backend *cb) {
    return (size_t)cb->n_layers * BATON_STATE_ROWS * cb->C * sizeof(float);
}

static baton_status cpu_slot_read(baton_backend *b, int slot, float *state, baton_error *err) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_status st = cpu_slot_check(cb, slot, err);
    if (st == BATON_OK) memcpy(state, slot_state(cb, slot), slot_bytes(cb));
    return st;
}

static baton_status cpu_slot_write(baton_backend *b, int slot, const float *state,
                                   baton_error *err) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_status st = cpu_slot_check(cb, slot, err);
    if (st == BATON_OK) memcpy(slot_state(cb, slot), state, slot_bytes(cb));
    return st;
}

static void cpu_free(baton_backend *b) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_pool_free(cb->pool);
    free(cb->slots);
    free(cb->counts);
    free(cb->done);
    free(cb->pieces);
    free(cb->x);
    free(cb->xx);
    free(cb->xk);
    free(cb->xv);
    free(cb->xr);
    free(cb->k);
    free(cb->v);
    free(cb->r);
    free(cb->ffk);
    free(cb->out);
    free(cb->rowbuf);
    free(cb->logits);
    free(cb->sample_scratch);
    free(cb);
}

static const struct baton_backend_ops cpu_ops = {
    .step = cpu_step,
    .slot_reset = cpu_slot_reset,
    .slot_read = cpu_slot_read,
    .slot_write = cpu_slot_write,
    .free = cpu_free,
};

baton_status baton_cpu_backend_new_threads(const baton_model *model,
                                           const baton_stage_config *config, int threads,
                                           baton_backend **out, baton_error *err) {
    *out = NULL;
    baton_status st = baton_stage_config_check(model, config, err);
    if (st != BATON_OK) return st;
    pthread_once(&f16_table_once, f16_table_fill);
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (cb == NULL) return baton_fail(err, BATON_ERR_NOMEM, "cpu backend: out of memory");
    cb->base.ops = &cpu_ops;
    cb->base.name = "cpu";
    cb->base.model = model;
    cb->base.config = *config;
    cb->n_layers = config->layer_end - config->layer_begin;
    cb->C = model->n_embd;
    cb->F = model->n_ffn;
    cb->V = model->n_vocab;
    cb->chunk = config->max_tokens < CHUNK_TOKENS_MAX ? config->max_tokens : CHUNK_TOKENS_MAX;
    st = baton_pool_new(threads, &cb->pool, err);
    if (st != BATON_OK) {
        free(cb);
        return st;
    }
    size_t C = (size_t)cb->C, chunk = (size_t)cb->chunk, V = (size_t)cb->V;
    cb->row_len = C > (size_t)cb->F ? C : (size_t)cb->F;
#ifdef CPU_X86_KERNELS
    const char *simd = getenv("BATON_CPU_SIMD");
    cb->x86 = baton_cpu_avx2_f16c() && !(simd != NULL && strcmp(simd, "0") == 0);
#endif
    cb->slots = malloc((size_t)config->n_slots * slot_bytes(cb) + 1);
    cb->done = malloc((size_t)config->max_seqs * sizeof *cb->done);
    cb->pieces = malloc(chunk * sizeof *cb->pieces);
    cb->x = malloc(chunk * C * sizeof(float));
    cb->xx = malloc(chunk * C * sizeof(float));
    cb->xk = malloc(chunk * C * sizeof(float));
    cb->xv = malloc(chunk * C * sizeof(float));
    cb->xr = malloc(chunk * C * sizeof(float));
    cb->k = malloc(chunk * C * sizeof(float));
    cb->v = malloc(chunk * C * sizeof(float));
    cb->r = malloc(chunk * C * sizeof(float));
    cb->ffk = malloc(chunk * (size_t)cb->F * sizeof(float));
    cb->out = malloc(chunk * C * sizeof(float));
    cb->rowbuf = malloc((size_t)threads * ROWS_BUFFERED * cb->row_len * sizeof(float));
    bool ok = cb->slots && cb->done && cb->pieces && cb->x && cb->xx && cb->xk && cb->xv &&
              cb->xr && cb->k && cb->v && cb->r && cb->ffk && cb->out && cb->rowbuf;
    if (config->with_head) {
        cb->counts = calloc((size_t)config->n_slots * V, sizeof(uint32_t));
        cb->logits = malloc(chunk * V * sizeof(float));
        cb->sample_scratch = malloc(baton_sample_scratch_bytes(cb->V));
        ok = ok && cb->counts && cb->logits && cb->sample_scratch;
    }
    if (!ok) {
        cpu_free(&cb->base);
        return baton_fail(err, BATON_ERR_NOMEM, "cpu backend: out of memory for %d slots",
                          config->n_slots);
    }
    for (int s = 0; s < config->n_slots; s++) baton_state_init(slot_state(cb, s), cb->n_layers, cb->C);
    *out = &cb->base;
    return BATON_OK;
}

baton_status baton_cpu_backend_new(const baton_model *model, const baton_stage_config *config,
                                   baton_backend **out, baton_error *err) {
    int threads = 1;
    baton_status st = baton_pool_threads_default(&threads, err);
    if (st != BATON_OK) return st;
    return baton_cpu_backend_new_threads(model, config, threads, out, err);
}
