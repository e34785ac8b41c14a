/*
 * query_cache.h — cache-aside for read answers, on the cache Redis (design
 * rule 6: invalidate and bound). Runs on the event loop; SQLite only ever
 * runs on a reader thread (query_pool.h).
 *
 * A read (query_exec.h) is keyed by the hash of its normalised text
 * (read_request_key) and by the versions it depends on (cache_keys.h): the
 * generation, and the version of each metric name its selectors name (of the
 * catalog when a selector names none, and for label lists, series and
 * metadata). One Lua call reads those versions (creating a missing one as a
 * new random value) and the answer under them. Then:
 *
 *   hit        the stored answer is sent as it is (a stored "absent" answer,
 *              a negative hit, too);
 *   miss       single flight: misses of one key in this process share one
 *              query; across processes a `SET lock NX PX cache.lock_ms` elects
 *              the one that queries, and the others re-read the answer every
 *              few ms for up to cache.wait_ms, then query themselves (never
 *              hang). The answer is written by cache_populate(), the only
 *              writer of answers: SET with the TTL of its data class plus up
 *              to cache.ttl_jitter_percent random extra;
 *   uncached   the cache is disabled, down, slow (cache.timeout_ms) or its
 *              breaker is open (cache.breaker_failures in a row open it for
 *              cache.breaker_open_ms): the read goes to SQLite and its answer
 *              says so (header X-Tally-Cache: uncached, and a Prometheus
 *              "warnings" entry), never an error.
 *
 * Early refresh: a hit on a hot key (3 hits or more) with less than 3 s of
 * its TTL left re-reads it in the background (one reader, by the same lock),
 * so that a hot key is renewed before the read load finds it expired.
 *
 * Warming: the hottest keys (cache.warm_keys, by hits) are remembered; once a
 * second `SET tally:{cache}:epoch NX` tells whether the cache came back empty
 * (a restart, a flush), and if so they are read again, a few at a time,
 * before the read load finds them cold.
 */
#ifndef TALLY_QUERY_CACHE_H
#define TALLY_QUERY_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config.h"
#include "prom_text.h"
#include "redis_writer.h"
#include "query_exec.h"
#include "query_pool.h"

typedef struct query_cache query_cache;

/* How an answer was obtained (the X-Tally-Cache header). */
typedef enum cache_state { CACHE_HIT, CACHE_MISS, CACHE_UNCACHED } cache_state;

/* status and body (the caller sends and then frees nothing: the body is
 * valid during the call only; it may be drained). */
typedef void (*cache_answer_fn)(void *opaque, int status, struct evbuffer *body,
                                cache_state state);

typedef struct cache_stats {
    uint64_t hits, negative_hits, misses, waits, uncached, populates, warmed, refreshes;
    uint64_t sqlite_queries; /* reads run on SQLite (query_pool_runs) */
    uint64_t local_hits;     /* of hits, those served by the in-process copy */
    uint64_t local_invalidations; /* tracking messages that emptied the copy */
    int local_active;        /* the in-process copy is on (local_answers.h) */
    int breaker_open;
    int up;
} cache_stats;

/* Starts the cache Redis connection (when cache.enabled). Returns NULL with
 * err filled. The pool is borrowed. */
query_cache *query_cache_new(struct event_base *base, const tally_config *cfg, query_pool *pool,
                             char *err, size_t errlen);

/* Answers read *r through `done`, exactly once (now or later). Takes the
 * read: *r is moved and the caller's struct may be reused at once. */
void query_cache_read(query_cache *c, read_request *r, cache_answer_fn done, void *opaque);

/* Answers a request from the in-process copy before it is even parsed, by
 * its raw text (read_request.raw_key, which a hit in the cache Redis stored
 * there too): 1 when answered (through `done`, now), 0 when the request must
 * be parsed and read with query_cache_read(). */
int query_cache_read_raw(query_cache *c, const char *raw_key, cache_answer_fn done, void *opaque);

void query_cache_stats_get(const query_cache *c, cache_stats *out);

/* Appends the read path's /metrics families (tally_reads_*). */
void query_cache_metrics(const query_cache *c, prom_text *t);

/* The cache Redis' connection (NULL when cache.enabled is false): for INFO. */
redis_writer *query_cache_redis(const query_cache *c);

/* Reads waiting for an answer (queries, cache round trips, waits). */
size_t query_cache_inflight(const query_cache *c);

void query_cache_free(query_cache *c);

#endif
