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
    for (uint t = first; t < first + n; t++) {
        uint i = t * pc.C + c;
        float kk = k[i], vv = v[i];
        float ww = u + kk;                  // ww = u + k
        float qq = max(pp, ww);             // qq = max(pp, ww)
        float e1 = exp(pp - qq);            // e1 = exp(pp - qq)
        float e2 = exp(ww - qq);            // e2 = exp(ww - qq)
        float a = e1 * aa + e2 * vv;        // a = e1 * aa + e2 * v
        float b = e1 * bb + e2;             // b = e1 * bb + e2
        o[i] = r[i] * (a / b);              // r * wkv
        ww = pp + w;                        // ww = pp + w
        qq = max(ww, kk);                   // qq = max(ww, k)
        e1 = exp(ww - qq);
        e2 = exp(kk - qq);
        aa = e1 * aa + e2 * vv;             // aa = e1 * aa + e2 * v
        bb = e1 * bb + e2;                  // bb = e1 * bb + e2
        pp = qq;                            // pp = qq
    }
    state[sb + ROW_ATT_AA * pc.C] = aa;
    state[sb + ROW_ATT_BB * pc.C] = bb;
    state[sb + ROW_ATT_PP * pc.C] = pp;
    state[sb + ROW_ATT_XX * pc.C] = xx[(first + n - 1u) * pc.C + c];
}
