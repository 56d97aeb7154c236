/* AVX-512 VNNI kernels over Q5_K repacked into groups of 16 rows (layout in
 * kernels_q5_k_r16.c), Q4_K's (kernels_q4_k_r16_avx512.c) with the fifth bits. A zmm
 * lane is a row. Per group block the 16 rows' scales and mins are unpacked once into
 * float vectors (kernels_k4_r16_avx512.h); then per 64-value chunk eight 64-byte
 * loads give each row's 32 nibble bytes (four per lane), split into the low nibbles
 * (one sub-block) and the high ones (the next), and 16 is added to the bytes whose
 * fifth bit is set (a byte mask tested from the fifth-bit line the chunk shares with
 * the others, and one masked add). Each token runs two chains of eight vpdpbusd
 * against four broadcast activation bytes apiece; a chain's int32 sums become floats
 * and take their sub-block's scale in one subtraction, one multiply (by the token's
 * scale) and one FMA for all 16 rows; the mins cost one FMA per sub-block against the
 * record's sums. The decoded chunk serves up to TILE_COLS tokens. */
#include "kernels/kernels_q5_k_r16.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_k4_r16_avx512.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

#define R16_TILE_COLS 8 /* tokens per tile call */
enum {
    TILE_COLS = R16_TILE_COLS,
    CHUNKS = KQ_QK_K / 64,
    CHUNK_VECTORS = 8, /* 64-byte loads per chunk: 16 rows x 32 nibble bytes */
    PREFETCH_LINES = K5_R16_GROUP_BLOCK_BYTES / 64
};

/* vpdpbusd sums start from the bits of the float 1.5 * 2^23: a sum v below 2^22 in
 * magnitude leaves the bits of 1.5 * 2^23 + v, and one subtraction gives v exactly.
 * The largest here is 32 * 31 * 128 < 2^17. */
#define DOTS_START 0x4B400000
#define DOTS_START_FLOAT 12582912.0f

/* Four bytes at p in every lane, loaded by the broadcast itself. */
typedef int32_t __attribute__((may_alias, aligned(1))) unaligned_i32;

ALWAYS_INLINE __m512i broadcast_i32(const void *p)
{
    return _mm512_set1_epi32(*(const unaligned_i32 *)p);
}

ALWAYS_INLINE __m512 dots_to_float(__m512i dots)
{
    return _mm512_sub_ps(_mm512_castsi512_ps(dots), _mm512_set1_ps(DOTS_START_FLOAT));
}

/* The 5-bit values of 64-byte line i of chunk ch: the nibbles (low, or high shifted
 * down) plus 16 where bit `bit` of the line's fifth-bit bytes is set. */
ALWAYS_INLINE __m512i with_fifth_bit(__m512i nibbles, __m512i qh, int bit)
{
    __mmask64 set = _mm512_test_epi8_mask(qh, _mm512_set1_epi8((char)(1 << bit)));
    return _mm512_mask_add_epi8(nibbles, set, nibbles, _mm512_set1_epi8(16));
}

/* One group (16 rows, nb super-blocks) against C tokens, C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const kk_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    const kk_r16_places at = k5_r16_places_of(g);
    const size_t qh_at = at.qs, qs_at = at.qs + K5_R16_QH_BYTES;
    __m512 acc[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += K5_R16_GROUP_BLOCK_BYTES) {
        __m512 scale[KK_R16_SUBS], min[KK_R16_SUBS];
        k4_r16_factors(g, &at, 1.0f, scale, min);
        for (int ch = 0; ch < CHUNKS; ch++) {
            /* one token streams the group: every line of a block ahead (as for Q4_K),
             * a chunk's share per chunk */
            if (C == 1)
                kq_prefetch_stream_part((const char *)g, PREFETCH_LINES, ch, CHUNKS);
            __m512i lo[CHUNK_VECTORS], hi[CHUNK_VECTORS];
            UNROLL for (int i = 0; i < CHUNK_VECTORS; i++) {
                const __m512i z = _mm512_loadu_si512(g + qs_at + 64 * (CHUNK_VECTORS * ch + i));
                const __m512i qh = _mm512_loadu_si512(g + qh_at + 64 * i);
                lo[i] = with_fifth_bit(_mm512_and_si512(z, low4), qh, 2 * ch);
                hi[i] = with_fifth_bit(_mm512_and_si512(_mm512_srli_epi16(z, 4), low4), qh, 2 * ch + 1);
            }
            UNROLL for (int c = 0; c < C; c++) {
                const kk_r16_act *a = x[c] + b;
                const int8_t *q = a->qs + 64 * ch;
                __m512i s_lo = _mm512_set1_epi32(DOTS_START), s_hi = s_lo;
                UNROLL for (int i = 0; i < CHUNK_VECTORS; i++) {
                    s_lo = _mm512_dpbusd_epi32(s_lo, lo[i], broadcast_i32(q + 4 * i));
                    s_hi = _mm512_dpbusd_epi32(s_hi, hi[i], broadcast_i32(q + 32 + 4 * i));
                }
                const __m512 xd = _mm512_set1_ps(a->d);
                acc[c] = _mm512_fmadd_ps(dots_to_float(s_lo), _mm512_mul_ps(scale[2 * ch], xd), acc[c]);
                acc[c] = _mm512_fmadd_ps(dots_to_float(s_hi), _mm512_mul_ps(scale[2 * ch + 1], xd), acc[c]);
            }
        }
        UNROLL for (int c = 0; c < C; c++) {
            const kk_r16_act *a = x[c] + b;
            UNROLL for (int s = 0; s < KK_R16_SUBS; s++)
                acc[c] = _mm512_fmadd_ps(min[s], _mm512_set1_ps(a->sums_d[s]), acc[c]);
        }
    }
    UNROLL for (int c = 0; c < C; c++)
        _mm512_storeu_ps(y + c * y_stride, acc[c]);
}

#define R16_ACT kk_r16_act
#define R16_BLOCK_VALUES KQ_QK_K
#define R16_ACT_CONVERT kk_r16_convert
#define R16_ACT_ROW_BYTES kk_r16_act_row_bytes
#include "kernels/kernels_r16_entry.h"

kq_impl kq_q5_k_r16_avx512(void)
{
    return r16_impl();
}

#else

kq_impl kq_q5_k_r16_avx512(void)
{
    return (kq_impl){0};
}

#endif
