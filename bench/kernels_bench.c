/* Micro-benchmark of the matmul kernels (built by hand, not by the Makefile):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc -o build-kern/kernels_bench bench/kernels_bench.c \
 *       build-kern/libkernels.a build-kern/libgguf.a build-kern/libbase.a -lm -pthread
 *   build-kern/kernels_bench [--cols N] [--passes N] [threads] [isa: scalar|avx2|avx-vnni|avx512|best] [type names...]
 *   build-kern/kernels_bench --read [--mib N] [--reps N] [threads]
 * (any BUILD directory in place of build-kern; `make bench` builds build/bench/kernels_bench).
 * Reports, per type: decode-style matrix-vector GB/s (weights streamed from memory: several copies rotate so that
 * no cache holds them) next to the machine's plain read bandwidth of the same
 * buffer; the same product on one thread with the matrix in L2 (ns per block: the
 * arithmetic cost); the GFLOP/s of a 128-token matmul. A type the selected kernels
 * repack at load (kernels_repack_matrix) gets a second line in that layout. Each figure
 * is the fastest of many short runs, so that runs hit by other processes' time slices do
 * not count. --cols sets the decode matrix's width (default 2048; 16384 is gemma-2b's FFN
 * down), --tokens how many tokens the streamed decode figure multiplies at once (default 1; 2..8
 * are a decode step of several streams), --passes how often the streamed figures rotate
 * through the copies (default 3).
 * --read prints only the plain read bandwidth of a buffer far larger than the LLC. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <stdbool.h>
#include <time.h>

#include <immintrin.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

enum { MATRIX_VALUES = 16384 * 2048, TOTAL_MB = 640, MAX_COLS = 16384 };

/* The decode matrix's width (--cols; rows follow so that its size stays the same):
 * 2048 is gemma-2b's FFN gate/up and attention (short rows), 16384 its FFN down. */
static int COLS = 2048, ROWS = MATRIX_VALUES / 2048;
/* Passes over the rotating copies for the streamed figures (--passes). */
static int PASSES = 3;
/* Tokens of the streamed decode figure (--tokens: a step of several streams). */
static int DECODE_TOKENS = 1;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Random weights: quantize a few random rows, then tile them over the matrix. */
static uint8_t *make_weights(uint32_t type, size_t row_bytes, int copies)
{
    size_t mat = row_bytes * ROWS;
    uint8_t *w = NULL;
    if (posix_memalign((void **)&w, 64, mat * (size_t)copies) != 0)
        return NULL;
    el_rng rng;
    el_rng_seed(&rng, type);
    float row[MAX_COLS];
    enum { DISTINCT = 64 };
    for (int r = 0; r < DISTINCT; r++) {
        for (int k = 0; k < COLS; k++)
            row[k] = el_rng_normal(&rng) * 0.05f;
        kernels_quantize_row(type, row, w + (size_t)r * row_bytes, COLS);
    }
    for (size_t off = DISTINCT * row_bytes; off < mat * (size_t)copies; off += DISTINCT * row_bytes) {
        size_t n = mat * (size_t)copies - off < DISTINCT * row_bytes ? mat * (size_t)copies - off
                                                                      : DISTINCT * row_bytes;
        memcpy(w + off, w, n);
    }
    return w;
}

/* Streaming sums: the read bandwidth a kernel could hope for. Several loops, because on
 * this project's Sapphire Rapids VM the loop itself moved the figure: 32-byte AVX2 loads
 * read 26-29 GB/s with two threads where 64-byte AVX-512 loads read 32-33 GB/s, and
 * software prefetch added up to 1 GB/s more; the last loop prefetches as the decode tiles
 * do (4 KiB ahead into L1, 16 KiB into L2). The machine's read bandwidth is the best
 * any of them reaches, so that a decode share is not measured against a
 * loop slower than the kernels. */
typedef struct stream_arg {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sink[16];
} stream_arg;

static size_t thread_share(const stream_arg *a, int nth)
{
    return a->bytes / (size_t)nth / 256 * 256;
}

__attribute__((target("avx2"))) static void stream_avx2_job(void *arg, int ith, int nth)
{
    stream_arg *a = arg;
    size_t per = thread_share(a, nth);
    const __m256i *p = (const __m256i *)(a->buf + per * (size_t)ith);
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i < per / 32; i += 4) {
        s0 = _mm256_add_epi64(s0, _mm256_load_si256(p + i));
        s1 = _mm256_add_epi64(s1, _mm256_load_si256(p + i + 1));
        s2 = _mm256_add_epi64(s2, _mm256_load_si256(p + i + 2));
        s3 = _mm256_add_epi64(s3, _mm256_load_si256(p + i + 3));
    }
    __m256i s = _mm256_add_epi64(_mm256_add_epi64(s0, s1), _mm256_add_epi64(s2, s3));
    a->sink[ith] = (uint64_t)_mm256_extract_epi64(s, 0);
}

/* 64-byte loads, four lines per step; `ahead` bytes of software prefetch into L1 (0:
 * none) and `far` bytes into L2 (0: none), as the decode tiles do. */
__attribute__((target("avx512f"))) static inline void stream_avx512(stream_arg *a, int ith, int nth, size_t ahead,
                                                                    size_t far)
{
    size_t per = thread_share(a, nth);
    const uint8_t *base = a->buf + per * (size_t)ith;
    __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t off = 0; off < per; off += 256) {
        const uint8_t *p = base + off;
        for (int l = 0; ahead && l < 4; l++)
            _mm_prefetch((const char *)p + ahead + 64 * l, _MM_HINT_T0);
        for (int l = 0; far && l < 4; l++)
            _mm_prefetch((const char *)p + far + 64 * l, _MM_HINT_T2);
        s0 = _mm512_add_epi64(s0, _mm512_load_si512(p));
        s1 = _mm512_add_epi64(s1, _mm512_load_si512(p + 64));
        s2 = _mm512_add_epi64(s2, _mm512_load_si512(p + 128));
        s3 = _mm512_add_epi64(s3, _mm512_load_si512(p + 192));
    }
    a->sink[ith] = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(s0, s1),
                                                                       _mm512_add_epi64(s2, s3)));
}

__attribute__((target("avx512f"))) static void stream_avx512_job(void *arg, int ith, int nth)
{
    stream_avx512(arg, ith, nth, 0, 0);
}

__attribute__((target("avx512f"))) static void stream_avx512_prefetch_job(void *arg, int ith, int nth)
{
    stream_avx512(arg, ith, nth, 1024, 0);
}

__attribute__((target("avx512f"))) static void stream_avx512_two_prefetch_job(void *arg, int ith, int nth)
{
    stream_avx512(arg, ith, nth, 4096, 16384);
}

typedef struct read_loop {
    const char *name;
    threadpool_fn job;
    const char *needs; /* __builtin_cpu_supports feature */
} read_loop;

static const read_loop READ_LOOPS[] = {
    {"avx2", stream_avx2_job, "avx2"},
    {"avx512", stream_avx512_job, "avx512f"},
    {"avx512+prefetch", stream_avx512_prefetch_job, "avx512f"},
    {"avx512+L1/L2 prefetch", stream_avx512_two_prefetch_job, "avx512f"},
};
enum { N_READ_LOOPS = sizeof READ_LOOPS / sizeof READ_LOOPS[0] };

static bool read_loop_runs(const read_loop *loop)
{
    /* __builtin_cpu_supports takes a literal: spell out the two features */
    if (!strcmp(loop->needs, "avx512f"))
        return __builtin_cpu_supports("avx512f");
    return __builtin_cpu_supports("avx2");
}

/* Seconds one pass of `loop` over `bytes` at `buf` takes. */
static double time_read(threadpool *pool, const read_loop *loop, const uint8_t *buf, size_t bytes)
{
    stream_arg sa = {.buf = buf, .bytes = bytes};
    double t0 = now();
    threadpool_run(pool, loop->job, &sa);
    return now() - t0;
}

/* Every copy rewritten into the kernels' repacked layout (as the model loader does);
 * returns the layout the matrices now have. */
static uint32_t repack_copies(uint32_t type, uint8_t *w, size_t row_bytes, int copies)
{
    kernels_matrix m = {.type = type, .rows = ROWS, .cols = COLS, .data = w, .row_bytes = row_bytes};
    if (!kernels_can_repack(&m))
        return KERNELS_LAYOUT_GGUF;
    for (int i = 0; i < copies; i++) {
        m = (kernels_matrix){.type = type, .rows = ROWS, .cols = COLS, .row_bytes = row_bytes};
        m.data = w + (size_t)i * row_bytes * ROWS;
        if (kernels_repack_matrix(&m, w + (size_t)i * row_bytes * ROWS) != 0)
            abort(); /* half-repacked copies would mix layouts */
    }
    return m.layout;
}

static void bench_type(uint32_t type, threadpool *pool, bool repack)
{
    size_t row_bytes = gguf_row_size(type, COLS);
    size_t mat = row_bytes * ROWS;
    int copies = (int)((size_t)TOTAL_MB * 1000000 / mat) + 1;
    uint8_t *w = make_weights(type, row_bytes, copies);
    uint32_t layout = w && repack ? repack_copies(type, w, row_bytes, copies) : KERNELS_LAYOUT_GGUF;
    if (repack && layout == KERNELS_LAYOUT_GGUF) {
        free(w);
        return;
    }
    float *x = malloc(sizeof(float) * COLS * 128);
    float *y = malloc(sizeof(float) * ROWS * 128);
    void *scratch = NULL;
    if (!w || !x || !y || posix_memalign(&scratch, 64, kernels_matmul_scratch_size(type, COLS, 128) + 64))
        return;
    el_rng rng;
    el_rng_seed(&rng, 9);
    for (int i = 0; i < COLS * 128; i++)
        x[i] = el_rng_normal(&rng);

    /* plain read bandwidth of the same buffer, one matrix-sized copy at a time; the
     * fastest run counts (runs hit by other processes' time slices are slower) */
    double best_stream = 0;
    for (int rep = 0; rep < PASSES * copies; rep++) {
        const read_loop *loop = &READ_LOOPS[rep % N_READ_LOOPS];
        if (!read_loop_runs(loop))
            continue;
        double gbs = (double)mat / time_read(pool, loop, w + (size_t)(rep % copies) * mat, mat) / 1e9;
        best_stream = gbs > best_stream ? gbs : best_stream;
    }

    /* decode: one token, a different copy each time */
    kernels_matrix m = {.type = type, .rows = ROWS, .cols = COLS, .data = w, .row_bytes = row_bytes, .layout = layout};
    kernels_matmul(&m, x, COLS, DECODE_TOKENS, y, ROWS, scratch, pool);
    double best = 0;
    for (int it = 0; it < PASSES * copies; it++) {
        m.data = w + (size_t)(it % copies) * mat;
        double t0 = now();
        kernels_matmul(&m, x, COLS, DECODE_TOKENS, y, ROWS, scratch, pool);
        double gbs = (double)mat / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }

    /* decode in cache: one thread, a 256-row slice that fits in L2; the fastest of many
     * short runs, so that time slices lost to other processes do not count */
    int l2_rows = 256 * 2048 / COLS;
    kernels_matrix small = {.type = type, .rows = l2_rows, .cols = COLS, .data = w, .row_bytes = row_bytes,
                            .layout = layout};
    double best_l2 = 0;
    for (int rep = 0; rep < 400; rep++) {
        double t0 = now();
        kernels_matmul(&small, x, COLS, 1, y, l2_rows, scratch, NULL);
        double gbs = (double)row_bytes * l2_rows / (now() - t0) / 1e9;
        best_l2 = gbs > best_l2 ? gbs : best_l2;
    }

    /* prompt: 128 tokens against a slice of 2048 x 2048 values */
    int p_rows = 2048 * 2048 / COLS;
    kernels_matrix p = {.type = type, .rows = p_rows, .cols = COLS, .data = w, .row_bytes = row_bytes,
                        .layout = layout};
    kernels_matmul(&p, x, COLS, 128, y, p_rows, scratch, pool);
    double best_flops = 0;
    for (int rep = 0; rep < 30; rep++) {
        double t0 = now();
        kernels_matmul(&p, x, COLS, 128, y, p_rows, scratch, pool);
        double gf = 2.0 * p_rows * COLS * 128 / (now() - t0) / 1e9;
        best_flops = gf > best_flops ? gf : best_flops;
    }
    printf("%-5s%s %s threads=%d  matvec %dx%d x%d: %5.1f GB/s (plain read %5.1f GB/s, %3.0f%%)  "
           "in L2, 1 thread: %5.1f GB/s (%.2f ns/block)  matmul %dx%d x 128 tokens: %6.1f GFLOP/s\n",
           gguf_type_get(type)->name, repack ? " (repacked)" : "", kernels_isa_name(kernels_isa()),
           threadpool_size(pool), ROWS,
           COLS, DECODE_TOKENS, best, best_stream, 100 * best / best_stream, best_l2,
           (double)gguf_type_get(type)->type_size / best_l2, p_rows, COLS, best_flops);
    free(w);
    free(x);
    free(y);
    free(scratch);
}

/* --read: the machine's plain read bandwidth, a streaming read of a buffer far larger
 * than the last-level cache (1 GiB by default; this Sapphire Rapids VM reports a 260 MiB
 * L3), split over the threads, by each read loop the CPU runs (READ_LOOPS). The buffer is
 * read in 32 MiB segments, each timed on its own, `reps` passes per loop; the fastest
 * segment of the fastest loop counts, so that on a shared machine a segment that kept
 * both threads on a core is found (a whole 1 GiB pass nearly always loses a time slice
 * to another process). A segment is read again only after the rest of the buffer, so it
 * comes from memory. The buffer asks for 2 MiB pages, as the model's repacked matrices
 * do (model.c), so that decode is held against the best read the machine does, not one
 * slowed by a TLB miss per 4 KiB. bench/bandwidth.sh divides decode's bytes per second by
 * this figure. */
enum { READ_SEGMENT = 32 << 20, HUGE_PAGE = 2 << 20 };

static int read_bandwidth(threadpool *pool, size_t mib, int reps)
{
    size_t bytes = mib << 20;
    uint8_t *buf = NULL;
    if (bytes < READ_SEGMENT || posix_memalign((void **)&buf, HUGE_PAGE, bytes) != 0) {
        fprintf(stderr, "kernels_bench: cannot allocate %zu MiB (at least 32)\n", mib);
        return 1;
    }
#ifdef MADV_HUGEPAGE
    madvise(buf, bytes, MADV_HUGEPAGE); /* a hint: without transparent huge pages it reads 4 KiB ones */
#endif
    memset(buf, 1, bytes); /* touch every page: no zero-page or fault costs in the timing */
    double best[N_READ_LOOPS] = {0}, total_time = 0;
    size_t total_bytes = 0;
    int fastest = 0;
    for (int rep = 0; rep < reps; rep++) {
        for (int i = 0; i < N_READ_LOOPS; i++) {
            if (!read_loop_runs(&READ_LOOPS[i]))
                continue;
            for (size_t off = 0; off + READ_SEGMENT <= bytes; off += READ_SEGMENT) {
                double dt = time_read(pool, &READ_LOOPS[i], buf + off, READ_SEGMENT);
                double gbs = (double)READ_SEGMENT / dt / 1e9;
                best[i] = gbs > best[i] ? gbs : best[i];
                fastest = best[i] > best[fastest] ? i : fastest;
                total_time += dt;
                total_bytes += READ_SEGMENT;
            }
        }
    }
    printf("read bandwidth: %.1f GB/s (best 32 MiB segment, %s loop; mean of all loops %.1f GB/s; %d threads, "
           "%zu MiB buffer, %d passes per loop)\n",
           best[fastest], READ_LOOPS[fastest].name, (double)total_bytes / total_time / 1e9, threadpool_size(pool),
           mib, reps);
    printf("by loop:");
    for (int i = 0; i < N_READ_LOOPS; i++) {
        if (read_loop_runs(&READ_LOOPS[i]))
            printf(" %s %.1f GB/s", READ_LOOPS[i].name, best[i]);
    }
    printf("\n");
    free(buf);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: kernels_bench [--cols N] [--tokens N] [--passes N] [THREADS [ISA [TYPE...]]]\n"
                    "       kernels_bench --read [--mib N] [--reps N] [THREADS]\n");
}

int main(int argc, char **argv)
{
    bool read_only = false;
    size_t mib = 1024;
    int reps = 10, a = 1;
    for (; a < argc && !strncmp(argv[a], "--", 2); a++) {
        if (!strcmp(argv[a], "--read")) {
            read_only = true;
        } else if (a + 1 < argc && !strcmp(argv[a], "--cols")) {
            COLS = atoi(argv[++a]);
            if (COLS < 256 || COLS > MAX_COLS || COLS % 256 || MATRIX_VALUES % COLS) {
                fprintf(stderr, "kernels_bench: --cols takes a multiple of 256 dividing %d, at most %d\n",
                        MATRIX_VALUES, MAX_COLS);
                return 2;
            }
            ROWS = MATRIX_VALUES / COLS;
        } else if (a + 1 < argc && !strcmp(argv[a], "--mib")) {
            mib = (size_t)atol(argv[++a]);
        } else if (a + 1 < argc && !strcmp(argv[a], "--tokens")) {
            DECODE_TOKENS = atoi(argv[++a]);
            if (DECODE_TOKENS < 1 || DECODE_TOKENS > 128) {
                fprintf(stderr, "kernels_bench: --tokens takes 1 to 128\n");
                return 2;
            }
        } else if (a + 1 < argc && !strcmp(argv[a], "--passes")) {
            PASSES = atoi(argv[++a]);
        } else if (a + 1 < argc && !strcmp(argv[a], "--reps")) {
            reps = atoi(argv[++a]);
        } else {
            usage();
            return 2;
        }
    }
    argc -= a - 1;
    argv += a - 1;
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    if (threads < 1 || mib < 1 || reps < 1 || PASSES < 1) {
        usage();
        return 2;
    }
    kernels_init();
    if (read_only) {
        threadpool *pool = threadpool_create(threads, NULL);
        int rc = pool ? read_bandwidth(pool, mib, reps) : 1;
        threadpool_free(pool);
        return rc;
    }
    for (int isa = 0; argc > 2 && isa < KERNELS_ISA_COUNT; isa++) {
        el_err err;
        if (strcmp(argv[2], kernels_isa_name((enum kernels_isa)isa)) == 0 &&
            kernels_set_isa((enum kernels_isa)isa, &err) != 0) {
            fprintf(stderr, "kernels_bench: %s\n", err.msg);
            return 2;
        }
    }
    threadpool *pool = threadpool_create(threads, NULL);
    if (!pool)
        return 1;
    const uint32_t types[] = {GGUF_TYPE_Q4_0, GGUF_TYPE_Q8_0, GGUF_TYPE_Q4_K, GGUF_TYPE_Q6_K, GGUF_TYPE_Q5_K,
                              GGUF_TYPE_Q4_1, GGUF_TYPE_Q5_0, GGUF_TYPE_F16, GGUF_TYPE_BF16, GGUF_TYPE_F32};
    int n_types = (int)(sizeof types / sizeof types[0]);
    for (int i = 0; i < n_types; i++) {
        const char *name = gguf_type_get(types[i])->name;
        bool wanted = argc <= 3;
        for (int k = 3; k < argc; k++)
            wanted |= strcasecmp(argv[k], name) == 0;
        if (wanted) {
            bench_type(types[i], pool, false);
            bench_type(types[i], pool, true); /* where the selected kernels repack it */
        }
    }
    threadpool_free(pool);
    return 0;
}
