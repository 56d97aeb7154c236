/* Inside the kernels layer: the tile skeleton of the GGUF-layout K-quant kernels,
 * written once for the AVX2, AVX-VNNI and AVX-512 files, each with its own block
 * decoding and accumulation. A row tile is one weight row against n_cols activation
 * rows (a constant after inlining): each weight block is decoded once and
 * accumulated into every column, one float accumulator per column. Before
 * including, define
 *   KQT_VEC        the accumulator type (__m256 or __m512)
 *   KQT_ZERO()     its zero
 *   KQT_HSUM(v)    the float sum of its lanes
 *   KQT_ACT        the activation block type (kq_block_q8_K or kq_block_q8_K_t8)
 *   KQT_COLS       activation rows per tile call: 8 or 16
 * and include immintrin.h and kernels/kernels_kquant.h first. */
#ifndef ELLIOTT_KERNELS_KQUANT_TILES_H
#define ELLIOTT_KERNELS_KQUANT_TILES_H

#if !defined(KQT_VEC) || !defined(KQT_ZERO) || !defined(KQT_HSUM) || !defined(KQT_ACT) || !defined(KQT_COLS)
#error "define KQT_VEC, KQT_ZERO, KQT_HSUM, KQT_ACT and KQT_COLS before including kernels_kquant_tiles.h"
#endif

/* A weight block's cache lines KQ_PREFETCH_AHEAD bytes on: the tiles walk one row
 * at a time, but the next rows follow right after. Only for one token (see
 * kernels_legacy_avx2.c). Always inlined: GCC deems a function of prefetches alone
 * free of effects and drops calls to it. */
static inline __attribute__((always_inline)) void prefetch_block(const void *block, size_t bytes)
{
    for (size_t off = 0; off < bytes; off += 64)
        _mm_prefetch((const char *)block + KQ_PREFETCH_AHEAD + off, _MM_HINT_T0);
}

static inline const KQT_ACT *act_row(const void *x, size_t x_stride, int c)
{
    return (const KQT_ACT *)((const uint8_t *)x + (size_t)c * x_stride);
}

/* Expands to the row tile `name`. */
#define KQT_ROW_TILE(name, block_type, decoded_type, decode, accumulate)                          \
    static inline __attribute__((always_inline)) void name(int64_t n, const block_type *w,       \
                                                           const void *x, size_t x_stride,       \
                                                           int n_cols, float *y, int64_t y_stride) \
    {                                                                                            \
        KQT_VEC acc[KQT_COLS];                                                                   \
        _Pragma("GCC unroll 16") for (int c = 0; c < n_cols; c++) acc[c] = KQT_ZERO();           \
        for (int64_t i = 0; i < n / KQ_QK_K; i++) {                                              \
            if (n_cols == 1)                                                                     \
                prefetch_block(&w[i], sizeof w[i]);                                              \
            decoded_type b;                                                                      \
            decode(&w[i], &b);                                                                   \
            _Pragma("GCC unroll 16") for (int c = 0; c < n_cols; c++)                            \
                accumulate(&b, act_row(x, x_stride, c) + i, &acc[c]);                            \
        }                                                                                        \
        _Pragma("GCC unroll 16") for (int c = 0; c < n_cols; c++) y[c * y_stride] = KQT_HSUM(acc[c]); \
    }

/* The row tile with a constant column count, so that its accumulators live in registers. */
#define KQT_CALL(row_tile, cols) row_tile(n, row, x, x_stride, cols, y + r, y_stride)
#define KQT_CASE(row_tile, cols)                                                                 \
    case cols:                                                                                   \
        KQT_CALL(row_tile, cols);                                                                \
        break;
#if KQT_COLS == 16
#define KQT_WIDE_CASES(row_tile)                                                                 \
    KQT_CASE(row_tile, 8)                                                                        \
    KQT_CASE(row_tile, 9)                                                                        \
    KQT_CASE(row_tile, 10)                                                                       \
    KQT_CASE(row_tile, 11)                                                                       \
    KQT_CASE(row_tile, 12)                                                                       \
    KQT_CASE(row_tile, 13)                                                                       \
    KQT_CASE(row_tile, 14)                                                                       \
    KQT_CASE(row_tile, 15)
#elif KQT_COLS == 8
#define KQT_WIDE_CASES(row_tile)
#else
#error "KQT_COLS must be 8 or 16"
#endif

/* Expands to the tile function `name` (a kq_dot_tile_fn) over rows of block_type;
 * `linkage` is static, or empty for a kernel named in kernels_kquant.h. */
#define KQT_TILE(linkage, name, block_type, row_tile)                                             \
    linkage void name(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,      \
                      size_t x_stride, int n_cols, float *y, int64_t y_stride)                   \
    {                                                                                            \
        for (int r = 0; r < n_rows; r++) {                                                       \
            const block_type *row = (const block_type *)((const uint8_t *)w + (size_t)r * w_stride); \
            switch (n_cols) {                                                                    \
                KQT_CASE(row_tile, 1)                                                            \
                KQT_CASE(row_tile, 2)                                                            \
                KQT_CASE(row_tile, 3)                                                            \
                KQT_CASE(row_tile, 4)                                                            \
                KQT_CASE(row_tile, 5)                                                            \
                KQT_CASE(row_tile, 6)                                                            \
                KQT_CASE(row_tile, 7)                                                            \
                KQT_WIDE_CASES(row_tile)                                                         \
            default:                                                                             \
                KQT_CALL(row_tile, KQT_COLS);                                                    \
                break;                                                                           \
            }                                                                                    \
        }                                                                                        \
    }

/* Expands to the dot product `name` (a kq_dot_fn): the row tile's one-column case,
 * so that the dot and the tile agree bit for bit. */
#define KQT_DOT(name, block_type, row_tile)                                                       \
    static void name(int64_t n, const void *w_row, const void *x_row, float *out)                \
    {                                                                                            \
        row_tile(n, (const block_type *)w_row, x_row, 0, 1, out, 0);                             \
    }

/* Expands to a type's row tile type##_row and its file-local tile and dot,
 * dot_tile_##type and dot_##type. */
#define KQT_STATIC_KERNELS(type, decoded_type, decode, accumulate)                                \
    KQT_ROW_TILE(type##_row, kq_block_##type, decoded_type, decode, accumulate)                  \
    KQT_TILE(static, dot_tile_##type, kq_block_##type, type##_row)                               \
    KQT_DOT(dot_##type, kq_block_##type, type##_row)

#endif
