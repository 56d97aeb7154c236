/* AVX-512 versions of the float weight types' dot products (F32 x F32, F16 x F16,
 * BF16 x F32; the same pairings as the scalar reference, so that results differ from it
 * only in the order of float sums): 16 values per vector, masked loads for a row's last
 * values instead of a scalar tail, and a tile of up to 4 rows x 6 tokens whose 24
 * accumulators stay in registers (the AVX2 tile keeps 8: 4 rows x 2 tokens). A prompt's
 * matmul on these types is bound by the FMAs and the conversions, which share the two
 * 512-bit ports: so F16 activations are rounded to F16 once per matmul but kept as
 * floats (their own layout, act_convert), not widened again for every row, and a
 * converted weight vector serves 6 tokens. BF16 weights meet BF16 activations (as in
 * llama.cpp), so one vdpbf16ps multiplies 32 pairs with no conversion at all; on an
 * AVX-512 CPU without AVX512_BF16 the BF16 type falls back to AVX2. */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

enum { LANES = 16, TILE_ROWS = 4, TILE_TOKENS = 6 };

/* The first `live` of 16 lanes (live >= 16: all). */
static inline __mmask16 lanes(int64_t live)
{
    return live >= LANES ? (__mmask16)0xffff : (__mmask16)((1u << live) - 1);
}

/* 16 values of each element type from index k as floats; lanes outside m are 0. */
static inline __m512 load_f32(const void *p, int64_t k, __mmask16 m)
{
    return _mm512_maskz_loadu_ps(m, (const float *)p + k);
}

static inline __m512 load_f16(const void *p, int64_t k, __mmask16 m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)p + k));
}


/* F16 activations: each value rounded to F16 (to nearest even, as the scalar quantizer
 * does) and stored back as a float. */
static void round_to_f16(const float *src, void *dst, int64_t n)
{
    float *out = dst;
    for (int64_t k = 0; k < n; k += LANES) {
        __mmask16 m = lanes(n - k);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_storeu_ps(out + k, m, _mm512_cvtph_ps(h));
    }
}

static size_t f16_act_row_bytes(int64_t n)
{
    return (size_t)n * sizeof(float);
}

#define DOT(fn, load_w, load_x)                                                              \
    static void fn(int64_t n, const void *w, const void *x, float *out)                      \
    {                                                                                        \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                          \
        const __mmask16 all = lanes(LANES);                                                  \
        int64_t k = 0;                                                                       \
        for (; k + 4 * LANES <= n; k += 4 * LANES) {                                         \
            a0 = _mm512_fmadd_ps(load_w(w, k, all), load_x(x, k, all), a0);                  \
            a1 = _mm512_fmadd_ps(load_w(w, k + 16, all), load_x(x, k + 16, all), a1);        \
            a2 = _mm512_fmadd_ps(load_w(w, k + 32, all), load_x(x, k + 32, all), a2);        \
            a3 = _mm512_fmadd_ps(load_w(w, k + 48, all), load_x(x, k + 48, all), a3);        \
        }                                                                                    \
        for (; k < n; k += LANES) {                                                          \
            __mmask16 m = lanes(n - k);                                                      \
            a0 = _mm512_fmadd_ps(load_w(w, k, m), load_x(x, k, m), a0);                      \
        }                                                                                    \
        *out = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }

DOT(dot_f32, load_f32, load_f32)
DOT(dot_f16, load_f16, load_f32)

/* Up to TILE_ROWS rows x nt tokens (nt a constant where inlined: a tile for 1 token
 * does 4 FMAs per step, not 24); missing rows repeat the last one (loaded, never stored).
 * A decode tile (up to 4 tokens: a step of a few streams) prefetches each row into L1
 * and, farther on, into L2 as the quantized tiles do (kq_plan_prefetch: on into the next
 * tile's rows); without it gemma3-1b BF16 decode read 51 % of the plain read bandwidth
 * (llama.cpp 67 %). A prompt tile reads its rows from cache. */
#define TILE_BODY(body, load_w, elem)                                                        \
    static inline __attribute__((always_inline)) void body(int64_t n, const uint8_t *const rows[], int n_rows, \
                                                           const uint8_t *x, size_t x_stride, int nt, float *y, \
                                                           int64_t y_stride, const kq_prefetch_plan *near, \
                                                           const kq_prefetch_plan *far)      \
    {                                                                                        \
        __m512 acc[TILE_ROWS][TILE_TOKENS];                                                  \
        for (int r = 0; r < TILE_ROWS; r++)                                                  \
            for (int c = 0; c < nt; c++)                                                     \
                acc[r][c] = _mm512_setzero_ps();                                             \
        for (int64_t k = 0; k < n; k += LANES) {                                             \
            __mmask16 m = lanes(n - k);                                                      \
            if (nt <= 4) {                                                                   \
                size_t at = (size_t)k * (elem), to_near = kq_prefetch_offset(near, k / LANES); \
                size_t to_far = kq_prefetch_offset(far, k / LANES);                          \
                for (int r = 0; r < TILE_ROWS; r++) {                                        \
                    _mm_prefetch((const char *)rows[r] + at + to_near, _MM_HINT_T0);         \
                    _mm_prefetch((const char *)rows[r] + at + to_far, _MM_HINT_T2);          \
                }                                                                            \
            }                                                                                \
            __m512 xv[TILE_TOKENS];                                                          \
            for (int c = 0; c < nt; c++)                                                     \
                xv[c] = load_f32(x + (size_t)c * x_stride, k, m);                            \
            for (int r = 0; r < TILE_ROWS; r++) {                                            \
                __m512 wv = load_w(rows[r], k, m);                                           \
                for (int c = 0; c < nt; c++)                                                 \
                    acc[r][c] = _mm512_fmadd_ps(wv, xv[c], acc[r][c]);                       \
            }                                                                                \
        }                                                                                    \
        for (int c = 0; c < nt; c++)                                                         \
            for (int r = 0; r < n_rows; r++)                                                 \
                y[c * y_stride + r] = _mm512_reduce_add_ps(acc[r][c]);                       \
    }

/* Every type's activations are floats here (F16's already rounded: round_to_f16). */
#define TILE(fn, body, load_w, elem)                                                         \
    TILE_BODY(body, load_w, elem)                                                            \
    static void fn(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,     \
                   size_t x_stride, int n_cols, float *y, int64_t y_stride)                  \
    {                                                                                        \
        const uint8_t *rows[TILE_ROWS];                                                      \
        for (int r = 0; r < TILE_ROWS; r++)                                                  \
            rows[r] = (const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride; \
        size_t row_bytes = (size_t)n * (elem), unit = (size_t)LANES * (elem);                \
        const kq_prefetch_plan near = kq_plan_prefetch(row_bytes, unit, TILE_ROWS * w_stride); \
        const kq_prefetch_plan far = kq_plan_prefetch_at(KQ_PREFETCH_FAR, row_bytes, unit, TILE_ROWS * w_stride); \
        switch (n_cols) {                                                                    \
        case 1: body(n, rows, n_rows, x, x_stride, 1, y, y_stride, &near, &far); break;      \
        case 2: body(n, rows, n_rows, x, x_stride, 2, y, y_stride, &near, &far); break;      \
        case 3: body(n, rows, n_rows, x, x_stride, 3, y, y_stride, &near, &far); break;      \
        case 4: body(n, rows, n_rows, x, x_stride, 4, y, y_stride, &near, &far); break;      \
        case 5: body(n, rows, n_rows, x, x_stride, 5, y, y_stride, &near, &far); break;      \
        default: body(n, rows, n_rows, x, x_stride, TILE_TOKENS, y, y_stride, &near, &far); break; \
        }                                                                                    \
    }

_Static_assert(TILE_TOKENS == 6, "the tiles' switch names every token count");

TILE(tile_f32, tile_f32_body, load_f32, 4)
TILE(tile_f16, tile_f16_body, load_f16, 2)

#if defined(__AVX512BF16__)
/* BF16 x BF16 with vdpbf16ps: 32 pairs per instruction, a row's 32 values one cache
 * line. The first `live` of 32 lanes (live >= 32: all). */
static inline __mmask32 lanes32(int64_t live)
{
    return live >= 2 * LANES ? (__mmask32)0xffffffffu : (__mmask32)((1u << live) - 1);
}

static inline __m512bh load_bh(const void *p, int64_t k, __mmask32 m)
{
    return (__m512bh)_mm512_maskz_loadu_epi16(m, (const uint16_t *)p + k);
}

static void dot_bf16(int64_t n, const void *w, const void *x, float *out)
{
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t k = 0;
    for (; k + 4 * LANES <= n; k += 4 * LANES) {
        a0 = _mm512_dpbf16_ps(a0, load_bh(w, k, lanes32(64)), load_bh(x, k, lanes32(64)));
        a1 = _mm512_dpbf16_ps(a1, load_bh(w, k + 32, lanes32(64)), load_bh(x, k + 32, lanes32(64)));
    }
    for (; k < n; k += 2 * LANES)
        a0 = _mm512_dpbf16_ps(a0, load_bh(w, k, lanes32(n - k)), load_bh(x, k, lanes32(n - k)));
    *out = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* The float tiles' shape (4 rows x up to 6 tokens, decode prefetch), 32 values a step. */
static inline __attribute__((always_inline)) void tile_bf16_body(int64_t n, const uint8_t *const rows[], int n_rows,
                                                                 const uint8_t *x, size_t x_stride, int nt, float *y,
                                                                 int64_t y_stride, const kq_prefetch_plan *near,
                                                                 const kq_prefetch_plan *far)
{
    __m512 acc[TILE_ROWS][TILE_TOKENS];
    for (int r = 0; r < TILE_ROWS; r++)
        for (int c = 0; c < nt; c++)
            acc[r][c] = _mm512_setzero_ps();
    for (int64_t k = 0; k < n; k += 2 * LANES) {
        __mmask32 m = lanes32(n - k);
        if (nt <= 4) {
            size_t at = (size_t)k * 2, to_near = kq_prefetch_offset(near, k / (2 * LANES));
            size_t to_far = kq_prefetch_offset(far, k / (2 * LANES));
            for (int r = 0; r < TILE_ROWS; r++) {
                _mm_prefetch((const char *)rows[r] + at + to_near, _MM_HINT_T0);
                _mm_prefetch((const char *)rows[r] + at + to_far, _MM_HINT_T2);
            }
        }
        __m512bh xv[TILE_TOKENS];
        for (int c = 0; c < nt; c++)
            xv[c] = load_bh(x + (size_t)c * x_stride, k, m);
        for (int r = 0; r < TILE_ROWS; r++) {
            __m512bh wv = load_bh(rows[r], k, m);
            for (int c = 0; c < nt; c++)
                acc[r][c] = _mm512_dpbf16_ps(acc[r][c], wv, xv[c]);
        }
    }
    for (int c = 0; c < nt; c++)
        for (int r = 0; r < n_rows; r++)
            y[c * y_stride + r] = _mm512_reduce_add_ps(acc[r][c]);
}

static void tile_bf16(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x, size_t x_stride,
                      int n_cols, float *y, int64_t y_stride)
{
    const uint8_t *rows[TILE_ROWS];
    for (int r = 0; r < TILE_ROWS; r++)
        rows[r] = (const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
    size_t row_bytes = (size_t)n * 2, unit = 4 * LANES;
    const kq_prefetch_plan near = kq_plan_prefetch(row_bytes, unit, TILE_ROWS * w_stride);
    const kq_prefetch_plan far = kq_plan_prefetch_at(KQ_PREFETCH_FAR, row_bytes, unit, TILE_ROWS * w_stride);
    switch (n_cols) {
    case 1: tile_bf16_body(n, rows, n_rows, x, x_stride, 1, y, y_stride, &near, &far); break;
    case 2: tile_bf16_body(n, rows, n_rows, x, x_stride, 2, y, y_stride, &near, &far); break;
    case 3: tile_bf16_body(n, rows, n_rows, x, x_stride, 3, y, y_stride, &near, &far); break;
    case 4: tile_bf16_body(n, rows, n_rows, x, x_stride, 4, y, y_stride, &near, &far); break;
    case 5: tile_bf16_body(n, rows, n_rows, x, x_stride, 5, y, y_stride, &near, &far); break;
    default: tile_bf16_body(n, rows, n_rows, x, x_stride, TILE_TOKENS, y, y_stride, &near, &far); break;
    }
}
#endif

kq_impl kq_float_avx512(uint32_t type)
{
    kq_impl impl = {0};
    switch (type) {
    case GGUF_TYPE_F32:
        impl = (kq_impl){NULL, dot_f32, tile_f32, NULL, NULL, TILE_TOKENS};
        break;
    case GGUF_TYPE_F16:
        impl = (kq_impl){NULL, dot_f16, tile_f16, round_to_f16, f16_act_row_bytes, TILE_TOKENS};
        break;
    case GGUF_TYPE_BF16:
#if defined(__AVX512BF16__)
        if (kq_cpu_has_avx512_bf16())
            impl = (kq_impl){NULL, dot_bf16, tile_bf16, NULL, NULL, TILE_TOKENS};
#endif
        break;
    default:
        break;
    }
    return impl;
}

#else /* no AVX-512 code on this target */

kq_impl kq_float_avx512(uint32_t type)
{
    (void)type;
    kq_impl none = {0};
    return none;
}

#endif
