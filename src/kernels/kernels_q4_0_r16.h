/* Inside the kernels layer only: Q4_0 repacked into groups of 16 interleaved rows
 * (layout in kernels_q4_0_r16.c), shared by its scalar, AVX2, AVX-VNNI and AVX-512 files. */
#ifndef ELLIOTT_KERNELS_Q4_0_R16_H
#define ELLIOTT_KERNELS_Q4_0_R16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_legacy.h"

enum {
    KQ_R16_ROWS = 16,
    KQ_R16_SCALE_BYTES = 2 * KQ_R16_ROWS,
    KQ_R16_QS_BYTES = KQ_R16_ROWS * KQ_QK / 2,
    KQ_R16_GROUP_BLOCK_BYTES = KQ_R16_SCALE_BYTES + KQ_R16_QS_BYTES
};

typedef struct kq_r16_act {
    int8_t qs[KQ_QK];
    int32_t off;
    float d;
} kq_r16_act;

size_t kq_r16_act_row_bytes(int64_t n);

/* An activation row of n values into records (the selected Q8_0 quantizer: the
 * same bytes on every implementation). */
void kq_r16_convert(const float *src, void *dst, int64_t n);

/* 16 GGUF rows (row_bytes apart, nb blocks each) into one group at `group`, which
 * must not overlap them; and row r of a group back into GGUF blocks. */
void kq_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group);
void kq_r16_unpack_row(const void *group, int64_t nb, int r, void *row);

/* The operations on repacked matrices; its avx512, avx_vnni and avx2 members from
 * these (empty where not compiled). */
const kq_type_ops *kq_ops_q4_0_r16(void);
kq_impl kq_q4_0_r16_avx512(void);
kq_impl kq_q4_0_r16_avx_vnni(void);
kq_impl kq_q4_0_r16_avx2(void);

#endif
