/* AVX2/FMA/F16C versions of the 32-value block types: dequantization, the
 * activation quantizers (same bytes as the scalar reference) and integer dot
 * products against Q8_0 / Q8_1 activations, with tile kernels that load each
 * weight block once for up to four tokens.
 *
 * Dot products follow the sign trick: |w| (unsigned) times x carrying w's sign,
 * multiplied and pair-summed by maddubs into 16 bits, then into 32. For a tile,
 * the four rows' 32-bit partial sums of one token are folded by two rounds of
 * hadd into one vector whose lanes r and r + 4 belong to row r, so one FMA
 * applies the four rows' block scales. */
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

int kq_avx2_compiled(void)
{
    return 1;
}

static inline float half(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* 32 nibbles -> 32 bytes: values 0..15 from the low nibbles, 16..31 from the high. */
static inline __m256i unpack_nibbles(const uint8_t qs[16])
{
    /* a broadcast load and a per-half shift keep this off the shuffle port */
    __m256i twice = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    __m256i both = _mm256_srlv_epi64(twice, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}

/* The 32 bits of qh -> 32 bytes, 0xff where the bit is set. */
static inline __m256i expand_bits(const uint8_t qh[4])
{
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const __m256i byte_of_bit = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                                 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit_in_byte = _mm256_set1_epi64x((int64_t)0x8040201008040201ull);
    __m256i spread = _mm256_shuffle_epi8(_mm256_set1_epi32((int32_t)bits), byte_of_bit);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_in_byte), bit_in_byte);
}

/* Signed weight bytes of one block, per type. */
static inline __m256i weights_q4_0(const kq_block_q4_0 *b)
{
    return _mm256_sub_epi8(unpack_nibbles(b->qs), _mm256_set1_epi8(8));
}

static inline __m256i weights_q5_0(const kq_block_q5_0 *b)
{
    /* (nibble | bit4 << 4) - 16 == nibble with 0xf0 or-ed in where bit4 is clear */
    __m256i clear = _mm256_andnot_si256(expand_bits(b->qh), _mm256_set1_epi8((char)0xf0));
    return _mm256_or_si256(unpack_nibbles(b->qs), clear);
}

static inline __m256i weights_q8_0(const kq_block_q8_0 *b)
{
    return _mm256_loadu_si256((const __m256i *)b->qs);
}

/* Unsigned weight bytes (levels) for the _1 types. */
static inline __m256i levels_q4_1(const kq_block_q4_1 *b)
{
    return unpack_nibbles(b->qs);
}

static inline __m256i levels_q5_1(const kq_block_q5_1 *b)
{
    __m256i high = _mm256_and_si256(expand_bits(b->qh), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(b->qs), high);
}

/* 8 int32 lanes summing to dot(w, x) for signed w; |w| precomputed. */
static inline __m256i dot_signed(__m256i abs_w, __m256i w, __m256i x)
{
    __m256i p16 = _mm256_maddubs_epi16(abs_w, _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

static inline __m256i dot_unsigned(__m256i levels, __m256i x)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(levels, x), _mm256_set1_epi16(1));
}

/* Lanes r and r + 4 of the result sum to the lanes of p[r]. */
static inline __m256 fold4(__m256i p0, __m256i p1, __m256i p2, __m256i p3)
{
    return _mm256_cvtepi32_ps(_mm256_hadd_epi32(_mm256_hadd_epi32(p0, p1), _mm256_hadd_epi32(p2, p3)));
}

/* The four rows' value of a tile accumulator. */
static inline __m128 unfold4(__m256 acc)
{
    return _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
}

static inline void store_rows(float *y, __m128 v, int n_rows)
{
    if (n_rows == 4) {
        _mm_storeu_ps(y, v);
        return;
    }
    float tmp[4];
    _mm_storeu_ps(tmp, v);
    for (int r = 0; r < n_rows; r++)
        y[r] = tmp[r];
}

/* Four rows' results for four tokens: lanes c and c + 4 of acc[r] hold token c. */
static inline void store_cols4(float *y, int64_t y_stride, const __m256 acc[4], int n_rows)
{
    for (int r = 0; r < n_rows; r++) {
        float v[4];
        _mm_storeu_ps(v, unfold4(acc[r]));
        for (int c = 0; c < 4; c++)
            y[c * y_stride + r] = v[c];
    }
}

/* [h0, h1, h2, h3, h0, h1, h2, h3] as floats. */
static inline __m256 halves4(uint16_t h0, uint16_t h1, uint16_t h2, uint16_t h3)
{
    __m128 v = _mm_cvtph_ps(_mm_setr_epi16((short)h0, (short)h1, (short)h2, (short)h3, 0, 0, 0, 0));
    return _mm256_set_m128(v, v);
}

/* ---- tile kernels, one per (weight, activation) pair ---------------------------------
 * Rows beyond n_rows repeat the last row (their results are dropped), so the inner
 * loops always see four rows. */

#define ROW_POINTERS(block_t, name)                                                          \
    const block_t *name[4];                                                                  \
    for (int r_ = 0; r_ < 4; r_++)                                                           \
        name[r_] = (const block_t *)((const uint8_t *)w + (size_t)(r_ < n_rows ? r_ : n_rows - 1) * w_stride)

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 4")

/* Block i of each of the four rows, KQ_PREFETCH_AHEAD bytes on (blocks span at most
 * one cache line boundary, so one prefetch per row per block keeps up). Only for one
 * token: several tokens reuse the rows from cache, and prefetches would evict the
 * activations (a 3x loss measured on 128-token matmuls). */
#define PREFETCH_ROWS(rows, i)                                                               \
    UNROLL for (int r_ = 0; r_ < 4; r_++)                                                    \
        _mm_prefetch((const char *)&rows[r_][i] + KQ_PREFETCH_AHEAD, _MM_HINT_T0)

/* The tile bodies take the token count as a compile-time constant (the dispatch
 * below switches over 1..3) so that the accumulators live in registers. Below
 * four tokens the four rows of one token are folded together (one accumulator
 * per token); with four tokens the four tokens of one row are (one accumulator
 * per row, the activation blocks loaded once), which needs fewer registers. */
#define TILE_DISPATCH(fn, body)                                                              \
    static void fn(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,     \
                   size_t x_stride, int n_cols, float *y, int64_t y_stride)                  \
    {                                                                                        \
        switch (n_cols) {                                                                    \
        case 1:                                                                              \
            body(n, w, w_stride, n_rows, x, x_stride, 1, y, y_stride);                       \
            break;                                                                           \
        case 2:                                                                              \
            body(n, w, w_stride, n_rows, x, x_stride, 2, y, y_stride);                       \
            break;                                                                           \
        case 3:                                                                              \
            body(n, w, w_stride, n_rows, x, x_stride, 3, y, y_stride);                       \
            break;                                                                           \
        default:                                                                             \
            body##_cols4(n, w, w_stride, n_rows, x, x_stride, y, y_stride);                  \
            break;                                                                           \
        }                                                                                    \
    }

#define SIGNED_TILE(fn, block_t, weights_fn)                                                 \
    ALWAYS_INLINE void fn##_body(int64_t n, const void *w, size_t w_stride, int n_rows,      \
                                 const void *x, size_t x_stride, const int n_cols, float *y, \
                                 int64_t y_stride)                                           \
    {                                                                                        \
        ROW_POINTERS(block_t, rows);                                                         \
        const kq_block_q8_0 *cols[4];                                                        \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            cols[c] = (const kq_block_q8_0 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            if (n_cols == 1)                                                                 \
                PREFETCH_ROWS(rows, i);                                                      \
            __m256i wq[4], wa[4];                                                            \
            UNROLL for (int r = 0; r < 4; r++) {                                             \
                wq[r] = weights_fn(&rows[r][i]);                                             \
                wa[r] = _mm256_sign_epi8(wq[r], wq[r]);                                      \
            }                                                                                \
            __m256 dw = halves4(rows[0][i].d, rows[1][i].d, rows[2][i].d, rows[3][i].d);     \
            UNROLL for (int c = 0; c < n_cols; c++) {                                        \
                __m256i xq = _mm256_loadu_si256((const __m256i *)cols[c][i].qs);             \
                __m256 sums = fold4(dot_signed(wa[0], wq[0], xq), dot_signed(wa[1], wq[1], xq), \
                                    dot_signed(wa[2], wq[2], xq), dot_signed(wa[3], wq[3], xq)); \
                __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(half(cols[c][i].d)));       \
                acc[c] = _mm256_fmadd_ps(sums, scale, acc[c]);                               \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            store_rows(y + c * y_stride, unfold4(acc[c]), n_rows);                           \
    }                                                                                        \
    ALWAYS_INLINE void fn##_body_cols4(int64_t n, const void *w, size_t w_stride, int n_rows, \
                                       const void *x, size_t x_stride, float *y,             \
                                       int64_t y_stride)                                     \
    {                                                                                        \
        ROW_POINTERS(block_t, rows);                                                         \
        const kq_block_q8_0 *cols[4];                                                        \
        UNROLL for (int c = 0; c < 4; c++)                                                   \
            cols[c] = (const kq_block_q8_0 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            __m256i xq[4];                                                                   \
            UNROLL for (int c = 0; c < 4; c++)                                               \
                xq[c] = _mm256_loadu_si256((const __m256i *)cols[c][i].qs);                  \
            __m256 dx = halves4(cols[0][i].d, cols[1][i].d, cols[2][i].d, cols[3][i].d);     \
            UNROLL for (int r = 0; r < 4; r++) {                                             \
                __m256i wq = weights_fn(&rows[r][i]);                                        \
                __m256i wa = _mm256_sign_epi8(wq, wq);                                       \
                __m256 sums = fold4(dot_signed(wa, wq, xq[0]), dot_signed(wa, wq, xq[1]),    \
                                    dot_signed(wa, wq, xq[2]), dot_signed(wa, wq, xq[3]));   \
                __m256 scale = _mm256_mul_ps(dx, _mm256_set1_ps(half(rows[r][i].d)));       \
                acc[r] = _mm256_fmadd_ps(sums, scale, acc[r]);                               \
            }                                                                                \
        }                                                                                    \
        store_cols4(y, y_stride, acc, n_rows);                                               \
    }                                                                                        \
    TILE_DISPATCH(fn, fn##_body)

SIGNED_TILE(tile_q5_0, kq_block_q5_0, weights_q5_0)
SIGNED_TILE(tile_q8_0, kq_block_q8_0, weights_q8_0)

/* _1 types: sum = d_w d_x sumi + m_w s_x; the m_w s_x term goes into lanes 0..3 only. */
#define AFFINE_TILE(fn, block_t, levels_fn)                                                  \
    ALWAYS_INLINE void fn##_body(int64_t n, const void *w, size_t w_stride, int n_rows,      \
                                 const void *x, size_t x_stride, const int n_cols, float *y, \
                                 int64_t y_stride)                                           \
    {                                                                                        \
        ROW_POINTERS(block_t, rows);                                                         \
        const kq_block_q8_1 *cols[4];                                                        \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            cols[c] = (const kq_block_q8_1 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        const __m256 low_lanes = _mm256_castsi256_ps(_mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0)); \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            if (n_cols == 1)                                                                 \
                PREFETCH_ROWS(rows, i);                                                      \
            __m256i wl[4];                                                                   \
            UNROLL for (int r = 0; r < 4; r++)                                               \
                wl[r] = levels_fn(&rows[r][i]);                                              \
            __m256 dw = halves4(rows[0][i].d, rows[1][i].d, rows[2][i].d, rows[3][i].d);     \
            __m256 mw = _mm256_and_ps(                                                       \
                halves4(rows[0][i].m, rows[1][i].m, rows[2][i].m, rows[3][i].m), low_lanes); \
            UNROLL for (int c = 0; c < n_cols; c++) {                                        \
                __m256i xq = _mm256_loadu_si256((const __m256i *)cols[c][i].qs);             \
                __m256 sums = fold4(dot_unsigned(wl[0], xq), dot_unsigned(wl[1], xq),        \
                                    dot_unsigned(wl[2], xq), dot_unsigned(wl[3], xq));       \
                __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(half(cols[c][i].d)));       \
                acc[c] = _mm256_fmadd_ps(sums, scale, acc[c]);                               \
                acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(half(cols[c][i].s)), acc[c]);   \
            }                                                                                \
        }                                                                                    \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            store_rows(y + c * y_stride, unfold4(acc[c]), n_rows);                           \
    }                                                                                        \
    ALWAYS_INLINE void fn##_body_cols4(int64_t n, const void *w, size_t w_stride, int n_rows, \
                                       const void *x, size_t x_stride, float *y,             \
                                       int64_t y_stride)                                     \
    {                                                                                        \
        ROW_POINTERS(block_t, rows);                                                         \
        const kq_block_q8_1 *cols[4];                                                        \
        UNROLL for (int c = 0; c < 4; c++)                                                   \
            cols[c] = (const kq_block_q8_1 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        const __m256 low_lanes = _mm256_castsi256_ps(_mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0)); \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            __m256i xq[4];                                                                   \
            UNROLL for (int c = 0; c < 4; c++)                                               \
                xq[c] = _mm256_loadu_si256((const __m256i *)cols[c][i].qs);                  \
            __m256 dx = halves4(cols[0][i].d, cols[1][i].d, cols[2][i].d, cols[3][i].d);     \
            __m256 sx = _mm256_and_ps(                                                       \
                halves4(cols[0][i].s, cols[1][i].s, cols[2][i].s, cols[3][i].s), low_lanes); \
            UNROLL for (int r = 0; r < 4; r++) {                                             \
                __m256i wl = levels_fn(&rows[r][i]);                                         \
                __m256 sums = fold4(dot_unsigned(wl, xq[0]), dot_unsigned(wl, xq[1]),        \
                                    dot_unsigned(wl, xq[2]), dot_unsigned(wl, xq[3]));       \
                __m256 scale = _mm256_mul_ps(dx, _mm256_set1_ps(half(rows[r][i].d)));       \
                acc[r] = _mm256_fmadd_ps(sums, scale, acc[r]);                               \
                acc[r] = _mm256_fmadd_ps(sx, _mm256_set1_ps(half(rows[r][i].m)), acc[r]);   \
            }                                                                                \
        }                                                                                    \
        store_cols4(y, y_stride, acc, n_rows);                                               \
    }                                                                                        \
    TILE_DISPATCH(fn, fn##_body)

AFFINE_TILE(tile_q4_1, kq_block_q4_1, levels_q4_1)
AFFINE_TILE(tile_q5_1, kq_block_q5_1, levels_q5_1)

/* ---- single dot products (one row, one token) ---------------------------------------- */

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define SIGNED_DOT(fn, block_t, weights_fn)                                                  \
    ALWAYS_INLINE __m256 fn##_block(const block_t *wb, const kq_block_q8_0 *xb, __m256 acc)  \
    {                                                                                        \
        __m256i wq = weights_fn(wb);                                                         \
        __m256i xq = _mm256_loadu_si256((const __m256i *)xb->qs);                            \
        __m256 sums = _mm256_cvtepi32_ps(dot_signed(_mm256_sign_epi8(wq, wq), wq, xq));      \
        return _mm256_fmadd_ps(sums, _mm256_set1_ps(half(wb->d) * half(xb->d)), acc);        \
    }                                                                                        \
    static void fn(int64_t n, const void *w_row, const void *x_row, float *out)              \
    {                                                                                        \
        const block_t *wb = w_row;                                                           \
        const kq_block_q8_0 *xb = x_row;                                                     \
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();                       \
        int64_t nb = n / KQ_QK, i = 0;                                                       \
        for (; i + 2 <= nb; i += 2) {                                                        \
            acc0 = fn##_block(&wb[i], &xb[i], acc0);                                         \
            acc1 = fn##_block(&wb[i + 1], &xb[i + 1], acc1);                                 \
        }                                                                                    \
        if (i < nb)                                                                          \
            acc0 = fn##_block(&wb[i], &xb[i], acc0);                                         \
        *out = hsum(_mm256_add_ps(acc0, acc1));                                              \
    }

SIGNED_DOT(dot_q5_0, kq_block_q5_0, weights_q5_0)
SIGNED_DOT(dot_q8_0, kq_block_q8_0, weights_q8_0)

#define AFFINE_DOT(fn, block_t, levels_fn)                                                   \
    static void fn(int64_t n, const void *w_row, const void *x_row, float *out)              \
    {                                                                                        \
        const block_t *wb = w_row;                                                           \
        const kq_block_q8_1 *xb = x_row;                                                     \
        __m256 acc = _mm256_setzero_ps();                                                    \
        float offsets = 0.0f;                                                                \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            __m256i xq = _mm256_loadu_si256((const __m256i *)xb[i].qs);                      \
            __m256 sums = _mm256_cvtepi32_ps(dot_unsigned(levels_fn(&wb[i]), xq));           \
            acc = _mm256_fmadd_ps(sums, _mm256_set1_ps(half(wb[i].d) * half(xb[i].d)), acc); \
            offsets += half(wb[i].m) * half(xb[i].s);                                        \
        }                                                                                    \
        *out = hsum(acc) + offsets;                                                          \
    }

AFFINE_DOT(dot_q4_1, kq_block_q4_1, levels_q4_1)
AFFINE_DOT(dot_q5_1, kq_block_q5_1, levels_q5_1)

/* ---- dequantization ------------------------------------------------------------------ */

static inline void store_block(float *dst, __m256i bytes, float d, float m)
{
    const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);
    __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++) {
        __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k]));
        /* same roundings as the scalar q*d + m: a product, then a sum */
        _mm256_storeu_ps(dst + 8 * k, _mm256_add_ps(_mm256_mul_ps(v, vd), vm));
    }
}

static inline void store_block_signed(float *dst, __m256i bytes, float d)
{
    const __m256 vd = _mm256_set1_ps(d);
    __m128i lo = _mm256_castsi256_si128(bytes), hi = _mm256_extracti128_si256(bytes, 1);
    __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; k++)
        _mm256_storeu_ps(dst + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), vd));
}

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q4_0(&b[i]), half(b[i].d));
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q5_0(&b[i]), half(b[i].d));
}

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block_signed(dst + i * KQ_QK, weights_q8_0(&b[i]), half(b[i].d));
}

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block(dst + i * KQ_QK, levels_q4_1(&b[i]), half(b[i].d), half(b[i].m));
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++)
        store_block(dst + i * KQ_QK, levels_q5_1(&b[i]), half(b[i].d), half(b[i].m));
}

/* ---- activation quantizers ----------------------------------------------------------- */

/* Quantizes one block to int8 with the scalar reference's d and rounding; returns
 * sum(qs) and stores d (float, before rounding to half). */
static inline int quantize_block(const float *src, int8_t qs[32], float *d_out)
{
    __m256i q = kq_q8_block_avx2(src, d_out);
    _mm256_storeu_si256((__m256i *)qs, q);
    /* sum of the 32 int8: widen to 16 bits, pair-add to 32, then fold */
    __m256i s16 = _mm256_add_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(q)),
                                   _mm256_cvtepi8_epi16(_mm256_extracti128_si256(q, 1)));
    __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(1, 0, 3, 2)));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(t);
}

void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
    }
}

void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        float d;
        int sum = quantize_block(src + i * KQ_QK, b[i].qs, &d);
        b[i].d = el_f32_to_fp16(d);
        b[i].s = el_f32_to_fp16((float)sum * d);
    }
}

/* Q8_K, byte for byte as kq_quantize_q8_k: the scale comes from the first value of
 * largest magnitude (sign kept); rounding to nearest even by cvtps equals ggml's
 * mantissa trick for the |v| <= 127 produced here. */
enum { Q8K_QK = 256 };

static float first_signed_absmax(const float *x)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 amax8 = _mm256_setzero_ps();
    for (int j = 0; j < Q8K_QK; j += 8)
        amax8 = _mm256_max_ps(amax8, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax8), _mm256_extractf128_ps(amax8, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    float amax = _mm_cvtss_f32(m);
    if (amax == 0.0f)
        return 0.0f;
    __m256 want = _mm256_set1_ps(amax);
    for (int j = 0; j < Q8K_QK; j += 8) {
        __m256 a = _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + j));
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(a, want, _CMP_EQ_OQ));
        if (hits)
            return x[j + __builtin_ctz((unsigned)hits)];
    }
    return 0.0f; /* not reached for finite input */
}

/* Sums of each 16 consecutive int8 of qs[256] into 16 int16, in order. */
static void block_sums16(const int8_t *qs, int16_t *sums)
{
    const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
    __m256i part[8];
    for (int k = 0; k < 8; k++) /* groups 2k (low lane) and 2k+1 (high lane): four int32 each */
        part[k] = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, _mm256_loadu_si256((const __m256i *)(qs + 32 * k))),
                                    ones16);
    /* two hadd rounds leave, per 128-bit lane, one total per group: [g0 g2 g4 g6 | g1 g3 g5 g7]
     * for part 0..3, likewise g8.. for part 4..7 */
    __m256i lo = _mm256_hadd_epi32(_mm256_hadd_epi32(part[0], part[1]), _mm256_hadd_epi32(part[2], part[3]));
    __m256i hi = _mm256_hadd_epi32(_mm256_hadd_epi32(part[4], part[5]), _mm256_hadd_epi32(part[6], part[7]));
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    lo = _mm256_permutevar8x32_epi32(lo, order);
    hi = _mm256_permutevar8x32_epi32(hi, order);
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xd8);
    _mm256_storeu_si256((__m256i *)sums, packed);
}

void kq_quantize_q8_k_avx2(const float *src, void *dst, int64_t n)
{
    uint8_t *out = dst;
    const size_t block_bytes = 4 + Q8K_QK + 2 * (Q8K_QK / 16);
    for (int64_t i = 0; i < n / Q8K_QK; i++, src += Q8K_QK, out += block_bytes) {
        int8_t *qs = (int8_t *)(out + 4);
        float max = first_signed_absmax(src);
        float d = 0.0f;
        if (max == 0.0f) {
            memset(qs, 0, Q8K_QK);
        } else {
            float iscale = -127.0f / max;
            __m256 vs = _mm256_set1_ps(iscale);
            const __m256i top = _mm256_set1_epi32(127);
            for (int j = 0; j < Q8K_QK; j += 32) {
                __m256i q[4];
                for (int k = 0; k < 4; k++)
                    q[k] = _mm256_min_epi32(top, _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(src + j + 8 * k))));
                __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
                p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
                _mm256_storeu_si256((__m256i *)(qs + j), p8);
            }
            d = 1.0f / iscale;
        }
        memcpy(out, &d, sizeof d);
        int16_t sums[Q8K_QK / 16];
        block_sums16(qs, sums);
        memcpy(out + 4 + Q8K_QK, sums, sizeof sums);
    }
}

kq_impl kq_legacy_avx2(uint32_t type)
{
    kq_impl impl = {0};
    switch (type) {
    case GGUF_TYPE_Q4_0:
        impl = (kq_impl){dequant_q4_0, NULL, NULL, NULL, NULL, 0}; /* dots: kernels_q4_0_avx2.c */
        kq_q4_0_quads_avx2(&impl);
        break;
    case GGUF_TYPE_Q4_1:
        impl = (kq_impl){dequant_q4_1, dot_q4_1, tile_q4_1, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q5_0:
        impl = (kq_impl){dequant_q5_0, dot_q5_0, tile_q5_0, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q5_1:
        impl = (kq_impl){dequant_q5_1, dot_q5_1, tile_q5_1, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q8_0:
        impl = (kq_impl){dequant_q8_0, dot_q8_0, tile_q8_0, NULL, NULL, 0};
        break;
    default:
        break;
    }
    return impl;
}

#else /* no AVX2 code on this target */

int kq_avx2_compiled(void)
{
    return 0;
}

void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_0(src, dst, n);
}

void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_1(src, dst, n);
}

void kq_quantize_q8_k_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_k(src, dst, n);
}

kq_impl kq_legacy_avx2(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
