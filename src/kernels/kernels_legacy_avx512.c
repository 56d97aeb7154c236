/* AVX-512 members of the 32-value block types: the activation quantizers (the
 * scalar reference's bytes, one block per two zmm registers). */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))

int kq_avx512_compiled(void)
{
    return 1;
}

/* roundf (half away from zero) exactly, as the scalar quantizer rounds. */
ALWAYS_INLINE __m512i round_half_away(__m512 v)
{
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m512 frac = _mm512_abs_ps(_mm512_sub_ps(v, t));
    __mmask16 up = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    __m512 step = _mm512_or_ps(_mm512_and_ps(v, _mm512_set1_ps(-0.0f)), _mm512_set1_ps(1.0f));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, up, t, step));
}

/* One 32-value block: int8 in order into qs, d = max|x| / 127 (before rounding to
 * half); returns the block's int32 values' sum. */
ALWAYS_INLINE int quantize_block(const float *src, int8_t *qs, float *d_out)
{
    __m512 v0 = _mm512_loadu_ps(src), v1 = _mm512_loadu_ps(src + 16);
    float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    float d = amax / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m512 vid = _mm512_set1_ps(id);
    __m512i q0 = round_half_away(_mm512_mul_ps(v0, vid));
    __m512i q1 = round_half_away(_mm512_mul_ps(v1, vid));
    _mm_storeu_si128((__m128i *)qs, _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i *)(qs + 16), _mm512_cvtsepi32_epi8(q1));
    *d_out = d;
    return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
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
    (void)type;
    kq_impl none = {0};
    return none;
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
