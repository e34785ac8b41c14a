/*
 * http_api.h — tally-ingest's HTTP routes (libevent evhttp):
 *
 *   POST /v1/events          StatsD/DogStatsD lines, header Idempotency-Key (optional):
 *                            the acknowledged write path (batch_pipeline.h)
 *   GET  /v1/counters/NAME   live totals from Redis, in the shape of the type; 404 for an
 *                            unknown name (live_read.h: ?source=sqlite, ?type=)
 *   GET  /healthz            component status
 *   /api/v1/..., /v1/series/NAME   the read routes (prom_api.h)
 *
 * Every answer has a JSON body (libevent's own error pages are turned into
 * JSON by http_guard.h, which also bounds connections and slow clients).
 * Every callback runs on the event loop the server was created with; SQLite
 * is read on reader threads (query_pool.h), never on that loop.
 */
#ifndef TALLY_HTTP_API_H
#define TALLY_HTTP_API_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "kafka_writer.h"
#include "redis_router.h"
#include "live_read.h"
#include "prom_api.h"
#include "batch_pipeline.h"
#include "statsd_listeners.h"

typedef struct ingest_server ingest_server;

/* Binds ingest.listen_address:listen_port. The writers and reader are
 * borrowed and must outlive the server. Returns NULL with err filled. */
ingest_server *ingest_server_new(struct event_base *base, const tally_config *cfg,
                                 kafka_writer *kafka, redis_router *redis, live_read *live,
                                 prom_api *reads, char *err, size_t errlen);

/* From now on new batches get 503 ("shutting down"); reads still work. */
void ingest_server_drain(ingest_server *s);

/* Batches accepted for processing and not yet answered. */
size_t ingest_server_inflight(const ingest_server *s);

/* The write path (for the StatsD listeners). */
batch_pipeline *ingest_server_pipeline(ingest_server *s);

/* The StatsD listeners whose counters /healthz shows (borrowed; NULL: none). */
void ingest_server_show_statsd(ingest_server *s, statsd_listeners *l);

/* Closes the listener and frees the server. Call only when inflight is 0. */
void ingest_server_free(ingest_server *s);

#endif
