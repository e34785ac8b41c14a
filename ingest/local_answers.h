/*
 * local_answers.h — an in-process copy of the cache's hottest answers, so a
 * hit needs no round trip to the cache Redis, kept exactly as fresh as the
 * cache itself by Redis' own invalidation messages (client-side caching,
 * `CLIENT TRACKING ... BCAST`). Runs on the event loop.
 *
 * Contract:
 *   - One connection of its own to the cache Redis tracks every key under
 *     tally:{cache}:v:, tally:{cache}:gen and tally:{cache}:catalog (the versions
 *     of cache_keys.h). Any change of one of them (a flusher's invalidation,
 *     an expiry, an eviction, a FLUSHALL) empties the whole copy.
 *   - The copy answers only while that connection is subscribed and alive:
 *     a drop, a refused command, or a PING unanswered for a second empties
 *     it and turns it off until the next connection is subscribed.
 *   - local_answers_get() first reads every invalidation already on the
 *     socket, so no answer is served once Redis has sent its invalidation.
 *   - A put carries the stamp taken when its lookup was SENT: an answer read
 *     before an invalidation that arrived since is not stored (it may be
 *     older than the commit that invalidated it).
 *   - Each answer lives at most ttl_ms (the caller gives what is left of the
 *     cached answer's own TTL), and the copy at most cache.local_bytes; when
 *     a put would pass that, the copy is emptied first.
 *
 * What it may serve that the cache Redis would not: nothing beyond the
 * delivery of one invalidation message. Redis writes it in the same event
 * loop pass as its reply to the flusher's version update (README "Key
 * layout").
 */
#ifndef TALLY_LOCAL_ANSWERS_H
#define TALLY_LOCAL_ANSWERS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"
#include "redis_writer.h"

typedef struct local_answers local_answers;

typedef struct local_answers_stats {
    uint64_t hits;          /* answers served from the copy */
    uint64_t invalidations; /* invalidation messages received */
    uint64_t clears;        /* times the copy was emptied (any reason) */
    size_t entries, bytes;
    int active;             /* 1 while the copy may answer */
} local_answers_stats;

/* Starts (connecting in the background) to the address of the cache writer
 * `cache` (redis_writer_address). On a cache cluster it connects only once
 * that writer is up on the master of the cache's slot, and drops the copy
 * when the writer moves. NULL with err filled on failure; a copy with
 * cache.local_bytes = 0 never answers and opens no connection. */
local_answers *local_answers_new(struct event_base *base, const tally_config *cfg,
                                 const redis_writer *cache, char *err, size_t errlen);

/* The stamp to give local_answers_put() for a lookup sent now. */
uint64_t local_answers_stamp(const local_answers *l);

/* 1 and *value, *len (valid until the next put) for a live answer stored
 * under (hash, key_text); else 0. */
int local_answers_get(local_answers *l, uint64_t hash, const char *key_text, const char **value,
                      size_t *len);

/* Stores a copy of value under (hash, key_text) for ttl_ms, unless an
 * invalidation arrived after `stamp` was taken or the copy is off. */
void local_answers_put(local_answers *l, uint64_t stamp, uint64_t hash, const char *key_text,
                       const char *value, size_t len, int64_t ttl_ms);

void local_answers_stats_get(const local_answers *l, local_answers_stats *out);

void local_answers_free(local_answers *l);

#endif
