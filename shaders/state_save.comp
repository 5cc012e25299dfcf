#version 450
// Saves n_rows rows of each sequence's last token as consecutive rows of its slot's state, from
// state_row: the last token's xx as the shift state (one row, src_stride C), or, after a
// one-token step whose products computed WKV and a LayerNorm themselves, the rows they wrote
// (aa, bb, pp and maybe ffn_xx, src_stride apart).
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
    uint n_rows;      // rows saved
    uint src_stride;  // floats between source rows (and tokens)
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint s = gl_WorkGroupID.y;
    if (c >= pc.C) return;
    uint last = info[pc.seq_first_off + s] + info[pc.seq_len_off + s] - 1u;
    uint slot = info[pc.seq_slot_off + s];
    for (uint r = 0u; r < pc.n_rows; r++)
        state[(slot * 5u + pc.state_row + r) * pc.C + c] = xx[(last + r) * pc.src_stride + c];
}
