#version 450
// Sampling on the device, one workgroup per sequence, following engine/sampler.c step by step:
//   1. l_i = logits_i - presence * (count_i > 0) - frequency * count_i   (NaN counts as -inf)
//   2. temperature 0: argmax of l, lowest id on ties (bitwise what the CPU picks)
//   3. p_i = exp((l_i - max l) / temperature)
//   4. rank by (p desc, id asc); keep the first top_k; then the shortest prefix whose mass is
//      >= top_p * (mass kept).
//   5. target = uniform * (kept mass); walk the kept tokens in id order summing p; the first whose
//      running sum exceeds target wins (the last kept one if rounding leaves none).
// Steps 4 and 5 go one of two ways:
//   - Few candidates (the usual case: a model's distribution is peaked). A histogram of p's
//     binades (one pass over V, and a pass more per binade its bounds cannot settle) finds the
//     highest power of two c such that the tokens with p >= c already hold the top_k (top-k) or
//     a mass of at least top_p * (total mass) (top-p alone). When at most CAND tokens do, they
//     are copied to shared memory in id order and ranked there, and one thread makes the cuts
//     and the draw on them sequentially, in the CPU's own order of sums.
//     (CAND is the shared arrays' size; pc.few_max may lower it, 0 for tests of the other way.)
//   - Otherwise (a flat distribution, a high temperature, top_k > CAND): the ranking is never
//     materialized; each cut is a threshold on the 64-bit key (bits of p, V - 1 - id), found bit
//     by bit with parallel counts and sums over all of V (48 passes a cut).
// Some sums run in a fixed parallel order rather than the CPU's sequential one (the total mass;
// every sum of the second way) and exp is the device's, so a draw may differ from the CPU's only
// when it falls within rounding of a boundary. Both ways are deterministic.
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
    uint few_max;       // the most candidates the few-candidates way takes (<= CAND; 0: never)
} pc;

shared float red_f[256];
shared uint red_u[256];

// The few-candidates way: the candidates in id order (id, p), order[r] = the candidate of rank r,
// a bit per kept candidate, and what thread 0 decided.
const uint CAND = 512u;  // VK_SAMPLE_FEW_MAX (vk_kernels.h)
shared uint cand_id[CAND];
shared float cand_p[CAND];
shared uint order[CAND];
shared uint kept_bits[CAND / 32u];
shared uint fast_choice;  // the token drawn, or 0xffffffff: take the other way

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

// Steps 4 and 5 on few candidates (see the top): the token drawn, or 0xffffffff when there are
// more than few_max of them (or rounding leaves the top-p cut outside them). Uniform: every thread
// gets thread 0's answer. want_all: for top-p alone, top_p times the total mass (which the other
// way needs as well).
uint few_candidates(uint pb, uint V, bool cut_k, uint top_k, bool cut_p, float top_p, float draw,
                    out float want_all) {
    uint tid = gl_LocalInvocationID.x;
    // The total mass, for top-p alone (top-k's kept mass is summed below, as the CPU does).
    want_all = 0.0;
    if (!cut_k) {
        float m = 0.0;
        for (uint i = tid; i < V; i += 256u) m += p[pb + i];
        want_all = top_p * sum_all(m);
    }
    float want = want_all;
    uint most = min(pc.few_max, CAND);
    if (most == 0u || cut_k && top_k > most) return 0xffffffffu;
    // The candidates: p's bits >= c << 23 (p >= 2^(c - 127): whole binades), c as high as it can
    // be while they hold the top k or the wanted mass, from a histogram of the binades (p <= 1,
    // so 128 of them) counted into four copies (a quarter of the threads each, fewer collisions)
    // that cand_id holds until the candidates do. Top-k's c follows from the counts. For top-p,
    // binade b's mass is at least its count n_b times 2^(b - 127) and below twice that: c_lo, the
    // highest c whose binades surely hold the mass, and c_hi, the highest that may; when they
    // differ, a pass per binade between them sums the mass above it to choose.
    for (uint i = tid; i < 4u * 128u; i += 256u) cand_id[i] = 0u;
    barrier();
    uint copy = (tid / 64u) * 128u;
    for (uint i = tid; i < V; i += 256u) atomicAdd(cand_id[copy + (floatBitsToUint(p[pb + i]) >> 23)], 1u);
    barrier();
    if (tid < 128u) red_u[tid] = cand_id[tid] + cand_id[128u + tid] + cand_id[256u + tid] + cand_id[384u + tid];
    barrier();
    if (tid == 0u) {
        uint n = 0u, c_lo = 0u, n_lo = V, c_hi = 0u, n_hi = V;
        bool hi_found = false;
        float lower = 0.0, upper = 0.0;
        for (int b = 127; b >= 0; b--) {
            n += red_u[b];
            float least = uintBitsToFloat(uint(b) << 23);  // 2^(b - 127); 0 for binade 0
            lower += float(red_u[b]) * least;               // exact products: counts < 2^24
            upper += float(red_u[b]) * (b == 0 ? uintBitsToFloat(1u << 23) : 2.0 * least);
            bool sure = cut_k ? n >= top_k : lower >= want;
            bool maybe = cut_k ? sure : upper >= want;
            if (maybe && !hi_found) {
                hi_found = true;
                c_hi = uint(b);
                n_hi = n;
            }
            if (sure || b == 0) {
                c_lo = uint(b);
                n_lo = n;
                break;
            }
        }
        red_u[252] = c_lo;
        red_u[253] = n_lo;
        red_u[254] = c_hi;
        red_u[255] = n_hi;
    }
    barrier();
    uint c = red_u[252], n_c = red_u[253], c_hi = red_u[254], n_hi = red_u[255];
    // Between them, from the top: the first binade whose mass above reaches want (one pass
    // each; no more than two binades apart but for lopsided histograms).
    for (uint cc = c_hi, n_cc = n_hi; cc > c; n_cc += red_u[--cc]) {
        if (n_cc > most) continue;  // too many either way
        float s = 0.0;
        for (uint i = tid; i < V; i += 256u) {
            float pi = p[pb + i];
            s += floatBitsToUint(pi) >= (cc << 23) ? pi : 0.0;
        }
        if (sum_all(s) >= want) {
            c = cc;
            n_c = n_cc;
            break;
        }
    }
    barrier();
    if (n_c > most) return 0xffffffffu;

    // Copy them in id order: each thread counts its block of ids, thread 0 turns the counts into
    // offsets, each thread writes its block's.
    uint low = c << 23, bs = (V + 255u) / 256u;
    uint i0 = min(tid * bs, V), i1 = min(i0 + bs, V), n = 0u;
    for (uint i = i0; i < i1; i++) n += floatBitsToUint(p[pb + i]) >= low ? 1u : 0u;
    red_u[tid] = n;
    barrier();
    if (tid == 0u) {
        uint at = 0u;
        for (uint t = 0u; t < 256u; t++) {
            uint k = red_u[t];
            red_u[t] = at;
            at += k;
        }
    }
    if (tid < CAND / 32u) kept_bits[tid] = 0u;
    barrier();
    uint at = red_u[tid];
    for (uint i = i0; i < i1; i++) {
        float pi = p[pb + i];
        if (floatBitsToUint(pi) >= low) {
            cand_id[at] = i;
            cand_p[at] = pi;
            at++;
        }
    }
    barrier();
    // Rank by (p desc, id asc): the candidates ahead of each. Ids are distinct, so the ranks are too.
    for (uint j = tid; j < n_c; j += 256u) {
        uint kh = floatBitsToUint(cand_p[j]), r = 0u;
        for (uint m = 0u; m < n_c; m++) {
            uint mh = floatBitsToUint(cand_p[m]);
            r += mh > kh || (mh == kh && m < j) ? 1u : 0u;  // in id order: m < j is the lower id
        }
        order[r] = j;
    }
    barrier();
    // The cuts and the draw, as engine/sampler.c makes them: in rank order, then in id order.
    if (tid == 0u) {
        uint n_kept = cut_k ? top_k : n_c;
        bool inside = true;
        if (cut_p) {
            if (cut_k) {
                float mass = 0.0;
                for (uint r = 0u; r < n_kept; r++) mass += cand_p[order[r]];
                want = top_p * mass;
            }
            precise float sum = 0.0;
            inside = false;
            for (uint r = 0u; r < n_kept; r++) {
                sum += cand_p[order[r]];
                if (sum >= want) {
                    n_kept = r + 1u;
                    inside = true;
                    break;
                }
            }
        }
        fast_choice = 0xffffffffu;
        if (inside) {
            for (uint r = 0u; r < n_kept; r++) kept_bits[order[r] / 32u] |= 1u << (order[r] % 32u);
            precise float total = 0.0;
            for (uint j = 0u; j < n_c; j++)
                if ((kept_bits[j / 32u] & (1u << (j % 32u))) != 0u) total += cand_p[j];
            float target = draw * total;
            precise float sum = 0.0;
            for (uint j = 0u; j < n_c; j++) {
                if ((kept_bits[j / 32u] & (1u << (j % 32u))) == 0u) continue;
                sum += cand_p[j];
                fast_choice = cand_id[j];
                if (sum > target) break;
            }
        }
    }
    barrier();
    uint r = fast_choice;
    barrier();
    return r;
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

        bool cut_k = top_k > 0u && top_k < V, cut_p = top_p < 1.0;
        uint fast = 0xffffffffu;
        float want_all = 0.0;
        if (cut_k || cut_p)
            fast = few_candidates(pb, V, cut_k, top_k, cut_p, top_p, uniform_draw, want_all);
        if (fast != 0xffffffffu) {
            chosen = fast;
        } else {
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
            // top_p times the mass top-k kept; without top-k, few_candidates summed it all, in
            // this same order.
            float want = want_all;
            if (cut_k) {
                float m = 0.0;
                for (uint i = tid; i < V; i += 256u) m += key_ge(i, p[pb + i], th, tl) ? p[pb + i] : 0.0;
                want = top_p * sum_all(m);
            }
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
    }
    if (tid == 0u) {
        tokens[seq] = chosen;
        counts[cb + chosen] += 1u;
    }
}
