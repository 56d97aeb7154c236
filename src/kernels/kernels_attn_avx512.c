/* AVX-512 steps of the F16 attention (kernels_attn.c has the driver): 16 lanes,
 * rows padded to 16 so that only the widening of a cached row needs a mask. */
#include "kernels/kernels_attn_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

#include "kernels/kernels_exp_poly.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m512 round_half16(__m512 x)
{
    return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

static void widen(const uint16_t *src, size_t src_stride, int n, int width, float *dst, size_t dst_stride)
{
    int full = width & ~15;
    __mmask16 tail = (__mmask16)((1u << (width - full)) - 1);
    for (int i = 0; i < n; i++) {
        const uint16_t *s = src + (size_t)i * src_stride;
        float *d = dst + (size_t)i * dst_stride;
        int c = 0;
        for (; c < full; c += 16)
            _mm512_store_ps(d + c, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s + c))));
        if (tail)
            _mm512_store_ps(d + c, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail, s + c)));
    }
}

/* Eight positions at a time: each query vector loaded once serves eight keys. */
static void scores(const float *q, const float *k, size_t k_stride, int n, int dk, float *s)
{
    int dkp = (dk + 15) & ~15, i = 0;
    for (; i + 8 <= n; i += 8) {
        const float *k0 = k + (size_t)i * k_stride;
        __m512 a[8];
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            a[j] = _mm512_setzero_ps();
        for (int c = 0; c < dkp; c += 16) {
            __m512 qv = _mm512_load_ps(q + c);
#pragma GCC unroll 8
            for (int j = 0; j < 8; j++)
                a[j] = _mm512_fmadd_ps(qv, _mm512_load_ps(k0 + (size_t)j * k_stride + c), a[j]);
        }
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            s[i + j] = _mm512_reduce_add_ps(a[j]);
    }
    for (; i < n; i++) {
        const float *ki = k + (size_t)i * k_stride;
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        int c = 0;
        for (; c + 32 <= dkp; c += 32) {
            a0 = _mm512_fmadd_ps(_mm512_load_ps(q + c), _mm512_load_ps(ki + c), a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(q + c + 16), _mm512_load_ps(ki + c + 16), a1);
        }
        if (c < dkp)
            a0 = _mm512_fmadd_ps(_mm512_load_ps(q + c), _mm512_load_ps(ki + c), a0);
        s[i] = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    }
}

/* e^x for x <= 0 by kernels_exp_poly.h's method, 2^n applied by scalef; e^0 is 1
 * exactly (n = 0, r = 0). */
static ALWAYS_INLINE __m512 exp16(__m512 x)
{
    __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(KQ_EXP_X_MIN), _CMP_LT_OQ);
    x = _mm512_max_ps(x, _mm512_set1_ps(KQ_EXP_X_MIN));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(KQ_EXP_LOG2E)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(KQ_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(KQ_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(KQ_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KQ_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KQ_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KQ_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KQ_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KQ_EXP_P5));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps((__mmask16)~underflow, e);
}

static void exp_rows(float *x, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(x + i, exp16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, exp16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* nv vectors of the running sum stay in registers across the block's positions:
 * with eight, eight independent round-to-half chains hide each other's latency. */
static ALWAYS_INLINE void accumulate_vectors(float *acc, const float *v, size_t v_stride, const float *w,
                                             const float *rescale, int n, int nv)
{
    __m512 a[8];
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        a[j] = _mm512_load_ps(acc + 16 * j);
    for (int i = 0; i < n; i++) {
        if (rescale && rescale[i] != 1.0f) {
            __m512 r = _mm512_set1_ps(rescale[i]);
#pragma GCC unroll 8
            for (int j = 0; j < nv; j++)
                a[j] = round_half16(_mm512_mul_ps(a[j], r));
        }
        __m512 wi = _mm512_set1_ps(w[i]);
        const float *vi = v + (size_t)i * v_stride;
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++)
            a[j] = round_half16(_mm512_add_ps(a[j], _mm512_mul_ps(wi, _mm512_load_ps(vi + 16 * j))));
    }
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        _mm512_store_ps(acc + 16 * j, a[j]);
}

static void accumulate(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv)
{
    int nvec = (dv + 15) / 16, j = 0;
    for (; j + 8 <= nvec; j += 8)
        accumulate_vectors(acc + 16 * j, v + 16 * j, v_stride, w, rescale, n, 8);
    for (; j + 4 <= nvec; j += 4)
        accumulate_vectors(acc + 16 * j, v + 16 * j, v_stride, w, rescale, n, 4);
    for (; j < nvec; j++)
        accumulate_vectors(acc + 16 * j, v + 16 * j, v_stride, w, rescale, n, 1);
}

static const ka_ops avx512_ops = {widen, scores, exp_rows, accumulate};

const ka_ops *ka_ops_avx512(void)
{
    return &avx512_ops;
}

#else /* no AVX-512 code on this target */

const ka_ops *ka_ops_avx512(void)
{
    return NULL;
}

#endif
