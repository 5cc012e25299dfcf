/* A fixed set of worker threads that run one job at a time, cut into parts: the CPU engine's
 * matrix products, row ranges split over the cores. The caller runs part 0 itself and
 * baton_pool_run returns once every part is done, so a job's memory may live on the caller's
 * stack. A pool of one thread starts none and runs the job inline.
 *
 * Threads: one caller at a time per pool (the CPU backend's own rule). */
#ifndef BATON_THREAD_POOL_H
#define BATON_THREAD_POOL_H

#include "status.h"

enum { BATON_POOL_THREADS_MAX = 256 };

typedef struct baton_pool baton_pool;

/* Part `part` of `parts` (0 <= part < parts, parts the pool's thread count) of a job. */
typedef void (*baton_pool_fn)(void *arg, int part, int parts);

/* Starts threads - 1 workers (1 <= threads <= BATON_POOL_THREADS_MAX). */
baton_status baton_pool_new(int threads, baton_pool **out, baton_error *err);
/* Runs fn(arg, p, n) for every p < n at once, p = 0 on the calling thread; returns when all
 * have returned. */
void baton_pool_run(baton_pool *pool, baton_pool_fn fn, void *arg);
/* Stops and joins the workers; NULL is ignored. */
void baton_pool_free(baton_pool *pool);

/* The thread count asked for by the environment: BATON_CPU_THREADS (1 to
 * BATON_POOL_THREADS_MAX), else the online processors (at most 64). */
baton_status baton_pool_threads_default(int *threads, baton_error *err);

#endif
