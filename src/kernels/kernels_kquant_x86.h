/* Inside src/kernels only: the branch-free K-quant scale unpacking that the AVX2,
 * AVX-VNNI and AVX-512 K-quant files share (SSE2 alone, so any x86-64 file may
 * include it). */
#ifndef ELLIOTT_KERNELS_KQUANT_X86_H
#define ELLIOTT_KERNELS_KQUANT_X86_H

#include <emmintrin.h>
#include <stdint.h>
#include <string.h>

/* A Q4_K/Q5_K block's 12 packed bytes -> scales 0..7 in bytes 0..7, mins 0..7 in
 * bytes 8..15 (the branch-free form of kq_scale_min_k4). */
static inline __m128i kq_k4_scales_mins(const uint8_t packed[12])
{
    uint32_t u[3];
    memcpy(u, packed, sizeof u);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, low2 = 0x03030303;
    const uint32_t scales_lo = u[0] & low6;
    const uint32_t scales_hi = (u[2] & low4) | (((u[0] >> 6) & low2) << 4);
    const uint32_t mins_lo = u[1] & low6;
    const uint32_t mins_hi = ((u[2] >> 4) & low4) | (((u[1] >> 6) & low2) << 4);
    return _mm_set_epi32((int)mins_hi, (int)mins_lo, (int)scales_hi, (int)scales_lo);
}

/* The 16 scales of a Q3_K block as signed bytes (-32..31): low nibbles from bytes
 * 0..7, high 2-bit fields from bytes 8..11 (the branch-free kq_q3_K_scales). */
static inline __m128i kq_q3_K_scales_i8(const uint8_t packed[12])
{
    uint32_t u[3];
    memcpy(u, packed, sizeof u);
    const uint32_t low4 = 0x0f0f0f0f, low2 = 0x03030303;
    const uint32_t s0 = (u[0] & low4) | ((u[2] & low2) << 4);
    const uint32_t s1 = (u[1] & low4) | (((u[2] >> 2) & low2) << 4);
    const uint32_t s2 = ((u[0] >> 4) & low4) | (((u[2] >> 4) & low2) << 4);
    const uint32_t s3 = ((u[1] >> 4) & low4) | (((u[2] >> 6) & low2) << 4);
    return _mm_sub_epi8(_mm_set_epi32((int)s3, (int)s2, (int)s1, (int)s0), _mm_set1_epi8(32));
}

#endif
