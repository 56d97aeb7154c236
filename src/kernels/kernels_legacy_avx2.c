/* AVX2/FMA/F16C versions of the 32-value block types: dequantization, the
 * activation quantizers (same bytes as the scalar reference) and integer dot
 * products against Q8_0 / Q8_1 activations, with tile kernels that load each
 * weight block once for up to four tokens (kernels_legacy_tiles.h, here with
 * maddubs + madd). */
#include "kernels/kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q8_avx2.h"

int kq_avx2_compiled(void)
{
    return 1;
}

/* maddubs (pairs into int16, no pair here exceeds it) then madd (into int32) */
#define KQ_DOT_U8_I8(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "kernels/kernels_legacy_tiles.h"

/* ---- dequantization ------------------------------------------------------------------ */

static inline void store_block(float *dst, __m256i bytes, float d, float m)
{
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k]));
        /* same roundings as the scalar q*d + m: a product, then a sum */
        _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(_mm256_mul_ps(v, vd), vm));
    }
}

static inline void store_block_signed(float *dst, __m256i bytes, float d)
{
    const __m256 vd = _mm256_set1_ps(d);
    __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), vd));
}

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q4_0(&b[i]), half(b[i].d));
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q5_0(&b[i]), half(b[i].d));
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q8_0(&b[i]), half(b[i].d));
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block(dst + i * KQ_QK, levels_q4_1(&b[i]), half(b[i].d), half(b[i].m));
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block(dst + i * KQ_QK, levels_q5_1(&b[i]), half(b[i].d), half(b[i].m));
}

/* ---- activation quantizers ----------------------------------------------------------- */

/* Quantizes one block to int8 with the scalar reference's d and rounding; returns
 * sum(qs) and stores d (float, before rounding to half). */
static inline int quantize_block(const float *src, int8_t qs[32], float *d_out)
{
    __m256i q = kq_q8_block_avx2(src, d_out);
    _mm256_storeu_si256((__m256i *)qs, q);
    /* sum of the 32 int8: widen to 16 bits, pair-add to 32, then fold */
    __m256i s16 = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
                                   _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)));
    __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(t);
}

void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
    }
}

void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        int sum = quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
        b[i].s = el_f32_to_fp16((float)sum * d);
    }
}

/* Q8_K, byte for byte as kq_quantize_q8_k: the scale comes from the first value of
 * largest magnitude (sign kept); rounding to nearest even by cvtps equals ggml's
 * mantissa trick for the |v| <= 127 produced here. */
enum { Q8K_QK = 256 };

static float first_signed_absmax(const float *x)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 amax8 = _mm256_setzero_ps();
    for (int j = 0; j < Q8K_QK; j += 8)
        amax8 = _mm256_max_ps(amax8, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float amax = _mm_cvtss_f32(m);
    if (amax == 0.0f)
        return 0.0f;
    __m256 want = _mm256_set1_ps(amax);
    for (int j = 0; j < Q8K_QK; j += 8) {
        __m256 a = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j));
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(a, want, _CMP_EQ_OQ));
        if (hits)
            return x[j + __builtin_ctz((unsigned)hits)];
    }
    return 0.0f; /* not reached for finite input */
}

/* Sums of each 16 consecutive int8 of qs[256] into 16 int16, in order. */
static void block_sums16(const int8_t *qs, int16_t *sums)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i part[8];
    for (int k = 0; k < 8; k++) /* groups 2k (low lane) and 2k+1 (high lane): four int32 each */
        part[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(qs + 32 * k))),
                                    ones16);
    /* two hadd rounds leave, per 128-bit lane, one total per group: [g0 g2 g4 g6 | g1 g3 g5 g7]
     * for part 0..3, likewise g8.. for part 4..7 */
    __m256i lo = _mm256_hadd_epi32(_mm256_hadd_epi32(part[0], part[1]), _mm256_hadd_epi32(part[2], part[3]));
    __m256i hi = _mm256_hadd_epi32(_mm256_hadd_epi32(part[4], part[5]), _mm256_hadd_epi32(part[6], part[7]));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    lo = _mm256_permutevar8x32_epi32(lo, order);
    hi = _mm256_permutevar8x32_epi32(hi, order);
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
    _mm256_storeu_si256((__m256i *)sums, packed);
}

void kq_quantize_q8_k_avx2(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const size_t block_bytes = 4 + Q8K_QK + 2 * (Q8K_QK / 16);
    for (int64_t i = 0; i < n / Q8K_QK; i++, src += Q8K_QK, out += block_bytes) {
        int8_t *qs = (int8_t *)(out + 4);
        float max = first_signed_absmax(src);
        float d = 0.0f;
        if (max == 0.0f) {
            memset(qs, 0, Q8K_QK);
        } else {
            float iscale = -127.0f / max;
            __m256 vs = _mm256_set1_ps(iscale);
            const __m256i top = _mm256_set1_epi32(127);
            for (int j = 0; j < Q8K_QK; j += 32) {
                __m256i q[4];
                for (int k = 0; k < 4; k++)
                    q[k] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(src + j + 8 * k))));
                __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256((__m256i *)(qs + j), p8);
            }
            d = 1.0f / iscale;
        }
        memcpy(out, &d, sizeof d);
        int16_t sums[Q8K_QK / 16];
        block_sums16(qs, sums);
        memcpy(out + 4 + Q8K_QK, sums, sizeof sums);
    }
}

kq_impl kq_legacy_avx2(uint32_t type)
{
    kq_impl impl = {0};
    switch (type) {
    case GGUF_TYPE_Q4_0:
        impl = (kq_impl){dequant_q4_0, NULL, NULL, NULL, NULL, 0}; /* dots: kernels_q4_0_avx2.c */
        kq_q4_0_quads_avx2(&impl);
        break;
    case GGUF_TYPE_Q4_1:
        impl = kq_legacy_tiles(type);
        impl.dequant = dequant_q4_1;
        break;
    case GGUF_TYPE_Q5_0:
        impl = kq_legacy_tiles(type);
        impl.dequant = dequant_q5_0;
        break;
    case GGUF_TYPE_Q5_1:
        impl = kq_legacy_tiles(type);
        impl.dequant = dequant_q5_1;
        break;
    case GGUF_TYPE_Q8_0:
        impl = kq_legacy_tiles(type);
        impl.dequant = dequant_q8_0;
        break;
    default:
        break;
    }
    return impl;
}

#else /* no AVX2 code on this target */

int kq_avx2_compiled(void)
{
    return 0;
}

void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_0(src, dst, n);
}

void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_1(src, dst, n);
}

void kq_quantize_q8_k_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_k(src, dst, n);
}

kq_impl kq_legacy_avx2(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
