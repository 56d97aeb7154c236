#include "base/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long a worker polls for the next job before sleeping: long enough to
 * bridge the gap between two kernels of one forward pass. */
enum { SPIN_ITERATIONS = 1 << 17 };

struct worker {
    threadpool *pool;
    int ith;
    pthread_t thread;
};

struct threadpool {
    int n_threads;
    struct worker *workers; /* n_threads - 1 of them */

    threadpool_fn fn;
    void *arg;
    atomic_uint_fast64_t generation; /* bumped once per job */
    atomic_int pending;              /* workers still running the current job */
    atomic_int sleeping;             /* workers blocked on `wake` */
    atomic_bool stopping;

    pthread_mutex_t lock;
    pthread_cond_t wake;
};

static bool wait_for_job(threadpool *pool, uint64_t seen)
{
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        if (atomic_load(&pool->generation) != seen)
            return !atomic_load(&pool->stopping);
        /* Yield now and then so that an oversubscribed machine still makes progress. */
        if ((i & 1023) == 1023)
            sched_yield();
        else
            cpu_relax();
    }
    pthread_mutex_lock(&pool->lock);
    atomic_fetch_add(&pool->sleeping, 1);
    while (atomic_load(&pool->generation) == seen)
        pthread_cond_wait(&pool->wake, &pool->lock);
    atomic_fetch_sub(&pool->sleeping, 1);
    pthread_mutex_unlock(&pool->lock);
    return !atomic_load(&pool->stopping);
}

static void *worker_main(void *p)
{
    struct worker *w = p;
    threadpool *pool = w->pool;
    uint64_t seen = 0;
    while (wait_for_job(pool, seen)) {
        seen = atomic_load(&pool->generation);
        pool->fn(pool->arg, w->ith, pool->n_threads);
        atomic_fetch_sub(&pool->pending, 1);
    }
    return NULL;
}

/* Publishes a new generation and wakes sleepers. Sequentially consistent
 * atomics make the generation/sleeping handshake free of lost wake-ups. */
static void publish(threadpool *pool)
{
    atomic_fetch_add(&pool->generation, 1);
    if (atomic_load(&pool->sleeping) > 0) {
        pthread_mutex_lock(&pool->lock);
        pthread_cond_broadcast(&pool->wake);
        pthread_mutex_unlock(&pool->lock);
    }
}

threadpool *threadpool_create(int n_threads, el_err *err)
{
    if (n_threads < 1 || n_threads > 1024)
        return el_fail(err, "thread count %d out of range 1..1024", n_threads), NULL;
    threadpool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return el_fail(err, "out of memory"), NULL;
    pool->n_threads = n_threads;
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->wake, NULL);
    if (n_threads == 1)
        return pool;
    pool->workers = calloc((size_t)n_threads - 1, sizeof *pool->workers);
    if (!pool->workers) {
        threadpool_free(pool);
        return el_fail(err, "out of memory"), NULL;
    }
    for (int i = 0; i < n_threads - 1; i++) {
        struct worker *w = &pool->workers[i];
        w->pool = pool;
        w->ith = i + 1;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            pool->n_threads = i + 1; /* only join the ones that started */
            threadpool_free(pool);
            return el_fail(err, "cannot start worker thread %d", i + 1), NULL;
        }
    }
    return pool;
}

void threadpool_free(threadpool *pool)
{
    if (!pool)
        return;
    if (pool->workers) {
        atomic_store(&pool->stopping, true);
        publish(pool);
        for (int i = 0; i < pool->n_threads - 1; i++)
            pthread_join(pool->workers[i].thread, NULL);
        free(pool->workers);
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->wake);
    free(pool);
}

int threadpool_size(const threadpool *pool)
{
    return pool ? pool->n_threads : 1;
}

void threadpool_run(threadpool *pool, threadpool_fn fn, void *arg)
{
    if (!pool || pool->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->arg = arg;
    atomic_store(&pool->pending, pool->n_threads - 1);
    publish(pool);
    fn(arg, 0, pool->n_threads);
    for (unsigned spins = 0; atomic_load(&pool->pending) > 0; spins++) {
        if ((spins & 1023) == 1023)
            sched_yield();
        else
            cpu_relax();
    }
}

int el_cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
