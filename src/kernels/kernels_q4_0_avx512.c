/* AVX-512 VNNI Q4_0 matrix kernels over a four-block activation layout.
 *
 * One zmm holds four consecutive weight blocks, one per 128-bit lane: the low
 * nibbles of the lane's 16 bytes are the block's values 0..15, the high nibbles
 * 16..31. vpdpbusd multiplies those unsigned nibbles u with the signed activations
 * and sums each four products into an int32 lane, so two vpdpbusd (low and high
 * nibbles) give a quad's 16 partial sums. The activation record starts the
 * accumulator at -8 * (the same four-by-two activations' sum), which turns u * x
 * into (u - 8) * x exactly; one conversion and one FMA with the lane's block scale
 * d_w * d_x finish four blocks.
 *
 * The weights stay in their GGUF layout (18-byte blocks: a half scale, then 16
 * bytes of nibbles): a quad is 72 bytes, read as bytes 0..63 and 8..71 (never past
 * the quad), from which one word permute gathers the 64 nibble bytes and another
 * the four scales, each repeated for its block's four lanes.
 *
 * Activation quad record (256 bytes, 64-byte aligned), blocks A B C D:
 *   int8  lo[64]   values 0..15 of A, of B, of C, of D
 *   int8  hi[64]   values 16..31 likewise
 *   int32 off[16]  lane 4k+j: -8 * (lo[16k+4j..+3] + hi[16k+4j..+3]) summed
 *   float d[16]    block k's Q8_0 scale (rounded to half, as Q8_0 stores it) in lanes 4k..4k+3
 * Blocks past the row's end are zeros in the last record; the weight side reads the
 * row's last partial quad from a zero-padded copy. */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_q8_avx512.h"

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")

enum { QUAD_BYTES = 256, QUAD_BLOCKS = 4, QUAD_WEIGHT_BYTES = QUAD_BLOCKS * (int)sizeof(kq_block_q4_0) };

typedef struct quad_record {
    int8_t lo[64];
    int8_t hi[64];
    int32_t off[16];
    float d[16];
} quad_record;

_Static_assert(sizeof(quad_record) == QUAD_BYTES, "quad record is 256 bytes");
_Static_assert(sizeof(kq_block_q4_0) == 18, "Q4_0 blocks are 18 bytes");

static size_t quads_row_bytes(int64_t n)
{
    int64_t nb = n / KQ_QK;
    return (size_t)((nb + QUAD_BLOCKS - 1) / QUAD_BLOCKS) * QUAD_BYTES;
}

/* ---- activation quantizer -------------------------------------------------------------- */

static void quantize_quads(const float *src, void *dst, int64_t n)
{
    quad_record *rec = dst;
    int64_t nb = n / KQ_QK;
    const __m128i ones = _mm_set1_epi8(1);
    for (int64_t i = 0; i < nb; i += QUAD_BLOCKS, rec++) {
        for (int k = 0; k < QUAD_BLOCKS; k++) {
            __m128i lo = _mm_setzero_si128(), hi = _mm_setzero_si128();
            float d = 0.0f;
            if (i + k < nb) {
                __m256i q = kq_q8_block_avx512(src + (i + k) * KQ_QK, &d);
                d = el_fp16_to_f32(el_f32_to_fp16(d));
                lo = _mm256_castsi256_si128(q);
                hi = _mm256_extracti128_si256(q, 1);
            }
            _mm_store_si128((__m128i *)(rec->lo + 16 * k), lo);
            _mm_store_si128((__m128i *)(rec->hi + 16 * k), hi);
            __m128i sums = _mm_dpbusd_epi32(_mm_dpbusd_epi32(_mm_setzero_si128(), ones, lo), ones, hi);
            _mm_store_si128((__m128i *)(rec->off + 4 * k), _mm_mullo_epi32(sums, _mm_set1_epi32(-8)));
            _mm_store_ps(rec->d + 4 * k, _mm_set1_ps(d));
        }
    }
}

/* ---- dot tiles --------------------------------------------------------------------------- */

/* A weight quad decoded: nibbles per block lane, scales per lane. */
typedef struct weight_quad {
    __m512i lo, hi;
    __m512 d;
} weight_quad;

ALWAYS_INLINE weight_quad decode_quad(const uint8_t *q)
{
    /* word w of the quad: z0 word w for w < 32, z1 word w - 4 from there on; block k's
     * scale is word 9k, its nibbles words 9k+1..9k+8 */
    static const uint16_t nibble_words[32] = {1,  2,  3,  4,  5,  6,  7,  8,  10, 11, 12, 13, 14, 15, 16, 17,
                                              19, 20, 21, 22, 23, 24, 25, 26, 56, 57, 58, 59, 60, 61, 62, 63};
    static const uint16_t scale_words[32] = {0, 0, 0, 0, 9, 9, 9, 9, 18, 18, 18, 18, 27, 27, 27, 27};
    const __m512i low4 = _mm512_set1_epi8(0x0f);
    __m512i z0 = _mm512_loadu_si512(q);
    __m512i z1 = _mm512_loadu_si512(q + 8);
    __m512i nibbles = _mm512_permutex2var_epi16(z0, _mm512_loadu_si512(nibble_words), z1);
    weight_quad w;
    w.lo = _mm512_and_si512(nibbles, low4);
    w.hi = _mm512_and_si512(_mm512_srli_epi16(nibbles, 4), low4);
    w.d = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(_mm512_loadu_si512(scale_words), z0)));
    return w;
}

ALWAYS_INLINE __m512 quad_dot(const weight_quad *w, const quad_record *x, __m512 acc)
{
    __m512i s = _mm512_load_si512(x->off);
    s = _mm512_dpbusd_epi32(s, w->lo, _mm512_load_si512(x->lo));
    s = _mm512_dpbusd_epi32(s, w->hi, _mm512_load_si512(x->hi));
    __m512 scale = _mm512_mul_ps(w->d, _mm512_load_ps(x->d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), scale, acc);
}

/* One quad of R rows against C tokens; rows[r] points at the quad's first byte. */
ALWAYS_INLINE void quad_step(const uint8_t *const *rows, const int R, const quad_record *const *cols, const int C,
                             int64_t q, __m512 acc[4][8])
{
    weight_quad w[4];
    UNROLL for (int r = 0; r < R; r++)
        w[r] = decode_quad(rows[r]);
    UNROLL for (int c = 0; c < C; c++)
        UNROLL for (int r = 0; r < R; r++)
            acc[r][c] = quad_dot(&w[r], cols[c] + q, acc[r][c]);
}

/* R rows by C tokens, both compile-time constants after inlining. */
ALWAYS_INLINE void tile_body(int64_t nb, const uint8_t *const *rows, const int R, const quad_record *const *cols,
                             const int C, float *y, int64_t y_stride, size_t next_tile)
{
    __m512 acc[4][8];
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            acc[r][c] = _mm512_setzero_ps();
    int64_t full = nb / QUAD_BLOCKS;
    const uint8_t *at[4];
    const kq_prefetch_plan plan = kq_plan_prefetch((size_t)nb * sizeof(kq_block_q4_0), QUAD_WEIGHT_BYTES, next_tile);
    for (int64_t q = 0; q < full; q++) {
        size_t ahead = kq_prefetch_offset(&plan, q);
        UNROLL for (int r = 0; r < R; r++) {
            at[r] = rows[r] + q * QUAD_WEIGHT_BYTES;
            /* streaming (one token): fetch ahead; several tokens reuse the rows from
             * cache, where prefetches would only evict activations */
            if (C == 1) {
                _mm_prefetch((const char *)at[r] + ahead, _MM_HINT_T0);
                _mm_prefetch((const char *)at[r] + ahead + 64, _MM_HINT_T0);
            }
        }
        quad_step(at, R, cols, C, q, acc);
    }
    int tail = (int)(nb % QUAD_BLOCKS);
    if (tail) {
        /* the row's last blocks, padded with zero blocks so that no read passes its end */
        uint8_t padded[4][QUAD_WEIGHT_BYTES];
        memset(padded, 0, sizeof padded);
        UNROLL for (int r = 0; r < R; r++) {
            memcpy(padded[r], rows[r] + full * QUAD_WEIGHT_BYTES, (size_t)tail * sizeof(kq_block_q4_0));
            at[r] = padded[r];
        }
        quad_step(at, R, cols, C, full, acc);
    }
    UNROLL for (int r = 0; r < R; r++)
        UNROLL for (int c = 0; c < C; c++)
            y[c * y_stride + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* The tile entry point: n_rows <= 4 weight rows by n_cols <= TILE_COLS tokens. For
 * one token four rows share its activation loads; with more tokens two rows at a time
 * are decoded once for all of them (16 accumulators stay in registers). */
enum { TILE_COLS = 8 };

#define PAIR_CASE(cols)                                                                      \
    case cols:                                                                               \
        if (pair)                                                                            \
            tile_body(nb, rows + r, 2, cols_at, cols, y + r, y_stride, 0);                     \
        else                                                                                 \
            tile_body(nb, rows + r, 1, cols_at, cols, y + r, y_stride, 0);                     \
        break

static void tile_q4_0(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x, size_t x_stride,
                      int n_cols, float *y, int64_t y_stride)
{
    int64_t nb = n / KQ_QK;
    const uint8_t *rows[4];
    const quad_record *cols_at[TILE_COLS];
    for (int r = 0; r < 4; r++)
        rows[r] = (const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
    for (int c = 0; c < TILE_COLS; c++)
        cols_at[c] = (const quad_record *)((const uint8_t *)x + (size_t)(c < n_cols ? c : n_cols - 1) * x_stride);
    if (n_cols == 1) {
        float out[4];
        tile_body(nb, rows, 4, cols_at, 1, out, 4, 4 * w_stride);
        for (int r = 0; r < n_rows; r++)
            y[r] = out[r];
        return;
    }
    for (int r = 0; r < n_rows; r += 2) {
        bool pair = r + 1 < n_rows;
        switch (n_cols) {
            PAIR_CASE(2);
            PAIR_CASE(3);
            PAIR_CASE(4);
            PAIR_CASE(5);
            PAIR_CASE(6);
            PAIR_CASE(7);
        default:
            PAIR_CASE(8);
        }
    }
}

static void dot_q4_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    tile_q4_0(n, w_row, 0, 1, x_row, 0, 1, out, 1);
}

void kq_q4_0_quads_avx512(kq_impl *impl)
{
    impl->dot = dot_q4_0;
    impl->dot_tile = tile_q4_0;
    impl->act_convert = quantize_quads;
    impl->act_row_bytes = quads_row_bytes;
    impl->tile_cols = TILE_COLS;
}

#else

void kq_q4_0_quads_avx512(kq_impl *impl)
{
    (void)impl;
}

#endif
