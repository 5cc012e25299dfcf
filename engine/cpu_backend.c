/* The CPU reference: RWKV-4 in plain float32 C, following the published math (the RWKV-LM
 * repository's RWKV_v4 inference code, as rwkv.cpp implements it). Weights stay in the file's
 * dtype and are widened row by row; every product reads each weight row once for all the tokens
 * of a chunk. It is the reference for the Vulkan engine and the fallback where there is none. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

enum { CHUNK_TOKENS_MAX = 64 }; /* tokens of one sequence processed together */

typedef struct {
    baton_backend base;
    int n_layers, C, F, V, chunk;
    float *slots;        /* [n_slots][n_layers][5][C] */
    uint32_t *counts;    /* [n_slots][V] generated-token counts, with a head */
    /* Workspace for one chunk of one sequence. */
    float *x;            /* [chunk][C] residual stream */
    float *xx;           /* [chunk][C] normalized input of a block */
    float *xk, *xv, *xr; /* [chunk][C] token-shifted mixes */
    float *k, *v, *r;    /* [chunk][C] */
    float *ffk;          /* [chunk][F] */
    float *out;          /* [chunk][C] */
    float *row;          /* [max(C, F, V)] one weight row widened to float32 */
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

/* y[t] = W x[t] for t < T; W is (rows, cols), x is [T][cols], y is [T][rows]. */
static void matmul(float *y, const baton_matrix *w, const float *x, int T, float *row) {
    int rows = (int)w->rows, cols = (int)w->cols;
    for (int i = 0; i < rows; i++) {
        row_widen(row, w, i);
        for (int t = 0; t < T; t++) y[(size_t)t * rows + i] = dot(row, x + (size_t)t * cols, cols);
    }
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

static void time_mixing(cpu_backend *cb, const baton_layer *L, float *state, int T) {
    int C = cb->C;
    size_t n = (size_t)T * C;
    float *att_xx = state + BATON_ATT_XX * C, *aa = state + BATON_ATT_AA * C;
    float *bb = state + BATON_ATT_BB * C, *pp = state + BATON_ATT_PP * C;
    for (int t = 0; t < T; t++)
        layer_norm(cb->xx + (size_t)t * C, cb->x + (size_t)t * C, L->ln1_w, L->ln1_b, C);
    token_shift(cb->xk, cb->xx, att_xx, L->att_time_mix_k, T, C);
    token_shift(cb->xv, cb->xx, att_xx, L->att_time_mix_v, T, C);
    token_shift(cb->xr, cb->xx, att_xx, L->att_time_mix_r, T, C);
    memcpy(att_xx, cb->xx + (size_t)(T - 1) * C, (size_t)C * sizeof(float));
    matmul(cb->r, &L->att_receptance, cb->xr, T, cb->row);
    matmul(cb->k, &L->att_key, cb->xk, T, cb->row);
    matmul(cb->v, &L->att_value, cb->xv, T, cb->row);
    wkv(cb->v, cb->k, aa, bb, pp, L->att_time_first, L->att_time_decay, T, C);
    for (size_t i = 0; i < n; i++) cb->r[i] = sigmoid(cb->r[i]) * cb->v[i]; // r * wkv
    matmul(cb->out, &L->att_output, cb->r, T, cb->row);
    for (size_t i = 0; i < n; i++) cb->x[i] += cb->out[i];
}

static void channel_mixing(cpu_backend *cb, const baton_layer *L, float *state, int T) {
    int C = cb->C;
    size_t n = (size_t)T * C, nf = (size_t)T * cb->F;
    float *ffn_xx = state + BATON_FFN_XX * C;
    for (int t = 0; t < T; t++)
        layer_norm(cb->xx + (size_t)t * C, cb->x + (size_t)t * C, L->ln2_w, L->ln2_b, C);
    token_shift(cb->xk, cb->xx, ffn_xx, L->ffn_time_mix_k, T, C);
    token_shift(cb->xr, cb->xx, ffn_xx, L->ffn_time_mix_r, T, C);
    memcpy(ffn_xx, cb->xx + (size_t)(T - 1) * C, (size_t)C * sizeof(float));
    matmul(cb->r, &L->ffn_receptance, cb->xr, T, cb->row);
    matmul(cb->ffk, &L->ffn_key, cb->xk, T, cb->row);
    for (size_t i = 0; i < nf; i++) {
        float k = cb->ffk[i] > 0.0f ? cb->ffk[i] : 0.0f;
        cb->ffk[i] = k * k; // square(relu(k))
    }
    matmul(cb->out, &L->ffn_value, cb->ffk, T, cb->row);
    for (size_t i = 0; i < n; i++) cb->x[i] += sigmoid(cb->r[i]) * cb->out[i];
}

/* Runs one chunk of T tokens of one sequence through the stage; the chunk's input is already in
 * cb->x (hidden) or comes from tokens. logits_out gets T rows when all rows are wanted, else the
 * last token's row (NULL: none). */
static void chunk_forward(cpu_backend *cb, float *slot_state, const int32_t *tokens,
                          const float *x_in, float *x_out, float *logits_out, bool all_rows,
                          int T) {
    const baton_model *m = cb->base.model;
    const baton_stage_config *cfg = &cb->base.config;
    int C = cb->C;
    if (cfg->with_embedding) {
        for (int t = 0; t < T; t++) {
            row_widen(cb->row, &m->emb, tokens[t]);
            layer_norm(cb->x + (size_t)t * C, cb->row, m->ln0_w, m->ln0_b, C); // x = ln0(emb[token])
        }
    } else {
        memcpy(cb->x, x_in, (size_t)T * C * sizeof(float));
    }
    for (int l = cfg->layer_begin; l < cfg->layer_end; l++) {
        float *state = slot_state + (size_t)(l - cfg->layer_begin) * BATON_STATE_ROWS * C;
        time_mixing(cb, &m->layers[l], state, T);
        channel_mixing(cb, &m->layers[l], state, T);
    }
    if (x_out != NULL) memcpy(x_out, cb->x, (size_t)T * C * sizeof(float));
    if (logits_out == NULL) return;
    int first = all_rows ? 0 : T - 1, rows = T - first;
    for (int t = first; t < T; t++)
        layer_norm(cb->xx + (size_t)(t - first) * C, cb->x + (size_t)t * C, m->ln_out_w,
                   m->ln_out_b, C);
    matmul(logits_out, &m->head, cb->xx, rows, cb->row);
}

static float *slot_state(cpu_backend *cb, int slot) {
    return cb->slots + (size_t)slot * cb->n_layers * BATON_STATE_ROWS * cb->C;
}

static baton_status cpu_step(baton_backend *b, const baton_step *s, baton_error *err) {
    cpu_backend *cb = (cpu_backend *)b;
    baton_status st = baton_step_check(b, s, err);
    if (st != BATON_OK) return st;
    int C = cb->C, V = cb->V;
    size_t tok = 0, row = 0; /* position in the step's token and logit-row arrays */
    for (int i = 0; i < s->n_seqs; i++) {
        const baton_seq *q = &s->seqs[i];
        float *state = slot_state(cb, q->slot);
        bool want_logits = s->logits != NULL || s->sampling != NULL;
        for (int done = 0; done < q->n_tokens;) {
            int T = q->n_tokens - done < cb->chunk ? q->n_tokens - done : cb->chunk;
            bool last_chunk = done + T == q->n_tokens;
            float *logits = NULL;
            if (want_logits && (s->logits_all_tokens || last_chunk)) logits = cb->logits;
            chunk_forward(cb, state, s->tokens ? s->tokens + tok : NULL,
                          s->x_in ? s->x_in + tok * C : NULL, s->x_out ? s->x_out + tok * C : NULL,
                          logits, s->logits_all_tokens, T);
            if (logits != NULL && s->logits != NULL) {
                size_t rows = s->logits_all_tokens ? (size_t)T : 1;
                memcpy(s->logits + row * V, logits, rows * V * sizeof(float));
                row += rows;
            }
            if (last_chunk && s->sampling != NULL) {
                const float *last = logits + (s->logits_all_tokens ? (size_t)(T - 1) * V : 0);
                uint32_t *counts = cb->counts + (size_t)q->slot * V;
                int32_t t = baton_sample(last, V, &s->sampling[i], counts, cb->sample_scratch);
                counts[t]++;
                s->tokens_out[i] = t;
            }
            tok += (size_t)T;
            done += T;
        }
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
    free(cb->slots);
    free(cb->counts);
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
    free(cb->row);
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

baton_status baton_cpu_backend_new(const baton_model *model, const baton_stage_config *config,
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
    size_t C = (size_t)cb->C, chunk = (size_t)cb->chunk, V = (size_t)cb->V;
    size_t widest = C > (size_t)cb->F ? C : (size_t)cb->F;
    if (V > widest) widest = V;
    cb->slots = malloc((size_t)config->n_slots * slot_bytes(cb) + 1);
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
    cb->row = malloc(widest * sizeof(float));
    bool ok = cb->slots && cb->x && cb->xx && cb->xk && cb->xv && cb->xr && cb->k && cb->v &&
              cb->r && cb->ffk && cb->out && cb->row;
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
