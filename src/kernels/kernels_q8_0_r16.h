/* Inside the kernels layer only: Q8_0 repacked into groups of 16 interleaved rows
 * (layout in kernels_q8_0_r16.c), shared by its scalar, AVX2, AVX-VNNI and AVX-512 files. */
#ifndef ELLIOTT_KERNELS_Q8_0_R16_H
#define ELLIOTT_KERNELS_Q8_0_R16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_legacy.h"
#include "kernels/kernels_r16_pairs.h"

enum {
    K8_R16_ROWS = 16,
    K8_R16_SCALE_BYTES = 2 * K8_R16_ROWS,         /* one block's 16 half scales */
    K8_R16_QS_BYTES = K8_R16_ROWS * KQ_QK,         /* one block's 16 rows of values: 8 lines */
    K8_R16_PAIR_BYTES = 2 * (K8_R16_SCALE_BYTES + K8_R16_QS_BYTES), /* a pair of blocks: 17 lines */
    K8_R16_OFFSET = 128                            /* stored value = weight + 128 */
};

/* One block of an activation row: the Q8_0 values, -128 times their sum (turns the
 * stored unsigned values u back into u - 128) and the Q8_0 scale (rounded to half as
 * Q8_0 stores it). */
typedef struct k8_r16_act {
    int8_t qs[KQ_QK];
    int32_t off;
    float d;
} k8_r16_act;

size_t k8_r16_act_row_bytes(int64_t n);

/* An activation row of n values into records (the selected Q8_0 quantizer: the
 * same bytes on every implementation). */
void k8_r16_convert(const float *src, void *dst, int64_t n);

/* 16 GGUF rows (row_bytes apart, nb blocks each) into one group at `group`, which
 * must not overlap them; and row r of a group back into GGUF blocks. */
void k8_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group);
void k8_r16_unpack_row(const void *group, int64_t nb, int r, void *row);

/* The operations on repacked matrices; its avx512, avx_vnni and avx2 members from
 * these (empty where not compiled). */
const kq_type_ops *kq_ops_q8_0_r16(void);
kq_impl kq_q8_0_r16_avx512(void);
kq_impl kq_q8_0_r16_avx_vnni(void);
kq_impl kq_q8_0_r16_avx2(void);

#endif
