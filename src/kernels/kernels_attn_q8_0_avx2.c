/* AVX2 (+FMA, F16C) steps of the Q8_0-cache attention (kernels_attn_q8_0.c has
 * the driver): one Q8_0 block per 256-bit step, as ggml's AVX2 vec_dot_q8_0_q8_0
 * does it: VPMADDUBSW multiplies |k| by q with k's sign (no pair of products can
 * saturate, |q|, |k| <= 127), VPMADDWD sums the pairs to eight 32-bit sums, which
 * become floats scaled by the product of the two blocks' scales and summed with
 * FMA.
 *
 * Layouts: query s8 q [dk] then, at byte ka_q8_pad64(dk), f32 [dk / 32] its block
 * scales; a key the same. */
#include "kernels/kernels_attn_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"

#define ALWAYS_INLINE inline __attribute__((always_inline))

enum { QK = 32, BLOCK_BYTES = 2 + QK };

static float block_scale(const uint8_t *block)
{
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return el_fp16_to_f32(h);
}

/* A row's quants back to back, then its scales as floats. */
static void split_row(const uint8_t *row, int d, uint8_t *dst)
{
    float *scales = (float *)(dst + ka_q8_pad64(d));
    for (int b = 0; b < d / QK; b++, row += BLOCK_BYTES) {
        _mm256_store_si256((__m256i *)(dst + QK * b), _mm256_loadu_si256((const __m256i *)(row + 2)));
        scales[b] = block_scale(row);
    }
}

static void prepare_query(const uint8_t *q8, int dk, void *dst)
{
    split_row(q8, dk, dst);
}

static void prepare_keys(const uint8_t *k, int n, int dk, void *dst)
{
    for (int i = 0; i < n; i++)
        split_row(k + (size_t)i * (dk / QK) * BLOCK_BYTES, dk, (uint8_t *)dst + (size_t)i * ka_q8_key_bytes(dk));
}

static ALWAYS_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The eight 32-bit partial sums of one block's q . k, as floats. */
static ALWAYS_INLINE __m256 block_dot(__m256i q, __m256i k)
{
    __m256i pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(k, k), _mm256_sign_epi8(q, k));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

/* Four keys at a time, so that each query block loaded serves four. */
static void scores(const void *q, const void *keys, int i0, int n, int dk, float *s)
{
    int nb = dk / QK;
    size_t stride = ka_q8_key_bytes(dk), scales_at = ka_q8_pad64(dk);
    const uint8_t *qq = q;
    const float *qd = (const float *)(qq + scales_at);
    const uint8_t *k0 = (const uint8_t *)keys + (size_t)i0 * stride;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256 acc[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[j] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m256i qv = _mm256_load_si256((const __m256i *)(qq + QK * b));
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const uint8_t *kb = k0 + (size_t)(i + j) * stride;
                __m256 scale = _mm256_set1_ps(qd[b] * ((const float *)(kb + scales_at))[b]);
                acc[j] = _mm256_fmadd_ps(block_dot(qv, _mm256_load_si256((const __m256i *)(kb + QK * b))), scale, acc[j]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            s[i + j] = hsum8(acc[j]);
    }
    for (; i < n; i++) {
        const uint8_t *kb = k0 + (size_t)i * stride;
        __m256 acc = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            __m256 scale = _mm256_set1_ps(qd[b] * ((const float *)(kb + scales_at))[b]);
            __m256 dot = block_dot(_mm256_load_si256((const __m256i *)(qq + QK * b)),
                                   _mm256_load_si256((const __m256i *)(kb + QK * b)));
            acc = _mm256_fmadd_ps(dot, scale, acc);
        }
        s[i] = hsum8(acc);
    }
}

static void widen(const uint8_t *v, int n, int dv, float *dst, size_t dst_stride)
{
    int nb = dv / QK;
    for (int r = 0; r < n; r++) {
        const uint8_t *src = v + (size_t)r * nb * BLOCK_BYTES;
        float *d = dst + (size_t)r * dst_stride;
        for (int b = 0; b < nb; b++, src += BLOCK_BYTES) {
            __m256 scale = _mm256_set1_ps(block_scale(src));
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m128i bytes = _mm_loadl_epi64((const __m128i *)(src + 2 + 8 * j));
                _mm256_store_ps(d + QK * b + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes)), scale));
            }
        }
    }
}

/* nv vectors of the running sum stay in registers across the block's positions. */
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
                a[j] = _mm256_mul_ps(a[j], r);
        }
        __m256 wi = _mm256_set1_ps(w[i]);
        const float *vi = v + (size_t)i * v_stride;
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++)
            a[j] = _mm256_fmadd_ps(wi, _mm256_load_ps(vi + 8 * j), a[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        _mm256_store_ps(acc + 8 * j, a[j]);
}

/* dv is a multiple of 32: whole groups of four vectors. */
static void accumulate(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv)
{
    int nvec = dv / 8, j = 0;
    for (; j + 8 <= nvec; j += 8)
        accumulate_vectors(acc + 8 * j, v + 8 * j, v_stride, w, rescale, n, 8);
    for (; j + 4 <= nvec; j += 4)
        accumulate_vectors(acc + 8 * j, v + 8 * j, v_stride, w, rescale, n, 4);
}

static const ka_q8_ops avx2_ops = {prepare_query, prepare_keys, scores, widen, accumulate};

const ka_q8_ops *ka_q8_ops_avx2(void)
{
    return &avx2_ops;
}

#else /* no AVX2 code on this target */

const ka_q8_ops *ka_q8_ops_avx2(void)
{
    return NULL;
}

#endif
