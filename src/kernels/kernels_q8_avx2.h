/* Inside the kernels layer, for *_avx2.c files only: quantizing one 32-value block of
 * activations to int8 exactly as the scalar Q8_0 reference does (d = max|x| / 127,
 * roundf), shared by the Q8_0/Q8_1 activation quantizer and Q4_0's record layout. */
#ifndef ELLIOTT_KERNELS_Q8_AVX2_H
#define ELLIOTT_KERNELS_Q8_AVX2_H

#include <immintrin.h>

/* roundf (half away from zero) exactly, as the scalar quantizer rounds. */
static inline __attribute__((always_inline)) __m256i kq_round_half_away(__m256 v)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
    __m256 bump = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step);
    return _mm256_cvttps_epi32(_mm256_add_ps(t, bump));
}

/* The block's 32 int8 values in order, and its scale d (float, before any rounding to
 * half precision). */
static inline __attribute__((always_inline)) __m256i kq_q8_block_avx2(const float *src, float *d_out)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(src + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float d = _mm_cvtss_f32(m) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++)
        q[k] = kq_round_half_away(_mm256_mul_ps(v[k], vid));
    /* pack 32 int32 -> 32 int8; packs work per 128-bit lane, so restore the order */
    __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    *d_out = d;
    return _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

#endif
