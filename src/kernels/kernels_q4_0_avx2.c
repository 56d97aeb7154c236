/* AVX2 Q4_0 matrix kernels over a four-block activation layout.
 *
 * Q4_0 stores unsigned nibbles u with w = (u - 8) * d. Instead of making the
 * weights signed (two sign instructions per block), the kernel multiplies the
 * unsigned nibbles with the signed activations directly (maddubs) and subtracts
 * 8 * sum(x), which the activation quantizer precomputes once per matmul.
 *
 * Two consecutive weight blocks A and B share one 256-bit register: A's 16
 * packed bytes in the low lane, B's in the high one. Masking gives the low
 * nibbles (values 0..15 of A | of B), a shift and mask the high nibbles (values
 * 16..31). The activations are stored in that same order, so one maddubs per
 * nibble half serves both blocks and the halves add in 16 bits. A second pair
 * C, D likewise; one 16-bit hadd folds the two pairs, one subtraction removes the
 * offsets of all four blocks, and one madd widens to int32 [A A C C | B B D D],
 * so one conversion and one FMA (scale [sA sA sC sC | sB sB sD sD], s = d_w * d_x)
 * finish four blocks.
 *
 * Activation quad record (192 bytes, 32-byte aligned), blocks A B C D:
 *   int8  lo_ab[32]  values 0..15 of A, then 0..15 of B
 *   int8  hi_ab[32]  values 16..31 of A, then 16..31 of B
 *   int8  lo_cd[32], hi_cd[32]  the same for C and D
 *   int16 off[16]    8 * partial sums of x, folded as the kernel folds u * x
 *   float d[8]       Q8_0 scales (rounded to half, as Q8_0 stores them) in the
 *                    fold's order: A A C C B B D D
 * Blocks past the row's end are zeros in the last record; the weight side reads
 * the row's last partial quad from a zero-padded copy. */
#include "kernels/kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q8_avx2.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

enum { QUAD_BYTES = 192, QUAD_BLOCKS = 4 };

typedef struct quad_record {
    int8_t lo_ab[32];
    int8_t hi_ab[32];
    int8_t lo_cd[32];
    int8_t hi_cd[32];
    int16_t off[16];
    float d[8];
} quad_record;

_Static_assert(sizeof(quad_record) == QUAD_BYTES, "quad record is 192 bytes");

static size_t quads_row_bytes(int64_t n)
{
    int64_t nb = n / KQ_QK;
    return (size_t)((nb + QUAD_BLOCKS - 1) / QUAD_BLOCKS) * QUAD_BYTES;
}

/* ---- activation quantizer -------------------------------------------------------------- */

/* One block as Q8_0 quantizes it: 32 int8 in order, and d rounded through half. */
ALWAYS_INLINE __m256i quantize_block(const float *src, float *d_out)
{
    float d;
    __m256i q = kq_q8_block_avx2(src, &d);
    *d_out = el_fp16_to_f32(el_f32_to_fp16(d));
    return q;
}

/* Blocks a and b (32 int8 each) in pair order: lo = [a 0..15 | b 0..15], hi = the
 * rest. Returns 8 * x summed as the kernel sums u * x: 16-bit lanes, 0..7 of a. */
ALWAYS_INLINE __m256i store_pair(__m256i a, __m256i b, int8_t lo[32], int8_t hi[32])
{
    const __m256i eights = _mm256_set1_epi8(8);
    __m256i l = _mm256_permute2x128_si256(a, b, 0x20);
    __m256i h = _mm256_permute2x128_si256(a, b, 0x31);
    _mm256_store_si256((__m256i *)lo, l);
    _mm256_store_si256((__m256i *)hi, h);
    return _mm256_add_epi16(_mm256_maddubs_epi16(eights, l), _mm256_maddubs_epi16(eights, h));
}

static void quantize_quads(const float *src, void *dst, int64_t n)
{
    quad_record *rec = dst;
    int64_t nb = n / KQ_QK;
    for (int64_t i = 0; i < nb; i += QUAD_BLOCKS, rec++) {
        __m256i q[QUAD_BLOCKS];
        float d[QUAD_BLOCKS];
        for (int k = 0; k < QUAD_BLOCKS; k++) {
            d[k] = 0.0f;
            q[k] = i + k < nb ? quantize_block(src + (i + k) * KQ_QK, &d[k]) : _mm256_setzero_si256();
        }
        __m256i off_ab = store_pair(q[0], q[1], rec->lo_ab, rec->hi_ab);
        __m256i off_cd = store_pair(q[2], q[3], rec->lo_cd, rec->hi_cd);
        /* folded as the kernel folds the sums (|x| <= 127: at most 8128 per lane) */
        _mm256_store_si256((__m256i *)rec->off, _mm256_hadd_epi16(off_ab, off_cd));
        _mm256_store_ps(rec->d, _mm256_setr_ps(d[0], d[0], d[2], d[2], d[1], d[1], d[3], d[3]));
    }
}

/* ---- dot tiles --------------------------------------------------------------------------- */

/* A weight quad decoded: nibbles in pair order and the scales in fold order. */
typedef struct weight_quad {
    __m256i lo_ab, hi_ab, lo_cd, hi_cd;
    __m256 d;
} weight_quad;

ALWAYS_INLINE void nibbles_pair(const kq_block_q4_0 *a, __m256i *lo, __m256i *hi)
{
    __m256i q = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)a[0].qs)),
                                        _mm_loadu_si128((const __m128i *)a[1].qs), 1);
    const __m256i mask = _mm256_set1_epi8(0x0f);
    *hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
    *lo = _mm256_and_si256(q, mask);
}

ALWAYS_INLINE weight_quad decode_quad(const kq_block_q4_0 *b)
{
    weight_quad w;
    nibbles_pair(b, &w.lo_ab, &w.hi_ab);
    nibbles_pair(b + 2, &w.lo_cd, &w.hi_cd);
    uint64_t packed = (uint64_t)b[0].d | (uint64_t)b[1].d << 16 | (uint64_t)b[2].d << 32 | (uint64_t)b[3].d << 48;
    __m128 abcd = _mm_cvtph_ps(_mm_cvtsi64_si128((long long)packed));
    w.d = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(abcd), _mm256_setr_epi32(0, 0, 2, 2, 1, 1, 3, 3));
    return w;
}

/* int16 u * x pair sums of one block pair: lanes 0..7 of A, 8..15 of B (each at
 * most 2 * 2 * 15 * 127 = 7620). */
ALWAYS_INLINE __m256i pair_sums(__m256i wlo, __m256i whi, const int8_t *xlo, const int8_t *xhi)
{
    return _mm256_add_epi16(_mm256_maddubs_epi16(wlo, _mm256_load_si256((const __m256i *)xlo)),
                            _mm256_maddubs_epi16(whi, _mm256_load_si256((const __m256i *)xhi)));
}

/* One hadd folds the two pairs into [A x4 C x4 | B x4 D x4] (at most 15240 per lane),
 * one subtraction removes the offsets (the result stays within +-23368), one madd
 * widens to int32 [A A C C | B B D D]. */
ALWAYS_INLINE __m256 quad_dot(const weight_quad *w, const quad_record *x, __m256 acc)
{
    __m256i ab = pair_sums(w->lo_ab, w->hi_ab, x->lo_ab, x->hi_ab);
    __m256i cd = pair_sums(w->lo_cd, w->hi_cd, x->lo_cd, x->hi_cd);
    __m256i folded = _mm256_sub_epi16(_mm256_hadd_epi16(ab, cd), _mm256_load_si256((const __m256i *)x->off));
    __m256 sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(folded, _mm256_set1_epi16(1)));
    __m256 scale = _mm256_mul_ps(w->d, _mm256_load_ps(x->d));
    return _mm256_fmadd_ps(sums, scale, acc);
}

ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One quad of R rows against C tokens; rows[r] points at the quad's first block. */
ALWAYS_INLINE void quad_step(const kq_block_q4_0 *const *rows, const int R, const quad_record *const *cols,
                             const int C, int64_t q, __m256 acc[4][8])
{
    UNROLL for (int r = 0; r < R; r++) {
        weight_quad w = decode_quad(rows[r]);
        UNROLL for (int c = 0; c < C; c++)
            acc[r][c] = quad_dot(&w, cols[c] + q, acc[r][c]);
    }
}

/* R rows by C tokens, both compile-time constants after inlining. */
ALWAYS_INLINE void tile_body(int64_t nb, const kq_block_q4_0 *const *rows, const int R,
                             const quad_record *const *cols, const int C, float *y, int64_t y_stride, size_t next_tile)
{
    __m256 acc[4][8];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            acc[r][c] = _mm256_setzero_ps();
    int64_t full = nb / QUAD_BLOCKS;
    const kq_block_q4_0 *at[4];
    const kq_prefetch_plan plan =
        kq_plan_prefetch((size_t)nb * sizeof(kq_block_q4_0), QUAD_BLOCKS * sizeof(kq_block_q4_0), next_tile);
    for (int64_t q = 0; q < full; q++) {
        size_t ahead = kq_prefetch_offset(&plan, q);
        UNROLL for (int r = 0; r < R; r++) {
            at[r] = rows[r] + q * QUAD_BLOCKS;
            /* streaming (one token): fetch ahead; several tokens reuse the rows from
             * cache, where prefetches would only evict activations */
            if (C == 1)
                _mm_prefetch((const char *)at[r] + ahead, _MM_HINT_T0);
        }
        quad_step(at, R, cols, C, q, acc);
    }
    int tail = (int)(nb % QUAD_BLOCKS);
    if (tail) {
        /* the row's last blocks, padded with zero blocks so that no read passes its end */
        kq_block_q4_0 padded[4][QUAD_BLOCKS];
        memset(padded, 0, sizeof padded);
        UNROLL for (int r = 0; r < R; r++) {
            memcpy(padded[r], rows[r] + full * QUAD_BLOCKS, (size_t)tail * sizeof(kq_block_q4_0));
            at[r] = padded[r];
        }
        quad_step(at, R, cols, C, full, acc);
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            y[c * y_stride + r] = hsum(acc[r][c]);
}

/* The tile entry point: n_rows <= 4 weight rows by n_cols <= TILE_COLS tokens. For
 * one token four rows share its activation loads; with more tokens each row is
 * decoded once for all of them (one row's six accumulators stay in registers). */
enum { TILE_COLS = 6 }; /* 4: 70-89, 6: 89-94, 8: 88-94 GFLOP/s (8 spills accumulators) */

#define ONE_ROW_CASE(cols)                                                                   \
    case cols:                                                                               \
        tile_body(nb, rows + r, 1, cols_at, cols, y + r, y_stride, 0);                         \
        break

static void tile_q4_0(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,
                      size_t x_stride, int n_cols, float *y, int64_t y_stride)
{
    int64_t nb = n / KQ_QK;
    const kq_block_q4_0 *rows[4];
    const quad_record *cols_at[TILE_COLS];
    for (int r = 0; r < 4; r++)
        rows[r] = (const kq_block_q4_0 *)((const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride);
    for (int c = 0; c < TILE_COLS; c++)
        cols_at[c] = (const quad_record *)((const uint8_t *)x + (size_t)(c < n_cols ? c : n_cols - 1) * x_stride);
    if (n_cols == 1) {
        float out[4];
        tile_body(nb, rows, 4, cols_at, 1, out, 4, 4 * w_stride);
        for (int r = 0; r < n_rows; r++)
            y[r] = out[r];
        return;
    }
    for (int r = 0; r < n_rows; r++) {
        switch (n_cols) {
            ONE_ROW_CASE(2);
            ONE_ROW_CASE(3);
            ONE_ROW_CASE(4);
            ONE_ROW_CASE(5);
        default:
            tile_body(nb, rows + r, 1, cols_at, TILE_COLS, y + r, y_stride, 0);
            break;
        }
    }
}

static void dot_q4_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    tile_q4_0(n, w_row, 0, 1, x_row, 0, 1, out, 1);
}

void kq_q4_0_quads_avx2(kq_impl *impl)
{
    impl->dot = dot_q4_0;
    impl->dot_tile = tile_q4_0;
    impl->act_convert = quantize_quads;
    impl->act_row_bytes = quads_row_bytes;
    impl->tile_cols = TILE_COLS;
}

#else

void kq_q4_0_quads_avx2(kq_impl *impl)
{
    (void)impl;
}

#endif
