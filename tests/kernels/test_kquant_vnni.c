/* The VNNI K-quant kernels (AVX-512 and AVX-VNNI) against the scalar reference:
 * their t8 activation layout holds the reference quantizer's bytes, their dot
 * products agree with the scalar ones on reference-quantized and extreme blocks,
 * and every tile shape (1..4 rows, 1..17 tokens) gives exactly their dot product. */
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

static const uint32_t weight_types[] = {GGUF_TYPE_Q2_K, GGUF_TYPE_Q3_K, GGUF_TYPE_Q4_K, GGUF_TYPE_Q5_K,
                                        GGUF_TYPE_Q6_K};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

typedef struct isa_case {
    enum kernels_isa isa;
    kq_impl (*impl)(uint32_t type);
} isa_case;

static const isa_case isas[] = {
    {KERNELS_ISA_AVX512, kq_kquant_avx512},
    {KERNELS_ISA_AVX_VNNI, kq_kquant_avx_vnni},
};

/* This CPU and build run the implementation (the AVX-VNNI one needs only its own
 * instructions, not the AVX-512 ones). */
static bool runs_here(const isa_case *isa)
{
    return kernels_isa_available(isa->isa) && isa->impl(GGUF_TYPE_Q4_K).dot != NULL;
}

/* Weights as a model has them: random normal values through the reference quantizer. */
static void *quantized_row(el_rng *rng, uint32_t type, int64_t n)
{
    float *f = malloc((size_t)n * sizeof(float));
    void *w = malloc(gguf_row_size(type, n));
    for (int64_t k = 0; k < n; k++)
        f[k] = 0.02f * el_rng_normal(rng);
    kq_ops_kquant(type)->quant(f, w, n);
    free(f);
    return w;
}

/* Every code and scale at its largest (all bits set) with sane super-block scales:
 * the integer sums at their bounds. */
static void *extreme_row(uint32_t type, int64_t n)
{
    const size_t bytes = gguf_row_size(type, n);
    uint8_t *w = malloc(bytes);
    memset(w, 0xFF, bytes);
    const size_t block = gguf_type_get(type)->type_size;
    const uint16_t d = el_f32_to_fp16(0.001f), dmin = el_f32_to_fp16(0.0005f);
    for (size_t off = 0; off < bytes; off += block) {
        switch (type) {
        case GGUF_TYPE_Q2_K:
            memcpy(w + off + offsetof(kq_block_q2_K, d), &d, 2);
            memcpy(w + off + offsetof(kq_block_q2_K, dmin), &dmin, 2);
            break;
        case GGUF_TYPE_Q3_K:
            memcpy(w + off + offsetof(kq_block_q3_K, d), &d, 2);
            break;
        case GGUF_TYPE_Q4_K:
            memcpy(w + off + offsetof(kq_block_q4_K, d), &d, 2);
            memcpy(w + off + offsetof(kq_block_q4_K, dmin), &dmin, 2);
            break;
        case GGUF_TYPE_Q5_K:
            memcpy(w + off + offsetof(kq_block_q5_K, d), &d, 2);
            memcpy(w + off + offsetof(kq_block_q5_K, dmin), &dmin, 2);
            break;
        default:
            memcpy(w + off + offsetof(kq_block_q6_K, d), &d, 2);
            break;
        }
    }
    return w;
}

/* The t8 activations: the reference quantizer's scale and values, the values
 * moved to the documented places, the sums premultiplied by the scale. */
static void test_t8_layout(void)
{
    const int64_t n = 1024;
    el_rng rng;
    el_rng_seed(&rng, 77);
    float x[1024];
    for (int64_t k = 0; k < n; k++)
        x[k] = el_rng_normal(&rng);
    x[300] = 0; /* a block that is not all nonzero */
    kq_block_q8_K ref[4];
    kq_block_q8_K_t8 t8[4];
    CHECK_EQ_INT(kq_q8_k_t8_row_bytes(n), sizeof t8);
    kq_ops_kquant(GGUF_TYPE_Q8_K)->quant(x, ref, n);
    kq_quantize_q8_k_t8_avx2(x, t8, n);
    for (int i = 0; i < 4; i++) {
        CHECK(memcmp(&ref[i].d, &t8[i].d, sizeof ref[i].d) == 0);
        for (int j = 0; j < 16; j++)
            CHECK(t8[i].bsums_d[j] == ref[i].d * (float)ref[i].bsums[j]);
        int bad = 0;
        for (int s = 0; s < 8; s++)
            for (int g = 0; g < 4; g++)
                for (int t = 0; t < 8; t++)
                    bad += t8[i].qs[64 * g + 8 * s + t] != ref[i].qs[32 * s + 8 * g + t];
        CHECK_EQ_INT(bad, 0);
    }
}

/* One weight row against one activation row: the ISA's dot (t8 activations) and the
 * scalar dot (reference activations) both within float rounding of the exact
 * product of the dequantized values, relative to sum |w x|. */
static void check_dot(const isa_case *isa, uint32_t type, const void *w, const float *x, int64_t n)
{
    const kq_impl impl = isa->impl(type);
    const kq_type_ops *ops = kq_ops_kquant(type);
    const size_t x_bytes = kq_act_row_bytes(GGUF_TYPE_Q8_K, n);
    void *xq = malloc(x_bytes), *xt = malloc(impl.act_row_bytes(n));
    float *wf = malloc((size_t)n * sizeof(float)), *xf = malloc((size_t)n * sizeof(float));
    kq_ops_kquant(GGUF_TYPE_Q8_K)->quant(x, xq, n);
    impl.act_convert(x, xt, n);
    ops->scalar.dequant(w, wf, n);
    kq_ops_kquant(GGUF_TYPE_Q8_K)->scalar.dequant(xq, xf, n);
    double ref = 0, magnitude = 0;
    for (int64_t k = 0; k < n; k++) {
        ref += (double)wf[k] * xf[k];
        magnitude += fabs((double)wf[k] * xf[k]);
    }
    const double tol = 2e-6 * magnitude + 1e-30;
    float scalar = NAN, fast = NAN;
    ops->scalar.dot(n, w, xq, &scalar);
    impl.dot(n, w, xt, &fast);
    CHECKF(fabs((double)scalar - ref) <= tol, "%s n %lld: scalar %.9g vs exact %.9g (tol %.3g)",
           gguf_type_get(type)->name, (long long)n, scalar, ref, tol);
    CHECKF(fabs((double)fast - ref) <= tol, "%s %s n %lld: %.9g vs exact %.9g (tol %.3g)", kernels_isa_name(isa->isa),
           gguf_type_get(type)->name, (long long)n, fast, ref, tol);
    free(xq);
    free(xt);
    free(wf);
    free(xf);
}

static void test_dot(void)
{
    const int64_t lengths[] = {256, 512, 2304, 16384};
    el_rng rng;
    el_rng_seed(&rng, 4242);
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!runs_here(&isas[i])) {
            fprintf(stderr, "      %s: not on this CPU or not compiled\n", kernels_isa_name(isas[i].isa));
            continue;
        }
        for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
            if (!isas[i].impl(weight_types[t]).dot)
                continue;
            for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
                const int64_t n = lengths[l];
                float *x = malloc((size_t)n * sizeof(float));
                for (int rep = 0; rep < 3; rep++) {
                    for (int64_t k = 0; k < n; k++)
                        x[k] = el_rng_normal(&rng);
                    void *w = quantized_row(&rng, weight_types[t], n);
                    check_dot(&isas[i], weight_types[t], w, x, n);
                    free(w);
                }
                /* extreme codes against activations all at -127, then all at +127 */
                void *w = extreme_row(weight_types[t], n);
                for (int sign = -1; sign <= 1; sign += 2) {
                    for (int64_t k = 0; k < n; k++)
                        x[k] = (float)sign;
                    check_dot(&isas[i], weight_types[t], w, x, n);
                }
                free(w);
                free(x);
            }
        }
    }
}

/* Every tile shape gives, bit for bit, the dot product of each (row, column). */
static void test_tile(void)
{
    enum { ROWS = 4, COLS = 17 };
    const int64_t n = 2304; /* nine blocks: kernels that work in stretches of blocks end mid-stretch */
    el_rng rng;
    el_rng_seed(&rng, 999);
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
        if (!runs_here(&isas[i]))
            continue;
        for (size_t t = 0; t < N_WEIGHT_TYPES; t++) {
            const kq_impl impl = isas[i].impl(weight_types[t]);
            if (!impl.dot_tile)
                continue;
            const size_t w_stride = gguf_row_size(weight_types[t], n) + 40;
            const size_t x_stride = impl.act_row_bytes(n) + 64;
            uint8_t *w = calloc(ROWS, w_stride), *xt = calloc(COLS, x_stride);
            for (int r = 0; r < ROWS; r++) {
                void *row = quantized_row(&rng, weight_types[t], n);
                memcpy(w + r * w_stride, row, gguf_row_size(weight_types[t], n));
                free(row);
            }
            float x[2304];
            for (int c = 0; c < COLS; c++) {
                for (int64_t k = 0; k < n; k++)
                    x[k] = el_rng_normal(&rng);
                impl.act_convert(x, xt + c * x_stride, n);
            }
            const int max_cols = impl.tile_cols > 0 ? impl.tile_cols : 4;
            for (int n_rows = 1; n_rows <= ROWS; n_rows++)
                for (int n_cols = 1; n_cols <= max_cols && n_cols <= COLS; n_cols++) {
                    const int64_t y_stride = ROWS + 3;
                    float y[COLS * (ROWS + 3)];
                    for (size_t k = 0; k < sizeof y / sizeof y[0]; k++)
                        y[k] = -1234.5f;
                    impl.dot_tile(n, w, w_stride, n_rows, xt, x_stride, n_cols, y, y_stride);
                    int bad = 0;
                    for (int c = 0; c < COLS; c++)
                        for (int r = 0; r < y_stride; r++) {
                            float expect = -1234.5f;
                            if (c < n_cols && r < n_rows)
                                impl.dot(n, w + r * w_stride, xt + c * x_stride, &expect);
                            bad += memcmp(&y[c * y_stride + r], &expect, sizeof expect) != 0;
                        }
                    CHECKF(bad == 0, "%s %s tile %dx%d: %d values differ", kernels_isa_name(isas[i].isa),
                           gguf_type_get(weight_types[t])->name, n_rows, n_cols, bad);
                }
            free(w);
            free(xt);
        }
    }
}

int main(void)
{
    kernels_init();
    RUN(test_t8_layout);
    RUN(test_dot);
    RUN(test_tile);
    return test_summary();
}
