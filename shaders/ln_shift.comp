#version 450
// LayerNorm fused with the token shift, one workgroup per token t of the step:
//   xx[t] = LN(x[t]) = (x[t] - mean) / sqrt(var + 1e-5) * w + b
//   out_j[t] = xx[t] * mix_j + prev * (1 - mix_j), prev = xx[t - 1] within the sequence, or the
//   slot's saved xx for its first token (the reference's sx).
// The workgroup recomputes LN(x[t - 1]) itself rather than waiting for the one that writes it;
// every step of the LayerNorm is precise and the reduction order fixed, so the recomputed row is
// bitwise the row written (prefill stays bitwise equal to token by token).
// Workgroup (t, g) writes channels [g * chans, (g + 1) * chans): a step of few tokens spreads
// over many workgroups (each computes the row's statistics itself, the same way).
// save = 1 (only for steps where every sequence has one token): the token also writes xx as its
// slot's shift state, in place of the state it read (the same thread reads then writes each).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer In { float x[]; };
layout(std430, binding = 1) writeonly buffer XX { float xx[]; };
layout(std430, binding = 2) buffer State { float state[]; };  // this layer: [slot][5][C]
layout(std430, binding = 3) readonly buffer Params { float params[]; };
layout(std430, binding = 4) readonly buffer Info { uint info[]; };
layout(std430, binding = 5) writeonly buffer Out { float outs[]; };  // out_j at j * out_stride

layout(push_constant, std430) uniform Push {
    uint C;
    uint w_off, b_off;           // LayerNorm weight and bias in params
    uint state_row;              // ROW_ATT_XX or ROW_FFN_XX
    uint n_out;                  // 2 (channel mix: k, r) or 3 (time mix: k, v, r)
    uint mix0_off, mix1_off, mix2_off;
    uint tok_seq_off, seq_slot_off, seq_first_off;
    uint out_stride;             // floats between out_j and out_j+1
    uint chans;                  // channels per workgroup (y)
    uint save;                   // 1: write xx as the shift state
} pc;

#define LN_THREADS 256u
#define LN_X(i) x[i]
#include "ln.glsl"

void main() {
    uint t = gl_WorkGroupID.x;
    uint tid = gl_LocalInvocationID.x;
    uint seq = info[pc.tok_seq_off + t];
    uint slot = info[pc.seq_slot_off + seq];
    bool first = t == info[pc.seq_first_off + seq];
    vec2 cur_st = ln_stats(t * pc.C, pc.C);
    vec2 prev_st = cur_st;                                       // unused for a first token
    if (!first) prev_st = ln_stats((t - 1u) * pc.C, pc.C);       // uniform over the workgroup
    uint sb = (slot * 5u + pc.state_row) * pc.C;
    uint c_end = min(pc.C, (gl_WorkGroupID.y + 1u) * pc.chans);
    for (uint c = gl_WorkGroupID.y * pc.chans + tid; c < c_end; c += 256u) {
        float lw = params[pc.w_off + c], lb = params[pc.b_off + c];
        float cur = ln_norm(x[t * pc.C + c], cur_st, lw, lb);
        float prev = first ? state[sb + c] : ln_norm(x[(t - 1u) * pc.C + c], prev_st, lw, lb);
        xx[t * pc.C + c] = cur;
        if (pc.save != 0u) state[sb + c] = cur;
        uint o = t * pc.C + c;
        outs[o] = ln_mix(cur, prev, params[pc.mix0_off + c]);
        outs[pc.out_stride + o] = ln_mix(cur, prev, params[pc.mix1_off + c]);
        if (pc.n_out > 2u)
            outs[2u * pc.out_stride + o] = ln_mix(cur, prev, params[pc.mix2_off + c]);
    }
}
