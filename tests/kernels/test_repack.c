/* Repacked matrices (kernels_repack_matrix): the layout round-trips to the GGUF
 * bytes, and kernels_matmul on a repacked matrix agrees with the GGUF layout's
 * scalar reference on every implementation this CPU runs (the repacked layout's
 * scalar twin included), for odd block counts and 1..17 tokens, alone and fused
 * with a GGUF-layout matrix on the same input: Q4_0, Q8_0, Q4_K, Q5_K and Q6_K. */
#include <stdint.h>

#include "base/rng.h"
#include "base/threadpool.h"
#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "test.h"

typedef struct weights {
    kernels_matrix m;
    uint8_t *gguf; /* the original rows */
    uint8_t *packed;
    uint8_t *packed_alloc; /* packed lies `offset` bytes into it */
    float *x;
    int64_t x_stride;
} weights;

static void *aligned(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0)
        abort();
    return p;
}

/* The repacked copy `offset` bytes past a cache line: GGUF aligns tensors to 32 bytes
 * only, and the layout follows a group's place in its line (kernels_r16_pairs.h). */
static void weights_make_at(weights *w, uint32_t type, int64_t rows, int64_t cols, int n_tokens, uint64_t seed,
                            size_t offset)
{
    el_rng rng;
    el_rng_seed(&rng, seed);
    size_t row_bytes = gguf_row_size(type, cols);
    w->gguf = aligned(row_bytes * (size_t)rows);
    w->packed_alloc = aligned(row_bytes * (size_t)rows + offset);
    w->packed = w->packed_alloc + offset;
    float *tmp = malloc(sizeof(float) * (size_t)cols);
    for (int64_t r = 0; r < rows; r++) {
        float scale = 0.1f + el_rng_uniform(&rng);
        for (int64_t k = 0; k < cols; k++)
            tmp[k] = el_rng_normal(&rng) * scale;
        CHECK(kernels_quantize_row(type, tmp, w->gguf + (size_t)r * row_bytes, cols) == 0);
    }
    free(tmp);
    memcpy(w->packed, w->gguf, row_bytes * (size_t)rows);
    w->m = (kernels_matrix){
        .type = type, .rows = rows, .cols = cols, .data = w->packed, .row_bytes = row_bytes};
    w->x_stride = cols + 5;
    w->x = malloc(sizeof(float) * (size_t)(w->x_stride * n_tokens));
    for (int64_t i = 0; i < w->x_stride * n_tokens; i++)
        w->x[i] = el_rng_normal(&rng) * (1.0f + (float)(i % 3));
}

static void weights_make_type(weights *w, uint32_t type, int64_t rows, int64_t cols, int n_tokens, uint64_t seed)
{
    weights_make_at(w, type, rows, cols, n_tokens, seed, 0);
}

static void weights_make(weights *w, int64_t rows, int64_t cols, int n_tokens, uint64_t seed)
{
    weights_make_type(w, GGUF_TYPE_Q4_0, rows, cols, n_tokens, seed);
}

static void weights_free(weights *w)
{
    free(w->gguf);
    free(w->packed_alloc);
    free(w->x);
}

static kernels_matrix gguf_matrix(const weights *w)
{
    kernels_matrix m = w->m;
    m.data = w->gguf;
    m.layout = KERNELS_LAYOUT_GGUF;
    return m;
}

/* y[t * rows + r] for every token through kernels_matmul. */
static float *run(const kernels_matrix *m, const weights *w, int n_tokens, threadpool *pool)
{
    float *y = calloc((size_t)(m->rows * n_tokens), sizeof(float));
    void *scratch = aligned(kernels_matmul_scratch_size(m->type, m->cols, n_tokens));
    kernels_matmul(m, w->x, w->x_stride, n_tokens, y, m->rows, scratch, pool);
    free(scratch);
    return y;
}

/* Exact block sums on both sides; only the float summation order may differ. */
static int count_differences(const float *want, const float *got, const weights *w, int n_tokens)
{
    int64_t n = w->m.rows * n_tokens;
    float *row = malloc(sizeof(float) * (size_t)w->m.cols);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = i % w->m.rows, t = i / w->m.rows;
        kernels_dequantize_row(w->m.type, w->gguf + (size_t)r * w->m.row_bytes, row, w->m.cols);
        double mag = 0;
        for (int64_t k = 0; k < w->m.cols; k++)
            mag += fabs((double)row[k] * w->x[t * w->x_stride + k]);
        bad += !(fabs((double)want[i] - got[i]) <= 1e-5 * mag + 1e-30);
    }
    free(row);
    return bad;
}

/* The widest implementation here, when it repacks (AVX2 and wider), selected. */
static enum kernels_isa widest = KERNELS_ISA_SCALAR;

static bool repack_runs_here(void)
{
    for (int isa = KERNELS_ISA_AVX2; isa < KERNELS_ISA_COUNT; isa++)
        if (kernels_isa_available((enum kernels_isa)isa))
            widest = (enum kernels_isa)isa;
    if (widest != KERNELS_ISA_SCALAR && kernels_set_isa(widest, NULL) == 0)
        return true;
    fprintf(stderr, "SKIP: this CPU has no AVX2: no repacked layout\n");
    return false;
}

/* The K-quants with a repacked layout (Q2_K and Q3_K have none). */
static const uint32_t kquants[] = {GGUF_TYPE_Q4_K, GGUF_TYPE_Q6_K, GGUF_TYPE_Q5_K};
enum { N_KQUANTS = sizeof kquants / sizeof kquants[0] };

/* Selects the widest implementation here: every repacked type repacks on AVX2 and wider. */
static void select_repacking_isa(void)
{
    CHECK(kernels_set_isa(widest, NULL) == 0);
}

static void round_trip_at(uint32_t type, int64_t cols, size_t offset)
{
    weights w;
    weights_make_at(&w, type, 48, cols, 1, 1, offset);
    CHECK(kernels_repack_matrix(&w.m, w.packed) == 0);
    CHECK(w.m.layout == KERNELS_LAYOUT_REPACKED);
    CHECK(memcmp(w.packed, w.gguf, w.m.row_bytes * 48) != 0);
    uint8_t *row = malloc(w.m.row_bytes);
    for (int64_t r = 0; r < w.m.rows; r++) {
        CHECK(kernels_unpack_row(&w.m, r, row) == 0);
        CHECKF(memcmp(row, w.gguf + (size_t)r * w.m.row_bytes, w.m.row_bytes) == 0, "row %lld", (long long)r);
    }
    CHECK(kernels_unpack_row(&w.m, 48, row) == -1);
    free(row);
    CHECK(!kernels_can_repack(&w.m)); /* once only */
    weights_free(&w);
}

/* Odd block counts (a group's last block alone; groups alternately on and off a line)
 * at a line's start, 32 bytes into one, and 16 (a GGUF alignment under 32). */
static void round_trip(uint32_t type, int64_t cols)
{
    const size_t offsets[] = {0, 32, 16};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++)
        round_trip_at(type, cols, offsets[i]);
}

static void test_round_trip(void)
{
    if (!repack_runs_here())
        return;
    round_trip(GGUF_TYPE_Q4_0, 7 * 32);
    round_trip(GGUF_TYPE_Q8_0, 7 * 32); /* three pairs and a lone block */
    round_trip(GGUF_TYPE_Q8_0, 4 * 32);
    for (int i = 0; i < N_KQUANTS; i++) {
        select_repacking_isa();
        round_trip(kquants[i], 3 * 256);
    }
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
}

/* What is not repacked: other types, row counts off the group size, other paths. */
static void test_refusals(void)
{
    if (!repack_runs_here())
        return;
    weights w;
    weights_make(&w, 40, 64, 1, 2);
    CHECK(!kernels_can_repack(&w.m));
    CHECK(kernels_repack_matrix(&w.m, w.packed) == -1);
    CHECK(w.m.layout == KERNELS_LAYOUT_GGUF);
    CHECK(memcmp(w.packed, w.gguf, w.m.row_bytes * 40) == 0);
    kernels_matrix q5_0 = {.type = GGUF_TYPE_Q5_0, .rows = 16, .cols = 64, .data = w.packed,
                           .row_bytes = gguf_row_size(GGUF_TYPE_Q5_0, 64)};
    CHECK(!kernels_can_repack(&q5_0));
    w.m.rows = 32;
    CHECK(kernels_can_repack(&w.m));
    CHECK(kernels_repack_matrix(&w.m, w.gguf) == -1); /* data must be the matrix's own */
    for (int isa = KERNELS_ISA_AVX2; isa <= (int)widest; isa++)
        if (kernels_set_isa((enum kernels_isa)isa, NULL) == 0)
            CHECKF(kernels_can_repack(&w.m), "%s repacks", kernels_isa_name((enum kernels_isa)isa));
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    CHECK(!kernels_can_repack(&w.m)); /* the scalar twin is a reference, not faster */
    weights_free(&w);
    /* the K-quants: 40 rows stay in their GGUF layout, 32 repack on every SIMD path and
     * not on the scalar one; Q2_K has no repacked layout */
    for (int i = 0; i < N_KQUANTS; i++) {
        select_repacking_isa();
        weights_make_type(&w, kquants[i], 40, 512, 1, 3);
        CHECK(!kernels_can_repack(&w.m));
        CHECK(kernels_repack_matrix(&w.m, w.packed) == -1);
        CHECK(memcmp(w.packed, w.gguf, w.m.row_bytes * 40) == 0);
        w.m.rows = 32;
        for (int isa = KERNELS_ISA_AVX2; isa <= (int)widest; isa++)
            if (kernels_set_isa((enum kernels_isa)isa, NULL) == 0)
                CHECKF(kernels_can_repack(&w.m),
                       "%s on %s", gguf_type_get(kquants[i])->name, kernels_isa_name((enum kernels_isa)isa));
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        CHECK(!kernels_can_repack(&w.m));
        weights_free(&w);
    }
    kernels_matrix q2 = {.type = GGUF_TYPE_Q2_K, .rows = 16, .cols = 256, .data = NULL,
                         .row_bytes = gguf_row_size(GGUF_TYPE_Q2_K, 256)};
    CHECK(!kernels_can_repack(&q2));
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
}

/* w (made `offset` bytes into a cache line) repacked, then multiplied on every
 * implementation against the GGUF layout's scalar reference. */
static void agree_made(weights *w, size_t offset, int n_tokens, threadpool *pool)
{
    uint32_t type = w->m.type;
    int64_t rows = w->m.rows, cols = w->m.cols;
    select_repacking_isa();
    CHECK(kernels_repack_matrix(&w->m, w->packed) == 0);
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    kernels_matrix plain = gguf_matrix(w);
    float *want = run(&plain, w, n_tokens, pool);
    for (int isa = KERNELS_ISA_SCALAR; isa < KERNELS_ISA_COUNT; isa++) {
        if (kernels_set_isa((enum kernels_isa)isa, NULL) != 0)
            continue;
        float *got = run(&w->m, w, n_tokens, pool);
        int bad = count_differences(want, got, w, n_tokens);
        CHECKF(bad == 0, "%s %lldx%lld at +%zu, %d tokens, %s: %d results differ", gguf_type_get(type)->name,
               (long long)rows, (long long)cols, offset, n_tokens, kernels_isa_name((enum kernels_isa)isa), bad);
        free(got);
    }
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    free(want);
}

static void agree_one_at(uint32_t type, int64_t rows, int64_t cols, int n_tokens, uint64_t seed, threadpool *pool,
                         size_t offset)
{
    weights w;
    weights_make_at(&w, type, rows, cols, n_tokens, seed, offset);
    agree_made(&w, offset, n_tokens, pool);
    weights_free(&w);
}

/* On a cache line's start and 32 bytes into one (both orders of kernels_r16_pairs.h). */
static void agree_one(uint32_t type, int64_t rows, int64_t cols, int n_tokens, uint64_t seed, threadpool *pool)
{
    agree_one_at(type, rows, cols, n_tokens, seed, pool, 0);
    agree_one_at(type, rows, cols, n_tokens, seed, pool, 32);
}

static void test_matmul_agrees(void)
{
    if (!repack_runs_here())
        return;
    threadpool *pool = threadpool_create(2, NULL);
    const int64_t shapes[][2] = {{16, 32}, {48, 96}, {32, 160}, {80, 224}, {16, 512}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int n_tokens = 1; n_tokens <= 17; n_tokens++)
            agree_one(GGUF_TYPE_Q4_0, shapes[s][0], shapes[s][1], n_tokens, 100 * s + (uint64_t)n_tokens,
                      s % 2 ? pool : NULL);
    threadpool_free(pool);
}

static void matmul_agrees_kquant(uint32_t type)
{
    threadpool *pool = threadpool_create(2, NULL);
    const int64_t shapes[][2] = {{16, 256}, {48, 512}, {32, 768}, {80, 256}, {16, 1280}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int n_tokens = 1; n_tokens <= 17; n_tokens++)
            agree_one(type, shapes[s][0], shapes[s][1], n_tokens, type + 100 * s + (uint64_t)n_tokens,
                      s % 2 ? pool : NULL);
    threadpool_free(pool);
}

static void test_matmul_agrees_kquants(void)
{
    if (!repack_runs_here())
        return;
    for (int i = 0; i < N_KQUANTS; i++)
        matmul_agrees_kquant(kquants[i]);
}

/* The repacked K-quant layouts' scalar twins sum in the GGUF scalar dot's order: the
 * same bits. */
static void scalar_twin_exact(uint32_t type)
{
    for (int n_tokens = 1; n_tokens <= 5; n_tokens += 2) {
        select_repacking_isa();
        weights w;
        weights_make_type(&w, type, 32, 768, n_tokens, 40 + (uint64_t)n_tokens);
        CHECK(kernels_repack_matrix(&w.m, w.packed) == 0);
        kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
        kernels_matrix plain = gguf_matrix(&w);
        float *want = run(&plain, &w, n_tokens, NULL), *got = run(&w.m, &w, n_tokens, NULL);
        CHECK(memcmp(want, got, sizeof(float) * (size_t)(32 * n_tokens)) == 0);
        free(want);
        free(got);
        weights_free(&w);
    }
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
}

static void test_kquant_scalar_twins_exact(void)
{
    if (!repack_runs_here())
        return;
    for (int i = 0; i < N_KQUANTS; i++)
        scalar_twin_exact(kquants[i]);
}

/* A repacked and a GGUF-layout matrix of a type on one input: their activation layouts
 * differ, and each result is bit-identical to kernels_matmul alone. */
static void multi_mixed_layouts(uint32_t type, int64_t cols)
{
    threadpool *pool = threadpool_create(2, NULL);
    for (int n_tokens = 1; n_tokens <= 9; n_tokens += 4) {
        select_repacking_isa();
        weights a, b;
        weights_make_type(&a, type, 64, cols, n_tokens, 7);
        weights_make_type(&b, type, 37, cols, n_tokens, 7); /* same x */
        CHECK(kernels_repack_matrix(&a.m, a.packed) == 0);
        const kernels_matrix *mats[2] = {&a.m, &b.m};
        float *alone[2] = {run(&a.m, &a, n_tokens, pool), run(&b.m, &a, n_tokens, pool)};
        float *fused[2] = {calloc((size_t)(64 * n_tokens), sizeof(float)), calloc((size_t)(37 * n_tokens), sizeof(float))};
        int64_t strides[2] = {64, 37};
        void *scratch = aligned(2 * kernels_matmul_scratch_size(type, cols, n_tokens));
        kernels_matmul_multi(2, mats, fused, strides, a.x, a.x_stride, n_tokens, scratch, pool);
        CHECK(memcmp(alone[0], fused[0], sizeof(float) * (size_t)(64 * n_tokens)) == 0);
        CHECK(memcmp(alone[1], fused[1], sizeof(float) * (size_t)(37 * n_tokens)) == 0);
        for (int i = 0; i < 2; i++) {
            free(alone[i]);
            free(fused[i]);
        }
        free(scratch);
        weights_free(&a);
        weights_free(&b);
    }
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    threadpool_free(pool);
}

static void test_multi_mixed_layouts(void)
{
    if (!repack_runs_here())
        return;
    multi_mixed_layouts(GGUF_TYPE_Q4_0, 256);
    for (int i = 0; i < N_KQUANTS; i++)
        multi_mixed_layouts(kquants[i], 512);
}

/* Q8_0 repacks on every SIMD implementation (its values stored plus 128, in pairs of
 * blocks): matmul against the GGUF layout's scalar reference with the weights' extremes
 * (-128, which ggml's quantizer never writes but a file may hold, and 127) in every
 * block of some rows, for odd and even block counts and 1..17 tokens; the scalar twin
 * bit for bit; a fused GGUF-layout matrix beside it; row counts off the group refused. */
typedef struct q8_0_block { /* GGUF's Q8_0 block */
    uint16_t d;
    int8_t qs[32];
} q8_0_block;

static void q8_0_extremes(weights *w)
{
    int64_t nb = w->m.cols / 32;
    for (int64_t r = 0; r < w->m.rows; r += 3) {
        q8_0_block *row = (q8_0_block *)(w->gguf + (size_t)r * w->m.row_bytes);
        for (int64_t b = 0; b < nb; b++) {
            row[b].qs[(r + b) % 32] = -128;
            row[b].qs[(r + 2 * b + 1) % 32] = 127;
        }
    }
    memcpy(w->packed, w->gguf, w->m.row_bytes * (size_t)w->m.rows);
}

static void test_q8_0_matmul_agrees(void)
{
    if (!repack_runs_here())
        return;
    threadpool *pool = threadpool_create(2, NULL);
    const int64_t shapes[][2] = {{16, 32}, {48, 96}, {32, 64}, {32, 160}, {80, 224}, {16, 512}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        for (int n_tokens = 1; n_tokens <= 17; n_tokens++) {
            for (size_t offset = 0; offset <= 32; offset += 32) {
                weights w;
                weights_make_at(&w, GGUF_TYPE_Q8_0, shapes[s][0], shapes[s][1], n_tokens,
                                900 + 100 * s + (uint64_t)n_tokens, offset);
                q8_0_extremes(&w);
                agree_made(&w, offset, n_tokens, s % 2 ? pool : NULL);
                weights_free(&w);
            }
        }
    }
    threadpool_free(pool);
}

static void test_q8_0_scalar_twin_exact(void)
{
    if (!repack_runs_here())
        return;
    scalar_twin_exact(GGUF_TYPE_Q8_0);
}

static void test_q8_0_layouts(void)
{
    if (!repack_runs_here())
        return;
    multi_mixed_layouts(GGUF_TYPE_Q8_0, 96);
    multi_mixed_layouts(GGUF_TYPE_Q8_0, 256);
    weights w;
    weights_make_type(&w, GGUF_TYPE_Q8_0, 40, 64, 1, 5);
    CHECK(!kernels_can_repack(&w.m));
    CHECK(kernels_repack_matrix(&w.m, w.packed) == -1);
    CHECK(memcmp(w.packed, w.gguf, w.m.row_bytes * 40) == 0);
    w.m.rows = 32;
    for (int isa = KERNELS_ISA_AVX2; isa <= (int)widest; isa++)
        if (kernels_set_isa((enum kernels_isa)isa, NULL) == 0)
            CHECKF(kernels_can_repack(&w.m), "%s repacks Q8_0", kernels_isa_name((enum kernels_isa)isa));
    kernels_set_isa(KERNELS_ISA_SCALAR, NULL);
    CHECK(!kernels_can_repack(&w.m));
    weights_free(&w);
}

int main(void)
{
    kernels_init();
    RUN(test_round_trip);
    RUN(test_refusals);
    RUN(test_matmul_agrees);
    RUN(test_matmul_agrees_kquants);
    RUN(test_kquant_scalar_twins_exact);
    RUN(test_multi_mixed_layouts);
    RUN(test_q8_0_matmul_agrees);
    RUN(test_q8_0_scalar_twin_exact);
    RUN(test_q8_0_layouts);
    return test_summary();
}
