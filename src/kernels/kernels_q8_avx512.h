/* Inside the kernels layer, for *_avx512.c files only: quantizing one 32-value block
 * of activations to int8 exactly as the scalar Q8_0 reference does (d = max|x| / 127,
 * roundf), shared by the Q8_0/Q8_1 activation quantizers and Q4_0's record layout. */
#ifndef ELLIOTT_KERNELS_Q8_AVX512_H
#define ELLIOTT_KERNELS_Q8_AVX512_H

#include <immintrin.h>

/* roundf (half away from zero) exactly, as the scalar quantizer rounds. */
static inline __attribute__((always_inline)) __m512i kq_round_half_away_avx512(__m512 v)
{
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 step = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

/* The block's 32 int8 values in order, and its scale d (float, before any rounding
 * to half precision). */
static inline __attribute__((always_inline)) __m256i kq_q8_block_avx512(const float *src, float *d_out)
{
    __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    __m128i q0 = _mm512_cvtsepi32_epi8(kq_round_half_away_avx512(_mm512_mul_ps(v0, vid)));
    __m128i q1 = _mm512_cvtsepi32_epi8(kq_round_half_away_avx512(_mm512_mul_ps(v1, vid)));
    *d_out = d;
    return _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
}

#endif
