/* Tensor kernels: block (de)quantization, matrix multiplication and the vector
 * operations a transformer needs.
 *
 * Every operation has a portable scalar reference and, where the CPU has them,
 * AVX2/FMA/F16C, AVX-VNNI and AVX-512 versions chosen at run time. Tests force
 * each in turn and compare. Bit layouts are ggml's, so GGUF tensors are used in place. */
#ifndef ELLIOTT_KERNELS_H
#define ELLIOTT_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/err.h"
#include "base/threadpool.h"

/* ---- implementation selection ------------------------------------------------ */

enum kernels_isa {
    KERNELS_ISA_SCALAR = 0,
    KERNELS_ISA_AVX2 = 1,     /* AVX2 + FMA + F16C */
    KERNELS_ISA_AVX_VNNI = 2, /* AVX2 + FMA + F16C + AVX-VNNI (256-bit vpdpbusd) */
    KERNELS_ISA_AVX512 = 3    /* AVX2 + FMA + F16C + AVX-512 F, BW, VL, DQ and VNNI */
};
enum { KERNELS_ISA_COUNT = 4 };

/* Picks the best implementation this CPU supports, or the one ELLIOTT_ISA names
 * (scalar, avx2, avx-vnni, avx512; read once here). Idempotent and thread-safe;
 * every other function calls it on first use. An ELLIOTT_ISA it cannot honour
 * leaves the automatic choice; kernels_init_from_env reports it. */
void kernels_init(void);
/* kernels_init, then fails naming the problem if ELLIOTT_ISA is set to an unknown
 * value or to an implementation this CPU (or this build) cannot run. For programs
 * that must refuse such a setting at startup. */
int kernels_init_from_env(el_err *err);
enum kernels_isa kernels_isa(void);
const char *kernels_isa_name(enum kernels_isa isa);
/* Whether this CPU (and this build) can run an implementation. A wider one uses
 * the narrower ones' code where it has none of its own, operation by operation. */
bool kernels_isa_available(enum kernels_isa isa);
/* Forces an implementation (tests, benchmarks); fails if the CPU lacks it.
 * Not to be called while kernels are running on other threads. */
int kernels_set_isa(enum kernels_isa isa, el_err *err);

/* ---- types ------------------------------------------------------------------- */

/* Types are enum gguf_type ids (gguf/gguf.h). */
bool kernels_can_dequantize(uint32_t type);
bool kernels_can_quantize(uint32_t type);
/* Weight types kernels_matmul accepts. */
bool kernels_can_matmul(uint32_t type);

/* n must be a multiple of the type's block size; returns -1 otherwise or for an
 * unsupported type. Quantization rounds exactly as ggml's reference quantizers do. */
int kernels_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n);
int kernels_quantize_row(uint32_t type, const float *src, void *dst, int64_t n);

/* ---- matrix multiplication ---------------------------------------------------- */

typedef struct kernels_matrix {
    uint32_t type;    /* enum gguf_type */
    int64_t rows;     /* output features */
    int64_t cols;     /* input features, contiguous within a row */
    const void *data; /* rows back to back, row_bytes apart */
    size_t row_bytes;
    uint32_t layout;  /* KERNELS_LAYOUT_GGUF, or what kernels_repack_matrix made of it */
} kernels_matrix;

/* How a matrix's rows are stored: as in the GGUF file, or repacked by
 * kernels_repack_matrix into an interleaved layout private to this layer. */
enum { KERNELS_LAYOUT_GGUF = 0, KERNELS_LAYOUT_REPACKED = 1 };

/* Whether kernels_repack_matrix would rewrite this matrix: the selected
 * implementation multiplies its type faster in an interleaved layout (today Q4_0 and
 * Q8_0 on AVX2, AVX-VNNI and AVX-512, Q4_K, Q5_K and Q6_K on AVX-512; 16 rows a
 * group, rows a multiple of 16). */
bool kernels_can_repack(const kernels_matrix *w);
/* Rewrites w's rows in place into that layout (the same bytes in all, a group of rows
 * in the bytes the rows had) and sets w->layout; `data` is w->data, writable. After it
 * only kernels_matmul, kernels_matmul_multi and kernels_unpack_row may read the rows,
 * on any implementation, where they lie (the layout follows the rows' place in their
 * cache lines: repacked bytes must not be moved). Returns 0, or -1 (matrix unchanged) when it cannot. */
int kernels_repack_matrix(kernels_matrix *w, void *data);
/* Row r of a matrix in its GGUF bytes (row_bytes of them), whatever its layout: how
 * a table that is also a repacked matrix (Gemma's tied token embeddings) is looked
 * up by row. Returns -1 for r outside the matrix. */
int kernels_unpack_row(const kernels_matrix *w, int64_t r, void *row);

/* Bytes of scratch kernels_matmul needs for n_tokens activation rows (the
 * activations are quantized to the weight type's dot-product partner). */
size_t kernels_matmul_scratch_size(uint32_t type, int64_t cols, int n_tokens);

/* y[t*y_stride + r] = sum_k w[r][k] * x[t*x_stride + k] for t < n_tokens, r < rows,
 * split across the pool's threads. scratch holds kernels_matmul_scratch_size bytes,
 * 64-byte aligned. */
void kernels_matmul(const kernels_matrix *w, const float *x, int64_t x_stride, int n_tokens,
                    float *y, int64_t y_stride, void *scratch, threadpool *pool);

/* Several matrices applied to one input (Q/K/V projections, FFN gate and up): the
 * same results as kernels_matmul on each, with one activation conversion per distinct
 * activation layout and the rows of all of them split across the threads as one job
 * (fewer hand-offs). Every w[i]->cols must be equal (a matrix that differs gets zeros);
 * y[i] and y_stride[i] as in kernels_matmul. scratch holds the sum of
 * kernels_matmul_scratch_size over the matrices, 64-byte aligned. */
#define KERNELS_MATMUL_MULTI_MAX 4
void kernels_matmul_multi(int n_mats, const kernels_matrix *const w[], float *const y[], const int64_t y_stride[],
                          const float *x, int64_t x_stride, int n_tokens, void *scratch, threadpool *pool);

/* ---- vector operations (single-threaded; the caller splits work) --------------- */

/* y = x / rms(x) * w; w may be NULL (no weight). y may alias x. */
void kernels_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* gate[i] = gelu_tanh(gate[i]) * up[i] */
void kernels_geglu(float *gate, const float *up, int64_t n);
/* gate[i] = silu(gate[i]) * up[i] */
void kernels_swiglu(float *gate, const float *up, int64_t n);
void kernels_add(float *y, const float *x, int64_t n);   /* y += x */
void kernels_scale(float *y, float s, int64_t n);        /* y *= s */
void kernels_softcap(float *y, float cap, int64_t n);    /* y = cap * tanh(y / cap) */
void kernels_softmax(float *y, int64_t n);               /* in place */

/* Rotary position embedding of n_heads vectors of head_dim floats, rotating the
 * first n_rot dims. cos/sin hold n_rot/2 angles (kernels_rope_angles). neox pairs
 * dim i with i + n_rot/2 (Gemma); otherwise 2i with 2i+1 (llama). */
void kernels_rope_angles(int32_t pos, float freq_base, float freq_scale, int n_rot, float *cos_out,
                         float *sin_out);
void kernels_rope(float *x, int n_heads, int head_dim, int n_rot, const float *cos_v,
                  const float *sin_v, bool neox);

/* Half precision rows (KV cache). */
void kernels_f32_to_f16(const float *x, uint16_t *y, int64_t n);
void kernels_f16_to_f32(const uint16_t *x, float *y, int64_t n);
float kernels_dot_f16(const uint16_t *a, const uint16_t *b, int64_t n);
/* y += a * x */
void kernels_axpy_f16(float *y, float a, const uint16_t *x, int64_t n);

/* ---- attention over a half-precision KV cache (kernels_attn.c) ------------------ */

/* One query row: its query (already scaled as the model wants), where its output
 * goes, and the cached positions it attends, first..last inclusive (first <= last). */
typedef struct kernels_attn_row {
    const float *q;  /* [dk] */
    float *out;      /* [dv] */
    int first, last;
} kernels_attn_row;

/* One KV head: the keys and values of position 0, dk and dv halves per position,
 * positions back to back. A score is dot(f16(q), k) * kq_scale, then
 * softcap * tanh(score / softcap) when softcap > 0. */
typedef struct kernels_attn_head {
    const uint16_t *k, *v;
    int dk, dv;
    float kq_scale, softcap;
} kernels_attn_head;

/* The most rows one call takes: the query heads that share a KV head, times a few
 * tokens of a prompt, so that each block of keys and values read serves them all. */
enum { KERNELS_ATTN_MAX_ROWS = 32 };

/* Bytes of scratch kernels_attn_f16 needs (64-byte aligned by the caller). */
size_t kernels_attn_scratch_size(int n_rows, int dk, int dv);

/* softmax(scores) . V for each row, with a streaming softmax over blocks of
 * positions and the running sum kept in half precision, rounded after every
 * position as ggml's CPU flash attention does for an F16 cache, so that the
 * results round where llama.cpp's do. Single-threaded; the caller splits rows
 * and heads across threads. */
void kernels_attn_f16(const kernels_attn_head *head, const kernels_attn_row *rows, int n_rows, void *scratch);

/* ---- attention over a Q8_0 KV cache (kernels_attn_q8_0.c) ------------------------ */

/* Bytes of one Q8_0 row of n values (n a multiple of 32): per block of 32 a half
 * scale and 32 signed bytes, ggml's block_q8_0. */
size_t kernels_q8_0_row_bytes(int n);

/* One KV head of a Q8_0 cache: position p's keys start at k + p * row_bytes(dk), its
 * values at v + p * row_bytes(dv); dk and dv are multiples of 32. */
typedef struct kernels_attn_head_q8_0 {
    const void *k, *v;
    int dk, dv;
    float kq_scale, softcap;
} kernels_attn_head_q8_0;

/* Bytes of scratch kernels_attn_q8_0 needs for up to n_rows rows (64-byte aligned
 * by the caller). */
size_t kernels_attn_q8_0_scratch_size(int n_rows, int dk, int dv);

/* softmax(scores) . V for each row as ggml's CPU flash attention computes it for a
 * Q8_0 cache, so that the results round where llama.cpp's do: the query is
 * quantized to Q8_0 and a score is the Q8_0 x Q8_0 block dot product; each value
 * row is widened to float and the running sum is kept in float, position by
 * position. Blocks of positions serve every row as in kernels_attn_f16; AVX2 and
 * AVX-512 (VNNI) versions are chosen with the other kernels. Single-threaded. */
void kernels_attn_q8_0(const kernels_attn_head_q8_0 *head, const kernels_attn_row *rows, int n_rows, void *scratch);

#endif
