/* AVX-VNNI kernels over Q8_0 repacked into groups of 16 rows (kernels_q8_0_r16_ymm.h):
 * the stored unsigned values go into one 256-bit vpdpbusd per four values of 8 rows as
 * loaded, the record's -128 * sum(x) starting each block's sum. */
#include "kernels/kernels_q8_0_r16.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

typedef __m256i k8_wvec;
#define K8_WEIGHTS(v) (v)
#define K8_DOT_ADD(s, w, x) _mm256_dpbusd_avx_epi32((s), (w), (x))
#define K8_START(a) _mm256_set1_epi32((a)->off)
#include "kernels/kernels_q8_0_r16_ymm.h"

kq_impl kq_q8_0_r16_avx_vnni(void)
{
    return r16_impl();
}

#else

kq_impl kq_q8_0_r16_avx_vnni(void)
{
    return (kq_impl){0};
}

#endif
