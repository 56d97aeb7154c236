/* Inside src/kernels only: the 256-bit kernels over Q8_0 repacked into groups of 16
 * rows (layout in kernels_q8_0_r16.c), the twin of kernels_q8_0_r16_avx512.c. A ymm
 * lane is a row, so a group is two halves of 8 rows, each 32 bytes of every 64-byte
 * line of values. Per half and token, eight multiplies of four values by four broadcast
 * activation bytes sum a block of 8 rows, and one conversion and FMA finish it. Each
 * line is loaded once for all the tokens of a tile.
 *
 * Included by kernels_q8_0_r16_avx2.c and kernels_q8_0_r16_avxvnni.c after they define
 *   k8_wvec              what a line's 32 bytes become for the dot products
 *   K8_WEIGHTS(v)        that, from the 32 loaded bytes (values plus 128)
 *   K8_DOT_ADD(s, w, x)  s plus, per 32-bit lane, the dot product of the lane's four
 *                        weights with the four signed bytes of x
 *   K8_START(a)          a block's starting sum for the record a (its off, or 0) */
#ifndef ELLIOTT_KERNELS_Q8_0_R16_YMM_H
#define ELLIOTT_KERNELS_Q8_0_R16_YMM_H

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_q8_0_r16.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

/* 4 tokens: two halves' accumulators and a sum for each fit the 16 ymm registers. */
#define R16_TILE_COLS 4 /* tokens per tile call */
enum {
    TILE_COLS = R16_TILE_COLS,
    HALF_ROWS = 8,
    LINES = KQ_QK / 4, /* lines of values per block */
    PAIR_LINES = K8_R16_PAIR_BYTES / 64,
    LONE_LINES = (K8_R16_SCALE_BYTES + K8_R16_QS_BYTES + 63) / 64
};

ALWAYS_INLINE __m256i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm256_set1_epi32(v);
}

/* One half (8 rows) of block b against C tokens; one token sums in two chains (half the
 * latency), several in one chain each. */
ALWAYS_INLINE void half_block(const uint8_t *scales, const uint8_t *values, int h, const k8_r16_act *const *x,
                              int64_t b, const int C, __m256 *acc)
{
    __m256i s[TILE_COLS], s2 = _mm256_setzero_si256();
    UNROLL for (int c = 0; c < C; c++)
        s[c] = K8_START(x[c] + b);
    UNROLL for (int i = 0; i < LINES; i++) {
        k8_wvec w = K8_WEIGHTS(_mm256_loadu_si256((const __m256i *)(values + 64 * i + 32 * h)));
        UNROLL for (int c = 0; c < C; c++) {
            __m256i xb = broadcast_i32(x[c][b].qs + 4 * i);
            if (C == 1 && i % 2)
                s2 = K8_DOT_ADD(s2, w, xb);
            else
                s[c] = K8_DOT_ADD(s[c], w, xb);
        }
    }
    if (C == 1)
        s[0] = _mm256_add_epi32(s[0], s2);
    __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + 2 * HALF_ROWS * h)));
    UNROLL for (int c = 0; c < C; c++) {
        __m256 scale = _mm256_mul_ps(wd, _mm256_set1_ps(x[c][b].d));
        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]), scale, acc[c]);
    }
}

ALWAYS_INLINE void block_tokens(const uint8_t *scales, const uint8_t *values, const k8_r16_act *const *x, int64_t b,
                                const int C, __m256 *acc0, __m256 *acc1)
{
    half_block(scales, values, 0, x, b, C, acc0);
    half_block(scales, values, 1, x, b, C, acc1);
}

/* One group (16 rows, nb blocks) against C tokens, C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const k8_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    __m256 acc0[TILE_COLS], acc1[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    const size_t lead = r16_lead(g), body = K8_R16_QS_BYTES;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, g += K8_R16_PAIR_BYTES) {
        /* the group streams: every line of a pair ahead, as in the AVX-512 file */
        kq_prefetch_near((const char *)g, PAIR_LINES);
        kq_prefetch_far((const char *)g, PAIR_LINES);
        block_tokens(g + r16_pair_tail(lead, body, 0), g + r16_pair_body(lead, body, 0), x, b, C, acc0, acc1);
        block_tokens(g + r16_pair_tail(lead, body, 1), g + r16_pair_body(lead, body, 1), x, b + 1, C, acc0, acc1);
    }
    if (b < nb) {
        kq_prefetch_near((const char *)g, LONE_LINES);
        block_tokens(g + r16_single_tail(lead, body), g + r16_pair_body(lead, body, 0), x, b, C, acc0, acc1);
    }
    UNROLL for (int c = 0; c < C; c++) {
        _mm256_storeu_ps(y + c * y_stride, acc0[c]);
        _mm256_storeu_ps(y + c * y_stride + HALF_ROWS, acc1[c]);
    }
}

#define R16_ACT k8_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_ACT_CONVERT k8_r16_convert
#define R16_ACT_ROW_BYTES k8_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

#endif
