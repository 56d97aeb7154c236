/* AVX2 kernels over Q6_K repacked into groups of 16 rows (kernels_q6_k_r16_ymm.h):
 * maddubs and madd where AVX-VNNI has one vpdpbusd per four codes. */
#include "kernels/kernels_q6_k_r16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#define K6_BROADCAST(q) _mm256_set1_epi32(k6_word(q))

static inline __attribute__((always_inline)) int32_t k6_word(const int8_t *q)
{
    int32_t x;
    memcpy(&x, q, sizeof x);
    return x;
}

/* A pair of code-by-int8 products is within 2 * 63 * 128 in magnitude, two pairs
 * within 32256: two vectors' products sum in int16 before each widening. */
static inline __attribute__((always_inline)) __m256i k6_dot4(__m256i s, const __m256i code[4], const int8_t *q)
{
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i p01 = _mm256_add_epi16(_mm256_maddubs_epi16(code[0], K6_BROADCAST(q)),
                                         _mm256_maddubs_epi16(code[1], K6_BROADCAST(q + 4)));
    const __m256i p23 = _mm256_add_epi16(_mm256_maddubs_epi16(code[2], K6_BROADCAST(q + 8)),
                                         _mm256_maddubs_epi16(code[3], K6_BROADCAST(q + 12)));
    return _mm256_add_epi32(s, _mm256_add_epi32(_mm256_madd_epi16(p01, ones), _mm256_madd_epi16(p23, ones)));
}

#include "kernels/kernels_q6_k_r16_ymm.h"

kq_impl kq_q6_k_r16_avx2(void)
{
    return r16_impl();
}

#else

kq_impl kq_q6_k_r16_avx2(void)
{
    return (kq_impl){0};
}

#endif
