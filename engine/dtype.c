#include "dtype.h"

#include <math.h>
#include <stdatomic.h>

const char *baton_dtype_name(baton_dtype dtype) {
    switch (dtype) {
    case BATON_F32: return "fp32";
    case BATON_F16: return "fp16";
    case BATON_BF16: return "bf16";
    }
    return "?";
}

size_t baton_dtype_size(baton_dtype dtype) { return dtype == BATON_F32 ? 4 : 2; }

float baton_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            exp = 127 - 15 + 1;
            while ((mant & 0x400u) == 0) {
                mant <<= 1;
                exp--;
            }
            mant &= 0x3ffu;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t baton_f32_to_f16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t sign = (bits >> 16) & 0x8000u;
    uint32_t abs = bits & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u); /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (abs < 0x38800000u) { /* below fp16's smallest normal: subnormal or zero */
        if (abs < 0x33000000u) return (uint16_t)sign; /* rounds to zero */
        uint32_t exp = abs >> 23;
        uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - exp; /* 14..24 */
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1u))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13));
}

void baton_convert_to_f32(float *dst, const void *src, baton_dtype dtype, size_t n) {
    if (dtype == BATON_F32) {
        memcpy(dst, src, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = baton_load_f32(src, dtype, i);
}

/* One value, as the upload has always converted it: overflow counted for finite inputs. */
static uint16_t to_f16_counted(float f, size_t *overflow, float *overflow_max) {
    uint16_t h = baton_f32_to_f16(f);
    if ((h & 0x7fffu) == 0x7c00u && isfinite(f)) {
        (*overflow)++;
        if (fabsf(f) > *overflow_max) *overflow_max = fabsf(f);
    }
    return h;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define DTYPE_X86 1

/* (CPUID leaf 1, ECX bit 29 for F16C: clang's __builtin_cpu_supports does not know "f16c") */
bool baton_cpu_avx2_f16c(void) {
    unsigned a, b, c, d;
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) &&
           (c & (1u << 29)) != 0;
}

/* Groups of 8 (bf16 or fp32): F16C rounds to nearest even as baton_f32_to_f16 does; a group
 * with a NaN (whose payload F16C keeps) or a value that became infinite goes through the C
 * one at a time instead, which makes NaNs its one quiet NaN and counts the overflow. Returns
 * how many it converted (n rounded down to 8). */
__attribute__((target("avx2,f16c")))
static size_t to_f16_x86(uint16_t *dst, const void *src, baton_dtype dtype, size_t n,
                         size_t *overflow, float *overflow_max) {
    const unsigned char *p = src;
    const __m128i abs_mask = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v;
        if (dtype == BATON_BF16) {
            __m128i h = _mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i));
            v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
        } else {
            v = _mm256_loadu_ps((const float *)(const void *)(p + 4 * i));
        }
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        int big = _mm_movemask_epi8(_mm_cmpeq_epi16(_mm_and_si128(h, abs_mask), inf));
        if (nan | big) {
            for (size_t k = i; k < i + 8; k++)
                dst[k] = to_f16_counted(baton_load_f32(src, dtype, k), overflow, overflow_max);
        } else {
            _mm_storeu_si128((__m128i *)(void *)(dst + i), h);
        }
    }
    return i;
}
#else
bool baton_cpu_avx2_f16c(void) { return false; }
#endif

size_t baton_convert_to_f16(uint16_t *dst, const void *src, baton_dtype dtype, size_t n, bool simd,
                            float *overflow_max) {
    if (dtype == BATON_F16) {
        memcpy(dst, src, n * 2);
        return 0;
    }
    size_t overflow = 0, i = 0;
#ifdef DTYPE_X86
    static atomic_int have = -1; /* baton_cpu_avx2_f16c(), asked once */
    int h = atomic_load(&have);
    if (simd && h < 0) atomic_store(&have, h = baton_cpu_avx2_f16c());
    if (simd && h) i = to_f16_x86(dst, src, dtype, n, &overflow, overflow_max);
#else
    (void)simd;
#endif
    for (; i < n; i++)
        dst[i] = to_f16_counted(baton_load_f32(src, dtype, i), &overflow, overflow_max);
    return overflow;
}
