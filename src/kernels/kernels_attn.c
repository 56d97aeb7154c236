/* Attention over an F16 KV cache: the driver shared by every instruction set,
 * and the scalar steps (the reference the others are tested against).
 *
 * Positions are taken in blocks: a block's keys and values are widened to float
 * once and serve every row of the call (the query heads that share the KV head,
 * times a few tokens), its scores come in one pass, then the streaming softmax's
 * bookkeeping, then the values. The bookkeeping keeps ggml's per-position order:
 * a new maximum rescales the running sum before that position's value is added,
 * and the sum is rounded to half after each step, so the results match
 * llama.cpp's flash attention for an F16 cache as closely as a position-by-position
 * loop did. */
#include <limits.h>
#include <math.h>
#include <string.h>

#include "base/invariant.h"
#include "base/fp16.h"
#include "kernels/kernels.h"
#include "kernels/kernels_attn_internal.h"

enum { BLOCK = KA_BLOCK };

/* ---- scalar steps ------------------------------------------------------------------ */

static float round_half(float x)
{
    return el_fp16_to_f32(el_f32_to_fp16(x));
}

static void widen_scalar(const uint16_t *src, size_t src_stride, int n, int width, float *dst, size_t dst_stride)
{
    size_t padded = ka_pad16(width);
    for (int i = 0; i < n; i++) {
        const uint16_t *s = src + (size_t)i * src_stride;
        float *d = dst + (size_t)i * dst_stride;
        for (int c = 0; c < width; c++)
            d[c] = el_fp16_to_f32(s[c]);
        for (size_t c = (size_t)width; c < padded; c++)
            d[c] = 0.0f;
    }
}

static void scores_scalar(const float *q, const float *k, size_t k_stride, int n, int dk, float *s)
{
    for (int i = 0; i < n; i++) {
        const float *ki = k + (size_t)i * k_stride;
        double sum = 0.0;
        for (int c = 0; c < dk; c++)
            sum += (double)(q[c] * ki[c]);
        s[i] = (float)sum;
    }
}

static void exp_scalar(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = expf(x[i]);
}

static void accumulate_scalar(float *acc, const float *v, size_t v_stride, const float *w, const float *rescale,
                              int n, int dv)
{
    for (int i = 0; i < n; i++) {
        const float *vi = v + (size_t)i * v_stride;
        if (rescale && rescale[i] != 1.0f)
            for (int c = 0; c < dv; c++)
                acc[c] = round_half(acc[c] * rescale[i]);
        for (int c = 0; c < dv; c++) {
            float product = w[i] * vi[c];
            acc[c] = round_half(acc[c] + product);
        }
    }
}

static const ka_ops scalar_ops = {widen_scalar, scores_scalar, exp_scalar, accumulate_scalar};

const ka_ops *ka_ops_scalar(void)
{
    return &scalar_ops;
}

static const ka_ops *attn_ops(void)
{
    enum kernels_isa isa = kernels_isa();
    const ka_ops *ops = NULL;
    if (isa >= KERNELS_ISA_AVX512)
        ops = ka_ops_avx512();
    if (!ops && isa >= KERNELS_ISA_AVX2)
        ops = ka_ops_avx2();
    return ops ? ops : ka_ops_scalar();
}

/* ---- the driver ---------------------------------------------------------------------- */

/* The scratch, in floats, every part a multiple of 16 (64 bytes). */
typedef struct attn_scratch {
    float *q;      /* [n_rows][dkp] the queries rounded to half, as the F16 dot product sees them */
    float *acc;    /* [n_rows][dvp] running sums, each value a half */
    float *k, *v;  /* [BLOCK][dkp], [BLOCK][dvp] the block's keys and values */
    float *s;      /* [BLOCK] one row's scores in the block */
    float *e;      /* [n_rows][2 * BLOCK] a row's weights in the block, then its rescale factors */
    float *max, *sum; /* [n_rows] */
} attn_scratch;

static size_t scratch_floats(int n_rows, int dk, int dv, attn_scratch *out, float *base)
{
    size_t dkp = ka_pad16(dk), dvp = ka_pad16(dv), rows = ka_pad16(n_rows);
    size_t sizes[] = {(size_t)n_rows * dkp, (size_t)n_rows * dvp, BLOCK * dkp, BLOCK * dvp, BLOCK, (size_t)n_rows * 2 * BLOCK,
                      rows, rows};
    float **parts[] = {&out->q, &out->acc, &out->k, &out->v, &out->s, &out->e, &out->max, &out->sum};
    size_t off = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (base)
            *parts[i] = base + off;
        off += ka_pad16((int)sizes[i]);
    }
    return off;
}

size_t kernels_attn_scratch_size(int n_rows, int dk, int dv)
{
    attn_scratch unused;
    return scratch_floats(n_rows, dk, dv, &unused, NULL) * sizeof(float);
}

static void start_row(const kernels_attn_row *row, int dk, int dv, float *q, float *acc)
{
    for (int c = 0; c < dk; c++)
        q[c] = el_fp16_to_f32(el_f32_to_fp16(row->q[c]));
    memset(q + dk, 0, (ka_pad16(dk) - (size_t)dk) * sizeof *q);
    memset(acc, 0, ka_pad16(dv) * sizeof *acc);
}

/* The largest of n values; four running maxima so that the comparisons do not
 * wait on each other. */
static float block_max(const float *s, int n)
{
    float m[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int i = 0;
    for (; i + 4 <= n; i += 4)
        for (int j = 0; j < 4; j++)
            m[j] = s[i + j] > m[j] ? s[i + j] : m[j];
    for (; i < n; i++)
        m[0] = s[i] > m[0] ? s[i] : m[0];
    float a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
    return a > b ? a : b;
}

/* Turns one row's scores over n positions of the block into the weights e[i] and,
 * where some position raises the maximum, the factors e[n + i] that rescale the
 * running sum before position i is added (1 where it does not). Returns whether
 * any position does; then the caller must apply e[n..2n). Usually none does after
 * the first blocks, and every weight is e^(s - max) at once. */
bool ka_block_weights(const ka_ops *ops, float kq_scale, float softcap, float *s, float *e, int n, float *max)
{
    for (int i = 0; i < n; i++)
        s[i] *= kq_scale;
    if (softcap > 0.0f)
        for (int i = 0; i < n; i++)
            s[i] = softcap * tanhf(s[i] / softcap);
    float m = *max;
    if (block_max(s, n) <= m) {
        for (int i = 0; i < n; i++)
            e[i] = s[i] - m;
        ops->exp(e, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        float m_new = fmaxf(m, s[i]); /* scores are never NaN */
        e[i] = s[i] - m_new;
        e[n + i] = m - m_new;
        m = m_new;
    }
    ops->exp(e, 2 * n);
    *max = m;
    return true;
}

/* The rows' running denominators after a block, position by position in ggml's
 * order; the rows are interleaved so that their dependency chains overlap. */
void ka_add_weights(float *sum, const float *e, const int *n_block, const bool *rescaled, int n_rows)
{
    for (int i = 0; i < BLOCK; i++)
        for (int r = 0; r < n_rows; r++) {
            int n = n_block[r];
            if (i >= n)
                continue;
            const float *w = e + (size_t)r * 2 * BLOCK;
            sum[r] = rescaled[r] ? sum[r] * w[n + i] + w[i] : sum[r] + w[i];
        }
}

void ka_write_outputs(const kernels_attn_row *rows, int n_rows, const float *acc, size_t acc_stride,
                      const float *sum, int dv)
{
    for (int r = 0; r < n_rows; r++) {
        const float *row_acc = acc + (size_t)r * acc_stride;
        float inv = 1.0f / sum[r];
        for (int c = 0; c < dv; c++)
            rows[r].out[c] = row_acc[c] * inv;
    }
}

void kernels_attn_f16(const kernels_attn_head *hd, const kernels_attn_row *rows, int n_rows, void *scratch)
{
    EL_ASSERT(n_rows >= 1 && n_rows <= KERNELS_ATTN_MAX_ROWS);
    const ka_ops *ops = attn_ops();
    int dk = hd->dk, dv = hd->dv;
    size_t dkp = ka_pad16(dk), dvp = ka_pad16(dv);
    attn_scratch sc;
    scratch_floats(n_rows, dk, dv, &sc, scratch);
    int lo = INT_MAX, hi = -1;
    for (int r = 0; r < n_rows; r++) {
        EL_ASSERT(rows[r].first >= 0 && rows[r].first <= rows[r].last);
        start_row(&rows[r], dk, dv, sc.q + (size_t)r * dkp, sc.acc + (size_t)r * dvp);
        sc.max[r] = -INFINITY;
        sc.sum[r] = 0.0f;
        lo = rows[r].first < lo ? rows[r].first : lo;
        hi = rows[r].last > hi ? rows[r].last : hi;
    }
    for (int b0 = lo; b0 <= hi; b0 += BLOCK) {
        int b1 = hi - b0 >= BLOCK ? b0 + BLOCK - 1 : hi;
        bool widened = false;
        int n_block[KERNELS_ATTN_MAX_ROWS] = {0};
        bool rescaled_block[KERNELS_ATTN_MAX_ROWS] = {false};
        for (int r = 0; r < n_rows; r++) {
            int p0, p1;
            if (!ka_row_in_block(rows[r].first, rows[r].last, b0, b1, &p0, &p1))
                continue;
            if (!widened) {
                ops->widen(hd->k + (size_t)b0 * dk, (size_t)dk, b1 - b0 + 1, dk, sc.k, dkp);
                ops->widen(hd->v + (size_t)b0 * dv, (size_t)dv, b1 - b0 + 1, dv, sc.v, dvp);
                widened = true;
            }
            int n = p1 - p0 + 1;
            float *e = sc.e + (size_t)r * 2 * BLOCK;
            ops->scores(sc.q + (size_t)r * dkp, sc.k + (size_t)(p0 - b0) * dkp, dkp, n, dk, sc.s);
            bool rescaled = ka_block_weights(ops, hd->kq_scale, hd->softcap, sc.s, e, n, &sc.max[r]);
            ops->accumulate(sc.acc + (size_t)r * dvp, sc.v + (size_t)(p0 - b0) * dvp, dvp, e,
                            rescaled ? e + n : NULL, n, dv);
            n_block[r] = n;
            rescaled_block[r] = rescaled;
        }
        ka_add_weights(sc.sum, sc.e, n_block, rescaled_block, n_rows);
    }
    ka_write_outputs(rows, n_rows, sc.acc, dvp, sc.sum, dv);
}
