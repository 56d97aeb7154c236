/* Matrix multiplication: against a double-precision reference built from the
 * dequantized weights and the activations as the kernel sees them (quantized
 * to the weight type's dot partner), against plain float math, across thread
 * counts (results must be identical) and across implementations (scalar vs AVX2
 * within float-summation tolerance). */
#include <stdint.h>

#include "base/rng.h"
#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"

static const uint32_t matmul_types[] = {GGUF_TYPE_F32,  GGUF_TYPE_F16,  GGUF_TYPE_BF16,
                                        GGUF_TYPE_Q8_0, GGUF_TYPE_Q4_0, GGUF_TYPE_Q4_1,
                                        GGUF_TYPE_Q5_0, GGUF_TYPE_Q5_1};

/* The K-quants (256-value blocks) go through the same driver with their own shapes. */
static const uint32_t kquant_types[] = {GGUF_TYPE_Q2_K, GGUF_TYPE_Q3_K, GGUF_TYPE_Q4_K, GGUF_TYPE_Q5_K,
                                        GGUF_TYPE_Q6_K};

/* The activation as the dot product sees it: what its partner type rounds it to. */
static uint32_t act_type_of(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_F16:
        return GGUF_TYPE_F16;
    case GGUF_TYPE_BF16:
        return GGUF_TYPE_BF16;
    case GGUF_TYPE_Q4_0:
    case GGUF_TYPE_Q5_0:
    case GGUF_TYPE_Q8_0:
    case GGUF_TYPE_Q4_1: /* Q8_1 quantizes the values exactly as Q8_0 does */
    case GGUF_TYPE_Q5_1:
        return GGUF_TYPE_Q8_0;
    case GGUF_TYPE_Q2_K:
    case GGUF_TYPE_Q3_K:
    case GGUF_TYPE_Q4_K:
    case GGUF_TYPE_Q5_K:
    case GGUF_TYPE_Q6_K:
        return GGUF_TYPE_Q8_K;
    default:
        return GGUF_TYPE_F32;
    }
}

typedef struct problem {
    uint32_t type;
    int64_t rows, cols;
    int n_tokens;
    uint8_t *w;      /* quantized weights */
    size_t row_bytes;
    float *wf;       /* their dequantized values */
    float *x;        /* activations, x_stride apart */
    int64_t x_stride;
    float *xq;       /* activations after the partner type's rounding */
    void *scratch;
} problem;

static void *aligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        abort();
    return p;
}

static void problem_make(problem *p, uint32_t type, int64_t rows, int64_t cols, int n_tokens,
                         uint64_t seed)
{
    el_rng rng;
    el_rng_seed(&rng, seed);
    p->type = type;
    p->rows = rows;
    p->cols = cols;
    p->n_tokens = n_tokens;
    p->row_bytes = gguf_row_size(type, cols);
    p->w = aligned(p->row_bytes * (size_t)rows);
    p->wf = malloc(sizeof(float) * (size_t)(rows * cols));
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        float scale = 0.1f + el_rng_uniform(&rng);
        float shift = (r % 3 == 0) ? 0.3f : 0.0f; /* exercise the _1 types' offsets */
        for (int64_t k = 0; k < cols; k++)
            tmp[k] = el_rng_normal(&rng) * scale + shift;
        CHECK(kernels_quantize_row(type, tmp, p->w + (size_t)r * p->row_bytes, cols) == 0);
        CHECK(kernels_dequantize_row(type, p->w + (size_t)r * p->row_bytes, p->wf + r * cols, cols) == 0);
    }
    p->x_stride = cols + 3;
    p->x = malloc(sizeof(float) * (size_t)(p->x_stride * n_tokens));
    p->xq = malloc(sizeof(float) * (size_t)(cols * n_tokens));
    uint32_t act = act_type_of(type);
    uint8_t *qbuf = malloc(gguf_row_size(act, cols));
    for (int t = 0; t < n_tokens; t++) {
        float *xt = p->x + t * p->x_stride;
        for (int64_t k = 0; k < cols; k++)
            xt[k] = el_rng_normal(&rng) * (1.0f + (float)(t % 4));
        CHECK(kernels_quantize_row(act, xt, qbuf, cols) == 0);
        CHECK(kernels_dequantize_row(act, qbuf, p->xq + t * cols, cols) == 0);
    }
    free(qbuf);
    free(tmp);
    p->scratch = aligned(kernels_matmul_scratch_size(type, cols, n_tokens));
}

static void problem_free(problem *p)
{
    free(p->w);
    free(p->wf);
    free(p->x);
    free(p->xq);
    free(p->scratch);
}

static void problem_run(problem *p, float *y, int64_t y_stride, threadpool *pool)
{
    kernels_matrix m = {.type = p->type, .rows = p->rows, .cols = p->cols, .data = p->w, .row_bytes = p->row_bytes};
    kernels_matmul(&m, p->x, p->x_stride, p->n_tokens, y, y_stride, p->scratch, pool);
}

/* Reference with exact sums; also the magnitude sum(|w x|) that bounds rounding error. */
static void reference(const problem *p, const float *xs, int64_t xs_stride, int64_t r, int t,
                      double *dot, double *mag)
{
    double s = 0, a = 0;
    for (int64_t k = 0; k < p->cols; k++) {
        double v = (double)p->wf[r * p->cols + k] * xs[t * xs_stride + k];
        s += v;
        a += fabs(v);
    }
    *dot = s;
    *mag = a;
}

static void check_against_reference(problem *p, threadpool *pool)
{
    int64_t y_stride = p->rows + 5;
    float *y = malloc(sizeof(float) * (size_t)(y_stride * p->n_tokens));
    problem_run(p, y, y_stride, pool);
    /* Q8_1's s is stored in half precision: allow for that in the _1 types. */
    bool affine = p->type == GGUF_TYPE_Q4_1 || p->type == GGUF_TYPE_Q5_1;
    int bad_exact = 0, bad_float = 0;
    double worst = 0;
    for (int t = 0; t < p->n_tokens; t++) {
        for (int64_t r = 0; r < p->rows; r++) {
            double want, mag, want_f, mag_f;
            reference(p, p->xq, p->cols, r, t, &want, &mag);
            reference(p, p->x, p->x_stride, r, t, &want_f, &mag_f);
            double got = y[t * y_stride + r];
            double err = fabs(got - want) / (mag + 1e-30);
            worst = fmax(worst, err);
            bad_exact += err > (affine ? 2e-3 : 2e-5);
            bad_float += fabs(got - want_f) > 0.03 * mag_f + 1e-6;
        }
    }
    CHECKF(bad_exact == 0, "type %u %lldx%lld n=%d: %d results off the quantized reference (worst %g)",
           p->type, (long long)p->rows, (long long)p->cols, p->n_tokens, bad_exact, worst);
    CHECKF(bad_float == 0, "type %u: %d results far from float math", p->type, bad_float);
    free(y);
}

static void test_reference_all_types(void)
{
    threadpool *pool = threadpool_create(2, NULL);
    for (size_t i = 0; i < sizeof matmul_types / sizeof matmul_types[0]; i++) {
        problem p;
        problem_make(&p, matmul_types[i], 37, 256, 5, 100 + i);
        check_against_reference(&p, pool);
        problem_free(&p);
    }
    threadpool_free(pool);
}

/* Every thread count and the NULL pool give bit-identical results. */
static void test_threads_deterministic(void)
{
    threadpool *pools[3] = {NULL, threadpool_create(2, NULL), threadpool_create(3, NULL)};
    for (size_t i = 0; i < sizeof matmul_types / sizeof matmul_types[0]; i++) {
        for (int n_tokens = 1; n_tokens <= 9; n_tokens += 8) {
            problem p;
            problem_make(&p, matmul_types[i], 71, 96, n_tokens, 7 + i);
            float *y[3];
            for (int k = 0; k < 3; k++) {
                y[k] = malloc(sizeof(float) * (size_t)(p.rows * n_tokens));
                problem_run(&p, y[k], p.rows, pools[k]);
            }
            CHECKF(memcmp(y[0], y[1], sizeof(float) * (size_t)(p.rows * n_tokens)) == 0, "type %u", p.type);
            CHECKF(memcmp(y[0], y[2], sizeof(float) * (size_t)(p.rows * n_tokens)) == 0, "type %u", p.type);
            for (int k = 0; k < 3; k++)
                free(y[k]);
            problem_free(&p);
        }
    }
    threadpool_free(pools[1]);
    threadpool_free(pools[2]);
}

/* Scalar against every other implementation this CPU runs, for one type and shape,
 * 1..17 tokens (every tile width and partial tiles); tol is relative to sum(|w x|). */
static void isa_agree_one(uint32_t type, int64_t rows, int64_t cols, uint64_t seed, threadpool *pool)
{
    for (int n_tokens = 1; n_tokens <= 17; n_tokens++) {
        problem p;
        problem_make(&p, type, rows, cols, n_tokens, seed + (uint64_t)n_tokens);
        size_t n_y = (size_t)(p.rows * n_tokens);
        float *ys = malloc(sizeof(float) * n_y), *yv = malloc(sizeof(float) * n_y);
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        problem_run(&p, ys, p.rows, pool);
        for (int isa = KERNELS_ISA_SCALAR + 1; isa < KERNELS_ISA_COUNT; isa++) {
            if (kernels_set_isa((enum kernels_isa)isa, NULL) != 0)
                continue;
            memset(yv, 0, sizeof(float) * n_y);
            problem_run(&p, yv, p.rows, pool);
            int bad = 0;
            for (int t = 0; t < n_tokens; t++) {
                for (int64_t r = 0; r < p.rows; r++) {
                    double want, mag;
                    reference(&p, p.xq, p.cols, r, t, &want, &mag);
                    double a = ys[t * p.rows + r], b = yv[t * p.rows + r];
                    bad += !(fabs(a - b) <= 1e-5 * mag + 1e-30);
                }
            }
            CHECKF(bad == 0, "type %u %lldx%lld n=%d %s: %d results differ", p.type, (long long)p.rows,
                   (long long)p.cols, n_tokens, kernels_isa_name((enum kernels_isa)isa), bad);
        }
        free(ys);
        free(yv);
        problem_free(&p);
    }
}

static bool any_simd(void)
{
    for (int isa = KERNELS_ISA_SCALAR + 1; isa < KERNELS_ISA_COUNT; isa++)
        if (kernels_isa_available((enum kernels_isa)isa))
            return true;
    fprintf(stderr, "SKIP: no SIMD implementation runs on this CPU; scalar only\n");
    return false;
}

/* Scalar against each SIMD implementation on odd shapes: rows not a multiple of the
 * tile or the thread count; 1 to 16 blocks per row (Q4_0 works on groups of four
 * blocks: every remainder), 1..17 tokens. */
static void test_isa_agree(void)
{
    if (!any_simd())
        return;
    threadpool *pool = threadpool_create(2, NULL);
    const int64_t shapes[][2] = {{13, 32}, {37, 96}, {70, 160}, {19, 192}, {9, 256}, {5, 512}};
    for (size_t i = 0; i < sizeof matmul_types / sizeof matmul_types[0]; i++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            isa_agree_one(matmul_types[i], shapes[s][0], shapes[s][1], 1000 * i + 100 * s, pool);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    threadpool_free(pool);
}

/* The float types have no blocks: any row length, so the SIMD paths' last partial
 * vectors (AVX-512's masked loads, AVX2's scalar tail) meet every remainder. */
static void test_isa_agree_float_odd_lengths(void)
{
    if (!any_simd())
        return;
    threadpool *pool = threadpool_create(2, NULL);
    const uint32_t types[] = {GGUF_TYPE_F32, GGUF_TYPE_F16, GGUF_TYPE_BF16};
    const int64_t shapes[][2] = {{7, 1}, {13, 15}, {6, 17}, {9, 37}, {5, 63}, {11, 100}, {3, 129}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            isa_agree_one(types[i], shapes[s][0], shapes[s][1], 9000 + 100 * i + s, pool);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    threadpool_free(pool);
}

/* The same for the K-quants: one to three 256-value blocks per row, odd row counts. */
static void test_isa_agree_kquants(void)
{
    if (!any_simd())
        return;
    threadpool *pool = threadpool_create(2, NULL);
    const int64_t shapes[][2] = {{7, 256}, {11, 768}};
    for (size_t i = 0; i < sizeof kquant_types / sizeof kquant_types[0]; i++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            isa_agree_one(kquant_types[i], shapes[s][0], shapes[s][1], 5000 + 1000 * i + 100 * s, pool);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    threadpool_free(pool);
}

/* kernels_matmul_multi: matrices of mixed types on one input (two sharing an activation
 * layout, others with their own), each result bit-identical to kernels_matmul alone. */
static void multi_agrees_one(int n_tokens, threadpool *pool)
{
    const uint32_t types[KERNELS_MATMUL_MULTI_MAX] = {GGUF_TYPE_Q4_0, GGUF_TYPE_Q4_K, GGUF_TYPE_Q4_0, GGUF_TYPE_Q6_K};
    const int64_t rows[KERNELS_MATMUL_MULTI_MAX] = {37, 12, 64, 9}, cols = 512;
    problem p[KERNELS_MATMUL_MULTI_MAX];
    kernels_matrix m[KERNELS_MATMUL_MULTI_MAX];
    const kernels_matrix *mp[KERNELS_MATMUL_MULTI_MAX];
    float *alone[KERNELS_MATMUL_MULTI_MAX], *fused[KERNELS_MATMUL_MULTI_MAX];
    int64_t strides[KERNELS_MATMUL_MULTI_MAX];
    size_t scratch_bytes = 0;
    for (int i = 0; i < KERNELS_MATMUL_MULTI_MAX; i++) {
        problem_make(&p[i], types[i], rows[i], cols, n_tokens, 300 + (uint64_t)i); /* same seed: same x per shape */
        m[i] = (kernels_matrix){.type = types[i], .rows = rows[i], .cols = cols, .data = p[i].w, .row_bytes = p[i].row_bytes};
        mp[i] = &m[i];
        strides[i] = rows[i] + 2;
        alone[i] = calloc((size_t)(strides[i] * n_tokens), sizeof(float));
        fused[i] = calloc((size_t)(strides[i] * n_tokens), sizeof(float));
        kernels_matmul(&m[i], p[0].x, p[0].x_stride, n_tokens, alone[i], strides[i], p[i].scratch, pool);
        scratch_bytes += kernels_matmul_scratch_size(types[i], cols, n_tokens);
    }
    void *scratch = aligned(scratch_bytes);
    kernels_matmul_multi(KERNELS_MATMUL_MULTI_MAX, mp, fused, strides, p[0].x, p[0].x_stride, n_tokens, scratch, pool);
    for (int i = 0; i < KERNELS_MATMUL_MULTI_MAX; i++) {
        CHECKF(memcmp(alone[i], fused[i], sizeof(float) * (size_t)(strides[i] * n_tokens)) == 0,
               "matrix %d (type %u), %d tokens", i, types[i], n_tokens);
        free(alone[i]);
        free(fused[i]);
        problem_free(&p[i]);
    }
    free(scratch);
}

static void test_multi_matches_single(void)
{
    threadpool *pool = threadpool_create(2, NULL);
    for (int isa = 0; isa < KERNELS_ISA_COUNT; isa++) {
        if (kernels_set_isa((enum kernels_isa)isa, NULL) != 0)
            continue;
        for (int n_tokens = 1; n_tokens <= 9; n_tokens += 4) {
            multi_agrees_one(n_tokens, pool);
            multi_agrees_one(n_tokens, NULL);
        }
    }
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    threadpool_free(pool);
}

static void test_scratch_size(void)
{
    CHECK(kernels_matmul_scratch_size(GGUF_TYPE_F32, 256, 4) == 0);
    CHECK(kernels_matmul_scratch_size(GGUF_TYPE_F16, 256, 3) >= 3 * 512);
    CHECK(kernels_matmul_scratch_size(GGUF_TYPE_Q4_0, 256, 2) >= 2 * 8 * 34);
    CHECK(kernels_matmul_scratch_size(GGUF_TYPE_Q4_0, 256, 2) % 64 == 0);
}

int main(void)
{
    kernels_init();
    RUN(test_reference_all_types);
    RUN(test_threads_deterministic);
    RUN(test_isa_agree);
    RUN(test_isa_agree_kquants);
    RUN(test_isa_agree_float_odd_lengths);
    RUN(test_multi_matches_single);
    RUN(test_scratch_size);
    return test_summary();
}
