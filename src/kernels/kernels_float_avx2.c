/* AVX2/FMA/F16C versions of the float weight types: dequantization and dot
 * products (F32 x F32, F16 x F16, BF16 x BF16) with float accumulators, plus tile
 * kernels that reuse each loaded weight vector for two tokens at a time. */
#include "kernels/kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"

/* Eight values of each element type as floats. */
static inline __m256 load8_f32(const void *p, int64_t k)
{
    return _mm256_loadu_ps((const float *)p + k);
}

static inline __m256 load8_f16(const void *p, int64_t k)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + k)));
}

static inline __m256 load8_bf16(const void *p, int64_t k)
{
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + k));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline float one_f32(const void *p, int64_t k)
{
    return ((const float *)p)[k];
}

static inline float one_f16(const void *p, int64_t k)
{
    return _cvtsh_ss(((const uint16_t *)p)[k]);
}

static inline float one_bf16(const void *p, int64_t k)
{
    return el_bf16_to_f32(((const uint16_t *)p)[k]);
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define DOT(fn, load_w, one_w, load_x, one_x)                                                \
    static void fn(int64_t n, const void *w, const void *x, float *out)                      \
    {                                                                                        \
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                           \
        __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();                           \
        int64_t k = 0;                                                                       \
        for (; k + 32 <= n; k += 32) {                                                       \
            a0 = _mm256_fmadd_ps(load_w(w, k), load_x(x, k), a0);                            \
            a1 = _mm256_fmadd_ps(load_w(w, k + 8), load_x(x, k + 8), a1);                    \
            a2 = _mm256_fmadd_ps(load_w(w, k + 16), load_x(x, k + 16), a2);                  \
            a3 = _mm256_fmadd_ps(load_w(w, k + 24), load_x(x, k + 24), a3);                  \
        }                                                                                    \
        for (; k + 8 <= n; k += 8)                                                           \
            a0 = _mm256_fmadd_ps(load_w(w, k), load_x(x, k), a0);                            \
        float sum = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));       \
        for (; k < n; k++)                                                                   \
            sum += one_w(w, k) * one_x(x, k);                                                \
        *out = sum;                                                                          \
    }

DOT(dot_f32, load8_f32, one_f32, load8_f32, one_f32)
DOT(dot_f16, load8_f16, one_f16, load8_f16, one_f16)
DOT(dot_bf16, load8_bf16, one_bf16, load8_bf16, one_bf16)

/* Up to 4 rows x 4 tokens, two tokens at a time: 8 accumulators, 4 weight vectors, the
 * row loop unrolled by pragma so that they stay in registers (GCC kept them on the
 * stack). */
#define TILE(fn, load_w, one_w, load_x, one_x, x_elem)                                       \
    static void fn(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,     \
                   size_t x_stride, int n_cols, float *y, int64_t y_stride)                  \
    {                                                                                        \
        const uint8_t *rows[4];                                                              \
        for (int r = 0; r < 4; r++)                                                          \
            rows[r] = (const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride; \
        for (int c0 = 0; c0 < n_cols; c0 += 2) {                                             \
            const uint8_t *x0 = (const uint8_t *)x + (size_t)c0 * x_stride;                  \
            const uint8_t *x1 = c0 + 1 < n_cols ? x0 + x_stride : x0;                        \
            __m256 acc[4][2];                                                                \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                              \
                acc[r][0] = acc[r][1] = _mm256_setzero_ps();                                 \
            int64_t k = 0;                                                                   \
            for (; k + 8 <= n; k += 8) {                                                     \
                __m256 v0 = load_x(x0, k), v1 = load_x(x1, k);                               \
                _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++) {                        \
                    __m256 wv = load_w(rows[r], k);                                          \
                    acc[r][0] = _mm256_fmadd_ps(wv, v0, acc[r][0]);                          \
                    acc[r][1] = _mm256_fmadd_ps(wv, v1, acc[r][1]);                          \
                }                                                                            \
            }                                                                                \
            for (int c = 0; c < 2 && c0 + c < n_cols; c++) {                                 \
                const uint8_t *xc = c ? x1 : x0;                                             \
                for (int r = 0; r < n_rows; r++) {                                           \
                    float sum = hsum(acc[r][c]);                                             \
                    for (int64_t j = k; j < n; j++)                                          \
                        sum += one_w(rows[r], j) * one_x(xc, j);                             \
                    y[(c0 + c) * y_stride + r] = sum;                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

TILE(tile_f32, load8_f32, one_f32, load8_f32, one_f32, float)
TILE(tile_f16, load8_f16, one_f16, load8_f16, one_f16, uint16_t)
TILE(tile_bf16, load8_bf16, one_bf16, load8_bf16, one_bf16, uint16_t)

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(dst + k, load8_f16(src, k));
    for (; k < n; k++)
        dst[k] = one_f16(src, k);
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    int64_t k = 0;
    for (; k + 8 <= n; k += 8)
        _mm256_storeu_ps(dst + k, load8_bf16(src, k));
    for (; k < n; k++)
        dst[k] = one_bf16(src, k);
}

kq_impl kq_float_avx2(uint32_t type)
{
    kq_impl impl = {0};
    switch (type) {
    case GGUF_TYPE_F32:
        impl = (kq_impl){NULL, dot_f32, tile_f32, NULL, NULL, 0};
        break;
    case GGUF_TYPE_F16:
        impl = (kq_impl){dequant_f16, dot_f16, tile_f16, NULL, NULL, 0};
        break;
    case GGUF_TYPE_BF16:
        impl = (kq_impl){dequant_bf16, dot_bf16, tile_bf16, NULL, NULL, 0};
        break;
    default:
        break;
    }
    return impl;
}

#else /* no AVX2 code on this target */

kq_impl kq_float_avx2(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
