/* Inside the kernels layer: the entry points every kernel file over a 16-row repacked
 * layout shares, written once. The includer defines its group kernel
 *   group_tile(const uint8_t *group, int64_t nb, const R16_ACT *const *x, const int C,
 *              float *y, int64_t y_stride)
 * (one group of 16 rows, nb blocks, against C tokens, C a compile-time constant so
 * that each token count gets its own unrolled copy), and before including this:
 *   R16_ACT             the activation record type
 *   R16_BLOCK_VALUES    values per block (one repacked block per group)
 *   R16_TILE_COLS       tokens per call, 4 or 8
 *   R16_ACT_CONVERT     the kq_impl act_convert function
 *   R16_ACT_ROW_BYTES   the kq_impl act_row_bytes function
 * It defines tile_r16 and dot_r16 and `static kq_impl r16_impl(void)`. */
#ifndef ELLIOTT_KERNELS_R16_ENTRY_H
#define ELLIOTT_KERNELS_R16_ENTRY_H

#if !defined(R16_ACT) || !defined(R16_BLOCK_VALUES) || !defined(R16_TILE_COLS) || !defined(R16_ACT_CONVERT) || \
    !defined(R16_ACT_ROW_BYTES)
#error "define R16_ACT, R16_BLOCK_VALUES, R16_TILE_COLS, R16_ACT_CONVERT and R16_ACT_ROW_BYTES first"
#endif
#if R16_TILE_COLS != 4 && R16_TILE_COLS != 8
#error "R16_TILE_COLS is 4 or 8"
#endif

#define R16_COLS_CASE(cols)                                                                  \
    case cols:                                                                               \
        group_tile(w, nb, cols_at, cols, y, y_stride);                                       \
        break

/* The driver passes one whole group (n_rows == 16) and up to R16_TILE_COLS tokens; the
 * unused token slots point at the last token, so no record is read out of bounds. */
static void tile_r16(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x, size_t x_stride,
                     int n_cols, float *y, int64_t y_stride)
{
    (void)w_stride;
    (void)n_rows;
    int64_t nb = n / R16_BLOCK_VALUES;
    const R16_ACT *cols_at[R16_TILE_COLS];
    for (int c = 0; c < R16_TILE_COLS; c++)
        cols_at[c] = (const R16_ACT *)((const uint8_t *)x + (size_t)(c < n_cols ? c : n_cols - 1) * x_stride);
    switch (n_cols) {
        R16_COLS_CASE(1);
        R16_COLS_CASE(2);
        R16_COLS_CASE(3);
#if R16_TILE_COLS == 8
        R16_COLS_CASE(4);
        R16_COLS_CASE(5);
        R16_COLS_CASE(6);
        R16_COLS_CASE(7);
#endif
    default:
        R16_COLS_CASE(R16_TILE_COLS);
    }
}

#undef R16_COLS_CASE

/* Row 0 of the group at w_row (the driver calls tile_r16 for whole groups). */
static void dot_r16(int64_t n, const void *w_row, const void *x_row, float *out)
{
    float y[16];
    tile_r16(n, w_row, 0, 16, x_row, 0, 1, y, 0);
    *out = y[0];
}

static kq_impl r16_impl(void)
{
    return (kq_impl){
        .dot = dot_r16,
        .dot_tile = tile_r16,
        .act_convert = R16_ACT_CONVERT,
        .act_row_bytes = R16_ACT_ROW_BYTES,
        .tile_cols = R16_TILE_COLS,
    };
}

#endif
