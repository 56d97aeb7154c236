/* AVX-512 VNNI K-quant kernels (Q2_K..Q6_K against Q8_K activations).
 *
 * vpdpbusd multiplies 64 unsigned weight codes by 64 signed activation bytes and
 * adds each group of four products into one of 16 int32 lanes. Scales change
 * every 16 or 32 values, so to apply them once per super-block rather than once
 * per instruction, every lane must always meet the same sub-block: the
 * activations are kept in the "t8" layout (kq_block_q8_K_t8), where 64-byte vector
 * g of a block holds bytes 8g..8g+7 of each of the eight 32-value groups. Lanes 2s
 * and 2s+1 then always belong to group s, and the weight codes are gathered into
 * the same order with one qword permute per vector.
 *
 * Port 0 runs every vpdpbusd, so the work around them goes to the other vector
 * port: each lane's integer sum (exact) is converted and multiplied by its float
 * factor d * scale * dx (exact up to the dx product), and the min or offset term is
 * one multiply-add of weight factors against the activations' bsums * dx. The
 * result differs from the scalar reference (integer sums, then one scaling per
 * super-block) by float rounding alone. */
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_kquant_x86.h"

/* Tokens per tile call: each decoded weight block serves this many activation
 * rows, one float accumulator each (32 zmm registers leave room for 16). */
#define KQ512_TILE_COLS 16

static inline float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline __m512i load512(const void *p)
{
    return _mm512_loadu_si512(p);
}

static inline __m512i bcast_qword(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi64(v);
}

static inline float hsum512(__m512 v)
{
    __m256 s = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* Selects bits with vpternlog: a | (b & c). */
#define TERN_A_OR_B_AND_C 0xF8

/* vpdpbusd sums start from this integer, the bits of the float 1.5 * 2^23: a sum v
 * below 2^22 in magnitude then leaves the bits of the float 1.5 * 2^23 + v (whose
 * ulp is 1), and one subtraction gives v as a float, exactly. That takes the
 * conversion off port 0, which every vpdpbusd needs, to port 5. */
#define DOTS_START 0x4B400000
#define DOTS_START_FLOAT 12582912.0f

static inline __m512i dots_start(void)
{
    return _mm512_set1_epi32(DOTS_START);
}

static inline __m512 dots_to_float(__m512i dots)
{
    return _mm512_sub_ps(_mm512_castsi512_ps(dots), _mm512_set1_ps(DOTS_START_FLOAT));
}

/* Sixteen float lanes from the low 8 bytes of `bytes` (unsigned), each value in
 * lanes 2s and 2s+1, times `factor`: the per-lane scales of a t8 dot product. Exact
 * (a half times a 6-bit integer). */
static inline __m512 paired_scales_u8(__m128i bytes, float factor)
{
    const __m512i lanes = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(bytes, bytes));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(lanes), _mm512_set1_ps(factor));
}

/* The weight-side factors of the min or offset term against bsums_d (one per 16 values). */
static inline __m512 bsum_factors_i16(__m256i sixteen, float factor)
{
    return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi16_epi32(sixteen)), _mm512_set1_ps(factor));
}

/* ---- Q4_K and Q5_K ----------------------------------------------------------------- */

/* A decoded Q4_K/Q5_K block: codes[g] in the t8 order and the float factors. */
typedef struct k4_block {
    __m512i codes[4];
    __m512 scales; /* d * scale s in lanes 2s, 2s+1 */
    __m512 mins;   /* -dmin * min s in lanes 2s, 2s+1 (those of bsums_d) */
} k4_block;

static inline void k4_header(k4_block *b, const uint8_t packed[12], uint16_t d, uint16_t dmin)
{
    const __m128i sm = kq_k4_scales_mins(packed);
    b->scales = paired_scales_u8(sm, half_to_float(d));
    b->mins = paired_scales_u8(_mm_unpackhi_epi64(sm, sm), -half_to_float(dmin));
}

/* Codes of t8 vector g: group 2c is the low nibbles of qs qword 4c+g, group 2c+1
 * the high nibbles of the same qword. */
static inline __m512i k4_nibbles(__m512i q0, __m512i q1, int g)
{
    const __m512i idx = _mm512_set_epi64(12 + g, 12 + g, 8 + g, 8 + g, 4 + g, 4 + g, g, g);
    __m512i p = _mm512_permutex2var_epi64(q0, idx, q1);
    p = _mm512_mask_srli_epi16(p, 0xF0F0F0F0u /* the words of odd qwords */, p, 4);
    return _mm512_and_si512(p, _mm512_set1_epi8(0x0F));
}

static inline void q4_K_decode(const kq_block_q4_K *src, k4_block *b)
{
    k4_header(b, src->scales, src->d, src->dmin);
    const __m512i q0 = load512(src->qs), q1 = load512(src->qs + 64);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++)
        b->codes[g] = k4_nibbles(q0, q1, g);
}

static inline void q5_K_decode(const kq_block_q5_K *src, k4_block *b)
{
    k4_header(b, src->scales, src->d, src->dmin);
    const __m512i q0 = load512(src->qs), q1 = load512(src->qs + 64);
    /* bit s of qh byte l is the fifth bit of value 32s + l: rotate it to bit 4 */
    const __m512i rot = _mm512_set_epi64(61, 62, 63, 0, 1, 2, 3, 4);
    const __m512i bit4 = _mm512_set1_epi8(0x10);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i high = _mm512_rolv_epi64(bcast_qword(src->qh + 8 * g), rot);
        b->codes[g] = _mm512_ternarylogic_epi32(k4_nibbles(q0, q1, g), high, bit4, TERN_A_OR_B_AND_C);
    }
}

/* acc += dx sum_lanes (d scale) dots + sum_j (-dmin min) (dx bsum_j). A lane sums
 * 16 products of at most 31 * 128: far inside dots_to_float's range. */
static inline void k4_accumulate(const k4_block *b, const kq_block_q8_K_t8 *x, __m512 *acc)
{
    __m512i dots = _mm512_dpbusd_epi32(dots_start(), b->codes[0], load512(x->qs));
#pragma GCC unroll 3
    for (int g = 1; g < 4; g++)
        dots = _mm512_dpbusd_epi32(dots, b->codes[g], load512(x->qs + 64 * g));
    const __m512 scale = _mm512_mul_ps(b->scales, _mm512_set1_ps(x->d));
    *acc = _mm512_fmadd_ps(dots_to_float(dots), scale, *acc);
    *acc = _mm512_fmadd_ps(b->mins, _mm512_loadu_ps(x->bsums_d), *acc);
}

/* ---- 16-value sub-blocks: Q6_K, Q3_K, Q2_K ------------------------------------------- */

/* In the t8 order, vectors 0 and 1 hold the first 16 values of each 32-value group
 * s (sub-block 2s), vectors 2 and 3 the second 16 (sub-block 2s+1). */
typedef struct k16_block {
    __m512i codes[4];    /* unsigned: the value plus an offset */
    __m512 first;        /* d * scale 2s in lanes 2s, 2s+1 */
    __m512 second;       /* d * scale 2s+1 in lanes 2s, 2s+1 */
    __m512 bsum_factors; /* per 16 values: -d * scale * offset, or -dmin * min (Q2_K) */
} k16_block;

/* From sixteen int16 scales: lanes 2s, 2s+1 of `first` get d * scale 2s, those of
 * `second` d * scale 2s+1. */
static inline void k16_scales(k16_block *b, __m256i sixteen, float d)
{
    const __m512i pairs = _mm512_permutexvar_epi32(
        _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0), _mm512_castsi256_si512(sixteen));
    const __m512i first = _mm512_srai_epi32(_mm512_slli_epi32(pairs, 16), 16);
    const __m512i second = _mm512_srai_epi32(pairs, 16);
    b->first = _mm512_mul_ps(_mm512_cvtepi32_ps(first), _mm512_set1_ps(d));
    b->second = _mm512_mul_ps(_mm512_cvtepi32_ps(second), _mm512_set1_ps(d));
}

static inline void k16_accumulate(const k16_block *b, const kq_block_q8_K_t8 *x, __m512 *acc)
{
    const __m512i start = dots_start();
    const __m512i first = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, b->codes[0], load512(x->qs)),
                                              b->codes[1], load512(x->qs + 64));
    const __m512i second = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, b->codes[2], load512(x->qs + 128)),
                                               b->codes[3], load512(x->qs + 192));
    const __m512 sum = _mm512_fmadd_ps(dots_to_float(first), b->first,
                                       _mm512_mul_ps(dots_to_float(second), b->second));
    *acc = _mm512_fmadd_ps(sum, _mm512_set1_ps(x->d), *acc);
    *acc = _mm512_fmadd_ps(b->bsum_factors, _mm512_loadu_ps(x->bsums_d), *acc);
}

/* Q6_K: value 32s + 8g + t (s = 4h + k) has its low four bits in nibble k >> 1 of
 * ql[64h + 32(k & 1) + 8g + t] and its top two in bits 2k, 2k+1 of qh[32h + 8g + t].
 * Codes are value + 32. */
static inline void q6_K_decode(const kq_block_q6_K *src, k16_block *b)
{
    const __m512i ql0 = load512(src->ql), ql1 = load512(src->ql + 64), qh = load512(src->qh);
    const __m512i rot = _mm512_set_epi64(62, 0, 2, 4, 62, 0, 2, 4); /* bits 2k, 2k+1 -> 4, 5 */
    const __m512i low4 = _mm512_set1_epi8(0x0F), high2 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i idx_l = _mm512_set_epi64(12 + g, 8 + g, 12 + g, 8 + g, 4 + g, g, 4 + g, g);
        __m512i lo = _mm512_permutex2var_epi64(ql0, idx_l, ql1);
        lo = _mm512_mask_srli_epi16(lo, 0xFF00FF00u /* the words of qwords 2, 3, 6, 7 */, lo, 4);
        const __m512i idx_h = _mm512_set_epi64(4 + g, 4 + g, 4 + g, 4 + g, g, g, g, g);
        const __m512i hi = _mm512_rolv_epi64(_mm512_permutexvar_epi64(idx_h, qh), rot);
        b->codes[g] = _mm512_ternarylogic_epi32(_mm512_and_si512(lo, low4), hi, high2, TERN_A_OR_B_AND_C);
    }
    const float d = half_to_float(src->d);
    const __m256i scales = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)src->scales));
    k16_scales(b, scales, d);
    b->bsum_factors = bsum_factors_i16(scales, -32.0f * d);
}

/* Q2_K and Q3_K: value 32s + 8g + t (s = 4h + k) has its low two bits at bits 2k,
 * 2k+1 of qs[32h + 8g + t]. */
static inline __m512i low2_codes(__m512i qs, int g)
{
    const __m512i idx = _mm512_set_epi64(4 + g, 4 + g, 4 + g, 4 + g, g, g, g, g);
    const __m512i rot = _mm512_set_epi64(58, 60, 62, 0, 58, 60, 62, 0); /* bits 2k -> 0 */
    return _mm512_and_si512(_mm512_rolv_epi64(_mm512_permutexvar_epi64(idx, qs), rot), _mm512_set1_epi8(3));
}

/* A set hmask bit means the value is not lowered by 4: low | high << 2 is value + 4. */
static inline void q3_K_decode(const kq_block_q3_K *src, k16_block *b)
{
    const __m512i qs = load512(src->qs);
    /* bit s of hmask byte l is the third bit of value 32s + l: rotate it to bit 2 */
    const __m512i rot = _mm512_set_epi64(59, 60, 61, 62, 63, 0, 1, 2);
    const __m512i bit2 = _mm512_set1_epi8(4);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m512i high = _mm512_rolv_epi64(bcast_qword(src->hmask + 8 * g), rot);
        b->codes[g] = _mm512_ternarylogic_epi32(low2_codes(qs, g), high, bit2, TERN_A_OR_B_AND_C);
    }
    const float d = half_to_float(src->d);
    const __m256i scales = _mm256_cvtepi8_epi16(kq_q3_K_scales_i8(src->scales));
    k16_scales(b, scales, d);
    b->bsum_factors = bsum_factors_i16(scales, -4.0f * d);
}

static inline void q2_K_decode(const kq_block_q2_K *src, k16_block *b)
{
    const __m512i q = load512(src->qs);
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++)
        b->codes[g] = low2_codes(q, g);
    const __m128i packed = _mm_loadu_si128((const __m128i *)src->scales);
    const __m128i mask4 = _mm_set1_epi8(0x0F);
    k16_scales(b, _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask4)), half_to_float(src->d));
    b->bsum_factors = bsum_factors_i16(_mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask4)),
                                       -half_to_float(src->dmin));
}

/* ---- tiles ------------------------------------------------------------------------- */

#define KQT_VEC __m512
#define KQT_ZERO _mm512_setzero_ps
#define KQT_HSUM hsum512
#define KQT_ACT kq_block_q8_K_t8
#define KQT_COLS KQ512_TILE_COLS
#include "kernels/kernels_kquant_tiles.h"

KQT_STATIC_KERNELS(q2_K, k16_block, q2_K_decode, k16_accumulate)
KQT_STATIC_KERNELS(q3_K, k16_block, q3_K_decode, k16_accumulate)
KQT_STATIC_KERNELS(q4_K, k4_block, q4_K_decode, k4_accumulate)
KQT_STATIC_KERNELS(q5_K, k4_block, q5_K_decode, k4_accumulate)
KQT_STATIC_KERNELS(q6_K, k16_block, q6_K_decode, k16_accumulate)

static kq_impl impl_of(kq_dot_fn dot, kq_dot_tile_fn tile)
{
    return (kq_impl){NULL, dot, tile, kq_quantize_q8_k_t8_avx2, kq_q8_k_t8_row_bytes, KQ512_TILE_COLS};
}

kq_impl kq_kquant_avx512(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_Q2_K:
        return impl_of(dot_q2_K, dot_tile_q2_K);
    case GGUF_TYPE_Q3_K:
        return impl_of(dot_q3_K, dot_tile_q3_K);
    case GGUF_TYPE_Q4_K:
        return impl_of(dot_q4_K, dot_tile_q4_K);
    case GGUF_TYPE_Q5_K:
        return impl_of(dot_q5_K, dot_tile_q5_K);
    case GGUF_TYPE_Q6_K:
        return impl_of(dot_q6_K, dot_tile_q6_K);
    default:
        return (kq_impl){0};
    }
}

#else /* no AVX-512 code on this target */

kq_impl kq_kquant_avx512(uint32_t type)
{
    (void)type;
    return (kq_impl){0};
}

#endif
