/* Worker threads for the CPU engine (thread_pool.h). A job is published under the mutex with a
 * new generation number; each worker runs its part and the last one to finish wakes the caller.
 * The waits have no deadline: they wait only for this process's own arithmetic, which always
 * ends, never for a peer or a device. */
#include "thread_pool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    baton_pool *pool;
    int part;
} worker;

struct baton_pool {
    int threads;
    pthread_t *ids;       /* [threads - 1] */
    worker *workers;      /* [threads - 1] */
    pthread_mutex_t mu;
    pthread_cond_t go;    /* a new job, or quit */
    pthread_cond_t done;  /* busy reached 0 */
    unsigned long generation;
    int busy;             /* workers still running the current job */
    bool quit;
    baton_pool_fn fn;
    void *arg;
};

static void *worker_main(void *p) {
    worker *w = p;
    baton_pool *pool = w->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        while (!pool->quit && pool->generation == seen) pthread_cond_wait(&pool->go, &pool->mu);
        if (pool->quit) break;
        seen = pool->generation;
        baton_pool_fn fn = pool->fn;
        void *arg = pool->arg;
        pthread_mutex_unlock(&pool->mu);
        fn(arg, w->part, pool->threads);
        pthread_mutex_lock(&pool->mu);
        if (--pool->busy == 0) pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

static void pool_stop(baton_pool *pool, int started) {
    pthread_mutex_lock(&pool->mu);
    pool->quit = true;
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < started; i++) pthread_join(pool->ids[i], NULL);
}

baton_status baton_pool_new(int threads, baton_pool **out, baton_error *err) {
    *out = NULL;
    if (threads < 1 || threads > BATON_POOL_THREADS_MAX)
        return baton_fail(err, BATON_ERR_ARG, "thread pool: %d threads is outside [1, %d]", threads,
                          BATON_POOL_THREADS_MAX);
    baton_pool *pool = calloc(1, sizeof *pool);
    if (pool == NULL) return baton_fail(err, BATON_ERR_NOMEM, "thread pool: out of memory");
    pool->threads = threads;
    pool->ids = calloc((size_t)threads, sizeof *pool->ids);
    pool->workers = calloc((size_t)threads, sizeof *pool->workers);
    if (pool->ids == NULL || pool->workers == NULL) {
        free(pool->ids);
        free(pool->workers);
        free(pool);
        return baton_fail(err, BATON_ERR_NOMEM, "thread pool: out of memory");
    }
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->go, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (int i = 0; i < threads - 1; i++) {
        pool->workers[i] = (worker){pool, i + 1};
        int rc = pthread_create(&pool->ids[i], NULL, worker_main, &pool->workers[i]);
        if (rc != 0) {
            pool_stop(pool, i);
            baton_pool_free(pool);
            return baton_fail(err, BATON_ERR_NOMEM, "thread pool: starting thread %d of %d: %s",
                              i + 2, threads, strerror(rc));
        }
    }
    *out = pool;
    return BATON_OK;
}

void baton_pool_run(baton_pool *pool, baton_pool_fn fn, void *arg) {
    if (pool->threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->arg = arg;
    pool->busy = pool->threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->mu);
    fn(arg, 0, pool->threads);
    pthread_mutex_lock(&pool->mu);
    while (pool->busy > 0) pthread_cond_wait(&pool->done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

void baton_pool_free(baton_pool *pool) {
    if (pool == NULL) return;
    if (!pool->quit) pool_stop(pool, pool->threads - 1);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->go);
    pthread_mutex_destroy(&pool->mu);
    free(pool->workers);
    free(pool->ids);
    free(pool);
}

baton_status baton_pool_threads_default(int *threads, baton_error *err) {
    const char *env = getenv("BATON_CPU_THREADS");
    if (env != NULL && env[0] != '\0') {
        char *end = NULL;
        long n = strtol(env, &end, 10);
        if (*end != '\0' || n < 1 || n > BATON_POOL_THREADS_MAX)
            return baton_fail(err, BATON_ERR_ARG, "BATON_CPU_THREADS=%.40s: expected a thread count "
                              "from 1 to %d", env, BATON_POOL_THREADS_MAX);
        *threads = (int)n;
        return BATON_OK;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    *threads = online < 1 ? 1 : online > 64 ? 64 : (int)online;
    return BATON_OK;
}
