/* AVX2 versions of the 32-value block types (placeholder: scalar only). */
#include "kernels/kernels_internal.h"

int kq_avx2_compiled(void)
{
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
    return 1;
#else
    return 0;
#endif
}

void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_0(src, dst, n);
}

void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n)
{
    kq_quantize_q8_1(src, dst, n);
}

kq_impl kq_legacy_avx2(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}
