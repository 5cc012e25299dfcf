/* Element types of stored weights and the conversions between them. */
#ifndef BATON_DTYPE_H
#define BATON_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
    BATON_F32 = 0,
    BATON_F16 = 1,
    BATON_BF16 = 2,
} baton_dtype;

/* "fp32", "fp16", "bf16". */
const char *baton_dtype_name(baton_dtype dtype);
/* Bytes per element: 4 or 2. */
size_t baton_dtype_size(baton_dtype dtype);

static inline float baton_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Round to nearest even; NaN stays NaN. */
static inline uint16_t baton_f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x40u);
    bits += 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)(bits >> 16);
}

float baton_f16_to_f32(uint16_t h);
/* Round to nearest even; values beyond fp16's range become +-inf. */
uint16_t baton_f32_to_f16(float f);

/* Reads element i of a buffer of dtype (no alignment needed). */
static inline float baton_load_f32(const void *data, baton_dtype dtype, size_t i) {
    const unsigned char *p = data;
    switch (dtype) {
    case BATON_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case BATON_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return baton_f16_to_f32(h);
    }
    case BATON_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return baton_bf16_to_f32(h);
    }
    }
    return 0.0f;
}

/* Converts n elements of src (any dtype, any alignment) to float32. */
void baton_convert_to_f32(float *dst, const void *src, baton_dtype dtype, size_t n);

/* Converts n elements of src (any dtype, any alignment) to fp16, each as baton_f32_to_f16
 * rounds it (fp16 is copied): returns how many finite values became infinite, past fp16's
 * range, and raises *overflow_max to the largest |x| of them. simd: 8 at a time with F16C
 * where the CPU has it (baton_cpu_avx2_f16c; the same bits); false: one at a time in C. */
size_t baton_convert_to_f16(uint16_t *dst, const void *src, baton_dtype dtype, size_t n, bool simd,
                            float *overflow_max);

/* Whether this CPU has AVX2 (its 256-bit registers saved by the OS) and F16C. */
bool baton_cpu_avx2_f16c(void);

#endif
