/* AVX-VNNI K-quant kernels (Q2_K..Q5_K against Q8_K activations): the AVX-512
 * kernels' scheme (kernels_kquant_avx512.c) with 256-bit vpdpbusd, for CPUs that
 * have VNNI without AVX-512. Q6_K has none: built this way its codes cost as much
 * as the AVX2 kernel's maddubs saves (tiles no faster, one row slower), so it stays
 * on AVX2.
 *
 * The activations are in the same t8 layout (kq_block_q8_K_t8). Each of its 64-byte
 * vectors is read as two halves: the low half holds groups 0..3, the high half
 * groups 4..7, so one accumulator per half keeps every lane on one group (lanes 2s'
 * and 2s'+1 on group 4h + s'). Q4_K/Q5_K codes are gathered into that order with
 * broadcast loads; Q2_K/Q3_K codes are built per 32-value group, as the AVX2 kernels
 * do, then transposed as 4 x 4 matrices of qwords. Integer sums are exact; the scales are applied in float, so results
 * differ from the scalar reference by float rounding alone. */
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_kquant_x86.h"

/* Tokens per tile call: one accumulator each, beside a block's 8 code vectors and
 * its factors in the 16 ymm registers. */
#define KQVNNI_TILE_COLS 8

static inline float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline __m256i load256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline float hsum256(__m256 v)
{
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_movehdup_ps(q));
    return _mm_cvtss_f32(q);
}

/* Codes of four 32-value groups (c[k] = group 4h + k, values in natural order)
 * -> the t8 half-vectors of half h: out[g] holds qword g of c[0], c[1], c[2], c[3]. */
static inline void transpose_qwords(const __m256i c[4], __m256i out[4])
{
    const __m256i u0 = _mm256_unpacklo_epi64(c[0], c[1]), u1 = _mm256_unpackhi_epi64(c[0], c[1]);
    const __m256i u2 = _mm256_unpacklo_epi64(c[2], c[3]), u3 = _mm256_unpackhi_epi64(c[2], c[3]);
    out[0] = _mm256_permute2x128_si256(u0, u2, 0x20);
    out[1] = _mm256_permute2x128_si256(u1, u3, 0x20);
    out[2] = _mm256_permute2x128_si256(u0, u2, 0x31);
    out[3] = _mm256_permute2x128_si256(u1, u3, 0x31);
}

/* Eight float lanes [b0 b0 b1 b1 b2 b2 b3 b3] from unsigned bytes b0..b3 of `bytes`
 * (upper: bytes 4..7), times factor. */
static inline __m256 paired_u8(__m128i bytes, int upper, float factor)
{
    __m128i pairs = _mm_unpacklo_epi8(bytes, bytes);
    if (upper)
        pairs = _mm_srli_si128(pairs, 8);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(pairs)), _mm256_set1_ps(factor));
}

/* ---- Q4_K and Q5_K ----------------------------------------------------------------- */

typedef struct k4_block {
    __m256i codes[4][2]; /* [g][h] */
    __m256 scales[2];    /* half h: d * scale (4h + s') in lanes 2s', 2s'+1 */
    __m256 mins[2];      /* -dmin * min j/2 for bsums_d j = 8h .. 8h+7 */
} k4_block;

static inline void k4_header(k4_block *b, const uint8_t packed[12], uint16_t d16, uint16_t dmin16)
{
    const __m128i sm = kq_k4_scales_mins(packed);
    const __m128i mins = _mm_unpackhi_epi64(sm, sm);
    const float d = half_to_float(d16), neg_dmin = -half_to_float(dmin16);
    for (int h = 0; h < 2; h++) {
        b->scales[h] = paired_u8(sm, h, d);
        b->mins[h] = paired_u8(mins, h, neg_dmin);
    }
}

static inline __m256i bcast_qword(const uint8_t *p)
{
    int64_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi64x(v);
}

/* Half-vector (g, h) holds qword g of groups 4h..4h+3: group 2c is the low nibbles
 * of qs qword 4c + g, group 2c+1 the high nibbles of the same qword. Broadcast
 * loads, a blend and a variable shift build it without shuffles (port 5 would
 * bound the block otherwise). `fifth` adds Q5_K's bit 4 (NULL for Q4_K): bit s of
 * qh byte l is the fifth bit of value 32s + l. */
static inline void k4_codes(k4_block *b, const uint8_t *qs, const uint8_t *fifth)
{
    const __m256i mask4 = _mm256_set1_epi8(0x0F), bit4 = _mm256_set1_epi8(0x10);
    const __m256i odd_high = _mm256_setr_epi64x(0, 4, 0, 4);
    const __m256i to_bit4[2] = {_mm256_setr_epi64x(4, 3, 2, 1), _mm256_setr_epi64x(0, 1, 2, 3)};
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) {
        const __m256i qh = fifth ? bcast_qword(fifth + 8 * g) : _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i pair = _mm256_blend_epi32(bcast_qword(qs + 8 * (8 * h + g)),
                                                    bcast_qword(qs + 8 * (8 * h + 4 + g)), 0xF0);
            __m256i codes = _mm256_and_si256(_mm256_srlv_epi64(pair, odd_high), mask4);
            if (fifth) {
                const __m256i bit = h ? _mm256_srlv_epi64(qh, to_bit4[1]) : _mm256_sllv_epi64(qh, to_bit4[0]);
                codes = _mm256_or_si256(codes, _mm256_and_si256(bit, bit4));
            }
            b->codes[g][h] = codes;
        }
    }
}

static inline void q4_K_decode(const kq_block_q4_K *src, k4_block *b)
{
    k4_header(b, src->scales, src->d, src->dmin);
    k4_codes(b, src->qs, NULL);
}

static inline void q5_K_decode(const kq_block_q5_K *src, k4_block *b)
{
    k4_header(b, src->scales, src->d, src->dmin);
    k4_codes(b, src->qs, src->qh);
}

/* A block's terms are summed apart and added to the running sum once: with eight
 * lanes, adding each term to it lost too much (2.7e-6 relative on a row of 16384
 * values all of one sign). */
static inline void k4_accumulate(const k4_block *b, const kq_block_q8_K_t8 *x, __m256 *acc)
{
    __m256 scaled = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i dots = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), b->codes[0][h], load256(x->qs + 32 * h));
#pragma GCC unroll 3
        for (int g = 1; g < 4; g++)
            dots = _mm256_dpbusd_avx_epi32(dots, b->codes[g][h], load256(x->qs + 64 * g + 32 * h));
        scaled = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots), b->scales[h], scaled);
    }
    const __m256 mins = _mm256_fmadd_ps(b->mins[1], _mm256_loadu_ps(x->bsums_d + 8),
                                        _mm256_mul_ps(b->mins[0], _mm256_loadu_ps(x->bsums_d)));
    *acc = _mm256_add_ps(*acc, _mm256_fmadd_ps(scaled, _mm256_set1_ps(x->d), mins));
}

/* ---- 16-value sub-blocks: Q3_K, Q2_K ------------------------------------------- */

typedef struct k16_block {
    __m256i codes[4][2]; /* [g][h], the value plus an offset */
    __m256 first[2];     /* half h: d * scale 2(4h + s') in lanes 2s', 2s'+1 */
    __m256 second[2];    /* d * scale 2(4h + s') + 1 */
    __m256 bsum_factors[2];
} k16_block;

/* From sixteen int16 scales (and the weight factor of each against bsums_d). */
static inline void k16_scales(k16_block *b, __m256i sixteen, float d, __m256i bsum_weights, float bsum_factor)
{
    for (int h = 0; h < 2; h++) {
        const __m128i half = h ? _mm256_extracti128_si256(sixteen, 1) : _mm256_castsi256_si128(sixteen);
        /* dword s' of half = (scale 2s', scale 2s'+1) */
        const __m256i pairs = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(half),
                                                          _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
        const __m256i first = _mm256_srai_epi32(_mm256_slli_epi32(pairs, 16), 16);
        const __m256i second = _mm256_srai_epi32(pairs, 16);
        b->first[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(first), _mm256_set1_ps(d));
        b->second[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(second), _mm256_set1_ps(d));
        const __m128i w = h ? _mm256_extracti128_si256(bsum_weights, 1) : _mm256_castsi256_si128(bsum_weights);
        b->bsum_factors[h] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(w)), _mm256_set1_ps(bsum_factor));
    }
}

static inline void k16_accumulate(const k16_block *b, const kq_block_q8_K_t8 *x, __m256 *acc)
{
    const __m256i zero = _mm256_setzero_si256();
    __m256 sum = _mm256_setzero_ps();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const int8_t *q = x->qs + 32 * h;
        const __m256i first = _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(zero, b->codes[0][h], load256(q)),
                                                      b->codes[1][h], load256(q + 64));
        const __m256i second = _mm256_dpbusd_avx_epi32(
            _mm256_dpbusd_avx_epi32(zero, b->codes[2][h], load256(q + 128)), b->codes[3][h], load256(q + 192));
        sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(first), b->first[h], sum);
        sum = _mm256_fmadd_ps(_mm256_cvtepi32_ps(second), b->second[h], sum);
    }
    const __m256 offsets = _mm256_fmadd_ps(b->bsum_factors[1], _mm256_loadu_ps(x->bsums_d + 8),
                                           _mm256_mul_ps(b->bsum_factors[0], _mm256_loadu_ps(x->bsums_d)));
    *acc = _mm256_add_ps(*acc, _mm256_fmadd_ps(sum, _mm256_set1_ps(x->d), offsets));
}

static inline void k16_store_codes(k16_block *b, int h, __m256i group[4])
{
    __m256i t[4];
    transpose_qwords(group, t);
    for (int g = 0; g < 4; g++)
        b->codes[g][h] = t[g];
}

/* Q2_K and Q3_K: the low two bits of group 4h + k are bits 2k, 2k+1 of qs[32h + l];
 * Q3_K's third bit (set: the value is not lowered by 4) is bit 4h + k of hmask[l]. */
static inline void low2_groups(k16_block *b, const uint8_t *qs, const uint8_t *hmask)
{
    const __m256i mask2 = _mm256_set1_epi8(3), bit2 = _mm256_set1_epi8(4);
    const __m256i hm = hmask ? load256(hmask) : _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        const __m256i q = load256(qs + 32 * h);
        __m256i group[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            group[k] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask2);
            if (hmask) {
                const int s = 4 * h + k;
                const __m256i bit = s <= 2 ? _mm256_slli_epi16(hm, 2 - s) : _mm256_srli_epi16(hm, s - 2);
                group[k] = _mm256_or_si256(group[k], _mm256_and_si256(bit, bit2));
            }
        }
        k16_store_codes(b, h, group);
    }
}

static inline void q3_K_decode(const kq_block_q3_K *src, k16_block *b)
{
    low2_groups(b, src->qs, src->hmask);
    const float d = half_to_float(src->d);
    const __m256i scales = _mm256_cvtepi8_epi16(kq_q3_K_scales_i8(src->scales));
    k16_scales(b, scales, d, scales, -4.0f * d);
}

static inline void q2_K_decode(const kq_block_q2_K *src, k16_block *b)
{
    low2_groups(b, src->qs, NULL);
    const __m128i packed = _mm_loadu_si128((const __m128i *)src->scales);
    const __m128i mask4 = _mm_set1_epi8(0x0F);
    k16_scales(b, _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask4)), half_to_float(src->d),
               _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask4)), -half_to_float(src->dmin));
}

/* ---- tiles ------------------------------------------------------------------------- */

#define KQT_VEC __m256
#define KQT_ZERO _mm256_setzero_ps
#define KQT_HSUM hsum256
#define KQT_ACT kq_block_q8_K_t8
#define KQT_COLS KQVNNI_TILE_COLS
#include "kernels/kernels_kquant_tiles.h"

KQT_STATIC_KERNELS(q2_K, k16_block, q2_K_decode, k16_accumulate)
KQT_STATIC_KERNELS(q3_K, k16_block, q3_K_decode, k16_accumulate)
KQT_STATIC_KERNELS(q4_K, k4_block, q4_K_decode, k4_accumulate)
KQT_STATIC_KERNELS(q5_K, k4_block, q5_K_decode, k4_accumulate)

static kq_impl impl_of(kq_dot_fn dot, kq_dot_tile_fn tile)
{
    return (kq_impl){NULL, dot, tile, kq_quantize_q8_k_t8_avx2, kq_q8_k_t8_row_bytes, KQVNNI_TILE_COLS};
}

kq_impl kq_kquant_avx_vnni(uint32_t type)
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
    default:
        return (kq_impl){0};
    }
}

#else /* no AVX-VNNI code on this target */

kq_impl kq_kquant_avx_vnni(uint32_t type)
{
    (void)type;
    return (kq_impl){0};
}

#endif
