/* AVX-VNNI kernels over Q4_K repacked into groups of 16 rows (kernels_q4_k_r16_ymm.h):
 * one 256-bit vpdpbusd per four nibbles of 8 rows. */
#include "kernels/kernels_q4_k_r16.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#define K4_YMM_DOT_ADD(s, w, x) _mm256_dpbusd_avx_epi32((s), (w), (x))
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
