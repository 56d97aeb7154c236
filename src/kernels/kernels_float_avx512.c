/* AVX-512 versions of the float weight types' dot products (F32 x F32, F16 x F16,
 * BF16 x BF16; the same pairings as the scalar reference, so that results differ from it
 * only in the order of float sums): masked loads for a row's last values instead of a
 * scalar tail, and a tile of up to 4 rows x 6 tokens whose 24 accumulators stay in
 * registers (the AVX2 tile keeps 8: 4 rows x 2 tokens). A prompt's matmul on these types
 * is bound by the FMAs and the conversions, which share the two 512-bit ports: so F16
 * activations are rounded to F16 once per matmul but kept as floats (their own layout,
 * act_convert), not widened again for every row, and a converted weight vector serves 6
 * tokens. BF16 weights meet BF16 activations (as in llama.cpp), so one vdpbf16ps
 * multiplies 32 pairs with no conversion at all; on an AVX-512 CPU without AVX512_BF16
 * the BF16 type falls back to AVX2. */
#include "kernels/kernels_internal.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include <immintrin.h>

enum { LANES = 16, TILE_ROWS = 4, TILE_TOKENS = 6 };

/* The first `live` of `step` lanes (live >= step: all of them). */
static inline uint32_t live_lanes(int64_t live, int step)
{
    return live >= step ? (uint32_t)((1ull << step) - 1) : (uint32_t)((1u << live) - 1);
}

/* One vector of each element type from index k (lanes outside m are 0): 16 values as
 * floats, or 32 BF16 values as they are. */
static inline __m512 load_f32(const void *p, int64_t k, uint32_t m)
{
    return _mm512_maskz_loadu_ps((__mmask16)m, (const float *)p + k);
}

static inline __m512 load_f16(const void *p, int64_t k, uint32_t m)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((__mmask16)m, (const uint16_t *)p + k));
}

static inline __m512 madd_ps(__m512 acc, __m512 w, __m512 x)
{
    return _mm512_fmadd_ps(w, x, acc);
}

/* F16 activations: each value rounded to F16 (to nearest even, as the scalar quantizer
 * does) and stored back as a float. */
static void round_to_f16(const float *src, void *dst, int64_t n)
{
    float *out = dst;
    for (int64_t k = 0; k < n; k += LANES) {
        __mmask16 m = (__mmask16)live_lanes(n - k, LANES);
        __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, src + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_storeu_ps(out + k, m, _mm512_cvtph_ps(h));
    }
}

static size_t f16_act_row_bytes(int64_t n)
{
    return (size_t)n * sizeof(float);
}

/* The dot, the tile body and the tile of one pairing: W_T/X_T the vectors load_w/load_x
 * give (step values each, elem bytes per weight), madd(acc, w, x) their product summed
 * into float lanes. The tile body serves up to TILE_ROWS rows x nt tokens (nt a constant
 * where inlined: a tile for 1 token does 4 products per step, not 24); missing rows
 * repeat the last one (loaded, never stored). A decode tile (up to 4 tokens: a step of a
 * few streams) prefetches each row into L1 and, farther on, into L2 as the quantized tiles
 * do (kq_plan_prefetch: on into the next tile's rows); without it gemma3-1b BF16 decode
 * read 51 % of the plain read bandwidth (llama.cpp 67 %). A prompt tile reads its rows
 * from cache. */
#define FLOAT_KERNELS(name, W_T, load_w, X_T, load_x, madd, step, elem)                                         \
    static void dot_##name(int64_t n, const void *w, const void *x, float *out)                                 \
    {                                                                                                            \
        __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};     \
        const uint32_t all = live_lanes(step, step);                                                            \
        int64_t k = 0;                                                                                           \
        for (; k + 4 * (step) <= n; k += 4 * (step))                                                             \
            for (int j = 0; j < 4; j++)                                                                          \
                a[j] = madd(a[j], load_w(w, k + j * (step), all), load_x(x, k + j * (step), all));               \
        for (; k < n; k += (step)) {                                                                             \
            uint32_t m = live_lanes(n - k, step);                                                                \
            a[0] = madd(a[0], load_w(w, k, m), load_x(x, k, m));                                                 \
        }                                                                                                        \
        *out = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3])));      \
    }                                                                                                            \
                                                                                                                 \
    static inline __attribute__((always_inline)) void tile_##name##_body(                                       \
        int64_t n, const uint8_t *const rows[], int n_rows, const uint8_t *x, size_t x_stride, int nt, float *y, \
        int64_t y_stride, const kq_prefetch_plan *near, const kq_prefetch_plan *far)                             \
    {                                                                                                            \
        __m512 acc[TILE_ROWS][TILE_TOKENS];                                                                      \
        _Pragma("GCC unroll 4") for (int r = 0; r < TILE_ROWS; r++)                                              \
            _Pragma("GCC unroll 6") for (int c = 0; c < nt; c++)                                                 \
                acc[r][c] = _mm512_setzero_ps();                                                                 \
        for (int64_t k = 0; k < n; k += (step)) {                                                                \
            uint32_t m = live_lanes(n - k, step);                                                                \
            if (nt <= 4) {                                                                                       \
                size_t at = (size_t)k * (elem), to_near = kq_prefetch_offset(near, k / (step));                  \
                size_t to_far = kq_prefetch_offset(far, k / (step));                                             \
                _Pragma("GCC unroll 4") for (int r = 0; r < TILE_ROWS; r++) {                                    \
                    _mm_prefetch((const char *)rows[r] + at + to_near, _MM_HINT_T0);                             \
                    _mm_prefetch((const char *)rows[r] + at + to_far, _MM_HINT_T2);                              \
                }                                                                                                \
            }                                                                                                    \
            X_T xv[TILE_TOKENS];                                                                                 \
            _Pragma("GCC unroll 6") for (int c = 0; c < nt; c++)                                                 \
                xv[c] = load_x(x + (size_t)c * x_stride, k, m);                                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < TILE_ROWS; r++) {                                        \
                W_T wv = load_w(rows[r], k, m);                                                                  \
                _Pragma("GCC unroll 6") for (int c = 0; c < nt; c++)                                             \
                    acc[r][c] = madd(acc[r][c], wv, xv[c]);                                                      \
            }                                                                                                    \
        }                                                                                                        \
        for (int c = 0; c < nt; c++)                                                                             \
            for (int r = 0; r < n_rows; r++)                                                                     \
                y[c * y_stride + r] = _mm512_reduce_add_ps(acc[r][c]);                                           \
    }                                                                                                            \
                                                                                                                 \
    static void tile_##name(int64_t n, const void *w, size_t w_stride, int n_rows, const void *x,               \
                            size_t x_stride, int n_cols, float *y, int64_t y_stride)                             \
    {                                                                                                            \
        const uint8_t *rows[TILE_ROWS];                                                                          \
        for (int r = 0; r < TILE_ROWS; r++)                                                                      \
            rows[r] = (const uint8_t *)w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;                     \
        size_t row_bytes = (size_t)n * (elem), unit = (size_t)(step) * (elem);                                   \
        const kq_prefetch_plan near = kq_plan_prefetch(row_bytes, unit, TILE_ROWS * w_stride);                   \
        const kq_prefetch_plan far = kq_plan_prefetch_at(KQ_PREFETCH_FAR, row_bytes, unit, TILE_ROWS * w_stride); \
        switch (n_cols) {                                                                                        \
        case 1: tile_##name##_body(n, rows, n_rows, x, x_stride, 1, y, y_stride, &near, &far); break;           \
        case 2: tile_##name##_body(n, rows, n_rows, x, x_stride, 2, y, y_stride, &near, &far); break;           \
        case 3: tile_##name##_body(n, rows, n_rows, x, x_stride, 3, y, y_stride, &near, &far); break;           \
        case 4: tile_##name##_body(n, rows, n_rows, x, x_stride, 4, y, y_stride, &near, &far); break;           \
        case 5: tile_##name##_body(n, rows, n_rows, x, x_stride, 5, y, y_stride, &near, &far); break;           \
        default: tile_##name##_body(n, rows, n_rows, x, x_stride, TILE_TOKENS, y, y_stride, &near, &far); break; \
        }                                                                                                        \
    }

_Static_assert(TILE_TOKENS == 6, "the tiles' switch names every token count");

/* Every type's activations but BF16's are floats here (F16's already rounded: round_to_f16). */
FLOAT_KERNELS(f32, __m512, load_f32, __m512, load_f32, madd_ps, LANES, 4)
FLOAT_KERNELS(f16, __m512, load_f16, __m512, load_f32, madd_ps, LANES, 2)

#if defined(__AVX512BF16__)
/* 32 BF16 values, a row's cache line, as vdpbf16ps takes them. */
static inline __m512bh load_bh(const void *p, int64_t k, uint32_t m)
{
    return (__m512bh)_mm512_maskz_loadu_epi16((__mmask32)m, (const uint16_t *)p + k);
}

static inline __m512 madd_bh(__m512 acc, __m512bh w, __m512bh x)
{
    return _mm512_dpbf16_ps(acc, w, x);
}

FLOAT_KERNELS(bf16, __m512bh, load_bh, __m512bh, load_bh, madd_bh, 2 * LANES, 2)
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
