/* AVX2 K-quant kernels: the same arithmetic as kernels_kquant.c with 32 values
 * per instruction. Dot products multiply unsigned weight codes by signed Q8_K
 * bytes with maddubs (pairs summed into int16: at most 2 * 63 * 127, no
 * saturation), weight them by the sub-block scales with madd into int32, and
 * convert to float once per super-block. Signed codes are handled by using the
 * unsigned code and subtracting offset * scale * bsum, which the activation
 * block carries precomputed. Dequantization reproduces the scalar results bit
 * for bit (multiply, then subtract; never fused). */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"
#include "kernels/kernels_kquant_x86.h"

static inline float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

static inline float hsum_ps128(__m128 s)
{
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hsum_ps(__m256 v)
{
    return hsum_ps128(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline __m256i loadu256(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Shift every 16-bit lane right by a count known only at run time in general
 * (constant after unrolling, when the compiler folds it). */
static inline __m256i srl16(__m256i v, int count)
{
    return _mm256_srl_epi16(v, _mm_cvtsi32_si128(count));
}

/* Scales for 32 values made of two 16-value groups: int16 lanes 0..7 hold the
 * first group's scale, 8..15 the second's, matching maddubs's output order.
 * `eight` holds 8 int16 scales in both 128-bit halves; k picks pair k (0..3). */
static inline __m256i scale_pair(__m256i eight, int k)
{
    static const uint8_t control[4][32] = {
        {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
         2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3},
        {4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5,
         6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7, 6, 7},
        {8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9, 8, 9,
         10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11, 10, 11},
        {12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13, 12, 13,
         14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15, 14, 15},
    };
    return _mm256_shuffle_epi8(eight, loadu256(control[k]));
}

/* 16 int16 scales -> the low and high eight, each repeated in both halves. */
static inline void split_scales(__m256i sixteen, __m256i *low8, __m256i *high8)
{
    *low8 = _mm256_broadcastsi128_si256(_mm256_castsi256_si128(sixteen));
    *high8 = _mm256_broadcastsi128_si256(_mm256_extracti128_si256(sixteen, 1));
}

/* ---- dequantization helpers ------------------------------------------------------ */

/* dst[0..8) = d * codes - m for the low 8 signed bytes of codes. */
static inline void store8(float *dst, __m128i codes, __m256 d, __m256 m)
{
    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
    _mm256_storeu_ps(dst, _mm256_sub_ps(_mm256_mul_ps(d, v), m));
}

static inline void store8_nomin(float *dst, __m128i codes, __m256 d)
{
    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(codes));
    _mm256_storeu_ps(dst, _mm256_mul_ps(d, v));
}

static inline void store16(float *dst, __m128i codes, float d, float m)
{
    store8(dst, codes, _mm256_set1_ps(d), _mm256_set1_ps(m));
    store8(dst + 8, _mm_srli_si128(codes, 8), _mm256_set1_ps(d), _mm256_set1_ps(m));
}

static inline void store16_nomin(float *dst, __m128i codes, float d)
{
    store8_nomin(dst, codes, _mm256_set1_ps(d));
    store8_nomin(dst + 8, _mm_srli_si128(codes, 8), _mm256_set1_ps(d));
}

static inline void store32(float *dst, __m256i codes, float d, float m)
{
    store16(dst, _mm256_castsi256_si128(codes), d, m);
    store16(dst + 16, _mm256_extracti128_si256(codes, 1), d, m);
}

/* 16 int16 (8 in each 128-bit half) -> float sum, for the per-block min terms. */
static inline __m256 madd_to_ps(__m256i a16, __m256i b16)
{
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(a16, b16));
}

/* ---- Q2_K ------------------------------------------------------------------------ */

void kq_dequant_q2_K_avx2(const void *src, float *dst, int64_t n)
{
    const kq_block_q2_K *x = src;
    const __m256i mask2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = half_to_float(x[i].d), dmin = half_to_float(x[i].dmin);
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++, dst += 32) {
                const __m256i codes = _mm256_and_si256(srl16(q, 2 * k), mask2);
                const uint8_t s0 = x[i].scales[8 * h + 2 * k], s1 = x[i].scales[8 * h + 2 * k + 1];
                store16(dst, _mm256_castsi256_si128(codes), d * (float)(s0 & 0xF),
                        dmin * (float)(s0 >> 4));
                store16(dst + 16, _mm256_extracti128_si256(codes, 1), d * (float)(s1 & 0xF),
                        dmin * (float)(s1 >> 4));
            }
        }
    }
}

void kq_dot_q2_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q2_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    const __m256i mask2 = _mm256_set1_epi8(3);
    const __m128i mask4 = _mm_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps(), acc_min = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m256i scales = _mm256_cvtepu8_epi16(_mm_and_si128(packed, mask4));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), mask4));
        __m256i sc_half[2];
        split_scales(scales, &sc_half[0], &sc_half[1]);
        __m256i sum_even = _mm256_setzero_si256(), sum_odd = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu256(w[i].qs + 32 * h);
            const int8_t *y = x[i].qs + 128 * h;
            const __m256i c0 = _mm256_and_si256(q, mask2);
            const __m256i c1 = _mm256_and_si256(_mm256_srli_epi16(q, 2), mask2);
            const __m256i c2 = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask2);
            const __m256i c3 = _mm256_and_si256(_mm256_srli_epi16(q, 6), mask2);
            const __m256i p0 = _mm256_maddubs_epi16(c0, loadu256(y));
            const __m256i p1 = _mm256_maddubs_epi16(c1, loadu256(y + 32));
            const __m256i p2 = _mm256_maddubs_epi16(c2, loadu256(y + 64));
            const __m256i p3 = _mm256_maddubs_epi16(c3, loadu256(y + 96));
            sum_even = _mm256_add_epi32(sum_even, _mm256_madd_epi16(p0, scale_pair(sc_half[h], 0)));
            sum_odd = _mm256_add_epi32(sum_odd, _mm256_madd_epi16(p1, scale_pair(sc_half[h], 1)));
            sum_even = _mm256_add_epi32(sum_even, _mm256_madd_epi16(p2, scale_pair(sc_half[h], 2)));
            sum_odd = _mm256_add_epi32(sum_odd, _mm256_madd_epi16(p3, scale_pair(sc_half[h], 3)));
        }
        const __m256i sumi = _mm256_add_epi32(sum_even, sum_odd);
        const float d = x[i].d * half_to_float(w[i].d);
        const float dmin = x[i].d * half_to_float(w[i].dmin);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        acc_min = _mm256_fmadd_ps(_mm256_set1_ps(dmin), madd_to_ps(mins, loadu256(x[i].bsums)), acc_min);
    }
    *out = hsum_ps(acc) - hsum_ps(acc_min);
}

/* ---- Q3_K ------------------------------------------------------------------------ */

/* Unsigned 3-bit codes (0..7; the value is code - 4) of values 32k..32k+31 of the
 * 128-value half h whose low bits are in q; hmask bit 4h+k is the high bit. */
static inline __m256i q3_codes(__m256i q, __m256i hmask, int h, int k)
{
    const __m256i one = _mm256_set1_epi8(1), mask2 = _mm256_set1_epi8(3);
    const __m256i low = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), mask2);
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(hmask, 4 * h + k), one);
    return _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
}

void kq_dequant_q3_K_avx2(const void *src, float *dst, int64_t n)
{
    const kq_block_q3_K *x = src;
    const __m256i four = _mm256_set1_epi8(4);
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = half_to_float(x[i].d);
        int8_t scales[16];
        kq_q3_K_scales(x[i].scales, scales);
        const __m256i hmask = loadu256(x[i].hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu256(x[i].qs + 32 * h);
            for (int k = 0; k < 4; k++, dst += 32) {
                const __m256i v = _mm256_sub_epi8(q3_codes(q, hmask, h, k), four);
                const int g = 8 * h + 2 * k;
                store16_nomin(dst, _mm256_castsi256_si128(v), d * (float)scales[g]);
                store16_nomin(dst + 16, _mm256_extracti128_si256(v, 1), d * (float)scales[g + 1]);
            }
        }
    }
}

void kq_dot_q3_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q3_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const __m256i scales = _mm256_cvtepi8_epi16(kq_q3_K_scales_i8(w[i].scales));
        __m256i sc_half[2];
        split_scales(scales, &sc_half[0], &sc_half[1]);
        const __m256i hmask = loadu256(w[i].hmask);
        __m256i sum_even = _mm256_setzero_si256(), sum_odd = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu256(w[i].qs + 32 * h);
            const int8_t *y = x[i].qs + 128 * h;
#pragma GCC unroll 4
            for (int k = 0; k < 4; k += 2) {
                const __m256i p0 = _mm256_maddubs_epi16(q3_codes(q, hmask, h, k), loadu256(y + 32 * k));
                const __m256i p1 =
                    _mm256_maddubs_epi16(q3_codes(q, hmask, h, k + 1), loadu256(y + 32 * k + 32));
                sum_even = _mm256_add_epi32(sum_even, _mm256_madd_epi16(p0, scale_pair(sc_half[h], k)));
                sum_odd = _mm256_add_epi32(sum_odd, _mm256_madd_epi16(p1, scale_pair(sc_half[h], k + 1)));
            }
        }
        /* codes carry +4: subtract 4 * sum(scale * bsum) */
        const __m256i offset = _mm256_madd_epi16(scales, loadu256(x[i].bsums));
        const __m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum_even, sum_odd), _mm256_slli_epi32(offset, 2));
        const float d = x[i].d * half_to_float(w[i].d);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    *out = hsum_ps(acc);
}

/* ---- Q4_K and Q5_K ---------------------------------------------------------------- */

static inline void unpack_k4_scales(const uint8_t packed[12], uint8_t scales[8], uint8_t mins[8])
{
    uint8_t both[16];
    _mm_storeu_si128((__m128i *)both, kq_k4_scales_mins(packed));
    memcpy(scales, both, 8);
    memcpy(mins, both + 8, 8);
}

/* A decoded Q4_K/Q5_K block: codes of 64-value chunk c are lo[c] (values
 * 64c..64c+31, sub-block 2c) and hi[c] (the next 32, sub-block 2c+1); sc[c] holds
 * sub-block 2c's scale in the low 128-bit half, 2c+1's in the high half. */
typedef struct k4_block {
    __m256i lo[4], hi[4];
    __m256i sc[4];
    __m256i mins; /* min j in int16 lanes 2j and 2j+1: one madd with bsums gives the min terms */
    __m256 d, neg_dmin;
} k4_block;

static inline void k4_header(k4_block *b, const uint8_t packed[12], uint16_t d, uint16_t dmin)
{
    const __m128i sm = kq_k4_scales_mins(packed);
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
        b->sc[c] = scale_pair(scales, c);
    b->mins = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
    b->d = _mm256_set1_ps(half_to_float(d));
    b->neg_dmin = _mm256_set1_ps(-half_to_float(dmin));
}

static inline void q4_K_decode(const kq_block_q4_K *src, k4_block *b)
{
    const __m256i mask4 = _mm256_set1_epi8(0xF);
    k4_header(b, src->scales, src->d, src->dmin);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m256i q = loadu256(src->qs + 32 * c);
        b->lo[c] = _mm256_and_si256(q, mask4);
        b->hi[c] = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask4);
    }
}

static inline void q5_K_decode(const kq_block_q5_K *src, k4_block *b)
{
    const __m256i mask4 = _mm256_set1_epi8(0xF), one = _mm256_set1_epi8(1);
    k4_header(b, src->scales, src->d, src->dmin);
    const __m256i qh = loadu256(src->qh);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m256i q = loadu256(src->qs + 32 * c);
        /* bit 2c of qh[l] is the fifth bit of value 64c+l, bit 2c+1 that of 64c+32+l */
        const __m256i h_lo = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
        const __m256i h_hi = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
        b->lo[c] = _mm256_or_si256(_mm256_and_si256(q, mask4), _mm256_slli_epi16(h_lo, 4));
        b->hi[c] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), mask4),
                                   _mm256_slli_epi16(h_hi, 4));
    }
}

/* Integer part of one block's dot product: sum_j scale_j * dot(codes_j, q8_j). The
 * maddubs of a chunk's low codes has only sub-block 2c in its lanes, that of the
 * high codes only 2c+1; swapping halves between them gives two vectors whose low
 * halves are 2c's and high halves 2c+1's, added in 16 bits (at most 2 * 2 * 31 *
 * 127), so one madd applies both scales. */
static inline __m256i k4_block_sum(const k4_block *b, const int8_t *q8)
{
    __m256i sum_even = _mm256_setzero_si256(), sum_odd = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m256i p0 = _mm256_maddubs_epi16(b->lo[c], loadu256(q8 + 64 * c));
        const __m256i p1 = _mm256_maddubs_epi16(b->hi[c], loadu256(q8 + 64 * c + 32));
        const __m256i own = _mm256_blend_epi32(p0, p1, 0xF0);        /* [p0 low | p1 high] */
        const __m256i swapped = _mm256_permute2x128_si256(p0, p1, 0x21); /* [p0 high | p1 low] */
        const __m256i prod = _mm256_madd_epi16(_mm256_add_epi16(own, swapped), b->sc[c]);
        if (c % 2)
            sum_odd = _mm256_add_epi32(sum_odd, prod);
        else
            sum_even = _mm256_add_epi32(sum_even, prod);
    }
    return _mm256_add_epi32(sum_even, sum_odd);
}

/* acc += d * d_x * isum - dmin * d_x * sum_j min_j * (bsums[2j] + bsums[2j+1]). */
static inline void k4_accumulate(const k4_block *b, const kq_block_q8_K *x, __m256 *acc)
{
    const __m256i sumi = k4_block_sum(b, x->qs);
    const __m256 dx = _mm256_broadcast_ss(&x->d);
    *acc = _mm256_fmadd_ps(_mm256_mul_ps(b->d, dx), _mm256_cvtepi32_ps(sumi), *acc);
    const __m256i min_terms = _mm256_madd_epi16(b->mins, loadu256(x->bsums));
    *acc = _mm256_fmadd_ps(_mm256_mul_ps(b->neg_dmin, dx), _mm256_cvtepi32_ps(min_terms), *acc);
}

void kq_dequant_q4_K_avx2(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_K *x = src;
    const __m256i mask4 = _mm256_set1_epi8(0xF);
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = half_to_float(x[i].d), dmin = half_to_float(x[i].dmin);
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        for (int c = 0; c < 4; c++, dst += 64) {
            const __m256i q = loadu256(x[i].qs + 32 * c);
            store32(dst, _mm256_and_si256(q, mask4), d * (float)sc[2 * c], dmin * (float)mn[2 * c]);
            store32(dst + 32, _mm256_and_si256(_mm256_srli_epi16(q, 4), mask4),
                    d * (float)sc[2 * c + 1], dmin * (float)mn[2 * c + 1]);
        }
    }
}

void kq_dot_q4_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q4_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        k4_block b;
        q4_K_decode(&w[i], &b);
        k4_accumulate(&b, &x[i], &acc);
    }
    *out = hsum_ps(acc);
}

void kq_dequant_q5_K_avx2(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_K *x = src;
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = half_to_float(x[i].d), dmin = half_to_float(x[i].dmin);
        uint8_t sc[8], mn[8];
        unpack_k4_scales(x[i].scales, sc, mn);
        k4_block b;
        q5_K_decode(&x[i], &b);
        for (int c = 0; c < 4; c++, dst += 64) {
            store32(dst, b.lo[c], d * (float)sc[2 * c], dmin * (float)mn[2 * c]);
            store32(dst + 32, b.hi[c], d * (float)sc[2 * c + 1], dmin * (float)mn[2 * c + 1]);
        }
    }
}

void kq_dot_q5_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q5_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        k4_block b;
        q5_K_decode(&w[i], &b);
        k4_accumulate(&b, &x[i], &acc);
    }
    *out = hsum_ps(acc);
}

/* ---- Q6_K ------------------------------------------------------------------------ */

/* Unsigned 6-bit codes (value + 32) of one 128-value half, 32 values per vector. */
static inline void q6_K_codes(const kq_block_q6_K *b, int h, __m256i codes[4])
{
    const __m256i mask4 = _mm256_set1_epi8(0xF), high2 = _mm256_set1_epi8(0x30);
    const __m256i ql0 = loadu256(b->ql + 64 * h), ql1 = loadu256(b->ql + 64 * h + 32);
    const __m256i qh = loadu256(b->qh + 32 * h);
    codes[0] = _mm256_or_si256(_mm256_and_si256(ql0, mask4),
                               _mm256_and_si256(_mm256_slli_epi16(qh, 4), high2));
    codes[1] = _mm256_or_si256(_mm256_and_si256(ql1, mask4),
                               _mm256_and_si256(_mm256_slli_epi16(qh, 2), high2));
    codes[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), mask4),
                               _mm256_and_si256(qh, high2));
    codes[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), mask4),
                               _mm256_and_si256(_mm256_srli_epi16(qh, 2), high2));
}

void kq_dequant_q6_K_avx2(const void *src, float *dst, int64_t n)
{
    const kq_block_q6_K *x = src;
    const __m256i offset = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        const float d = half_to_float(x[i].d);
        for (int h = 0; h < 2; h++) {
            __m256i codes[4];
            q6_K_codes(&x[i], h, codes);
            for (int k = 0; k < 4; k++, dst += 32) {
                const __m256i v = _mm256_sub_epi8(codes[k], offset);
                const int g = 8 * h + 2 * k;
                store16_nomin(dst, _mm256_castsi256_si128(v), d * (float)x[i].scales[g]);
                store16_nomin(dst + 16, _mm256_extracti128_si256(v, 1),
                              d * (float)x[i].scales[g + 1]);
            }
        }
    }
}

/* A decoded Q6_K block: unsigned codes (value + 32) of values 32k..32k+31,
 * the scale pair of each, and the sixteen scales as int16 (for the offset). */
typedef struct q6_block {
    __m256i codes[8];
    __m256i sc[8];
    __m256i scales;
    float d;
} q6_block;

static inline void q6_K_decode(const kq_block_q6_K *src, q6_block *b)
{
    b->scales = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)src->scales));
    __m256i sc_half[2];
    split_scales(b->scales, &sc_half[0], &sc_half[1]);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        q6_K_codes(src, h, b->codes + 4 * h);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            b->sc[4 * h + k] = scale_pair(sc_half[h], k);
    }
    b->d = half_to_float(src->d);
}

static inline void q6_accumulate(const q6_block *b, const kq_block_q8_K *x, __m256 *acc)
{
    __m256i sum_even = _mm256_setzero_si256(), sum_odd = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 2) {
        const __m256i p0 = _mm256_maddubs_epi16(b->codes[k], loadu256(x->qs + 32 * k));
        const __m256i p1 = _mm256_maddubs_epi16(b->codes[k + 1], loadu256(x->qs + 32 * k + 32));
        sum_even = _mm256_add_epi32(sum_even, _mm256_madd_epi16(p0, b->sc[k]));
        sum_odd = _mm256_add_epi32(sum_odd, _mm256_madd_epi16(p1, b->sc[k + 1]));
    }
    /* codes carry +32: subtract 32 * sum(scale * bsum) */
    const __m256i offset = _mm256_madd_epi16(b->scales, loadu256(x->bsums));
    const __m256i sumi = _mm256_sub_epi32(_mm256_add_epi32(sum_even, sum_odd), _mm256_slli_epi32(offset, 5));
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(x->d * b->d), _mm256_cvtepi32_ps(sumi), *acc);
}

void kq_dot_q6_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q6_K *w = w_row;
    const kq_block_q8_K *x = x_row;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / KQ_QK_K; i++) {
        q6_block b;
        q6_K_decode(&w[i], &b);
        q6_accumulate(&b, &x[i], &acc);
    }
    *out = hsum_ps(acc);
}

/* ---- tiles: each weight block decoded once for up to KQ_TILE_COLS activation rows --- */

#define KQT_VEC __m256
#define KQT_ZERO _mm256_setzero_ps
#define KQT_HSUM hsum_ps
#define KQT_ACT kq_block_q8_K
#define KQT_COLS KQ_TILE_COLS
#include "kernels/kernels_kquant_tiles.h"

KQT_ROW_TILE(q4_K_row_tile, kq_block_q4_K, k4_block, q4_K_decode, k4_accumulate)
KQT_ROW_TILE(q5_K_row_tile, kq_block_q5_K, k4_block, q5_K_decode, k4_accumulate)
KQT_ROW_TILE(q6_K_row_tile, kq_block_q6_K, q6_block, q6_K_decode, q6_accumulate)

KQT_TILE(, kq_dot_tile_q4_K_avx2, kq_block_q4_K, q4_K_row_tile)
KQT_TILE(, kq_dot_tile_q5_K_avx2, kq_block_q5_K, q5_K_row_tile)
KQT_TILE(, kq_dot_tile_q6_K_avx2, kq_block_q6_K, q6_K_row_tile)

/* ---- activations in the t8 order (kernels_kquant.h) ------------------------------ */

/* The reference bytes (kq_quantize_q8_k_avx2 gives them), then each block's qs
 * transposed as an 8 x 4 matrix of 8-byte pieces: piece 4s + g of the natural
 * order goes to 8g + s. */
void kq_quantize_q8_k_t8_avx2(const float *src, void *dst, int64_t n)
{
    kq_block_q8_K_t8 *y = dst;
    for (int64_t i = 0; i < n / KQ_QK_K; i++, src += KQ_QK_K) {
        kq_block_q8_K natural;
        kq_quantize_q8_k_avx2(src, &natural, KQ_QK_K);
        for (int s = 0; s < 8; s++)
            for (int g = 0; g < 4; g++)
                memcpy(y[i].qs + 64 * g + 8 * s, natural.qs + 32 * s + 8 * g, 8);
        for (int j = 0; j < KQ_QK_K / 16; j++)
            y[i].bsums_d[j] = natural.d * (float)natural.bsums[j];
        y[i].d = natural.d;
        memset(y[i].pad, 0, sizeof y[i].pad);
    }
}

size_t kq_q8_k_t8_row_bytes(int64_t n)
{
    return (size_t)(n / KQ_QK_K) * sizeof(kq_block_q8_K_t8);
}

#else
typedef int kq_avx2_not_on_this_architecture;
#endif
