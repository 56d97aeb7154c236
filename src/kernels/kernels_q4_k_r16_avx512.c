/* AVX-512 VNNI kernels over Q4_K repacked into groups of 16 rows (layout in
 * kernels_q4_k_r16.c). A zmm lane is a row. Per group block the 16 rows' scales and
 * mins are unpacked once into float vectors, d * scale and -dmin * min per
 * sub-block; then per 64-value chunk eight 64-byte loads give each row's 32 nibble
 * bytes (four per lane), split into the low nibbles (one sub-block) and the high ones
 * (the next), and each token runs two chains of eight vpdpbusd against four
 * broadcast activation bytes apiece. A chain's int32 sums become floats and take
 * their sub-block's scale in one subtraction, one multiply (by the token's scale) and
 * one FMA for all 16 rows; the mins cost one FMA per sub-block against the record's
 * sums. The decoded chunk serves up to TILE_COLS tokens.
 *
 * Port 0 runs every zmm vpdpbusd, so the work around them is kept to the operations
 * port 5 also runs: the high nibbles are masked in place (16 times their value: the
 * scale carries the 1/16, exact) rather than shifted, and the sums are turned into
 * floats by the 1.5 * 2^23 bias (as kernels_kquant_avx512.c does) rather than
 * vcvtdq2ps. */
#include "kernels/kernels_q4_k_r16.h"

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
    PREFETCH_LINES = (KK_R16_GROUP_BLOCK_BYTES + 63) / 64
};

/* vpdpbusd sums start from the bits of the float 1.5 * 2^23: a sum v below 2^22 in
 * magnitude leaves the bits of 1.5 * 2^23 + v, and one subtraction gives v exactly.
 * The largest here is 16 (the high nibbles' factor) * 32 * 15 * 128 < 2^20. */
#define DOTS_START 0x4B400000
#define DOTS_START_FLOAT 12582912.0f

/* Four bytes at p in every lane, loaded by the broadcast itself (through a general
 * register it would cost a port 5 operation per vpdpbusd). */
typedef int32_t __attribute__((may_alias, aligned(1))) unaligned_i32;

ALWAYS_INLINE __m512i broadcast_i32(const void *p)
{
    return _mm512_set1_epi32(*(const unaligned_i32 *)p);
}

ALWAYS_INLINE __m512 dots_to_float(__m512i dots)
{
    return _mm512_sub_ps(_mm512_castsi512_ps(dots), _mm512_set1_ps(DOTS_START_FLOAT));
}

/* One group (16 rows, nb super-blocks) against C tokens, C a compile-time constant. */
ALWAYS_INLINE void group_tile(const uint8_t *g, int64_t nb, const kk_r16_act *const *x, const int C, float *y,
                              int64_t y_stride)
{
    const __m512i low4 = _mm512_set1_epi8(0x0f), high4 = _mm512_set1_epi8((char)0xf0);
    const kk_r16_places at = kk_r16_places_of(g, KK_R16_GROUP_BLOCK_BYTES);
    __m512 acc[TILE_COLS];
    UNROLL for (int c = 0; c < C; c++)
        acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, g += KK_R16_GROUP_BLOCK_BYTES) {
        __m512 scale[KK_R16_SUBS], min[KK_R16_SUBS];
        k4_r16_factors(g, &at, 1.0f / 16.0f, scale, min);
        for (int ch = 0; ch < CHUNKS; ch++) {
            /* one token streams the group: every line of a block ahead (as for Q4_0),
             * a chunk's share per chunk */
            if (C == 1)
                kq_prefetch_stream_part((const char *)g, PREFETCH_LINES, ch, CHUNKS);
            __m512i lo[CHUNK_VECTORS], hi[CHUNK_VECTORS];
            UNROLL for (int i = 0; i < CHUNK_VECTORS; i++) {
                const __m512i z = _mm512_loadu_si512(g + at.qs + 64 * (CHUNK_VECTORS * ch + i));
                lo[i] = _mm512_and_si512(z, low4);
                hi[i] = _mm512_and_si512(z, high4);
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

kq_impl kq_q4_k_r16_avx512(void)
{
    return r16_impl();
}

#else

kq_impl kq_q4_k_r16_avx512(void)
{
    return (kq_impl){0};
}

#endif
