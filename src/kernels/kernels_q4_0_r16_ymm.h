/* Inside src/kernels only: the 256-bit kernels over Q4_0 repacked into groups of 16
 * rows (layout in kernels_q4_0_r16.c), the twin of kernels_q4_0_r16_avx512.c. A ymm
 * lane is a row, so a group is two halves of 8 rows, each 32 bytes of every 64-byte
 * nibble line. Per half and token, eight multiplies of four nibbles by four broadcast
 * activation bytes sum a block of 8 rows, and one conversion and FMA finish it.
 *
 * Included by kernels_q4_0_r16_avx2.c and kernels_q4_0_r16_avxvnni.c after they define
 * R16_DOT_ADD(s, u, x): s plus, per 32-bit lane, the dot product of the four unsigned
 * bytes of u and the four signed bytes of x (maddubs + madd, or one vpdpbusd). */
#ifndef ELLIOTT_KERNELS_Q4_0_R16_YMM_H
#define ELLIOTT_KERNELS_Q4_0_R16_YMM_H

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_q4_0_r16.h"
#include "kernels/kernels_r16_pairs.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 4 tokens: two halves' accumulators for each fit the 16 ymm registers beside the
 * eight decoded nibble vectors. */
#define R16_TILE_COLS 4 /* tokens per tile call */
enum { TILE_COLS = R16_TILE_COLS, HALF_ROWS = 8, PAIR_LINES = 2 * KQ_R16_GROUP_BLOCK_BYTES / 64 };

ALWAYS_INLINE __m256i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* One half (8 rows) of block b (nibbles at qs, scales at d) against C tokens. */
ALWAYS_INLINE void half_block(const uint8_t *qs, const uint8_t *d, int h, const kq_r16_act *const *x, int64_t b,
                              const int C, __m256 *acc)
{
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(d + 2 * HALF_ROWS * h)));
    __m256i lo[4], hi[4];
    UNROLL for (int i = 0; i < 4; i++) {
        __m256i z = _mm256_loadu_si256((const __m256i *)(qs + 64 * i + 32 * h));
        lo[i] = _mm256_and_si256(z, low4);
        hi[i] = _mm256_and_si256(_mm256_srli_epi16(z, 4), low4);
    }
    UNROLL for (int c = 0; c < C; c++) {
        const kq_r16_act *a = x[c] + b;
        __m256i s = _mm256_set1_epi32(a->off), s2 = _mm256_setzero_si256();
        UNROLL for (int i = 0; i < 4; i++)
            s = R16_DOT_ADD(s, lo[i], broadcast_i32(a->qs + 4 * i));
        UNROLL for (int i = 0; i < 4; i++)
            s2 = R16_DOT_ADD(s2, hi[i], broadcast_i32(a->qs + KQ_QK / 2 + 4 * i));
        s = _mm256_add_epi32(s, s2);
        __m256 scale = _mm256_mul_ps(wd, _mm256_set1_ps(a->d));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[c]);
    }
}

ALWAYS_INLINE void block_tile(const uint8_t *qs, const uint8_t *d, const kq_r16_act *const *x, int64_t b,
                              const int C, __m256 *acc0, __m256 *acc1)
{
    half_block(qs, d, 0, x, b, C, acc0);
    half_block(qs, d, 1, x, b, C, acc1);
}

/* One group (16 rows, nb blocks in pairs: kernels_r16_pairs.h) against C tokens, C a
 * compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const kq_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const size_t lead = r16_lead(g), body = KQ_R16_QS_BYTES;
    __m256 acc0[TILE_COLS], acc1[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, g += 2 * KQ_R16_GROUP_BLOCK_BYTES) {
        /* the group streams: every line of a pair ahead, unrolled, as in the AVX-512 file */
        UNROLL for (int l = 0; l < PAIR_LINES; l++)
            kq_prefetch_near((const char *)g + 64 * l, 1);
        if (C <= 4)
            UNROLL for (int l = 0; l < PAIR_LINES; l++)
                kq_prefetch_far((const char *)g + 64 * l, 1);
        block_tile(g + r16_pair_body(lead, body, 0), g + r16_pair_tail(lead, body, 0), x, b, C, acc0, acc1);
        block_tile(g + r16_pair_body(lead, body, 1), g + r16_pair_tail(lead, body, 1), x, b + 1, C, acc0, acc1);
    }
    if (b < nb)
        block_tile(g + r16_pair_body(lead, body, 0), g + r16_single_tail(lead, body), x, b, C, acc0, acc1);
    UNROLL for (int c = 0; c < C; c++) {
        _mm256_storeu_ps(y + c * y_stride, acc0[c]);
        _mm256_storeu_ps(y + c * y_stride + HALF_ROWS, acc1[c]);
    }
}

#define R16_ACT kq_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_ACT_CONVERT kq_r16_convert
#define R16_ACT_ROW_BYTES kq_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

#endif
