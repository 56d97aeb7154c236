/* Inside the kernels layer only: the per-type operation table that kernels.c
 * dispatches through. Each type family lives in its own file and fills in its
 * entries (scalar always, AVX2, AVX-VNNI and AVX-512 where written); nothing
 * outside src/kernels includes this header.
 *
 * Files named *_avx2.c, *_avxvnni.c and *_avx512.c are compiled with those
 * instruction sets enabled (Makefile); only code reached after kernels_init has
 * checked the CPU may call into them. */
#ifndef ELLIOTT_KERNELS_INTERNAL_H
#define ELLIOTT_KERNELS_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"

/* Dequantize / quantize n values (a multiple of the block size). */
typedef void (*kq_dequant_fn)(const void *src, float *dst, int64_t n);
typedef void (*kq_quant_fn)(const float *src, void *dst, int64_t n);

/* out = dot(w_row, x_row) over n values; x_row is in the type's dot partner
 * (act_type) layout, i.e. the activation row after act_quant. */
typedef void (*kq_dot_fn)(int64_t n, const void *w_row, const void *x_row, float *out);

/* A tile of dot products: for r < n_rows, c < n_cols,
 *   y[c * y_stride + r] = dot(w + r * w_stride, x + c * x_stride)
 * so that a weight block loaded once serves several tokens. n_rows <= 4, n_cols <= 4
 * (or the implementation's tile_cols); a type without a tile kernel leaves it NULL
 * and the driver loops dot. */
typedef void (*kq_dot_tile_fn)(int64_t n, const void *w, size_t w_stride, int n_rows,
                               const void *x, size_t x_stride, int n_cols, float *y,
                               int64_t y_stride);

/* An implementation may keep activations in its own layout (e.g. reordered for
 * its dot products): then it names the converter and the row size, and its dot
 * and dot_tile read that layout instead of act_type's. */
typedef void (*kq_act_fn)(const float *src, void *dst, int64_t n);
typedef size_t (*kq_act_bytes_fn)(int64_t n);

typedef struct kq_impl {
    kq_dequant_fn dequant;
    kq_dot_fn dot;
    kq_dot_tile_fn dot_tile;       /* may be NULL */
    kq_act_fn act_convert;         /* NULL: kq_act_convert(act_type) */
    kq_act_bytes_fn act_row_bytes; /* with act_convert */
    int tile_cols;                 /* most tokens per dot_tile call; 0 means 4 */
} kq_impl;

typedef struct kq_type_ops {
    uint32_t type;      /* enum gguf_type of the weights */
    uint32_t act_type;  /* what activations are converted to for dot: F32, F16, Q8_0 or Q8_K */
    kq_quant_fn quant;  /* reference quantizer (ggml rounding); NULL if not supported */
    kq_impl scalar;     /* always complete (dequant and dot) */
    /* NULL members fall back to the next narrower implementation the CPU runs
     * (avx512 -> avx_vnni -> avx2 -> scalar), dequant on its own and the dot group
     * (dot, dot_tile, act_convert, act_row_bytes, tile_cols) as a whole */
    kq_impl avx2;
    kq_impl avx_vnni;
    kq_impl avx512;
} kq_type_ops;

/* The table entries each family file provides (NULL-terminated lists are not
 * needed: each returns its ops for one type, or NULL for a type it does not own). */
const kq_type_ops *kq_ops_float(uint32_t type);   /* F32, F16, BF16 */
const kq_type_ops *kq_ops_legacy(uint32_t type);  /* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (and Q8_0 as act) */
const kq_type_ops *kq_ops_kquant(uint32_t type);  /* Q2_K .. Q6_K, Q8_K (act) */

/* Converting a float activation row into act_type (quantize or copy); shared by all
 * families. Q8_K is ggml's block_q8_K (256 values: float d, int8 qs[256], int16 bsums[16]). */
void kq_act_convert(uint32_t act_type, const float *src, void *dst, int64_t n);


/* How far ahead of each weight row a streaming dot kernel prefetches. A tile reads
 * several rows side by side, short interleaved streams that the hardware
 * prefetcher picks up late; about 4 KiB ahead per row let a single core stream a
 * Q4_0 matrix at ~90 % of its plain read bandwidth (bench/kernels_bench.c), against
 * ~45 % with no software prefetch. */
#define KQ_PREFETCH_AHEAD 4096

/* ...and a second prefetch this far ahead into L2 only (prefetcht2), on the same
 * lines: with the L1 prefetch alone a core's misses stayed too few to cover DRAM's
 * latency. Measured on whole-model decode (2 threads, best of 3 runs, same hour):
 * gemma-2b Q4_0 18.3 -> 21.6 t/s, gemma3-1b Q4_0 +20 %, gemma4-e2b Q4_0 +15 %,
 * gemma-2b Q4_K_M +11 %, gemma-2b Q8_0 +7 %. 8 KiB and 16 KiB did alike on the
 * repacked layouts (12 and 6 KiB too); 8 KiB did nothing for Q8_0's 4-row tiles of
 * 2048-wide rows, where it rounds to the same next tile as the L1 prefetch. */
#define KQ_PREFETCH_FAR 16384
/* Where a decode tile's row prefetches while it reads unit i (a block, or a group of
 * blocks) of its row: KQ_PREFETCH_AHEAD bytes on along the row and, once that passes
 * the row's end, on in the same row of the next tile (`next_tile` bytes on: the tile's
 * rows times the row stride), so that the first bytes of every row are fetched ahead
 * too; a row shorter than the distance fetches the same unit of a later tile. With a
 * plain +4 KiB a 2048-wide Q8_0 row (2176 bytes) had its first ~1900 bytes met by
 * demand misses in two rows of every four: 10.3 -> 14.5 GB/s on one core with the
 * continuation (plain read 15). A prefetch past the matrix end never faults. */
typedef struct kq_prefetch_plan {
    size_t lead;     /* bytes ahead of the unit being read */
    size_t jump;     /* added from unit jump_at on: into the next tile's row */
    int64_t jump_at;
} kq_prefetch_plan;

static inline kq_prefetch_plan kq_plan_prefetch_at(size_t ahead, size_t row_bytes, size_t unit_bytes,
                                                   size_t next_tile)
{
    if (next_tile == 0) /* a lone row (a dot product): straight on */
        return (kq_prefetch_plan){ahead, 0, INT64_MAX};
    if (row_bytes <= ahead) /* whole tiles ahead, at least the distance */
        return (kq_prefetch_plan){(ahead + next_tile - 1) / next_tile * next_tile, 0, INT64_MAX};
    /* jump one unit early rather than late: a unit's prefetch may cover a line past its
     * first byte, which must then be the next tile's row start, not the next row's */
    return (kq_prefetch_plan){ahead, next_tile - row_bytes, (int64_t)((row_bytes - ahead) / unit_bytes)};
}

static inline kq_prefetch_plan kq_plan_prefetch(size_t row_bytes, size_t unit_bytes, size_t next_tile)
{
    return kq_plan_prefetch_at(KQ_PREFETCH_AHEAD, row_bytes, unit_bytes, next_tile);
}

/* The lines of one unit of a contiguous stream (a repacked group's block: lines x 64
 * bytes from p) KQ_PREFETCH_AHEAD on into L1, and KQ_PREFETCH_FAR on into L2. Always
 * inlined: GCC deems a function of prefetches alone free of effects and drops calls
 * to it. */
static inline __attribute__((always_inline)) void kq_prefetch_near(const char *p, int lines)
{
    for (int l = 0; l < lines; l++)
        __builtin_prefetch(p + KQ_PREFETCH_AHEAD + 64 * l, 0, 3); /* prefetcht0 */
}

static inline __attribute__((always_inline)) void kq_prefetch_far(const char *p, int lines)
{
    for (int l = 0; l < lines; l++)
        __builtin_prefetch(p + KQ_PREFETCH_FAR + 64 * l, 0, 1); /* prefetcht2 */
}

static inline __attribute__((always_inline)) void kq_prefetch_stream(const char *p, int lines)
{
    kq_prefetch_near(p, lines);
    kq_prefetch_far(p, lines);
}

/* Part `part` of `parts` of kq_prefetch_stream(p, lines), for a tile that spreads a
 * unit's prefetches over its work rather than issuing them in one burst at its start.
 * With the burst, perf put most of the repacked Q6_K tile's samples on its prefetch
 * loops (106 prefetches per 3360-byte group block), the decode behind them waiting.
 * In four parts (kernels_bench, one thread, three rounds each): Q6_K streamed 90-94 %
 * of the plain read -> 94-100 %, in L2 32.5 -> 38 GB/s (2048 wide) and 23.3 -> 26.5
 * (16384 wide); Q4_K in L2 37 -> 40 GB/s, streamed about even. */
static inline __attribute__((always_inline)) void kq_prefetch_stream_part(const char *p, int lines, int part,
                                                                        int parts)
{
    int per = (lines + parts - 1) / parts;
    int first = part * per;
    kq_prefetch_stream(p + 64 * first, lines - first < per ? lines - first : per);
}

/* Bytes from unit i's first byte to where its row prefetches. */
static inline size_t kq_prefetch_offset(const kq_prefetch_plan *plan, int64_t i)
{
    return plan->lead + (i >= plan->jump_at ? plan->jump : 0);
}

/* ---- shared by the core families (kernels.c, float, legacy, vec files) ---- */

/* Bytes of one activation row of n values in act_type (F32, F16, Q8_0, Q8_1,
 * Q8_K); 0 for another type. Q8_1 is ggml's block_q8_1 (half d, half s = d*sum). */
size_t kq_act_row_bytes(uint32_t act_type, int64_t n);

/* The activation quantizers behind kq_act_convert (ggml reference rounding). The
 * AVX2 versions produce identical bytes. */
void kq_quantize_q8_0(const float *src, void *dst, int64_t n);
void kq_quantize_q8_1(const float *src, void *dst, int64_t n);
void kq_quantize_q8_k(const float *src, void *dst, int64_t n);
void kq_quantize_q8_0_avx2(const float *src, void *dst, int64_t n);
void kq_quantize_q8_1_avx2(const float *src, void *dst, int64_t n);
void kq_quantize_q8_k_avx2(const float *src, void *dst, int64_t n);

/* The AVX-512 activation quantizers (kernels_legacy_avx512.c): the same bytes again. */
void kq_quantize_q8_0_avx512(const float *src, void *dst, int64_t n);
void kq_quantize_q8_1_avx512(const float *src, void *dst, int64_t n);

/* AVX2 members of the float and legacy families. The _avx2.c files define these
 * on every architecture; where no AVX2 code is compiled every member is NULL
 * (and kq_avx2_compiled() is 0, so the AVX2 quantizers above are never called).
 * The same holds for the AVX-VNNI and AVX-512 members and their files. */
kq_impl kq_float_avx2(uint32_t type);
kq_impl kq_float_avx512(uint32_t type); /* dot group only: dequant falls back to AVX2 */
kq_impl kq_legacy_avx2(uint32_t type);
kq_impl kq_legacy_avx_vnni(uint32_t type);
kq_impl kq_legacy_avx512(uint32_t type);
int kq_avx_vnni_compiled(void);
int kq_avx512_compiled(void);
/* Whether the CPU has AVX512_BF16 (vdpbf16ps): the AVX-512 BF16 kernels need it (without
 * it BF16 falls back to AVX2); not part of KERNELS_ISA_AVX512's requirements. */
bool kq_cpu_has_avx512_bf16(void);
/* Fills in the four-block Q4_0 kernels (kernels_q4_0_avx2.c): dot, dot_tile and
 * their activation layout. */
void kq_q4_0_quads_avx2(kq_impl *impl);
/* The AVX-512 VNNI Q4_0 kernels (kernels_q4_0_avx512.c), likewise. */
void kq_q4_0_quads_avx512(kq_impl *impl);
int kq_avx2_compiled(void);

/* Vector operations: a scalar reference (kernels_vec.c), AVX2 versions
 * (kernels_vec_avx2.c) and AVX-512 ones (kernels_vec_avx512.c); a table is NULL
 * where not compiled, and its NULL members fall back to the narrower table. */
typedef struct kv_ops {
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*geglu)(float *gate, const float *up, int64_t n);
    void (*swiglu)(float *gate, const float *up, int64_t n);
    void (*add)(float *y, const float *x, int64_t n);
    void (*scale)(float *y, float s, int64_t n);
    void (*softcap)(float *y, float cap, int64_t n);
    void (*softmax)(float *y, int64_t n);
    void (*f32_to_f16)(const float *x, uint16_t *y, int64_t n);
    void (*f16_to_f32)(const uint16_t *x, float *y, int64_t n);
    float (*dot_f16)(const uint16_t *a, const uint16_t *b, int64_t n);
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int64_t n);
} kv_ops;

const kv_ops *kv_ops_scalar(void);
const kv_ops *kv_ops_avx2(void);
const kv_ops *kv_ops_avx512(void);

/* ggml's GELU as llama.cpp's CPU backend computes it: the input rounded to half,
 * GELU (tanh form) of that in float, the result rounded to half; indexed by the
 * half's bits. Built by kv_init_tables (kernels_init calls it once). Two spare
 * entries let a 32-bit gather read the last one. */
extern uint16_t kv_gelu_f16_table[(1 << 16) + 2];
void kv_init_tables(void);

/* The first value of largest magnitude, sign included: the quantizers' symmetric
 * scales map it to -nmax, as ggml's do. */
static inline float kq_signed_absmax(const float *x, int64_t n)
{
    float max = 0.0f, amax = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > amax) {
            amax = a;
            max = x[i];
        }
    }
    return max;
}

#endif
