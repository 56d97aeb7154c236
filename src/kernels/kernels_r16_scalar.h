/* Inside the kernels layer: the scalar twins every 16-row repacked layout shares,
 * written once. They are the tests' reference for the SIMD kernels: each row is taken
 * back to its GGUF block and dotted as the GGUF layout's scalar kernel does, block
 * after block. The includer defines
 *   group_to_block(const uint8_t *group_block, int r, R16_BLOCK *blk)  row r's block
 *   block_dot(const R16_BLOCK *blk, const R16_ACT *x)                  one block's dot
 * and before including this:
 *   R16_BLOCK              the GGUF block type
 *   R16_ACT                the activation record type (one per block)
 *   R16_BLOCK_VALUES       values per block
 *   R16_GROUP_BLOCK_BYTES  bytes of one block of a whole group
 * A layout whose group blocks are not simply back to back (kernels_r16_pairs.h) defines
 *   R16_GROUP_TO_BLOCK(group, nb, b, r, blk)  row r's block b of a group of nb blocks
 * in place of group_to_block.
 * It defines tile_scalar and dot_scalar, the kq_impl scalar entry points. */
#ifndef ELLIOTT_KERNELS_R16_SCALAR_H
#define ELLIOTT_KERNELS_R16_SCALAR_H

#if !defined(R16_BLOCK) || !defined(R16_ACT) || !defined(R16_BLOCK_VALUES) || !defined(R16_GROUP_BLOCK_BYTES)
#error "define R16_BLOCK, R16_ACT, R16_BLOCK_VALUES and R16_GROUP_BLOCK_BYTES first"
#endif

#ifndef R16_GROUP_TO_BLOCK
#define R16_GROUP_TO_BLOCK(group, nb, b, r, blk) group_to_block((group) + (size_t)(b) * R16_GROUP_BLOCK_BYTES, (r), (blk))
#endif

static float group_row_dot(const uint8_t *group, int64_t nb, int r, const R16_ACT *x)
{
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        R16_BLOCK blk;
        R16_GROUP_TO_BLOCK(group, nb, b, r, &blk);
        sum += block_dot(&blk, &x[b]);
    }
    return sum;
}

/* The driver passes a group's first row and 16 rows (whole groups only). */
static void tile_scalar(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x, size_t x_stride,
                        int n_cols, float *y, int64_t y_stride)
{
    (void)w_stride;
    for (int c = 0; c < n_cols; c++) {
        const R16_ACT *xc = (const R16_ACT *)((const uint8_t *)x + (size_t)c * x_stride);
        for (int r = 0; r < n_rows; r++)
            y[c * y_stride + r] = group_row_dot(w, n / R16_BLOCK_VALUES, r, xc);
    }
}

/* The first row of the group at w_row (the driver calls tile_scalar for whole groups). */
static void dot_scalar(int64_t n, const void *w_row, const void *x_row, float *out)
{
    *out = group_row_dot(w_row, n / R16_BLOCK_VALUES, 0, x_row);
}

#endif
