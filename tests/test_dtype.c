/* fp16 and bf16 conversions: every fp16 value round-trips, rounding is to nearest even, and
 * overflow becomes infinity. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "dtype.h"

/* baton_convert_to_f16 of n elements at src (dtype) both ways, F16C and C, against converting
 * each one by baton_f32_to_f16 (fp16: copying it): the same bits, the same overflow count and
 * largest value. */
static void to_f16_both(const void *src, baton_dtype dtype, size_t n, const char *what) {
    uint16_t *want = malloc(n * 2 + 2), *got = malloc(n * 2 + 2);
    REQUIRE(want && got);
    size_t overflow = 0;
    float max_want = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float f = baton_load_f32(src, dtype, i);
        want[i] = baton_f32_to_f16(f);
        if (dtype == BATON_F16) memcpy(&want[i], (const char *)src + 2 * i, 2); /* NaNs as they are */
        if ((want[i] & 0x7fffu) == 0x7c00u && isfinite(f)) {
            overflow++;
            if (fabsf(f) > max_want) max_want = fabsf(f);
        }
    }
    for (int simd = 0; simd < 2; simd++) {
        float max_got = 0.0f;
        size_t o = baton_convert_to_f16(got, src, dtype, n, simd, &max_got);
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += got[i] != want[i];
        CHECK_MSG(bad == 0 && o == overflow && max_got == max_want,
                  "%s (%s): %zu of %zu differ, overflow %zu / %zu, largest %g / %g", what,
                  simd ? "F16C" : "C", bad, n, o, overflow, (double)max_got, (double)max_want);
    }
    free(want);
    free(got);
}

/* Every bf16 value (NaNs, infinities and overflows among ordinary values in groups of 8), random
 * and chosen fp32 values, at odd addresses and lengths, and fp16 copied. */
static void check_to_f16(void) {
    enum { N = 1 << 20 };
    unsigned char *buf = malloc(4 * (size_t)N + 1);
    REQUIRE(buf != NULL);
    unsigned char *src = buf + 1; /* unaligned */
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)(i * 40503u); /* every value once, neighbours far apart */
        memcpy(src + 2 * i, &h, 2);
    }
    to_f16_both(src, BATON_BF16, 65536, "every bf16");
    to_f16_both(src + 2, BATON_BF16, 65531, "every bf16 but one, odd length");
    uint64_t seed = 12345;
    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(seed >> 32);
        if (i % 4 == 1) bits = (bits & 0x807fffffu) | (0x67u + (bits >> 8) % 0x20u) << 23; /* fp16's range */
        memcpy(src + 4 * i, &bits, 4);
    }
    const float edges[] = {65504.0f, 65519.0f, 65520.0f, -65520.0f, 0x1p-24f, 0x1p-25f, 0x1.8p-25f,
                           0x1p-14f, 0x1.ffcp-15f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e-30f};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) memcpy(src + 4 * (100 + 3 * i), &edges[i], 4);
    to_f16_both(src, BATON_F32, N, "random fp32");
    to_f16_both(src + 4, BATON_F32, N - 7, "random fp32, odd length");
    to_f16_both(src, BATON_F16, N, "fp16");
    printf("fp16 conversions: F16C %s, bitwise the C ones where it runs\n",
           baton_cpu_avx2_f16c() ? "here" : "not on this CPU (the C path alone)");
    free(buf);
}

int main(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = baton_f16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        CHECK_MSG(baton_f32_to_f16(f) == h, "fp16 0x%04x -> %g -> 0x%04x", h, (double)f, baton_f32_to_f16(f));
    }
    CHECK(baton_f16_to_f32(0x3c00) == 1.0f);
    CHECK(baton_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(baton_f16_to_f32(0x0001) == 0x1p-24f);
    CHECK(baton_f32_to_f16(65520.0f) == 0x7c00);   /* halfway past the largest: rounds to inf */
    CHECK(baton_f32_to_f16(65519.0f) == 0x7bff);
    CHECK(baton_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00); /* a tie rounds to even */
    CHECK(baton_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02);
    CHECK(baton_f32_to_f16(0x1p-25f) == 0x0000);   /* a tie with zero rounds to zero */
    CHECK(baton_f32_to_f16(0x1.8p-25f) == 0x0001);
    CHECK(isnan(baton_f16_to_f32(baton_f32_to_f16(NAN))));
    for (uint32_t h = 0; h < 65536; h++) {
        float f = baton_bf16_to_f32((uint16_t)h);
        if (isnan(f)) continue;
        CHECK(baton_f32_to_bf16(f) == h);
    }
    CHECK(baton_f32_to_bf16(1.0f + 0x1p-8f) == 0x3f80); /* tie to even */
    CHECK(baton_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3f82);
    unsigned char bytes[6] = {0x00, 0x3c, 0x00, 0xc0, 0x00, 0x00}; /* fp16 1, -2, 0 at odd alignment below */
    unsigned char shifted[7];
    memcpy(shifted + 1, bytes, 6);
    float out[3];
    baton_convert_to_f32(out, shifted + 1, BATON_F16, 3);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.0f);
    check_to_f16();
    return test_result();
}
