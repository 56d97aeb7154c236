/* Vector operations: each against a direct (double precision) evaluation of its
 * formula, then every implementation against the scalar one on odd lengths. */
#include <stdint.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "kernels/kernels.h"
#include "test.h"

enum { MAXN = 1031 };
static const int64_t lengths[] = {1, 7, 8, 15, 16, 33, 100, 257, MAXN};

static void fill(el_rng *rng, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = el_rng_normal(rng) * scale;
}

static double gelu_tanh_ref(double x)
{
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * x * (1.0 + 0.044715 * x * x)));
}

static void test_rmsnorm(void)
{
    el_rng rng;
    el_rng_seed(&rng, 1);
    float x[MAXN], w[MAXN], y[MAXN];
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        fill(&rng, x, n, 2.0f);
        fill(&rng, w, n, 1.0f);
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)x[i] * x[i];
        double inv = 1.0 / sqrt(ss / (double)n + 1e-6);
        kernels_rmsnorm(y, x, w, n, 1e-6f);
        int bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += fabs(y[i] - x[i] * inv * w[i]) > 1e-5 * fabs(x[i] * inv * w[i]) + 1e-6;
        CHECKF(bad == 0, "n=%lld", (long long)n);
        memcpy(y, x, sizeof(float) * (size_t)n);
        kernels_rmsnorm(y, y, NULL, n, 1e-6f); /* in place, no weight */
        bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += fabs(y[i] - x[i] * inv) > 1e-5 * fabs(x[i] * inv) + 1e-6;
        CHECKF(bad == 0, "in place n=%lld", (long long)n);
    }
}

static void test_geglu(void)
{
    el_rng rng;
    el_rng_seed(&rng, 2);
    float g[MAXN], u[MAXN], x[MAXN];
    fill(&rng, x, MAXN, 4.0f);
    x[0] = -10.0f, x[1] = 10.0f, x[2] = -12.5f, x[3] = 30.0f, x[4] = 0.0f, x[5] = -9.99f;
    fill(&rng, u, MAXN, 1.0f);
    memcpy(g, x, sizeof g);
    kernels_geglu(g, u, MAXN);
    int bad = 0;
    for (int i = 0; i < MAXN; i++) {
        double want = x[i] <= -10 ? 0.0 : x[i] >= 10 ? x[i] : gelu_tanh_ref(x[i]);
        want *= u[i];
        /* llama.cpp looks GELU up in a half-precision table: input and output rounded */
        double tol = 2e-3 * fabs(want) + 1e-3 * fabs(x[i] * u[i]) + 1e-7;
        bad += !(fabs(g[i] - want) <= tol);
    }
    CHECKF(bad == 0, "%d values", bad);
    CHECK(g[0] == 0.0f && g[2] == 0.0f);
    CHECK(g[1] == 10.0f * u[1] && g[3] == 30.0f * u[3]);
}

static void test_swiglu(void)
{
    el_rng rng;
    el_rng_seed(&rng, 3);
    float g[MAXN], u[MAXN], x[MAXN];
    fill(&rng, x, MAXN, 5.0f);
    fill(&rng, u, MAXN, 1.0f);
    memcpy(g, x, sizeof g);
    kernels_swiglu(g, u, MAXN);
    int bad = 0;
    for (int i = 0; i < MAXN; i++) {
        double want = x[i] / (1.0 + exp(-(double)x[i])) * u[i];
        bad += !(fabs(g[i] - want) <= 1e-5 * fabs(want) + 1e-7);
    }
    CHECKF(bad == 0, "%d values", bad);
}

static void test_elementwise(void)
{
    el_rng rng;
    el_rng_seed(&rng, 4);
    float x[MAXN], y[MAXN], y0[MAXN];
    fill(&rng, x, MAXN, 3.0f);
    fill(&rng, y0, MAXN, 30.0f);
    memcpy(y, y0, sizeof y);
    kernels_add(y, x, MAXN);
    int bad = 0;
    for (int i = 0; i < MAXN; i++)
        bad += y[i] != y0[i] + x[i];
    CHECK(bad == 0);
    memcpy(y, y0, sizeof y);
    kernels_scale(y, 0.125f, MAXN);
    bad = 0;
    for (int i = 0; i < MAXN; i++)
        bad += y[i] != y0[i] * 0.125f;
    CHECK(bad == 0);
    memcpy(y, y0, sizeof y);
    kernels_softcap(y, 30.0f, MAXN);
    bad = 0;
    for (int i = 0; i < MAXN; i++) {
        double want = 30.0 * tanh(y0[i] / 30.0);
        bad += !(fabs(y[i] - want) <= 2e-6 * fabs(want) + 1e-6);
        bad += fabsf(y[i]) > 30.0f;
    }
    CHECKF(bad == 0, "softcap: %d", bad);
}

static void test_softmax(void)
{
    el_rng rng;
    el_rng_seed(&rng, 5);
    float y[MAXN], x[MAXN];
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        fill(&rng, x, n, 8.0f);
        if (n > 3)
            x[2] = -INFINITY; /* masked */
        memcpy(y, x, sizeof(float) * (size_t)n);
        kernels_softmax(y, n);
        double max = -INFINITY, sum = 0;
        for (int64_t i = 0; i < n; i++)
            max = fmax(max, x[i]);
        for (int64_t i = 0; i < n; i++)
            sum += exp((double)x[i] - max);
        int bad = 0;
        double total = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = exp((double)x[i] - max) / sum;
            bad += !(fabs(y[i] - want) <= 1e-5 * want + 1e-9);
            total += y[i];
        }
        CHECKF(bad == 0, "n=%lld: %d", (long long)n, bad);
        CHECK_NEAR(total, 1.0, 1e-5);
        if (n > 3)
            CHECK(y[2] == 0.0f);
    }
}

static void test_rope(void)
{
    enum { HEAD = 16, NROT = 12, HEADS = 3 };
    float c[NROT / 2], s[NROT / 2];
    kernels_rope_angles(77, 10000.0f, 0.5f, NROT, c, s);
    for (int i = 0; i < NROT / 2; i++) {
        double theta = 77 * 0.5 * pow(10000.0, -2.0 * i / NROT);
        CHECK_NEAR(c[i], cos(theta), 2e-5);
        CHECK_NEAR(s[i], sin(theta), 2e-5);
    }
    kernels_rope_angles(0, 10000.0f, 1.0f, NROT, c, s);
    CHECK(c[0] == 1.0f && s[NROT / 2 - 1] == 0.0f);

    kernels_rope_angles(5, 10000.0f, 1.0f, NROT, c, s);
    float x[HEADS * HEAD], neox[HEADS * HEAD], norm[HEADS * HEAD];
    for (int i = 0; i < HEADS * HEAD; i++)
        x[i] = (float)(i % 7) - 3.0f + 0.25f * (float)i;
    memcpy(neox, x, sizeof x);
    memcpy(norm, x, sizeof x);
    kernels_rope(neox, HEADS, HEAD, NROT, c, s, true);
    kernels_rope(norm, HEADS, HEAD, NROT, c, s, false);
    for (int h = 0; h < HEADS; h++) {
        const float *v = x + h * HEAD;
        for (int i = 0; i < NROT / 2; i++) {
            CHECK_NEAR(neox[h * HEAD + i], v[i] * c[i] - v[i + NROT / 2] * s[i], 1e-5);
            CHECK_NEAR(neox[h * HEAD + i + NROT / 2], v[i] * s[i] + v[i + NROT / 2] * c[i], 1e-5);
            CHECK_NEAR(norm[h * HEAD + 2 * i], v[2 * i] * c[i] - v[2 * i + 1] * s[i], 1e-5);
            CHECK_NEAR(norm[h * HEAD + 2 * i + 1], v[2 * i] * s[i] + v[2 * i + 1] * c[i], 1e-5);
        }
        for (int i = NROT; i < HEAD; i++) { /* dims past n_rot untouched */
            CHECK(neox[h * HEAD + i] == v[i]);
            CHECK(norm[h * HEAD + i] == v[i]);
        }
    }
}

static void test_f16(void)
{
    el_rng rng;
    el_rng_seed(&rng, 6);
    float x[MAXN], back[MAXN], y[MAXN], y0[MAXN];
    uint16_t h[MAXN], h2[MAXN];
    fill(&rng, x, MAXN, 100.0f);
    x[0] = 0.0f, x[1] = -0.0f, x[2] = 1e-7f, x[3] = 70000.0f, x[4] = -INFINITY, x[5] = 6.1e-5f;
    x[6] = 65519.0f, x[7] = 3e-8f, x[8] = 2.98e-8f;
    kernels_f32_to_f16(x, h, MAXN);
    int bad = 0;
    for (int i = 0; i < MAXN; i++)
        bad += h[i] != el_f32_to_fp16(x[i]);
    CHECKF(bad == 0, "f32->f16: %d", bad);
    for (int i = 0; i < MAXN; i++)
        h2[i] = (uint16_t)(el_rng_next(&rng) & 0xffff);
    kernels_f16_to_f32(h2, back, MAXN);
    bad = 0;
    for (int i = 0; i < MAXN; i++) {
        float want = el_fp16_to_f32(h2[i]);
        bad += !(el_f32_bits(back[i]) == el_f32_bits(want) || (isnan(want) && isnan(back[i])));
    }
    CHECKF(bad == 0, "f16->f32: %d", bad);

    fill(&rng, x, MAXN, 1.0f);
    kernels_f32_to_f16(x, h, MAXN);
    fill(&rng, x, MAXN, 1.0f);
    kernels_f32_to_f16(x, h2, MAXN);
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        double want = 0, mag = 0;
        for (int64_t i = 0; i < n; i++) {
            want += (double)el_fp16_to_f32(h[i]) * el_fp16_to_f32(h2[i]);
            mag += fabs((double)el_fp16_to_f32(h[i]) * el_fp16_to_f32(h2[i]));
        }
        CHECK_NEAR(kernels_dot_f16(h, h2, n), want, 1e-6 * mag + 1e-7);
        fill(&rng, y0, n, 1.0f);
        memcpy(y, y0, sizeof(float) * (size_t)n);
        kernels_axpy_f16(y, -0.75f, h, n);
        bad = 0;
        for (int64_t i = 0; i < n; i++)
            bad += !(fabs(y[i] - (y0[i] - 0.75 * el_fp16_to_f32(h[i]))) <= 1e-6);
        CHECKF(bad == 0, "axpy n=%lld", (long long)n);
    }
}

/* Runs every operation with the current implementation into out (MAXN floats per op). */
enum { N_OPS = 10 };
static void run_all(float out[N_OPS][MAXN], int64_t n, uint64_t seed)
{
    el_rng rng;
    el_rng_seed(&rng, seed);
    float x[MAXN], u[MAXN];
    uint16_t h[MAXN], h2[MAXN];
    fill(&rng, x, n, 3.0f);
    fill(&rng, u, n, 1.0f);
    memset(out, 0, sizeof(float) * N_OPS * MAXN);
    kernels_rmsnorm(out[0], x, u, n, 1e-5f);
    memcpy(out[1], x, sizeof(float) * (size_t)n);
    kernels_geglu(out[1], u, n);
    memcpy(out[2], x, sizeof(float) * (size_t)n);
    kernels_swiglu(out[2], u, n);
    memcpy(out[3], x, sizeof(float) * (size_t)n);
    kernels_softmax(out[3], n);
    memcpy(out[4], x, sizeof(float) * (size_t)n);
    kernels_softcap(out[4], 5.0f, n);
    memcpy(out[5], x, sizeof(float) * (size_t)n);
    kernels_add(out[5], u, n);
    kernels_scale(out[5], 1.5f, n);
    kernels_f32_to_f16(x, h, n);
    kernels_f16_to_f32(h, out[6], n);
    kernels_f32_to_f16(u, h2, n);
    out[7][0] = kernels_dot_f16(h, h2, n);
    out[7][1] = 0; /* magnitude: rounding differences scale with it, not with the result */
    for (int64_t i = 0; i < n; i++)
        out[7][1] += fabsf(el_fp16_to_f32(h[i]) * el_fp16_to_f32(h2[i]));
    memcpy(out[8], u, sizeof(float) * (size_t)n);
    kernels_axpy_f16(out[8], 0.3f, h, n);
    for (int64_t i = 0; i < n; i++)
        out[9][i] = (float)h[i];
}

static void isa_agrees(enum kernels_isa isa)
{
    static float a[N_OPS][MAXN], b[N_OPS][MAXN];
    static const char *names[N_OPS] = {"rmsnorm", "geglu", "swiglu", "softmax", "softcap",
                                       "add+scale", "f16 round trip", "dot_f16", "axpy_f16", "f32->f16"};
    /* relative tolerances: exact where the operation is exact */
    static const double tol[N_OPS] = {2e-6, 0, 4e-6, 4e-6, 4e-6, 0, 0, 2e-6, 0, 0};
    for (size_t l = 0; l < sizeof lengths / sizeof lengths[0]; l++) {
        int64_t n = lengths[l];
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        run_all(a, n, 50 + l);
        kernels_set_isa(isa, NULL);
        run_all(b, n, 50 + l);
        for (int op = 0; op < N_OPS; op++) {
            int bad = 0;
            if (op == 7) {
                bad += !(fabs(a[op][0] - b[op][0]) <= tol[op] * a[op][1] + 1e-7);
            } else {
                for (int64_t i = 0; i < n; i++)
                    bad += !(fabs(a[op][i] - b[op][i]) <= tol[op] * fabs(a[op][i]) + (tol[op] ? 1e-7 : 0));
            }
            CHECKF(bad == 0, "%s %s n=%lld: %d values differ", kernels_isa_name(isa), names[op], (long long)n, bad);
        }
    }
}

/* Scalar against each SIMD implementation this CPU runs. */
static void test_isa_agree(void)
{
    int tried = 0;
    for (int isa = KERNELS_ISA_SCALAR + 1; isa < KERNELS_ISA_COUNT; isa++) {
        if (!kernels_isa_available((enum kernels_isa)isa))
            continue;
        isa_agrees((enum kernels_isa)isa);
        tried++;
    }
    if (!tried)
        fprintf(stderr, "SKIP: no SIMD implementation runs on this CPU; scalar only\n");
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
}

int main(void)
{
    kernels_init();
    RUN(test_rmsnorm);
    RUN(test_geglu);
    RUN(test_swiglu);
    RUN(test_elementwise);
    RUN(test_softmax);
    RUN(test_rope);
    RUN(test_f16);
    RUN(test_isa_agree);
    return test_summary();
}
