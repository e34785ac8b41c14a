/*
 * metrics_route.c — see metrics_route.h.
 */
#include "metrics_route.h"

#include <stdlib.h>
#include <time.h>

#include <event2/buffer.h>

#include "redis_info.h"
#include "version.h"

static void process_metrics(const metrics_sources *src, prom_text *t)
{
    prom_text_family(t, "tally_ingest_build_info", "gauge", "tally-ingest's version (always 1).");
    const char *labels[] = {"version", TALLY_VERSION, NULL};
    prom_text_sample(t, "tally_ingest_build_info", labels, 1);
    prom_text_single(t, "tally_ingest_kafka_up", "gauge",
                     "1 while the Kafka producer reaches a broker.",
                     kafka_writer_is_up(src->kafka));
    prom_text_single(t, "tally_ingest_redis_up", "gauge",
                     "1 while the state Redis is connected and passed its checks (0: its "
                     "breaker is open or it is down).",
                     redis_router_is_up(src->redis, NULL));
    prom_text_single(t, "tally_ingest_redis_restarts_total", "counter",
                     "Reconnects that found another Redis process (the live view was marked "
                     "stale).",
                     redis_router_restarts(src->redis));
    prom_text_single(t, "tally_ingest_http_connections", "gauge", "HTTP connections open.",
                     (double)src->http_connections);
}

void metrics_route_handle(const metrics_sources *src, struct evhttp_request *req)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    prom_text t;
    prom_text_init(&t);
    process_metrics(src, &t);
    batch_pipeline_metrics(src->pipeline, &t);
    if (src->statsd)
        statsd_listeners_metrics(src->statsd, &t);
    if (src->cache)
        query_cache_metrics(src->cache, &t);
    if (src->redis_info)
        redis_info_metrics(src->redis_info, &t);
    prom_text_histogram(&t, "tally_ingest_scrape_duration_seconds",
                        "Time tally-ingest spent building and sending a /metrics page (the "
                        "scrapes before this one).", src->scrape_seconds);
    struct evbuffer *b = prom_text_failed(&t) ? NULL : evbuffer_new();
    if (!b || evbuffer_add(b, t.buf, t.len) != 0) {
        evhttp_send_error(req, 500, "out of memory");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, 200, "OK", b);
    }
    if (b)
        evbuffer_free(b);
    prom_text_free(&t);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    prom_hist_observe(src->scrape_seconds,
                      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}
