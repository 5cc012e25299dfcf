/* fp16 and bf16 conversions: every fp16 value round-trips, rounding is to nearest even, and
 * overflow becomes infinity. */
#include <stdint.h>

#include "check.h"
#include "dtype.h"

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
    return test_result();
}
