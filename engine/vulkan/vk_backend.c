/* The Vulkan backend: one pipeline stage (a layer range, optionally with embedding and head) on
 * one device. A step is one command buffer: upload the step's tokens or hidden states, run the
 * layers, the head and the sampler, download what was asked, wait on one fence (bounded). */
#include "vk_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vk_backend_impl.h"
#include "vk_kernels.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A step's command buffer: begin (and a timestamp), then submit and wait, adding its device
 * time and recording time to the step's. With a key, a buffer recorded for an earlier step of the
 * same shape is submitted again (the recording calls then do nothing). */
static baton_status step_begin(vk_backend *b, const uint64_t *key, baton_error *err) {
    b->rec_t0 = now_s();
    baton_status st = key != NULL ? vk_begin_keyed(&b->ctx, key, &b->replayed, err)
                                  : vk_begin(&b->ctx, err);
    if (key == NULL) b->replayed = false;
    if (st == BATON_OK) vk_timestamp(&b->ctx, 0);
    return st;
}

static baton_status step_submit(vk_backend *b, baton_error *err) {
    vk_timestamp(&b->ctx, 1);
    b->step_record_s += now_s() - b->rec_t0;
    baton_status st = vk_submit_wait(&b->ctx, err);
    if (st != BATON_OK) return st;
    double g = vk_elapsed_s(&b->ctx);
    b->step_gpu_s = g >= 0.0 && b->step_gpu_s >= 0.0 ? b->step_gpu_s + g : -1.0;
    return BATON_OK;
}

static uint32_t layer_param(const vk_backend *b, int l, int which) {
    return (uint32_t)((P_GLOBAL_VECTORS + (size_t)l * P_LAYER_VECTORS + (size_t)which) * (size_t)b->C);
}
static uint32_t global_param(const vk_backend *b, int which) { return (uint32_t)(which * b->C); }

static vk_bind bind(const vk_buffer *buf) { return (vk_bind){.buf = buf}; }

static vk_bind bind_region(const vk_buffer *buf, uint32_t off, uint32_t floats) {
    return (vk_bind){.buf = buf, .offset = (VkDeviceSize)off * 4, .range = (VkDeviceSize)floats * 4};
}

static void record_matmul(vk_backend *b, const vk_matrix *w, const vk_buffer *x, const vk_buffer *y,
                          const vk_buffer *m, uint32_t T, uint32_t y_stride, uint32_t epilogue) {
    vk_record_matmul(&b->ctx, w, x, y, m, T, y_stride, epilogue);
}

/* xx = LN(x); out regions of xs = token shift of xx with the mixes (2 or 3 of them); save: xx
 * also becomes the shift state (only where every sequence has one token). A step of few tokens
 * spreads each token's channels over several workgroups (vk_row_split; each computes the row's
 * statistics itself). */
static void record_ln_shift(vk_backend *b, int l, int ln_w, int ln_b, uint32_t state_row,
                            const int *mixes, uint32_t n_out, uint32_t T, bool save) {
    uint32_t groups, chans;
    vk_row_split((uint32_t)b->C, T, b->ln_spread, &groups, &chans);
    pc_ln_shift pc = {
        .C = (uint32_t)b->C, .w_off = layer_param(b, l, ln_w), .b_off = layer_param(b, l, ln_b),
        .state_row = state_row, .n_out = n_out,
        .mix0_off = layer_param(b, l, mixes[0]), .mix1_off = layer_param(b, l, mixes[1]),
        .mix2_off = n_out > 2 ? layer_param(b, l, mixes[2]) : 0,
        .tok_seq_off = b->o_tok_seq, .seq_slot_off = b->o_seq_slot, .seq_first_off = b->o_seq_first,
        .out_stride = b->act_stride, .chans = chans, .save = save,
    };
    vk_bind binds[6] = {bind(&b->x), bind(&b->xx), bind(&b->layers[l].state), bind(&b->params),
                        bind(&b->info), bind(&b->xs)};
    vk_dispatch(&b->ctx, BATON_SHADER_ln_shift_f32_f32, binds, 6, &pc, sizeof pc, T, groups, 1);
}

/* State rows [state_row, state_row + n_rows) of each sequence's slot = rows of src from its last
 * token's, src_stride floats apart (state_save.comp): the shift state ffn_xx from xx, or what a
 * fused one-token layer left in b->next. */
static void record_state_save(vk_backend *b, int l, uint32_t n_seqs, const vk_buffer *src,
                              uint32_t state_row, uint32_t n_rows, uint32_t src_stride) {
    pc_state_save ss = {
        .C = (uint32_t)b->C, .state_row = state_row, .seq_slot_off = b->o_seq_slot,
        .seq_first_off = b->o_seq_first, .seq_len_off = b->o_seq_len, .n_rows = n_rows,
        .src_stride = src_stride,
    };
    vk_bind binds[4] = {bind(src), bind(&b->layers[l].state), bind(&b->ctx.dummy), bind(&b->info)};
    vk_dispatch(&b->ctx, BATON_SHADER_state_save_f32_f32, binds, 4, &ss, sizeof ss,
                ((uint32_t)b->C + 63) / 64, n_seqs, 1);
}

/* What record_ln_shift would compute, for a product to compute it itself (one token): LN of x
 * with weight ln_w and bias ln_b, shifted against the state row with mixes[p] for part p of
 * n_out; the rows of part xx_part write xx. */
static vk_ln_input ln_input(vk_backend *b, int l, int ln_w, int ln_b, uint32_t state_row,
                            const int *mixes, uint32_t n_out, uint32_t xx_part) {
    vk_ln_input ln = {
        .state = &b->layers[l].state, .params = &b->params, .info = &b->info, .xx = &b->xx,
        .w_off = layer_param(b, l, ln_w), .b_off = layer_param(b, l, ln_b),
        .state_row = state_row, .seq_slot_off = b->o_seq_slot, .xx_part = xx_part,
    };
    for (uint32_t p = 0; p < n_out; p++) ln.mix[p] = layer_param(b, l, mixes[p]);
    return ln;
}

static void record_layernorm(vk_backend *b, const vk_buffer *in, const vk_buffer *out,
                             uint32_t w_off, uint32_t b_off, uint32_t row_map_off, uint32_t rows) {
    uint32_t groups, chans;
    vk_row_split((uint32_t)b->C, rows, b->ln_spread, &groups, &chans);
    pc_layernorm pc = {.C = (uint32_t)b->C, .w_off = w_off, .b_off = b_off, .row_map_off = row_map_off,
                       .chans = chans};
    vk_bind binds[4] = {bind(in), bind(out), bind(&b->params), bind(&b->info)};
    vk_dispatch(&b->ctx, BATON_SHADER_layernorm_f32_f32, binds, 4, &pc, sizeof pc, rows, groups, 1);
}

/* Beside the dispatch just recorded (before the barrier after it), in a one-token step that reads
 * ahead: reads the next prefetch_mib MiB of w's first chunk that this step has not read ahead
 * yet, so that the product finds them in the device's cache. Each product is read ahead beside
 * the one or two dispatches before it; its first bytes are the ones its first workgroups read. */
static void record_prefetch(vk_backend *b, const vk_matrix *w) {
    if (!b->pf_step || w == NULL || w->n_chunks < 1) return;
    if (b->pf_w != w) {
        b->pf_w = w;
        b->pf_done = 0;
    }
    const vk_buffer *chunk = &w->chunks[0];
    VkDeviceSize want = (VkDeviceSize)b->prefetch_mib << 20;
    VkDeviceSize size = chunk->size; /* a chunk fits one binding (vk_upload) */
    if (b->pf_done >= size) return;
    VkDeviceSize len = size - b->pf_done < want ? size - b->pf_done : want;
    pc_prefetch pc = {.first = (uint32_t)(b->pf_done / 16), .n = (uint32_t)(len / 16)};
    b->pf_done += len;
    vk_bind binds[2] = {bind(chunk), bind(&b->pf_sink)};
    vk_dispatch(&b->ctx, BATON_SHADER_prefetch_u32_u32, binds, 2, &pc, sizeof pc,
                (pc.n + VK_PREFETCH_WORDS_PER_GROUP - 1) / VK_PREFETCH_WORDS_PER_GROUP, 1, 1);
}

/* One layer over the step's T tokens and n_seqs sequences: time mix, then channel mix. Eight
 * dispatches and seven barriers, seven dispatches in a decode step (every sequence one token):
 * products that share an input step run as one dispatch, and a decode step's second LayerNorm
 * saves the channel-mix shift state itself. In a one-token step, products that compute their
 * own input (b->fuse) take the LayerNorms' and WKV's dispatches and barriers away (five and four
 * with both), and reading ahead adds a read beside the dispatch before each product
 * (record_prefetch), no barrier. */
void vk_record_layer(vk_backend *b, int l, uint32_t T, uint32_t n_seqs) {
    vk_context *ctx = &b->ctx;
    vk_layer *ly = &b->layers[l];
    const vk_matrix *next = l + 1 < b->n_layers       ? &b->layers[l + 1].att_kvr
                          : b->base.config.with_head ? &b->head
                                                     : NULL;
    uint32_t C = (uint32_t)b->C, F = (uint32_t)b->F, S = b->act_stride, groups_c = (C + 63) / 64;
    bool decode = T == n_seqs;
    /* Where a one-token product computes its input itself: the LayerNorm and shift (att, ffn),
     * r * wkv (wkv). */
    bool one = T == 1 && !ctx->coopmat;
    bool fuse_att = one && (b->fuse & BATON_VK_FUSE_LN) && vk_matvec_ln_ready(ctx, &ly->att_kvr);
    bool fuse_wkv =
        one && (b->fuse & BATON_VK_FUSE_WKV) && vk_matvec_wkv_ready(ctx, &ly->att_output);
    bool fuse_ffn = one && (b->fuse & BATON_VK_FUSE_LN) && vk_matvec_ln_ready(ctx, &ly->ffn_kr);

    /* xx = LN1(x); xk, xv, xr = token shift of xx */
    static const int att_mix[3] = {P_MIX_K, P_MIX_V, P_MIX_R};
    if (!fuse_att) {
        record_ln_shift(b, l, P_LN1_W, P_LN1_B, BATON_ATT_XX, att_mix, 3, T, false);
        record_prefetch(b, &ly->att_kvr);
        vk_barrier_compute(ctx);
    }
    /* k = Wk xk; v = Wv xv; r = sigmoid(Wr xr) */
    vk_matmul_part kvr[3] = {
        {.x_off = 0, .y_off = 0, .y_stride = C, .epilogue = EPI_NONE},
        {.x_off = S, .y_off = S, .y_stride = C, .epilogue = EPI_NONE},
        {.x_off = 2 * S, .y_off = 2 * S, .y_stride = C, .epilogue = EPI_SIGMOID},
    };
    if (fuse_att) {
        /* xx from the key part's rows; WKV saves it as the shift state */
        vk_ln_input ln = ln_input(b, l, P_LN1_W, P_LN1_B, BATON_ATT_XX, att_mix, 3, 0);
        vk_record_matmul_ln(ctx, &ly->att_kvr, kvr, &b->x, &b->kvr, &ln);
    } else {
        vk_record_matmul_parts(ctx, &ly->att_kvr, kvr, &b->xs, &b->kvr, NULL, 0, T);
    }
    record_prefetch(b, &ly->att_output);
    vk_barrier_compute(ctx);
    if (fuse_wkv) {
        /* x += Wo (r * wkv(k, v)): the product computes its input; aa, bb, pp go to b->next
         * (saved below), att_xx to the state */
        vk_wkv_input wk = {
            .next = &b->next, .state = &ly->state, .params = &b->params, .info = &b->info,
            .xx = &b->xx, .u_off = layer_param(b, l, P_FIRST), .w_off = layer_param(b, l, P_DECAY),
            .seq_slot_off = b->o_seq_slot, .kvr_stride = S, .next_stride = b->next_stride,
        };
        vk_record_matmul_wkv(ctx, &ly->att_output, &b->kvr, &b->x, &wk);
    } else {
        /* att = r * wkv(k, v), state aa, bb, pp and att_xx updated */
        pc_wkv wk = {
            .C = C, .u_off = layer_param(b, l, P_FIRST), .w_off = layer_param(b, l, P_DECAY),
            .seq_slot_off = b->o_seq_slot, .seq_first_off = b->o_seq_first,
            .seq_len_off = b->o_seq_len,
        };
        vk_bind wb[8] = {bind_region(&b->kvr, 0, S), bind_region(&b->kvr, S, S),
                         bind_region(&b->kvr, 2 * S, S), bind(&b->att),
                         bind(&ly->state), bind(&b->params), bind(&b->info), bind(&b->xx)};
        vk_dispatch(ctx, BATON_SHADER_wkv_f32_f32, wb, 8, &wk, sizeof wk, groups_c, n_seqs, 1);
        record_prefetch(b, &ly->att_output);
        vk_barrier_compute(ctx);
        /* x += Wo att */
        record_matmul(b, &ly->att_output, &b->att, &b->x, NULL, T, C, EPI_ADD);
    }
    record_prefetch(b, &ly->ffn_kr);
    vk_barrier_compute(ctx);

    /* xx = LN2(x); xk, xr = token shift of xx */
    static const int ffn_mix[2] = {P_FMIX_K, P_FMIX_R};
    if (!fuse_ffn) {
        record_ln_shift(b, l, P_LN2_W, P_LN2_B, BATON_FFN_XX, ffn_mix, 2, T, decode);
        record_prefetch(b, &ly->ffn_kr);
        vk_barrier_compute(ctx);
    }
    /* kf = relu(Wk xk)^2; r = sigmoid(Wr xr); unless saved above, the shift state ffn_xx = last
     * xx (beside the product where LN2 ran apart, else after it: no barrier between it and the
     * next dispatch, for they touch different buffers) */
    vk_matmul_part kr[2] = {
        {.x_off = 0, .y_off = 0, .y_stride = F, .epilogue = EPI_RELU_SQ},
        {.x_off = S, .y_off = b->kf_stride, .y_stride = C, .epilogue = EPI_SIGMOID},
    };
    uint32_t next_row = b->next_stride; /* b->next's rows */
    if (fuse_ffn) {
        /* xx from the receptance part's rows: to b->next's last row beside aa, bb and pp where
         * the output product computed WKV, so that one dispatch saves the four */
        vk_ln_input ln = ln_input(b, l, P_LN2_W, P_LN2_B, BATON_FFN_XX, ffn_mix, 2, 1);
        if (fuse_wkv) {
            ln.xx = &b->next;
            ln.xx_off = 3 * next_row;
        }
        vk_record_matmul_ln(ctx, &ly->ffn_kr, kr, &b->x, &b->kfr, &ln);
        record_prefetch(b, &ly->ffn_value);
        vk_barrier_compute(ctx);
        if (fuse_wkv)
            record_state_save(b, l, n_seqs, &b->next, BATON_ATT_AA, 4, next_row);
        else
            record_state_save(b, l, n_seqs, &b->xx, BATON_FFN_XX, 1, C);
    } else {
        vk_record_matmul_parts(ctx, &ly->ffn_kr, kr, &b->xs, &b->kfr, NULL, 0, T);
        /* (the LayerNorm saved ffn_xx where every sequence has one token: never with WKV fused) */
        if (!decode) record_state_save(b, l, n_seqs, &b->xx, BATON_FFN_XX, 1, C);
        if (fuse_wkv) record_state_save(b, l, n_seqs, &b->next, BATON_ATT_AA, 3, next_row);
        record_prefetch(b, &ly->ffn_value);
        vk_barrier_compute(ctx);
    }
    /* x += r * (Wv kf) */
    vk_matmul_part val = {.x_off = 0, .y_off = 0, .y_stride = C, .epilogue = EPI_ADD_MUL};
    vk_record_matmul_parts(ctx, &ly->ffn_value, &val, &b->kfr, &b->x, &b->kfr, b->kf_stride, T);
    record_prefetch(b, next);
    vk_barrier_compute(ctx);
}

/* LN_out and the head for rows [r0, r0 + n) of the row map at map_off: logits rows 0..n-1. */
static void record_head(vk_backend *b, uint32_t map_off, uint32_t r0, uint32_t n) {
    record_layernorm(b, &b->x, &b->xx, global_param(b, P_LNOUT_W), global_param(b, P_LNOUT_B),
                     map_off + r0, n);
    record_prefetch(b, &b->head);
    vk_barrier_compute(&b->ctx);
    record_matmul(b, &b->head, &b->xx, &b->logits, NULL, n, (uint32_t)b->V, EPI_NONE);
    vk_barrier(&b->ctx);
}

static void record_sample(vk_backend *b, uint32_t n_seqs, bool all_rows) {
    pc_sample pc = {
        .V = (uint32_t)b->V, .all_rows = all_rows, .seq_slot_off = b->o_seq_slot,
        .seq_first_off = b->o_seq_first, .seq_len_off = b->o_seq_len, .params_off = b->o_params,
        .few_max = b->sample_few,
    };
    vk_bind sb[5] = {bind(&b->logits), bind(&b->scratch), bind(&b->counts), bind(&b->info),
                     bind(&b->tokens)};
    vk_dispatch(&b->ctx, BATON_SHADER_sample_f32_i32, sb, 5, &pc, sizeof pc, n_seqs, 1, 1);
    vk_barrier(&b->ctx);
    vk_copy(&b->ctx, &b->tokens, 0, &b->down, b->down_tok_off, (VkDeviceSize)n_seqs * 4);
}

/* The step information: which sequence each token belongs to, slots, spans, rows, params. */
uint32_t vk_step_info(vk_backend *b, const baton_step *s) {
    uint32_t *info = b->up.mapped;
    uint32_t T = 0;
    for (int i = 0; i < s->n_seqs; i++) {
        const baton_seq *q = &s->seqs[i];
        info[b->o_seq_slot + i] = (uint32_t)q->slot;
        info[b->o_seq_first + i] = T;
        info[b->o_seq_len + i] = (uint32_t)q->n_tokens;
        for (int t = 0; t < q->n_tokens; t++) info[b->o_tok_seq + T + t] = (uint32_t)i;
        T += (uint32_t)q->n_tokens;
        info[b->o_last_map + i] = T - 1;
        if (s->sampling != NULL) {
            const baton_sampling *p = &s->sampling[i];
            uint32_t *w = &info[b->o_params + (uint32_t)i * SAMPLE_PARAM_WORDS];
            memcpy(&w[0], &p->temperature, 4);
            w[1] = (uint32_t)p->top_k;
            memcpy(&w[2], &p->top_p, 4);
            memcpy(&w[3], &p->presence_penalty, 4);
            memcpy(&w[4], &p->frequency_penalty, 4);
            memcpy(&w[5], &p->uniform, 4);
        }
    }
    for (uint32_t t = 0; t < T; t++) info[b->o_all_map + t] = t;
    return T;
}

static baton_status vk_step(baton_backend *base, const baton_step *s, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    baton_status st = baton_step_check(base, s, err);
    if (st != BATON_OK) return st;
    const baton_stage_config *cfg = &base->config;
    const baton_model *model = base->model;
    uint32_t C = (uint32_t)b->C, V = (uint32_t)b->V;
    b->ctx.n_dispatches = 0;
    b->ctx.n_barriers = 0;
    if (b->ctx.prof.on) b->ctx.prof.steps++;
    b->step_gpu_s = 0.0;
    b->step_record_s = 0.0;
    b->pf_step = b->prefetch_mib > 0 && s->n_seqs == 1 && s->seqs[0].n_tokens == 1;
    b->pf_w = NULL;

    uint32_t T = vk_step_info(b, s);
    float *x_in = (float *)(void *)((char *)b->up.mapped + b->up_x_off);
    if (cfg->with_embedding) {
        size_t es = baton_dtype_size(model->emb.dtype);
        for (uint32_t t = 0; t < T; t++) {
            const char *row = (const char *)model->emb.data + (size_t)s->tokens[t] * C * es;
            baton_convert_to_f32(x_in + (size_t)t * C, row, model->emb.dtype, C);
        }
    } else {
        memcpy(x_in, s->x_in, (size_t)T * C * sizeof(float));
    }

    bool want_head = cfg->with_head && (s->logits != NULL || s->sampling != NULL);
    uint32_t rows = s->logits_all_tokens ? T : (uint32_t)s->n_seqs;
    uint32_t map_off = s->logits_all_tokens ? b->o_all_map : b->o_last_map;
    uint32_t pass_rows = want_head && s->logits != NULL ? rows : 0;
    if (want_head && s->logits == NULL) pass_rows = 0; /* sampling alone: one gathered pass */

    /* One command buffer (every pass of the head fits the binding range: the usual case) is
     * kept for the step's shape, which is all its recording depends on. */
    bool one_buffer = pass_rows <= (uint32_t)b->head_rows;
    uint64_t key[VK_REPLAY_KEY] = {
        T, (uint64_t)s->n_seqs, pass_rows, map_off, rows,
        (uint64_t)want_head | (uint64_t)(s->logits != NULL) << 1 | (uint64_t)(s->sampling != NULL) << 2 |
            (uint64_t)s->logits_all_tokens << 3 | (uint64_t)(s->x_out != NULL) << 4,
    };
    st = step_begin(b, one_buffer ? key : NULL, err);
    if (st != BATON_OK) return st;
    vk_context *ctx = &b->ctx;
    vk_copy(ctx, &b->up, 0, &b->info, 0, (VkDeviceSize)b->info_words * 4);
    vk_copy(ctx, &b->up, b->up_x_off, cfg->with_embedding ? &b->xx : &b->x, 0,
            (VkDeviceSize)T * C * 4);
    vk_barrier(ctx);
    if (cfg->with_embedding) {
        record_layernorm(b, &b->xx, &b->x, global_param(b, P_LN0_W), global_param(b, P_LN0_B),
                         0xffffffffu, T);
        if (b->n_layers > 0) record_prefetch(b, &b->layers[0].att_kvr);
        vk_barrier_compute(ctx);
    }
    for (int l = 0; l < b->n_layers; l++) vk_record_layer(b, l, T, (uint32_t)s->n_seqs);

    if (!cfg->with_head) {
        if (s->x_out != NULL) {
            vk_barrier(ctx); /* the layers' last barrier ordered dispatches only */
            vk_copy(ctx, &b->x, 0, &b->down, 0, (VkDeviceSize)T * C * 4);
        }
        st = step_submit(b, err);
        if (st != BATON_OK) return st;
        if (s->x_out != NULL) memcpy(s->x_out, b->down.mapped, (size_t)T * C * sizeof(float));
        return BATON_OK;
    }
    if (!want_head) return step_submit(b, err);

    /* Logits, head_rows at a time (one pass unless the binding range is smaller than asked). */
    bool sampled = false;
    for (uint32_t r0 = 0; r0 < pass_rows || (r0 == 0 && pass_rows == 0); r0 += (uint32_t)b->head_rows) {
        if (r0 > 0) {
            st = step_begin(b, NULL, err);
            if (st != BATON_OK) return st;
        }
        uint32_t n = pass_rows - r0 < (uint32_t)b->head_rows ? pass_rows - r0 : (uint32_t)b->head_rows;
        bool last_pass = r0 + n >= pass_rows;
        if (pass_rows > 0) {
            record_head(b, map_off, r0, n);
            vk_copy(ctx, &b->logits, 0, &b->down, 0, (VkDeviceSize)n * V * 4);
        }
        if (s->sampling != NULL && last_pass) {
            if (pass_rows == 0 || (s->logits_all_tokens && r0 > 0)) {
                /* The last token of each sequence alone (sampling only, or logits came in passes). */
                vk_barrier(ctx);
                record_head(b, b->o_last_map, 0, (uint32_t)s->n_seqs);
                record_sample(b, (uint32_t)s->n_seqs, false);
            } else {
                record_sample(b, (uint32_t)s->n_seqs, s->logits_all_tokens);
            }
            sampled = true;
        }
        st = step_submit(b, err);
        if (st != BATON_OK) return st;
        if (pass_rows > 0)
            memcpy(s->logits + (size_t)r0 * V, b->down.mapped, (size_t)n * V * sizeof(float));
        if (pass_rows == 0) break;
    }
    if (sampled) {
        const uint32_t *tok = (const uint32_t *)(const void *)((const char *)b->down.mapped + b->down_tok_off);
        for (int i = 0; i < s->n_seqs; i++) s->tokens_out[i] = (int32_t)tok[i];
    }
    return BATON_OK;
}

static VkDeviceSize slot_bytes(const vk_backend *b) {
    return (VkDeviceSize)BATON_STATE_ROWS * (VkDeviceSize)b->C * 4;
}

static baton_status check_slot(const vk_backend *b, int slot, baton_error *err) {
    if (slot < 0 || slot >= b->n_slots)
        return baton_fail(err, BATON_ERR_ARG, "slot %d is outside [0, %d)", slot, b->n_slots);
    return BATON_OK;
}

void vk_record_slot_reset(vk_backend *b, int slot) {
    float pp = BATON_PP_INIT;
    uint32_t pp_bits;
    memcpy(&pp_bits, &pp, 4);
    VkDeviceSize row = (VkDeviceSize)b->C * 4, base = (VkDeviceSize)slot * slot_bytes(b);
    for (int l = 0; l < b->n_layers; l++) {
        VkBuffer st = b->layers[l].state.buffer;
        vkCmdFillBuffer(b->ctx.cmd, st, base, BATON_ATT_PP * row, 0);
        vkCmdFillBuffer(b->ctx.cmd, st, base + BATON_ATT_PP * row, row, pp_bits);
        vkCmdFillBuffer(b->ctx.cmd, st, base + BATON_FFN_XX * row, row, 0);
    }
    if (b->counts.buffer != VK_NULL_HANDLE)
        vkCmdFillBuffer(b->ctx.cmd, b->counts.buffer, (VkDeviceSize)slot * b->V * 4,
                        (VkDeviceSize)b->V * 4, 0);
}

static baton_status vk_slot_reset(baton_backend *base, int slot, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    baton_status s = check_slot(b, slot, err);
    if (s == BATON_OK) s = vk_begin(&b->ctx, err);
    if (s != BATON_OK) return s;
    vk_record_slot_reset(b, slot);
    return vk_submit_wait(&b->ctx, err);
}

static baton_status vk_slot_read(baton_backend *base, int slot, float *state, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    baton_status s = check_slot(b, slot, err);
    if (s == BATON_OK) s = vk_begin(&b->ctx, err);
    if (s != BATON_OK) return s;
    VkDeviceSize sb = slot_bytes(b);
    for (int l = 0; l < b->n_layers; l++)
        vk_copy(&b->ctx, &b->layers[l].state, (VkDeviceSize)slot * sb, &b->io, (VkDeviceSize)l * sb, sb);
    s = vk_submit_wait(&b->ctx, err);
    if (s == BATON_OK) memcpy(state, b->io.mapped, (size_t)(sb * (VkDeviceSize)b->n_layers));
    return s;
}

static baton_status vk_slot_write(baton_backend *base, int slot, const float *state,
                                  baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    baton_status s = check_slot(b, slot, err);
    if (s == BATON_OK) s = vk_begin(&b->ctx, err);
    if (s != BATON_OK) return s;
    VkDeviceSize sb = slot_bytes(b);
    memcpy(b->io.mapped, state, (size_t)(sb * (VkDeviceSize)b->n_layers));
    for (int l = 0; l < b->n_layers; l++)
        vk_copy(&b->ctx, &b->io, (VkDeviceSize)l * sb, &b->layers[l].state, (VkDeviceSize)slot * sb, sb);
    return vk_submit_wait(&b->ctx, err);
}

static void vk_backend_free(baton_backend *base) {
    vk_backend *b = (vk_backend *)base;
    vk_context *ctx = &b->ctx;
    if (ctx->device != VK_NULL_HANDLE && !ctx->lost) vkDeviceWaitIdle(ctx->device);
    vk_buffer_destroy(ctx, &b->pf_sink);
    vk_buffer_destroy(ctx, &b->io);
    vk_buffer_destroy(ctx, &b->down);
    vk_buffer_destroy(ctx, &b->up);
    vk_buffer_destroy(ctx, &b->info);
    vk_buffer_destroy(ctx, &b->tokens);
    vk_buffer_destroy(ctx, &b->counts);
    vk_buffer_destroy(ctx, &b->scratch);
    vk_buffer_destroy(ctx, &b->logits);
    vk_buffer *acts[] = {&b->next, &b->kfr, &b->kvr, &b->xs, &b->att, &b->xx, &b->x};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) vk_buffer_destroy(ctx, acts[i]);
    vk_matrix_free(ctx, &b->head);
    if (b->layers != NULL) {
        for (int l = b->n_layers - 1; l >= 0; l--) {
            vk_layer *ly = &b->layers[l];
            vk_buffer_destroy(ctx, &ly->state);
            vk_matrix_free(ctx, &ly->ffn_value);
            vk_matrix_free(ctx, &ly->ffn_kr);
            vk_matrix_free(ctx, &ly->att_output);
            vk_matrix_free(ctx, &ly->att_kvr);
        }
    }
    free(b->layers);
    vk_buffer_destroy(ctx, &b->params);
    vk_context_free(ctx);
    free(b);
}

void baton_vk_step_counts(const baton_backend *base, uint32_t *dispatches, uint32_t *barriers) {
    const vk_backend *b = (const vk_backend *)base;
    *dispatches = b->ctx.n_dispatches;
    *barriers = b->ctx.n_barriers;
}

const char *baton_vk_tuning(const baton_backend *base) { return ((const vk_backend *)base)->tuning; }

double baton_vk_upload_s(const baton_backend *base) { return ((const vk_backend *)base)->upload_s; }

bool baton_vk_step_replayed(const baton_backend *base) { return ((const vk_backend *)base)->replayed; }

void baton_vk_step_times(const baton_backend *base, double *gpu_s, double *record_s) {
    const vk_backend *b = (const vk_backend *)base;
    *gpu_s = b->step_gpu_s;
    *record_s = b->step_record_s;
}

bool baton_vk_profile(baton_backend *base, bool on) {
    vk_backend *b = (vk_backend *)base;
    if (b->ctx.queries == VK_NULL_HANDLE) return false;
    if (on && !b->ctx.prof.on) {
        memset(b->ctx.prof.secs, 0, sizeof b->ctx.prof.secs);
        memset(b->ctx.prof.groups, 0, sizeof b->ctx.prof.groups);
        b->ctx.prof.steps = 0;
    }
    b->ctx.prof.on = on;
    return true;
}

_Static_assert(BATON_SHADER_COUNT + 1 <= BATON_SHADER_ENTRIES, "profile entries");

static int by_time(const void *a, const void *b) {
    double x = ((const baton_vk_profile_entry *)a)->secs, y = ((const baton_vk_profile_entry *)b)->secs;
    return (x < y) - (x > y);
}

int baton_vk_profile_read(const baton_backend *base, int max, baton_vk_profile_entry *out,
                          uint32_t *steps) {
    const vk_profile *p = &((const vk_backend *)base)->ctx.prof;
    baton_vk_profile_entry all[BATON_SHADER_COUNT + 1];
    int n = 0;
    for (int s = 0; s <= BATON_SHADER_COUNT; s++)
        if (p->groups[s] != 0)
            all[n++] = (baton_vk_profile_entry){
                .name = s < BATON_SHADER_COUNT ? baton_spirv_table[s].name : "(copies, no dispatch)",
                .secs = p->secs[s], .groups = p->groups[s],
            };
    qsort(all, (size_t)n, sizeof all[0], by_time);
    if (n > max) n = max;
    memcpy(out, all, (size_t)n * sizeof all[0]);
    *steps = p->steps;
    return n;
}

const char *baton_vk_coopmat_state(const baton_backend *base, bool *ready, bool *active) {
    const vk_backend *b = (const vk_backend *)base;
    *ready = b->ctx.coopmat_ready;
    *active = b->ctx.coopmat;
    return b->ctx.coopmat_ready ? "" : b->ctx.coopmat_why;
}

baton_status baton_vk_coopmat_use(baton_backend *base, bool on, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    return vk_coopmat_use(&b->ctx, on, err) ? BATON_OK : BATON_ERR_UNSUPPORTED;
}

uint32_t baton_vk_prefetch_mib(const baton_backend *base) {
    return ((const vk_backend *)base)->prefetch_mib;
}

baton_status baton_vk_prefetch_set(baton_backend *base, uint32_t mib, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    if (mib > VK_PREFETCH_MAX_MIB)
        return baton_fail(err, BATON_ERR_ARG, "read %u MiB ahead: at most %d", mib, VK_PREFETCH_MAX_MIB);
    if (b->prefetch_mib != mib) vk_replays_invalidate(&b->ctx);
    b->prefetch_mib = mib;
    return BATON_OK;
}

uint32_t baton_vk_ln_spread(const baton_backend *base) {
    return ((const vk_backend *)base)->ln_spread;
}

baton_status baton_vk_ln_spread_set(baton_backend *base, uint32_t workgroups, baton_error *err) {
    vk_backend *b = (vk_backend *)base;
    if (workgroups < 1 || workgroups > VK_LN_SPREAD_MAX)
        return baton_fail(err, BATON_ERR_ARG, "LayerNorms over %u workgroups: 1 to %d", workgroups,
                          VK_LN_SPREAD_MAX);
    if (b->ln_spread != workgroups) vk_replays_invalidate(&b->ctx);
    b->ln_spread = workgroups;
    return BATON_OK;
}

uint32_t baton_vk_fuse(const baton_backend *base) { return ((const vk_backend *)base)->fuse; }

void baton_vk_fuse_set(baton_backend *base, uint32_t flags) {
    vk_backend *b = (vk_backend *)base;
    flags &= BATON_VK_FUSE_LN | BATON_VK_FUSE_WKV;
    if (b->fuse != flags) vk_replays_invalidate(&b->ctx);
    b->fuse = flags;
}

int baton_vk_batched_count(void) { return VK_BATCHED_CONFIGS; }

const char *baton_vk_batched_name(int config) {
    return config >= 0 && config < VK_BATCHED_CONFIGS ? vk_batched_configs[config].name : "?";
}

int baton_vk_batched_tokens(int config) {
    return config >= 0 && config < VK_BATCHED_CONFIGS ? (int)vk_batched_configs[config].cb : 0;
}

baton_status baton_vk_kernels_reset(baton_backend *base, baton_error *err) {
    return vk_kernels_reset(&((vk_backend *)base)->ctx, err);
}

baton_status baton_vk_batched_select(baton_backend *base, int config, baton_error *err) {
    if (config < 0 || config >= VK_BATCHED_CONFIGS)
        return baton_fail(err, BATON_ERR_ARG, "batched matmul configuration %d is outside [0, %d)",
                          config, VK_BATCHED_CONFIGS);
    vk_context *ctx = &((vk_backend *)base)->ctx;
    baton_status s = vk_batched_select(ctx, config, err);
    for (int tier = 0; tier < VK_TIERS && s == BATON_OK; tier++)
        if (vk_batched_fits(config, tier)) vk_kind_clear_roles(ctx, VK_KIND_B8 + tier);
    return s;
}

int baton_vk_coop_count(void) { return VK_COOP_CONFIGS; }

const char *baton_vk_coop_name(int config) {
    return config >= 0 && config < VK_COOP_CONFIGS ? vk_coop_configs[config].name : "?";
}

bool baton_vk_coop_few(int config) {
    return config >= 0 && config < VK_COOP_CONFIGS && vk_coop_few(config);
}

int baton_vk_coop_default(bool few) { return few ? 0 : VK_COOP_MANY_DEFAULT; }

baton_status baton_vk_coop_select(baton_backend *base, int few, int many, baton_error *err) {
    if (few < 0 || few >= VK_COOP_CONFIGS || many < 0 || many >= VK_COOP_CONFIGS)
        return baton_fail(err, BATON_ERR_ARG, "tensor-core configurations %d, %d: outside [0, %d)",
                          few, many, VK_COOP_CONFIGS);
    vk_context *ctx = &((vk_backend *)base)->ctx;
    baton_status s = vk_coop_select(ctx, few, many, many, err);
    if (s == BATON_OK) {
        vk_kind_clear_roles(ctx, VK_KIND_COOP_FEW);
        vk_kind_clear_roles(ctx, VK_KIND_COOP_MANY);
        vk_kind_clear_roles(ctx, VK_KIND_COOP_LARGE);
    }
    return s;
}

int baton_vk_matvec_count(void) { return VK_MATVEC_CONFIGS; }

bool baton_vk_matvec_fuses(int config) {
    return config >= 0 && config < VK_MATVEC_CONFIGS && vk_matvec_configs[config].ln >= 0 &&
           vk_matvec_configs[config].wkv >= 0;
}

const char *baton_vk_matvec_name(int config) {
    return config >= 0 && config < VK_MATVEC_CONFIGS ? vk_matvec_configs[config].name : "?";
}

baton_status baton_vk_matvec_select(baton_backend *base, int config, baton_error *err) {
    if (config < 0 || config >= VK_MATVEC_CONFIGS)
        return baton_fail(err, BATON_ERR_ARG, "matvec configuration %d is outside [0, %d)", config,
                          VK_MATVEC_CONFIGS);
    vk_context *ctx = &((vk_backend *)base)->ctx;
    baton_status s = vk_matvec_select(ctx, config, err);
    if (s == BATON_OK) vk_kind_clear_roles(ctx, VK_KIND_MATVEC);
    return s;
}

static const struct baton_backend_ops vk_ops = {
    .step = vk_step,
    .slot_reset = vk_slot_reset,
    .slot_read = vk_slot_read,
    .slot_write = vk_slot_write,
    .free = vk_backend_free,
};

/* The small float vectors of the stage, one buffer. */
static baton_status upload_params(vk_backend *b, const baton_model *m, const baton_stage_config *cfg,
                                  vk_uploader *up, baton_error *err) {
    size_t C = (size_t)b->C;
    size_t n = (P_GLOBAL_VECTORS + (size_t)b->n_layers * P_LAYER_VECTORS) * C;
    if (n * 4 > up->staging.size || n * 4 > b->ctx.info.max_storage_range)
        return baton_fail(err, BATON_ERR_NOMEM, "the stage's vectors (%zu bytes) exceed a binding", n * 4);
    baton_status s = vk_buffer_create(&b->ctx, n * 4, false, &b->params, err);
    if (s != BATON_OK) return s;
    float *p = up->staging.mapped;
    memset(p, 0, n * 4);
    if (cfg->with_embedding) {
        memcpy(p + global_param(b, P_LN0_W), m->ln0_w, C * 4);
        memcpy(p + global_param(b, P_LN0_B), m->ln0_b, C * 4);
    }
    if (cfg->with_head) {
        memcpy(p + global_param(b, P_LNOUT_W), m->ln_out_w, C * 4);
        memcpy(p + global_param(b, P_LNOUT_B), m->ln_out_b, C * 4);
    }
    for (int l = 0; l < b->n_layers; l++) {
        const baton_layer *ly = &m->layers[cfg->layer_begin + l];
        const float *src[P_LAYER_VECTORS] = {
            ly->ln1_w, ly->ln1_b, ly->att_time_mix_k, ly->att_time_mix_v, ly->att_time_mix_r,
            ly->att_time_first, ly->att_time_decay, ly->ln2_w, ly->ln2_b, ly->ffn_time_mix_k,
            ly->ffn_time_mix_r,
        };
        for (int v = 0; v < P_LAYER_VECTORS; v++) memcpy(p + layer_param(b, l, v), src[v], C * 4);
    }
    s = vk_begin(&b->ctx, err);
    if (s != BATON_OK) return s;
    vk_copy(&b->ctx, &up->staging, 0, &b->params, 0, n * 4);
    return vk_submit_wait(&b->ctx, err);
}

static baton_status upload_layers(vk_backend *b, const baton_model *m, const baton_stage_config *cfg,
                                  vk_uploader *up, baton_error *err) {
    for (int l = 0; l < b->n_layers; l++) {
        int li = cfg->layer_begin + l;
        const baton_layer *src = &m->layers[li];
        vk_layer *dst = &b->layers[l];
        /* Products that share an input step are stacked, so each is one dispatch. */
        const baton_matrix *kvr[3] = {&src->att_key, &src->att_value, &src->att_receptance};
        const baton_matrix *o[1] = {&src->att_output};
        const baton_matrix *kr[2] = {&src->ffn_key, &src->ffn_receptance};
        const baton_matrix *v[1] = {&src->ffn_value};
        struct { const baton_matrix *const *ms; int n; vk_matrix *d; const char *name; } mats[] = {
            {kvr, 3, &dst->att_kvr, "att.key/value/receptance"},
            {o, 1, &dst->att_output, "att.output"},
            {kr, 2, &dst->ffn_kr, "ffn.key/receptance"},
            {v, 1, &dst->ffn_value, "ffn.value"},
        };
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "blocks.%d.%s", li, mats[i].name);
            baton_status s = vk_matrix_upload_stack(&b->ctx, up, mats[i].ms, mats[i].n, name,
                                                    mats[i].d, err);
            if (s != BATON_OK) return s;
            mats[i].d->role = VK_ROLE_ATT_KVR + (int)i;
        }
        baton_status s = vk_buffer_create(&b->ctx, (VkDeviceSize)b->n_slots * slot_bytes(b), false,
                                          &dst->state, err);
        if (s != BATON_OK) return s;
    }
    return BATON_OK;
}

/* Device buffers for activations and I/O, sized by the config and checked against the range. */
static baton_status create_buffers(vk_backend *b, const baton_stage_config *cfg, baton_error *err) {
    vk_context *ctx = &b->ctx;
    uint64_t range = ctx->info.max_storage_range;
    uint64_t Tm = (uint64_t)b->max_tokens, Sm = (uint64_t)b->max_seqs;
    uint64_t C = (uint64_t)b->C, F = (uint64_t)b->F, V = (uint64_t)b->V;
    uint64_t S = (Tm * C + 63) & ~(uint64_t)63, KF = (Tm * F + 63) & ~(uint64_t)63;
    if ((KF + S) * 4 > range || 3 * S * 4 > range || KF + S > UINT32_MAX)
        return baton_fail(err, BATON_ERR_NOMEM, "max_tokens %d: the FFN activations (%llu bytes) "
                          "exceed this device's storage-buffer range (%llu)", b->max_tokens,
                          (unsigned long long)((KF + S) * 4), (unsigned long long)range);
    b->act_stride = (uint32_t)S;
    b->kf_stride = (uint32_t)KF;
    if ((uint64_t)b->n_slots * slot_bytes(b) > range)
        return baton_fail(err, BATON_ERR_NOMEM, "%d slots of one layer exceed this device's "
                          "storage-buffer range", b->n_slots);
    baton_status s = BATON_OK;
    vk_buffer *acts[] = {&b->x, &b->xx, &b->att};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0] && s == BATON_OK; i++)
        s = vk_buffer_create(ctx, Tm * C * 4, false, acts[i], err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, 3 * S * 4, false, &b->xs, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, 3 * S * 4, false, &b->kvr, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, (KF + S) * 4, false, &b->kfr, err);
    /* The tensor cores' split x: a mirror of the largest x a product reads (xs, kfr), and 64
     * rows of the widest K past its end; made while the tensor-core path is in use. */
    uint64_t widest = C > F ? C : F;
    ctx->xsplit_bytes = ((3 * S > KF + S ? 3 * S : KF + S) + 64 * widest) * 4;
    if (s == BATON_OK && ctx->coopmat) s = vk_coop_xsplit_reserve(ctx, ctx->xsplit_bytes, err);
    b->next_stride = (uint32_t)((C + 63) & ~(uint64_t)63); /* rows on 256 bytes: bound alone */
    if (s == BATON_OK)
        s = vk_buffer_create(ctx, 4 * (uint64_t)b->next_stride * 4, false, &b->next, err);
    if (s != BATON_OK) return s;

    b->o_tok_seq = 0;
    b->o_seq_slot = (uint32_t)Tm;
    b->o_seq_first = b->o_seq_slot + (uint32_t)Sm;
    b->o_seq_len = b->o_seq_first + (uint32_t)Sm;
    b->o_last_map = b->o_seq_len + (uint32_t)Sm;
    b->o_all_map = b->o_last_map + (uint32_t)Sm;
    b->o_params = b->o_all_map + (uint32_t)Tm;
    b->info_words = b->o_params + (uint32_t)Sm * SAMPLE_PARAM_WORDS;
    uint64_t info_bytes = (uint64_t)b->info_words * 4;
    b->up_x_off = (info_bytes + 255) & ~(uint64_t)255;
    uint64_t down_bytes = cfg->with_head ? 0 : Tm * C * 4;
    if (cfg->with_head) {
        uint64_t cap = range / (V * 4);
        if (cap < Sm)
            return baton_fail(err, BATON_ERR_NOMEM, "max_seqs %d: the logits exceed this device's "
                              "storage-buffer range", b->max_seqs);
        b->head_rows = (int)(Tm < cap ? Tm : cap);
        down_bytes = (uint64_t)b->head_rows * V * 4;
        if (Sm * V * 4 > range || (uint64_t)b->n_slots * V * 4 > range)
            return baton_fail(err, BATON_ERR_NOMEM, "the sampler's buffers exceed this device's "
                              "storage-buffer range");
        s = vk_buffer_create(ctx, (uint64_t)b->head_rows * V * 4, false, &b->logits, err);
        if (s == BATON_OK) s = vk_buffer_create(ctx, Sm * V * 4, false, &b->scratch, err);
        if (s == BATON_OK) s = vk_buffer_create(ctx, (uint64_t)b->n_slots * V * 4, false, &b->counts, err);
        if (s == BATON_OK) s = vk_buffer_create(ctx, Sm * 4, false, &b->tokens, err);
        if (s != BATON_OK) return s;
    }
    b->down_tok_off = (down_bytes + 255) & ~(uint64_t)255;
    s = vk_buffer_create(ctx, info_bytes, false, &b->info, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, b->up_x_off + Tm * C * 4, true, &b->up, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, b->down_tok_off + Sm * 4, true, &b->down, err);
    if (s == BATON_OK)
        s = vk_buffer_create(ctx, (uint64_t)(b->n_layers > 0 ? b->n_layers : 1) * slot_bytes(b),
                             true, &b->io, err);
    if (s == BATON_OK) s = vk_buffer_create(ctx, 16, false, &b->pf_sink, err);
    return s;
}

/* Tuning, or what an earlier tuning of the same stage on the same device kept
 * (vk_tune_cache.c); b->tuning then says which, and where it is kept or why it is not. */
static baton_status tune_or_recall(vk_backend *b, baton_error *err) {
    vk_tune_cache c;
    vk_tune_cache_locate(b, &c);
    baton_status s = BATON_OK;
    if (vk_tune_cache_load(b, &c, &s, err) || s != BATON_OK) return s;
    char stale[sizeof c.why]; /* why the file there was not used ("" where there was none) */
    snprintf(stale, sizeof stale, "%s", c.path[0] ? c.why : "");
    s = vk_backend_tune(b, err);
    if (s != BATON_OK || c.off) return s;
    bool kept = vk_tune_cache_store(b, &c);
    /* "tuned in 1.23 s: ..." becomes "tuned in 1.23 s (kept in FILE): ..." */
    char *colon = strstr(b->tuning, ": ");
    char rest[sizeof b->tuning];
    if (colon == NULL) return BATON_OK;
    snprintf(rest, sizeof rest, "%s", colon);
    char note[sizeof c.path + sizeof c.why + sizeof stale + 64];
    if (kept)
        snprintf(note, sizeof note, " (kept in %s%s%s)", c.path, stale[0] ? "; the file there was "
                 "not used: " : "", stale);
    else
        snprintf(note, sizeof note, " (not kept: %s)", c.why);
    *colon = '\0';
    size_t len = strlen(b->tuning);
    snprintf(b->tuning + len, sizeof b->tuning - len, "%s%s", note, rest);
    return BATON_OK;
}

baton_status baton_vulkan_backend_new(const baton_model *model, const baton_stage_config *config,
                                      int device_index, baton_backend **out, baton_error *err) {
    *out = NULL;
    baton_status s = baton_stage_config_check(model, config, err);
    if (s != BATON_OK) return s;
    if (model->n_embd % 8 != 0 || model->n_ffn % 8 != 0)
        return baton_fail(err, BATON_ERR_UNSUPPORTED, "the Vulkan engine needs n_embd and n_ffn "
                          "divisible by 8 (they are %d and %d)", model->n_embd, model->n_ffn);
    /* BATON_VK_TUNE: 1 tunes, 0 keeps the defaults, unset tunes on GPUs (on a CPU device the
     * defaults came from its own sweep, and every test's backend would pay for it). Checked
     * before anything is uploaded. */
    const char *tune_env = getenv("BATON_VK_TUNE");
    bool tune_set = tune_env != NULL && tune_env[0] != '\0';
    if (tune_set && strcmp(tune_env, "0") != 0 && strcmp(tune_env, "1") != 0)
        return baton_fail(err, BATON_ERR_ARG, "BATON_VK_TUNE=%s: expected 1 (time the matmul "
                          "configurations and run the fastest) or 0 (the defaults)", tune_env);
    /* BATON_VK_TUNE_CACHE: where tuning's choices are kept (vk_tune_cache.c). */
    const char *cache_env = getenv("BATON_VK_TUNE_CACHE");
    if (!vk_tune_cache_env_ok(cache_env))
        return baton_fail(err, BATON_ERR_ARG, "BATON_VK_TUNE_CACHE=%.60s: expected off (tuning's "
                          "choices kept nowhere) or an absolute directory (at most %d bytes)",
                          cache_env, VK_TUNE_CACHE_DIR_MAX);
    /* BATON_VK_SAMPLE_FEW=N (0 to VK_SAMPLE_FEW_MAX): the most candidates the sampler handles
     * in shared memory before it works over the whole vocabulary (tests run both ways). */
    const char *few_env = getenv("BATON_VK_SAMPLE_FEW");
    long few = VK_SAMPLE_FEW_MAX;
    if (few_env != NULL && few_env[0] != '\0') {
        char *end = NULL;
        few = strtol(few_env, &end, 10);
        if (*end != '\0' || few < 0 || few > VK_SAMPLE_FEW_MAX)
            return baton_fail(err, BATON_ERR_ARG, "BATON_VK_SAMPLE_FEW=%.40s: expected 0 to %d",
                              few_env, VK_SAMPLE_FEW_MAX);
    }
    /* BATON_VK_PREFETCH=N (0 to VK_PREFETCH_MAX_MIB): read N MiB of each product's weights
     * ahead in one-token steps (0: never); unset or "auto": tuning's choice. */
    const char *pf_env = getenv("BATON_VK_PREFETCH");
    long pf = 0;
    bool pf_pinned = pf_env != NULL && pf_env[0] != '\0' && strcmp(pf_env, "auto") != 0;
    if (pf_pinned) {
        char *end = NULL;
        pf = strtol(pf_env, &end, 10);
        if (*end != '\0' || pf < 0 || pf > VK_PREFETCH_MAX_MIB)
            return baton_fail(err, BATON_ERR_ARG, "BATON_VK_PREFETCH=%.40s: expected auto (tuning "
                              "chooses) or 0 to %d (MiB of weights read ahead in one-token steps)",
                              pf_env, VK_PREFETCH_MAX_MIB);
    }
    /* BATON_VK_FUSE=ln, wkv, 1 (both) or 0: what one-token steps' products compute themselves;
     * unset or "auto": tuning's choice. */
    const char *fuse_env = getenv("BATON_VK_FUSE");
    bool fuse_pinned = fuse_env != NULL && fuse_env[0] != '\0' && strcmp(fuse_env, "auto") != 0;
    uint32_t fuse = 0;
    if (fuse_pinned) {
        if (strcmp(fuse_env, "1") == 0)
            fuse = BATON_VK_FUSE_LN | BATON_VK_FUSE_WKV;
        else if (strcmp(fuse_env, "ln") == 0)
            fuse = BATON_VK_FUSE_LN;
        else if (strcmp(fuse_env, "wkv") == 0)
            fuse = BATON_VK_FUSE_WKV;
        else if (strcmp(fuse_env, "0") != 0)
            return baton_fail(err, BATON_ERR_ARG, "BATON_VK_FUSE=%.40s: expected auto (tuning "
                              "chooses), ln (one-token products compute their LayerNorms), wkv "
                              "(the output product its WKV), 1 (both) or 0", fuse_env);
    }
    vk_backend *b = calloc(1, sizeof *b);
    if (b == NULL) return baton_fail(err, BATON_ERR_NOMEM, "out of memory");
    b->sample_few = (uint32_t)few;
    b->prefetch_mib = (uint32_t)pf;
    b->prefetch_pinned = pf_pinned;
    b->fuse = fuse;
    b->fuse_pinned = fuse_pinned;
    b->ln_spread = VK_LN_SPREAD;
    b->C = model->n_embd;
    b->F = model->n_ffn;
    b->V = model->n_vocab;
    b->n_layers = config->layer_end - config->layer_begin;
    b->max_tokens = config->max_tokens;
    b->max_seqs = config->max_seqs;
    b->n_slots = config->n_slots;
    b->base.ops = &vk_ops;
    b->base.model = model;
    b->base.config = *config;
    b->base.name = b->name;

    s = vk_context_init(&b->ctx, device_index, err);
    if (s != BATON_OK) {
        free(b);
        return s;
    }
    snprintf(b->name, sizeof b->name, "vulkan:%d (%s)", b->ctx.info.index, b->ctx.info.name);
    b->layers = calloc((size_t)(b->n_layers > 0 ? b->n_layers : 1), sizeof *b->layers);
    if (b->layers == NULL) {
        s = baton_fail(err, BATON_ERR_NOMEM, "out of memory");
        goto out_backend;
    }
    uint64_t total = 0;
    for (int l = config->layer_begin; l < config->layer_end; l++) {
        const baton_layer *ly = &model->layers[l];
        const baton_matrix *ms[] = {&ly->att_key, &ly->att_value, &ly->att_receptance, &ly->att_output,
                                    &ly->ffn_key, &ly->ffn_receptance, &ly->ffn_value};
        for (size_t i = 0; i < 7; i++)
            total += (uint64_t)ms[i]->rows * (uint64_t)ms[i]->cols * baton_dtype_size(ms[i]->dtype);
    }
    if (config->with_head)
        total += (uint64_t)model->head.rows * (uint64_t)model->head.cols * baton_dtype_size(model->head.dtype);

    double t_up = now_s();
    vk_uploader up;
    s = vk_uploader_init(&b->ctx, &up, total, err);
    if (s != BATON_OK) goto out_backend;
    s = upload_params(b, model, config, &up, err);
    if (s == BATON_OK) s = upload_layers(b, model, config, &up, err);
    if (s == BATON_OK && config->with_head) s = vk_matrix_upload(&b->ctx, &up, &model->head, "head", &b->head, err);
    b->head.role = VK_ROLE_HEAD;
    vk_uploader_free(&b->ctx, &up);
    b->upload_s = now_s() - t_up;
    if (s != BATON_OK) goto out_backend;
    s = create_buffers(b, config, err);
    if (s != BATON_OK) goto out_backend;

    /* Every slot fresh. */
    s = vk_begin(&b->ctx, err);
    if (s != BATON_OK) goto out_backend;
    for (int slot = 0; slot < b->n_slots; slot++) vk_record_slot_reset(b, slot);
    s = vk_submit_wait(&b->ctx, err);
    if (s != BATON_OK) goto out_backend;
    bool tune = tune_set ? strcmp(tune_env, "1") == 0 : strcmp(b->ctx.info.type, "cpu") != 0;
    if (tune) {
        s = tune_or_recall(b, err);
    } else {
        snprintf(b->tuning, sizeof b->tuning, "not tuned (%s): the device kind's defaults; "
                 "path: %s", tune_set ? "BATON_VK_TUNE=0" : "a CPU device; BATON_VK_TUNE=1 tunes it",
                 vk_backend_path(b));
        vk_one_token_notes(b, b->tuning, sizeof b->tuning);
    }
    if (s != BATON_OK) goto out_backend;
    *out = &b->base;
    return BATON_OK;

out_backend:
    vk_backend_free(&b->base);
    return s;
}
