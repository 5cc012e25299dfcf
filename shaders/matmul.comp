#version 450
// y = W x for the tokens of a step: W is fp16 (n_rows, K) in interleaved row blocks, x is fp32
// [T][K], accumulation fp32. A workgroup computes WR rows for CB tokens; its SEGS thread rows
// each sum one fixed K segment sequentially (one fma per product, in k order), and the segments
// are then added in order 0..SEGS-1. That order depends on K alone, never on T, CB, WR or the
// token's place in the step, so every variant (CB = 1, 8, 32, 64) gives bitwise the same y (batch
// invariance). Each weight is loaded once per workgroup and used for all CB tokens.
//
// W may stack up to 3 matrices (groups) that share K, each starting on a row block: one dispatch
// then computes, e.g., the key, value and receptance products of a layer, each group with its
// own input, output and epilogue (so their rows never mix).
//
// Weight layout (per chunk of rows): [n_blocks][K / 8][RB] uvec4, 8 halves per uvec4, so the WR
// lanes of a segment read WR consecutive 16-byte words: coalesced.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#ifndef CB
#define CB 1
#endif
#define RB 32u
#define SEGS 8u
// Rows per workgroup: 8 for one token, so that a C-row matrix gives 640 workgroups for C = 5120
// (the batch-1 matvec is bandwidth-bound and wants every SM busy), a whole block otherwise. The
// bench's sweep variants set WR (4, 8, 16 or 32: a divisor of RB), UNROLL and XS themselves.
#ifndef WR
#if CB == 1
#define WR 8u
#else
#define WR 32u
#endif
#endif
// Weight loads in flight per thread: deep for the bandwidth-bound variants, one for CB = 32,
// whose accumulators already fill the registers. It never changes the order of the sums.
#ifndef UNROLL
#if CB >= 32
#define UNROLL 1u
#elif CB == 1
#define UNROLL 8u
#else
#define UNROLL 4u
#endif
#endif
// XS = 1 (one token only): the workgroup first copies x into shared memory, a tile of XT chunks
// of every K segment at a time (K = 20480 does not fit 48 KiB whole), and the products read x
// from there instead of each thread loading 32 bytes of x from global memory per 16 bytes of
// weights. Each segment still adds its chunks in k order: the same sums, bit for bit.
#ifndef XS
#define XS 0
#endif
#if XS
#if CB != 1
#error "XS is for the one-token variant"
#endif
#define XT 80u           // chunks per segment per tile: K = 5120 is one tile
#define XROW (2u * XT + 1u) // vec4 per segment row; the extra one spreads the rows over banks
#endif
// LN = 1 (with XS): x (binding 1) holds the residual row, and the product's input is its
// LayerNorm with the token shift, computed while staging: group g's column c is
// ln_mix(LN(x)[c], state[shift row][c], params[mix_g + c]), bit for bit what ln_shift.comp would
// have written to that group's input region (the same ln.glsl code). The rows n < C of group
// xx_group also write xx[n] = LN(x)[n], the next shift state, which a later dispatch saves (this
// one's workgroups all read the old). A one-token layer then needs no LayerNorm dispatch and no
// barrier before its products.
#ifndef LN
#define LN 0
#endif
#if LN && !XS
#error "LN normalizes x while staging it (XS)"
#endif
// WKV = 1 (with XS; one token, one part: the time mix's output product): x (binding 1) holds
// k, v and r (r already sigmoid) at 0, kvr_stride and 2 kvr_stride, and the product's input,
// r * wkv, is computed while staging (wkv.glsl: bit for bit what wkv.comp writes) from the state
// before the token. The rows n < C also write channel n's new state: aa, bb and pp to rows 0 to
// 2 of binding 3 (m; a later dispatch saves them, since this one's workgroups all read the old),
// and the attention's shift state ATT_XX = xx[n] (nothing here reads it). A one-token layer then
// needs no WKV dispatch and no barrier before its output product.
#ifndef WKV
#define WKV 0
#endif
#if WKV && (!XS || LN)
#error "WKV computes the input while staging x (XS), and not with LN"
#endif
#if CB < 8
#define G CB
#else
#define G 8
#endif
// RT rows per thread (the many-token variant only): a thread's rows lane + WR r, r < RT, so a
// workgroup computes WR * RT rows (at most one 32-row block) and each x value it loads feeds RT
// fma instead of one. Each row's sums are still its own, in the same order.
#ifndef RT
#define RT 1
#endif
#define WRT (WR * RT)

#define EPI_NONE 0u     // y = s
#define EPI_SIGMOID 1u  // y = sigmoid(s)             (receptance)
#define EPI_RELU_SQ 2u  // y = max(s, 0)^2            (channel-mix key)
#define EPI_ADD 3u      // y += s                     (residual)
#define EPI_ADD_MUL 4u  // y += m * s                 (channel-mix output gated by sigmoid(r))

layout(local_size_x = WR, local_size_y = SEGS) in;
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
#if WKV
// binding 3: no gate in the output product, so it holds the new state instead, [3][next_stride]
layout(std430, binding = 3) buffer M { float m[]; };
layout(std430, binding = 4) buffer State { float state[]; };  // this layer: [slot][5][C]
layout(std430, binding = 5) readonly buffer Params { float params[]; };
layout(std430, binding = 6) readonly buffer Info { uint info[]; };
layout(std430, binding = 7) readonly buffer XX { float xx[]; };
#else
layout(std430, binding = 3) readonly buffer M { float m[]; };
#endif
#if LN
layout(std430, binding = 4) readonly buffer State { float state[]; };  // this layer: [slot][5][C]
layout(std430, binding = 5) readonly buffer Params { float params[]; };
layout(std430, binding = 6) readonly buffer Info { uint info[]; };
layout(std430, binding = 7) writeonly buffer XX { float xx[]; };
#endif

// Group g covers the stacked rows from row block blk_g; its row n (from 0) reads x from x_off_g
// (vec4 units), writes y[y_off_g + t * y_stride_g + n] and, for EPI_ADD_MUL, reads
// m[m_off + t * y_stride_g + n].
layout(push_constant, std430) uniform Push {
    uint K;        // columns of W, a multiple of 8
    uint T;        // tokens (columns of x)
    uint cps;      // chunks of 8 columns per K segment: ceil(K / 8 / SEGS)
    uint blk0;     // the chunk's first row block within the stacked rows
    uint n_groups; // 1 to 3
    uint m_off;
    uint blk_1, blk_2;  // the first row block of groups 1 and 2 (group 0 starts at 0)
    uint rows_0, rows_1, rows_2;
    uint x_off_0, x_off_1, x_off_2;
    uint y_off_0, y_off_1, y_off_2;
    uint y_stride_0, y_stride_1, y_stride_2;
    uint epi_0, epi_1, epi_2;
    uint n_blk;    // the chunk's row blocks (matmul_coop.comp's 64-row workgroups need it)
#if LN
    uint ln_w_off, ln_b_off;  // the LayerNorm's weight and bias in params
    uint mix_0, mix_1, mix_2; // each group's token-shift mix in params
    uint state_row;           // the shift state the mix reads (ROW_ATT_XX or ROW_FFN_XX)
    uint seq_slot_off;        // the sequence's slot in info
    uint xx_group;            // the group whose rows write xx
#endif
#if WKV
    uint u_off, w_off;        // time_first u, time_decay w (= -exp(raw)) in params
    uint seq_slot_off;        // the sequence's slot in info
    uint kvr_stride;          // floats from k to v and from v to r in x (a multiple of 4)
    uint next_stride;         // floats between the rows of the new state in m
#endif
} pc;

shared float part[SEGS][G][WRT];
#if XS
shared vec4 xs[SEGS][XROW];
#endif
#if LN
#define LN_THREADS (WR * SEGS)
#define LN_X(i) x[(i) >> 2u][(i) & 3u]
#include "ln.glsl"
#endif
#if WKV
#include "wkv.glsl"
#define X_AT(i) x[(i) >> 2u][(i) & 3u]
#endif

// acc[b] = fma(w[k], x[b][k], acc[b]) for the 8 columns of chunk c, k in order. precise: each
// fma is one operation computed the same way in every variant.
void accumulate(inout precise float acc[CB], uint xb[CB], uvec4 q, uint c) {
    vec2 w01 = unpackHalf2x16(q.x), w23 = unpackHalf2x16(q.y);
    vec2 w45 = unpackHalf2x16(q.z), w67 = unpackHalf2x16(q.w);
    [[unroll]] for (uint b = 0u; b < CB; b++) {
        vec4 xa = x[xb[b] + 2u * c], xc = x[xb[b] + 2u * c + 1u];
        acc[b] = fma(w01.x, xa.x, acc[b]);
        acc[b] = fma(w01.y, xa.y, acc[b]);
        acc[b] = fma(w23.x, xa.z, acc[b]);
        acc[b] = fma(w23.y, xa.w, acc[b]);
        acc[b] = fma(w45.x, xc.x, acc[b]);
        acc[b] = fma(w45.y, xc.y, acc[b]);
        acc[b] = fma(w67.x, xc.z, acc[b]);
        acc[b] = fma(w67.y, xc.w, acc[b]);
    }
}

#if RT > 1
// accumulate() for RT rows at once: each x value loaded once, then one fma per row.
void accumulate_rt(inout precise float acc[RT][CB], uint xb[CB], uvec4 q[RT], uint c) {
    vec2 w01[RT], w23[RT], w45[RT], w67[RT];
    [[unroll]] for (uint r = 0u; r < RT; r++) {
        w01[r] = unpackHalf2x16(q[r].x); w23[r] = unpackHalf2x16(q[r].y);
        w45[r] = unpackHalf2x16(q[r].z); w67[r] = unpackHalf2x16(q[r].w);
    }
    [[unroll]] for (uint b = 0u; b < CB; b++) {
        vec4 xa = x[xb[b] + 2u * c], xc = x[xb[b] + 2u * c + 1u];
        [[unroll]] for (uint r = 0u; r < RT; r++) {
            acc[r][b] = fma(w01[r].x, xa.x, acc[r][b]);
            acc[r][b] = fma(w01[r].y, xa.y, acc[r][b]);
            acc[r][b] = fma(w23[r].x, xa.z, acc[r][b]);
            acc[r][b] = fma(w23[r].y, xa.w, acc[r][b]);
            acc[r][b] = fma(w45[r].x, xc.x, acc[r][b]);
            acc[r][b] = fma(w45[r].y, xc.y, acc[r][b]);
            acc[r][b] = fma(w67[r].x, xc.z, acc[r][b]);
            acc[r][b] = fma(w67[r].y, xc.w, acc[r][b]);
        }
    }
}
#endif

#if XS
// acc = fma(w[k], x[k], acc) for the 8 columns of one chunk, x from shared memory (xa, xc): the
// same fma sequence as accumulate().
void accumulate_xs(inout precise float acc, uvec4 q, vec4 xa, vec4 xc) {
    vec2 w01 = unpackHalf2x16(q.x), w23 = unpackHalf2x16(q.y);
    vec2 w45 = unpackHalf2x16(q.z), w67 = unpackHalf2x16(q.w);
    acc = fma(w01.x, xa.x, acc);
    acc = fma(w01.y, xa.y, acc);
    acc = fma(w23.x, xa.z, acc);
    acc = fma(w23.y, xa.w, acc);
    acc = fma(w45.x, xc.x, acc);
    acc = fma(w45.y, xc.y, acc);
    acc = fma(w67.x, xc.z, acc);
    acc = fma(w67.y, xc.w, acc);
}
#endif

void main() {
    uint lane = gl_LocalInvocationID.x, seg = gl_LocalInvocationID.y;
    uint col0 = gl_WorkGroupID.x * CB;
    uint row_wg = gl_WorkGroupID.y * WRT;      // first row of the workgroup within the chunk
    uint blk = row_wg / RB;                    // its row block within the chunk
    uint gblk = pc.blk0 + blk;                 // ... within the stacked rows
    // The group, uniform over the workgroup (groups start on row blocks).
    uint g = gblk >= pc.blk_2 && pc.n_groups > 2u ? 2u : gblk >= pc.blk_1 && pc.n_groups > 1u ? 1u : 0u;
    uint gblk0 = g == 2u ? pc.blk_2 : g == 1u ? pc.blk_1 : 0u;
    uint g_rows = g == 2u ? pc.rows_2 : g == 1u ? pc.rows_1 : pc.rows_0;
    uint x_off = g == 2u ? pc.x_off_2 : g == 1u ? pc.x_off_1 : pc.x_off_0;
    uint y_off = g == 2u ? pc.y_off_2 : g == 1u ? pc.y_off_1 : pc.y_off_0;
    uint y_stride = g == 2u ? pc.y_stride_2 : g == 1u ? pc.y_stride_1 : pc.y_stride_0;
    uint epilogue = g == 2u ? pc.epi_2 : g == 1u ? pc.epi_1 : pc.epi_0;

    uint nc = pc.K / 8u;
    uint c_begin = min(seg * pc.cps, nc), c_end = min(c_begin + pc.cps, nc);
    uint xrow = pc.K / 4u;
    uint xb[CB];
    precise float acc[RT][CB];
    [[unroll]] for (uint b = 0u; b < CB; b++) {
        xb[b] = x_off + min(col0 + b, pc.T - 1u) * xrow;  // tokens past T compute garbage, never stored
        [[unroll]] for (uint r = 0u; r < RT; r++) acc[r][b] = 0.0;
    }
    uint wi = blk * nc * RB + row_wg % RB + lane;
#if XS
    uint tid = seg * WR + lane;
#if LN
    uint x0 = 4u * xb[0];  // the row's first element
    vec2 st = ln_stats(x0, pc.K);
    uint sb = (info[pc.seq_slot_off] * 5u + pc.state_row) * pc.K;
    uint mix = g == 2u ? pc.mix_2 : g == 1u ? pc.mix_1 : pc.mix_0;
    if (g == pc.xx_group && tid < WR) {
        uint n = (gblk - gblk0) * RB + row_wg % RB + tid;
        if (n < g_rows)
            xx[n] = ln_norm(LN_X(x0 + n), st, params[pc.ln_w_off + n], params[pc.ln_b_off + n]);
    }
#endif
#if WKV
    uint x0 = 4u * xb[0], ks = pc.kvr_stride;  // k, v and r of channel c: x0 + c, + ks, + 2 ks
    uint sa = info[pc.seq_slot_off] * 5u * pc.K;  // the slot's state (K = C)
    if (tid < WR) {
        uint n = (gblk - gblk0) * RB + row_wg % RB + tid;
        if (n < g_rows) {
            float aa = state[sa + ROW_ATT_AA * pc.K + n], bb = state[sa + ROW_ATT_BB * pc.K + n];
            float pp = state[sa + ROW_ATT_PP * pc.K + n];
            wkv_next(aa, bb, pp, params[pc.w_off + n], X_AT(x0 + n), X_AT(x0 + ks + n));
            m[n] = aa;
            m[pc.next_stride + n] = bb;
            m[2u * pc.next_stride + n] = pp;
            state[sa + ROW_ATT_XX * pc.K + n] = xx[n];
        }
    }
#endif
    // Tile t0 holds chunks [s * cps + t0, s * cps + t0 + XT) of every segment s (zeros past the
    // segment or K). The tile loop is uniform over the workgroup (cps is a push constant).
    for (uint t0 = 0u; t0 < pc.cps; t0 += XT) {
        barrier(); // every thread is done with the previous tile
        for (uint i = tid; i < SEGS * 2u * XT; i += WR * SEGS) {
            uint s = i / (2u * XT), r = i % (2u * XT);
            uint cs = s * pc.cps + t0 + r / 2u;
            vec4 v = vec4(0.0);
            if (t0 + r / 2u < pc.cps && cs < nc) {
                v = x[xb[0] + 2u * cs + (r & 1u)];
#if LN
                // v's 4 columns from c4: their LayerNorm, shifted against the old state
                uint c4 = 8u * cs + 4u * (r & 1u);
                [[unroll]] for (uint e = 0u; e < 4u; e++) {
                    uint c = c4 + e;
                    float cur = ln_norm(v[e], st, params[pc.ln_w_off + c], params[pc.ln_b_off + c]);
                    v[e] = ln_mix(cur, state[sb + c], params[mix + c]);
                }
#endif
#if WKV
                // v holds k of 4 channels from c4: r * wkv of each, from the old state
                uint c4 = 8u * cs + 4u * (r & 1u);
                vec4 vv = x[xb[0] + ks / 4u + 2u * cs + (r & 1u)];
                vec4 rr = x[xb[0] + ks / 2u + 2u * cs + (r & 1u)];
                [[unroll]] for (uint e = 0u; e < 4u; e++) {
                    uint c = c4 + e;
                    float aa = state[sa + ROW_ATT_AA * pc.K + c], bb = state[sa + ROW_ATT_BB * pc.K + c];
                    float pp = state[sa + ROW_ATT_PP * pc.K + c];
                    v[e] = wkv_out(aa, bb, pp, params[pc.u_off + c], v[e], vv[e], rr[e]);
                }
#endif
            }
            xs[s][r] = v;
        }
        barrier();
        uint tb = min(c_begin + t0, c_end), te = min(tb + XT, c_end);
        uint c = tb;
        for (; c + UNROLL <= te; c += UNROLL) {
            uvec4 q[UNROLL];
            [[unroll]] for (uint u = 0u; u < UNROLL; u++) q[u] = w[wi + (c + u) * RB];
            [[unroll]] for (uint u = 0u; u < UNROLL; u++) {
                uint l = 2u * (c + u - tb);
                accumulate_xs(acc[0][0], q[u], xs[seg][l], xs[seg][l + 1u]);
            }
        }
        for (; c < te; c++) {
            uint l = 2u * (c - tb);
            accumulate_xs(acc[0][0], w[wi + c * RB], xs[seg][l], xs[seg][l + 1u]);
        }
    }
#elif RT > 1
    uint c = c_begin;
    for (; c + UNROLL <= c_end; c += UNROLL) {
        uvec4 q[UNROLL][RT];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++)
            [[unroll]] for (uint r = 0u; r < RT; r++) q[u][r] = w[wi + WR * r + (c + u) * RB];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++) accumulate_rt(acc, xb, q[u], c + u);
    }
    for (; c < c_end; c++) {
        uvec4 q[RT];
        [[unroll]] for (uint r = 0u; r < RT; r++) q[r] = w[wi + WR * r + c * RB];
        accumulate_rt(acc, xb, q, c);
    }
    uint tid = seg * WR + lane;
#else
    uint c = c_begin;
    // UNROLL weight loads in flight, then their products in k order (the same order as one at a
    // time, so the unrolling changes no bit of the result).
    for (; c + UNROLL <= c_end; c += UNROLL) {
        uvec4 q[UNROLL];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++) q[u] = w[wi + (c + u) * RB];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++) accumulate(acc[0], xb, q[u], c + u);
    }
    for (; c < c_end; c++) accumulate(acc[0], xb, w[wi + c * RB], c);
    uint tid = seg * WR + lane;
#endif
    [[unroll]] for (uint g0 = 0u; g0 < CB; g0 += G) {
        [[unroll]] for (uint r = 0u; r < RT; r++)
            [[unroll]] for (uint j = 0u; j < G; j++) part[seg][j][lane + WR * r] = acc[r][g0 + j];
        barrier();
        for (uint i = tid; i < G * WRT; i += WR * SEGS) {
            uint j = i / WRT, r = i % WRT;
            precise float s = part[0][j][r];
            [[unroll]] for (uint k = 1u; k < SEGS; k++) s = s + part[k][j][r];  // segments in order
            uint t = col0 + g0 + j, n = (gblk - gblk0) * RB + row_wg % RB + r;
            if (t < pc.T && n < g_rows) {
                uint o = t * y_stride + n;
                uint i = y_off + o;
                if (epilogue == EPI_NONE) {
                    y[i] = s;
                } else if (epilogue == EPI_SIGMOID) {
                    y[i] = 1.0 / (1.0 + exp(-s));
                } else if (epilogue == EPI_RELU_SQ) {
                    float p = max(s, 0.0);
                    y[i] = p * p;
                } else if (epilogue == EPI_ADD) {
                    y[i] = y[i] + s;
                } else {
                    y[i] = y[i] + m[pc.m_off + o] * s;
                }
            }
        }
        barrier();
    }
}
