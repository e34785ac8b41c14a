/*
 * redis_info.h — the Redis figures /metrics shows (used memory against
 * maxmemory, evicted keys, connected clients, keyspace hits and misses) of
 * each Redis tally-ingest uses: the state Redis and the cache Redis. A poller
 * sends one INFO to each once a second (never two at once to one Redis) and
 * keeps the last answers, so a scrape reads a copy at most ~1 s old and waits
 * for no Redis: under writes an INFO queues behind the batches' transactions.
 */
#ifndef TALLY_REDIS_INFO_H
#define TALLY_REDIS_INFO_H

#include <event2/event.h>

#include "prom_text.h"
#include "redis_writer.h"

typedef struct redis_info {
    const char *instance;  /* "state" or "cache" (the label) */
    int up;                /* answered INFO */
    double used_memory, maxmemory, evicted_keys, connected_clients, keyspace_hits,
        keyspace_misses;
} redis_info;

typedef struct redis_info_poller redis_info_poller;

/* Starts polling `state` (labelled "state") and, when not NULL, `cache`
 * ("cache"), now and then every second on `base`. NULL when out of memory.
 * The writers must outlive the poller's last INFO callback: free the poller
 * after them (an INFO still pending at that point is answered to nobody). */
redis_info_poller *redis_info_poller_new(struct event_base *base, redis_writer *state,
                                         redis_writer *cache);
void redis_info_poller_free(redis_info_poller *p);

/* Appends the families tally_redis_* with one sample per polled Redis, from
 * the last INFO answers (up = 0: the last INFO failed, or none answered yet). */
void redis_info_metrics(const redis_info_poller *p, prom_text *t);

#endif
