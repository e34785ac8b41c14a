/*
 * redis_keys.h — the names of Tally's Redis keys (a public interface: README
 * "Redis key layout"). Every key starts with "tally:" and carries the metric
 * name as its hash tag ("{name}"), so all keys of one metric live in one
 * Redis Cluster slot. All keys listed here are STATE (not caches): they are
 * kept by AOF, protected by maxmemory-policy noeviction, and never expire,
 * except the batch dedup keys and the rate-limit state.
 *
 *   tally:{NAME}:counter        hash  tags -> running total (sum of value/rate), whole part
 *   tally:{NAME}:counter:frac   hash  tags -> running total, fractional part
 *   tally:{NAME}:gauge          hash  tags -> current gauge value
 *   tally:{NAME}:dist:count     hash  tags -> sum of 1/rate, whole part (+ :frac)
 *   tally:{NAME}:dist:sum       hash  tags -> sum of value/rate, whole part (+ :frac)
 *   tally:{NAME}:dist:min       zset  member tags, score = smallest value
 *   tally:{NAME}:dist:max       zset  member tags, score = largest value
 *   tally:{NAME}:set:TAGS       HyperLogLog (a Redis string) of the set series
 *                               (NAME, TAGS): its members' PFADD elements
 *                               (redis_hll.h); TAGS the canonical tags, "" for
 *                               an untagged set ("tally:{NAME}:set:")
 *   tally:{NAME}:set            hash  tags -> "1": the index of NAME's set series
 *                               (which TAGS have a HyperLogLog): where a set
 *                               series is known to exist (admission, the live
 *                               read), as the value hashes are for the others
 *   tally:batch:{BATCH_ID}      string "DIGEST TIME", TTL dedup.window_seconds + slack:
 *                               batch applied (dedup.h)
 *   tally:live:series           HyperLogLog of "KEY\nTAGS" of every series admitted
 *                               (KEY: its counter, gauge or dist:count hash, or its set index), the
 *                               count behind ingest.max_live_series (admission.h)
 *   tally:rate:{CLIENT}         hash, a token's rate-limit state (admission.h);
 *                               expires once its budget is full again
 *   tally:live:rebuilding       string, TTL 15 s renewed each second: a rebuild holds the fence;
 *                               ingest defers its updates to the rebuild
 *   tally:live:stale            string: the live view may lack acknowledged
 *                               batches (Redis was down or lost data) until
 *                               the next rebuild, which deletes it
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
#define REDIS_KEY_REBUILD_FENCE "tally:live:rebuilding"
#define REDIS_KEY_STALE "tally:live:stale"
#define REDIS_KEY_RUN_ID "tally:live:run_id"
#define REDIS_KEY_LIVE_SERIES "tally:live:series"
/* Appended to a sum hash's name: its companion holding the fractions. */
#define REDIS_KEY_FRAC_SUFFIX ":frac"

/* Writes "tally:{NAME}:SUFFIX" into buf (NUL-terminated) and returns its length,
 * or -1 when it does not fit. */
int redis_key_metric(char *buf, size_t buflen, const char *name, size_t name_len,
                     const char *suffix);

/* The suffix of the hash that holds a series of this type's value (its
 * counter, gauge or dist:count hash, a set's index hash): where a series is
 * known to exist, field TAGS. */
const char *redis_key_value_suffix(metric_type type);

/* Writes "tally:{NAME}:set:TAGS" (a set series' HyperLogLog); returns its
 * length, or -1 when it does not fit. */
int redis_key_set(char *buf, size_t buflen, const char *name, size_t name_len, const char *tags,
                  size_t tags_len);

/* Writes "tally:batch:{BATCH_ID}"; returns its length or -1 when it does not fit. */
int redis_key_batch(char *buf, size_t buflen, const char *batch_id, size_t batch_id_len);

#endif
