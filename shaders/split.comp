#version 450
// x split for the tensor cores' XG matmuls (matmul_coop.comp XG=1), which read it from memory
// instead of staging it: each 8-column chunk of a token's row, 8 floats (32 bytes), becomes its
// 8 hi and then 8 lo halves (split.glsl), 32 bytes in a mirror buffer over the same bytes as the
// group's x (T rows of K), reordered chunk by chunk: chunk c of token t at (c T + t) 32 bytes
// from the group's start, so that 4 tokens' hi and lo of a chunk, an 8x8 fragment of the
// products' x, are 128 contiguous bytes. Up to three stacked groups, each its own input.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "split.glsl"

layout(local_size_x = 64) in;
layout(std430, binding = 1) readonly buffer X { vec4 x[]; };
layout(std430, binding = 2) writeonly buffer Y { uvec4 s[]; };

layout(push_constant, std430) uniform Push {
    uint K, T, n_groups;
    uint x_off_0, x_off_1, x_off_2; // each group's x (vec4s): T rows of K
} pc;

void main() {
    uint nc = pc.K / 8u, per_group = pc.T * nc;
    // One chunk per invocation, consecutive ones along a row; as many rounds as the grid needs.
    for (uint i = gl_GlobalInvocationID.x; i < pc.n_groups * per_group; i += gl_NumWorkGroups.x * 64u) {
        uint g = i / per_group, r = i % per_group, t = r / nc, c = r % nc;
        uint x_off = g == 2u ? pc.x_off_2 : g == 1u ? pc.x_off_1 : pc.x_off_0;
        uint at = x_off + t * (pc.K / 4u) + 2u * c;
        vec4 a = x[at], b = x[at + 1u];
        uint p[8] = uint[8](split_hl(a.x), split_hl(a.y), split_hl(a.z), split_hl(a.w),
                            split_hl(b.x), split_hl(b.y), split_hl(b.z), split_hl(b.w));
        uvec4 hi, lo;
        [[unroll]] for (uint e = 0u; e < 4u; e++) {
            hi[e] = (p[2u * e] & 0xffffu) | (p[2u * e + 1u] << 16u);
            lo[e] = (p[2u * e] >> 16u) | (p[2u * e + 1u] & 0xffff0000u);
        }
        uint to = x_off + 2u * (c * pc.T + t);
        s[to] = hi;
        s[to + 1u] = lo;
    }
}
