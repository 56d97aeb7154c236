/* Inside the kernels layer only: Q4_K repacked into groups of 16 interleaved rows
 * (layout in kernels_q4_k_r16.c), shared by its scalar, AVX2, AVX-VNNI and AVX-512 files. */
#ifndef ELLIOTT_KERNELS_Q4_K_R16_H
#define ELLIOTT_KERNELS_Q4_K_R16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"

enum {
    KK_R16_ROWS = 16,
    KK_R16_SUBS = KQ_QK_K / 32, /* 32-value sub-blocks of a super-block, each with a scale and a min */
    /* group block: d[16], dmin[16] (halves), the 12 packed scale bytes of each row as
     * three words per row (word k of all 16 rows side by side), then the nibbles */
    KK_R16_D = 0,
    KK_R16_DMIN = 2 * KK_R16_ROWS,
    KK_R16_SCALES = 4 * KK_R16_ROWS,
    KK_R16_QS = KK_R16_SCALES + 12 * KK_R16_ROWS,
    KK_R16_GROUP_BLOCK_BYTES = KK_R16_QS + KK_R16_ROWS * KQ_QK_K / 2
};

/* Where a group block keeps dmin, the scale words and the nibbles. Group blocks are
 * whole cache lines (2304 bytes), so the order above starts the scale words and the
 * nibbles on lines when the group does; a group 32 bytes into a line (GGUF aligns
 * tensors to 32 bytes only) puts dmin last instead: d, scale words, nibbles, dmin.
 * Every block of a group has the group's place in its line: a repacked matrix must not
 * move (it does not: kernels_repack_matrix repacks it where it lies). Q5_K's group
 * blocks (kernels_q5_k_r16.h) are laid out the same way, with its fifth bits at qs
 * and the nibbles after them. */
typedef struct kk_r16_places {
    size_t dmin, scales, qs;
} kk_r16_places;

static inline kk_r16_places kk_r16_places_of(const void *group_block, size_t group_block_bytes)
{
    if (((uintptr_t)group_block & 63) == 0)
        return (kk_r16_places){KK_R16_DMIN, KK_R16_SCALES, KK_R16_QS};
    return (kk_r16_places){group_block_bytes - 2 * KK_R16_ROWS, 2 * KK_R16_ROWS, 2 * KK_R16_ROWS + 12 * KK_R16_ROWS};
}

/* One super-block of an activation row: the Q8_K values in their natural order, and
 * per 32-value sub-block the sum of its values times d (the mins' term). */
typedef struct kk_r16_act {
    int8_t qs[KQ_QK_K];
    float sums_d[KK_R16_SUBS];
    float d;
    uint8_t pad[28];
} kk_r16_act;

size_t kk_r16_act_row_bytes(int64_t n);

/* An activation row of n values into records (the selected Q8_K quantizer: the
 * same bytes on every implementation). */
void kk_r16_convert(const float *src, void *dst, int64_t n);

/* 16 GGUF rows (row_bytes apart, nb super-blocks each) into one group at `group`,
 * which must not overlap them; and row r of a group back into GGUF blocks. */
void kk_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group);
void kk_r16_unpack_row(const void *group, int64_t nb, int r, void *row);

/* The operations on repacked matrices; its SIMD members from kq_q4_k_r16_avx512,
 * kq_q4_k_r16_avx_vnni and kq_q4_k_r16_avx2 (each empty where not compiled). */
const kq_type_ops *kq_ops_q4_k_r16(void);
kq_impl kq_q4_k_r16_avx512(void);
kq_impl kq_q4_k_r16_avx_vnni(void);
kq_impl kq_q4_k_r16_avx2(void);

#endif
