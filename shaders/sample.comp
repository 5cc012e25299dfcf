#version 450
// Sampling on the device, one workgroup per sequence, following engine/sampler.c step by step:
//   1. l_i = logits_i - presence * (count_i > 0) - frequency * count_i   (NaN counts as -inf)
//   2. temperature 0: argmax of l, lowest id on ties (bitwise what the CPU picks)
//   3. p_i = exp((l_i - max l) / temperature)
//   4. rank by (p desc, id asc); keep the first top_k; then the shortest prefix whose mass is
//      >= top_p * (mass kept). The ranking is never materialized: each cut is a threshold on the
//      64-bit key (bits of p, V - 1 - id), found bit by bit with parallel counts and sums.
//   5. target = uniform * (kept mass); walk the kept tokens in id order summing p; the first whose
//      running sum exceeds target wins (the last kept one if rounding leaves none).
// Sums run in a fixed parallel order rather than the CPU's sequential one and exp is the
// device's, so a draw may differ from the CPU's only when it falls within rounding of a boundary.
// The chosen token is counted in the slot (counts[slot][token]++) and written to tokens[seq].
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(local_size_x = 256) in;
layout(std430, binding = 0) readonly buffer Logits { float logits[]; };
layout(std430, binding = 1) buffer Scratch { float p[]; };      // [max_seqs][V]
layout(std430, binding = 2) buffer Counts { uint counts[]; };   // [n_slots][V]
layout(std430, binding = 3) readonly buffer Info { uint info[]; };
layout(std430, binding = 4) writeonly buffer Tokens { uint tokens[]; };

layout(push_constant) uniform Push {
    uint V;
    uint all_rows;      // 1: logits hold every token's row, else one row per sequence
    uint seq_slot_off, seq_first_off, seq_len_off;
    uint params_off;    // 8 words per sequence: temperature, top_k, top_p, presence, frequency, uniform
} pc;

shared float red_f[256];
shared uint red_u[256];

float sum_all(float v) {
    uint tid = gl_LocalInvocationID.x;
    red_f[tid] = v;
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s) red_f[tid] = red_f[tid] + red_f[tid + s];
        barrier();
    }
    float r = red_f[0];
    barrier();
    return r;
}

uint count_all(uint v) {
    uint tid = gl_LocalInvocationID.x;
    red_u[tid] = v;
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s) red_u[tid] = red_u[tid] + red_u[tid + s];
        barrier();
    }
    uint r = red_u[0];
    barrier();
    return r;
}

// key_i >= (h, l), the key being (bits of p_i, V - 1 - i): p descending, then id ascending.
bool key_ge(uint i, float pi, uint h, uint l) {
    uint kh = floatBitsToUint(pi), kl = pc.V - 1u - i;
    return kh > h || (kh == h && kl >= l);
}

void main() {
    uint seq = gl_WorkGroupID.x;
    uint tid = gl_LocalInvocationID.x;
    uint V = pc.V;
    uint slot = info[pc.seq_slot_off + seq];
    uint row = pc.all_rows != 0u ? info[pc.seq_first_off + seq] + info[pc.seq_len_off + seq] - 1u : seq;
    uint po = pc.params_off + seq * 8u;
    float temperature = uintBitsToFloat(info[po + 0u]);
    uint top_k = info[po + 1u];
    float top_p = uintBitsToFloat(info[po + 2u]);
    float presence = uintBitsToFloat(info[po + 3u]);
    float frequency = uintBitsToFloat(info[po + 4u]);
    float uniform_draw = uintBitsToFloat(info[po + 5u]);
    uint lb = row * V, pb = seq * V, cb = slot * V;

    // 1-2. Penalized logits and their argmax (lowest id on ties).
    float best = uintBitsToFloat(0xff800000u);  // -inf
    uint best_i = 0xffffffffu;
    for (uint i = tid; i < V; i += 256u) {
        float l = logits[lb + i];
        if (isnan(l)) l = uintBitsToFloat(0xff800000u);
        uint n = counts[cb + i];
        if (n > 0u) {
            precise float pen = presence + frequency * float(n);
            l = l - pen;
        }
        p[pb + i] = l;
        if (l > best || best_i == 0xffffffffu) {
            best = l;
            best_i = i;
        }
    }
    red_f[tid] = best;
    red_u[tid] = best_i;
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        if (tid < s) {
            float ov = red_f[tid + s];
            uint oi = red_u[tid + s];
            if (oi != 0xffffffffu &&
                (red_u[tid] == 0xffffffffu || ov > red_f[tid] || (ov == red_f[tid] && oi < red_u[tid]))) {
                red_f[tid] = ov;
                red_u[tid] = oi;
            }
        }
        barrier();
    }
    float lmax = red_f[0];
    uint chosen = red_u[0];
    barrier();

    if (!(temperature == 0.0 || isinf(lmax) && lmax < 0.0)) {
        // 3. p_i = exp((l_i - max) / T)
        for (uint i = tid; i < V; i += 256u) p[pb + i] = exp((p[pb + i] - lmax) / temperature);
        barrier();
        memoryBarrierBuffer();

        // 4. The kept set is {key >= (th, tl)}; (0, 0) keeps everything.
        uint th = 0u, tl = 0u;
        uint lo_bits = 0u;
        while (lo_bits < 32u && (1u << lo_bits) < V) lo_bits++;
        if (top_k > 0u && top_k < V) {
            // The top_k-th largest key: the largest threshold with count(key >= it) >= top_k.
            for (int bit = 31; bit >= 0; bit--) {
                uint ch = th | (1u << uint(bit));
                uint n = 0u;
                for (uint i = tid; i < V; i += 256u) n += key_ge(i, p[pb + i], ch, 0u) ? 1u : 0u;
                if (count_all(n) >= top_k) th = ch;
            }
            for (int bit = int(lo_bits) - 1; bit >= 0; bit--) {
                uint cl = tl | (1u << uint(bit));
                uint n = 0u;
                for (uint i = tid; i < V; i += 256u) n += key_ge(i, p[pb + i], th, cl) ? 1u : 0u;
                if (count_all(n) >= top_k) tl = cl;
            }
        }
        if (top_p < 1.0) {
            float m = 0.0;
            for (uint i = tid; i < V; i += 256u) m += key_ge(i, p[pb + i], th, tl) ? p[pb + i] : 0.0;
            float want = top_p * sum_all(m);
            // The largest threshold whose mass (within the kept set) is still >= want; it is at
            // least (th, tl), whose mass is all of it.
            uint kh = 0u, kl = 0u;
            for (int bit = 31; bit >= 0; bit--) {
                uint ch = kh | (1u << uint(bit));
                float s = 0.0;
                for (uint i = tid; i < V; i += 256u) {
                    float pi = p[pb + i];
                    s += key_ge(i, pi, ch, 0u) && key_ge(i, pi, th, tl) ? pi : 0.0;
                }
                if (sum_all(s) >= want) kh = ch;
            }
            for (int bit = int(lo_bits) - 1; bit >= 0; bit--) {
                uint cl = kl | (1u << uint(bit));
                float s = 0.0;
                for (uint i = tid; i < V; i += 256u) {
                    float pi = p[pb + i];
                    s += key_ge(i, pi, kh, cl) && key_ge(i, pi, th, tl) ? pi : 0.0;
                }
                if (sum_all(s) >= want) kl = cl;
            }
            if (kh > th || (kh == th && kl > tl)) {
                th = kh;
                tl = kl;
            }
        }

        // 5. Kept mass by contiguous id blocks (sum and last kept id of each); thread 0 walks the
        // blocks in id order, then the tokens of the block where the running sum passes target.
        uint bs = (V + 255u) / 256u;
        uint i0 = min(tid * bs, V), i1 = min(i0 + bs, V);
        float bsum = 0.0;
        uint blast = 0xffffffffu;
        for (uint i = i0; i < i1; i++) {
            float pi = p[pb + i];
            if (key_ge(i, pi, th, tl)) {
                bsum += pi;
                blast = i;
            }
        }
        red_f[tid] = bsum;
        red_u[tid] = blast;
        barrier();
        if (tid == 0u) {
            float total = 0.0;
            for (uint b = 0u; b < 256u; b++) total += red_f[b];
            float target = uniform_draw * total, sum = 0.0;
            uint last = chosen;
            bool done = false;
            for (uint b = 0u; b < 256u && !done; b++) {
                if (red_u[b] == 0xffffffffu) continue;
                if (!(sum + red_f[b] > target)) {
                    sum += red_f[b];
                    last = red_u[b];
                    continue;
                }
                for (uint i = b * bs; i < min(b * bs + bs, V); i++) {
                    float pi = p[pb + i];
                    if (!key_ge(i, pi, th, tl)) continue;
                    sum += pi;
                    last = i;
                    if (sum > target) {
                        done = true;
                        break;
                    }
                }
            }
            chosen = last;
        }
    }
    if (tid == 0u) {
        tokens[seq] = chosen;
        counts[cb + chosen] += 1u;
    }
}
