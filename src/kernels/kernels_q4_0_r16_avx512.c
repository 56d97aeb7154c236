/* AVX-512 VNNI kernels over Q4_0 repacked into groups of 16 rows (layout in
 * kernels_q4_0_r16.c). A zmm lane is a row: per group block, four 64-byte loads (whole lines) give
 * each row's 16 nibble bytes (four per lane), masked into eight vectors of unsigned
 * values; each is multiplied by four broadcast activation bytes with one vpdpbusd,
 * so eight vpdpbusd sum a block of 16 rows for one token, starting from the record's
 * -8 * sum(x). One conversion, one multiply (row scales times the token's scale) and
 * one FMA finish it: three float operations per 16 row-blocks, where the GGUF layout
 * needs three per four. The decoded block is reused for up to TILE_COLS tokens. */
#include "kernels/kernels_q4_0_r16.h"
#include "kernels/kernels_r16_pairs.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

#define R16_TILE_COLS 8 /* tokens per tile call */
enum { TILE_COLS = R16_TILE_COLS, PAIR_LINES = 2 * KQ_R16_GROUP_BLOCK_BYTES / 64 };

ALWAYS_INLINE __m512i broadcast_i32(const void *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return _mm512_set1_epi32(v);
}

/* Block b of 16 rows (nibbles at qs, a cache line's start; scales at d) into C
 * tokens' accumulators. */
ALWAYS_INLINE void block_tile(const uint8_t *qs, const uint8_t *d, const kq_r16_act *const *x, int64_t b,
                              const int C, __m512 *acc)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512 wd = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d));
    __m512i lo[4], hi[4];
    UNROLL for (int i = 0; i < 4; i++) {
        __m512i z = _mm512_loadu_si512(qs + 64 * i);
        lo[i] = _mm512_and_si512(z, low4);
        hi[i] = _mm512_and_si512(_mm512_srli_epi16(z, 4), low4);
    }
    UNROLL for (int c = 0; c < C; c++) {
        const kq_r16_act *a = x[c] + b;
        /* two chains (low and high nibbles): half the vpdpbusd latency per token */
        __m512i s = _mm512_set1_epi32(a->off), s2 = _mm512_setzero_si512();
        UNROLL for (int i = 0; i < 4; i++)
            s = _mm512_dpbusd_epi32(s, lo[i], broadcast_i32(a->qs + 4 * i));
        UNROLL for (int i = 0; i < 4; i++)
            s2 = _mm512_dpbusd_epi32(s2, hi[i], broadcast_i32(a->qs + KQ_QK / 2 + 4 * i));
        s = _mm512_add_epi32(s, s2);
        __m512 scale = _mm512_mul_ps(wd, _mm512_set1_ps(a->d));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc[c]);
    }
}

/* Every line of a pair of blocks ahead: one token streams the group (the hardware
 * prefetcher alone reached ~73 % of the plain read rate, this ~95 %), and so do the
 * few tokens of a decode step of several streams (4 tokens: 57 % -> 84 %); a prompt's
 * later tiles find the lines cached and lose nothing. The L2 prefetch only up to a few
 * tokens: a prompt's tiles of 8 tokens are not waiting on memory, and there it only
 * cost issue slots. Unrolled: as a loop of nine (gcc keeps it a loop) it took a third of
 * the in-L2 samples. */
ALWAYS_INLINE void prefetch_pair(const uint8_t *pair, const int C)
{
    UNROLL for (int l = 0; l < PAIR_LINES; l++)
        kq_prefetch_near((const char *)pair + 64 * l, 1);
    if (C <= 4)
        UNROLL for (int l = 0; l < PAIR_LINES; l++)
            kq_prefetch_far((const char *)pair + 64 * l, 1);
}

/* One group (16 rows, nb blocks in pairs: kernels_r16_pairs.h) against C tokens, C a
 * compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const kq_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const size_t lead = r16_lead(g), body = KQ_R16_QS_BYTES;
    __m512 acc[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 1 < nb; b += 2, g += 2 * KQ_R16_GROUP_BLOCK_BYTES) {
        prefetch_pair(g, C);
        block_tile(g + r16_pair_body(lead, body, 0), g + r16_pair_tail(lead, body, 0), x, b, C, acc);
        block_tile(g + r16_pair_body(lead, body, 1), g + r16_pair_tail(lead, body, 1), x, b + 1, C, acc);
    }
    if (b < nb)
        block_tile(g + r16_pair_body(lead, body, 0), g + r16_single_tail(lead, body), x, b, C, acc);
    UNROLL for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

#define R16_ACT kq_r16_act
#define R16_BLOCK_VALUES KQ_QK
#define R16_ACT_CONVERT kq_r16_convert
#define R16_ACT_ROW_BYTES kq_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

kq_impl kq_q4_0_r16_avx512(void)
{
    return r16_impl();
}

#else

kq_impl kq_q4_0_r16_avx512(void)
{
    return (kq_impl){0};
}

#endif
