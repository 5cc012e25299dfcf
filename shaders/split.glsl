// x split into two fp16 halves for the tensor cores, x = hi + lo (hi = fp16(x), lo = fp16(x - hi):
// about 22 bits of x, where fp16 alone keeps 11): matmul_coop.comp splits x as it stages it,
// split.comp into a buffer that its XG variants read.

// fp16 bits of v, rounded to nearest even, by integer arithmetic on v's fp32 bits (|v| clamped to
// 65504, fp16's largest; NaN stays NaN). Converted by the shader's own conversions instead (hi =
// float16_t(v), or unpackHalf2x16(packHalf2x16(v)) in the emulation, then lo = v - hi), lo came
// out zero on the H100 (run E: 2.5e-4 from fp32, as if x had fp16's 11 bits alone): its compiler
// took the round trip for v itself. It cannot do that with these bits.
uint f16_bits(float v) {
    uint u = floatBitsToUint(v), sign = (u >> 16u) & 0x8000u, a = u & 0x7fffffffu;
    if (a < 0x38800000u) // under 2^-14: a subnormal (1024 is 2^-14 itself, encoded alike)
        return sign | uint(roundEven(uintBitsToFloat(a) * 16777216.0));
    if (a > 0x7f800000u) return sign | 0x7e00u;
    uint r = min((a + 0xfffu + ((a >> 13u) & 1u)) & 0xffffe000u, 0x477fe000u);
    return sign | ((r - 0x38000000u) >> 13u);
}

// x = hi + lo: the fp16 bits of hi (low half) and of lo (high half). Past fp16's range hi stops
// at 65504 and lo takes the rest, up to 131008.
uint split_hl(float v) {
    uint hb = f16_bits(v);
    precise float lo = v - unpackHalf2x16(hb).x;
    return hb | (f16_bits(lo) << 16u);
}
