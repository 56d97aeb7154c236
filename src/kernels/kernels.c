/* Kernel dispatch: CPU detection, the per-type operation lookup, row
 * (de)quantization, the threaded matrix multiplication driver and the
 * vector-operation entry points. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/invariant.h"
#include "kernels/kernels_internal.h"
#include "kernels/kernels_q4_0_r16.h"
#include "kernels/kernels_q4_k_r16.h"
#include "kernels/kernels_q5_k_r16.h"
#include "kernels/kernels_q6_k_r16.h"
#include "kernels/kernels_q8_0_r16.h"

/* ---- implementation selection ------------------------------------------------ */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int current_isa = KERNELS_ISA_SCALAR;
static const kv_ops *_Atomic current_vec;
static bool isa_available[KERNELS_ISA_COUNT];
static bool cpu_bf16;
/* Why ELLIOTT_ISA was not honoured (empty when it was, or is unset). */
static char env_problem[160];

typedef struct cpu_features {
    bool avx2;     /* AVX2, FMA, F16C, BMI2 and the OS saving YMM state */
    bool avx_vnni;
    bool avx512;   /* F, BW, VL, DQ, VNNI and the OS saving opmask and ZMM state */
    bool avx512_bf16; /* vdpbf16ps */
} cpu_features;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

enum {
    XCR0_SSE_AVX = 0x6,     /* XMM and YMM state */
    XCR0_AVX512 = 0xe0,     /* opmask, ZMM_Hi256 and Hi16_ZMM state */
};

/* CPUID for the instruction sets, XGETBV for the OS saving their registers on a
 * context switch: without the latter the instructions fault or corrupt state. */
static cpu_features cpu_detect(void)
{
    cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return f;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(fma && osxsave && avx && f16c))
        return f;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    (void)xcr0_hi;
    if ((xcr0_lo & XCR0_SSE_AVX) != XCR0_SSE_AVX)
        return f;
    unsigned max_sub, b7, c7, d7;
    if (!__get_cpuid_count(7, 0, &max_sub, &b7, &c7, &d7))
        return f;
    bool avx2 = b7 & (1u << 5), bmi2 = b7 & (1u << 8);
    f.avx2 = avx2 && bmi2;
    if (!f.avx2)
        return f;
    unsigned a71 = 0;
    if (max_sub >= 1 && __get_cpuid_count(7, 1, &a71, &b, &c, &d)) {
        f.avx_vnni = a71 & (1u << 4);
    }
    bool avx512f = b7 & (1u << 16), avx512dq = b7 & (1u << 17), avx512bw = b7 & (1u << 30),
         avx512vl = b7 & (1u << 31), avx512vnni = c7 & (1u << 11);
    bool os_zmm = (xcr0_lo & XCR0_AVX512) == XCR0_AVX512;
    f.avx512 = avx512f && avx512dq && avx512bw && avx512vl && avx512vnni && os_zmm;
    f.avx512_bf16 = f.avx512 && (a71 & (1u << 5));
    return f;
}
#else
static cpu_features cpu_detect(void)
{
    return (cpu_features){0};
}
#endif

/* Which implementations run here: the CPU has them and this build compiled them. */
static void detect_available(void)
{
    cpu_features f = cpu_detect();
    isa_available[KERNELS_ISA_SCALAR] = true;
    isa_available[KERNELS_ISA_AVX2] = f.avx2 && kq_avx2_compiled();
    isa_available[KERNELS_ISA_AVX_VNNI] = isa_available[KERNELS_ISA_AVX2] && f.avx_vnni && kq_avx_vnni_compiled();
    isa_available[KERNELS_ISA_AVX512] = isa_available[KERNELS_ISA_AVX2] && f.avx512 && kq_avx512_compiled();
    cpu_bf16 = isa_available[KERNELS_ISA_AVX512] && f.avx512_bf16;
}

bool kq_cpu_has_avx512_bf16(void)
{
    kernels_init();
    return cpu_bf16;
}

/* The implementations a selection draws on, widest first: itself, then each narrower
 * one this CPU runs (an AVX-512 CPU without AVX-VNNI skips the VEX-encoded
 * AVX-VNNI code). Returns how many. */
static int fallback_chain(enum kernels_isa isa, enum kernels_isa chain[KERNELS_ISA_COUNT])
{
    int n = 0;
    for (int i = (int)isa; i >= 0; i--)
        if (isa_available[i])
            chain[n++] = (enum kernels_isa)i;
    return n;
}

/* ---- vector operations per implementation ---- */

static kv_ops merged_vec[KERNELS_ISA_COUNT];

static const kv_ops *kv_table_of(enum kernels_isa isa)
{
    switch (isa) {
    case KERNELS_ISA_SCALAR:
        return kv_ops_scalar();
    case KERNELS_ISA_AVX2:
        return kv_ops_avx2();
    case KERNELS_ISA_AVX_VNNI:
        return NULL; /* nothing in the vector operations gains from VNNI */
    case KERNELS_ISA_AVX512:
        return kv_ops_avx512();
    }
    return NULL;
}

#define TAKE_IF_MISSING(member)                                                              \
    if (!out->member)                                                                        \
    out->member = t->member

/* Member by member, the widest table in the chain that has it. */
static void merge_vec(enum kernels_isa isa, kv_ops *out)
{
    enum kernels_isa chain[KERNELS_ISA_COUNT];
    int n = fallback_chain(isa, chain);
    *out = (kv_ops){0};
    for (int i = 0; i < n; i++) {
        const kv_ops *t = kv_table_of(chain[i]);
        if (!t)
            continue;
        TAKE_IF_MISSING(rmsnorm);
        TAKE_IF_MISSING(geglu);
        TAKE_IF_MISSING(swiglu);
        TAKE_IF_MISSING(add);
        TAKE_IF_MISSING(scale);
        TAKE_IF_MISSING(softcap);
        TAKE_IF_MISSING(softmax);
        TAKE_IF_MISSING(f32_to_f16);
        TAKE_IF_MISSING(f16_to_f32);
        TAKE_IF_MISSING(dot_f16);
        TAKE_IF_MISSING(axpy_f16);
    }
}

#undef TAKE_IF_MISSING

/* ---- activation quantizers per implementation ---- */

typedef struct act_quantizers {
    kq_act_fn q8_0, q8_1, q8_k;
} act_quantizers;

static act_quantizers merged_act[KERNELS_ISA_COUNT];

static act_quantizers act_table_of(enum kernels_isa isa)
{
    switch (isa) {
    case KERNELS_ISA_SCALAR:
        return (act_quantizers){kq_quantize_q8_0, kq_quantize_q8_1, kq_quantize_q8_k};
    case KERNELS_ISA_AVX2:
        return (act_quantizers){kq_quantize_q8_0_avx2, kq_quantize_q8_1_avx2, kq_quantize_q8_k_avx2};
    case KERNELS_ISA_AVX_VNNI:
        return (act_quantizers){0};
    case KERNELS_ISA_AVX512:
        return (act_quantizers){kq_quantize_q8_0_avx512, kq_quantize_q8_1_avx512, NULL};
    }
    return (act_quantizers){0};
}

static void merge_act(enum kernels_isa isa, act_quantizers *out)
{
    enum kernels_isa chain[KERNELS_ISA_COUNT];
    int n = fallback_chain(isa, chain);
    *out = (act_quantizers){0};
    for (int i = 0; i < n; i++) {
        act_quantizers t = act_table_of(chain[i]);
        out->q8_0 = out->q8_0 ? out->q8_0 : t.q8_0;
        out->q8_1 = out->q8_1 ? out->q8_1 : t.q8_1;
        out->q8_k = out->q8_k ? out->q8_k : t.q8_k;
    }
}

static void select_isa(enum kernels_isa isa)
{
    atomic_store(&current_isa, (int)isa);
    atomic_store(&current_vec, &merged_vec[isa]);
}

static bool isa_from_name(const char *name, enum kernels_isa *out)
{
    for (int i = 0; i < KERNELS_ISA_COUNT; i++) {
        if (!strcmp(name, kernels_isa_name((enum kernels_isa)i))) {
            *out = (enum kernels_isa)i;
            return true;
        }
    }
    return false;
}

/* ELLIOTT_ISA's choice, or the widest available; a problem goes to env_problem. */
static enum kernels_isa initial_isa(void)
{
    enum kernels_isa best = KERNELS_ISA_SCALAR;
    for (int i = 0; i < KERNELS_ISA_COUNT; i++)
        if (isa_available[i])
            best = (enum kernels_isa)i;
    const char *env = getenv("ELLIOTT_ISA");
    if (!env || !*env)
        return best;
    enum kernels_isa wanted;
    if (!isa_from_name(env, &wanted)) {
        snprintf(env_problem, sizeof env_problem,
                 "ELLIOTT_ISA=%.40s is not one of scalar, avx2, avx-vnni, avx512", env);
        return best;
    }
    if (!isa_available[wanted]) {
        snprintf(env_problem, sizeof env_problem, "ELLIOTT_ISA=%s: this CPU (or this build) cannot run it",
                 kernels_isa_name(wanted));
        return best;
    }
    return wanted;
}

static void init_once_fn(void)
{
    kv_init_tables();
    detect_available();
    for (int i = 0; i < KERNELS_ISA_COUNT; i++) {
        merge_vec((enum kernels_isa)i, &merged_vec[i]);
        merge_act((enum kernels_isa)i, &merged_act[i]);
    }
    select_isa(initial_isa());
}

void kernels_init(void)
{
    pthread_once(&init_once, init_once_fn);
}

int kernels_init_from_env(el_err *err)
{
    kernels_init();
    if (env_problem[0])
        return el_fail(err, "%s", env_problem);
    return 0;
}

enum kernels_isa kernels_isa(void)
{
    kernels_init();
    return (enum kernels_isa)atomic_load(&current_isa);
}

const char *kernels_isa_name(enum kernels_isa isa)
{
    switch (isa) {
    case KERNELS_ISA_SCALAR:
        return "scalar";
    case KERNELS_ISA_AVX2:
        return "avx2";
    case KERNELS_ISA_AVX_VNNI:
        return "avx-vnni";
    case KERNELS_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

bool kernels_isa_available(enum kernels_isa isa)
{
    kernels_init();
    return (int)isa >= 0 && (int)isa < KERNELS_ISA_COUNT && isa_available[isa];
}

int kernels_set_isa(enum kernels_isa isa, el_err *err)
{
    kernels_init();
    if ((int)isa < 0 || (int)isa >= KERNELS_ISA_COUNT)
        return el_fail(err, "unknown kernel implementation %d", (int)isa);
    if (!isa_available[isa])
        return el_fail(err, "this CPU (or this build) cannot run the %s kernels", kernels_isa_name(isa));
    select_isa(isa);
    return 0;
}

static const kv_ops *vec(void)
{
    const kv_ops *ops = atomic_load_explicit(&current_vec, memory_order_acquire);
    if (!ops) {
        kernels_init();
        ops = atomic_load(&current_vec);
    }
    return ops;
}

/* ---- types ------------------------------------------------------------------- */

static const kq_type_ops *ops_for(uint32_t type)
{
    kernels_init();
    const kq_type_ops *ops = kq_ops_float(type);
    if (!ops)
        ops = kq_ops_legacy(type);
    if (!ops)
        ops = kq_ops_kquant(type);
    return ops;
}

/* The kernels over a type's repacked layout, or NULL for a type that has none. */
static const kq_type_ops *repacked_ops(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_Q4_0:
        return kq_ops_q4_0_r16();
    case GGUF_TYPE_Q4_K:
        return kq_ops_q4_k_r16();
    case GGUF_TYPE_Q5_K:
        return kq_ops_q5_k_r16();
    case GGUF_TYPE_Q6_K:
        return kq_ops_q6_k_r16();
    case GGUF_TYPE_Q8_0:
        return kq_ops_q8_0_r16();
    default:
        return NULL;
    }
}

static const kq_type_ops *ops_for_matrix(const kernels_matrix *w)
{
    if (w->layout == KERNELS_LAYOUT_REPACKED)
        return repacked_ops(w->type);
    return ops_for(w->type);
}

static const kq_impl *impl_member(const kq_type_ops *ops, enum kernels_isa isa)
{
    switch (isa) {
    case KERNELS_ISA_SCALAR:
        return &ops->scalar;
    case KERNELS_ISA_AVX2:
        return &ops->avx2;
    case KERNELS_ISA_AVX_VNNI:
        return &ops->avx_vnni;
    case KERNELS_ISA_AVX512:
        return &ops->avx512;
    }
    return &ops->scalar;
}

/* The selected implementation: dequant from the widest implementation in the
 * fallback chain that has one, and likewise the dot group (a tile kernel and an
 * activation layout only go with the dot they were written beside). */
static kq_impl impl_for_isa(const kq_type_ops *ops, enum kernels_isa isa)
{
    enum kernels_isa chain[KERNELS_ISA_COUNT];
    int n = fallback_chain(isa, chain);
    kq_impl impl = ops->scalar;
    bool have_dequant = false, have_dot = false;
    for (int i = 0; i < n && !(have_dequant && have_dot); i++) {
        const kq_impl *m = impl_member(ops, chain[i]);
        if (!have_dequant && m->dequant) {
            impl.dequant = m->dequant;
            have_dequant = true;
        }
        if (!have_dot && m->dot) {
            impl.dot = m->dot;
            impl.dot_tile = m->dot_tile;
            impl.act_convert = m->act_convert;
            impl.act_row_bytes = m->act_row_bytes;
            impl.tile_cols = m->tile_cols;
            have_dot = true;
        }
    }
    return impl;
}

static kq_impl impl_for(const kq_type_ops *ops)
{
    return impl_for_isa(ops, (enum kernels_isa)atomic_load(&current_isa));
}

static bool row_length_ok(uint32_t type, int64_t n)
{
    const gguf_type_info *info = gguf_type_get(type);
    return info && n >= 0 && n % info->block_size == 0;
}

bool kernels_can_dequantize(uint32_t type)
{
    const kq_type_ops *ops = ops_for(type);
    return ops && ops->scalar.dequant;
}

bool kernels_can_quantize(uint32_t type)
{
    const kq_type_ops *ops = ops_for(type);
    return ops && ops->quant;
}

bool kernels_can_matmul(uint32_t type)
{
    const kq_type_ops *ops = ops_for(type);
    return ops && ops->scalar.dot && kq_act_row_bytes(ops->act_type, 256) > 0;
}

int kernels_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    const kq_type_ops *ops = ops_for(type);
    if (!ops || !ops->scalar.dequant || !row_length_ok(type, n))
        return -1;
    impl_for(ops).dequant(src, dst, n);
    return 0;
}

int kernels_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    const kq_type_ops *ops = ops_for(type);
    if (!ops || !ops->quant || !row_length_ok(type, n))
        return -1;
    if (type == GGUF_TYPE_Q8_0)
        kq_act_convert(type, src, dst, n); /* the selected ISA's quantizer: same bytes */
    else
        ops->quant(src, dst, n);
    return 0;
}

/* ---- activations --------------------------------------------------------------- */

size_t kq_act_row_bytes(uint32_t act_type, int64_t n)
{
    if (n < 0)
        return 0;
    size_t un = (size_t)n;
    switch (act_type) {
    case GGUF_TYPE_F32:
        return un * 4;
    case GGUF_TYPE_F16:
    case GGUF_TYPE_BF16:
        return un * 2;
    case GGUF_TYPE_Q8_0:
        return un / 32 * 34;
    case GGUF_TYPE_Q8_1:
        return un / 32 * 36;
    case GGUF_TYPE_Q8_K:
        return un / 256 * (4 + 256 + 2 * 16);
    default:
        return 0;
    }
}

void kq_act_convert(uint32_t act_type, const float *src, void *dst, int64_t n)
{
    kernels_init();
    const act_quantizers *q = &merged_act[atomic_load(&current_isa)];
    switch (act_type) {
    case GGUF_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case GGUF_TYPE_F16:
        vec()->f32_to_f16(src, dst, n);
        break;
    case GGUF_TYPE_BF16:
        kq_ops_float(GGUF_TYPE_BF16)->quant(src, dst, n); /* the reference rounding, to nearest even */
        break;
    case GGUF_TYPE_Q8_0:
        q->q8_0(src, dst, n);
        break;
    case GGUF_TYPE_Q8_1:
        q->q8_1(src, dst, n);
        break;
    case GGUF_TYPE_Q8_K:
        q->q8_k(src, dst, n);
        break;
    default:
        break;
    }
}

/* ---- matrix multiplication ------------------------------------------------------ */

enum {
    SCRATCH_ALIGN = 64,
    TILE = 4,            /* rows and tokens per tile kernel call */
    TOKEN_BLOCK = 32,    /* tokens whose activations stay in cache while a chunk's rows pass */
    /* Chunks per thread, so that a thread slowed by the machine is balanced by the others.
     * With many tokens a chunk is long (rows x tokens), and the thread that finishes
     * first waits for the other's last chunk: smaller chunks there (gemma3-1b pp128:
     * ~4 % of the time was this wait with 8). One token streams its chunk's rows with
     * prefetch, so its chunks stay large and contiguous. */
    CHUNKS_PER_THREAD = 8,
    CHUNKS_PER_THREAD_BATCH = 32,
    /* ...but at most this many weight bytes per decode chunk: the last chunk of a large
     * matrix (Gemma's 256k-row output: 35 MB per chunk in Q8_0 with 8 per thread) is
     * what the thread that finishes first waits for, a long wait when a time slice went
     * to another process. 1 MiB streams in ~70 us and still spans many tiles, so the
     * prefetch's run-in at a chunk's start stays small. */
    DECODE_CHUNK_BYTES = 1 << 20,
    /* The last nth chunks' rows of a job go in chunks this many times smaller: the
     * thread that finishes first waits for the other's last chunk, up to ~70 us at
     * 1 MiB, at every matmul (73 of them per gemma-2b token). */
    TAIL_SPLIT = 4
};

static size_t round_up_to_align(size_t bytes)
{
    return (bytes + SCRATCH_ALIGN - 1) / SCRATCH_ALIGN * SCRATCH_ALIGN;
}

/* Bytes between activation rows for an implementation (its own layout, or act_type's). */
static size_t act_stride_for(const kq_impl *impl, uint32_t act_type, int64_t cols)
{
    size_t bytes = impl->act_convert ? impl->act_row_bytes(cols) : kq_act_row_bytes(act_type, cols);
    return round_up_to_align(bytes);
}

size_t kernels_matmul_scratch_size(uint32_t type, int64_t cols, int n_tokens)
{
    const kq_type_ops *ops = ops_for(type);
    if (!ops || n_tokens <= 0 || ops->act_type == GGUF_TYPE_F32)
        return 0;
    /* enough for any implementation: tests switch between them on one scratch */
    size_t stride = 0;
    for (int i = 0; i < KERNELS_ISA_COUNT; i++) {
        if (!isa_available[i])
            continue;
        kq_impl impl = impl_for_isa(ops, (enum kernels_isa)i);
        size_t s = act_stride_for(&impl, ops->act_type, cols);
        stride = s > stride ? s : stride;
        if (repacked_ops(type)) {
            impl = impl_for_isa(repacked_ops(type), (enum kernels_isa)i);
            s = act_stride_for(&impl, ops->act_type, cols);
            stride = s > stride ? s : stride;
        }
    }
    return stride * (size_t)n_tokens;
}

/* One matrix of a (possibly fused) matmul: its rows form chunks first_chunk..+n_chunks
 * of the job's common chunk counter. */
typedef struct matmul_part {
    const kernels_matrix *w;
    kq_impl impl;
    uint32_t act_type;
    float *y;
    int64_t y_stride;
    uint8_t *act;      /* its activations: its own, or those of an earlier part with the same layout */
    size_t act_stride;
    bool converts;     /* fills act (the first part of its layout) */
    int64_t rows_per_chunk;
    int64_t first_chunk;
    /* chunks of rows_per_chunk rows up to tail_row (n_head_chunks of them), then of
     * tail_rows_per_chunk (split_chunks) */
    int64_t n_head_chunks, tail_row, tail_rows_per_chunk;
    int token_block;   /* a whole number of tiles: only the batch's last tile is partial */
} matmul_part;

typedef struct matmul_job {
    const float *x;
    int64_t x_stride;
    int64_t cols;
    int n_tokens;
    int n_parts;
    matmul_part parts[KERNELS_MATMUL_MULTI_MAX];
    int converting[KERNELS_MATMUL_MULTI_MAX]; /* indices of the parts that convert */
    int n_converting;
    int64_t n_chunks;
    atomic_int_fast64_t next_chunk;
} matmul_job;

static void convert_one(const matmul_job *job, const matmul_part *part, int t)
{
    const float *src = job->x + (int64_t)t * job->x_stride;
    uint8_t *dst = part->act + (size_t)t * part->act_stride;
    if (part->impl.act_convert)
        part->impl.act_convert(src, dst, job->cols);
    else
        kq_act_convert(part->act_type, src, dst, job->cols);
}

static void convert_job(void *arg, int ith, int nth)
{
    matmul_job *job = arg;
    int n_items = job->n_converting * job->n_tokens;
    for (int item = ith; item < n_items; item += nth)
        convert_one(job, &job->parts[job->converting[item / job->n_tokens]], item % job->n_tokens);
}

/* Rows per tile call: up to TILE, or a repacked matrix's whole groups (the tile kernel
 * gets a group's first byte). */
static int rows_per_tile(const kernels_matrix *w)
{
    return w->layout == KERNELS_LAYOUT_REPACKED ? KQ_R16_ROWS : TILE;
}

static void rows_times_tokens(const matmul_part *part, int64_t r0, int64_t r1, int t0, int t1)
{
    const kernels_matrix *w = part->w;
    const uint8_t *wdata = w->data;
    if (part->impl.dot_tile) {
        int tile_cols = part->impl.tile_cols > 0 ? part->impl.tile_cols : TILE;
        int tile_rows = rows_per_tile(w);
        for (int64_t r = r0; r < r1; r += tile_rows) {
            int nr = (int)(r1 - r < tile_rows ? r1 - r : tile_rows);
            EL_ASSERT(w->layout == KERNELS_LAYOUT_GGUF || nr == tile_rows);
            for (int t = t0; t < t1; t += tile_cols) {
                int nc = t1 - t < tile_cols ? t1 - t : tile_cols;
                part->impl.dot_tile(w->cols, wdata + (size_t)r * w->row_bytes, w->row_bytes, nr,
                                    part->act + (size_t)t * part->act_stride, part->act_stride, nc,
                                    part->y + (int64_t)t * part->y_stride + r, part->y_stride);
            }
        }
        return;
    }
    for (int64_t r = r0; r < r1; r++)
        for (int t = t0; t < t1; t++)
            part->impl.dot(w->cols, wdata + (size_t)r * w->row_bytes,
                           part->act + (size_t)t * part->act_stride,
                           part->y + (int64_t)t * part->y_stride + r);
}

static const matmul_part *part_of_chunk(const matmul_job *job, int64_t c)
{
    int i = job->n_parts - 1;
    while (i > 0 && c < job->parts[i].first_chunk)
        i--;
    return &job->parts[i];
}

static void chunk_range(const matmul_part *part, int64_t k, int64_t *r0, int64_t *r1)
{
    int64_t per = k < part->n_head_chunks ? part->rows_per_chunk : part->tail_rows_per_chunk;
    *r0 = k < part->n_head_chunks ? k * per : part->tail_row + (k - part->n_head_chunks) * per;
    *r1 = *r0 + per < part->w->rows ? *r0 + per : part->w->rows;
}

static void dot_job(void *arg, int ith, int nth)
{
    (void)ith;
    (void)nth;
    matmul_job *job = arg;
    for (;;) {
        int64_t c = atomic_fetch_add(&job->next_chunk, 1);
        if (c >= job->n_chunks)
            break;
        const matmul_part *part = part_of_chunk(job, c);
        int64_t r0, r1;
        chunk_range(part, c - part->first_chunk, &r0, &r1);
        for (int t0 = 0; t0 < job->n_tokens; t0 += part->token_block) {
            int t1 = t0 + part->token_block < job->n_tokens ? t0 + part->token_block : job->n_tokens;
            rows_times_tokens(part, r0, r1, t0, t1);
        }
    }
}

/* Lays out a part's chunks, its last tail_rows rows (rounded to whole chunks) in
 * chunks TAIL_SPLIT times smaller; returns how many. */
static int64_t split_chunks(matmul_part *part, int64_t tail_rows)
{
    int64_t rows = part->w->rows, per = part->rows_per_chunk;
    int unit = rows_per_tile(part->w);
    int64_t head = rows > tail_rows ? (rows - tail_rows) / per : 0;
    int64_t small = tail_rows > 0 ? (per / TAIL_SPLIT + unit - 1) / unit * unit : per;
    part->n_head_chunks = head;
    part->tail_row = head * per;
    part->tail_rows_per_chunk = small;
    return head + (rows - part->tail_row + small - 1) / small;
}

static int64_t chunk_rows(const kernels_matrix *w, int nth, int n_tokens)
{
    int64_t rows = w->rows;
    int unit = rows_per_tile(w);
    int chunks = n_tokens > 1 ? CHUNKS_PER_THREAD_BATCH : CHUNKS_PER_THREAD;
    int64_t per = rows / ((int64_t)nth * chunks);
    if (n_tokens == 1 && per * (int64_t)w->row_bytes > DECODE_CHUNK_BYTES)
        per = DECODE_CHUNK_BYTES / (int64_t)w->row_bytes;
    per = (per + unit - 1) / unit * unit;
    return per < unit ? unit : per;
}

/* Tokens per pass over a chunk's rows: about TOKEN_BLOCK, rounded down to whole tiles
 * (a partial tile decodes its weights for fewer tokens: 32 tokens in tiles of 6 left one
 * of 2 per block). */
static int token_block_for(const kq_impl *impl)
{
    int tile_cols = impl->dot_tile && impl->tile_cols > 0 ? impl->tile_cols : TILE;
    int block = TOKEN_BLOCK / tile_cols * tile_cols;
    return block > 0 ? block : tile_cols;
}

static void zero_output(const kernels_matrix *w, int n_tokens, float *y, int64_t y_stride)
{
    for (int t = 0; t < n_tokens; t++)
        memset(y + (int64_t)t * y_stride, 0, (size_t)w->rows * sizeof(float));
}

/* Parts whose activations have the same layout share one conversion. */
static const matmul_part *same_layout_part(const matmul_job *job, const matmul_part *part)
{
    for (int i = 0; i < job->n_converting; i++) {
        const matmul_part *o = &job->parts[job->converting[i]];
        if (o->act_type == part->act_type && o->impl.act_convert == part->impl.act_convert &&
            o->act_stride == part->act_stride)
            return o;
    }
    return NULL;
}

/* Fills in a part; returns the scratch bytes it used (0 when it shares or needs none). */
static size_t setup_part(matmul_job *job, int index, const kq_type_ops *ops, const kernels_matrix *w,
                         float *y, int64_t y_stride, uint8_t *scratch)
{
    matmul_part *part = &job->parts[index];
    *part = (matmul_part){.w = w, .impl = impl_for(ops), .act_type = ops->act_type, .y = y, .y_stride = y_stride};
    if (ops->act_type == GGUF_TYPE_F32) {
        part->act = (uint8_t *)(uintptr_t)job->x; /* read only: dot kernels take const rows */
        part->act_stride = (size_t)job->x_stride * sizeof(float);
        return 0;
    }
    part->act_stride = act_stride_for(&part->impl, ops->act_type, w->cols);
    const matmul_part *shared = same_layout_part(job, part);
    if (shared) {
        part->act = shared->act;
        return 0;
    }
    part->act = scratch;
    part->converts = true;
    job->converting[job->n_converting++] = index;
    return kernels_matmul_scratch_size(w->type, w->cols, job->n_tokens);
}

void kernels_matmul_multi(int n_mats, const kernels_matrix *const w[], float *const y[], const int64_t y_stride[],
                          const float *x, int64_t x_stride, int n_tokens, void *scratch, threadpool *pool)
{
    if (n_tokens <= 0 || n_mats <= 0 || n_mats > KERNELS_MATMUL_MULTI_MAX)
        return;
    int nth = pool ? threadpool_size(pool) : 1;
    matmul_job job = {.x = x, .x_stride = x_stride, .cols = w[0]->cols, .n_tokens = n_tokens};
    uint8_t *free_scratch = scratch;
    for (int i = 0; i < n_mats; i++) {
        const kq_type_ops *ops = ops_for_matrix(w[i]);
        if (w[i]->rows <= 0)
            continue;
        if (!ops || !ops->scalar.dot || !row_length_ok(w[i]->type, w[i]->cols) || w[i]->cols != job.cols) {
            zero_output(w[i], n_tokens, y[i], y_stride[i]);
            continue;
        }
        int index = job.n_parts++;
        free_scratch += setup_part(&job, index, ops, w[i], y[i], y_stride[i], free_scratch);
        matmul_part *part = &job.parts[index];
        part->rows_per_chunk = chunk_rows(w[i], nth, n_tokens);
        part->token_block = token_block_for(&part->impl);
        part->first_chunk = job.n_chunks;
        job.n_chunks += split_chunks(part, 0);
    }
    if (job.n_parts == 0)
        return;
    if (nth > 1) {
        matmul_part *last = &job.parts[job.n_parts - 1];
        job.n_chunks = last->first_chunk + split_chunks(last, (int64_t)nth * last->rows_per_chunk);
    }
    if (job.n_converting > 0) {
        if (n_tokens * job.n_converting == 1 || nth == 1)
            convert_job(&job, 0, 1);
        else
            threadpool_run(pool, convert_job, &job);
    }
    atomic_init(&job.next_chunk, 0);
    if (nth == 1)
        dot_job(&job, 0, 1);
    else
        threadpool_run(pool, dot_job, &job);
}

void kernels_matmul(const kernels_matrix *w, const float *x, int64_t x_stride, int n_tokens,
                    float *y, int64_t y_stride, void *scratch, threadpool *pool)
{
    kernels_matmul_multi(1, &w, &y, &y_stride, x, x_stride, n_tokens, scratch, pool);
}

/* ---- repacking ------------------------------------------------------------------- */

/* How a type is repacked: groups of 16 rows (both layouts), blocks of block_values. */
typedef struct repack_format {
    int64_t block_values;
    size_t block_bytes;
    void (*pack_group)(const void *rows, size_t row_bytes, int64_t nb, void *group);
    void (*unpack_row)(const void *group, int64_t nb, int r, void *row);
} repack_format;

_Static_assert((int)KQ_R16_ROWS == (int)KK_R16_ROWS && (int)KQ_R16_ROWS == (int)K6_R16_ROWS, "the driver tiles every repacked type by the same rows");
_Static_assert((int)KQ_R16_ROWS == (int)K8_R16_ROWS && (int)KQ_R16_ROWS == (int)K5_R16_ROWS,
               "the driver tiles every repacked type by the same rows");

static const repack_format *repack_format_of(uint32_t type)
{
    static const repack_format q4_0 = {KQ_QK, sizeof(kq_block_q4_0), kq_r16_pack_group, kq_r16_unpack_row};
    static const repack_format q4_k = {KQ_QK_K, sizeof(kq_block_q4_K), kk_r16_pack_group, kk_r16_unpack_row};
    static const repack_format q6_k = {KQ_QK_K, sizeof(kq_block_q6_K), k6_r16_pack_group, k6_r16_unpack_row};
    static const repack_format q5_k = {KQ_QK_K, sizeof(kq_block_q5_K), k5_r16_pack_group, k5_r16_unpack_row};
    static const repack_format q8_0 = {KQ_QK, sizeof(kq_block_q8_0), k8_r16_pack_group, k8_r16_unpack_row};
    switch (type) {
    case GGUF_TYPE_Q4_0:
        return &q4_0;
    case GGUF_TYPE_Q4_K:
        return &q4_k;
    case GGUF_TYPE_Q5_K:
        return &q5_k;
    case GGUF_TYPE_Q6_K:
        return &q6_k;
    case GGUF_TYPE_Q8_0:
        return &q8_0;
    default:
        return NULL;
    }
}

/* Whether the selected implementation has repacked kernels of its own for type (a
 * SIMD tile): the scalar ones are the tests' reference, slower than the GGUF layout's. */
static bool repacked_simd_selected(uint32_t type)
{
    const kq_type_ops *r16 = repacked_ops(type);
    return r16 && impl_for(r16).dot_tile != r16->scalar.dot_tile;
}

bool kernels_can_repack(const kernels_matrix *w)
{
    kernels_init();
    const repack_format *f = repack_format_of(w->type);
    return f && repacked_simd_selected(w->type) && w->layout == KERNELS_LAYOUT_GGUF && w->rows > 0 &&
           w->rows % KQ_R16_ROWS == 0 && w->cols > 0 && w->cols % f->block_values == 0 &&
           w->row_bytes == (size_t)(w->cols / f->block_values) * f->block_bytes;
}

/* Group by group through a copy of one group's rows, so that the extra memory is
 * 16 rows whatever the matrix. */
int kernels_repack_matrix(kernels_matrix *w, void *data)
{
    if (!kernels_can_repack(w) || data != w->data)
        return -1;
    const repack_format *f = repack_format_of(w->type);
    size_t group_bytes = KQ_R16_ROWS * w->row_bytes;
    uint8_t *rows = malloc(group_bytes);
    if (!rows)
        return -1;
    for (int64_t g = 0; g < w->rows / KQ_R16_ROWS; g++) {
        uint8_t *group = (uint8_t *)data + (size_t)g * group_bytes;
        memcpy(rows, group, group_bytes);
        f->pack_group(rows, w->row_bytes, w->cols / f->block_values, group);
    }
    free(rows);
    w->layout = KERNELS_LAYOUT_REPACKED;
    return 0;
}

int kernels_unpack_row(const kernels_matrix *w, int64_t r, void *row)
{
    if (r < 0 || r >= w->rows)
        return -1;
    const uint8_t *base = w->data;
    if (w->layout == KERNELS_LAYOUT_GGUF) {
        memcpy(row, base + (size_t)r * w->row_bytes, w->row_bytes);
        return 0;
    }
    const repack_format *f = repack_format_of(w->type);
    EL_ASSERT(f);
    size_t group_bytes = KQ_R16_ROWS * w->row_bytes;
    f->unpack_row(base + (size_t)(r / KQ_R16_ROWS) * group_bytes, w->cols / f->block_values,
                  (int)(r % KQ_R16_ROWS), row);
    return 0;
}

/* ---- vector operations ------------------------------------------------------------ */

void kernels_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    vec()->rmsnorm(y, x, w, n, eps);
}

void kernels_geglu(float *gate, const float *up, int64_t n)
{
    vec()->geglu(gate, up, n);
}

void kernels_swiglu(float *gate, const float *up, int64_t n)
{
    vec()->swiglu(gate, up, n);
}

void kernels_add(float *y, const float *x, int64_t n)
{
    vec()->add(y, x, n);
}

void kernels_scale(float *y, float s, int64_t n)
{
    vec()->scale(y, s, n);
}

void kernels_softcap(float *y, float cap, int64_t n)
{
    vec()->softcap(y, cap, n);
}

void kernels_softmax(float *y, int64_t n)
{
    vec()->softmax(y, n);
}

void kernels_f32_to_f16(const float *x, uint16_t *y, int64_t n)
{
    vec()->f32_to_f16(x, y, n);
}

void kernels_f16_to_f32(const uint16_t *x, float *y, int64_t n)
{
    vec()->f16_to_f32(x, y, n);
}

float kernels_dot_f16(const uint16_t *a, const uint16_t *b, int64_t n)
{
    return vec()->dot_f16(a, b, n);
}

void kernels_axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
    vec()->axpy_f16(y, a, x, n);
}
