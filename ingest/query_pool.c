/*
 * query_pool.c — see query_pool.h. A mutex-protected FIFO feeds the threads;
 * finished jobs go on a second list and an eventfd wakes the loop, which
 * takes the whole list at once (so a burst of answers costs one wakeup).
 */
#include "query_pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct query_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    query_job *head, *tail;   /* waiting, FIFO */
    size_t queued, max_queued;
    query_job *finished;      /* done, for the loop (any order) */
    int stopping;
    int efd;
    struct event *ready;
    pthread_t *threads;
    size_t nthreads;
    const tally_config *cfg;
    _Atomic uint64_t runs;
};

static query_job *take_job(query_pool *p)
{
    pthread_mutex_lock(&p->lock);
    while (!p->head && !p->stopping)
        pthread_cond_wait(&p->wake, &p->lock);
    query_job *job = p->stopping ? NULL : p->head;
    if (job) {
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
    }
    pthread_mutex_unlock(&p->lock);
    return job;
}

static void finish_job(query_pool *p, query_job *job)
{
    pthread_mutex_lock(&p->lock);
    job->next = p->finished;
    p->finished = job;
    pthread_mutex_unlock(&p->lock);
    uint64_t one = 1;
    while (write(p->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static void *reader_main(void *arg)
{
    query_pool *p = arg;
    query_source *src = query_source_new(p->cfg);
    if (!src) {
        log_error("query reader: out of memory");
        return NULL;
    }
    query_job *job;
    while ((job = take_job(p)) != NULL) {
        job->run(job, src);
        atomic_fetch_add(&p->runs, 1);
        finish_job(p, job);
    }
    query_source_free(src);
    return NULL;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    query_pool *p = arg;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0 && errno != EAGAIN)
        log_error("query pool: eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&p->lock);
    query_job *job = p->finished;
    p->finished = NULL;
    pthread_mutex_unlock(&p->lock);
    while (job) {
        query_job *next = job->next;
        job->done(job);
        job = next;
    }
}

static void stop_threads(query_pool *p)
{
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    p->nthreads = 0;
}

query_pool *query_pool_new(struct event_base *base, const tally_config *cfg, char *err,
                           size_t errlen)
{
    query_pool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "query pool: out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->cfg = cfg;
    p->max_queued = (size_t)cfg->query.max_queued;
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    p->threads = calloc((size_t)cfg->query.threads, sizeof *p->threads);
    if (p->efd < 0 || !p->threads ||
        !(p->ready = event_new(base, p->efd, EV_READ | EV_PERSIST, on_ready, p)) ||
        event_add(p->ready, NULL) != 0) {
        snprintf(err, errlen, "query pool: %s", p->efd < 0 ? strerror(errno) : "out of memory");
        query_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < cfg->query.threads; i++) {
        int rc = pthread_create(&p->threads[i], NULL, reader_main, p);
        if (rc != 0) {
            snprintf(err, errlen, "query pool: cannot start a reader thread: %s", strerror(rc));
            query_pool_free(p);
            return NULL;
        }
        p->nthreads++;
    }
    return p;
}

int query_pool_submit(query_pool *p, query_job *job)
{
    pthread_mutex_lock(&p->lock);
    if (p->queued >= p->max_queued) {
        pthread_mutex_unlock(&p->lock);
        return -1;
    }
    job->next = NULL;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->queued++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

uint64_t query_pool_runs(const query_pool *p)
{
    return atomic_load(&((query_pool *)p)->runs);
}

size_t query_pool_queued(const query_pool *p)
{
    pthread_mutex_lock(&((query_pool *)p)->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&((query_pool *)p)->lock);
    return n;
}

void query_pool_free(query_pool *p)
{
    if (!p)
        return;
    stop_threads(p);
    if (p->ready)
        event_free(p->ready);
    if (p->efd >= 0)
        close(p->efd);
    free(p->threads);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
