#version 450
// y = W x for the tokens of a step: W is fp16 (n_rows, K) in interleaved row blocks, x is fp32
// [T][K], accumulation fp32. A workgroup computes RB rows for CB tokens; its SEGS thread rows
// each sum one fixed K segment sequentially (multiply, then add, in k order), and the segments
// are then added in order 0..SEGS-1. That order depends on K alone, never on T, CB or the
// token's place in the step, so every variant (CB = 1, 8, 32) gives bitwise the same y
// (batch invariance). Each weight is loaded once per workgroup and used for all CB tokens.
//
// Weight layout (per chunk of rows): [n_rows / RB][K / 8][RB] uvec4, 8 halves per uvec4, so the RB
// lanes of a segment read RB consecutive 16-byte words: fully coalesced.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#ifndef CB
#define CB 1
#endif
#define RB 32u
#define SEGS 8u
// Weight loads in flight per thread: deep for the bandwidth-bound variants, one for CB = 32,
// whose accumulators already fill the registers. It never changes the order of the sums.
#if CB >= 32
#define UNROLL 1u
#else
#define UNROLL 4u
#endif
#if CB < 8
#define G CB
#else
#define G 8
#endif

#define EPI_NONE 0u     // y = s
#define EPI_SIGMOID 1u  // y = sigmoid(s)             (receptance)
#define EPI_RELU_SQ 2u  // y = max(s, 0)^2            (channel-mix key)
#define EPI_ADD 3u      // y += s                     (residual)
#define EPI_ADD_MUL 4u  // y += m * s                 (channel-mix output gated by sigmoid(r))

layout(local_size_x = 32, local_size_y = 8) in;
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, binding = 2) buffer Y { float y[]; };
layout(std430, binding = 3) readonly buffer M { float m[]; };

layout(push_constant) uniform Push {
    uint K;        // columns of W, a multiple of 8
    uint n_rows;   // rows of W in this chunk
    uint row0;     // the chunk's first row within y's rows
    uint y_stride; // y is [T][y_stride]
    uint T;        // tokens (columns of x)
    uint cps;      // chunks of 8 columns per K segment: ceil(K / 8 / SEGS)
    uint epilogue;
} pc;

shared float part[SEGS][G][RB];

// acc[b] += w[k] * x[b][k] for the 8 columns of chunk c, k in order; precise (NoContraction) so
// that every driver rounds each product and each sum separately, the same way in every variant.
void accumulate(inout precise float acc[CB], uint xb[CB], uvec4 q, uint c) {
    vec2 w01 = unpackHalf2x16(q.x), w23 = unpackHalf2x16(q.y);
    vec2 w45 = unpackHalf2x16(q.z), w67 = unpackHalf2x16(q.w);
    [[unroll]] for (uint b = 0u; b < CB; b++) {
        vec4 xa = x[xb[b] + 2u * c], xc = x[xb[b] + 2u * c + 1u];
        acc[b] = acc[b] + w01.x * xa.x;
        acc[b] = acc[b] + w01.y * xa.y;
        acc[b] = acc[b] + w23.x * xa.z;
        acc[b] = acc[b] + w23.y * xa.w;
        acc[b] = acc[b] + w45.x * xc.x;
        acc[b] = acc[b] + w45.y * xc.y;
        acc[b] = acc[b] + w67.x * xc.z;
        acc[b] = acc[b] + w67.y * xc.w;
    }
}

void main() {
    uint lane = gl_LocalInvocationID.x, seg = gl_LocalInvocationID.y;
    uint col0 = gl_WorkGroupID.x * CB;
    uint blk = gl_WorkGroupID.y;
    uint nc = pc.K / 8u;
    uint c_begin = min(seg * pc.cps, nc), c_end = min(c_begin + pc.cps, nc);
    uint xrow = pc.K / 4u;
    uint xb[CB];
    precise float acc[CB];
    [[unroll]] for (uint b = 0u; b < CB; b++) {
        xb[b] = min(col0 + b, pc.T - 1u) * xrow;  // tokens past T compute garbage, never stored
        acc[b] = 0.0;
    }
    uint wi = blk * nc * RB + lane;
    uint c = c_begin;
    // UNROLL weight loads in flight, then their products in k order (the same order as one at a
    // time, so the unrolling changes no bit of the result).
    for (; c + UNROLL <= c_end; c += UNROLL) {
        uvec4 q[UNROLL];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++) q[u] = w[wi + (c + u) * RB];
        [[unroll]] for (uint u = 0u; u < UNROLL; u++) accumulate(acc, xb, q[u], c + u);
    }
    for (; c < c_end; c++) accumulate(acc, xb, w[wi + c * RB], c);
    uint tid = seg * RB + lane;
    [[unroll]] for (uint g0 = 0u; g0 < CB; g0 += G) {
        [[unroll]] for (uint j = 0u; j < G; j++) part[seg][j][lane] = acc[g0 + j];
        barrier();
        if (tid < G * RB) {
            uint j = tid / RB, r = tid % RB;
            precise float s = part[0][j][r];
            [[unroll]] for (uint k = 1u; k < SEGS; k++) s = s + part[k][j][r];  // segments in order
            uint t = col0 + g0 + j, n = blk * RB + r;
            if (t < pc.T && n < pc.n_rows) {
                uint i = t * pc.y_stride + pc.row0 + n;
                if (pc.epilogue == EPI_NONE) {
                    y[i] = s;
                } else if (pc.epilogue == EPI_SIGMOID) {
                    y[i] = 1.0 / (1.0 + exp(-s));
                } else if (pc.epilogue == EPI_RELU_SQ) {
                    float p = max(s, 0.0);
                    y[i] = p * p;
                } else if (pc.epilogue == EPI_ADD) {
                    y[i] = y[i] + s;
                } else {
                    y[i] = y[i] + m[i] * s;
                }
            }
        }
        barrier();
    }
}
