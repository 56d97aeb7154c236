/* AVX2 kernels over Q4_0 repacked into groups of 16 rows (kernels_q4_0_r16_ymm.h):
 * maddubs and madd where AVX-VNNI has one vpdpbusd. */
#include "kernels/kernels_q4_0_r16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

/* a nibble times an int8, two summed, stays within int16 (2 * 15 * 128) */
#define R16_DOT_ADD(s, u, x) \
    _mm256_add_epi32((s), _mm256_madd_epi16(_mm256_maddubs_epi16((u), (x)), _mm256_set1_epi16(1)))
#include "kernels/kernels_q4_0_r16_ymm.h"

kq_impl kq_q4_0_r16_avx2(void)
{
    return r16_impl();
}

#else

kq_impl kq_q4_0_r16_avx2(void)
{
    return (kq_impl){0};
}

#endif
