#version 450
// y = W x on the tensor cores (GL_NV_cooperative_matrix), where the backend's tuning chooses
// them or BATON_VK_COOPMAT=1 asks: W fp16 as uploaded for matmul.comp (interleaved row blocks),
// x split into two fp16 halves, x = hi + lo
// (hi = fp16(x), lo = fp16(x - hi): about 22 bits of x, where fp16 alone keeps 11; past fp16's
// range hi stops at 65504 and lo takes the rest, up to 131008), products
// accumulated in fp32 by 16x8x8 matrix products.
//
// hi and lo are columns of x side by side: an 8x8 fragment of x holds 4 tokens, column 2 t + h
// being token t's hi (h 0) or lo (h 1), so that one product takes both halves of 4 tokens. At one
// token that is one product a chunk where hi and lo in the same column took two (and half a
// fragment's columns are the token's, where one in eight was); at many tokens, the same products
// as before for twice the accumulators.
//
// Order of the sums (the same for every variant, so batch invariance holds as far as the
// hardware's products treat each column alike): K is cut into the 8 segments of matmul.comp
// (cps chunks of 8 columns each, fixed by K alone). For each output and segment s, the products
// with hi sum from zero, one chunk at a time in k order (16x8x8 products: a chunk's 8 terms and
// the sum so far, as the hardware adds them), into H_s, and those with lo likewise into L_s. Then
// y = (H_0 + H_1 + ... + H_7) + (L_0 + L_1 + ... + L_7), each sum left to right, in plain fp32
// (each column of a fragment on its own, so a subgroup may keep them in its accumulators). The
// variants differ in how much they compute at once (RM rows, TN tokens, KR chunks a round) and
// in which subgroup sums what, never in that order.
//
// A workgroup is 8 subgroups of 32, subgroup s taking segment s of RM rows (one, two or four
// 16-row fragments: of one 32-row block, or of the two of a tile, which never spans two stacked
// parts or chunks; the second block is missing at the end of a chunk of an odd number) for TN
// tokens: split-K, so that one token has 8 subgroups' loads in flight per RM rows. FK=1
// instead: the 8 subgroups a grid of SR rows by SC columns, each taking its own RM rows (of one
// block) and TN tokens over all 8 segments, one after another, keeping the segments' sums in a
// second set of accumulators; a workgroup then covers SR x RM rows by SC x TN tokens, whose weights
// and x its subgroups share through L1, where a split-K workgroup reads x for every RM rows and
// its weights for every TN tokens from L2 (r32 t32 reads 2 bytes of x for every byte of
// weights, f128x64 one, and at 64 tokens it reads the weights once where r32 t32 reads them
// twice). Each subgroup multiplies its chunks: the weights' 16x8 fragments come straight from
// the buffer (16 rows of a chunk are 256 contiguous bytes in the interleaved layout: one
// coalesced load), each used for TN / 4 fragments of x. Split-K, the segment sums meet in
// shared memory, one 4-token fragment of columns at a time (FK: each subgroup's own sums pass
// through it on their way out). x reaches the products one of two ways:
// - staged (TN 4 or 8, steps of up to 8 tokens): per round, the workgroup splits KR chunks of
//   every segment's x for its tokens into shared memory (hi and lo side by side), meets at a
//   barrier, multiplies, and meets again;
// - XG=1: x comes already split (split.comp, one dispatch before the product) into a mirror of
//   its buffer, chunk by chunk (a chunk's hi and lo of each token, token after token: 4 tokens'
//   are an 8x8 fragment, 128 contiguous bytes), and each subgroup loads its x fragments
//   straight from there: no staging, no barrier in the rounds, subgroups never wait for each
//   other until the segment sums meet. The same values, products and order: the same bits as
//   staging. On the H100 (run E, hi and lo then in separate products) staging many-token
//   configurations ran 64-token products at 4 to 13 TFLOP/s, r32 t32 g at 25 to 42. XP=1 (gp)
//   also loads a round's x fragments a round ahead, beside its weight fragments.
//
// Stacked groups, push constants, bindings and epilogues: as matmul.comp (a subgroup's rows lie
// in one 32-row block or one tile, so in one group).
//
// EMULATE=1 (test_vk_ops, on any device): the same staging, rounds, segments, groups and
// epilogues with each 16x8x8 product done by plain fp32 arithmetic on the same fp16 values (hi
// and lo packed in one uint per element), so that everything but the cooperative-matrix calls
// themselves is tested where no device has them.
#extension GL_GOOGLE_include_directive : require
#ifndef EMULATE
#define EMULATE 0
#endif
#if !EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#endif
#include "common.glsl"
#include "split.glsl"

// ROWS, TOKENS, ROUND: the variant's RM, TN and KR (plain integers for the preprocessor).
#ifndef ROWS
#define ROWS 16             // rows per subgroup: 16, 32 or 64 (two blocks: a tile, vk_upload.h)
#endif
#ifndef TOKENS
#define TOKENS 8            // tokens per subgroup: a multiple of 4
#endif
#ifndef ROUND
#define ROUND 8             // chunks a round (staged: of every segment's x)
#endif
#ifndef DB
#define DB 0                // 1: the next round's weight fragments load during this round
#endif
#ifndef XG
#define XG 0                // 1: x split in memory by split.comp (no staging, no round barriers)
#endif
#ifndef XP
#define XP 0                // (XG) 1: a round's x fragments load with its weight fragments
#endif
#if XP && !(XG && DB)
#error "XP loads x fragments a round ahead: XG and DB only"
#endif
// FK=1: the subgroups are a grid of SR x SC (8 in all), each its own RM rows by TN tokens over
// every segment, one after another (below); else (SR = SC = 1) all 8 take the same RM x TN, one
// segment each.
#ifndef FK
#define FK 0
#endif
#if FK
#if !XG
#error "a subgroup of its own rows and tokens reads x split (XG=1)"
#endif
const uint SR = GRID_ROWS, SC = 8u / GRID_ROWS;
#else
const uint SR = 1u, SC = 1u;
#endif
const uint RM = ROWS, TN = TOKENS, KR = ROUND;
const uint RB = 32u, SEGS = 8u, THREADS = 32u * SEGS;
const uint RF = RM / 16u;   // 16-row fragments per subgroup
const uint NJ = TN / 4u;    // fragments of x (4 tokens, hi and lo) per subgroup
const uint KS = KR * 8u;    // staged columns per segment
#if !XG && TOKENS != 4 && TOKENS != 8
#error "x is staged for 4 or 8 tokens per workgroup; wider tiles read it split (XG=1)"
#endif
// Row stride of the staged x (one row per column of K): emulated a uint (hi, lo) per token;
// else halves, column 2 t + h, 8 at 4 tokens and 24 at 8 (16 bytes of padding), which put the 8
// rows of a fragment on distinct banks.
#if EMULATE
const uint TNP = TN;
#else
const uint TNP = TN == 4u ? 8u : 2u * TN + 8u;
#endif

#define EPI_NONE 0u
#define EPI_SIGMOID 1u
#define EPI_RELU_SQ 2u
#define EPI_ADD 3u
#define EPI_ADD_MUL 4u

layout(local_size_x = 256) in; // THREADS
#if EMULATE
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
#else
layout(std430, binding = 0) readonly buffer W { float16_t wh[]; };
#endif
#if XG && EMULATE
layout(std430, binding = 1) readonly buffer X { uint xsu[]; };      // split x, two halves a word
#elif XG
layout(std430, binding = 1) readonly buffer X { float16_t xsp[]; }; // split x
#else
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
#endif
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer M { float m[]; };

layout(push_constant, std430) uniform Push {
    uint K, T, cps, blk0, n_groups, m_off, blk_1, blk_2;
    uint rows_0, rows_1, rows_2;
    uint x_off_0, x_off_1, x_off_2;
    uint y_off_0, y_off_1, y_off_2;
    uint y_stride_0, y_stride_1, y_stride_2;
    uint epi_0, epi_1, epi_2;
    uint n_blk;    // the chunk's row blocks
} pc;

// x of the round, staged: [segment][KS columns][TNP].
#if XG
#elif EMULATE
shared uint xhl[SEGS * KS * TNP];   // split_hl: hi's and lo's fp16 bits
#else
shared float16_t xs[SEGS * KS * TNP];
#endif
// Segment sums of one fragment of x's columns: [segment][row][column 2 t + h].
shared float part[SEGS * RM * 8u];

// Fragment f of a workgroup whose first row is r0 of block blk (within the chunk): whether its
// block is in the chunk, and the index (in halves) of its 16 rows of chunk c in the interleaved
// layout ([block][K/8 chunks][32 rows][8 halves]).
bool frag_in(uint blk, uint r0, uint f) { return blk + (r0 + 16u * f) / RB < pc.n_blk; }
uint frag_at(uint blk, uint r0, uint f, uint nc, uint c) {
    uint fr = r0 + 16u * f;
    return (((blk + fr / RB) * nc + c) * RB + fr % RB) * 8u;
}

// Frag: a 16x8 weight fragment as the subgroup holds it; FRAG_LOAD(fr, at) loads the one whose
// rows start at `at` (halves); acc[f][j]: the subgroup's sums of fragment f by x's fragment j.
#if EMULATE
// Emulated, lane l holds rows l / 8 + 4 e (e < 4) of the 16, one uvec4 (8 halves) each, and
// acc[f][j][e] is element (row l / 8 + 4 e, column l % 8) of that product.
struct Frag { uvec4 q[4]; };
#define FRAG_LOAD(fr, at) \
    [[unroll]] for (uint e_ = 0u; e_ < 4u; e_++) \
        fr.q[e_] = w[(at) / 8u + gl_LocalInvocationID.x % 32u / 8u + 4u * e_]
float acc[RF][NJ][4];
#else
#define Frag fcoopmatNV<16, gl_ScopeSubgroup, 16, 8>
#define FRAG_LOAD(fr, at) coopMatLoadNV(fr, wh, at, 8u, false)
fcoopmatNV<32, gl_ScopeSubgroup, 16, 8> acc[RF][NJ];
#endif

// XFrag: an 8x8 fragment of x (8 columns of a chunk by 4 tokens' hi and lo) as the subgroup
// holds it; XLOAD(xf, xbase) loads a chunk's [NJ] (fragment j: the workgroup's tokens 4 j to
// 4 j + 3): staged, from the round's x in shared memory at xbase; XG, from the split x, where
// the chunk's hi of the workgroup's first token is at xbase (halves; each token's 8 hi halves
// and then its 8 lo, token after token).
#if EMULATE
// Emulated, lane l holds column l % 8's 8 halves (token l % 8 / 2's hi or lo), two a word.
struct XFrag { uint q[4]; };
#if XG
#define XLOAD(xf, xbase) \
    [[unroll]] for (uint j_ = 0u; j_ < NJ; j_++) \
        [[unroll]] for (uint i_ = 0u; i_ < 4u; i_++) \
            xf[j_].q[i_] = xsu[((xbase) + 64u * j_ + 8u * (gl_LocalInvocationID.x % 8u)) / 2u + i_]
#else
// (staged, token t's element k is xhl[xbase + k TNP + t]: hi in its low half, lo in its high)
#define XLOAD(xf, xbase) \
    [[unroll]] for (uint j_ = 0u; j_ < NJ; j_++) \
        [[unroll]] for (uint i_ = 0u; i_ < 4u; i_++) { \
            uint n_ = gl_LocalInvocationID.x % 8u, t_ = 4u * j_ + n_ / 2u, h_ = 16u * (n_ % 2u); \
            uint e0_ = xhl[(xbase) + 2u * i_ * TNP + t_] >> h_; \
            uint e1_ = xhl[(xbase) + (2u * i_ + 1u) * TNP + t_] >> h_; \
            xf[j_].q[i_] = (e0_ & 0xffffu) | (e1_ << 16u); \
        }
#endif
#else
#define XFrag fcoopmatNV<16, gl_ScopeSubgroup, 8, 8>
#if XG
#define XLOAD(xf, xbase) \
    [[unroll]] for (uint j_ = 0u; j_ < NJ; j_++) /* column n: 8 halves at 8 n */ \
        coopMatLoadNV(xf[j_], xsp, (xbase) + 64u * j_, 8u, true)
#else
#define XLOAD(xf, xbase) \
    [[unroll]] for (uint j_ = 0u; j_ < NJ; j_++) \
        coopMatLoadNV(xf[j_], xs, (xbase) + 8u * j_, TNP, false)
#endif
#endif

// acc[f][j] += the chunk's product with x's fragment j (xf[j]), for every fragment f in the
// chunk (fin: RF == 4 and the tile's second block missing, fragments 2 and 3 are not) and every
// j; a holds the chunk's RF weight fragments.
void multiply_x(Frag a[RF], XFrag xf[NJ], uint fin) {
#if EMULATE
    [[unroll]] for (uint j = 0u; j < NJ; j++)
        [[unroll]] for (uint f = 0u; f < RF; f++) {
            if (f >= fin) break;
            [[unroll]] for (uint e = 0u; e < 4u; e++) {
                float wr[8];
                vec2 p0 = unpackHalf2x16(a[f].q[e].x), p1 = unpackHalf2x16(a[f].q[e].y);
                vec2 p2 = unpackHalf2x16(a[f].q[e].z), p3 = unpackHalf2x16(a[f].q[e].w);
                wr[0] = p0.x; wr[1] = p0.y; wr[2] = p1.x; wr[3] = p1.y;
                wr[4] = p2.x; wr[5] = p2.y; wr[6] = p3.x; wr[7] = p3.y;
                precise float s = acc[f][j][e];
                for (uint kk = 0u; kk < 8u; kk++) {
                    vec2 xv = unpackHalf2x16(xf[j].q[kk / 2u]);
                    s = fma(wr[kk], (kk & 1u) != 0u ? xv.y : xv.x, s);
                }
                acc[f][j][e] = s;
            }
        }
#else
    [[unroll]] for (uint j = 0u; j < NJ; j++)
        [[unroll]] for (uint f = 0u; f < RF; f++) {
            if (f >= fin) break;  // uniform over the subgroup: its blocks
            acc[f][j] = coopMatMulAddNV(a[f], xf[j], acc[f][j]);
        }
#endif
}

// The same, x loaded now from xbase (XLOAD's).
void multiply(Frag a[RF], uint xbase, uint fin) {
    XFrag xf[NJ];
    XLOAD(xf, xbase);
    multiply_x(a, xf, fin);
}

#if !XG
// Stages round q0 of x: KR chunks of every segment for the workgroup's first tv tokens (from
// col0; x_off: the group's input), one vec4 (4 columns) per item, consecutive items along a
// token's row, as hi and lo side by side. Zeros past a segment or K.
void stage_x(uint q0, uint tv, uint col0, uint x_off) {
    uint nc = pc.K / 8u, xrow = pc.K / 4u;
    for (uint i = gl_LocalInvocationID.x; i < SEGS * tv * (KS / 4u); i += THREADS) {
        uint s = i / (tv * (KS / 4u)), rem = i % (tv * (KS / 4u));
        uint t = rem / (KS / 4u), k4 = rem % (KS / 4u);
        uint cq = q0 + k4 / 2u, c = s * pc.cps + cq;
        vec4 v = vec4(0.0);
        if (cq < pc.cps && c < nc)
            v = x[x_off + (col0 + t) * xrow + 2u * c + (k4 & 1u)];
        uint o = (s * KS + 4u * k4) * TNP;
        [[unroll]] for (uint e = 0u; e < 4u; e++) {
            uint hl = split_hl(v[e]);
#if EMULATE
            xhl[o + e * TNP + t] = hl;
#else
            f16vec2 h = unpackFloat2x16(hl); // a bit cast
            xs[o + e * TNP + 2u * t] = h.x;
            xs[o + e * TNP + 2u * t + 1u] = h.y;
#endif
        }
    }
}
#endif

// The round loop's parts, as macros so that the fragment arrays stay in registers whatever the
// compiler inlines (no copies of cooperative matrices). They use main()'s blk, r0, fin, nc,
// c_begin, c_end (the segment the subgroup is on: chunks [c_begin, c_end)), sg and (XG) xg0.
//
// XBASE(q, cc): multiply()'s xbase for chunk cc of round q: staged, the round's chunk cc of the
// subgroup's segment; XG, chunk c_begin + q + cc in the split x (16 halves a token).
// STAGE(q), MET: staging round q and meeting after its products (XG: nothing).
#if XG
#define XBASE(q, cc) (xg0 + 16u * pc.T * (c_begin + (q) + (cc)))
#define STAGE(q)
#define MET
#else
#define XBASE(q, cc) ((sg * KS + (cc) * 8u) * TNP)
#define STAGE(q) stage_x(q, tv, col0, x_off); barrier();
#define MET barrier();
#endif
//
// XP: LOAD_X(XA, q) loads round q's x fragments into XA ([KR][NJ]) beside its weights', and
// MULTIPLY_WHOLE takes them from there; otherwise each chunk's products load their x as they go.
#if XP
#define LOAD_X(XA, q) [[unroll]] for (uint cc = 0u; cc < KR; cc++) { XLOAD(XA[cc], XBASE(q, cc)); }
#define MULTIPLY_WHOLE(A, XA, q, cc) multiply_x(A[cc], XA[cc], fin)
#else
#define LOAD_X(XA, q)
#define MULTIPLY_WHOLE(A, XA, q, cc) multiply(A[cc], XBASE(q, cc), fin)
#endif
//
// LOAD_ROUND(A, XA, q): every fragment of the subgroup's round q into A (a whole round: q + KR
// chunks within the segment), KR * RF loads in flight at once (XP: and its x's into XA).
#define LOAD_ROUND(A, XA, q) \
    [[unroll]] for (uint cc = 0u; cc < KR; cc++) \
        [[unroll]] for (uint f = 0u; f < RF; f++) { \
            if (f >= fin) break; \
            FRAG_LOAD(A[cc][f], frag_at(blk, r0, f, nc, c_begin + (q) + cc)); \
        } \
    LOAD_X(XA, q)
// MULTIPLY_ROUND(A, XA, whole, q): round q's products, in chunk order: from A (and XA) where the
// round is whole (loaded before), else chunk by chunk up to the segment's end (its last, partial
// round).
#define MULTIPLY_ROUND(A, XA, whole, q) \
    if (whole) { \
        [[unroll]] for (uint cc = 0u; cc < KR; cc++) \
            MULTIPLY_WHOLE(A, XA, q, cc); \
    } else { \
        [[unroll]] for (uint cc = 0u; cc < KR; cc++) { \
            uint c = c_begin + (q) + cc; \
            if (c >= c_end) break; /* uniform over the subgroup */ \
            Frag ap[RF]; \
            [[unroll]] for (uint f = 0u; f < RF; f++) { \
                if (f >= fin) break; \
                FRAG_LOAD(ap[f], frag_at(blk, r0, f, nc, c)); \
            } \
            multiply(ap, XBASE(q, cc), fin); \
        } \
    }
#if DB
// DO_ROUND(A, XA, B, XB, q): round q. DB = 1, double-buffered: the round multiplies the
// fragments A (XA) that the round before loaded, and first issues the loads of round q + KR into
// B (XB), so that they are in flight through this round's staging, barrier and products: the
// memory never waits for a round's products. Twice the registers for fragments; the same
// products in the same order.
#define DO_ROUND(A, XA, B, XB, q) { \
        bool whole_ = c_begin + (q) + KR <= c_end; \
        if (c_begin + (q) + 2u * KR <= c_end) { LOAD_ROUND(B, XB, (q) + KR) } \
        STAGE(q) \
        MULTIPLY_ROUND(A, XA, whole_, q) \
        MET \
    }
#else
// DB = 0: the round loads its own fragments first, in flight while its x is staged and the
// workgroup meets at the barrier.
#define DO_ROUND(A, XA, B, XB, q) { \
        bool whole_ = c_begin + (q) + KR <= c_end; \
        if (whole_) { LOAD_ROUND(A, XA, q) } \
        STAGE(q) \
        MULTIPLY_ROUND(A, XA, whole_, q) \
        MET \
    }
#endif

// SEGMENT(): the subgroup's segment [c_begin, c_end) into acc, round by round (DB: the rounds'
// fragments in a0 and a1 by turns, the first round's loaded first).
#if DB
#define SEGMENT() \
    if (c_begin + KR <= c_end) { LOAD_ROUND(a0, x0, 0u) } \
    for (uint q0 = 0u; q0 < pc.cps; q0 += 2u * KR) { \
        DO_ROUND(a0, x0, a1, x1, q0) \
        if (q0 + KR >= pc.cps) break; \
        DO_ROUND(a1, x1, a0, x0, q0 + KR) \
    }
#else
#define SEGMENT() for (uint q0 = 0u; q0 < pc.cps; q0 += KR) DO_ROUND(a0, x0, a0, x0, q0)
#endif

// y's element for token tok and row `row` of the group, its sum s, through the group's
// epilogue; nothing past the step's tokens or the group's rows.
void emit(uint tok, uint row, uint g_rows, uint y_off, uint y_stride, uint epilogue, float s) {
    if (tok >= pc.T || row >= g_rows) return;
    uint o = tok * y_stride + row;
    uint yi = y_off + o;
    if (epilogue == EPI_NONE) {
        y[yi] = s;
    } else if (epilogue == EPI_SIGMOID) {
        y[yi] = 1.0 / (1.0 + exp(-s));
    } else if (epilogue == EPI_RELU_SQ) {
        float p = max(s, 0.0);
        y[yi] = p * p;
    } else if (epilogue == EPI_ADD) {
        y[yi] = y[yi] + s;
    } else {
        y[yi] = y[yi] + m[pc.m_off + o] * s;
    }
}

#if EMULATE
#define ACC_ZERO(a) [[unroll]] for (uint e_ = 0u; e_ < 4u; e_++) a[e_] = 0.0
#define ACC_STORE(a, at) \
    [[unroll]] for (uint e_ = 0u; e_ < 4u; e_++) { \
        uint el_ = gl_LocalInvocationID.x % 32u + 32u * e_; \
        part[(at) + (el_ / 8u) * 8u + el_ % 8u] = a[e_]; \
    }
#else
#define ACC_ZERO(a) a = fcoopmatNV<32, gl_ScopeSubgroup, 16, 8>(0.0)
#define ACC_STORE(a, at) coopMatStoreNV(a, part, at, 8u, false)
#endif

void main() {
    uint tid = gl_LocalInvocationID.x, sg = tid / 32u;
    // The subgroup's place in the grid (FK; else every subgroup at 0, 0: the workgroup's rows and
    // tokens), its first token and its first row within the chunk.
    uint sr = sg / SC % SR, sc = sg % SC;
    uint col0 = (gl_WorkGroupID.x * SC + sc) * TN;
    uint row_wg = (gl_WorkGroupID.y * SR + sr) * RM;
    uint blk = row_wg / RB;                    // its row block within the chunk
    uint r0 = row_wg % RB;                     // its first row within the block
    uint gblk = pc.blk0 + blk;
    uint g = gblk >= pc.blk_2 && pc.n_groups > 2u ? 2u : gblk >= pc.blk_1 && pc.n_groups > 1u ? 1u : 0u;
    uint gblk0 = g == 2u ? pc.blk_2 : g == 1u ? pc.blk_1 : 0u;
    uint g_rows = g == 2u ? pc.rows_2 : g == 1u ? pc.rows_1 : pc.rows_0;
    uint x_off = g == 2u ? pc.x_off_2 : g == 1u ? pc.x_off_1 : pc.x_off_0;
    uint y_off = g == 2u ? pc.y_off_2 : g == 1u ? pc.y_off_1 : pc.y_off_0;
    uint y_stride = g == 2u ? pc.y_stride_2 : g == 1u ? pc.y_stride_1 : pc.y_stride_0;
    uint epilogue = g == 2u ? pc.epi_2 : g == 1u ? pc.epi_1 : pc.epi_0;

    uint nc = pc.K / 8u;
    // The fragments whose block is in the chunk: all but where a tile's second block is missing
    // (FK: none where the subgroup's rows are past the chunk's).
    uint fin = 0u;
    [[unroll]] for (uint f = 0u; f < RF; f++) fin += frag_in(blk, r0, f) ? 1u : 0u;
    uint c_begin, c_end;

#if XG
    // The workgroup's columns past the step's tokens read whatever the split x holds there (the
    // next chunk's first tokens; past the last chunk, up to 32 bytes for each of the
    // workgroup's tokens past the group's x, well within the split x's 64 rows of slack):
    // their outputs are never stored, and a product's output column reads only its own column
    // of x. xg0: the split x's chunk 0 of its first token, in halves (the group's x holds T
    // tokens of a chunk's 16 halves, chunk after chunk).
    uint xg0 = x_off * 8u + col0 * 16u;
#else
    // The workgroup's tokens that are in the step (tv <= TN; fewer in a small step or the last
    // workgroup of a larger one): only their columns of x are staged each round. The others are
    // zeroed once here and stay zero, as the products see them (a product's output column reads
    // only its own column of x; those outputs are never stored). Round 0's barrier orders these
    // stores before any read.
    uint tv = min(TN, pc.T - col0);
    for (uint i = tid; tv < TN && i < SEGS * KS * TNP; i += THREADS) {
        if ((EMULATE != 0 ? i % TNP : i % TNP / 2u) < tv) continue; // column 2 t + h: token t
#if EMULATE
        xhl[i] = 0u;
#else
        xs[i] = float16_t(0.0);
#endif
    }
#endif

    // Rounds are uniform over the workgroup (cps is a push constant); a subgroup whose segment
    // has no chunks left in a round only stages and meets the others at the barriers.
    Frag a0[KR][RF];
#if DB
    Frag a1[KR][RF];
#endif
#if XP
    XFrag x0[KR][NJ], x1[KR][NJ];
#endif
#if FK
    // Every segment in turn, each summed from zero in acc; tot[f][j] keeps hi's and lo's sums of
    // the segments so far (element-wise: H_0 + H_1 + ..., L_0 + L_1 + ...), as the split-K
    // workgroups add theirs in shared memory below.
#if EMULATE
    float tot[RF][NJ][4];
#else
    fcoopmatNV<32, gl_ScopeSubgroup, 16, 8> tot[RF][NJ];
#endif
    for (uint s = 0u; s < SEGS; s++) {
        c_begin = min(s * pc.cps, nc);
        c_end = min(c_begin + pc.cps, nc);
        [[unroll]] for (uint f = 0u; f < RF; f++)
            [[unroll]] for (uint j = 0u; j < NJ; j++) ACC_ZERO(acc[f][j]);
        SEGMENT()
        [[unroll]] for (uint f = 0u; f < RF; f++)
            [[unroll]] for (uint j = 0u; j < NJ; j++) {
#if EMULATE
                [[unroll]] for (uint e = 0u; e < 4u; e++) {
                    precise float t = s == 0u ? acc[f][j][e] : tot[f][j][e] + acc[f][j][e];
                    tot[f][j][e] = t;
                }
#else
                // (component by component: Debian 12's glslang crashes optimizing a `+` of two
                // cooperative matrices; the same adds, each invocation's own components alike)
                if (s == 0u)
                    tot[f][j] = acc[f][j];
                else
                    for (int i = 0; i < tot[f][j].length(); i++) tot[f][j][i] = tot[f][j][i] + acc[f][j][i];
#endif
            }
    }
    // The subgroup's own sums, one fragment of x's columns (4 tokens) at a time through its part
    // of shared memory: hi's plus lo's, then the epilogue. Barriers, not a subgroup's own: every
    // subgroup runs the same NJ rounds.
    [[unroll]] for (uint j = 0u; j < NJ; j++) {
        [[unroll]] for (uint f = 0u; f < RF; f++) ACC_STORE(tot[f][j], (sg * RM + 16u * f) * 8u);
        barrier();
        for (uint e = tid % 32u; e < RM * 4u; e += 32u) {
            uint r = e / 4u, n = 2u * (e % 4u), at = (sg * RM + r) * 8u + n;
            precise float sum = part[at] + part[at + 1u];
            if (r / 16u < fin)
                emit(col0 + 4u * j + n / 2u, (gblk - gblk0) * RB + r0 + r, g_rows, y_off, y_stride,
                     epilogue, sum);
        }
        barrier();
    }
#else
    // This subgroup's segment: chunks [c_begin, c_end).
    c_begin = min(sg * pc.cps, nc);
    c_end = min(c_begin + pc.cps, nc);
    [[unroll]] for (uint f = 0u; f < RF; f++)
        [[unroll]] for (uint j = 0u; j < NJ; j++) ACC_ZERO(acc[f][j]);
    SEGMENT()

    // The segment sums, one fragment of x's columns (4 tokens) at a time: hi's sums of the 8
    // segments added in order 0..7, lo's likewise, then hi's plus lo's, then the epilogue.
    [[unroll]] for (uint j = 0u; j < NJ; j++) {
        [[unroll]] for (uint f = 0u; f < RF; f++) ACC_STORE(acc[f][j], (sg * RM + 16u * f) * 8u);
        barrier();
        for (uint e = tid; e < RM * 4u; e += THREADS) {
            uint r = e / 4u, n = 2u * (e % 4u);
            precise float h = part[r * 8u + n], l = part[r * 8u + n + 1u];
            [[unroll]] for (uint k = 1u; k < SEGS; k++) {
                h = h + part[(k * RM + r) * 8u + n];
                l = l + part[(k * RM + r) * 8u + n + 1u];
            }
            precise float sum = h + l;
            if (r / 16u < fin)
                emit(col0 + 4u * j + n / 2u, (gblk - gblk0) * RB + r0 + r, g_rows, y_off, y_stride,
                     epilogue, sum);
        }
        barrier();
    }
#endif
}
