/* AVX2 (+FMA, F16C) steps of the F16 attention (kernels_attn.c has the driver):
 * 8 lanes over rows padded to 16. */
#include "kernels/kernels_attn_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

#include "kernels/kernels_exp_avx2.h"

#include "base/fp16.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

static ALWAYS_INLINE __m256 load_half8(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static ALWAYS_INLINE __m256 round_half8(__m256 x)
{
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
}

static ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static void widen(const uint16_t *src, size_t src_stride, int n, int width, float *dst, size_t dst_stride)
{
    int padded = (width + 15) & ~15;
    for (int i = 0; i < n; i++) {
        const uint16_t *s = src + (size_t)i * src_stride;
        float *d = dst + (size_t)i * dst_stride;
        int c = 0;
        for (; c + 8 <= width; c += 8)
            _mm256_store_ps(d + c, load_half8(s + c));
        for (; c < width; c++)
            d[c] = el_fp16_to_f32(s[c]);
        for (; c < padded; c++)
            d[c] = 0.0f;
    }
}

/* Four positions at a time, two accumulators each (16 lanes a step). */
static void scores(const float *q, const float *k, size_t k_stride, int n, int dk, float *s)
{
    int dkp = (dk + 15) & ~15, i = 0;
    for (; i + 4 <= n; i += 4) {
        const float *k0 = k + (size_t)i * k_stride;
        __m256 a[4], b[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            a[j] = b[j] = _mm256_setzero_ps();
        for (int c = 0; c < dkp; c += 16) {
            __m256 q0 = _mm256_load_ps(q + c), q1 = _mm256_load_ps(q + c + 8);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                a[j] = _mm256_fmadd_ps(q0, _mm256_load_ps(k0 + (size_t)j * k_stride + c), a[j]);
                b[j] = _mm256_fmadd_ps(q1, _mm256_load_ps(k0 + (size_t)j * k_stride + c + 8), b[j]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            s[i + j] = hsum8(_mm256_add_ps(a[j], b[j]));
    }
    for (; i < n; i++) {
        const float *ki = k + (size_t)i * k_stride;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int c = 0; c < dkp; c += 16) {
            a0 = _mm256_fmadd_ps(_mm256_load_ps(q + c), _mm256_load_ps(ki + c), a0);
            a1 = _mm256_fmadd_ps(_mm256_load_ps(q + c + 8), _mm256_load_ps(ki + c + 8), a1);
        }
        s[i] = hsum8(_mm256_add_ps(a0, a1));
    }
}

static void exp_rows(float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        float tmp[8] = {0};
        for (int j = i; j < n; j++)
            tmp[j - i] = x[j];
        _mm256_storeu_ps(tmp, exp8(_mm256_loadu_ps(tmp)));
        for (int j = i; j < n; j++)
            x[j] = tmp[j - i];
    }
}

/* nv vectors of the running sum stay in registers across the block's positions,
 * independent round-to-half chains hiding each other's latency. */
static ALWAYS_INLINE void accumulate_vectors(float *acc, const float *v, size_t v_stride, const float *w,
                                             const float *rescale, int n, int nv)
{
    __m256 a[8];
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        a[j] = _mm256_load_ps(acc + 8 * j);
    for (int i = 0; i < n; i++) {
        if (rescale && rescale[i] != 1.0f) {
            __m256 r = _mm256_set1_ps(rescale[i]);
#pragma GCC unroll 8
            for (int j = 0; j < nv; j++)
                a[j] = round_half8(_mm256_mul_ps(a[j], r));
        }
        __m256 wi = _mm256_set1_ps(w[i]);
        const float *vi = v + (size_t)i * v_stride;
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++)
            a[j] = round_half8(_mm256_add_ps(a[j], _mm256_mul_ps(wi, _mm256_load_ps(vi + 8 * j))));
    }
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        _mm256_store_ps(acc + 8 * j, a[j]);
}

static void accumulate(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv)
{
    int nvec = ((dv + 15) & ~15) / 8, j = 0;
    for (; j + 8 <= nvec; j += 8)
        accumulate_vectors(acc + 8 * j, v + 8 * j, v_stride, w, rescale, n, 8);
    for (; j + 2 <= nvec; j += 2)
        accumulate_vectors(acc + 8 * j, v + 8 * j, v_stride, w, rescale, n, 2);
}

static const ka_ops avx2_ops = {widen, scores, exp_rows, accumulate};

const ka_ops *ka_ops_avx2(void)
{
    return &avx2_ops;
}

#else /* no AVX2 code on this target */

const ka_ops *ka_ops_avx2(void)
{
    return NULL;
}

#endif
