/*
 * metrics_route.c — see metrics_route.h.
 */
#include "metrics_route.h"

#include <stdlib.h>

#include <event2/buffer.h>

#include "redis_info.h"
#include "version.h"

/* What the scrape has written while it waits for the INFO replies (so a
 * reply that comes during shutdown touches no other module). */
typedef struct scrape {
    prom_text text;
    struct evhttp_request *req;
    redis_info infos[2];
    size_t ninfos;
    int pending;
} scrape;

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
                     redis_writer_is_up(src->redis, NULL));
    prom_text_single(t, "tally_ingest_redis_restarts_total", "counter",
                     "Reconnects that found another Redis process (the live view was marked "
                     "stale).",
                     redis_writer_restarts(src->redis));
    prom_text_single(t, "tally_ingest_http_connections", "gauge", "HTTP connections open.",
                     (double)src->http_connections);
}

static void send_page(scrape *s)
{
    prom_text t = s->text;
    const redis_info *infos[] = {&s->infos[0], &s->infos[1]};
    redis_info_metrics(&t, infos, s->ninfos);
    struct evbuffer *b = prom_text_failed(&t) ? NULL : evbuffer_new();
    if (!b || evbuffer_add(b, t.buf, t.len) != 0) {
        evhttp_send_error(s->req, 500, "out of memory");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(s->req), "Content-Type",
                          "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(s->req, 200, "OK", b);
    }
    if (b)
        evbuffer_free(b);
    prom_text_free(&t);
    free(s);
}

static void on_info(void *opaque, redis_info *info)
{
    (void)info;
    scrape *s = opaque;
    if (--s->pending == 0)
        send_page(s);
}

void metrics_route_handle(const metrics_sources *src, struct evhttp_request *req)
{
    scrape *s = calloc(1, sizeof *s);
    if (!s) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    s->req = req;
    prom_text_init(&s->text);
    process_metrics(src, &s->text);
    batch_pipeline_metrics(src->pipeline, &s->text);
    if (src->statsd)
        statsd_listeners_metrics(src->statsd, &s->text);
    if (src->cache)
        query_cache_metrics(src->cache, &s->text);
    s->infos[0].instance = "state";
    s->infos[1].instance = "cache";
    s->ninfos = src->cache && query_cache_redis(src->cache) ? 2 : 1;
    s->pending = 2;
    redis_info_read(src->redis, &s->infos[0], on_info, s);
    redis_info_read(src->cache ? query_cache_redis(src->cache) : NULL, &s->infos[1], on_info, s);
}
