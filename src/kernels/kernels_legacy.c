/* The 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): scalar reference
 * dequantizers, quantizers that round exactly as ggml's reference quantizers
 * (and the gguf Python package) do, and integer dot products against the
 * activation partners Q8_0 / Q8_1 as llama.cpp's CPU backend computes them.
 * Also the activation quantizers (Q8_0, Q8_1, Q8_K) shared by every family. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_legacy.h"

/* ---- helpers ------------------------------------------------------------------ */

static void min_max(const float *x, int n, float *min_out, float *max_out)
{
    float min = x[0], max = x[0];
    for (int j = 1; j < n; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    *min_out = min;
    *max_out = max;
}

/* ggml writes a symmetric 4/5-bit value as trunc(x * id + offset + 0.5); the
 * gguf package evaluates that in double, which is what the exact product of two
 * floats plus the offset gives, so do the same. */
static int symmetric_level(float x, float id, double offset, int top)
{
    int q = (int)((double)x * (double)id + offset);
    return q > top ? top : q;
}

static int affine_level(float x, float min, float id, int top)
{
    int q = (int)((x - min) * id + 0.5f);
    return q > top ? top : q;
}

/* ---- Q4_0 --------------------------------------------------------------------- */

static void dequant_q4_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++, dst += KQ_QK) {
        float d = el_fp16_to_f32(b[i].d);
        for (int j = 0; j < KQ_QK / 2; j++) {
            dst[j] = (float)((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + KQ_QK / 2] = (float)((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void quant_q4_0(const float *src, void *dst, int64_t n)
{
    kq_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = kq_signed_absmax(src, KQ_QK) / -8.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = el_f32_to_fp16(d);
        for (int j = 0; j < KQ_QK / 2; j++) {
            int lo = symmetric_level(src[j], id, 8.5, 15);
            int hi = symmetric_level(src[j + KQ_QK / 2], id, 8.5, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void dot_q4_0_q8_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q4_0 *w = w_row;
    const kq_block_q8_0 *x = x_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < KQ_QK / 2; j++) {
            sumi += ((w[i].qs[j] & 0x0f) - 8) * x[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + KQ_QK / 2];
        }
        sum += (float)sumi * el_fp16_to_f32(w[i].d) * el_fp16_to_f32(x[i].d);
    }
    *out = sum;
}

/* ---- Q4_1 --------------------------------------------------------------------- */

static void dequant_q4_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++, dst += KQ_QK) {
        float d = el_fp16_to_f32(b[i].d), m = el_fp16_to_f32(b[i].m);
        for (int j = 0; j < KQ_QK / 2; j++) {
            dst[j] = (float)(b[i].qs[j] & 0x0f) * d + m;
            dst[j + KQ_QK / 2] = (float)(b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void quant_q4_1(const float *src, void *dst, int64_t n)
{
    kq_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float min, max;
        min_max(src, KQ_QK, &min, &max);
        float d = (max - min) / 15.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = el_f32_to_fp16(d);
        b[i].m = el_f32_to_fp16(min);
        for (int j = 0; j < KQ_QK / 2; j++) {
            int lo = affine_level(src[j], min, id, 15);
            int hi = affine_level(src[j + KQ_QK / 2], min, id, 15);
            b[i].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void dot_q4_1_q8_1(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q4_1 *w = w_row;
    const kq_block_q8_1 *x = x_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < KQ_QK / 2; j++) {
            sumi += (w[i].qs[j] & 0x0f) * x[i].qs[j];
            sumi += (w[i].qs[j] >> 4) * x[i].qs[j + KQ_QK / 2];
        }
        sum += el_fp16_to_f32(w[i].d) * el_fp16_to_f32(x[i].d) * (float)sumi +
               el_fp16_to_f32(w[i].m) * el_fp16_to_f32(x[i].s);
    }
    *out = sum;
}

/* ---- Q5_0 / Q5_1 -------------------------------------------------------------- */

static uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t qh[4], uint32_t bits)
{
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(bits >> (8 * k));
}

/* The 5-bit levels (0..31) of one block's 32 values. */
static void unpack_q5(const uint8_t qs[16], uint32_t qh, int levels[KQ_QK])
{
    for (int j = 0; j < KQ_QK / 2; j++) {
        levels[j] = (qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
        levels[j + KQ_QK / 2] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

static void pack_q5(const int levels[KQ_QK], uint8_t qs[16], uint8_t qh[4])
{
    uint32_t bits = 0;
    for (int j = 0; j < KQ_QK / 2; j++) {
        int lo = levels[j], hi = levels[j + KQ_QK / 2];
        qs[j] = (uint8_t)((lo & 0x0f) | ((hi & 0x0f) << 4));
        bits |= (uint32_t)((lo >> 4) & 1) << j;
        bits |= (uint32_t)((hi >> 4) & 1) << (j + 16);
    }
    store_qh(qh, bits);
}

static void dequant_q5_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_0 *b = src;
    int levels[KQ_QK];
    for (int64_t i = 0; i < n / KQ_QK; i++, dst += KQ_QK) {
        float d = el_fp16_to_f32(b[i].d);
        unpack_q5(b[i].qs, load_qh(b[i].qh), levels);
        for (int j = 0; j < KQ_QK; j++)
            dst[j] = (float)(levels[j] - 16) * d;
    }
}

static void quant_q5_0(const float *src, void *dst, int64_t n)
{
    kq_block_q5_0 *b = dst;
    int levels[KQ_QK];
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = kq_signed_absmax(src, KQ_QK) / -16.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = el_f32_to_fp16(d);
        for (int j = 0; j < KQ_QK; j++)
            levels[j] = symmetric_level(src[j], id, 16.5, 31);
        pack_q5(levels, b[i].qs, b[i].qh);
    }
}

static void dot_q5_0_q8_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q5_0 *w = w_row;
    const kq_block_q8_0 *x = x_row;
    int levels[KQ_QK];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        unpack_q5(w[i].qs, load_qh(w[i].qh), levels);
        int sumi = 0;
        for (int j = 0; j < KQ_QK; j++)
            sumi += (levels[j] - 16) * x[i].qs[j];
        sum += el_fp16_to_f32(w[i].d) * el_fp16_to_f32(x[i].d) * (float)sumi;
    }
    *out = sum;
}

static void dequant_q5_1(const void *src, float *dst, int64_t n)
{
    const kq_block_q5_1 *b = src;
    int levels[KQ_QK];
    for (int64_t i = 0; i < n / KQ_QK; i++, dst += KQ_QK) {
        float d = el_fp16_to_f32(b[i].d), m = el_fp16_to_f32(b[i].m);
        unpack_q5(b[i].qs, load_qh(b[i].qh), levels);
        for (int j = 0; j < KQ_QK; j++)
            dst[j] = (float)levels[j] * d + m;
    }
}

static void quant_q5_1(const float *src, void *dst, int64_t n)
{
    kq_block_q5_1 *b = dst;
    int levels[KQ_QK];
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float min, max;
        min_max(src, KQ_QK, &min, &max);
        float d = (max - min) / 31.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = el_f32_to_fp16(d);
        b[i].m = el_f32_to_fp16(min);
        for (int j = 0; j < KQ_QK; j++)
            levels[j] = affine_level(src[j], min, id, 31);
        pack_q5(levels, b[i].qs, b[i].qh);
    }
}

static void dot_q5_1_q8_1(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q5_1 *w = w_row;
    const kq_block_q8_1 *x = x_row;
    int levels[KQ_QK];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        unpack_q5(w[i].qs, load_qh(w[i].qh), levels);
        int sumi = 0;
        for (int j = 0; j < KQ_QK; j++)
            sumi += levels[j] * x[i].qs[j];
        sum += el_fp16_to_f32(w[i].d) * el_fp16_to_f32(x[i].d) * (float)sumi +
               el_fp16_to_f32(w[i].m) * el_fp16_to_f32(x[i].s);
    }
    *out = sum;
}

/* ---- Q8_0 --------------------------------------------------------------------- */

static void dequant_q8_0(const void *src, float *dst, int64_t n)
{
    const kq_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / KQ_QK; i++, dst += KQ_QK) {
        float d = el_fp16_to_f32(b[i].d);
        for (int j = 0; j < KQ_QK; j++)
            dst[j] = (float)b[i].qs[j] * d;
    }
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

void kq_quantize_q8_0(const float *src, void *dst, int64_t n)
{
    kq_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = absmax(src, KQ_QK) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = el_f32_to_fp16(d);
        for (int j = 0; j < KQ_QK; j++)
            b[i].qs[j] = (int8_t)roundf(src[j] * id);
    }
}

void kq_quantize_q8_1(const float *src, void *dst, int64_t n)
{
    kq_block_q8_1 *b = dst;
    for (int64_t i = 0; i < n / KQ_QK; i++, src += KQ_QK) {
        float d = absmax(src, KQ_QK) / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < KQ_QK; j++) {
            b[i].qs[j] = (int8_t)roundf(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].d = el_f32_to_fp16(d);
        b[i].s = el_f32_to_fp16((float)sum * d);
    }
}

static void dot_q8_0_q8_0(int64_t n, const void *w_row, const void *x_row, float *out)
{
    const kq_block_q8_0 *w = w_row;
    const kq_block_q8_0 *x = x_row;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / KQ_QK; i++) {
        int sumi = 0;
        for (int j = 0; j < KQ_QK; j++)
            sumi += w[i].qs[j] * x[i].qs[j];
        sum += (float)sumi * (el_fp16_to_f32(w[i].d) * el_fp16_to_f32(x[i].d));
    }
    *out = sum;
}

/* ---- Q8_K (activation partner of the K-quants) ------------------------------------ */

enum { QK_K = 256 };

/* Round to nearest, ties to even, through the float mantissa as ggml does. */
static int nearest_int(float v)
{
    float biased = v + 12582912.0f;
    int32_t bits;
    memcpy(&bits, &biased, sizeof bits);
    return (bits & 0x007fffff) - 0x00400000;
}

void kq_quantize_q8_k(const float *src, void *dst, int64_t n)
{
    /* float d; int8 qs[256]; int16 bsums[16] */
    uint8_t *out = dst;
    const size_t block_bytes = 4 + QK_K + 2 * (QK_K / 16);
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K, out += block_bytes) {
        int8_t *qs = (int8_t *)(out + 4);
        float max = kq_signed_absmax(src, QK_K);
        float d = 0.0f;
        if (max == 0.0f) {
            memset(qs, 0, QK_K);
        } else {
            float iscale = -127.0f / max;
            for (int j = 0; j < QK_K; j++) {
                int v = nearest_int(iscale * src[j]);
                qs[j] = (int8_t)(v > 127 ? 127 : v);
            }
            d = 1.0f / iscale;
        }
        memcpy(out, &d, sizeof d);
        for (int g = 0; g < QK_K / 16; g++) {
            int16_t sum = 0;
            for (int j = 0; j < 16; j++)
                sum = (int16_t)(sum + qs[g * 16 + j]);
            memcpy(out + 4 + QK_K + 2 * g, &sum, sizeof sum);
        }
    }
}

/* ---- table -------------------------------------------------------------------- */

static kq_type_ops legacy_ops[] = {
    {GGUF_TYPE_Q4_0, GGUF_TYPE_Q8_0, quant_q4_0, {dequant_q4_0, dot_q4_0_q8_0, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_Q4_1, GGUF_TYPE_Q8_1, quant_q4_1, {dequant_q4_1, dot_q4_1_q8_1, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_Q5_0, GGUF_TYPE_Q8_0, quant_q5_0, {dequant_q5_0, dot_q5_0_q8_0, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_Q5_1, GGUF_TYPE_Q8_1, quant_q5_1, {dequant_q5_1, dot_q5_1_q8_1, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
    {GGUF_TYPE_Q8_0, GGUF_TYPE_Q8_0, kq_quantize_q8_0, {dequant_q8_0, dot_q8_0_q8_0, NULL, NULL, NULL, 0}, {0}, {0}, {0}},
};

static pthread_once_t legacy_once = PTHREAD_ONCE_INIT;

static void legacy_fill_simd(void)
{
    for (size_t i = 0; i < sizeof legacy_ops / sizeof legacy_ops[0]; i++) {
        legacy_ops[i].avx2 = kq_legacy_avx2(legacy_ops[i].type);
        legacy_ops[i].avx_vnni = kq_legacy_avx_vnni(legacy_ops[i].type);
        legacy_ops[i].avx512 = kq_legacy_avx512(legacy_ops[i].type);
    }
}

const kq_type_ops *kq_ops_legacy(uint32_t type)
{
    pthread_once(&legacy_once, legacy_fill_simd);
    for (size_t i = 0; i < sizeof legacy_ops / sizeof legacy_ops[0]; i++)
        if (legacy_ops[i].type == type)
            return &legacy_ops[i];
    return NULL;
}
