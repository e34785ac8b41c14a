/*
 * redis_keys.h — the names of Tally's Redis keys (a public interface: README
 * "Redis key layout"). Every key starts with "tally:". The live view is cut
 * into redis.shards shards: a metric NAME lives in shard
 * redis_shard_of(NAME) = CRC16(NAME) mod shards, and every key of a shard
 * carries the shard's number as its hash tag ("{S}"), so a shard is one
 * Redis Cluster slot and each transaction (one shard's part of a group of
 * batches: its series, its dedup keys, its fence) is one single-slot
 * MULTI/EXEC on one node (live_update.h). All keys listed here are STATE
 * (not caches): kept by AOF, protected by maxmemory-policy noeviction, and
 * never expire, except the dedup keys, the claims and the rate-limit state.
 *
 *   tally:{S}:NAME:counter      hash  tags -> running total (sum of value/rate), whole part
 *   tally:{S}:NAME:counter:frac hash  tags -> running total, fractional part
 *   tally:{S}:NAME:gauge        hash  tags -> current gauge value
 *   tally:{S}:NAME:dist:count   hash  tags -> sum of 1/rate, whole part (+ :frac)
 *   tally:{S}:NAME:dist:sum     hash  tags -> sum of value/rate, whole part (+ :frac)
 *   tally:{S}:NAME:dist:min     zset  member tags, score = smallest value
 *   tally:{S}:NAME:dist:max     zset  member tags, score = largest value
 *   tally:{S}:NAME:set:TAGS     HyperLogLog (a Redis string) of the set series
 *                               (NAME, TAGS): its members' PFADD elements
 *                               (redis_hll.h); TAGS the canonical tags, "" for
 *                               an untagged set ("tally:{S}:NAME:set:")
 *   tally:{S}:NAME:set          hash  tags -> "1": the index of NAME's set series
 *                               (which TAGS have a HyperLogLog): where a set
 *                               series is known to exist (admission, the live
 *                               read), as the value hashes are for the others
 *   tally:{S}:batch:BATCH_ID    string "DIGEST TIME", TTL dedup.window_seconds + slack:
 *                               the batch's part in shard S applied (dedup.h)
 *   tally:{H}:claim:BATCH_ID    string "DIGEST TIME" or "DIGEST TIME done", same TTL, in
 *                               the batch id's home shard H = redis_shard_of(BATCH_ID)
 *                               (only with redis.shards > 1): the body a batch id was
 *                               first used for, so a reused id is a conflict even when
 *                               the two bodies touch different shards; "done": every
 *                               part is applied (the rebuild writes the flushed batches so)
 *   tally:{S}:live:rebuilding   string, TTL 15 s renewed each second: a rebuild holds the
 *                               fence of every shard; ingest defers its updates to it
 *   tally:{S}:live:stale        string: the live view may lack acknowledged batches (Redis
 *                               was down or lost data) until the next rebuild, which
 *                               deletes it; set in every shard at once
 *   tally:{admission}:live:series  HyperLogLog of "KEY\nTAGS" of every series admitted
 *                               (KEY: its counter, gauge or dist:count hash, or its set index), the
 *                               count behind ingest.max_live_series (admission.h)
 *   tally:{admission}:rate:CLIENT  hash, a token's rate-limit state (admission.h);
 *                               expires once its budget is full again
 *   tally:{S}:live:run_id       string (redis.cluster only): run_id of the master of
 *                               shard S the live view was written to; another one
 *                               means another process serves the shard now: stale
 *   tally:live:run_id           string: run_id of the Redis process the live view
 *                               was written to; another one at a reconnect means
 *                               Redis restarted (and may have lost ~1 s): stale
 *
 * The tags field is the canonical tag string ("" for an untagged series). A
 * sum's value is its field in the main hash (only ever integers, so HINCRBY
 * applies) plus its field in the ":frac" companion (see live_update.c).
 */
#ifndef TALLY_REDIS_KEYS_H
#define TALLY_REDIS_KEYS_H

#include <stddef.h>

#include "event.h"

#define REDIS_KEY_MAX 320
/* The key suffix of a set's index hash; its HyperLogLogs add ":TAGS". */
#define REDIS_KEY_SET_SUFFIX "set"
/* A set series' HyperLogLog key holds its tags too. */
#define REDIS_KEY_SET_MAX (REDIS_KEY_MAX + EVENT_TAGS_MAX)
/* What redis_key_shard() names in a shard. */
#define REDIS_SHARD_FENCE "live:rebuilding"
#define REDIS_SHARD_STALE "live:stale"
#define REDIS_SHARD_RUN_ID "live:run_id" /* (a Redis Cluster: the run_id of the shard's master) */
#define REDIS_KEY_RUN_ID "tally:live:run_id"
/* The admission keys (admission.h) share the tag {admission}: its script
 * touches both, so in a Redis Cluster they must be in one slot. */
#define REDIS_KEY_LIVE_SERIES "tally:{admission}:live:series"
#define REDIS_KEY_RATE_PREFIX "tally:{admission}:rate:"
/* Appended to a sum hash's name: its companion holding the fractions. */
#define REDIS_KEY_FRAC_SUFFIX ":frac"

/* The shard (0..shards-1) of a metric name, or of a batch id (its home
 * shard): CRC16 (redis_slots.h) of the bytes, mod shards (>= 1). */
unsigned redis_shard_of(const char *text, size_t len, unsigned shards);

/* The Redis Cluster slot of every key of a shard (the slot of its tag). */
unsigned redis_shard_slot(unsigned shard);

/* Writes "tally:{SHARD}:NAME:SUFFIX" (SHARD = redis_shard_of(NAME)) into buf
 * (NUL-terminated) and returns its length, or -1 when it does not fit. */
int redis_key_metric(char *buf, size_t buflen, unsigned shard, const char *name,
                     size_t name_len, const char *suffix);

/* The suffix of the hash that holds a series of this type's value (its
 * counter, gauge or dist:count hash, a set's index hash): where a series is
 * known to exist, field TAGS. */
const char *redis_key_value_suffix(metric_type type);

/* Writes "tally:{SHARD}:NAME:set:TAGS" (a set series' HyperLogLog); returns its
 * length, or -1 when it does not fit. */
int redis_key_set(char *buf, size_t buflen, unsigned shard, const char *name, size_t name_len,
                  const char *tags, size_t tags_len);

/* Writes "tally:{SHARD}:batch:BATCH_ID"; returns its length or -1 when it does not fit. */
int redis_key_batch(char *buf, size_t buflen, unsigned shard, const char *batch_id,
                    size_t batch_id_len);

/* Writes "tally:{H}:claim:BATCH_ID", H its home shard; returns its length or -1. */
int redis_key_claim(char *buf, size_t buflen, unsigned shards, const char *batch_id,
                    size_t batch_id_len);

/* Writes "tally:{SHARD}:WHAT" (REDIS_SHARD_FENCE, REDIS_SHARD_STALE); returns its length
 * or -1. */
int redis_key_shard(char *buf, size_t buflen, unsigned shard, const char *what);

#endif
