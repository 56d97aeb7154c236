/* Micro-benchmark of the matmul kernels (built by hand, not by the Makefile):
 *   gcc -O2 -std=c11 -D_GNU_SOURCE -Isrc -o build-kern/kernels_bench bench/kernels_bench.c \
 *       build-kern/libkernels.a build-kern/libgguf.a build-kern/libbase.a -lm -pthread
 *   build-kern/kernels_bench [threads] [isa: scalar|avx2|avx-vnni|avx512|best] [type names...]
 * (any BUILD directory in place of build-kern). Reports, per type: decode-style
 * matrix-vector GB/s (weights streamed from memory: several copies rotate so that
 * no cache holds them) next to the machine's plain read bandwidth of the same
 * buffer; the same product on one thread with the matrix in L2 (ns per block: the
 * arithmetic cost); the GFLOP/s of a 128-token matmul. A type the selected kernels
 * repack at load (kernels_repack_matrix) gets a second line in that layout. Each figure is the fastest
 * of many short runs, so that runs hit by other processes' time slices do not count. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdbool.h>
#include <time.h>

#include <immintrin.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

enum { ROWS = 16384, COLS = 2048, TOTAL_MB = 640 };

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
    float row[COLS];
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

typedef struct stream_arg {
    const uint8_t *buf;
    size_t bytes;
    uint64_t sink[16];
} stream_arg;

/* An AVX2 streaming sum: the read bandwidth a kernel could hope for. */
__attribute__((target("avx2"))) static void stream_job(void *arg, int ith, int nth)
{
    stream_arg *a = arg;
    size_t per = a->bytes / (size_t)nth / 128 * 128;
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
    for (int rep = 0; rep < 3 * copies; rep++) {
        stream_arg sa = {.buf = w + (size_t)(rep % copies) * mat, .bytes = mat};
        double t0 = now();
        threadpool_run(pool, stream_job, &sa);
        double gbs = (double)sa.bytes / (now() - t0) / 1e9;
        best_stream = gbs > best_stream ? gbs : best_stream;
    }

    /* decode: one token, a different copy each time */
    kernels_matrix m = {.type = type, .rows = ROWS, .cols = COLS, .data = w, .row_bytes = row_bytes, .layout = layout};
    kernels_matmul(&m, x, COLS, 1, y, ROWS, scratch, pool);
    double best = 0;
    for (int it = 0; it < 3 * copies; it++) {
        m.data = w + (size_t)(it % copies) * mat;
        double t0 = now();
        kernels_matmul(&m, x, COLS, 1, y, ROWS, scratch, pool);
        double gbs = (double)mat / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }

    /* decode in cache: one thread, a 256-row slice that fits in L2; the fastest of many
     * short runs, so that time slices lost to other processes do not count */
    kernels_matrix small = {.type = type, .rows = 256, .cols = COLS, .data = w, .row_bytes = row_bytes, .layout = layout};
    double best_l2 = 0;
    for (int rep = 0; rep < 400; rep++) {
        double t0 = now();
        kernels_matmul(&small, x, COLS, 1, y, 256, scratch, NULL);
        double gbs = (double)row_bytes * 256 / (now() - t0) / 1e9;
        best_l2 = gbs > best_l2 ? gbs : best_l2;
    }

    /* prompt: 128 tokens against a 2048 x 2048 slice */
    kernels_matrix p = {.type = type, .rows = 2048, .cols = COLS, .data = w, .row_bytes = row_bytes, .layout = layout};
    kernels_matmul(&p, x, COLS, 128, y, 2048, scratch, pool);
    double best_flops = 0;
    for (int rep = 0; rep < 30; rep++) {
        double t0 = now();
        kernels_matmul(&p, x, COLS, 128, y, 2048, scratch, pool);
        double gf = 2.0 * 2048 * COLS * 128 / (now() - t0) / 1e9;
        best_flops = gf > best_flops ? gf : best_flops;
    }
    printf("%-5s%s %s threads=%d  matvec %dx%d: %5.1f GB/s (plain read %5.1f GB/s, %3.0f%%)  "
           "in L2, 1 thread: %5.1f GB/s (%.2f ns/block)  matmul 2048x%d x 128 tokens: %6.1f GFLOP/s\n",
           gguf_type_get(type)->name, repack ? " (repacked)" : "", kernels_isa_name(kernels_isa()), threadpool_size(pool), ROWS,
           COLS, best, best_stream, 100 * best / best_stream, best_l2,
           (double)gguf_type_get(type)->type_size / best_l2, COLS, best_flops);
    free(w);
    free(x);
    free(y);
    free(scratch);
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    kernels_init();
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
                              GGUF_TYPE_Q4_1, GGUF_TYPE_Q5_0, GGUF_TYPE_F16};
    int n_types = (int)(sizeof types / sizeof types[0]);
    for (int i = 0; i < n_types; i++) {
        const char *name = gguf_type_get(types[i])->name;
        bool wanted = argc <= 3;
        for (int a = 3; a < argc; a++)
            wanted |= strcasecmp(argv[a], name) == 0;
        if (wanted) {
            bench_type(types[i], pool, false);
            bench_type(types[i], pool, true); /* where the selected kernels repack it */
        }
    }
    threadpool_free(pool);
    return 0;
}
