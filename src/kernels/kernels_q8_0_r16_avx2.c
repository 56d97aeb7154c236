/* AVX2 kernels over Q8_0 repacked into groups of 16 rows (kernels_q8_0_r16_ymm.h).
 * maddubs sums pairs of unsigned-by-signed products in int16, where the stored values
 * (up to 255) times activations (up to 127 in magnitude) would saturate: each line goes
 * back to its signed values (one xor, shared by the tile's tokens) and is multiplied
 * with the sign trick, |w| times x carrying w's sign (pairs within 2 * 128 * 127). */
#include "kernels/kernels_q8_0_r16.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>

typedef struct k8_wvec {
    __m256i abs, sign;
} k8_wvec;

static inline __attribute__((always_inline)) k8_wvec signed_weights(__m256i stored)
{
    __m256i w = _mm256_xor_si256(stored, _mm256_set1_epi8((char)0x80));
    return (k8_wvec){_mm256_abs_epi8(w), w};
}

#define K8_WEIGHTS(v) signed_weights(v)
#define K8_DOT_ADD(s, w, x)                                                                  \
    _mm256_add_epi32((s), _mm256_madd_epi16(_mm256_maddubs_epi16((w).abs, _mm256_sign_epi8((x), (w).sign)), \
                                            _mm256_set1_epi16(1)))
#define K8_START(a) ((void)(a), _mm256_setzero_si256())
#include "kernels/kernels_q8_0_r16_ymm.h"

kq_impl kq_q8_0_r16_avx2(void)
{
    return r16_impl();
}

#else

kq_impl kq_q8_0_r16_avx2(void)
{
    return (kq_impl){0};
}

#endif
