/* Inside the kernels layer only: the steps of kernels_attn_f16 and
 * kernels_attn_q8_0 that each instruction set implements (kernels_attn.c and
 * kernels_attn_q8_0.c hold the drivers and the scalar versions; the files named
 * _avx2 and _avx512 the others). Every row of floats here starts 64-byte aligned
 * and is padded with zeros to a multiple of 16. */
#ifndef ELLIOTT_KERNELS_ATTN_INTERNAL_H
#define ELLIOTT_KERNELS_ATTN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

typedef struct ka_ops {
    /* dst[i * dst_stride + d] = f32(src[i * src_stride + d]) for i < n, d < width;
     * the padding of each dst row is zeroed. */
    void (*widen)(const uint16_t *src, size_t src_stride, int n, int width, float *dst, size_t dst_stride);
    /* s[i] = dot(q, k + i * k_stride) over dk values, for i < n */
    void (*scores)(const float *q, const float *k, size_t k_stride, int n, int dk, float *s);
    /* x[i] = e^x[i] for i < n (x <= 0 here; e^0 is exactly 1) */
    void (*exp)(float *x, int n);
    /* For i < n: acc = h(acc * rescale[i]) unless rescale[i] is 1, then
     * acc = h(acc + h32(w[i] * v_i)), h rounding to half, h32 to float (no FMA).
     * rescale NULL: no position rescales. */
    void (*accumulate)(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv);
} ka_ops;

const ka_ops *ka_ops_scalar(void);
const ka_ops *ka_ops_avx2(void);   /* NULL where not compiled */
const ka_ops *ka_ops_avx512(void); /* NULL where not compiled */

/* Floats of a row padded to a multiple of 16 (one zmm). */
static inline size_t ka_pad16(int n)
{
    return ((size_t)n + 15) & ~(size_t)15;
}

/* Positions per block of both drivers: a block's keys and values, prepared once,
 * stay in L1/L2 for head sizes up to 256 while every row of the call reads them. */
enum { KA_BLOCK = 32 };

/* The streaming softmax's bookkeeping of both drivers (kernels_attn.c). One row's
 * scores s over n positions of a block (scaled by kq_scale and soft-capped here)
 * become the weights e[i] and, where a position raises the running maximum *max,
 * the factors e[n + i] that rescale the running sum before position i is added;
 * returns whether any position does (then e[n..2n) applies). */
bool ka_block_weights(const ka_ops *ops, float kq_scale, float softcap, float *s, float *e, int n, float *max);
/* The rows' running denominators after a block, position by position in ggml's
 * order: n_block[r] positions of row r, e as ka_block_weights left it at
 * e + r * 2 * KA_BLOCK. */
void ka_add_weights(float *sum, const float *e, const int *n_block, const bool *rescaled, int n_rows);
/* The positions [*p0, *p1] of a row that lies in the block [b0, b1]; false when none. */
static inline bool ka_row_in_block(int first, int last, int b0, int b1, int *p0, int *p1)
{
    *p0 = first > b0 ? first : b0;
    *p1 = last < b1 ? last : b1;
    return *p0 <= *p1;
}
/* Each row's output: its running sum of weighted values (row r at acc + r * acc_stride)
 * over its running denominator sum[r]. */
void ka_write_outputs(const kernels_attn_row *rows, int n_rows, const float *acc, size_t acc_stride,
                      const float *sum, int dv);

/* ---- Q8_0 cache (kernels_attn_q8_0.c) ----------------------------------------------
 * A query and a block of keys are first put in whatever layout an implementation's
 * scores reads best; the bounds below hold every implementation's. dk and dv are
 * multiples of 32; prepared buffers start 64-byte aligned. */

static inline size_t ka_q8_pad64(int n)
{
    return ((size_t)n + 63) & ~(size_t)63;
}
/* Bytes of one prepared query, and of one prepared key position. */
static inline size_t ka_q8_query_bytes(int dk)
{
    return 2 * ka_q8_pad64(dk);
}
static inline size_t ka_q8_key_bytes(int dk)
{
    return 3 * ka_q8_pad64(dk);
}

typedef struct ka_q8_ops {
    /* the query's Q8_0 row (dk / 32 blocks) into dst, ka_q8_query_bytes(dk) */
    void (*prepare_query)(const uint8_t *q8, int dk, void *dst);
    /* n cached Q8_0 key rows, back to back, into dst, n * ka_q8_key_bytes(dk) */
    void (*prepare_keys)(const uint8_t *k, int n, int dk, void *dst);
    /* s[i] = the Q8_0 x Q8_0 dot product of the query and prepared key i0 + i, i < n:
     * per block the integer sum times the product of the two scales, in float */
    void (*scores)(const void *q, const void *keys, int i0, int n, int dk, float *s);
    /* dst[i * dst_stride + c] = the n Q8_0 value rows widened to float */
    void (*widen)(const uint8_t *v, int n, int dv, float *dst, size_t dst_stride);
    /* For i < n: acc *= rescale[i] unless rescale is NULL or rescale[i] is 1, then
     * acc += w[i] * v_i, in float */
    void (*accumulate)(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale, int n,
                       int dv);
} ka_q8_ops;

const ka_q8_ops *ka_q8_ops_scalar(void);
const ka_q8_ops *ka_q8_ops_avx2(void);   /* NULL where not compiled */
const ka_q8_ops *ka_q8_ops_avx512(void); /* NULL where not compiled */

#endif
