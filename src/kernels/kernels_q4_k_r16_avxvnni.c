/* AVX-VNNI kernels over Q4_K repacked into groups of 16 rows (kernels_q4_k_r16_ymm.h):
 * one 256-bit vpdpbusd per four nibbles of 8 rows. */
#include "kernels/kernels_q4_k_r16.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

static inline __attribute__((always_inline)) __m256i k4_dot8(const __m256i w[8], const int8_t *q)
{
    __m256i s = _mm256_setzero_si256();
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        int32_t x;
        memcpy(&x, q + 4 * i, sizeof x);
        s = _mm256_dpbusd_avx_epi32(s, w[i], _mm256_set1_epi32(x));
    }
    return s;
}

#include "kernels/kernels_q4_k_r16_ymm.h"

kq_impl kq_q4_k_r16_avx_vnni(void)
{
    return r16_impl();
}

#else

kq_impl kq_q4_k_r16_avx_vnni(void)
{
    return (kq_impl){0};
}

#endif
