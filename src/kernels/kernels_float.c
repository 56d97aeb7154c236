/* Float weight types: F32, F16 and BF16. Scalar reference dequantizers,
 * quantizers (round to nearest even) and dot products. As in llama.cpp, F16
 * weights meet activations converted to F16, BF16 weights activations converted to
 * BF16 (what lets AVX512_BF16's vdpbf16ps multiply them), F32 weights F32
 * activations. Sums are kept in double here: this is the accuracy yardstick the
 * AVX2 and AVX-512 versions are compared against. */
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"

static void dequant_f32(const void *src, float *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void quant_f32(const float *src, void *dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void dot_f32(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const float *w = w_row, *x = x_row;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(w[i] * x[i]);
    *out = (float)sum;
}

static void dequant_f16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = el_fp16_to_f32(h[i]);
}

static void quant_f16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = el_f32_to_fp16(src[i]);
}

static void dot_f16(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const uint16_t *w = w_row, *x = x_row;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(el_fp16_to_f32(w[i]) * el_fp16_to_f32(x[i]));
    *out = (float)sum;
}

static void dequant_bf16(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    for (int64_t i = 0; i < n; i++)
        dst[i] = el_bf16_to_f32(h[i]);
}

static void quant_bf16(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    for (int64_t i = 0; i < n; i++)
        h[i] = el_f32_to_bf16(src[i]);
}

static void dot_bf16(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const uint16_t *w = w_row, *x = x_row;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(el_bf16_to_f32(w[i]) * el_bf16_to_f32(x[i]));
    *out = (float)sum;
}

static kq_type_ops float_ops[] = {
    {GGUF_TYPE_F32, GGUF_TYPE_F32, quant_f32, {dequant_f32, dot_f32, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_F16, GGUF_TYPE_F16, quant_f16, {dequant_f16, dot_f16, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_BF16, GGUF_TYPE_BF16, quant_bf16, {dequant_bf16, dot_bf16, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
};

static pthread_once_t float_once = PTHREAD_ONCE_INIT;

static void float_fill_simd(void)
{
    for (size_t i = 0; i < sizeof float_ops / sizeof float_ops[0]; i++) {
        float_ops[i].avx2 = kq_float_avx2(float_ops[i].type);
        float_ops[i].avx512 = kq_float_avx512(float_ops[i].type);
    }
}

const kq_type_ops *kq_ops_float(uint32_t type)
{
    pthread_once(&float_once, float_fill_simd);
    for (size_t i = 0; i < sizeof float_ops / sizeof float_ops[0]; i++)
        if (float_ops[i].type == type)
            return &float_ops[i];
    return NULL;
}
