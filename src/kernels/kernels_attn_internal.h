/* Inside the kernels layer only: the steps of kernels_attn_f16 that each
 * instruction set implements (kernels_attn.c holds the driver and the scalar
 * versions; kernels_attn_avx2.c and kernels_attn_avx512.c the others). Every
 * row of floats here starts 64-byte aligned and is padded with zeros to a
 * multiple of 16. */
#ifndef ELLIOTT_KERNELS_ATTN_INTERNAL_H
#define ELLIOTT_KERNELS_ATTN_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

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

#endif
