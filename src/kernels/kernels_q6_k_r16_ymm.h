/* Inside src/kernels only: the 256-bit kernels over Q6_K repacked into groups of 16
 * rows (layout in kernels_q6_k_r16.c), the twin of kernels_q6_k_r16_avx512.c. A ymm
 * lane is a row, so a group is two halves of 8 rows, each 32 bytes of every 64-byte
 * line of the body. Per group block and half the 8 rows' sixteen scales become float
 * vectors d * scale once; then per sub-block four vectors of 6-bit codes (value + 32,
 * four per lane) are put together from the low-bit and high-bit words, and each token
 * sums them against four broadcast activation words from the record's start (which
 * subtracts 32 times the values' sum and carries the 1.5 * 2^23 bias: one subtraction
 * gives the exact float) and one FMA adds it times the rows' scales to the token's
 * block sum, which takes the token's scale once per block. A decoded sub-block serves
 * up to TILE_COLS tokens.
 *
 * Included by kernels_q6_k_r16_avx2.c and kernels_q6_k_r16_avxvnni.c after they define
 *   __m256i k6_dot4(__m256i s, const __m256i code[4], const int8_t *q)
 * s plus, per lane, the sums of the four unsigned codes of code[i] times the four signed
 * bytes q[4i..4i+3], over i < 4 (maddubs, int16 pairs and madd, or vpdpbusd). */
#ifndef ELLIOTT_KERNELS_Q6_K_R16_YMM_H
#define ELLIOTT_KERNELS_Q6_K_R16_YMM_H

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_q6_k_r16.h"
#include "kernels/kernels_r16_pairs.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 4 tokens: two halves' accumulators for each beside the four code vectors. */
#define R16_TILE_COLS 4 /* tokens per tile call */
enum {
    TILE_COLS = R16_TILE_COLS,
    HALF_ROWS = 8,
    WORDS = 4, /* 32-bit words per row and sub-block: 16 codes */
    PREFETCH_LINES = (K6_R16_GROUP_BLOCK_BYTES + 63) / 64
};

/* The largest sum: 16 * 63 * 128 + 32 * 16 * 128 < 2^22, inside the bias's exact range. */
#define DOTS_START_FLOAT 12582912.0f

ALWAYS_INLINE __m256i load_half(const uint8_t *body, size_t section, int w, int h)
{
    return _mm256_loadu_si256((const __m256i *)(body + section + 64 * (size_t)w + 32 * h));
}

/* d * scale s for half h's 8 rows, s < 16 (the scales in the block's body, d its tail). */
ALWAYS_INLINE void half_scales(const uint8_t *body, const uint8_t *tail, int h, __m256 scale[K6_R16_SUBS])
{
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(tail + 2 * HALF_ROWS * h)));
    UNROLL for (int k = 0; k < K6_R16_SUBS / 4; k++) {
        const __m256i w = load_half(body, K6_R16_SCALES, k, h);
        UNROLL for (int b = 0; b < 4; b++) {
            const __m256i s = _mm256_srai_epi32(b == 3 ? w : _mm256_slli_epi32(w, 24 - 8 * b), 24);
            scale[4 * k + b] = _mm256_mul_ps(_mm256_cvtepi32_ps(s), d);
        }
    }
}

/* The codes of sub-block 8vh + 2j + qq (values 128vh + 32j + 16qq + 4i + t, t < 4 the
 * bytes of a lane) for half h's rows: code[i], i < 4. */
ALWAYS_INLINE void decode_sub(const uint8_t *body, int h, int vh, int j, int qq, __m256i code[WORDS])
{
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    UNROLL for (int i = 0; i < WORDS; i++) {
        const int q = 4 * qq + i;
        /* low bits: values +0 (low nibble) and +64 (high) in word q, +32 and +96 in q + 8 */
        const __m256i low = load_half(body, K6_R16_QL, 16 * vh + 8 * (j % 2) + q, h);
        const __m256i high = load_half(body, K6_R16_QH, 8 * vh + q, h);
        const __m256i low_bits = _mm256_and_si256(j < 2 ? low : _mm256_srli_epi16(low, 4), low4);
        const __m256i high_at_4 = j == 0   ? _mm256_slli_epi16(high, 4)
                                  : j == 1 ? _mm256_slli_epi16(high, 2)
                                  : j == 2 ? high
                                           : _mm256_srli_epi16(high, 2);
        code[i] = _mm256_or_si256(low_bits, _mm256_and_si256(high_at_4, bits45));
    }
}

ALWAYS_INLINE __m256 dots_to_float(__m256i dots)
{
    return _mm256_sub_ps(_mm256_castsi256_ps(dots), _mm256_set1_ps(DOTS_START_FLOAT));
}

ALWAYS_INLINE __m256i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* Half h (8 rows) of block b (body and tail) against C tokens. */
ALWAYS_INLINE void half_block(const uint8_t *body, const uint8_t *tail, const uint8_t *prefetch_at, int h,
                              const k6_r16_act *const *x, int64_t b, const int C, __m256 *acc)
{
    __m256 scale[K6_R16_SUBS];
    half_scales(body, tail, h, scale);
    __m256 scaled[TILE_COLS]; /* the block's sums times the rows' scales, before the token's */
    UNROLL for (int c = 0; c < C; c++)
        scaled[c] = _mm256_setzero_ps();
    for (int vh = 0; vh < 2; vh++) {
        /* one token streams the group: a block's worth of lines ahead (as in the AVX-512
         * file), spread over the block's work */
        if (C == 1)
            kq_prefetch_stream_part((const char *)prefetch_at, PREFETCH_LINES, 2 * h + vh, 4);
        UNROLL for (int j = 0; j < 4; j++) {
            UNROLL for (int qq = 0; qq < 2; qq++) {
                const int sub = 8 * vh + 2 * j + qq;
                __m256i code[WORDS];
                decode_sub(body, h, vh, j, qq, code);
                UNROLL for (int c = 0; c < C; c++) {
                    const k6_r16_act *a = x[c] + b;
                    const __m256i s = k6_dot4(broadcast_i32(&a->start[sub]), code,
                                              a->qs + 128 * vh + 32 * j + 16 * qq);
                    scaled[c] = _mm256_fmadd_ps(dots_to_float(s), scale[sub], scaled[c]);
                }
            }
        }
    }
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm256_fmadd_ps(scaled[c], _mm256_set1_ps(x[c][b].d), acc[c]);
}

/* One group (16 rows, nb super-blocks in pairs: kernels_r16_pairs.h) against C tokens,
 * C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *group, int64_t nb, const k6_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const size_t lead = r16_lead(group);
    __m256 acc0[TILE_COLS], acc1[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        size_t body_at, tail_at;
        r16_block_offsets(lead, K6_R16_D, nb, b, &body_at, &tail_at);
        const uint8_t *prefetch_at = group + (size_t)b * K6_R16_GROUP_BLOCK_BYTES;
        half_block(group + body_at, group + tail_at, prefetch_at, 0, x, b, C, acc0);
        half_block(group + body_at, group + tail_at, prefetch_at, 1, x, b, C, acc1);
    }
    UNROLL for (int c = 0; c < C; c++) {
        _mm256_storeu_ps(y + c * y_stride, acc0[c]);
        _mm256_storeu_ps(y + c * y_stride + HALF_ROWS, acc1[c]);
    }
}

#define R16_ACT k6_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_ACT_CONVERT k6_r16_convert
#define R16_ACT_ROW_BYTES k6_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

#endif
