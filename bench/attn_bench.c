/* Micro-benchmark of attention over an F16 and a Q8_0 KV cache (built by hand,
 * like kernels_bench):
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc -o build/bench/attn_bench bench/attn_bench.c \
 *       build/libkernels.a build/libgguf.a build/libbase.a -lm -pthread
 *   build/bench/attn_bench [isa: scalar|avx2|avx-vnni|avx512|best]
 * One thread, gemma3-1b's shape (head size 256, four query heads per KV head) at
 * depth 2048: decoding (four heads, or two: a thread's share with two threads)
 * and a prompt group (eight tokens x four heads). Each figure is the fastest of
 * many runs (ns per query row and cached position), next to the loop the fused
 * kernel replaced (one row at a time, one position at a time, the running sum
 * widened, updated and narrowed through three vector calls per position), so that
 * the ratio holds on a busy machine; then the same rows over the same keys and
 * values quantized to Q8_0 (kernels_attn_q8_0), and its time over the F16 one's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/fp16.h"
#include "base/rng.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"

enum { DIM = 256, DEPTH = 2048, MAX_ROWS = KERNELS_ATTN_MAX_ROWS, POSITIONS = DEPTH + 64 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The replaced loop, for the comparison. */
static void attend_stepwise(const kernels_attn_head *hd, const kernels_attn_row *row, uint16_t *q16, uint16_t *acc16,
                            float *tmp)
{
    int dk = hd->dk, dv = hd->dv;
    kernels_f32_to_f16(row->q, q16, dk);
    memset(acc16, 0, (size_t)dv * sizeof *acc16);
    float max = -INFINITY, sum = 0.0f;
    for (int p = row->first; p <= row->last; p++) {
        float s = kernels_dot_f16(q16, hd->k + (size_t)p * dk, dk) * hd->kq_scale;
        float rescale = 1.0f, w = 1.0f;
        if (s > max) {
            rescale = expf(max - s);
            if (sum > 0.0f) {
                kernels_f16_to_f32(acc16, tmp, dv);
                kernels_scale(tmp, rescale, dv);
                kernels_f32_to_f16(tmp, acc16, dv);
            }
            max = s;
        } else {
            w = expf(s - max);
        }
        sum = sum * rescale + w;
        kernels_f16_to_f32(acc16, tmp, dv);
        kernels_axpy_f16(tmp, w, hd->v + (size_t)p * dv, dv);
        kernels_f32_to_f16(tmp, acc16, dv);
    }
    kernels_f16_to_f32(acc16, row->out, dv);
    kernels_scale(row->out, 1.0f / sum, dv);
}

typedef struct setup {
    const char *name;
    int n_tokens, n_heads; /* rows = tokens x heads; token i ends at DEPTH + i */
} setup;

static double best_of_q8_0(int reps, const kernels_attn_head_q8_0 *hd, const kernels_attn_row *rows, int n,
                          void *scratch)
{
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        kernels_attn_q8_0(hd, rows, n, scratch);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

static double best_of(int reps, const kernels_attn_head *hd, const kernels_attn_row *rows, int n, void *scratch,
                      int fused)
{
    static uint16_t q16[DIM], acc16[DIM];
    static float tmp[DIM];
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (fused)
            kernels_attn_f16(hd, rows, n, scratch);
        else
            for (int i = 0; i < n; i++)
                attend_stepwise(hd, &rows[i], q16, acc16, tmp);
        double t = now() - t0;
        best = t < best ? t : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    kernels_init();
    for (int isa = 0; argc > 1 && isa < KERNELS_ISA_COUNT; isa++) {
        el_err err;
        if (strcmp(argv[1], kernels_isa_name((enum kernels_isa)isa)) == 0 &&
            kernels_set_isa((enum kernels_isa)isa, &err) != 0) {
            fprintf(stderr, "attn_bench: %s\n", err.msg);
            return 2;
        }
    }
    uint16_t *k = malloc((size_t)POSITIONS * DIM * sizeof *k), *v = malloc((size_t)POSITIONS * DIM * sizeof *v);
    float *q = malloc((size_t)MAX_ROWS * DIM * sizeof *q), *out = malloc((size_t)MAX_ROWS * DIM * sizeof *out);
    size_t f16_scratch = kernels_attn_scratch_size(MAX_ROWS, DIM, DIM);
    size_t q8_scratch = kernels_attn_q8_0_scratch_size(MAX_ROWS, DIM, DIM);
    void *scratch = aligned_alloc(64, ((f16_scratch > q8_scratch ? f16_scratch : q8_scratch) + 63) & ~(size_t)63);
    size_t q8_row = kernels_q8_0_row_bytes(DIM);
    uint8_t *k8 = malloc((size_t)POSITIONS * q8_row), *v8 = malloc((size_t)POSITIONS * q8_row);
    float *row = malloc(DIM * sizeof *row);
    if (!k || !v || !q || !out || !scratch || !k8 || !v8 || !row)
        return 1;
    el_rng rng;
    el_rng_seed(&rng, 1);
    for (size_t i = 0; i < (size_t)POSITIONS * DIM; i++) {
        k[i] = el_f32_to_fp16(el_rng_normal(&rng));
        v[i] = el_f32_to_fp16(el_rng_normal(&rng));
    }
    for (size_t i = 0; i < (size_t)MAX_ROWS * DIM; i++)
        q[i] = el_rng_normal(&rng) * 0.2f;
    for (size_t p = 0; p < POSITIONS; p++) { /* the same numbers in Q8_0 */
        kernels_f16_to_f32(k + p * DIM, row, DIM);
        kernels_quantize_row(GGUF_TYPE_Q8_0, row, k8 + p * q8_row, DIM);
        kernels_f16_to_f32(v + p * DIM, row, DIM);
        kernels_quantize_row(GGUF_TYPE_Q8_0, row, v8 + p * q8_row, DIM);
    }
    kernels_attn_head hd = {k, v, DIM, DIM, 1.0f, 0.0f};
    kernels_attn_head_q8_0 hd8 = {k8, v8, DIM, DIM, 1.0f, 0.0f};
    const setup setups[] = {{"decode, 4 heads", 1, 4}, {"decode, 2 heads", 1, 2}, {"prompt, 8 tokens x 4 heads", 8, 4}};
    printf("isa %s, head size %d, depth %d, one thread\n", kernels_isa_name(kernels_isa()), DIM, DEPTH);
    printf("| %-28s | %12s | %12s | %7s | %11s | %9s |\n", "rows", "fused ns/pos", "loop ns/pos", "speedup",
           "q8_0 ns/pos", "q8_0/f16");
    for (size_t s = 0; s < sizeof setups / sizeof setups[0]; s++) {
        kernels_attn_row rows[MAX_ROWS];
        int n = 0;
        long cells = 0;
        for (int t = 0; t < setups[s].n_tokens; t++)
            for (int h = 0; h < setups[s].n_heads; h++, n++) {
                rows[n] = (kernels_attn_row){q + (size_t)n * DIM, out + (size_t)n * DIM, 0, DEPTH + t};
                cells += DEPTH + t + 1;
            }
        double fused = best_of(30, &hd, rows, n, scratch, 1), loop = best_of(10, &hd, rows, n, scratch, 0);
        double q8 = best_of_q8_0(30, &hd8, rows, n, scratch);
        printf("| %-28s | %12.2f | %12.2f | %6.2fx | %11.2f | %8.2fx |\n", setups[s].name, fused * 1e9 / (double)cells,
               loop * 1e9 / (double)cells, loop / fused, q8 * 1e9 / (double)cells, q8 / fused);
    }
    free(k);
    free(v);
    free(q);
    free(out);
    free(k8);
    free(v8);
    free(row);
    free(scratch);
    return 0;
}
