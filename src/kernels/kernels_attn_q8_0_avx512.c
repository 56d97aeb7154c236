/* AVX-512 (VNNI) steps of the Q8_0-cache attention (kernels_attn_q8_0.c has the
 * driver). A score takes two Q8_0 blocks per 512-bit step: VPDPBUSD multiplies
 * unsigned by signed bytes, so the query is stored offset by 128 (q + 128 fits a
 * byte as |q| <= 127) and each prepared key carries -128 x the sums of its byte
 * quads, the accumulator VPDPBUSD starts from, which leaves the exact integer
 * sums q . k; these become floats scaled by the product of the two blocks' scales
 * and summed with FMA, as ggml's vec_dot_q8_0_q8_0 does.
 *
 * Layouts, dk64 = dk rounded up to 64 (the padding holds zero keys, which add 0):
 *   query: u8 q + 128 [dk64], then f32 [dk64 / 64][16] its block scales, each
 *          repeated over the 8 lanes of its block;
 *   key:   s8 k [dk64], i32 [dk64 / 4] -128 x the sum of each byte quad, f32
 *          [dk64 / 64][16] the block scales as for the query. */
#include "kernels/kernels_attn_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__)

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

/* Block b's 32 quants, or zeros past the row's nb blocks. */
static ALWAYS_INLINE __m256i block_quants(const uint8_t *row, int b, int nb)
{
    return b < nb ? _mm256_loadu_si256((const __m256i *)(row + (size_t)b * BLOCK_BYTES + 2)) : _mm256_setzero_si256();
}

/* Blocks 2p and 2p + 1's scales, each over its 8 lanes. */
static ALWAYS_INLINE __m512 pair_scales(const uint8_t *row, int p, int nb)
{
    float d0 = block_scale(row + (size_t)(2 * p) * BLOCK_BYTES);
    float d1 = 2 * p + 1 < nb ? block_scale(row + (size_t)(2 * p + 1) * BLOCK_BYTES) : 0.0f;
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(d0)), _mm256_set1_ps(d1), 1);
}

static ALWAYS_INLINE __m512i pair_quants(const uint8_t *row, int p, int nb)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(block_quants(row, 2 * p, nb)), block_quants(row, 2 * p + 1, nb),
                              1);
}

static void prepare_query(const uint8_t *q8, int dk, void *dst)
{
    int dk64 = (int)ka_q8_pad64(dk), nb = dk / QK;
    uint8_t *qu = dst;
    float *qd = (float *)(qu + dk64);
    const __m512i offset = _mm512_set1_epi8((char)0x80);
    for (int p = 0; p < dk64 / 64; p++) {
        _mm512_store_si512(qu + 64 * p, _mm512_xor_si512(pair_quants(q8, p, nb), offset));
        _mm512_store_ps(qd + 16 * p, pair_scales(q8, p, nb));
    }
}

static void prepare_keys(const uint8_t *k, int n, int dk, void *dst)
{
    int dk64 = (int)ka_q8_pad64(dk), nb = dk / QK;
    size_t row_bytes = (size_t)nb * BLOCK_BYTES;
    const __m512i u128 = _mm512_set1_epi8((char)0x80);
    for (int i = 0; i < n; i++) {
        const uint8_t *row = k + (size_t)i * row_bytes;
        uint8_t *kq = (uint8_t *)dst + (size_t)i * ka_q8_key_bytes(dk);
        int32_t *neg = (int32_t *)(kq + dk64);
        float *kd = (float *)(kq + 2 * dk64);
        for (int p = 0; p < dk64 / 64; p++) {
            __m512i quants = pair_quants(row, p, nb);
            _mm512_store_si512(kq + 64 * p, quants);
            __m512i sum128 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u128, quants);
            _mm512_store_si512(neg + 16 * p, _mm512_sub_epi32(_mm512_setzero_si512(), sum128));
            _mm512_store_ps(kd + 16 * p, pair_scales(row, p, nb));
        }
    }
}

/* Four keys at a time, so that each query vector loaded serves four. */
static void scores(const void *q, const void *keys, int i0, int n, int dk, float *s)
{
    int dk64 = (int)ka_q8_pad64(dk), np = dk64 / 64;
    size_t stride = ka_q8_key_bytes(dk);
    const uint8_t *qu = q;
    const float *qd = (const float *)(qu + dk64);
    const uint8_t *k0 = (const uint8_t *)keys + (size_t)i0 * stride;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        __m512 acc[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            acc[j] = _mm512_setzero_ps();
        for (int p = 0; p < np; p++) {
            __m512i qv = _mm512_load_si512(qu + 64 * p);
            __m512 qs = _mm512_load_ps(qd + 16 * p);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                const uint8_t *kb = k0 + (size_t)(i + j) * stride;
                __m512i dot = _mm512_dpbusd_epi32(_mm512_load_si512(kb + dk64 + 64 * p), qv,
                                                  _mm512_load_si512(kb + 64 * p));
                __m512 scale = _mm512_mul_ps(qs, _mm512_load_ps((const float *)(kb + 2 * dk64) + 16 * p));
                acc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc[j]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            s[i + j] = _mm512_reduce_add_ps(acc[j]);
    }
    for (; i < n; i++) {
        const uint8_t *kb = k0 + (size_t)i * stride;
        __m512 acc = _mm512_setzero_ps();
        for (int p = 0; p < np; p++) {
            __m512i dot = _mm512_dpbusd_epi32(_mm512_load_si512(kb + dk64 + 64 * p), _mm512_load_si512(qu + 64 * p),
                                              _mm512_load_si512(kb + 64 * p));
            __m512 scale = _mm512_mul_ps(_mm512_load_ps(qd + 16 * p), _mm512_load_ps((const float *)(kb + 2 * dk64) + 16 * p));
            acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), scale, acc);
        }
        s[i] = _mm512_reduce_add_ps(acc);
    }
}

static void widen(const uint8_t *v, int n, int dv, float *dst, size_t dst_stride)
{
    int nb = dv / QK;
    for (int r = 0; r < n; r++) {
        const uint8_t *src = v + (size_t)r * nb * BLOCK_BYTES;
        float *d = dst + (size_t)r * dst_stride;
        for (int b = 0; b < nb; b++, src += BLOCK_BYTES) {
            __m512 scale = _mm512_set1_ps(block_scale(src));
            __m128i lo = _mm_loadu_si128((const __m128i *)(src + 2)), hi = _mm_loadu_si128((const __m128i *)(src + 18));
            _mm512_store_ps(d + QK * b, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), scale));
            _mm512_store_ps(d + QK * b + 16, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), scale));
        }
    }
}

/* nv vectors of the running sum stay in registers across the block's positions. */
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
                a[j] = _mm512_mul_ps(a[j], r);
        }
        __m512 wi = _mm512_set1_ps(w[i]);
        const float *vi = v + (size_t)i * v_stride;
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++)
            a[j] = _mm512_fmadd_ps(wi, _mm512_load_ps(vi + 16 * j), a[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < nv; j++)
        _mm512_store_ps(acc + 16 * j, a[j]);
}

/* dv is a multiple of 32: whole pairs of vectors. */
static void accumulate(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv)
{
    int nvec = dv / 16, j = 0;
    for (; j + 8 <= nvec; j += 8)
        accumulate_vectors(acc + 16 * j, v + 16 * j, v_stride, w, rescale, n, 8);
    for (; j + 2 <= nvec; j += 2)
        accumulate_vectors(acc + 16 * j, v + 16 * j, v_stride, w, rescale, n, 2);
}

static const ka_q8_ops avx512_ops = {prepare_query, prepare_keys, scores, widen, accumulate};

const ka_q8_ops *ka_q8_ops_avx512(void)
{
    return &avx512_ops;
}

#else /* no AVX-512 VNNI code on this target */

const ka_q8_ops *ka_q8_ops_avx512(void)
{
    return NULL;
}

#endif
