/* AVX-VNNI kernels over Q5_K repacked into groups of 16 rows (kernels_q4_k_r16_ymm.h
 * with the fifth bits): one 256-bit vpdpbusd per four values of 8 rows. */
#include "kernels/kernels_q5_k_r16.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define K4_YMM_DOT_ADD(s, w, x) _mm256_dpbusd_avx_epi32((s), (w), (x))
#define K4_YMM_FIFTH_BITS 1
#include "kernels/kernels_q4_k_r16_ymm.h"

kq_impl kq_q5_k_r16_avx_vnni(void)
{
    return r16_impl();
}

#else

kq_impl kq_q5_k_r16_avx_vnni(void)
{
    return (kq_impl){0};
}

#endif
