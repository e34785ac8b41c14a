/*
 * cache_invalidate.h — after a commit, make every cached answer that could
 * cover it invisible (design rule 6: source first, then invalidate).
 *
 * Contract: cache_invalidate() runs after store_commit() returned: it
 * replaces, in one pipelined round trip to the cache Redis, the version of
 * every Prometheus name the commit wrote and the catalog version
 * (cache_keys.h). Answers are keyed by the versions they were read under, so
 * the next read of those names misses and reads SQLite, which already holds
 * the commit. When the cache Redis cannot be reached the commit stands
 * (SQLite is the truth) and the invalidation is owed: the next successful
 * call replaces the generation instead, which every answer key contains, so
 * no answer read before the outage is ever served after it. While the cache
 * is unreachable, what it still serves to others is bounded by its TTLs.
 * Blocking hiredis with cache.timeout_ms; never fails the flusher.
 *
 * On a Redis Cluster (cache.cluster) the cache is one slot (cache_keys.h):
 * a connection asks CLUSTER SLOTS for that slot's master (the master known
 * last first, else the seed cache.host:port) and sends there; a MOVED
 * answer is followed at once and the commit's invalidation sent again.
 */
#ifndef TALLY_CACHE_INVALIDATE_H
#define TALLY_CACHE_INVALIDATE_H

#include <stdint.h>

#include "aggregate.h"
#include "config.h"

typedef struct cache_invalidator cache_invalidator;

/* NULL (and nothing to do) when cache.enabled is false or out of memory;
 * every function accepts NULL. Connects lazily. */
cache_invalidator *cache_invalidator_new(const tally_config *cfg);
void cache_invalidator_free(cache_invalidator *c);

/* Invalidates what the committed aggregate `a` wrote (see above); NULL: only
 * the catalog. */
void cache_invalidate(cache_invalidator *c, const aggregate *a);

/* Replaces the generation (and the catalog version): every cached answer
 * becomes invisible. After a retention step, which changes what reads of
 * any name may see. Owed like a failed invalidation when the cache is down. */
void cache_invalidate_all(cache_invalidator *c);

/* Version keys replaced so far (names, catalog, generation): the
 * invalidations of the read path's counters. */
uint64_t cache_invalidations(const cache_invalidator *c);

#endif
