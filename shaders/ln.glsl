// The LayerNorm of one row of C floats, shared by every kernel that computes one (layernorm.comp,
// ln_shift.comp, matmul.comp's LN variants), so that all of them compute it bit for bit alike:
// a matmul that normalizes its own input gives what ln_shift would have handed it.
//
// The including shader defines LN_THREADS, its workgroup size (a divisor of 256), and LN_X(i),
// element i of the buffer the rows are in. The statistics: 256 partial sums (partial v adds
// elements v, v + 256, v + 512, ... of the row in order; a thread computes 256 / LN_THREADS of
// them), then added pairwise in one fixed tree. Every step is precise (no contraction).

#define LN_PER (256u / LN_THREADS)

shared float ln_red[256];

// The sum of the 256 partial sums, part[i] being partial tid + LN_THREADS * i. Call in uniform
// control flow (barriers).
float ln_sum(float part[LN_PER]) {
    uint tid = gl_LocalInvocationIndex;
    [[unroll]] for (uint i = 0u; i < LN_PER; i++) ln_red[tid + LN_THREADS * i] = part[i];
    barrier();
    [[unroll]] for (uint s = 128u; s > 0u; s >>= 1) {
        for (uint v = tid; v < s; v += LN_THREADS) {
            precise float r = ln_red[v] + ln_red[v + s];
            ln_red[v] = r;
        }
        barrier();
    }
    float total = ln_red[0];
    barrier();
    return total;
}

// mean and 1 / sqrt(var + 1e-5) of the C elements from `base`.
vec2 ln_stats(uint base, uint C) {
    uint tid = gl_LocalInvocationIndex;
    float part[LN_PER];
    [[unroll]] for (uint i = 0u; i < LN_PER; i++) {
        precise float s = 0.0;
        for (uint c = tid + LN_THREADS * i; c < C; c += 256u) s += LN_X(base + c);
        part[i] = s;
    }
    precise float mean = ln_sum(part) / float(C);   // mean = sum(x) / C
    [[unroll]] for (uint i = 0u; i < LN_PER; i++) {
        precise float q = 0.0;
        for (uint c = tid + LN_THREADS * i; c < C; c += 256u) {
            precise float d = LN_X(base + c) - mean;
            q += d * d;
        }
        part[i] = q;
    }
    precise float var = ln_sum(part) / float(C);    // var = sum((x - mean)^2) / C
    precise float inv = 1.0 / sqrt(var + 1e-5);
    return vec2(mean, inv);
}

// xx = (x - mean) * inv * w + b
float ln_norm(float xv, vec2 st, float w, float b) {
    precise float v = (xv - st.x) * st.y * w + b;
    return v;
}

// The token shift: xx * mix + prev * (1 - mix)
float ln_mix(float cur, float prev, float m) {
    precise float v = cur * m + prev * (1.0 - m);
    return v;
}
