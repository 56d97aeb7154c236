/* Attention over a Q8_0 KV cache, in the order of ggml's CPU flash attention for
 * a quantized cache (ggml-cpu ops.cpp, flash_attn_ext with K and V in Q8_0): the
 * query is quantized to K's dot-product partner, Q8_0; each score is the block
 * dot product, an integer sum per block times the product of the two half
 * scales; each value row is widened to float and added in float (not rounded to
 * half as for an F16 cache); the softmax streams position by position.
 *
 * The driver is the F16 one's (kernels_attn.c): positions in blocks, each block's
 * keys prepared and values widened once for every row of the call (the query
 * heads sharing the KV head, times a few tokens), then each row's scores, the
 * shared softmax bookkeeping and the values. This file holds it and the scalar
 * steps, the reference the SIMD ones are tested against. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "base/invariant.h"
#include "base/fp16.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "kernels/kernels_attn_internal.h"

enum { QK8_0 = 32, BLOCK_BYTES = 2 + QK8_0 };

size_t kernels_q8_0_row_bytes(int n)
{
    EL_ASSERT(n > 0 && n % QK8_0 == 0);
    return (size_t)(n / QK8_0) * BLOCK_BYTES;
}

/* ---- scalar steps: the prepared query and keys are the Q8_0 rows themselves ---- */

static float block_scale(const uint8_t *block)
{
    uint16_t h;
    memcpy(&h, block, sizeof h);
    return el_fp16_to_f32(h);
}

static void prepare_query_scalar(const uint8_t *q8, int dk, void *dst)
{
    memcpy(dst, q8, kernels_q8_0_row_bytes(dk));
}

static void prepare_keys_scalar(const uint8_t *k, int n, int dk, void *dst)
{
    size_t row = kernels_q8_0_row_bytes(dk);
    for (int i = 0; i < n; i++)
        memcpy((uint8_t *)dst + (size_t)i * ka_q8_key_bytes(dk), k + (size_t)i * row, row);
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

static void scores_scalar(const void *q, const void *keys, int i0, int n, int dk, float *s)
{
    for (int i = 0; i < n; i++)
        s[i] = dot_q8_0((const uint8_t *)keys + (size_t)(i0 + i) * ka_q8_key_bytes(dk), q, dk);
}

static void widen_scalar(const uint8_t *v, int n, int dv, float *dst, size_t dst_stride)
{
    size_t row = kernels_q8_0_row_bytes(dv);
    for (int r = 0; r < n; r++) {
        const uint8_t *src = v + (size_t)r * row;
        float *d = dst + (size_t)r * dst_stride;
        for (int i = 0; i < dv / QK8_0; i++, src += BLOCK_BYTES) {
            float scale = block_scale(src);
            const int8_t *qs = (const int8_t *)(src + 2);
            for (int j = 0; j < QK8_0; j++)
                d[i * QK8_0 + j] = (float)qs[j] * scale;
        }
    }
}

static void accumulate_scalar(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale,
                              int n, int dv)
{
    for (int i = 0; i < n; i++) {
        const float *vi = v + (size_t)i * v_stride;
        if (rescale && rescale[i] != 1.0f)
            for (int c = 0; c < dv; c++)
                acc[c] *= rescale[i];
        for (int c = 0; c < dv; c++)
            acc[c] += w[i] * vi[c];
    }
}

static const ka_q8_ops scalar_ops = {prepare_query_scalar, prepare_keys_scalar, scores_scalar, widen_scalar,
                                     accumulate_scalar};

const ka_q8_ops *ka_q8_ops_scalar(void)
{
    return &scalar_ops;
}

/* The widest implementation the chosen instruction set runs, with the same
 * set's e^x. */
static void pick_ops(const ka_q8_ops **q8, const ka_ops **f)
{
    enum kernels_isa isa = kernels_isa();
    *q8 = NULL;
    *f = NULL;
    if (isa >= KERNELS_ISA_AVX512 && (*q8 = ka_q8_ops_avx512()))
        *f = ka_ops_avx512();
    if (!*q8 && isa >= KERNELS_ISA_AVX2 && (*q8 = ka_q8_ops_avx2()))
        *f = ka_ops_avx2();
    if (!*q8 || !*f) {
        *q8 = ka_q8_ops_scalar();
        *f = ka_ops_scalar();
    }
}

/* ---- the driver ---------------------------------------------------------------------- */

typedef struct q8_scratch {
    uint8_t *q8;    /* one query quantized to Q8_0 */
    uint8_t *query; /* [n_rows] prepared queries, ka_q8_query_bytes(dk) each */
    uint8_t *keys;  /* [KA_BLOCK] the block's prepared keys */
    float *acc;     /* [n_rows][dvp] running sums */
    float *v;       /* [KA_BLOCK][dvp] the block's values */
    float *s;       /* [KA_BLOCK] one row's scores in the block */
    float *e;       /* [n_rows][2 * KA_BLOCK] weights, then rescale factors */
    float *max, *sum; /* [n_rows] */
} q8_scratch;

static size_t scratch_layout(int n_rows, int dk, int dv, q8_scratch *out, uint8_t *base)
{
    size_t dvp = ka_pad16(dv), rows = ka_pad16(n_rows);
    size_t sizes[] = {kernels_q8_0_row_bytes(dk),
                      (size_t)n_rows * ka_q8_query_bytes(dk),
                      KA_BLOCK * ka_q8_key_bytes(dk),
                      (size_t)n_rows * dvp * sizeof(float),
                      KA_BLOCK * dvp * sizeof(float),
                      KA_BLOCK * sizeof(float),
                      (size_t)n_rows * 2 * KA_BLOCK * sizeof(float),
                      rows * sizeof(float),
                      rows * sizeof(float)};
    void *parts[sizeof sizes / sizeof sizes[0]];
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        parts[i] = base ? base + off : NULL;
        off += ka_q8_pad64((int)sizes[i]);
    }
    *out = (q8_scratch){parts[0], parts[1], parts[2], parts[3], parts[4], parts[5], parts[6], parts[7], parts[8]};
    return off;
}

size_t kernels_attn_q8_0_scratch_size(int n_rows, int dk, int dv)
{
    q8_scratch unused;
    return scratch_layout(n_rows, dk, dv, &unused, NULL);
}

void kernels_attn_q8_0(const kernels_attn_head_q8_0 *hd, const kernels_attn_row *rows, int n_rows, void *scratch)
{
    EL_ASSERT(n_rows >= 1 && n_rows <= KERNELS_ATTN_MAX_ROWS);
    EL_ASSERT(hd->dk % QK8_0 == 0 && hd->dv % QK8_0 == 0);
    const ka_q8_ops *ops;
    const ka_ops *fops;
    pick_ops(&ops, &fops);
    int dk = hd->dk, dv = hd->dv;
    size_t dvp = ka_pad16(dv), q_bytes = ka_q8_query_bytes(dk);
    size_t k_row = kernels_q8_0_row_bytes(dk), v_row = kernels_q8_0_row_bytes(dv);
    q8_scratch sc;
    scratch_layout(n_rows, dk, dv, &sc, scratch);
    int lo = INT_MAX, hi = -1;
    for (int r = 0; r < n_rows; r++) {
        EL_ASSERT(rows[r].first >= 0 && rows[r].first <= rows[r].last);
        int rc = kernels_quantize_row(GGUF_TYPE_Q8_0, rows[r].q, sc.q8, dk);
        EL_ASSERT(rc == 0);
        (void)rc;
        ops->prepare_query(sc.q8, dk, sc.query + (size_t)r * q_bytes);
        memset(sc.acc + (size_t)r * dvp, 0, dvp * sizeof(float));
        sc.max[r] = -INFINITY;
        sc.sum[r] = 0.0f;
        lo = rows[r].first < lo ? rows[r].first : lo;
        hi = rows[r].last > hi ? rows[r].last : hi;
    }
    for (int b0 = lo; b0 <= hi; b0 += KA_BLOCK) {
        int b1 = hi - b0 >= KA_BLOCK ? b0 + KA_BLOCK - 1 : hi;
        bool prepared = false;
        int n_block[KERNELS_ATTN_MAX_ROWS] = {0};
        bool rescaled_block[KERNELS_ATTN_MAX_ROWS] = {false};
        for (int r = 0; r < n_rows; r++) {
            int p0, p1;
            if (!ka_row_in_block(rows[r].first, rows[r].last, b0, b1, &p0, &p1))
                continue;
            if (!prepared) {
                ops->prepare_keys((const uint8_t *)hd->k + (size_t)b0 * k_row, b1 - b0 + 1, dk, sc.keys);
                ops->widen((const uint8_t *)hd->v + (size_t)b0 * v_row, b1 - b0 + 1, dv, sc.v, dvp);
                prepared = true;
            }
            int n = p1 - p0 + 1;
            float *e = sc.e + (size_t)r * 2 * KA_BLOCK;
            ops->scores(sc.query + (size_t)r * q_bytes, sc.keys, p0 - b0, n, dk, sc.s);
            bool rescaled = ka_block_weights(fops, hd->kq_scale, hd->softcap, sc.s, e, n, &sc.max[r]);
            ops->accumulate(sc.acc + (size_t)r * dvp, sc.v + (size_t)(p0 - b0) * dvp, dvp, e, rescaled ? e + n : NULL,
                            n, dv);
            n_block[r] = n;
            rescaled_block[r] = rescaled;
        }
        ka_add_weights(sc.sum, sc.e, n_block, rescaled_block, n_rows);
    }
    ka_write_outputs(rows, n_rows, sc.acc, dvp, sc.sum, dv);
}
