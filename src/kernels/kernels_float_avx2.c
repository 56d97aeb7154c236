/* AVX2/FMA/F16C versions of the float weight types (placeholder: scalar only). */
#include "kernels/kernels_internal.h"

kq_impl kq_float_avx2(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}
