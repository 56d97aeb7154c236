/* A persistent pool of worker threads for data-parallel kernels.
 *
 * `threadpool_run` runs fn(arg, ith, nth) on every thread of the pool, the
 * calling thread included as ith == 0, and returns when all have finished.
 * Workers spin briefly between jobs (a decode step issues hundreds of jobs per
 * token) and then sleep, so an idle server costs no CPU. */
#ifndef ELLIOTT_BASE_THREADPOOL_H
#define ELLIOTT_BASE_THREADPOOL_H

#include "base/err.h"

typedef struct threadpool threadpool;
typedef void (*threadpool_fn)(void *arg, int ith, int nth);

/* n_threads counts the caller; 1 means no worker threads at all. */
threadpool *threadpool_create(int n_threads, el_err *err);
void threadpool_free(threadpool *pool);
int threadpool_size(const threadpool *pool);
/* Not reentrant: one job at a time, from one thread. A NULL pool runs fn(arg, 0, 1). */
void threadpool_run(threadpool *pool, threadpool_fn fn, void *arg);

/* The number of CPUs this process may run on. */
int el_cpu_count(void);

#endif
