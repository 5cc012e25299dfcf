#version 450
// Reads words [first, first + n) of a buffer and discards them. Recorded beside a dispatch of a
// one-token step (before the barrier after it), it reads the first bytes of the next matrix
// product's weights while the device's memory would otherwise idle (a LayerNorm, WKV, the last
// workgroups of a product), so that they are in its cache when that product starts. It changes
// no result: nothing reads what it writes, and it writes nothing unless its words XOR to one
// 128-bit value (only so that no compiler can drop the loads).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

#define PER 8u           // words (16 bytes) per thread, all loads in flight at once
layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer W { uvec4 w[]; };
layout(std430, binding = 1) writeonly buffer Sink { uvec4 sink[]; };

layout(push_constant, std430) uniform Push {
    uint first;  // the first word read
    uint n;      // words read
} pc;

void main() {
    uint base = gl_WorkGroupID.x * 256u * PER + gl_LocalInvocationID.x;
    uvec4 q[PER];
    [[unroll]] for (uint i = 0u; i < PER; i++) {
        uint j = base + i * 256u;
        q[i] = j < pc.n ? w[pc.first + j] : uvec4(0u);
    }
    uvec4 acc = uvec4(0u);
    [[unroll]] for (uint i = 0u; i < PER; i++) acc ^= q[i];
    if (all(equal(acc, uvec4(0x9e3779b9u, 0x7f4a7c15u, 0xf39cc060u, 0x5cedc834u)))) sink[0] = acc;
}
