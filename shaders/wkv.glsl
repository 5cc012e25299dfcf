// One token of the RWKV-4 time-mix recurrence (WKV) with the max trick, shared by wkv.comp and
// matmul.comp's WKV variants so that both compute it bit for bit alike. Every operation is
// precise (no contraction chosen per site).

// out = r * wkv, from the state (aa, bb, pp) before the token.
float wkv_out(float aa, float bb, float pp, float u, float kk, float vv, float rr) {
    precise float ww = u + kk;              // ww = u + k
    precise float qq = max(pp, ww);         // qq = max(pp, ww)
    precise float e1 = exp(pp - qq);        // e1 = exp(pp - qq)
    precise float e2 = exp(ww - qq);        // e2 = exp(ww - qq)
    precise float a = e1 * aa + e2 * vv;    // a = e1 * aa + e2 * v
    precise float b = e1 * bb + e2;         // b = e1 * bb + e2
    precise float out_i = rr * (a / b);     // r * wkv
    return out_i;
}

// The state after the token.
void wkv_next(inout float aa, inout float bb, inout float pp, float w, float kk, float vv) {
    precise float ww = pp + w;              // ww = pp + w
    precise float qq = max(ww, kk);         // qq = max(ww, k)
    precise float e1 = exp(ww - qq);
    precise float e2 = exp(kk - qq);
    precise float aa2 = e1 * aa + e2 * vv;  // aa = e1 * aa + e2 * v
    precise float bb2 = e1 * bb + e2;       // bb = e1 * bb + e2
    aa = aa2;
    bb = bb2;
    pp = qq;                                // pp = qq
}
