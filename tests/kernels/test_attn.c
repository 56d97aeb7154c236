/* Attention over an F16 cache: the scalar kernel against a position-by-position
 * evaluation in ggml's order (bit for bit), against plain double-precision
 * attention (within the half-precision running sum's rounding), and every SIMD
 * implementation against the scalar one, on odd head sizes, many rows with their
 * own ranges, ranges crossing blocks, and soft-capping. */
#include <stdint.h>
#include <stdlib.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "test.h"
#include "attn_test_util.h"

enum { MAX_POS = 300, MAX_DIM = 260, ROWS = KERNELS_ATTN_MAX_ROWS };

typedef struct cache {
    uint16_t k[MAX_POS * MAX_DIM], v[MAX_POS * MAX_DIM];
    float q[ROWS][MAX_DIM];
} cache;

static float half(float x)
{
    return el_fp16_to_f32(el_f32_to_fp16(x));
}

static void fill(el_rng *rng, cache *c, int dk, int dv, float q_scale)
{
    for (int i = 0; i < MAX_POS * dk; i++)
        c->k[i] = el_f32_to_fp16(el_rng_normal(rng));
    for (int i = 0; i < MAX_POS * dv; i++)
        c->v[i] = el_f32_to_fp16(el_rng_normal(rng));
    for (int r = 0; r < ROWS; r++)
        for (int d = 0; d < dk; d++)
            c->q[r][d] = el_rng_normal(rng) * q_scale;
}

static float score(const cache *c, const kernels_attn_head *hd, int r, int p)
{
    double sum = 0.0;
    for (int d = 0; d < hd->dk; d++)
        sum += (double)(half(c->q[r][d]) * el_fp16_to_f32(c->k[(size_t)p * hd->dk + d]));
    float s = (float)sum * hd->kq_scale;
    return hd->softcap > 0.0f ? hd->softcap * tanhf(s / hd->softcap) : s;
}

/* One position at a time, the running sum rounded to half after every step:
 * the loop kernels_attn_f16 replaced, in ggml's order. */
static void attend_stepwise(const cache *c, const kernels_attn_head *hd, int r, int first, int last, float *out)
{
    float acc[MAX_DIM] = {0}, max = -INFINITY, sum = 0.0f;
    for (int p = first; p <= last; p++) {
        float s = score(c, hd, r, p), rescale = 1.0f, w = 1.0f;
        if (s > max) {
            rescale = expf(max - s);
            if (sum > 0.0f)
                for (int d = 0; d < hd->dv; d++)
                    acc[d] = half(acc[d] * rescale);
            max = s;
        } else {
            w = expf(s - max);
        }
        sum = sum * rescale + w;
        for (int d = 0; d < hd->dv; d++) {
            float product = w * el_fp16_to_f32(c->v[(size_t)p * hd->dv + d]);
            acc[d] = half(acc[d] + product);
        }
    }
    for (int d = 0; d < hd->dv; d++)
        out[d] = acc[d] * (1.0f / sum);
}

/* Softmax attention in double precision. */
static void attend_exact(const cache *c, const kernels_attn_head *hd, int r, int first, int last, double *out)
{
    double s[MAX_POS], max = -INFINITY, sum = 0.0;
    for (int p = first; p <= last; p++) {
        s[p] = score(c, hd, r, p);
        max = s[p] > max ? s[p] : max;
    }
    for (int d = 0; d < hd->dv; d++)
        out[d] = 0.0;
    for (int p = first; p <= last; p++) {
        double w = exp(s[p] - max);
        sum += w;
        for (int d = 0; d < hd->dv; d++)
            out[d] += w * el_fp16_to_f32(c->v[(size_t)p * hd->dv + d]);
    }
    for (int d = 0; d < hd->dv; d++)
        out[d] /= sum;
}

typedef struct shape {
    int dk, dv, n_rows;
    float kq_scale, softcap;
} shape;

static const shape shapes[] = {
    {256, 256, 4, 1.0f, 0.0f},  {256, 256, 32, 1.0f, 0.0f}, {64, 64, 8, 0.125f, 0.0f}, {1, 1, 3, 1.0f, 0.0f},
    {7, 33, 5, 0.5f, 0.0f},     {100, 17, 17, 1.0f, 0.0f},  {256, 256, 2, 1.0f, 50.0f}, {33, 260, 31, 0.3f, 0.0f},
};

/* Rows like a prompt's: row r ends at a position of its own; some start late (a
 * sliding window), a few see only a position or two. */
static void run_kernel(const cache *c, const kernels_attn_head *hd, int n_rows, const int *first, const int *last,
                       float out[][MAX_DIM], void *scratch)
{
    kernels_attn_row rows[ROWS];
    for (int r = 0; r < n_rows; r++)
        rows[r] = (kernels_attn_row){c->q[r], out[r], first[r], last[r]};
    kernels_attn_f16(hd, rows, n_rows, scratch);
}

static void test_scalar_matches_stepwise_and_exact(void)
{
    static cache c;
    static float out[ROWS][MAX_DIM], step[MAX_DIM];
    double exact[MAX_DIM];
    el_rng rng;
    el_rng_seed(&rng, 11);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const shape *sh = &shapes[i];
        fill(&rng, &c, sh->dk, sh->dv, 3.0f / sqrtf((float)sh->dk));
        kernels_attn_head hd = {c.k, c.v, sh->dk, sh->dv, sh->kq_scale, sh->softcap};
        int first[ROWS], last[ROWS];
        attn_test_ranges(&rng, sh->n_rows, MAX_POS, first, last);
        void *scratch = attn_test_scratch(kernels_attn_scratch_size(ROWS, sh->dk, sh->dv));
        run_kernel(&c, &hd, sh->n_rows, first, last, out, scratch);
        int differ = 0, far = 0;
        for (int r = 0; r < sh->n_rows; r++) {
            attend_stepwise(&c, &hd, r, first[r], last[r], step);
            attend_exact(&c, &hd, r, first[r], last[r], exact);
            for (int d = 0; d < sh->dv; d++) {
                differ += out[r][d] != step[d];
                /* values are N(0,1): the half-precision sum errs by a few 1e-3 */
                far += !(fabs(out[r][d] - exact[d]) <= 2e-2);
            }
        }
        CHECKF(differ == 0, "shape %zu: %d values differ from the stepwise loop", i, differ);
        CHECKF(far == 0, "shape %zu: %d values far from exact attention", i, far);
        free(scratch);
    }
}

static void test_isa_agree(void)
{
    static cache c;
    static float want[ROWS][MAX_DIM], got[ROWS][MAX_DIM];
    int tried = 0;
    for (int isa = KERNELS_ISA_SCALAR + 1; isa < KERNELS_ISA_COUNT; isa++) {
        if (!kernels_isa_available((enum kernels_isa)isa))
            continue;
        tried++;
        el_rng rng;
        el_rng_seed(&rng, 12);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const shape *sh = &shapes[i];
            fill(&rng, &c, sh->dk, sh->dv, 3.0f / sqrtf((float)sh->dk));
            kernels_attn_head hd = {c.k, c.v, sh->dk, sh->dv, sh->kq_scale, sh->softcap};
            int first[ROWS], last[ROWS];
            attn_test_ranges(&rng, sh->n_rows, MAX_POS, first, last);
            void *scratch = attn_test_scratch(kernels_attn_scratch_size(ROWS, sh->dk, sh->dv));
            kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
            run_kernel(&c, &hd, sh->n_rows, first, last, want, scratch);
            kernels_set_isa((enum kernels_isa)isa, NULL);
            run_kernel(&c, &hd, sh->n_rows, first, last, got, scratch);
            /* dot products summed in another order and a polynomial e^x move a weight
             * by an ulp or so; the half-precision sum then rounds a value one half-ulp
             * the other way now and then */
            int bad = 0;
            for (int r = 0; r < sh->n_rows; r++)
                for (int d = 0; d < sh->dv; d++)
                    bad += !(fabsf(got[r][d] - want[r][d]) <= 4e-3f);
            CHECKF(bad == 0, "%s shape %zu: %d values differ", kernels_isa_name((enum kernels_isa)isa), i, bad);
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
    RUN(test_scalar_matches_stepwise_and_exact);
    RUN(test_isa_agree);
    return test_summary();
}
