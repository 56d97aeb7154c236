/* AVX-512 members of the 32-value block types: the activation quantizers (the
 * scalar reference's bytes, one block per two zmm registers), the tile and dot
 * kernels of kernels_legacy_tiles.h with the 256-bit EVEX vpdpbusd (ymm keeps
 * three vector ports busy where zmm would have two; the gain is the dropped madd),
 * and Q4_0's own (kernels_q4_0_avx512.c). */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q8_avx512.h"

#define KQ_DOT_U8_I8(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#include "kernels/kernels_legacy_tiles.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

int kq_avx512_compiled(void)
{
    return 1;
}

/* One 32-value block: int8 in order into qs, d = max|x| / 127 (before rounding to
 * half); returns the sum of the int8 values. */
ALWAYS_INLINE int quantize_block(const float *src, int8_t *qs, float *d_out)
{
    __m256i q = kq_q8_block_avx512(src, d_out);
    _mm256_storeu_si256((__m256i *)qs, q);
    __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(1), q);
    return _mm512_reduce_add_epi32(_mm512_zextsi256_si512(sums));
}

void kq_quantize_q8_0_avx512(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
    }
}

void kq_quantize_q8_1_avx512(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        int sum = quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
        b[i].s = el_f32_to_fp16((float)sum * d);
    }
}

kq_impl kq_legacy_avx512(uint32_t type)
{
    kq_impl impl = {0}; /* dequantization: AVX2's */
    if (type == GGUF_TYPE_Q4_0)
        kq_q4_0_quads_avx512(&impl);
    else
        impl = kq_legacy_tiles(type);
    return impl;
}

#else /* no AVX-512 code on this target */

int kq_avx512_compiled(void)
{
    return 0;
}

void kq_quantize_q8_0_avx512(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_0(src, dst, n);
}

void kq_quantize_q8_1_avx512(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_1(src, dst, n);
}

kq_impl kq_legacy_avx512(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
