/* Inside the kernels layer only: ggml's block layouts for the 32-value block
 * types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the Q8_1 activation partner, shared
 * by the scalar and AVX2 files of that family. Half-precision fields are raw
 * IEEE binary16 bits. */
#ifndef ELLIOTT_KERNELS_LEGACY_H
#define ELLIOTT_KERNELS_LEGACY_H

#include <stdint.h>

#define KQ_QK 32 /* values per block */

typedef struct kq_block_q4_0 {
    uint16_t d;
    uint8_t qs[KQ_QK / 2]; /* value j in the low nibble of qs[j], j + 16 in the high one */
} kq_block_q4_0;

typedef struct kq_block_q4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[KQ_QK / 2];
} kq_block_q4_1;

typedef struct kq_block_q5_0 {
    uint16_t d;
    uint8_t qh[4]; /* fifth bits: value j in bit j (little-endian 32-bit word) */
    uint8_t qs[KQ_QK / 2];
} kq_block_q5_0;

typedef struct kq_block_q5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[KQ_QK / 2];
} kq_block_q5_1;

typedef struct kq_block_q8_0 {
    uint16_t d;
    int8_t qs[KQ_QK];
} kq_block_q8_0;

/* Activation partner of Q4_1 and Q5_1: s = d * sum(qs), both rounded to half. */
typedef struct kq_block_q8_1 {
    uint16_t d;
    uint16_t s;
    int8_t qs[KQ_QK];
} kq_block_q8_1;

_Static_assert(sizeof(kq_block_q4_0) == 18, "block_q4_0 is 18 bytes");
_Static_assert(sizeof(kq_block_q4_1) == 20, "block_q4_1 is 20 bytes");
_Static_assert(sizeof(kq_block_q5_0) == 22, "block_q5_0 is 22 bytes");
_Static_assert(sizeof(kq_block_q5_1) == 24, "block_q5_1 is 24 bytes");
_Static_assert(sizeof(kq_block_q8_0) == 34, "block_q8_0 is 34 bytes");
_Static_assert(sizeof(kq_block_q8_1) == 36, "block_q8_1 is 36 bytes");

#endif
