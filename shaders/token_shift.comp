#version 450
// Token shift: out_j[t] = xx[t] * mix_j + prev * (1 - mix_j), prev = xx[t - 1] within the
// sequence, or the slot's saved xx for its first token (the reference's sx).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer XX { float xx[]; };
layout(std430, binding = 1) readonly buffer State { float state[]; };  // this layer: [slot][5][C]
layout(std430, binding = 2) readonly buffer Params { float params[]; };
layout(std430, binding = 3) readonly buffer Info { uint info[]; };
layout(std430, binding = 4) writeonly buffer Out0 { float out0[]; };
layout(std430, binding = 5) writeonly buffer Out1 { float out1[]; };
layout(std430, binding = 6) writeonly buffer Out2 { float out2[]; };

layout(push_constant) uniform Push {
    uint C;
    uint state_row;              // ROW_ATT_XX or ROW_FFN_XX
    uint n_out;                  // 2 (channel mix: k, r) or 3 (time mix: k, v, r)
    uint mix0_off, mix1_off, mix2_off;
    uint tok_seq_off, seq_slot_off, seq_first_off;
} pc;

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint t = gl_WorkGroupID.y;
    if (c >= pc.C) return;
    uint seq = info[pc.tok_seq_off + t];
    uint slot = info[pc.seq_slot_off + seq];
    float cur = xx[t * pc.C + c];
    float prev = t == info[pc.seq_first_off + seq] ? state[(slot * 5u + pc.state_row) * pc.C + c]
                                                   : xx[(t - 1u) * pc.C + c];
    float m0 = params[pc.mix0_off + c];
    out0[t * pc.C + c] = cur * m0 + prev * (1.0 - m0);
    float m1 = params[pc.mix1_off + c];
    out1[t * pc.C + c] = cur * m1 + prev * (1.0 - m1);
    if (pc.n_out > 2u) {
        float m2 = params[pc.mix2_off + c];
        out2[t * pc.C + c] = cur * m2 + prev * (1.0 - m2);
    }
}
