/* Block layouts against the golden files made by the gguf Python package:
 * dequantization bit-exact, quantization byte-exact, for every implementation
 * this CPU has. Also round-trip error bounds on random data. */
#include <stdint.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"

enum { GOLDEN_ROWS = 4, GOLDEN_COLS = 512 };

static void *read_golden(const char *type_name, const char *suffix, size_t expect_bytes)
{
    char rel[256];
    snprintf(rel, sizeof rel, "golden/quant/%s.%s", type_name, suffix);
    const char *path = test_shared_path(rel);
    if (!path)
        return NULL;
    FILE *f = fopen(path, "rb");
    CHECKF(f != NULL, "cannot open %s", path);
    if (!f)
        return NULL;
    void *buf = malloc(expect_bytes + 1);
    size_t got = fread(buf, 1, expect_bytes + 1, f);
    fclose(f);
    CHECKF(got == expect_bytes, "%s: %zu bytes, expected %zu", path, got, expect_bytes);
    if (got != expect_bytes) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int available_isas(enum kernels_isa out[KERNELS_ISA_COUNT])
{
    int n = 0;
    for (int isa = 0; isa < KERNELS_ISA_COUNT; isa++)
        if (kernels_isa_available((enum kernels_isa)isa))
            out[n++] = (enum kernels_isa)isa;
    return n;
}

static void check_golden_type(const char *name, uint32_t type, bool has_input)
{
    size_t row_bytes = gguf_row_size(type, GOLDEN_COLS);
    CHECK(row_bytes > 0);
    uint8_t *blocks = read_golden(name, "blocks", row_bytes * GOLDEN_ROWS);
    float *want = read_golden(name, "dequant.f32", sizeof(float) * GOLDEN_ROWS * GOLDEN_COLS);
    float *input = has_input ? read_golden(name, "input.f32", sizeof(float) * GOLDEN_ROWS * GOLDEN_COLS)
                             : NULL;
    if (!blocks || !want || (has_input && !input))
        goto out;

    enum kernels_isa isas[KERNELS_ISA_COUNT];
    int n_isa = available_isas(isas);
    float got[GOLDEN_COLS];
    uint8_t *q = malloc(row_bytes);
    for (int k = 0; k < n_isa; k++) {
        CHECK(kernels_set_isa(isas[k], NULL) == 0);
        for (int r = 0; r < GOLDEN_ROWS; r++) {
            CHECK(kernels_dequantize_row(type, blocks + r * row_bytes, got, GOLDEN_COLS) == 0);
            int mismatches = 0;
            for (int j = 0; j < GOLDEN_COLS; j++)
                mismatches += el_f32_bits(got[j]) != el_f32_bits(want[r * GOLDEN_COLS + j]);
            CHECKF(mismatches == 0, "%s %s row %d: %d values differ", name,
                   kernels_isa_name(isas[k]), r, mismatches);
            if (!input)
                continue;
            CHECK(kernels_quantize_row(type, input + r * GOLDEN_COLS, q, GOLDEN_COLS) == 0);
            size_t diff = 0;
            for (size_t b = 0; b < row_bytes; b++)
                diff += q[b] != blocks[r * row_bytes + b];
            CHECKF(diff == 0, "%s row %d: %zu quantized bytes differ", name, r, diff);
        }
    }
    free(q);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
out:
    free(blocks);
    free(want);
    free(input);
}

static void test_golden_float_types(void)
{
    check_golden_type("f16", GGUF_TYPE_F16, true);
    check_golden_type("bf16", GGUF_TYPE_BF16, true);
}

static void test_golden_q4_0(void) { check_golden_type("q4_0", GGUF_TYPE_Q4_0, true); }
static void test_golden_q4_1(void) { check_golden_type("q4_1", GGUF_TYPE_Q4_1, true); }
static void test_golden_q5_0(void) { check_golden_type("q5_0", GGUF_TYPE_Q5_0, true); }
static void test_golden_q5_1(void) { check_golden_type("q5_1", GGUF_TYPE_Q5_1, true); }
static void test_golden_q8_0(void) { check_golden_type("q8_0", GGUF_TYPE_Q8_0, true); }

/* Quantize then dequantize random data: the error of each value is bounded by
 * the block's step (half a step for rounding types, a full step for truncating). */
static void check_round_trip(uint32_t type, double max_rel_rms)
{
    enum { N = 1024 };
    float x[N], y[N];
    uint8_t q[N * 4];
    el_rng rng;
    el_rng_seed(&rng, 42 + type);
    for (int i = 0; i < N; i++)
        x[i] = el_rng_normal(&rng) * (i < N / 2 ? 0.01f : 3.0f);
    CHECK(kernels_quantize_row(type, x, q, N) == 0);
    CHECK(kernels_dequantize_row(type, q, y, N) == 0);
    double err = 0, ref = 0;
    for (int i = 0; i < N; i++) {
        err += (double)(x[i] - y[i]) * (x[i] - y[i]);
        ref += (double)x[i] * x[i];
    }
    CHECKF(sqrt(err / ref) <= max_rel_rms, "type %u: relative rms error %g", type, sqrt(err / ref));
}

static void test_round_trip(void)
{
    check_round_trip(GGUF_TYPE_F32, 0.0);
    check_round_trip(GGUF_TYPE_F16, 1e-3);
    check_round_trip(GGUF_TYPE_BF16, 8e-3);
    check_round_trip(GGUF_TYPE_Q8_0, 1e-2);
    check_round_trip(GGUF_TYPE_Q5_0, 5e-2);
    check_round_trip(GGUF_TYPE_Q5_1, 5e-2);
    check_round_trip(GGUF_TYPE_Q4_0, 1.2e-1);
    check_round_trip(GGUF_TYPE_Q4_1, 1.2e-1);
}

/* Zero blocks quantize to zero scales and dequantize to zeros, not NaN. */
static void test_zero_block(void)
{
    const uint32_t types[] = {GGUF_TYPE_Q4_0, GGUF_TYPE_Q4_1, GGUF_TYPE_Q5_0, GGUF_TYPE_Q5_1,
                              GGUF_TYPE_Q8_0};
    float x[64] = {0}, y[64];
    uint8_t q[64 * 2];
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        CHECK(kernels_quantize_row(types[t], x, q, 64) == 0);
        CHECK(kernels_dequantize_row(types[t], q, y, 64) == 0);
        int bad = 0;
        for (int i = 0; i < 64; i++)
            bad += y[i] != 0.0f;
        CHECKF(bad == 0, "type %u", types[t]);
    }
}

static void test_rejects_bad_lengths(void)
{
    float x[64] = {0};
    uint8_t q[256];
    CHECK(kernels_quantize_row(GGUF_TYPE_Q4_0, x, q, 33) == -1);
    CHECK(kernels_dequantize_row(GGUF_TYPE_Q8_0, q, x, 31) == -1);
    CHECK(kernels_dequantize_row(GGUF_TYPE_COUNT + 5, q, x, 32) == -1);
    CHECK(!kernels_can_dequantize(GGUF_TYPE_I32));
    CHECK(!kernels_can_quantize(GGUF_TYPE_Q2_K) || kernels_can_dequantize(GGUF_TYPE_Q2_K));
    CHECK(kernels_can_matmul(GGUF_TYPE_Q4_0));
    CHECK(kernels_can_matmul(GGUF_TYPE_BF16));
    CHECK(!kernels_can_matmul(GGUF_TYPE_F64));
}

int main(void)
{
    kernels_init();
    RUN(test_golden_float_types);
    RUN(test_golden_q4_0);
    RUN(test_golden_q4_1);
    RUN(test_golden_q5_0);
    RUN(test_golden_q5_1);
    RUN(test_golden_q8_0);
    RUN(test_round_trip);
    RUN(test_zero_block);
    RUN(test_rejects_bad_lengths);
    return test_summary();
}
