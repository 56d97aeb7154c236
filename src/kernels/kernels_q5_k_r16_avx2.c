/* AVX2 kernels over Q5_K repacked into groups of 16 rows (kernels_q4_k_r16_ymm.h with
 * the fifth bits): maddubs, int16 adds and madd where AVX-VNNI has one vpdpbusd per
 * four values. */
#include "kernels/kernels_q5_k_r16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

/* A pair of 5-bit-by-int8 products is within 2 * 31 * 128 in magnitude, four such
 * pairs within 31744: each half of the sub-block sums in int16 and widens once. */
static inline __attribute__((always_inline)) __m256i k4_dot8(const __m256i w[8], const int8_t *q)
{
    __m256i pairs[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        int32_t x;
        memcpy(&x, q + 4 * i, sizeof x);
        pairs[i / 4] = _mm256_add_epi16(pairs[i / 4], _mm256_maddubs_epi16(w[i], _mm256_set1_epi32(x)));
    }
    const __m256i ones = _mm256_set1_epi16(1);
    return _mm256_add_epi32(_mm256_madd_epi16(pairs[0], ones), _mm256_madd_epi16(pairs[1], ones));
}

#define K4_YMM_FIFTH_BITS 1
#include "kernels/kernels_q4_k_r16_ymm.h"

kq_impl kq_q5_k_r16_avx2(void)
{
    return r16_impl();
}

#else

kq_impl kq_q5_k_r16_avx2(void)
{
    return (kq_impl){0};
}

#endif
