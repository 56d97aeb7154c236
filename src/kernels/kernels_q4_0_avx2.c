/* AVX2 Q4_0 matrix kernels over a block-pair activation layout.
 *
 * Q4_0 stores unsigned nibbles u with w = (u - 8) * d. Instead of making the
 * weights signed (two sign instructions per block), the kernel multiplies the
 * unsigned nibbles with the signed activations directly (maddubs) and subtracts
 * 8 * sum(x), which the activation quantizer precomputes once per matmul.
 *
 * Two consecutive weight blocks A and B are handled in one 256-bit register:
 * A's 16 packed bytes in the low lane, B's in the high one. Masking gives the
 * low nibbles (values 0..15 of A | of B), a shift and mask the high nibbles
 * (values 16..31). The activations are stored in that same order, so one
 * maddubs per nibble half serves both blocks, the two halves are added in 16
 * bits, and one madd, one conversion and one FMA per block pair finish them:
 * the low four lanes carry block A, the high four block B, and the scale vector
 * is [dA*xA x4 | dB*xB x4].
 *
 * Activation pair record (128 bytes, 32-byte aligned):
 *   int8  lo[32]   values 0..15 of A, then 0..15 of B
 *   int8  hi[32]   values 16..31 of A, then 16..31 of B
 *   int16 off[16]  8 * sums of x; lanes 0..7 belong to A, 8..15 to B
 *   float d[8]     the Q8_0 scale of A (x4), of B (x4), rounded to half as Q8_0 stores it
 * An odd block count leaves B empty (zeros) in the last record. */
#include "kernels/kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")

enum { PAIR_BYTES = 128 };

typedef struct pair_record {
    int8_t lo[32];
    int8_t hi[32];
    int16_t off[16];
    float d[8];
} pair_record;

_Static_assert(sizeof(pair_record) == PAIR_BYTES, "pair record is 128 bytes");

static size_t kq_q4_0_pairs_row_bytes(int64_t n)
{
    int64_t nb = n / KQ_QK;
    return (size_t)((nb + 1) / 2) * PAIR_BYTES;
}

/* ---- activation quantizer -------------------------------------------------------------- */

/* roundf (half away from zero) exactly, as the scalar Q8_0 quantizer rounds. */
ALWAYS_INLINE __m256i round_half_away(__m256 v)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign_bit, _mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(1.0f));
    __m256 bump = _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step);
    return _mm256_cvttps_epi32(_mm256_add_ps(t, bump));
}

/* One block as Q8_0 quantizes it: 32 int8 in order, and d rounded through half. */
ALWAYS_INLINE __m256i quantize_block(const float *src, float *d_out)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(src + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, v[k]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float d = _mm_cvtss_f32(m) / 127.0f;
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++)
        q[k] = round_half_away(_mm256_mul_ps(v[k], vid));
    __m256i p16a = _mm256_packs_epi32(q[0], q[1]);
    __m256i p16b = _mm256_packs_epi32(q[2], q[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    *d_out = el_fp16_to_f32(el_f32_to_fp16(d));
    return _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void kq_quantize_q4_0_pairs(const float *src, void *dst, int64_t n)
{
    pair_record *rec = dst;
    int64_t nb = n / KQ_QK;
    const __m256i eights = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < nb; i += 2, rec++) {
        float da, db = 0.0f;
        __m256i a = quantize_block(src + i * KQ_QK, &da);
        __m256i b = i + 1 < nb ? quantize_block(src + (i + 1) * KQ_QK, &db) : _mm256_setzero_si256();
        /* lo = [a 0..15 | b 0..15], hi = [a 16..31 | b 16..31] */
        __m256i lo = _mm256_permute2x128_si256(a, b, 0x20);
        __m256i hi = _mm256_permute2x128_si256(a, b, 0x31);
        _mm256_store_si256((__m256i *)rec->lo, lo);
        _mm256_store_si256((__m256i *)rec->hi, hi);
        __m256i off = _mm256_add_epi16(_mm256_maddubs_epi16(eights, lo), _mm256_maddubs_epi16(eights, hi));
        _mm256_store_si256((__m256i *)rec->off, off);
        _mm256_store_ps(rec->d, _mm256_setr_m128(_mm_set1_ps(da), _mm_set1_ps(db)));
    }
}

/* ---- dot tiles --------------------------------------------------------------------------- */

/* Nibbles of blocks A and B: returns the low halves, *hi gets the high ones. */
ALWAYS_INLINE __m256i nibbles_pair(const kq_block_q4_0 *a, int have_b, __m256i *hi)
{
    __m128i qa = _mm_loadu_si128((const __m128i *)a->qs);
    __m256i q = have_b ? _mm256_inserti128_si256(_mm256_castsi128_si256(qa),
                                                 _mm_loadu_si128((const __m128i *)a[1].qs), 1)
                       : _mm256_zextsi128_si256(qa);
    const __m256i mask = _mm256_set1_epi8(0x0f);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
    return _mm256_and_si256(q, mask);
}

/* Both blocks' weight scales as halves packed in 32 bits (B's 0 when absent). */
ALWAYS_INLINE uint32_t scales_pair(const kq_block_q4_0 *a, int have_b)
{
    return (uint32_t)a->d | (have_b ? (uint32_t)a[1].d << 16 : 0u);
}

/* [s0 x4 | s1 x4] from halves h0, h1 packed in 32 bits. */
ALWAYS_INLINE __m256 widen_scales(uint32_t packed)
{
    __m128 two = _mm_cvtph_ps(_mm_cvtsi32_si128((int)packed));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
}

/* 8 int32 lanes: low four sum to dot(A), high four to dot(B), offsets removed. */
ALWAYS_INLINE __m256i pair_dot(__m256i wlo, __m256i whi, const pair_record *x)
{
    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(wlo, _mm256_load_si256((const __m256i *)x->lo)),
                                 _mm256_maddubs_epi16(whi, _mm256_load_si256((const __m256i *)x->hi)));
    s = _mm256_sub_epi16(s, _mm256_load_si256((const __m256i *)x->off));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One block pair (only A when have_b is 0) of R rows against C tokens. */
ALWAYS_INLINE void pair_step(int64_t p, int have_b, const kq_block_q4_0 *const *rows, const int R,
                             const pair_record *const *cols, const int C, __m256 acc[4][4])
{
    /* Streaming (one token): fetch ahead. Several tokens reuse the rows from cache,
     * where prefetches would only evict activations. */
    if (C == 1)
        UNROLL for (int r = 0; r < R; r++)
            _mm_prefetch((const char *)(rows[r] + 2 * p) + KQ_PREFETCH_AHEAD, _MM_HINT_T0);
    UNROLL for (int r = 0; r < R; r++) {
        const kq_block_q4_0 *wb = rows[r] + 2 * p;
        __m256i whi, wlo = nibbles_pair(wb, have_b, &whi);
        __m256 dw = widen_scales(scales_pair(wb, have_b));
        UNROLL for (int c = 0; c < C; c++) {
            const pair_record *x = cols[c] + p;
            __m256 sums = _mm256_cvtepi32_ps(pair_dot(wlo, whi, x));
            __m256 scale = _mm256_mul_ps(dw, _mm256_load_ps(x->d));
            acc[r][c] = _mm256_fmadd_ps(sums, scale, acc[r][c]);
        }
    }
}

/* R rows by C tokens, both compile-time constants after inlining. */
ALWAYS_INLINE void tile_body(int64_t nb, const kq_block_q4_0 *const *rows, const int R,
                             const pair_record *const *cols, const int C, float *y, int64_t y_stride)
{
    __m256 acc[4][4];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    int64_t full = nb / 2;
    for (int64_t p = 0; p < full; p++)
        pair_step(p, 1, rows, R, cols, C, acc);
    if (nb % 2)
        pair_step(full, 0, rows, R, cols, C, acc);
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            y[c * y_stride + r] = hsum(acc[r][c]);
}

/* The tile entry point: n_rows <= 4 weight rows by n_cols <= 4 tokens. Four rows
 * share one token's activation loads; with more tokens, two rows at a time keep
 * the accumulators in registers. */
static void tile_q4_0(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,
                      size_t x_stride, int n_cols, float *y, int64_t y_stride)
{
    int64_t nb = n / KQ_QK;
    const kq_block_q4_0 *rows[4];
    const pair_record *cols[4];
    for (int r = 0; r < 4; r++)
        rows[r] = (const kq_block_q4_0 *)((const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride);
    for (int c = 0; c < 4; c++)
        cols[c] = (const pair_record *)((const uint8_t *)x + (size_t)(c < n_cols ? c : n_cols - 1) * x_stride);
    float out[4 * 4];
    if (n_cols == 1) {
        tile_body(nb, rows, 4, cols, 1, out, 4);
        for (int r = 0; r < n_rows; r++)
            y[r] = out[r];
        return;
    }
    if (n_cols == 2) {
        tile_body(nb, rows, 4, cols, 2, out, 4);
    } else {
        /* three or four tokens: rows 0-1, then rows 2-3 (skipped when absent) */
        tile_body(nb, rows, 2, cols, 4, out, 4);
        if (n_rows > 2)
            tile_body(nb, rows + 2, 2, cols, 4, out + 2, 4);
    }
    for (int c = 0; c < n_cols; c++)
        for (int r = 0; r < n_rows; r++)
            y[c * y_stride + r] = out[c * 4 + r];
}

static void dot_q4_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    tile_q4_0(n, w_row, 0, 1, x_row, 0, 1, out, 1);
}

void kq_q4_0_pairs_avx2(kq_impl *impl)
{
    impl->dot = dot_q4_0;
    impl->dot_tile = tile_q4_0;
    impl->act_convert = kq_quantize_q4_0_pairs;
    impl->act_row_bytes = kq_q4_0_pairs_row_bytes;
}

#else

void kq_q4_0_pairs_avx2(kq_impl *impl)
{
    (void)impl;
}

#endif
