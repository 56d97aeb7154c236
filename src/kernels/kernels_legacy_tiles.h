/* Inside the kernels layer: the 256-bit tile and dot kernels of the 32-value block
 * types (Q4_1, Q5_0, Q5_1, Q8_0 against Q8_0/Q8_1 activations), written once and
 * compiled into each file that includes this header with its own integer dot
 * product: before including, define
 *   KQ_DOT_U8_I8(u, s)  8 int32 lanes, lane i = sum over j < 4 of u[4i+j] * s[4i+j]
 *                       (u unsigned, s signed bytes; no product pair exceeds int16)
 * as maddubs + madd (AVX2) or one vpdpbusd (AVX-VNNI, AVX-512 VL). The includer
 * must be compiled with AVX2, FMA and F16C and include immintrin.h, string.h,
 * base/fp16.h and kernels/kernels_legacy.h first.
 *
 * Dot products follow the sign trick: |w| (unsigned) times x carrying w's sign,
 * multiplied and summed into 32 bits. For a tile, the four rows' 32-bit partial
 * sums of one token are folded by two rounds of hadd into one vector whose lanes r
 * and r + 4 belong to row r, so one FMA applies the four rows' block scales. */
#ifndef ELLIOTT_KERNELS_LEGACY_TILES_H
#define ELLIOTT_KERNELS_LEGACY_TILES_H

#ifndef KQ_DOT_U8_I8
#error "define KQ_DOT_U8_I8 before including kernels_legacy_tiles.h"
#endif

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
    return KQ_DOT_U8_I8(abs_w, _mm256_sign_epi8(x, w));
}

static inline __m256i dot_unsigned(__m256i levels, __m256i x)
{
    return KQ_DOT_U8_I8(levels, x);
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

/* Software prefetch for one token only (kq_plan_prefetch, into L1 and, farther on,
 * into L2: KQ_PREFETCH_FAR): several tokens reuse the rows from cache, and prefetches
 * would evict the activations (a 3x loss measured on 128-token matmuls). */
#define PREFETCH_ROWS(rows, i, plan, far_plan)                                               \
    do {                                                                                     \
        size_t ahead_ = kq_prefetch_offset(&(plan), (i));                                    \
        size_t far_ = kq_prefetch_offset(&(far_plan), (i));                                  \
        UNROLL for (int r_ = 0; r_ < 4; r_++) {                                              \
            _mm_prefetch((const char *)&rows[r_][i] + ahead_, _MM_HINT_T0);                  \
            _mm_prefetch((const char *)&rows[r_][i] + far_, _MM_HINT_T2);                    \
        }                                                                                    \
    } while (0)

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
        const kq_prefetch_plan plan = kq_plan_prefetch(n / KQ_QK * sizeof(block_t), sizeof(block_t), 4 * w_stride); \
        const kq_prefetch_plan far_plan =                                                    \
            kq_plan_prefetch_at(KQ_PREFETCH_FAR, n / KQ_QK * sizeof(block_t), sizeof(block_t), 4 * w_stride); \
        const kq_block_q8_0 *cols[4];                                                        \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            cols[c] = (const kq_block_q8_0 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            if (n_cols == 1)                                                                 \
                PREFETCH_ROWS(rows, i, plan, far_plan);                                      \
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
        const kq_prefetch_plan plan = kq_plan_prefetch(n / KQ_QK * sizeof(block_t), sizeof(block_t), 4 * w_stride); \
        const kq_prefetch_plan far_plan =                                                    \
            kq_plan_prefetch_at(KQ_PREFETCH_FAR, n / KQ_QK * sizeof(block_t), sizeof(block_t), 4 * w_stride); \
        const kq_block_q8_1 *cols[4];                                                        \
        UNROLL for (int c = 0; c < n_cols; c++)                                              \
            cols[c] = (const kq_block_q8_1 *)((const uint8_t *)x + (size_t)c * x_stride);    \
        __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),     \
                         _mm256_setzero_ps()};                                               \
        const __m256 low_lanes = _mm256_castsi256_ps(_mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0)); \
        for (int64_t i = 0; i < n / KQ_QK; i++) {                                            \
            if (n_cols == 1)                                                                 \
                PREFETCH_ROWS(rows, i, plan, far_plan);                                      \
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

/* The dot group (dot and tile) of a type; Q4_0 has its own layout elsewhere. */
static kq_impl kq_legacy_tiles(uint32_t type)
{
    kq_impl impl = {0};
    switch (type) {
    case GGUF_TYPE_Q4_1:
        impl = (kq_impl){NULL, dot_q4_1, tile_q4_1, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q5_0:
        impl = (kq_impl){NULL, dot_q5_0, tile_q5_0, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q5_1:
        impl = (kq_impl){NULL, dot_q5_1, tile_q5_1, NULL, NULL, 0};
        break;
    case GGUF_TYPE_Q8_0:
        impl = (kq_impl){NULL, dot_q8_0, tile_q8_0, NULL, NULL, 0};
        break;
    default:
        break;
    }
    return impl;
}

#endif
