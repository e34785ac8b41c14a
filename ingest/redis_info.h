/*
 * redis_info.h — the Redis figures /metrics shows (used memory against
 * maxmemory, evicted keys, connected clients, keyspace hits and misses), read
 * with one INFO per scrape from each Redis tally-ingest uses: the state Redis
 * and the cache Redis.
 */
#ifndef TALLY_REDIS_INFO_H
#define TALLY_REDIS_INFO_H

#include "prom_text.h"
#include "redis_writer.h"

typedef struct redis_info {
    const char *instance;  /* "state" or "cache" (the label) */
    int up;                /* answered INFO */
    double used_memory, maxmemory, evicted_keys, connected_clients, keyspace_hits,
        keyspace_misses;
} redis_info;

typedef void (*redis_info_fn)(void *opaque, redis_info *info);

/* Sends INFO through w (NULL: that Redis is not configured) and fills *info
 * (up = 0 when Redis cannot answer); `done` is called exactly once, now or
 * later. *info must live until then. */
void redis_info_read(redis_writer *w, redis_info *info, redis_info_fn done, void *opaque);

/* Appends the families tally_redis_* with one sample per instance given. */
void redis_info_metrics(prom_text *t, const redis_info *const *infos, size_t n);

#endif
