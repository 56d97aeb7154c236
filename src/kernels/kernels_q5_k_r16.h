/* Inside the kernels layer only: Q5_K repacked into groups of 16 interleaved rows
 * (layout in kernels_q5_k_r16.c), shared by its scalar, AVX2, AVX-VNNI and AVX-512
 * files. Its scales, mins and activation records are Q4_K's (kernels_q4_k_r16.h). */
#ifndef ELLIOTT_KERNELS_Q5_K_R16_H
#define ELLIOTT_KERNELS_Q5_K_R16_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"
#include "kernels/kernels_q4_k_r16.h"

enum {
    K5_R16_ROWS = KK_R16_ROWS,
    /* group block: Q4_K's d, dmin and scale words, the fifth bits, then the nibbles */
    K5_R16_QH = KK_R16_QS,
    K5_R16_QH_BYTES = K5_R16_ROWS * KQ_QK_K / 8,
    K5_R16_QS = K5_R16_QH + K5_R16_QH_BYTES,
    K5_R16_GROUP_BLOCK_BYTES = K5_R16_QS + K5_R16_ROWS * KQ_QK_K / 2
};

/* Where a group block keeps dmin, the scale words and the fifth bits (at .qs, the
 * nibbles K5_R16_QH_BYTES after them): the order above in a group that starts a cache
 * line, Q4_K's other order (dmin last) in one 32 bytes into a line. */
static inline kk_r16_places k5_r16_places_of(const void *group_block)
{
    return kk_r16_places_of(group_block, K5_R16_GROUP_BLOCK_BYTES);
}

/* 16 GGUF rows (row_bytes apart, nb super-blocks each) into one group at `group`,
 * which must not overlap them; and row r of a group back into GGUF blocks. */
void k5_r16_pack_group(const void *rows, size_t row_bytes, int64_t nb, void *group);
void k5_r16_unpack_row(const void *group, int64_t nb, int r, void *row);

/* The operations on repacked matrices; its SIMD members from kq_q5_k_r16_avx512,
 * kq_q5_k_r16_avx_vnni and kq_q5_k_r16_avx2 (each empty where not compiled). */
const kq_type_ops *kq_ops_q5_k_r16(void);
kq_impl kq_q5_k_r16_avx512(void);
kq_impl kq_q5_k_r16_avx_vnni(void);
kq_impl kq_q5_k_r16_avx2(void);

#endif
