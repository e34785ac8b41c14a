/*
 * metrics_route.h — GET /metrics of tally-ingest, in Prometheus' text format
 * (common/prom_text.h): the process (build, Kafka and Redis up, HTTP
 * connections), the write path (batch_pipeline_metrics), the StatsD
 * listeners, the read path, and the figures of the state and cache Redis
 * (redis_info.h: from the last INFO, sent once a second). Everything is
 * written when the request arrives: a scrape waits for nothing.
 */
#ifndef TALLY_METRICS_ROUTE_H
#define TALLY_METRICS_ROUTE_H

#include <stddef.h>

#include <event2/http.h>

#include "batch_pipeline.h"
#include "kafka_writer.h"
#include "query_cache.h"
#include "redis_info.h"
#include "redis_router.h"
#include "statsd_listeners.h"

typedef struct metrics_sources {
    kafka_writer *kafka;
    redis_router *redis;          /* the state Redis */
    batch_pipeline *pipeline;
    query_cache *cache;           /* NULL: no read path */
    statsd_listeners *statsd;     /* NULL: no listeners */
    const redis_info_poller *redis_info; /* NULL: no Redis figures */
    prom_hist *scrape_seconds;    /* observes each page's building and sending */
    size_t http_connections;
} metrics_sources;

/* Answers req at once, and observes how long that took in *scrape_seconds
 * (shown by the next scrape as tally_ingest_scrape_duration_seconds). */
void metrics_route_handle(const metrics_sources *src, struct evhttp_request *req);

#endif
