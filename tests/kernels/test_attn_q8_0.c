/* Attention over a Q8_0 cache: every implementation against double-precision
 * attention over the same quantized keys, values and query (it differs only by
 * float rounding), and against attention over the unquantized floats (within
 * Q8_0's error); the scalar one bit for bit against a position-by-position loop in
 * ggml's order; every SIMD one against the scalar one on the rows a model sends
 * (1 to 17 tokens of a prompt times the query heads of a KV head, GQA ratios 1 to
 * 8, odd lengths); on several head sizes, rows with their own ranges, and
 * soft-capping. Also the row size and the rejection of sizes that are not whole
 * blocks by the quantizer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"

#include "base/rng.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"
#include "attn_test_util.h"

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

/* Fills the cache for sh, draws the rows' ranges and runs the kernel on them. */
static void run_random_shape(el_rng *rng, cache *c, const shape *sh, int *first, int *last, float out[][MAX_DIM])
{
    fill(rng, c, sh->dk, sh->dv, 3.0f / sqrtf((float)sh->dk));
    kernels_attn_head_q8_0 hd = {c->k, c->v, sh->dk, sh->dv, sh->kq_scale, sh->softcap};
    attn_test_ranges(rng, sh->n_rows, MAX_POS, first, last);
    kernels_attn_row rows[ROWS];
    for (int r = 0; r < sh->n_rows; r++)
        rows[r] = (kernels_attn_row){c->q[r], out[r], first[r], last[r]};
    void *scratch = attn_test_scratch(kernels_attn_q8_0_scratch_size(ROWS, sh->dk, sh->dv));
    kernels_attn_q8_0(&hd, rows, sh->n_rows, scratch);
    free(scratch);
}

static void matches_exact_attention(void)
{
    static cache c;
    static float out[ROWS][MAX_DIM];
    double exact_q[MAX_DIM], exact_f[MAX_DIM];
    el_rng rng;
    el_rng_seed(&rng, 21);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        int first[ROWS], last[ROWS];
        run_random_shape(&rng, &c, sh, first, last, out);
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
    }
}

static void test_row_bytes(void)
{
    CHECK(kernels_q8_0_row_bytes(32) == 34);
    CHECK(kernels_q8_0_row_bytes(256) == 8 * 34);
    CHECK(kernels_attn_q8_0_scratch_size(1, 256, 256) >= 8 * 34 + 2 * 256 * sizeof(float));
    CHECK(kernels_attn_q8_0_scratch_size(ROWS, 256, 256) > kernels_attn_q8_0_scratch_size(1, 256, 256));
    float x[48] = {0};
    uint8_t q8[2 * BLOCK_BYTES];
    CHECK(kernels_quantize_row(GGUF_TYPE_Q8_0, x, q8, 48) == -1);
}

/* Each implementation this CPU runs, the widest last (and left in force). */
static void test_matches_exact_attention(void)
{
    for (int isa = 0; isa < KERNELS_ISA_COUNT; isa++) {
        if (!kernels_isa_available((enum kernels_isa)isa))
            continue;
        fprintf(stderr, "      kernels: %s\n", kernels_isa_name((enum kernels_isa)isa));
        kernels_set_isa((enum kernels_isa)isa, NULL);
        matches_exact_attention();
    }
}

static float half_to_float(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, sizeof h);
    return el_fp16_to_f32(h);
}

/* One row, one position at a time, the running sum in float: the loop of ggml's
 * flash attention for a Q8_0 cache, which the scalar kernel's blocks must
 * reproduce bit for bit. */
static void attend_stepwise(const cache *c, const shape *sh, const float *q, int first, int last, float *out)
{
    uint8_t q8[MAX_DIM / 32 * BLOCK_BYTES];
    CHECK(kernels_quantize_row(GGUF_TYPE_Q8_0, q, q8, sh->dk) == 0);
    size_t k_row = (size_t)sh->dk / 32 * BLOCK_BYTES, v_row = (size_t)sh->dv / 32 * BLOCK_BYTES;
    float acc[MAX_DIM] = {0}, max = -INFINITY, sum = 0.0f;
    for (int p = first; p <= last; p++) {
        const uint8_t *k = c->k + (size_t)p * k_row, *v = c->v + (size_t)p * v_row;
        float dot = 0.0f;
        for (int b = 0; b < sh->dk / 32; b++) {
            int32_t isum = 0;
            for (int j = 0; j < 32; j++)
                isum += (int8_t)k[b * BLOCK_BYTES + 2 + j] * (int8_t)q8[b * BLOCK_BYTES + 2 + j];
            dot += (float)isum * (half_to_float(k + b * BLOCK_BYTES) * half_to_float(q8 + b * BLOCK_BYTES));
        }
        float s = dot * sh->kq_scale, rescale = 1.0f, w = 1.0f;
        if (sh->softcap > 0.0f)
            s = sh->softcap * tanhf(s / sh->softcap);
        if (s > max) {
            rescale = expf(max - s);
            for (int d = 0; d < sh->dv; d++)
                acc[d] *= rescale;
            max = s;
        } else {
            w = expf(s - max);
        }
        for (int b = 0; b < sh->dv / 32; b++)
            for (int j = 0; j < 32; j++) {
                float value = (float)(int8_t)v[b * BLOCK_BYTES + 2 + j] * half_to_float(v + b * BLOCK_BYTES);
                acc[b * 32 + j] += w * value;
            }
        sum = sum * rescale + w;
    }
    for (int d = 0; d < sh->dv; d++)
        out[d] = acc[d] * (1.0f / sum);
}

static void test_scalar_matches_stepwise(void)
{
    static cache c;
    static float out[ROWS][MAX_DIM], step[MAX_DIM];
    el_rng rng;
    el_rng_seed(&rng, 22);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        int first[ROWS], last[ROWS];
        run_random_shape(&rng, &c, sh, first, last, out);
        int differ = 0;
        for (int r = 0; r < sh->n_rows; r++) {
            attend_stepwise(&c, sh, c.q[r], first[r], last[r], step);
            for (int d = 0; d < sh->dv; d++)
                differ += out[r][d] != step[d];
        }
        CHECKF(differ == 0, "shape %zu: %d values differ from the stepwise loop", i, differ);
    }
}

/* A model's call: n_tokens consecutive tokens of a prompt ending at position
 * depth + t (causal), each with the ratio query heads of one KV head; with a
 * sliding window, rows start late. */
static int model_rows(const cache *c, int n_tokens, int ratio, int depth, int window, float out[][MAX_DIM],
                      kernels_attn_row *rows)
{
    int n = 0;
    for (int t = 0; t < n_tokens; t++)
        for (int h = 0; h < ratio; h++, n++) {
            int last = depth + t, first = window && last - window + 1 > 0 ? last - window + 1 : 0;
            rows[n] = (kernels_attn_row){c->q[n], out[n], first, last};
        }
    return n;
}

static void test_isa_agree(void)
{
    static cache c;
    static float want[ROWS][MAX_DIM], got[ROWS][MAX_DIM];
    static const int dims[][2] = {{256, 256}, {128, 128}, {96, 32}, {32, 160}};
    static const int ratios[] = {1, 2, 4, 8};
    int tried = 0;
    for (int isa = KERNELS_ISA_SCALAR + 1; isa < KERNELS_ISA_COUNT; isa++) {
        if (!kernels_isa_available((enum kernels_isa)isa))
            continue;
        tried++;
        el_rng rng;
        el_rng_seed(&rng, 23);
        for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
            shape sh = {dims[di][0], dims[di][1], 0, di == 1 ? 0.3f : 1.0f, di == 2 ? 30.0f : 0.0f};
            fill(&rng, &c, sh.dk, sh.dv, 3.0f / sqrtf((float)sh.dk));
            kernels_attn_head_q8_0 hd = {c.k, c.v, sh.dk, sh.dv, sh.kq_scale, sh.softcap};
            void *scratch = attn_test_scratch(kernels_attn_q8_0_scratch_size(ROWS, sh.dk, sh.dv));
            int bad = 0, calls = 0;
            for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++)
                for (int n_tokens = 1; n_tokens <= 17 && n_tokens * ratios[ri] <= ROWS; n_tokens++) {
                    /* odd and even depths, short and past several blocks, some windowed */
                    int depth = (int)(el_rng_next(&rng) % (MAX_POS - 17)), window = n_tokens % 3 == 0 ? 37 : 0;
                    kernels_attn_row rows[ROWS];
                    int n = model_rows(&c, n_tokens, ratios[ri], depth, window, want, rows);
                    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
                    kernels_attn_q8_0(&hd, rows, n, scratch);
                    model_rows(&c, n_tokens, ratios[ri], depth, window, got, rows);
                    kernels_set_isa((enum kernels_isa)isa, NULL);
                    kernels_attn_q8_0(&hd, rows, n, scratch);
                    calls++;
                    /* the block sums in another order (FMA, lanes) and a polynomial e^x
                     * move a weight by an ulp or so; the float running sum keeps it there */
                    for (int r = 0; r < n; r++)
                        for (int d = 0; d < sh.dv; d++)
                            bad += !(fabsf(got[r][d] - want[r][d]) <= 1e-4f + 1e-4f * fabsf(want[r][d]));
                }
            CHECKF(bad == 0, "%s dk %d dv %d: %d values differ from the scalar kernel's (%d calls)",
                   kernels_isa_name((enum kernels_isa)isa), sh.dk, sh.dv, bad, calls);
            free(scratch);
        }
    }
    if (!tried)
        fprintf(stderr, "SKIP: no SIMD implementation runs on this CPU; scalar only\n");
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
}

int main(void)
{
    kernels_init();
    RUN(test_matches_exact_attention);
    RUN(test_scalar_matches_stepwise);
    RUN(test_isa_agree);
    RUN(test_row_bytes);
    return test_summary();
}
