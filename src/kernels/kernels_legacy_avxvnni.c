/* AVX-VNNI (256-bit vpdpbusd) members of the 32-value block types. */
#include "kernels/kernels_internal.h"

#if defined(__AVXVNNI__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

int kq_avx_vnni_compiled(void)
{
    return 1;
}

kq_impl kq_legacy_avx_vnni(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
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
