#version 450
// The RWKV-4 time-mix recurrence (WKV) with the max trick for stability, one thread per channel
// and sequence, sequential over the sequence's tokens; writes out = sigmoid(r) * wkv and the new
// state (aa, bb, pp and the shift state att_xx).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 64) in;
layout(std430, binding = 0) readonly buffer K { float k[]; };
layout(std430, binding = 1) readonly buffer V { float v[]; };
layout(std430, binding = 2) readonly buffer R { float r[]; };   // already sigmoid(r)
layout(std430, binding = 3) writeonly buffer Out { float o[]; };
layout(std430, binding = 4) buffer State { float state[]; };   // this layer: [slot][5][C]
layout(std430, binding = 5) readonly buffer Params { float params[]; };
layout(std430, binding = 6) readonly buffer Info { uint info[]; };
layout(std430, binding = 7) readonly buffer XX { float xx[]; };

layout(push_constant) uniform Push {
    uint C;
    uint u_off, w_off;  // time_first u, time_decay w (= -exp(raw)) in params
    uint seq_slot_off, seq_first_off, seq_len_off;
} pc;

// Tokens whose k, v and r are loaded before their steps of the recurrence: in a prefill the loads
// of the next tokens are in flight while the (sequential) recurrence runs, instead of each step
// waiting on its own loads.
#define WU 8u

#include "wkv.glsl"

// One token of the recurrence: out = r * wkv, then the state.
void wkv_step(inout float aa, inout float bb, inout float pp, float u, float w, float kk, float vv,
              float rr, uint i) {
    o[i] = wkv_out(aa, bb, pp, u, kk, vv, rr);
    wkv_next(aa, bb, pp, w, kk, vv);
}

void main() {
    uint c = gl_GlobalInvocationID.x;
    uint s = gl_WorkGroupID.y;
    if (c >= pc.C) return;
    uint slot = info[pc.seq_slot_off + s];
    uint first = info[pc.seq_first_off + s];
    uint n = info[pc.seq_len_off + s];
    uint sb = slot * 5u * pc.C + c;
    float aa = state[sb + ROW_ATT_AA * pc.C];
    float bb = state[sb + ROW_ATT_BB * pc.C];
    float pp = state[sb + ROW_ATT_PP * pc.C];
    float u = params[pc.u_off + c];
    float w = params[pc.w_off + c];
    uint t = first, end = first + n;
    for (; t + WU <= end; t += WU) {
        float ks[WU], vs[WU], rs[WU];
        [[unroll]] for (uint j = 0u; j < WU; j++) {
            uint i = (t + j) * pc.C + c;
            ks[j] = k[i];
            vs[j] = v[i];
            rs[j] = r[i];
        }
        [[unroll]] for (uint j = 0u; j < WU; j++)
            wkv_step(aa, bb, pp, u, w, ks[j], vs[j], rs[j], (t + j) * pc.C + c);
    }
    for (; t < end; t++) {
        uint i = t * pc.C + c;
        wkv_step(aa, bb, pp, u, w, k[i], v[i], r[i], i);
    }
    state[sb + ROW_ATT_AA * pc.C] = aa;
    state[sb + ROW_ATT_BB * pc.C] = bb;
    state[sb + ROW_ATT_PP * pc.C] = pp;
    state[sb + ROW_ATT_XX * pc.C] = xx[(first + n - 1u) * pc.C + c];
}
