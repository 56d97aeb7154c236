#include <stdatomic.h>

#include "base/err.h"
#include "base/fp16.h"
#include "base/rng.h"
#include "base/threadpool.h"
#include "base/wipebuf.h"
#include "test.h"

static void test_err_wrap(void)
{
    el_err err;
    CHECK(el_fail(&err, "bad value %d", 7) == -1);
    CHECK(!strcmp(err.msg, "bad value 7"));
    el_wrap(&err, "reading %s", "x.gguf");
    CHECK(!strcmp(err.msg, "reading x.gguf: bad value 7"));
    CHECK(el_fail(NULL, "ignored") == -1);
}

static void test_fp16_round_trip(void)
{
    /* Every finite half converts to float and back unchanged. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00)
            continue;
        if (el_f32_to_fp16(el_fp16_to_f32((uint16_t)h)) != h)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK(el_fp16_to_f32(0x3c00) == 1.0f);
    CHECK(el_f32_to_fp16(65536.0f) == 0x7c00);              /* overflow to infinity */
    CHECK(el_f32_to_fp16(1.0f + 1.0f / 2048) == 0x3c00);    /* ties to even */
    CHECK(el_bf16_to_f32(el_f32_to_bf16(1.5f)) == 1.5f);
}

static void test_rng_deterministic(void)
{
    el_rng a, b;
    el_rng_seed(&a, 42);
    el_rng_seed(&b, 42);
    for (int i = 0; i < 100; i++)
        CHECK(el_rng_next(&a) == el_rng_next(&b));
    double sum = 0;
    for (int i = 0; i < 10000; i++) {
        float u = el_rng_uniform(&a);
        CHECK(u >= 0.0f && u < 1.0f);
        sum += el_rng_normal(&b);
    }
    CHECK(fabs(sum / 10000) < 0.05);
}

typedef struct {
    atomic_int hits[8];
    atomic_int total;
} pool_job;

static void count_job(void *arg, int ith, int nth)
{
    pool_job *job = arg;
    atomic_fetch_add(&job->hits[ith], 1);
    atomic_fetch_add(&job->total, nth);
}

static void test_threadpool_runs_every_thread(void)
{
    el_err err;
    for (int n = 1; n <= 4; n++) {
        threadpool *pool = threadpool_create(n, &err);
        CHECK(pool != NULL);
        if (!pool)
            continue;
        CHECK_EQ_INT(threadpool_size(pool), n);
        pool_job job = {0};
        for (int round = 0; round < 1000; round++)
            threadpool_run(pool, count_job, &job);
        for (int i = 0; i < n; i++)
            CHECK_EQ_INT(atomic_load(&job.hits[i]), 1000);
        CHECK_EQ_INT(atomic_load(&job.total), 1000 * n * n);
        threadpool_free(pool);
    }
    pool_job job = {0};
    threadpool_run(NULL, count_job, &job);
    CHECK_EQ_INT(atomic_load(&job.hits[0]), 1);
    CHECK(el_cpu_count() >= 1);
}

static void test_wipebuf_appends_across_growth(void)
{
    wipebuf b = {0};
    char expect[5000];
    for (int i = 0; i < 1000; i++) {
        char piece[5];
        snprintf(piece, sizeof piece, "%04d", i);
        memcpy(expect + 4 * i, piece, 4);
        CHECK(wipebuf_append(&b, piece, 4) == 0);
    }
    CHECK_EQ_INT(b.len, 4000);
    CHECK(b.cap >= b.len);
    CHECK(b.data && !memcmp(b.data, expect, 4000));
    CHECK(wipebuf_append(&b, NULL, 0) == 0);
    CHECK_EQ_INT(b.len, 4000);
    CHECK(wipebuf_append(&b, "x", (size_t)-1) == -1); /* size overflow: refused, unchanged */
    CHECK_EQ_INT(b.len, 4000);
    wipebuf_free(&b);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_wipe_grow_and_take(void)
{
    char *buf = NULL;
    size_t cap = 0;
    CHECK(wipe_grow(&buf, &cap, 0, 10) == 0);
    CHECK(buf && cap >= 10);
    memcpy(buf, "0123456789", 10);
    char *before = buf;
    CHECK(wipe_grow(&buf, &cap, 10, 8) == 0); /* room enough: nothing moves */
    CHECK(buf == before);
    CHECK(wipe_grow(&buf, &cap, 10, cap + 1) == 0);
    CHECK(!memcmp(buf, "0123456789", 10));
    size_t kept = cap;
    CHECK(wipe_grow(&buf, &cap, 10, (size_t)-1) == -1); /* overflow: refused, unchanged */
    CHECK(cap == kept && !memcmp(buf, "0123456789", 10));
    wipe_free(buf, cap);
    wipe_free(NULL, 5);
    wipe_free_string(NULL);
    char *s = strdup("secret");
    wipe_free_string(s);

    wipebuf b = {0};
    size_t len = 1;
    CHECK(wipebuf_take(&b, &len) == NULL && len == 0);
    CHECK(wipebuf_append(&b, "abc", 3) == 0);
    char *taken = wipebuf_take(&b, &len);
    CHECK(taken && len == 3 && !memcmp(taken, "abc", 3));
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
    wipe_free(taken, len);
}

int main(void)
{
    RUN(test_wipebuf_appends_across_growth);
    RUN(test_wipe_grow_and_take);
    RUN(test_err_wrap);
    RUN(test_fp16_round_trip);
    RUN(test_rng_deterministic);
    RUN(test_threadpool_runs_every_thread);
    return test_summary();
}
