/* AVX-VNNI (256-bit vpdpbusd) members of the 32-value block types: the tile and dot
 * kernels of kernels_legacy_tiles.h with one vpdpbusd where AVX2 needs maddubs and
 * madd. Dequantization, the activation quantizers and Q4_0 fall back to AVX2. */
#include "kernels/kernels_internal.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_legacy.h"

#define KQ_DOT_U8_I8(u, s) _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), (u), (s))
#include "kernels/kernels_legacy_tiles.h"

int kq_avx_vnni_compiled(void)
{
    return 1;
}

kq_impl kq_legacy_avx_vnni(uint32_t type)
{
    return kq_legacy_tiles(type);
}

#else /* no AVX-VNNI code on this target */

int kq_avx_vnni_compiled(void)
{
    return 0;
}

kq_impl kq_legacy_avx_vnni(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
