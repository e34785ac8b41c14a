/*
 * prom_api.h — the read routes (Prometheus HTTP API subset, and Tally's
 * native range read), on tally-ingest's HTTP port:
 *
 *   GET|POST /api/v1/query              query, time
 *   GET|POST /api/v1/query_range        query, start, end, step
 *   GET|POST /api/v1/series             match[] (one or more), start, end
 *   GET|POST /api/v1/labels             match[] (optional), start, end
 *   GET      /api/v1/label/NAME/values  match[] (optional), start, end
 *   GET      /api/v1/metadata           metric (optional)
 *   GET      /api/v1/status/buildinfo
 *   GET      /v1/series/NAME            from, to, step (Unix seconds; defaults:
 *                                       the last hour at the bucket width)
 *
 * POST takes the parameters as an application/x-www-form-urlencoded body
 * (what Grafana sends). Answers have Prometheus' shapes and statuses: 200
 * success; 400 bad_data (a parameter or the query, naming what is wrong or
 * not supported); 422 execution; 503 unavailable (no database yet, reader
 * queue full). Times are Unix seconds (decimals allowed) or RFC 3339; a step
 * is seconds or a duration ("15s", "1m").
 *
 * Contract: parsing and validation run on the event loop; the read then
 * goes through the cache (query_cache.h: header X-Tally-Cache: hit, miss or
 * uncached), and every SQLite query runs on a reader thread (query_pool.h).
 * The caller has checked authorization.
 */
#ifndef TALLY_PROM_API_H
#define TALLY_PROM_API_H

#include <stddef.h>

#include <event2/event.h>
#include <event2/http.h>

#include "config.h"
#include "query_cache.h"

typedef struct prom_api prom_api;

/* Returns NULL with err filled. The cache is borrowed. */
prom_api *prom_api_new(struct event_base *base, const tally_config *cfg, query_cache *cache,
                       char *err, size_t errlen);

/* Whether `path` is one of the routes above. */
int prom_api_owns(const char *path);

/* Answers a request for one of its routes (now or when its query is done). */
void prom_api_handle(prom_api *a, struct evhttp_request *req, const char *path);

/* Appends the read path's state to a JSON object under construction:
 * ,"cache":"up"|"down"|"breaker_open"|"disabled","reads":{"hits":N,
 * "negative_hits":N,"misses":N,"single_flight_waits":N,"uncached":N,
 * "populates":N,"warmed":N,"early_refreshes":N,"sqlite_queries":N,"inflight":N} (the counters
 * the next issue exports on /metrics). */
void prom_api_health(const prom_api *a, struct evbuffer *out);

/* Reads answered but not yet sent (their queries are running). */
size_t prom_api_inflight(const prom_api *a);

/* The cache the routes read through (for /metrics). */
query_cache *prom_api_cache(const prom_api *a);

void prom_api_free(prom_api *a);

#endif
