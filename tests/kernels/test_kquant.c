/* K-quants: golden dequantization (scalar and AVX2), dot products against Q8_K
 * (scalar vs AVX2 vs a double-precision reference on the dequantized values),
 * the Q8_K activation quantizer, and the reference weight quantizers' error. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_kquant.h"
#include "test.h"

typedef struct kq_case {
    const char *golden; /* file stem under golden/quant */
    uint32_t type;
    size_t block_bytes;
} kq_case;

static const kq_case weight_types[] = {
    {"q2_k", GGUF_TYPE_Q2_K, sizeof(kq_block_q2_K)},
    {"q3_k", GGUF_TYPE_Q3_K, sizeof(kq_block_q3_K)},
    {"q4_k", GGUF_TYPE_Q4_K, sizeof(kq_block_q4_K)},
    {"q5_k", GGUF_TYPE_Q5_K, sizeof(kq_block_q5_K)},
    {"q6_k", GGUF_TYPE_Q6_K, sizeof(kq_block_q6_K)},
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

static bool have_avx2(void)
{
    el_err err;
    bool ok = kernels_set_isa(KERNELS_ISA_AVX2, &err) == 0;
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    return ok;
}

static void *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(len > 0 ? (size_t)len : 1);
    *size = buf && fread(buf, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
    fclose(f);
    return buf;
}

static int count_bit_mismatches(const float *a, const float *b, int64_t n)
{
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
            bad++;
    return bad;
}

/* ---- golden dequantization ------------------------------------------------------ */

enum { GOLDEN_ROWS = 4, GOLDEN_COLS = 512 };

static void test_golden_dequant(void)
{
    const bool avx2 = have_avx2();
    fprintf(stderr, "      AVX2 implementations %s\n", avx2 ? "compared" : "absent on this CPU");
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const kq_case *c = &weight_types[t];
        char path[128];
        size_t blocks_size = 0, ref_size = 0;
        snprintf(path, sizeof path, TEST_DATA "quant/%s.blocks", c->golden);
        unsigned char *blocks = read_file(path, &blocks_size);
        snprintf(path, sizeof path, TEST_DATA "quant/%s.dequant.f32", c->golden);
        float *ref = read_file(path, &ref_size);
        if (!blocks || !ref) {
            free(blocks);
            free(ref);
            return;
        }
        const int64_t n = GOLDEN_ROWS * GOLDEN_COLS;
        CHECK_EQ_INT(blocks_size, (size_t)n / KQ_QK_K * c->block_bytes);
        CHECK_EQ_INT(ref_size, (size_t)n * sizeof(float));
        CHECK_EQ_INT(gguf_row_size(c->type, GOLDEN_COLS), GOLDEN_COLS / KQ_QK_K * c->block_bytes);

        const kq_type_ops *ops = kq_ops_kquant(c->type);
        CHECK(ops != NULL && ops->act_type == GGUF_TYPE_Q8_K);
        float *out = malloc((size_t)n * sizeof(float));
        ops->scalar.dequant(blocks, out, n);
        CHECKF(count_bit_mismatches(out, ref, n) == 0, "%s scalar: %d values differ", c->golden,
               count_bit_mismatches(out, ref, n));
        if (avx2) {
            CHECK(ops->avx2.dequant != NULL);
            memset(out, 0, (size_t)n * sizeof(float));
            ops->avx2.dequant(blocks, out, n);
            CHECKF(count_bit_mismatches(out, ref, n) == 0, "%s avx2: %d values differ",
                   c->golden, count_bit_mismatches(out, ref, n));
        }
        /* and through the public entry point, row by row, with each implementation */
        for (int isa = 0; isa < KERNELS_ISA_COUNT; isa++) {
            if (kernels_set_isa((enum kernels_isa)isa, NULL) != 0)
                continue;
            CHECK(kernels_can_dequantize(c->type));
            memset(out, 0, (size_t)n * sizeof(float));
            for (int r = 0; r < GOLDEN_ROWS; r++)
                CHECK_EQ_INT(kernels_dequantize_row(c->type, blocks + r * blocks_size / GOLDEN_ROWS,
                                                    out + r * GOLDEN_COLS, GOLDEN_COLS),
                             0);
            CHECKF(count_bit_mismatches(out, ref, n) == 0, "%s via kernels_dequantize_row (%s)",
                   c->golden, kernels_isa_name((enum kernels_isa)isa));
        }
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        free(out);
        free(blocks);
        free(ref);
    }
}

/* ---- random blocks with sane scales --------------------------------------------------- */

static void random_bytes(el_rng *rng, void *dst, size_t n)
{
    unsigned char *p = dst;
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(el_rng_next(rng) >> 56);
}

/* A half in [lo, hi). */
static uint16_t random_half(el_rng *rng, float lo, float hi)
{
    return el_f32_to_fp16(lo + (hi - lo) * el_rng_uniform(rng));
}

/* Random codes and scales; the super-block scales as a trained model's would be
 * (small, positive d, dmin a fraction of it). */
static void random_weight_row(el_rng *rng, uint32_t type, void *dst, int64_t n)
{
    const int64_t nb = n / KQ_QK_K;
    switch (type) {
    case GGUF_TYPE_Q2_K: {
        kq_block_q2_K *b = dst;
        random_bytes(rng, b, (size_t)nb * sizeof *b);
        for (int64_t i = 0; i < nb; i++) {
            b[i].d = random_half(rng, 0.002f, 0.02f);
            b[i].dmin = random_half(rng, 0.001f, 0.01f);
        }
        break;
    }
    case GGUF_TYPE_Q3_K: {
        kq_block_q3_K *b = dst;
        random_bytes(rng, b, (size_t)nb * sizeof *b);
        for (int64_t i = 0; i < nb; i++)
            b[i].d = random_half(rng, -0.004f, 0.004f);
        break;
    }
    case GGUF_TYPE_Q4_K: {
        kq_block_q4_K *b = dst;
        random_bytes(rng, b, (size_t)nb * sizeof *b);
        for (int64_t i = 0; i < nb; i++) {
            b[i].d = random_half(rng, 0.0002f, 0.002f);
            b[i].dmin = random_half(rng, 0.0002f, 0.002f);
        }
        break;
    }
    case GGUF_TYPE_Q5_K: {
        kq_block_q5_K *b = dst;
        random_bytes(rng, b, (size_t)nb * sizeof *b);
        for (int64_t i = 0; i < nb; i++) {
            b[i].d = random_half(rng, 0.0001f, 0.001f);
            b[i].dmin = random_half(rng, 0.0002f, 0.002f);
        }
        break;
    }
    case GGUF_TYPE_Q6_K: {
        kq_block_q6_K *b = dst;
        random_bytes(rng, b, (size_t)nb * sizeof *b);
        for (int64_t i = 0; i < nb; i++)
            b[i].d = random_half(rng, -0.0005f, 0.0005f);
        break;
    }
    default:
        break;
    }
}

static void random_normal(el_rng *rng, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = scale * el_rng_normal(rng);
}

static const kq_case *case_of(uint32_t type)
{
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++)
        if (weight_types[t].type == type)
            return &weight_types[t];
    return NULL;
}

/* ---- dot products ------------------------------------------------------------------ */

static void check_dot(uint32_t type, int64_t n, bool avx2, el_rng *rng)
{
    const kq_type_ops *ops = kq_ops_kquant(type);
    const kq_type_ops *act = kq_ops_kquant(GGUF_TYPE_Q8_K);
    const size_t w_bytes = (size_t)(n / KQ_QK_K) * case_of(type)->block_bytes;
    const size_t x_bytes = (size_t)(n / KQ_QK_K) * sizeof(kq_block_q8_K);
    void *w = malloc(w_bytes);
    void *xq = malloc(x_bytes);
    float *x = malloc((size_t)n * sizeof(float));
    float *wf = malloc((size_t)n * sizeof(float));
    float *xf = malloc((size_t)n * sizeof(float));

    random_weight_row(rng, type, w, n);
    random_normal(rng, x, n, 1.0f);
    act->quant(x, xq, n);
    ops->scalar.dequant(w, wf, n);
    act->scalar.dequant(xq, xf, n);
    double ref = 0, magnitude = 0;
    for (int64_t k = 0; k < n; k++) {
        ref += (double)wf[k] * xf[k];
        magnitude += fabs((double)wf[k] * xf[k]);
    }
    /* Integer sums are exact; what remains is float rounding of the per-block
     * scale products and of the running sum. */
    const double tol = 2e-6 * magnitude + 1e-30;

    float scalar = NAN;
    ops->scalar.dot(n, w, xq, &scalar);
    CHECKF(fabs(scalar - ref) <= tol, "type %u n %lld: scalar %.9g vs reference %.9g (tol %.3g)",
           (unsigned)type, (long long)n, scalar, ref, tol);
    if (avx2) {
        float fast = NAN;
        ops->avx2.dot(n, w, xq, &fast);
        CHECKF(fabs(fast - scalar) <= tol, "type %u n %lld: avx2 %.9g vs scalar %.9g (tol %.3g)",
               (unsigned)type, (long long)n, fast, scalar, tol);
    }
    free(w);
    free(xq);
    free(x);
    free(wf);
    free(xf);
}

static void test_dot_random(void)
{
    const bool avx2 = have_avx2();
    const int64_t lengths[] = {256, 512, 2304, 16384};
    el_rng rng;
    el_rng_seed(&rng, 20240601);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++)
        for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++)
            for (int rep = 0; rep < 3; rep++)
                check_dot(weight_types[t].type, lengths[l], avx2, &rng);
}

/* A tile kernel gives exactly what the row kernel gives for each (row, column),
 * for every shape up to 4 x 4, with row and activation strides wider than a row. */
static void test_dot_tile(void)
{
    if (!have_avx2())
        return;
    const int64_t n = 768;
    el_rng rng;
    el_rng_seed(&rng, 31337);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const kq_case *c = &weight_types[t];
        const kq_type_ops *ops = kq_ops_kquant(c->type);
        if (!ops->avx2.dot_tile)
            continue;
        const size_t w_stride = gguf_row_size(c->type, n) + 40;
        const size_t x_stride = (size_t)(n / KQ_QK_K) * sizeof(kq_block_q8_K) + 64;
        unsigned char *w = calloc(4, w_stride);
        unsigned char *xq = calloc(4, x_stride);
        float x[768];
        for (int r = 0; r < 4; r++)
            random_weight_row(&rng, c->type, w + r * w_stride, n);
        for (int col = 0; col < 4; col++) {
            random_normal(&rng, x, n, 1.0f);
            kq_ops_kquant(GGUF_TYPE_Q8_K)->quant(x, xq + col * x_stride, n);
        }
        for (int n_rows = 1; n_rows <= 4; n_rows++)
            for (int n_cols = 1; n_cols <= 4; n_cols++) {
                const int64_t y_stride = 7;
                float y[4 * 7];
                for (int k = 0; k < 4 * 7; k++)
                    y[k] = -1234.5f;
                ops->avx2.dot_tile(n, w, w_stride, n_rows, xq, x_stride, n_cols, y, y_stride);
                for (int col = 0; col < 4; col++)
                    for (int r = 0; r < 7; r++) {
                        float expect = -1234.5f;
                        if (col < n_cols && r < n_rows)
                            ops->avx2.dot(n, w + r * w_stride, xq + col * x_stride, &expect);
                        CHECKF(memcmp(&y[col * y_stride + r], &expect, sizeof expect) == 0,
                               "%s tile %dx%d at (%d, %d): %g vs %g", c->golden, n_rows, n_cols,
                               r, col, y[col * y_stride + r], expect);
                    }
            }
        free(w);
        free(xq);
    }
}

/* The dispatcher's matmul with K-quant weights agrees with dequantized weights
 * times the activations, under each implementation this CPU runs. */
static void test_matmul_kquant(void)
{
    const int64_t rows = 10, cols = 512;
    const int n_tokens = 6;
    el_rng rng;
    el_rng_seed(&rng, 7);
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const kq_case *c = &weight_types[t];
        CHECK(kernels_can_matmul(c->type));
        const size_t row_bytes = gguf_row_size(c->type, cols);
        unsigned char *w = malloc(row_bytes * (size_t)rows);
        float *wf = malloc(sizeof(float) * (size_t)(rows * cols));
        float *x = malloc(sizeof(float) * (size_t)(n_tokens * cols));
        float *y = malloc(sizeof(float) * (size_t)(n_tokens * rows));
        for (int64_t r = 0; r < rows; r++) {
            random_weight_row(&rng, c->type, w + r * row_bytes, cols);
            kq_ops_kquant(c->type)->scalar.dequant(w + r * row_bytes, wf + r * cols, cols);
        }
        random_normal(&rng, x, n_tokens * cols, 1.0f);
        kernels_matrix m = {.type = c->type, .rows = rows, .cols = cols, .data = w, .row_bytes = row_bytes};
        void *scratch = aligned_alloc(64, (kernels_matmul_scratch_size(c->type, cols, n_tokens) + 63) / 64 * 64);
        for (int isa = 0; isa < KERNELS_ISA_COUNT; isa++) {
            if (kernels_set_isa((enum kernels_isa)isa, NULL) != 0)
                continue;
            kernels_matmul(&m, x, cols, n_tokens, y, rows, scratch, NULL);
            for (int tok = 0; tok < n_tokens; tok++)
                for (int64_t r = 0; r < rows; r++) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < cols; k++) {
                        ref += (double)wf[r * cols + k] * x[tok * cols + k];
                        mag += fabs((double)wf[r * cols + k] * x[tok * cols + k]);
                    }
                    /* activations are rounded to 8 bits: about 1% of the magnitude */
                    CHECKF(fabs(y[tok * rows + r] - ref) <= 0.02 * mag,
                           "%s %s token %d row %lld: %g vs %g", c->golden,
                           kernels_isa_name((enum kernels_isa)isa), tok, (long long)r,
                           y[tok * rows + r], ref);
                }
        }
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        free(scratch);
        free(w);
        free(wf);
        free(x);
        free(y);
    }
}

/* ---- Q8_K activations --------------------------------------------------------------- */

static void test_q8_K_quant(void)
{
    const kq_type_ops *ops = kq_ops_kquant(GGUF_TYPE_Q8_K);
    CHECK(ops != NULL && ops->quant != NULL);
    enum { N = 1024 };
    float x[N], back[N];
    kq_block_q8_K q[N / KQ_QK_K], via_dispatch[N / KQ_QK_K];
    el_rng rng;
    el_rng_seed(&rng, 99);
    random_normal(&rng, x, N, 3.0f);
    x[17] = 20.0f;   /* block 0: largest value positive */
    x[300] = -25.0f; /* block 1: largest value negative */
    for (int j = 512; j < 768; j++)
        x[j] = 0; /* block 2: all zero */
    ops->quant(x, q, N);

    CHECK_EQ_INT(q[0].qs[17], -127); /* the sign goes into d, as ggml does */
    CHECK(q[0].d < 0);
    CHECK_NEAR(q[0].d, -20.0f / 127.0f, 1e-6);
    CHECK_EQ_INT(q[1].qs[300 - 256], -127);
    CHECK(q[1].d > 0);
    CHECK(q[2].d == 0);
    for (int b = 0; b < N / KQ_QK_K; b++)
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++)
                sum += q[b].qs[16 * g + l];
            CHECK_EQ_INT(q[b].bsums[g], sum);
        }
    ops->scalar.dequant(q, back, N);
    for (int i = 0; i < N; i++) {
        float step = fabsf(q[i / KQ_QK_K].d);
        CHECKF(fabsf(back[i] - x[i]) <= 0.5f * step * 1.0001f + 1e-12f, "value %d: %g vs %g", i,
               back[i], x[i]);
    }
    /* what the dispatcher converts activations with is byte-identical */
    kq_act_convert(GGUF_TYPE_Q8_K, x, via_dispatch, N);
    CHECK(memcmp(q, via_dispatch, sizeof q) == 0);

    /* Q8_K . Q8_K */
    float dot = 0;
    double ref = 0;
    ops->scalar.dot(N, q, q, &dot);
    for (int i = 0; i < N; i++)
        ref += (double)back[i] * back[i];
    CHECK_NEAR(dot, ref, 1e-5 * ref);
}

/* The AVX2 Q8_K quantizer (what kq_act_convert uses on such CPUs) against the reference,
 * byte for byte: many scales, ties between +m and -m (the first one sets the sign), values
 * that round to exactly half a step, a lone nonzero value. */
static void test_q8_K_quant_isa_agree(void)
{
    if (kernels_set_isa(KERNELS_ISA_AVX2, NULL) != 0) {
        fprintf(stderr, "SKIP: no AVX2 on this CPU; scalar only\n");
        return;
    }
    const kq_type_ops *ops = kq_ops_kquant(GGUF_TYPE_Q8_K);
    enum { BLOCKS = 64, N = BLOCKS * KQ_QK_K };
    static float x[N];
    static kq_block_q8_K want[BLOCKS], got[BLOCKS];
    el_rng rng;
    el_rng_seed(&rng, 4242);
    for (int b = 0; b < BLOCKS; b++) {
        float *xb = x + b * KQ_QK_K;
        random_normal(&rng, xb, KQ_QK_K, powf(10.0f, (float)(b % 9) - 4.0f));
        if (b % 4 == 1) { /* tie: -m before +m, or +m before -m */
            xb[b % 200] = (b & 8) ? 1e3f : -1e3f;
            xb[b % 200 + 40] = (b & 8) ? -1e3f : 1e3f;
        }
        if (b % 4 == 2) /* steps of exactly half a quantum: ties to even */
            for (int j = 0; j < KQ_QK_K; j++)
                xb[j] = (float)((j % 255) - 127) * 0.5f;
        if (b % 8 == 3) { /* one value alone */
            memset(xb, 0, KQ_QK_K * sizeof(float));
            xb[b % KQ_QK_K] = -0.75f;
        }
    }
    ops->quant(x, want, N);
    kq_act_convert(GGUF_TYPE_Q8_K, x, got, N);
    for (int b = 0; b < BLOCKS; b++)
        CHECKF(memcmp(&want[b], &got[b], sizeof want[b]) == 0, "block %d differs", b);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    kq_act_convert(GGUF_TYPE_Q8_K, x, got, N);
    CHECK(memcmp(want, got, sizeof want) == 0);
    kernels_set_isa(KERNELS_ISA_AVX2, NULL);
}

/* ---- reference quantizers ----------------------------------------------------------- */

static double relative_rmse(const float *a, const float *b, int64_t n)
{
    double err = 0, energy = 0;
    for (int64_t i = 0; i < n; i++) {
        err += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        energy += (double)a[i] * a[i];
    }
    return energy > 0 ? sqrt(err / energy) : sqrt(err);
}

static void test_quantize_error(void)
{
    /* Gaussian data; bounds a little above what ggml's quantizers reach. */
    static const struct {
        uint32_t type;
        double bound;
    } expect[] = {
        {GGUF_TYPE_Q2_K, 0.40}, {GGUF_TYPE_Q3_K, 0.20}, {GGUF_TYPE_Q4_K, 0.10},
        {GGUF_TYPE_Q5_K, 0.05}, {GGUF_TYPE_Q6_K, 0.025},
    };
    enum { N = 8 * KQ_QK_K };
    static float x[N], back[N];
    static unsigned char blocks[N / KQ_QK_K * 256];
    el_rng rng;
    el_rng_seed(&rng, 4242);
    random_normal(&rng, x, N, 0.02f);
    x[5] = 0.3f; /* an outlier, as real weights have */
    for (int j = 256; j < 512; j++)
        x[j] = 0; /* an all-zero block must survive */
    for (size_t e = 0; e < sizeof expect / sizeof expect[0]; e++) {
        const kq_type_ops *ops = kq_ops_kquant(expect[e].type);
        CHECK(ops->quant != NULL);
        CHECK(kernels_can_quantize(expect[e].type));
        memset(blocks, 0xAB, sizeof blocks);
        ops->quant(x, blocks, N);
        ops->scalar.dequant(blocks, back, N);
        double err = relative_rmse(x, back, N);
        fprintf(stderr, "      %s: relative rmse %.4f (bound %.3f)\n",
                gguf_type_get(expect[e].type)->name, err, expect[e].bound);
        CHECKF(err < expect[e].bound, "%s relative rmse %.4f", gguf_type_get(expect[e].type)->name,
               err);
        for (int j = 256; j < 512; j++)
            CHECK(back[j] == 0);
        /* the public entry point produces the same bytes */
        static unsigned char again[sizeof blocks];
        CHECK_EQ_INT(kernels_quantize_row(expect[e].type, x, again, N), 0);
        CHECK(memcmp(blocks, again, gguf_row_size(expect[e].type, N)) == 0);
    }
}

/* Values that already lie on a K-quant grid (the golden dequantizations) come back
 * from quantize -> dequantize close to themselves. */
static void test_requantize_golden(void)
{
    static const double bound[] = {0.02, 0.1, 0.025, 0.025, 0.03}; /* Q2_K .. Q6_K */
    for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
        const kq_case *c = &weight_types[t];
        char path[128];
        size_t ref_size = 0;
        snprintf(path, sizeof path, TEST_DATA "quant/%s.dequant.f32", c->golden);
        float *ref = read_file(path, &ref_size);
        if (!ref)
            return;
        const int64_t n = GOLDEN_ROWS * GOLDEN_COLS;
        CHECK_EQ_INT(ref_size, (size_t)n * sizeof(float));
        const kq_type_ops *ops = kq_ops_kquant(c->type);
        void *blocks = malloc((size_t)n / KQ_QK_K * c->block_bytes);
        float *back = malloc((size_t)n * sizeof(float));
        ops->quant(ref, blocks, n);
        ops->scalar.dequant(blocks, back, n);
        double err = relative_rmse(ref, back, n);
        fprintf(stderr, "      %s: golden requantized, relative rmse %.4f\n", c->golden, err);
        CHECKF(err < bound[t], "%s: %.4f", c->golden, err);
        free(blocks);
        free(back);
        free(ref);
    }
}

int main(void)
{
    RUN(test_golden_dequant);
    RUN(test_q8_K_quant);
    RUN(test_q8_K_quant_isa_agree);
    RUN(test_dot_random);
    RUN(test_dot_tile);
    RUN(test_matmul_kquant);
    RUN(test_quantize_error);
    RUN(test_requantize_golden);
    return test_summary();
}
