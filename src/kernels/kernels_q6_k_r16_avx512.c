/* AVX-512 VNNI kernels over Q6_K repacked into groups of 16 rows (layout in
 * kernels_q6_k_r16.c). A zmm lane is a row. Per group block the 16 rows' sixteen
 * scales are turned into float vectors d * scale once; then per quarter of the block
 * (half h, eight of its 32 value positions l) four 64-byte loads of low-bit words and
 * two of high-bit words give the 6-bit codes (value + 32) of four values per lane for
 * four sub-blocks, sixteen vectors. Each token runs one chain of four vpdpbusd per
 * sub-block, starting from the record's bias (which also subtracts 32 times its
 * values' sum), and one subtraction, one multiply and one FMA scale it for all 16
 * rows. The decoded quarter serves up to TILE_COLS tokens.
 *
 * As in kernels_q4_k_r16_avx512.c, the int32 sums become floats through the
 * 1.5 * 2^23 bias rather than vcvtdq2ps, keeping port 0 for the vpdpbusd. */
#include "kernels/kernels_q6_k_r16.h"
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
enum {
    TILE_COLS = R16_TILE_COLS,
    WORDS = 4, /* value positions l per lane and vector: one 32-bit word */
    PREFETCH_LINES = (K6_R16_GROUP_BLOCK_BYTES + 63) / 64
};

/* The largest sum: 16 * 63 * 128 + 32 * 16 * 128 < 2^22, inside the bias's exact range. */
#define DOTS_START_FLOAT 12582912.0f

/* Four bytes at p in every lane, loaded by the broadcast itself (through a general
 * register it would cost a port 5 operation per vpdpbusd). */
typedef int32_t __attribute__((may_alias, aligned(1))) unaligned_i32;

ALWAYS_INLINE __m512i broadcast_i32(const void *p)
{
    return _mm512_set1_epi32(*(const unaligned_i32 *)p);
}

ALWAYS_INLINE __m512i load_word(const uint8_t *g, size_t section, int w)
{
    return _mm512_loadu_si512(g + section + 64 * (size_t)w);
}

/* Selects bits with vpternlog: a | (b & c). */
#define TERN_A_OR_B_AND_C 0xF8

/* d * scale s for the 16 rows, s < 16 (the scales in the block's body, d its tail). */
ALWAYS_INLINE void decode_scales(const uint8_t *body, const uint8_t *tail, __m512 scale[K6_R16_SUBS])
{
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)tail));
    UNROLL for (int k = 0; k < K6_R16_SUBS / 4; k++) {
        const __m512i w = load_word(body, K6_R16_SCALES, k);
        UNROLL for (int b = 0; b < 4; b++) {
            const __m512i s = _mm512_srai_epi32(b == 3 ? w : _mm512_slli_epi32(w, 24 - 8 * b), 24);
            scale[4 * k + b] = _mm512_mul_ps(_mm512_cvtepi32_ps(s), d);
        }
    }
}

/* The codes of values 128h + 32j + 4q + t (t < 4, the bytes of a lane) for q = 4qq + i:
 * code[j][i]. Their sub-block is 8h + 2j + qq. */
ALWAYS_INLINE void decode_quarter(const uint8_t *g, int h, int qq, __m512i code[4][WORDS])
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), bits45 = _mm512_set1_epi8(0x30);
    UNROLL for (int i = 0; i < WORDS; i++) {
        const int q = 4 * qq + i;
        const __m512i a = load_word(g, K6_R16_QL, 16 * h + q);     /* values +0 (low), +64 (high) */
        const __m512i b = load_word(g, K6_R16_QL, 16 * h + 8 + q); /* values +32, +96 */
        const __m512i hb = load_word(g, K6_R16_QH, 8 * h + q);
        code[0][i] = _mm512_ternarylogic_epi32(_mm512_and_si512(a, low4), _mm512_slli_epi16(hb, 4), bits45,
                                               TERN_A_OR_B_AND_C);
        code[1][i] = _mm512_ternarylogic_epi32(_mm512_and_si512(b, low4), _mm512_slli_epi16(hb, 2), bits45,
                                               TERN_A_OR_B_AND_C);
        code[2][i] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(a, 4), low4), hb, bits45,
                                               TERN_A_OR_B_AND_C);
        code[3][i] = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(b, 4), low4),
                                               _mm512_srli_epi16(hb, 2), bits45, TERN_A_OR_B_AND_C);
    }
}

ALWAYS_INLINE __m512 dots_to_float(__m512i dots)
{
    return _mm512_sub_ps(_mm512_castsi512_ps(dots), _mm512_set1_ps(DOTS_START_FLOAT));
}

/* One group (16 rows, nb super-blocks in pairs: kernels_r16_pairs.h) against C tokens,
 * C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *group, int64_t nb, const k6_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const size_t lead = r16_lead(group);
    __m512 acc[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        size_t body_at, tail_at;
        r16_block_offsets(lead, K6_R16_D, nb, b, &body_at, &tail_at);
        const uint8_t *g = group + body_at;
        __m512 scale[K6_R16_SUBS];
        decode_scales(g, group + tail_at, scale);
        for (int h = 0; h < 2; h++) {
            for (int qq = 0; qq < 2; qq++) {
                /* one token streams the group: a block's worth of lines ahead (as for
                 * Q4_0), a quarter of them per quarter */
                if (C == 1)
                    kq_prefetch_stream_part((const char *)group + (size_t)b * K6_R16_GROUP_BLOCK_BYTES,
                                            PREFETCH_LINES, 2 * h + qq, 4);
                __m512i code[4][WORDS];
                decode_quarter(g, h, qq, code);
                UNROLL for (int c = 0; c < C; c++) {
                    const k6_r16_act *a = x[c] + b;
                    __m512 scaled = _mm512_setzero_ps();
                    UNROLL for (int j = 0; j < 4; j++) {
                        const int sub = 8 * h + 2 * j + qq;
                        const int8_t *q = a->qs + 128 * h + 32 * j + 16 * qq;
                        __m512i s = broadcast_i32(&a->start[sub]);
                        UNROLL for (int i = 0; i < WORDS; i++)
                            s = _mm512_dpbusd_epi32(s, code[j][i], broadcast_i32(q + 4 * i));
                        scaled = _mm512_fmadd_ps(dots_to_float(s), scale[sub], scaled);
                    }
                    acc[c] = _mm512_fmadd_ps(scaled, _mm512_set1_ps(a->d), acc[c]);
                }
            }
        }
    }
    UNROLL for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

#define R16_ACT k6_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_ACT_CONVERT k6_r16_convert
#define R16_ACT_ROW_BYTES k6_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

kq_impl kq_q6_k_r16_avx512(void)
{
    return r16_impl();
}

#else

kq_impl kq_q6_k_r16_avx512(void)
{
    return (kq_impl){0};
}

#endif
