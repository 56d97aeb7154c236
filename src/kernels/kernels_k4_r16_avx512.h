/* Inside src/kernels only: the per-sub-block factors of a 16-row group block of the
 * Q4_K and Q5_K repacked layouts (kernels_q4_k_r16.c, kernels_q5_k_r16.c: d, dmin and
 * the 12 packed scale bytes of 16 rows at KK_R16_D and the block's kk_r16_places), for
 * the AVX-512 files over them. The includer is compiled with AVX-512 F/BW and includes
 * immintrin.h and kernels_q4_k_r16.h first. */
#ifndef ELLIOTT_KERNELS_K4_R16_AVX512_H
#define ELLIOTT_KERNELS_K4_R16_AVX512_H

/* Byte k of every lane as a float. */
static inline __attribute__((always_inline)) __m512 k4_byte_lane(__m512i v, int k)
{
    __m512i b = k == 0 ? v : _mm512_srli_epi32(v, 8 * k);
    if (k < 3)
        b = _mm512_and_si512(b, _mm512_set1_epi32(0xff));
    return _mm512_cvtepi32_ps(b);
}

/* Selects bits with vpternlog: a | (b & c). */
#define K4_TERN_A_OR_B_AND_C 0xF8

/* The group block's per-sub-block factors for 16 rows: scale[s] = d * scale s (times
 * odd_factor for the odd sub-blocks: Q4_K reads them from high nibbles left in place,
 * 16 times their value) and min[s] = -dmin * min s. The branch-free form of
 * kq_scale_min_k4 over the three words of 16 rows. */
static inline __attribute__((always_inline)) void k4_r16_factors(const uint8_t *g, const kk_r16_places *at,
                                                               float odd_factor, __m512 scale[KK_R16_SUBS],
                                                               __m512 min[KK_R16_SUBS])
{
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + KK_R16_D)));
    const __m512 d_odd = _mm512_mul_ps(d, _mm512_set1_ps(odd_factor));
    const __m512 neg_dmin =
        _mm512_sub_ps(_mm512_setzero_ps(), _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(g + at->dmin))));
    const __m512i u0 = _mm512_loadu_si512(g + at->scales);
    const __m512i u1 = _mm512_loadu_si512(g + at->scales + 64);
    const __m512i u2 = _mm512_loadu_si512(g + at->scales + 128);
    const __m512i low6 = _mm512_set1_epi8(0x3f), low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    const __m512i sc_lo = _mm512_and_si512(u0, low6);
    const __m512i mn_lo = _mm512_and_si512(u1, low6);
    const __m512i sc_hi = _mm512_ternarylogic_epi32(_mm512_and_si512(u2, low4), _mm512_srli_epi32(u0, 2), bits45,
                                                    K4_TERN_A_OR_B_AND_C);
    const __m512i mn_hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi32(u2, 4), low4),
                                                    _mm512_srli_epi32(u1, 2), bits45, K4_TERN_A_OR_B_AND_C);
    _Pragma("GCC unroll 4") for (int k = 0; k < 4; k++) {
        scale[k] = _mm512_mul_ps(k4_byte_lane(sc_lo, k), k % 2 ? d_odd : d);
        scale[k + 4] = _mm512_mul_ps(k4_byte_lane(sc_hi, k), k % 2 ? d_odd : d);
        min[k] = _mm512_mul_ps(k4_byte_lane(mn_lo, k), neg_dmin);
        min[k + 4] = _mm512_mul_ps(k4_byte_lane(mn_hi, k), neg_dmin);
    }
}

#endif
