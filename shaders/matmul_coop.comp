#version 450
// y = W x on the tensor cores (GL_NV_cooperative_matrix), opt-in (BATON_VK_COOPMAT=1): W fp16 as
// in matmul.comp (interleaved row blocks), x rounded to fp16, products accumulated in fp32. A
// workgroup computes one row block (32 rows, two subgroups of 16) for TN tokens: K in tiles of
// KT staged in shared memory (W re-laid row-major, x transposed to K x tokens), each tile
// multiplied 16 columns at a time by 16x8x16 matrix products, in k order. The order depends on
// K alone, never on T or a token's place, and every matmul of the engine runs here for every
// token count once this variant is chosen, so batch invariance holds as far as the hardware's
// products treat each column alike. Rounding x to fp16 changes the numerics: the fixture bounds
// must be re-checked (test_vk_backend reports them).
//
// Stacked groups, push constants, bindings and epilogues: as matmul.comp.
//
// EMULATE=1 (test_vk_ops only, on any device): the same staging, tiles and epilogues with the
// 16x8x16 products done by plain fp32 arithmetic on the same fp16 values, so that everything but
// the cooperative-matrix calls themselves is tested where no device has them.
#extension GL_GOOGLE_include_directive : require
#ifndef EMULATE
#define EMULATE 0
#endif
#if !EMULATE
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#define HT float16_t
#else
#define HT float
#endif
#include "common.glsl"

#define RB 32u
#define TN 32u              // tokens per workgroup
#define KT 64u              // columns of W per staged tile
#define SA (KT + 8u)        // row stride of the staged W (halves; 144 bytes, 16-byte aligned)
#define SB (TN + 8u)        // row stride of the staged x (halves)
#define SC (TN + 4u)        // row stride of the results (floats)
#define THREADS 64u         // two subgroups of 32 (the engine checks the subgroup size)

#define EPI_NONE 0u
#define EPI_SIGMOID 1u
#define EPI_RELU_SQ 2u
#define EPI_ADD 3u
#define EPI_ADD_MUL 4u

layout(local_size_x = THREADS) in;
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer M { float m[]; };

layout(push_constant, std430) uniform Push {
    uint K, T, cps, blk0, n_groups, m_off, blk_1, blk_2;
    uint rows_0, rows_1, rows_2;
    uint x_off_0, x_off_1, x_off_2;
    uint y_off_0, y_off_1, y_off_2;
    uint y_stride_0, y_stride_1, y_stride_2;
    uint epi_0, epi_1, epi_2;
} pc;

shared HT sa[RB * SA];          // W tile: [32 rows][KT columns]
shared HT sb[KT * SB];          // x tile: [KT columns][TN tokens]
shared float sc[RB * SC];       // y: [32 rows][TN tokens]

void main() {
    uint tid = gl_LocalInvocationID.x, sg = tid / 32u;
    uint col0 = gl_WorkGroupID.x * TN;
    uint blk = gl_WorkGroupID.y;
    uint gblk = pc.blk0 + blk;
    uint g = gblk >= pc.blk_2 && pc.n_groups > 2u ? 2u : gblk >= pc.blk_1 && pc.n_groups > 1u ? 1u : 0u;
    uint gblk0 = g == 2u ? pc.blk_2 : g == 1u ? pc.blk_1 : 0u;
    uint g_rows = g == 2u ? pc.rows_2 : g == 1u ? pc.rows_1 : pc.rows_0;
    uint x_off = g == 2u ? pc.x_off_2 : g == 1u ? pc.x_off_1 : pc.x_off_0;
    uint y_off = g == 2u ? pc.y_off_2 : g == 1u ? pc.y_off_1 : pc.y_off_0;
    uint y_stride = g == 2u ? pc.y_stride_2 : g == 1u ? pc.y_stride_1 : pc.y_stride_0;
    uint epilogue = g == 2u ? pc.epi_2 : g == 1u ? pc.epi_1 : pc.epi_0;

    uint nc = pc.K / 8u, xrow = pc.K / 4u;
#if EMULATE
    float acc[RB * TN / THREADS]; // element e: row (tid + THREADS e) % RB, token (tid + THREADS e) / RB
    [[unroll]] for (uint e = 0u; e < RB * TN / THREADS; e++) acc[e] = 0.0;
#else
    fcoopmatNV<32, gl_ScopeSubgroup, 16, 8> acc[4];
    [[unroll]] for (uint j = 0u; j < 4u; j++) acc[j] = fcoopmatNV<32, gl_ScopeSubgroup, 16, 8>(0.0);
#endif
    for (uint k0 = 0u; k0 < pc.K; k0 += KT) {
        // W: the block's 32 rows x KT / 8 chunks, one 16-byte word (8 halves of a row) each.
        for (uint i = tid; i < RB * (KT / 8u); i += THREADS) {
            uint r = i % RB, cc = i / RB, c = k0 / 8u + cc;
            uvec4 q = c < nc ? w[(blk * nc + c) * RB + r] : uvec4(0u);
            uint o = r * SA + cc * 8u;
#if EMULATE
            vec2 h0 = unpackHalf2x16(q.x), h1 = unpackHalf2x16(q.y);
            vec2 h2 = unpackHalf2x16(q.z), h3 = unpackHalf2x16(q.w);
#else
            f16vec2 h0 = unpackFloat2x16(q.x), h1 = unpackFloat2x16(q.y);
            f16vec2 h2 = unpackFloat2x16(q.z), h3 = unpackFloat2x16(q.w);
#endif
            sa[o] = h0.x; sa[o + 1u] = h0.y; sa[o + 2u] = h1.x; sa[o + 3u] = h1.y;
            sa[o + 4u] = h2.x; sa[o + 5u] = h2.y; sa[o + 6u] = h3.x; sa[o + 7u] = h3.y;
        }
        // x: TN tokens x KT columns, rounded to fp16 (zeros past T and K).
        for (uint i = tid; i < TN * (KT / 4u); i += THREADS) {
            uint k4 = i % (KT / 4u), t = i / (KT / 4u), k = k0 + 4u * k4;
            vec4 v = vec4(0.0);
            if (col0 + t < pc.T && k < pc.K) v = x[x_off + (col0 + t) * xrow + k / 4u];
            uint o = 4u * k4 * SB + t;
#if EMULATE
            vec2 lo = unpackHalf2x16(packHalf2x16(v.xy)), hi = unpackHalf2x16(packHalf2x16(v.zw));
            sb[o] = lo.x;
            sb[o + SB] = lo.y;
            sb[o + 2u * SB] = hi.x;
            sb[o + 3u * SB] = hi.y;
#else
            sb[o] = float16_t(v.x);
            sb[o + SB] = float16_t(v.y);
            sb[o + 2u * SB] = float16_t(v.z);
            sb[o + 3u * SB] = float16_t(v.w);
#endif
        }
        barrier();
#if EMULATE
        [[unroll]] for (uint e = 0u; e < RB * TN / THREADS; e++) {
            uint r = (tid + THREADS * e) % RB, t = (tid + THREADS * e) / RB;
            for (uint k = 0u; k < KT; k++) acc[e] = fma(sa[r * SA + k], sb[k * SB + t], acc[e]);
        }
#else
        [[unroll]] for (uint kk = 0u; kk < KT; kk += 16u) {
            fcoopmatNV<16, gl_ScopeSubgroup, 16, 16> a;
            coopMatLoadNV(a, sa, sg * 16u * SA + kk, SA, false);
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                fcoopmatNV<16, gl_ScopeSubgroup, 16, 8> b;
                coopMatLoadNV(b, sb, kk * SB + 8u * j, SB, false);
                acc[j] = coopMatMulAddNV(a, b, acc[j]);
            }
        }
#endif
        barrier();
    }
#if EMULATE
    [[unroll]] for (uint e = 0u; e < RB * TN / THREADS; e++)
        sc[((tid + THREADS * e) % RB) * SC + (tid + THREADS * e) / RB] = acc[e];
#else
    [[unroll]] for (uint j = 0u; j < 4u; j++) coopMatStoreNV(acc[j], sc, sg * 16u * SC + 8u * j, SC, false);
#endif
    barrier();
    for (uint i = tid; i < RB * TN; i += THREADS) {
        uint r = i % RB, t = i / RB;
        float s = sc[r * SC + t];
        uint tok = col0 + t, n = (gblk - gblk0) * RB + r;
        if (tok < pc.T && n < g_rows) {
            uint o = tok * y_stride + n;
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
    }
}
