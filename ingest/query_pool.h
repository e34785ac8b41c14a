/*
 * query_pool.h — reader threads: SQLite queries run here, never on the
 * event loop that acknowledges writes (design rule 1 keeps its latency).
 *
 * Contract: query_pool_submit() queues a job (bounded by query.max_queued);
 * one of query.threads threads runs job->run(job, source) with its own
 * query_source (its own read-only SQLite connection), then job->done(job)
 * is called on the event loop the pool was created with, exactly once per
 * submitted job. The job's memory belongs to the caller; the pool only links
 * it. Freeing the pool stops the threads after the job each is running;
 * jobs still queued are never run nor answered (the loop is ending).
 */
#ifndef TALLY_QUERY_POOL_H
#define TALLY_QUERY_POOL_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "query_source.h"

typedef struct query_job query_job;
struct query_job {
    void (*run)(query_job *job, query_source *src); /* on a reader thread */
    void (*done)(query_job *job);                    /* on the event loop */
    query_job *next;                                 /* private */
};

typedef struct query_pool query_pool;

/* Starts cfg->query.threads threads. Returns NULL with err filled. */
query_pool *query_pool_new(struct event_base *base, const tally_config *cfg, char *err,
                           size_t errlen);

/* Queues a job. Returns 0, or -1 when query.max_queued jobs are waiting
 * (the caller answers 503); done is then never called. */
int query_pool_submit(query_pool *p, query_job *job);

/* Jobs run so far (each is one SQLite query: what single flight and the
 * cache save), and jobs waiting now. */
uint64_t query_pool_runs(const query_pool *p);
size_t query_pool_queued(const query_pool *p);

void query_pool_free(query_pool *p);

#endif
