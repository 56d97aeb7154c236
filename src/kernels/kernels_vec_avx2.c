/* AVX2 vector operations (placeholder: scalar only). */
#include "kernels/kernels_internal.h"

const kv_ops *kv_ops_avx2(void)
{
    return kv_ops_scalar();
}
