/* Inside src/kernels only: ggml's K-quant super-block layouts (QK_K = 256 values
 * per block), the scale unpacking they share, and the AVX2 entry points that
 * kernels_kquant.c puts into its operation table. Half-precision fields are raw
 * IEEE binary16 bits; everything is little-endian, as in a GGUF file. */
#ifndef ELLIOTT_KERNELS_KQUANT_H
#define ELLIOTT_KERNELS_KQUANT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels_internal.h"

#define KQ_QK_K 256

/* Most tokens per AVX2 K-quant tile call: a weight block decoded once serves them all. */
#define KQ_TILE_COLS 8

/* 2 bits per value; scales: low nibble = scale, high nibble = min, per 16 values. */
typedef struct kq_block_q2_K {
    uint8_t scales[KQ_QK_K / 16];
    uint8_t qs[KQ_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} kq_block_q2_K;

/* 3 bits per value: 2 low bits in qs, the high bit in hmask; sixteen 6-bit scales
 * (offset by 32) packed into 12 bytes. */
typedef struct kq_block_q3_K {
    uint8_t hmask[KQ_QK_K / 8];
    uint8_t qs[KQ_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} kq_block_q3_K;

/* 4 bits per value; eight 6-bit scales and mins per 32 values packed into 12 bytes. */
typedef struct kq_block_q4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[KQ_QK_K / 2];
} kq_block_q4_K;

/* As Q4_K plus a fifth bit per value in qh. */
typedef struct kq_block_q5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[KQ_QK_K / 8];
    uint8_t qs[KQ_QK_K / 2];
} kq_block_q5_K;

/* 6 bits per value (4 low in ql, 2 high in qh), signed 8-bit scale per 16 values. */
typedef struct kq_block_q6_K {
    uint8_t ql[KQ_QK_K / 2];
    uint8_t qh[KQ_QK_K / 4];
    int8_t scales[KQ_QK_K / 16];
    uint16_t d;
} kq_block_q6_K;

/* The activation partner of every K-quant: float scale, 8-bit values, and the
 * sums of each 16 values (so a weight type's min/offset term needs no pass over qs). */
typedef struct kq_block_q8_K {
    float d;
    int8_t qs[KQ_QK_K];
    int16_t bsums[KQ_QK_K / 16];
} kq_block_q8_K;

_Static_assert(sizeof(kq_block_q2_K) == 84, "block_q2_K layout");
_Static_assert(sizeof(kq_block_q3_K) == 110, "block_q3_K layout");
_Static_assert(sizeof(kq_block_q4_K) == 144, "block_q4_K layout");
_Static_assert(sizeof(kq_block_q5_K) == 176, "block_q5_K layout");
_Static_assert(sizeof(kq_block_q6_K) == 210, "block_q6_K layout");
_Static_assert(sizeof(kq_block_q8_K) == 292, "block_q8_K layout");

/* Scale and min j (0..7) of a Q4_K/Q5_K block's 12 packed bytes (ggml's get_scale_min_k4). */
static inline void kq_scale_min_k4(int j, const uint8_t *packed, uint8_t *scale, uint8_t *min)
{
    if (j < 4) {
        *scale = packed[j] & 63;
        *min = packed[j + 4] & 63;
    } else {
        *scale = (uint8_t)((packed[j + 4] & 0xF) | ((packed[j - 4] >> 6) << 4));
        *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
    }
}

/* The sixteen signed scales (-32..31) of a Q3_K block. */
static inline void kq_q3_K_scales(const uint8_t packed[12], int8_t out[16])
{
    for (int j = 0; j < 16; j++) {
        int low = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((low | (high << 4)) - 32);
    }
}

#if defined(__x86_64__)
/* kernels_kquant_avx2.c: call only when the CPU has AVX2, FMA and F16C. */
void kq_dequant_q2_K_avx2(const void *src, float *dst, int64_t n);
void kq_dequant_q3_K_avx2(const void *src, float *dst, int64_t n);
void kq_dequant_q4_K_avx2(const void *src, float *dst, int64_t n);
void kq_dequant_q5_K_avx2(const void *src, float *dst, int64_t n);
void kq_dequant_q6_K_avx2(const void *src, float *dst, int64_t n);
void kq_dot_q2_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out);
void kq_dot_q3_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out);
void kq_dot_q4_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out);
void kq_dot_q5_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out);
void kq_dot_q6_K_avx2(int64_t n, const void *w_row, const void *x_row, float *out);
/* kq_dot_tile_fn (kernels_internal.h): n_rows, n_cols in 1..4. */
void kq_dot_tile_q4_K_avx2(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,
                           size_t x_stride, int n_cols, float *y, int64_t y_stride);
void kq_dot_tile_q5_K_avx2(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,
                           size_t x_stride, int n_cols, float *y, int64_t y_stride);
void kq_dot_tile_q6_K_avx2(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,
                           size_t x_stride, int n_cols, float *y, int64_t y_stride);
#endif

/* The Q8_K activations as the VNNI K-quant kernels read them ("t8"): the same
 * values and scale as kq_quantize_q8_k gives, with qs reordered so that
 * qs[64g + 8s + t] holds value 32s + 8g + t (g < 4, s < 8, t < 8): 64-byte vector
 * g has bytes 8g..8g+7 of every 32-value group, so a vpdpbusd lane always meets
 * the same group. The sums of each 16 values come premultiplied by d (a weight
 * type's min/offset term is then one multiply-add), and the block is padded to
 * whole cache lines so that every vector load is aligned. */
typedef struct kq_block_q8_K_t8 {
    int8_t qs[KQ_QK_K];
    float bsums_d[KQ_QK_K / 16];
    float d;
    uint8_t pad[60];
} kq_block_q8_K_t8;

_Static_assert(sizeof(kq_block_q8_K_t8) == 384, "block_q8_K_t8 layout");

/* kernels_kquant_avx2.c; call only when the CPU has AVX2 (and FMA, F16C). */
void kq_quantize_q8_k_t8_avx2(const float *src, void *dst, int64_t n);
size_t kq_q8_k_t8_row_bytes(int64_t n);

/* The AVX-512 VNNI (kernels_kquant_avx512.c: Q2_K..Q6_K) and AVX-VNNI
 * (kernels_kquant_avxvnni.c: Q2_K..Q5_K) dot and tile kernels of a K-quant type,
 * reading t8 activations; every member is NULL for other types and where the file's
 * ISA is not compiled in (the dispatcher then falls back to the narrower ISA). */
kq_impl kq_kquant_avx512(uint32_t type);
kq_impl kq_kquant_avx_vnni(uint32_t type);

#endif
