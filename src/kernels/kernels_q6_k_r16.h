/* Inside the kernels layer only: Q6_K repacked into groups of 16 interleaved rows
 * (layout in kernels_q6_k_r16.c), shared by its scalar, AVX2, AVX-VNNI and AVX-512 files. */
#ifndef ELLIOTT_KERNELS_Q6_K_R16_H
#define ELLIOTT_KERNELS_Q6_K_R16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"

enum {
    K6_R16_ROWS = 16,
    K6_R16_SUBS = KQ_QK_K / 16, /* 16-value sub-blocks of a super-block, each with a scale */
    /* group block: the low-bit words of 16 rows side by side, then the high-bit words,
     * the scale words and the halves d */
    K6_R16_QL = 0,
    K6_R16_QH = K6_R16_QL + K6_R16_ROWS * KQ_QK_K / 2,
    K6_R16_SCALES = K6_R16_QH + K6_R16_ROWS * KQ_QK_K / 4,
    K6_R16_D = K6_R16_SCALES + K6_R16_ROWS * K6_R16_SUBS,
    K6_R16_GROUP_BLOCK_BYTES = K6_R16_D + 2 * K6_R16_ROWS
};

/* The sums of the SIMD kernels' dot products start from this integer, the bits of
 * the float 1.5 * 2^23 (kernels_q6_k_r16_avx512.c, kernels_q6_k_r16_ymm.h). */
#define K6_R16_DOTS_START 0x4B400000

/* One super-block of an activation row: the Q8_K values in their natural order, and
 * per 16-value sub-block where its dot product's sum starts: K6_R16_DOTS_START minus
 * 32 times the sum of its values (turns the unsigned codes c into values c - 32). */
typedef struct k6_r16_act {
    int8_t qs[KQ_QK_K];
    int32_t start[K6_R16_SUBS];
    float d;
    uint8_t pad[60];
} k6_r16_act;

size_t k6_r16_act_row_bytes(int64_t n);

/* An activation row of n values into records (the selected Q8_K quantizer: the
 * same bytes on every implementation). */
void k6_r16_convert(const float *src, void *dst, int64_t n);

/* 16 GGUF rows (row_bytes apart, nb super-blocks each) into one group at `group`,
 * which must not overlap them; and row r of a group back into GGUF blocks. */
void k6_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group);
void k6_r16_unpack_row(const void *group, int64_t nb, int r, void *row);

/* The operations on repacked matrices; its SIMD members from kq_q6_k_r16_avx512,
 * kq_q6_k_r16_avx_vnni and kq_q6_k_r16_avx2 (each empty where not compiled). */
const kq_type_ops *kq_ops_q6_k_r16(void);
kq_impl kq_q6_k_r16_avx512(void);
kq_impl kq_q6_k_r16_avx_vnni(void);
kq_impl kq_q6_k_r16_avx2(void);

#endif
