#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdint.h>
#include <stdatomic.h>

#include "base/array.h"
#include "base/err.h"
#include "base/invariant.h"
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

static void test_wipe_grow_array(void)
{
    int32_t *ids = NULL;
    size_t cap = 0;
    void *p = ids;
    CHECK(wipe_grow_array(&p, &cap, 0, 3, sizeof *ids) == 0);
    ids = p;
    CHECK(ids && cap == 64); /* 256 bytes of int32 */
    for (int i = 0; i < 64; i++)
        ids[i] = i;
    CHECK(wipe_grow_array(&p, &cap, 64, 65, sizeof *ids) == 0);
    ids = p;
    CHECK(cap == 128 && ids[63] == 63 && ids[0] == 0);
    /* sizes that overflow in bytes though not in items: refused, unchanged */
    CHECK(wipe_grow_array(&p, &cap, 64, SIZE_MAX / 4, sizeof *ids) == -1);
    CHECK(wipe_grow_array(&p, &cap, 64, SIZE_MAX / 8 + 1, 4 * sizeof *ids) == -1);
    CHECK(p == ids && cap == 128);
    CHECK(wipe_grow_array(&p, &cap, 200, 300, sizeof *ids) == -1); /* more in use than allocated */
    CHECK(wipe_grow_array(&p, &cap, 64, 64 + SIZE_MAX, sizeof *ids) == -1); /* used + n wrapped */
    wipe_free(ids, cap * sizeof *ids);
}

static void test_grow_array(void)
{
    int32_t *ids = NULL;
    size_t cap = 0;
    void *p = ids;
    CHECK(grow_array(&p, &cap, 0, sizeof *ids) == 0 && p == NULL && cap == 0); /* nothing needed */
    CHECK(grow_array(&p, &cap, 3, sizeof *ids) == 0);
    ids = p;
    CHECK(ids && cap == 16);
    for (int i = 0; i < 16; i++)
        ids[i] = i;
    CHECK(grow_array(&p, &cap, 40, sizeof *ids) == 0);
    ids = p;
    CHECK(cap == 64 && ids[15] == 15 && ids[0] == 0);
    CHECK(grow_array(&p, &cap, SIZE_MAX / 4, sizeof *ids) == -1); /* bytes overflow: refused, unchanged */
    CHECK(grow_array(&p, &cap, 65, 0) == -1);
    CHECK(p == ids && cap == 64);
    free(ids);
}

static void test_invariants(void)
{
    int evaluated = 0;
    CHECK(ALWAYS(++evaluated == 1));
    CHECK(!NEVER(++evaluated == 3));
    EL_ASSERT(evaluated == 2);
#ifndef NDEBUG
    /* a broken invariant stops a debug build at once, saying where */
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        if (NEVER(evaluated == 2))
            _exit(0);
        _exit(1);
    }
    int status = 0;
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "status %#x", status);
#endif
}

static void test_wipe_getline(void)
{
    char text[] = "first line\n\nlast, no newline";
    FILE *fp = fmemopen(text, strlen(text), "r");
    CHECK(fp != NULL);
    if (!fp)
        return;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n1 = wipe_getline(&line, &cap, fp); /* CHECK_EQ_INT evaluates twice */
    CHECK(n1 == 11 && line && !strcmp(line, "first line\n"));
    ssize_t n2 = wipe_getline(&line, &cap, fp);
    CHECK(n2 == 1 && !strcmp(line, "\n"));
    ssize_t n3 = wipe_getline(&line, &cap, fp);
    CHECK(n3 == 16 && !strcmp(line, "last, no newline"));
    CHECK(wipe_getline(&line, &cap, fp) == -1);
    wipe_free(line, cap);
    fclose(fp);
}

static void test_wipe_grow_and_take(void)
{
    char *buf = NULL;
    size_t cap = 0;
    CHECK(wipe_grow(&buf, &cap, 0, 10) == 0);
    CHECK(buf && cap >= 10);
    memcpy(buf, "0123456789", 10);
    char *before = buf;
    CHECK(wipe_grow(&buf, &cap, 10, 12) == 0); /* room enough: nothing moves */
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
    RUN(test_wipe_grow_array);
    RUN(test_invariants);
    RUN(test_wipe_getline);
    RUN(test_wipe_grow_and_take);
    RUN(test_grow_array);
    RUN(test_err_wrap);
    RUN(test_fp16_round_trip);
    RUN(test_rng_deterministic);
    RUN(test_threadpool_runs_every_thread);
    return test_summary();
}
