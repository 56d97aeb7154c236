/* Inside src/kernels only: the 256-bit kernels over Q4_K repacked into groups of 16
 * rows (layout in kernels_q4_k_r16.c), the twin of kernels_q4_k_r16_avx512.c. A ymm
 * lane is a row, so a group is two halves of 8 rows, each 32 bytes of every 64-byte
 * nibble line and of every scale word line. Per group block and half the 8 rows'
 * scales and mins are unpacked once into float vectors (d * scale, -dmin * min per
 * sub-block); then per 32-value sub-block eight loads give four nibbles of each row
 * per lane, and each token sums them against eight broadcast activation words, one
 * conversion and one FMA adding the sum times the rows' scales to the token's block
 * sum, which takes the token's scale once per block (a multiply per sub-block less).
 * The mins cost one FMA per sub-block against the record's sums. A decoded sub-block
 * serves up to TILE_COLS tokens.
 *
 * Q5_K's layout (kernels_q5_k_r16.c) is Q4_K's with the fifth bits before the
 * nibbles: with K4_YMM_FIFTH_BITS defined to 1 this is also the twin of
 * kernels_q5_k_r16_avx512.c, each value getting its fifth bit (16) before the dot.
 *
 * Included by kernels_q4_k_r16_avx2.c, kernels_q4_k_r16_avxvnni.c,
 * kernels_q5_k_r16_avx2.c and kernels_q5_k_r16_avxvnni.c after they define either
 *   __m256i k4_dot8(const __m256i w[8], const int8_t *q)
 * the int32 sums, per lane, of the four unsigned values of w[i] (under 32) times the
 * four signed bytes q[4i..4i+3], over i < 8 (maddubs, int16 adds and madd: the AVX2
 * files, whose int16 sums differ between Q4_K and Q5_K), or
 *   K4_YMM_DOT_ADD(s, w, x)  s plus, per lane, the dot product of w's four unsigned
 *                            bytes with x's four signed ones (one vpdpbusd)
 * from which this header builds k4_dot8. The high nibbles are shifted down, not left in place as in the AVX-512
 * file: maddubs' int16 pairs would overflow at 16 times their value. */
#ifndef ELLIOTT_KERNELS_Q4_K_R16_YMM_H
#define ELLIOTT_KERNELS_Q4_K_R16_YMM_H

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_q4_k_r16.h"
#include "kernels/kernels_q5_k_r16.h"

#ifndef K4_YMM_FIFTH_BITS
#define K4_YMM_FIFTH_BITS 0
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 4 tokens: two halves' accumulators for each beside the eight nibble vectors. */
#define R16_TILE_COLS 4 /* tokens per tile call */
enum {
    TILE_COLS = R16_TILE_COLS,
    HALF_ROWS = 8,
    CHUNKS = KQ_QK_K / 64,
    SUB_WORDS = 8, /* 32-bit words per row and sub-block: 32 nibbles */
    BLOCK_BYTES = K4_YMM_FIFTH_BITS ? K5_R16_GROUP_BLOCK_BYTES : KK_R16_GROUP_BLOCK_BYTES,
    QH_BYTES = K4_YMM_FIFTH_BITS ? K5_R16_QH_BYTES : 0, /* fifth bits at .qs, nibbles after */
    PREFETCH_LINES = (BLOCK_BYTES + 63) / 64
};

ALWAYS_INLINE __m256i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

#ifdef K4_YMM_DOT_ADD
ALWAYS_INLINE __m256i k4_dot8(const __m256i w[8], const int8_t *q)
{
    __m256i s = _mm256_setzero_si256();
    UNROLL for (int i = 0; i < 8; i++)
        s = K4_YMM_DOT_ADD(s, w[i], broadcast_i32(q + 4 * i));
    return s;
}
#endif

/* Byte k of every lane as a float. */
ALWAYS_INLINE __m256 byte_lane(__m256i v, int k)
{
    __m256i b = k == 0 ? v : _mm256_srli_epi32(v, 8 * k);
    if (k < 3)
        b = _mm256_and_si256(b, _mm256_set1_epi32(0xff));
    return _mm256_cvtepi32_ps(b);
}

/* Half h's per-sub-block factors: scale[s] = d * scale s, min[s] = -dmin * min s (the
 * branch-free kq_scale_min_k4 over the three words of 8 rows). */
ALWAYS_INLINE void half_factors(const uint8_t *g, const kk_r16_places *at, int h, __m256 scale[KK_R16_SUBS],
                                __m256 min[KK_R16_SUBS])
{
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + KK_R16_D + 2 * HALF_ROWS * h)));
    const __m256 neg_dmin = _mm256_sub_ps(
        _mm256_setzero_ps(), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(g + at->dmin + 2 * HALF_ROWS * h))));
    const uint8_t *words = g + at->scales + 32 * h;
    const __m256i u0 = _mm256_loadu_si256((const __m256i *)words);
    const __m256i u1 = _mm256_loadu_si256((const __m256i *)(words + 64));
    const __m256i u2 = _mm256_loadu_si256((const __m256i *)(words + 128));
    const __m256i low6 = _mm256_set1_epi8(0x3f), low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    const __m256i sc_lo = _mm256_and_si256(u0, low6);
    const __m256i mn_lo = _mm256_and_si256(u1, low6);
    const __m256i sc_hi =
        _mm256_or_si256(_mm256_and_si256(u2, low4), _mm256_and_si256(_mm256_srli_epi32(u0, 2), bits45));
    const __m256i mn_hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(u2, 4), low4),
                                          _mm256_and_si256(_mm256_srli_epi32(u1, 2), bits45));
    UNROLL for (int k = 0; k < 4; k++) {
        scale[k] = _mm256_mul_ps(byte_lane(sc_lo, k), d);
        scale[k + 4] = _mm256_mul_ps(byte_lane(sc_hi, k), d);
        min[k] = _mm256_mul_ps(byte_lane(mn_lo, k), neg_dmin);
        min[k + 4] = _mm256_mul_ps(byte_lane(mn_hi, k), neg_dmin);
    }
}

/* v (values under 16, a byte each) plus 16 where bit `bit` of the fifth-bit bytes is set. */
ALWAYS_INLINE __m256i with_fifth_bit(__m256i v, __m256i qh, int bit)
{
    const __m256i at_4 = bit < 4 ? _mm256_slli_epi16(qh, 4 - bit) : bit > 4 ? _mm256_srli_epi16(qh, bit - 4) : qh;
    return _mm256_or_si256(v, _mm256_and_si256(at_4, _mm256_set1_epi8(0x10)));
}

/* Half h (8 rows) of group block g against C tokens (their block b). */
ALWAYS_INLINE void half_block(const uint8_t *g, const kk_r16_places *at, int h, const kk_r16_act *const *x,
                              int64_t b, const int C, __m256 *acc)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 scale[KK_R16_SUBS], min[KK_R16_SUBS];
    half_factors(g, at, h, scale, min);
    __m256 scaled[TILE_COLS]; /* the block's sums times the rows' scales, before the token's */
    UNROLL for (int c = 0; c < C; c++)
        scaled[c] = _mm256_setzero_ps();
    for (int ch = 0; ch < CHUNKS; ch++) {
        /* one token streams the group: every line of a block ahead (as in the AVX-512
         * file), spread over the block's work */
        if (C == 1)
            kq_prefetch_stream_part((const char *)g, PREFETCH_LINES, CHUNKS * h + ch, 2 * CHUNKS);
        const uint8_t *lines = g + at->qs + QH_BYTES + 64 * SUB_WORDS * ch + 32 * h;
        const uint8_t *fifth_lines = g + at->qs + 32 * h;
        UNROLL for (int part = 0; part < 2; part++) { /* sub-block 2ch: low nibbles; 2ch + 1: high */
            __m256i w[SUB_WORDS];
            UNROLL for (int i = 0; i < SUB_WORDS; i++) {
                const __m256i z = _mm256_loadu_si256((const __m256i *)(lines + 64 * i));
                w[i] = _mm256_and_si256(part ? _mm256_srli_epi16(z, 4) : z, low4);
                if (K4_YMM_FIFTH_BITS) /* line i of the fifth bits serves line i of every chunk */
                    w[i] = with_fifth_bit(w[i], _mm256_loadu_si256((const __m256i *)(fifth_lines + 64 * i)),
                                          2 * ch + part);
            }
            UNROLL for (int c = 0; c < C; c++) {
                const __m256i s = k4_dot8(w, x[c][b].qs + 64 * ch + 32 * part);
                scaled[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale[2 * ch + part], scaled[c]);
            }
        }
    }
    UNROLL for (int c = 0; c < C; c++) {
        const kk_r16_act *a = x[c] + b;
        acc[c] = _mm256_fmadd_ps(scaled[c], _mm256_set1_ps(a->d), acc[c]);
        UNROLL for (int s = 0; s < KK_R16_SUBS; s++)
            acc[c] = _mm256_fmadd_ps(min[s], _mm256_set1_ps(a->sums_d[s]), acc[c]);
    }
}

/* One group (16 rows, nb super-blocks) against C tokens, C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const kk_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const kk_r16_places at = kk_r16_places_of(g, BLOCK_BYTES);
    __m256 acc0[TILE_COLS], acc1[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += BLOCK_BYTES) {
        half_block(g, &at, 0, x, b, C, acc0);
        half_block(g, &at, 1, x, b, C, acc1);
    }
    UNROLL for (int c = 0; c < C; c++) {
        _mm256_storeu_ps(y + c * y_stride, acc0[c]);
        _mm256_storeu_ps(y + c * y_stride + HALF_ROWS, acc1[c]);
    }
}

#define R16_ACT kk_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_ACT_CONVERT kk_r16_convert
#define R16_ACT_ROW_BYTES kk_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

#endif
