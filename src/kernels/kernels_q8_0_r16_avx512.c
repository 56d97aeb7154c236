/* AVX-512 VNNI kernels over Q8_0 repacked into groups of 16 rows (layout in
 * kernels_q8_0_r16.c). A zmm lane is a row: a block's eight 64-byte lines each hold four
 * values (plus 128, unsigned) of the 16 rows, which go into vpdpbusd as loaded, against
 * four broadcast activation bytes; eight vpdpbusd sum a block of 16 rows for one token,
 * starting from the record's -128 * sum(x). One conversion, one multiply (row scales
 * times the token's scale) and one FMA finish it. The loaded block is reused for up to
 * TILE_COLS tokens. */
#include "kernels/kernels_q8_0_r16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

#define R16_TILE_COLS 8 /* tokens per tile call */
enum {
    TILE_COLS = R16_TILE_COLS,
    LINES = KQ_QK / 4, /* lines of values per block */
    PAIR_LINES = K8_R16_PAIR_BYTES / 64,
    LONE_LINES = (K8_R16_SCALE_BYTES + K8_R16_QS_BYTES + 63) / 64
};

ALWAYS_INLINE __m512i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* Block b of 16 rows (its scales and values) against C tokens. */
ALWAYS_INLINE void block_tokens(const uint8_t *scales, const uint8_t *values, const k8_r16_act *const *x, int64_t b,
                                const int C, __m512 *acc)
{
    __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales));
    __m512i w[LINES];
    UNROLL for (int i = 0; i < LINES; i++)
        w[i] = _mm512_loadu_si512(values + 64 * i);
    UNROLL for (int c = 0; c < C; c++) {
        const k8_r16_act *a = x[c] + b;
        /* two chains: half the vpdpbusd latency per token */
        __m512i s = _mm512_set1_epi32(a->off), s2 = _mm512_setzero_si512();
        UNROLL for (int i = 0; i < LINES / 2; i++)
            s = _mm512_dpbusd_epi32(s, w[i], broadcast_i32(a->qs + 4 * i));
        UNROLL for (int i = LINES / 2; i < LINES; i++)
            s2 = _mm512_dpbusd_epi32(s2, w[i], broadcast_i32(a->qs + 4 * i));
        s = _mm512_add_epi32(s, s2);
        __m512 scale = _mm512_mul_ps(wd, _mm512_set1_ps(a->d));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[c]);
    }
}

/* One group (16 rows, nb blocks) against C tokens, C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const k8_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    __m512 acc[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    const size_t lead = r16_lead(g), body = K8_R16_QS_BYTES;
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, g += K8_R16_PAIR_BYTES) {
        /* the group streams: every line of a pair ahead into L1, and into L2 further
         * on for the few tokens of a decode step (a prompt's tiles of 8 tokens are not
         * waiting on memory), as in the Q4_0 file */
        kq_prefetch_near((const char *)g, PAIR_LINES);
        if (C <= 4)
            kq_prefetch_far((const char *)g, PAIR_LINES);
        block_tokens(g + r16_pair_tail(lead, body, 0), g + r16_pair_body(lead, body, 0), x, b, C, acc);
        block_tokens(g + r16_pair_tail(lead, body, 1), g + r16_pair_body(lead, body, 1), x, b + 1, C, acc);
    }
    if (b < nb) {
        kq_prefetch_near((const char *)g, LONE_LINES);
        block_tokens(g + r16_single_tail(lead, body), g + r16_pair_body(lead, body, 0), x, b, C, acc);
    }
    UNROLL for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

#define R16_ACT k8_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_ACT_CONVERT k8_r16_convert
#define R16_ACT_ROW_BYTES k8_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

kq_impl kq_q8_0_r16_avx512(void)
{
    return r16_impl();
}

#else

kq_impl kq_q8_0_r16_avx512(void)
{
    return (kq_impl){0};
}

#endif
