/*
 * live_read.h — GET /v1/counters/NAME: the totals of one metric name, per
 * tag series, in the shape of its type (totals_json.h), from the live view.
 *
 *   ?source=redis (default)  Redis' live view, read in one Lua call (every
 *                            type's keys of the name, a set series' PFCOUNT,
 *                            and the staleness markers). No series of any
 *                            type: 404, unless the view is stale (then SQLite
 *                            answers, marked).
 *   ?source=sqlite           the flushed totals (the series catalog; a set's
 *                            distinct members: its buckets' hlls merged)
 *   ?type=counter|gauge|distribution|set   which type, when the name has
 *                            several (default: the first of counter, gauge,
 *                            distribution, set live; "types" lists them all)
 *
 * Redis unavailable: SQLite answers, "stale":true with a note (it lacks the
 * unflushed Kafka tail). SQLite runs on a reader thread (query_pool.h),
 * never on the event loop. The caller has checked authorization.
 */
#ifndef TALLY_LIVE_READ_H
#define TALLY_LIVE_READ_H

#include <stddef.h>

#include <event2/http.h>

#include "config.h"
#include "query_pool.h"
#include "redis_router.h"

typedef struct live_read live_read;

/* Returns NULL when out of memory. The writer and pool are borrowed. */
live_read *live_read_new(const tally_config *cfg, redis_router *redis, query_pool *pool);

/* Answers the request (now or later). raw_name is the URI path's NAME part
 * (still percent-encoded); query the URI's query string (may be NULL). */
void live_read_handle(live_read *l, struct evhttp_request *req, const char *raw_name,
                      const char *query);

/* Reads not yet answered. */
size_t live_read_inflight(const live_read *l);

void live_read_free(live_read *l);

#endif
