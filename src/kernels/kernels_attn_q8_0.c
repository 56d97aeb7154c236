/* Attention over a Q8_0 KV cache, in the order of ggml's CPU flash attention for
 * a quantized cache (ggml-cpu ops.cpp, flash_attn_ext with K and V in Q8_0): the
 * query is quantized to K's dot-product partner, Q8_0; each score is the block
 * dot product, an integer sum per block times the product of the two half
 * scales; each value row is widened to float and added in float (not rounded to
 * half as for an F16 cache); the softmax streams position by position. */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

enum { QK8_0 = 32, BLOCK_BYTES = 2 + QK8_0 };

size_t kernels_q8_0_row_bytes(int n)
{
    assert(n > 0 && n % QK8_0 == 0);
    return (size_t)(n / QK8_0) * BLOCK_BYTES;
}

static size_t pad64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

size_t kernels_attn_q8_0_scratch_size(int dk, int dv)
{
    return pad64(kernels_q8_0_row_bytes(dk)) + 2 * pad64((size_t)dv * sizeof(float));
}

static float block_scale(const uint8_t *block)
{
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return el_fp16_to_f32(h);
}

/* ggml's vec_dot_q8_0_q8_0: per block the exact integer sum, scaled by the
 * product of the two scales, summed in float. */
static float dot_q8_0(const uint8_t *a, const uint8_t *b, int n)
{
    float sum = 0.0f;
    for (int i = 0; i < n / QK8_0; i++, a += BLOCK_BYTES, b += BLOCK_BYTES) {
        const int8_t *qa = (const int8_t *)(a + 2), *qb = (const int8_t *)(b + 2);
        int32_t isum = 0;
        for (int j = 0; j < QK8_0; j++)
            isum += (int32_t)qa[j] * (int32_t)qb[j];
        sum += (float)isum * (block_scale(a) * block_scale(b));
    }
    return sum;
}

static void widen_q8_0(const uint8_t *src, float *dst, int n)
{
    for (int i = 0; i < n / QK8_0; i++, src += BLOCK_BYTES) {
        float d = block_scale(src);
        const int8_t *q = (const int8_t *)(src + 2);
        for (int j = 0; j < QK8_0; j++)
            dst[i * QK8_0 + j] = (float)q[j] * d;
    }
}

static float score_of(const kernels_attn_head_q8_0 *hd, const uint8_t *q8, int p)
{
    const uint8_t *k = (const uint8_t *)hd->k + (size_t)p * kernels_q8_0_row_bytes(hd->dk);
    float s = dot_q8_0(k, q8, hd->dk) * hd->kq_scale;
    return hd->softcap > 0.0f ? hd->softcap * tanhf(s / hd->softcap) : s;
}

static void attend_row(const kernels_attn_head_q8_0 *hd, const kernels_attn_row *row, uint8_t *q8, float *acc,
                       float *v)
{
    int dv = hd->dv;
    size_t v_bytes = kernels_q8_0_row_bytes(dv);
    int rc = kernels_quantize_row(GGUF_TYPE_Q8_0, row->q, q8, hd->dk);
    assert(rc == 0);
    (void)rc;
    memset(acc, 0, (size_t)dv * sizeof *acc);
    float max = -INFINITY, sum = 0.0f;
    for (int p = row->first; p <= row->last; p++) {
        float s = score_of(hd, q8, p), rescale = 1.0f, w = 1.0f;
        if (s > max) { /* a new maximum: what was summed shrinks by e^(old - new) */
            rescale = expf(max - s);
            for (int c = 0; c < dv; c++)
                acc[c] *= rescale;
            max = s;
        } else {
            w = expf(s - max);
        }
        widen_q8_0((const uint8_t *)hd->v + (size_t)p * v_bytes, v, dv);
        for (int c = 0; c < dv; c++)
            acc[c] += w * v[c];
        sum = sum * rescale + w;
    }
    float inv = 1.0f / sum;
    for (int c = 0; c < dv; c++)
        row->out[c] = acc[c] * inv;
}

void kernels_attn_q8_0(const kernels_attn_head_q8_0 *hd, const kernels_attn_row *rows, int n_rows, void *scratch)
{
    assert(n_rows >= 1 && n_rows <= KERNELS_ATTN_MAX_ROWS);
    assert(hd->dk % QK8_0 == 0 && hd->dv % QK8_0 == 0);
    uint8_t *q8 = scratch;
    float *acc = (float *)(q8 + pad64(kernels_q8_0_row_bytes(hd->dk)));
    float *v = acc + pad64((size_t)hd->dv * sizeof(float)) / sizeof(float);
    for (int r = 0; r < n_rows; r++) {
        assert(rows[r].first >= 0 && rows[r].first <= rows[r].last);
        attend_row(hd, &rows[r], q8, acc, v);
    }
}
