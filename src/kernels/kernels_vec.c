/* Scalar reference vector operations, computed as llama.cpp's CPU backend does
 * (same order of operations, same GELU table, same rotary angle recurrence), and
 * the rotary embedding itself, which is cheap enough to need no SIMD version. */
#include <math.h>
#include <string.h>

#include "base/fp16.h"
#include "kernels/kernels_internal.h"

uint16_t kv_gelu_f16_table[(1 << 16) + 2];

static float gelu_tanh(float x)
{
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    const float coef_a = 0.044715f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + coef_a * x * x)));
}

void kv_init_tables(void)
{
    for (uint32_t h = 0; h < (1u << 16); h++)
        kv_gelu_f16_table[h] = el_f32_to_fp16(gelu_tanh(el_fp16_to_f32((uint16_t)h)));
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(x[i] * x[i]);
    float mean = (float)(sum / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    if (w) {
        for (int64_t i = 0; i < n; i++)
            y[i] = (x[i] * scale) * w[i];
    } else {
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] * scale;
    }
}

static void geglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        if (x <= -10.0f)
            gate[i] = 0.0f;
        else if (x >= 10.0f)
            gate[i] = x * up[i];
        else
            gate[i] = el_fp16_to_f32(kv_gelu_f16_table[el_f32_to_fp16(x)]) * up[i];
    }
}

static void swiglu(float *gate, const float *up, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float x = gate[i];
        gate[i] = x / (1.0f + expf(-x)) * up[i];
    }
}

static void add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

static void scale(float *y, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] *= s;
}

/* llama.cpp scales by 1/cap, takes tanh, scales by cap: three ops, same rounding. */
static void softcap(float *y, float cap, int64_t n)
{
    float inv = 1.0f / cap;
    for (int64_t i = 0; i < n; i++)
        y[i] = tanhf(y[i] * inv) * cap;
}

static void softmax(float *y, int64_t n)
{
    if (n <= 0)
        return;
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        max = fmaxf(max, y[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = expf(y[i] - max);
        sum += (double)y[i];
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        y[i] *= inv;
}

static void f32_to_f16(const float *x, uint16_t *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = el_f32_to_fp16(x[i]);
}

static void f16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = el_fp16_to_f32(x[i]);
}

static float dot_f16(const uint16_t *a, const uint16_t *b, int64_t n)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += (double)(el_fp16_to_f32(a[i]) * el_fp16_to_f32(b[i]));
    return (float)sum;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * el_fp16_to_f32(x[i]);
}

static const kv_ops scalar_ops = {
    .rmsnorm = rmsnorm,
    .geglu = geglu,
    .swiglu = swiglu,
    .add = add,
    .scale = scale,
    .softcap = softcap,
    .softmax = softmax,
    .f32_to_f16 = f32_to_f16,
    .f16_to_f32 = f16_to_f32,
    .dot_f16 = dot_f16,
    .axpy_f16 = axpy_f16,
};

const kv_ops *kv_ops_scalar(void)
{
    return &scalar_ops;
}

/* ---- rotary position embedding ---------------------------------------------------- */

/* ggml builds theta_i = pos * base^(-2i/n_rot) by repeated multiplication with
 * theta_scale (not a fresh pow per dim); the float roundings of that recurrence
 * are part of the reference numbers, so follow it. */
void kernels_rope_angles(int32_t pos, float freq_base, float freq_scale, int n_rot, float *cos_out,
                         float *sin_out)
{
    const float theta_scale = powf(freq_base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i = 0; i < n_rot / 2; i++) {
        float angle = freq_scale * theta;
        cos_out[i] = cosf(angle);
        sin_out[i] = sinf(angle);
        theta *= theta_scale;
    }
}

void kernels_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cos_v,
                  const float *sin_v, bool neox)
{
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int i0 = neox ? i : 2 * i;
            int i1 = neox ? i + half : 2 * i + 1;
            float x0 = v[i0], x1 = v[i1];
            v[i0] = x0 * cos_v[i] - x1 * sin_v[i];
            v[i1] = x0 * sin_v[i] + x1 * cos_v[i];
        }
    }
}
