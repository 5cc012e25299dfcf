#version 450
// LayerNorm of rows: y[i] = (x[row] - mean) / sqrt(var + 1e-5) * w + b, row = row_map[i] or i.
// Workgroup (i, g) writes channels [g * chans, (g + 1) * chans) of output row i, after computing
// the row's statistics itself (ln.glsl: fixed partial sums and a fixed tree), so a row's result
// never depends on the other rows of the step or on chans.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer In { float x[]; };
layout(std430, binding = 1) writeonly buffer Out { float y[]; };
layout(std430, binding = 2) readonly buffer Params { float params[]; };
layout(std430, binding = 3) readonly buffer Info { uint info[]; };

layout(push_constant) uniform Push {
    uint C;
    uint w_off, b_off;  // LayerNorm weight and bias in params
    uint row_map_off;   // 0xffffffff: output row i reads input row i
    uint chans;         // channels per workgroup (y)
} pc;

#define LN_THREADS 256u
#define LN_X(i) x[i]
#include "ln.glsl"

void main() {
    uint i = gl_WorkGroupID.x;
    uint row = pc.row_map_off == 0xffffffffu ? i : info[pc.row_map_off + i];
    uint tid = gl_LocalInvocationID.x;
    uint base = row * pc.C;
    vec2 st = ln_stats(base, pc.C);
    uint c_end = min(pc.C, (gl_WorkGroupID.y + 1u) * pc.chans);
    for (uint c = gl_WorkGroupID.y * pc.chans + tid; c < c_end; c += 256u) {
        y[i * pc.C + c] = ln_norm(x[base + c], st, params[pc.w_off + c], params[pc.b_off + c]);
    }
}
