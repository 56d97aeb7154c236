/* AVX2 kernels over Q4_K repacked into groups of 16 rows (kernels_q4_k_r16_ymm.h):
 * maddubs and int16 adds where AVX-VNNI has one vpdpbusd per four nibbles. */
#include "kernels/kernels_q4_k_r16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

/* A pair of nibble-by-int8 products is within 2 * 15 * 128 in magnitude, eight such
 * pairs within 30720: the sub-block sums in int16 and widens once. */
static inline __attribute__((always_inline)) __m256i k4_dot8(const __m256i w[8], const int8_t *q)
{
    __m256i pairs = _mm256_setzero_si256();
    _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++) {
        int32_t x;
        memcpy(&x, q + 4 * i, sizeof x);
        pairs = _mm256_add_epi16(pairs, _mm256_maddubs_epi16(w[i], _mm256_set1_epi32(x)));
    }
    return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

#include "kernels/kernels_q4_k_r16_ymm.h"

kq_impl kq_q4_k_r16_avx2(void)
{
    return r16_impl();
}

#else

kq_impl kq_q4_k_r16_avx2(void)
{
    return (kq_impl){0};
}

#endif
