#version 450
// Saves the last token's xx of each sequence as the slot's shift state for the next step.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer XX { float xx[]; };
layout(std430, binding = 1) buffer State { float state[]; };  // this layer: [slot][5][C]
layout(std430, binding = 3) readonly buffer Info { uint info[]; };

layout(push_constant) uniform Push {
    uint C;
    uint state_row;
    uint seq_slot_off, seq_first_off, seq_len_off;
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint s = gl_WorkGroupID.y;
    if (c >= pc.C) return;
    uint last = info[pc.seq_first_off + s] + info[pc.seq_len_off + s] - 1u;
    uint slot = info[pc.seq_slot_off + s];
    state[(slot * 5u + pc.state_row) * pc.C + c] = xx[last * pc.C + c];
}
