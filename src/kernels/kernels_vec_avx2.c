/* AVX2/FMA/F16C vector operations. Where the scalar reference is exact (add,
 * scale, half conversions, the GELU table, axpy) these give identical bits;
 * exp and tanh are vectorized approximations good to a few ulp. Tails shorter
 * than a vector go to the scalar reference. */
#include "kernels/kernels_internal.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>
#include <math.h>

#include "kernels/kernels_exp_avx2.h"

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline double hsum_pd(__m256d v)
{
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

static inline float hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* tanh: an odd Taylor polynomial near 0 (where 1 - 2/(e^2x + 1) would cancel),
 * that formula elsewhere. */
static inline __m256 tanh8(__m256 x)
{
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    __m256 ax = _mm256_andnot_ps(sign_bit, x);
    __m256 big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                               _mm256_div_ps(_mm256_set1_ps(2.0f),
                                             _mm256_add_ps(exp8(_mm256_add_ps(ax, ax)), _mm256_set1_ps(1.0f))));
    __m256 z2 = _mm256_mul_ps(ax, ax);
    __m256 p = _mm256_set1_ps(-1382.0f / 155925.0f);
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(62.0f / 2835.0f));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(-17.0f / 315.0f));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(2.0f / 15.0f));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(-1.0f / 3.0f));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z2), ax, ax);
    __m256 t = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.3f), _CMP_LT_OQ));
    return _mm256_or_ps(t, _mm256_and_ps(x, sign_bit));
}

static void rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    /* squares in float, summed in double, as the reference does */
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 sq = _mm256_mul_ps(v, v);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double sum = hsum_pd(_mm256_add_pd(s0, s1));
    for (int64_t j = i; j < n; j++)
        sum += (double)(x[j] * x[j]);
    float mean = (float)(sum / (double)n);
    float scale = 1.0f / sqrtf(mean + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
        if (w)
            v = _mm256_mul_ps(v, _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, v);
    }
    for (; i < n; i++)
        y[i] = w ? (x[i] * scale) * w[i] : x[i] * scale;
}

static void geglu(float *gate, const float *up, int64_t n)
{
    const int *table = (const int *)(const void *)kv_gelu_f16_table;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256 u = _mm256_loadu_ps(up + i);
        __m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT));
        /* 32-bit gather at 2-byte steps: the entry is the low half of each lane */
        __m256i g = _mm256_and_si256(_mm256_i32gather_epi32(table, idx, 2), _mm256_set1_epi32(0xffff));
        __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(g, g), 0x08);
        __m256 gelu = _mm256_cvtph_ps(_mm256_castsi256_si128(packed));
        __m256 out = _mm256_blendv_ps(_mm256_mul_ps(gelu, u), _mm256_mul_ps(x, u),
                                      _mm256_cmp_ps(x, _mm256_set1_ps(10.0f), _CMP_GE_OQ));
        out = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(-10.0f), _CMP_LE_OQ), out);
        _mm256_storeu_ps(gate + i, out);
    }
    if (i < n)
        kv_ops_scalar()->geglu(gate + i, up + i, n - i);
}

static void swiglu(float *gate, const float *up, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        __m256 silu = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(silu, _mm256_loadu_ps(up + i)));
    }
    if (i < n)
        kv_ops_scalar()->swiglu(gate + i, up + i, n - i);
}

static void add(float *y, const float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    if (i < n)
        kv_ops_scalar()->add(y + i, x + i, n - i);
}

static void scale(float *y, float s, int64_t n)
{
    __m256 vs = _mm256_set1_ps(s);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), vs));
    if (i < n)
        kv_ops_scalar()->scale(y + i, s, n - i);
}

static void softcap(float *y, float cap, int64_t n)
{
    __m256 inv = _mm256_set1_ps(1.0f / cap), vc = _mm256_set1_ps(cap);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(tanh8(_mm256_mul_ps(_mm256_loadu_ps(y + i), inv)), vc));
    if (i < n)
        kv_ops_scalar()->softcap(y + i, cap, n - i);
}

static void softmax(float *y, int64_t n)
{
    if (n < 8) {
        kv_ops_scalar()->softmax(y, n);
        return;
    }
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(y + i));
    float max = hmax(vmax);
    for (; i < n; i++)
        max = fmaxf(max, y[i]);
    __m256 vm = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(y + i), vm));
        _mm256_storeu_ps(y + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double sum = hsum_pd(_mm256_add_pd(s0, s1));
    for (; i < n; i++) {
        y[i] = expf(y[i] - max);
        sum += (double)y[i];
    }
    float inv = (float)(1.0 / sum);
    scale(y, inv, n);
}

static void f32_to_f16(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    if (i < n)
        kv_ops_scalar()->f32_to_f16(x + i, y + i, n - i);
}

static void f16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    if (i < n)
        kv_ops_scalar()->f16_to_f32(x + i, y + i, n - i);
}

static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static float dot_f16(const uint16_t *a, const uint16_t *b, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(load_f16(a + i), load_f16(b + i), a0);
        a1 = _mm256_fmadd_ps(load_f16(a + i + 8), load_f16(b + i + 8), a1);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(load_f16(a + i), load_f16(b + i), a0);
    float sum = hsum(_mm256_add_ps(a0, a1));
    if (i < n)
        sum += kv_ops_scalar()->dot_f16(a + i, b + i, n - i);
    return sum;
}

static void axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
    /* product then sum, unfused, as the reference rounds */
    __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(va, load_f16(x + i))));
    if (i < n)
        kv_ops_scalar()->axpy_f16(y + i, a, x + i, n - i);
}

static const kv_ops avx2_ops = {
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

const kv_ops *kv_ops_avx2(void)
{
    return &avx2_ops;
}

#else /* no AVX2 code on this target */

const kv_ops *kv_ops_avx2(void)
{
    return NULL;
}

#endif
