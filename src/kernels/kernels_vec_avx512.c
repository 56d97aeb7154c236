/* AVX-512 vector operations, where 16 lanes pay: the half-precision dot and axpy
 * that attention runs over every cached position. The others fall back to the
 * AVX2 table (kernels.c merges them). Same roundings as the AVX2 versions: axpy
 * is exact against the reference, dot sums in float. */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

static inline __m512 load_f16x16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* The last n < 16 halves, zeros beyond (a masked load reads nothing past them). */
static inline __m512 load_f16_tail(const uint16_t *p, int64_t n)
{
    __mmask16 m = (__mmask16)((1u << n) - 1);
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}

static float dot_f16(const uint16_t *a, const uint16_t *b, int64_t n)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm512_fmadd_ps(load_f16x16(a + i), load_f16x16(b + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(a + i + 16), load_f16x16(b + i + 16), a1);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(load_f16x16(a + i), load_f16x16(b + i), a0);
    if (i < n)
        a1 = _mm512_fmadd_ps(load_f16_tail(a + i, n - i), load_f16_tail(b + i, n - i), a1);
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

static void axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
    /* product then sum, unfused, as the reference rounds */
    __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(va, load_f16x16(x + i))));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 yv = _mm512_maskz_loadu_ps(m, y + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(yv, _mm512_mul_ps(va, load_f16_tail(x + i, n - i))));
    }
}

static const kv_ops avx512_ops = {
    .dot_f16 = dot_f16,
    .axpy_f16 = axpy_f16,
};

const kv_ops *kv_ops_avx512(void)
{
    return &avx512_ops;
}

#else /* no AVX-512 code on this target */

const kv_ops *kv_ops_avx512(void)
{
    return NULL;
}

#endif
