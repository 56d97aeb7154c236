/* Inside the kernels layer: e^x on 8 floats for the files compiled with AVX2 and FMA
 * (the vector operations and attention), by kernels_exp_poly.h's method; above 88 it
 * saturates at e^88; e^0 is exactly 1 (n = 0, r = 0). The includer includes
 * immintrin.h first. */
#ifndef ELLIOTT_KERNELS_EXP_AVX2_H
#define ELLIOTT_KERNELS_EXP_AVX2_H

#include "kernels/kernels_exp_poly.h"

static inline __attribute__((always_inline)) __m256 exp8(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(KQ_EXP_X_MIN), hi = _mm256_set1_ps(KQ_EXP_X_MAX);
    __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(KQ_EXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(KQ_EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(KQ_EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(KQ_EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(KQ_EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(KQ_EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(KQ_EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(KQ_EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(KQ_EXP_P5));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i scale = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, _mm256_castsi256_ps(scale)));
}

#endif
