/* Attention over a Q8_0 cache: the kernel against double-precision attention over
 * the same quantized keys, values and query (it differs only by float rounding),
 * and against attention over the unquantized floats (within Q8_0's error); on
 * several head sizes, many rows with their own ranges, and soft-capping. Also the
 * row size and the rejection of sizes that are not whole blocks by the quantizer. */
#include <stdint.h>
#include <stdlib.h>

#include "base/rng.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"

enum { MAX_POS = 300, MAX_DIM = 256, ROWS = KERNELS_ATTN_MAX_ROWS, BLOCK_BYTES = 34 };

typedef struct cache {
    float kf[MAX_POS * MAX_DIM], vf[MAX_POS * MAX_DIM]; /* the floats before quantizing */
    uint8_t k[MAX_POS * MAX_DIM / 32 * BLOCK_BYTES], v[MAX_POS * MAX_DIM / 32 * BLOCK_BYTES];
    float kd[MAX_POS * MAX_DIM], vd[MAX_POS * MAX_DIM]; /* the quantized values, widened */
    float q[ROWS][MAX_DIM], qd[ROWS][MAX_DIM];
} cache;

static void quantize_widen(const float *x, uint8_t *q8, float *back, int n)
{
    CHECK(kernels_quantize_row(GGUF_TYPE_Q8_0, x, q8, n) == 0);
    CHECK(kernels_dequantize_row(GGUF_TYPE_Q8_0, q8, back, n) == 0);
}

static void fill(el_rng *rng, cache *c, int dk, int dv, float q_scale)
{
    for (int i = 0; i < MAX_POS * dk; i++)
        c->kf[i] = el_rng_normal(rng);
    for (int i = 0; i < MAX_POS * dv; i++)
        c->vf[i] = el_rng_normal(rng);
    quantize_widen(c->kf, c->k, c->kd, MAX_POS * dk);
    quantize_widen(c->vf, c->v, c->vd, MAX_POS * dv);
    uint8_t scratch[MAX_DIM / 32 * BLOCK_BYTES];
    for (int r = 0; r < ROWS; r++) {
        for (int d = 0; d < dk; d++)
            c->q[r][d] = el_rng_normal(rng) * q_scale;
        quantize_widen(c->q[r], scratch, c->qd[r], dk);
    }
}

typedef struct shape {
    int dk, dv, n_rows;
    float kq_scale, softcap;
} shape;

static const shape shapes[] = {
    {256, 256, 4, 1.0f, 0.0f}, {256, 256, 32, 1.0f, 0.0f}, {64, 64, 8, 0.125f, 0.0f},
    {32, 96, 5, 0.5f, 0.0f},   {256, 256, 2, 1.0f, 50.0f}, {128, 32, 31, 0.3f, 0.0f},
};

/* Softmax attention in double precision over q, keys and values as given. */
static void attend_exact(const float *q, const float *k, const float *v, const shape *sh, int first, int last,
                         double *out)
{
    static double s[MAX_POS];
    double max = -INFINITY, sum = 0.0;
    for (int p = first; p <= last; p++) {
        double dot = 0.0;
        for (int d = 0; d < sh->dk; d++)
            dot += (double)q[d] * k[(size_t)p * sh->dk + d];
        dot *= sh->kq_scale;
        s[p] = sh->softcap > 0.0f ? sh->softcap * tanh(dot / sh->softcap) : dot;
        max = s[p] > max ? s[p] : max;
    }
    for (int d = 0; d < sh->dv; d++)
        out[d] = 0.0;
    for (int p = first; p <= last; p++) {
        double w = exp(s[p] - max);
        sum += w;
        for (int d = 0; d < sh->dv; d++)
            out[d] += w * v[(size_t)p * sh->dv + d];
    }
    for (int d = 0; d < sh->dv; d++)
        out[d] /= sum;
}

static void ranges(el_rng *rng, int n_rows, int *first, int *last)
{
    for (int r = 0; r < n_rows; r++) {
        last[r] = MAX_POS - 1 - (int)(el_rng_next(rng) % 120);
        int kind = (int)(el_rng_next(rng) % 4);
        first[r] = kind == 0 ? last[r] - (int)(el_rng_next(rng) % 3) : kind == 1 ? (int)(el_rng_next(rng) % 90) : 0;
    }
}

static void test_matches_exact_attention(void)
{
    static cache c;
    static float out[ROWS][MAX_DIM];
    double exact_q[MAX_DIM], exact_f[MAX_DIM];
    el_rng rng;
    el_rng_seed(&rng, 21);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        fill(&rng, &c, sh->dk, sh->dv, 3.0f / sqrtf((float)sh->dk));
        kernels_attn_head_q8_0 hd = {c.k, c.v, sh->dk, sh->dv, sh->kq_scale, sh->softcap};
        int first[ROWS], last[ROWS];
        ranges(&rng, sh->n_rows, first, last);
        kernels_attn_row rows[ROWS];
        for (int r = 0; r < sh->n_rows; r++)
            rows[r] = (kernels_attn_row){c.q[r], out[r], first[r], last[r]};
        size_t bytes = (kernels_attn_q8_0_scratch_size(sh->dk, sh->dv) + 63) & ~(size_t)63;
        void *scratch = aligned_alloc(64, bytes);
        kernels_attn_q8_0(&hd, rows, sh->n_rows, scratch);
        int off_quantized = 0, off_float = 0;
        double worst = 0.0, worst_f = 0.0;
        for (int r = 0; r < sh->n_rows; r++) {
            attend_exact(c.qd[r], c.kd, c.vd, sh, first[r], last[r], exact_q);
            attend_exact(c.q[r], c.kf, c.vf, sh, first[r], last[r], exact_f);
            for (int d = 0; d < sh->dv; d++) {
                double e = fabs(out[r][d] - exact_q[d]);
                worst = e > worst ? e : worst;
                /* the same quantized numbers: only float sums and e^x round */
                off_quantized += !(e <= 2e-5);
                /* Q8_0 keeps about 2.5 significant digits of each value and score; a
                 * row over a few positions with scores of several units moves its
                 * weights by up to a few percent (6.5e-2 seen at worst) */
                double ef = fabs(out[r][d] - exact_f[d]);
                worst_f = ef > worst_f ? ef : worst_f;
                off_float += !(ef <= 0.1);
            }
        }
        CHECKF(off_quantized == 0, "shape %zu: %d values off attention over the quantized numbers (worst %g)", i,
               off_quantized, worst);
        CHECKF(off_float == 0, "shape %zu: %d values far from attention over the floats (worst %g)", i, off_float,
               worst_f);
        free(scratch);
    }
}

static void test_row_bytes(void)
{
    CHECK(kernels_q8_0_row_bytes(32) == 34);
    CHECK(kernels_q8_0_row_bytes(256) == 8 * 34);
    CHECK(kernels_attn_q8_0_scratch_size(256, 256) >= 8 * 34 + 2 * 256 * sizeof(float));
    float x[48] = {0};
    uint8_t q8[2 * BLOCK_BYTES];
    CHECK(kernels_quantize_row(GGUF_TYPE_Q8_0, x, q8, 48) == -1);
}

int main(void)
{
    kernels_init();
    RUN(test_matches_exact_attention);
    RUN(test_row_bytes);
    return test_summary();
}
