/*
 * live_known.h — what one writer knows about the series of the live view, so
 * it can leave out work whose answer it already has:
 *
 *  - that a series was admitted (counted in tally:live:series, the
 *    cardinality limit's HyperLogLog): a batch whose series are all known
 *    needs no admission call to Redis (admission.h);
 *  - a distribution's all-time minimum and maximum. The live view keeps them
 *    in sorted sets updated with ZADD LT / GT; they only ever move outward,
 *    so once a writer has applied a minimum m, the stored minimum is <= m
 *    from then on, and a later ZADD LT with a value >= m is a no-op that can
 *    be skipped (likewise for maxima). After warm-up almost every
 *    distribution update is such a no-op: skipping them removes about a
 *    third of the commands of a typical group.
 *
 * Why this stays exact: an entry is recorded only after Redis confirmed it
 * (admission answered, or the group that carried the bounds was applied);
 * every applied batch is in Kafka, so a rebuild (tally-flusher
 * --rebuild-redis) restores a minimum that is again <= m. Losing an entry
 * (the table is a bounded, direct-mapped cache) only means asking Redis
 * again. After Redis restarted, live_known_clear() forgets everything.
 *
 * A series is (hash, type, name, tags); `hash` is the caller's hash of the
 * series (live_update.c's, which covers all three). Memory is bounded by the
 * constructor's byte limit, not by load.
 */
#ifndef TALLY_LIVE_KNOWN_H
#define TALLY_LIVE_KNOWN_H

#include <stddef.h>
#include <stdint.h>

typedef struct live_known live_known;

/* A table of `slots` entries (a power of two) holding at most `max_bytes` of
 * names and tags. Returns NULL when out of memory. */
live_known *live_known_new(size_t slots, size_t max_bytes);

void live_known_free(live_known *b);

/* Forgets every entry: what the live view holds is no longer known (Redis
 * restarted, or its data was replaced). */
void live_known_clear(live_known *b);

/* Whether the live view's stored minimum / maximum of the series is known to
 * be <= min / >= max already (then the update may be skipped). */
int live_known_covers_min(const live_known *b, uint32_t hash, int type, const char *name,
                          size_t name_len, const char *tags, size_t tags_len, double min);
int live_known_covers_max(const live_known *b, uint32_t hash, int type, const char *name,
                          size_t name_len, const char *tags, size_t tags_len, double max);

/* Records that the live view now holds a minimum <= min and a maximum >= max
 * for the series. Call only after the update that carried them was applied. */
void live_known_note(live_known *b, uint32_t hash, int type, const char *name, size_t name_len,
                     const char *tags, size_t tags_len, double min, double max);

/* Whether the series is known to be admitted (counted under the cardinality
 * limit). */
int live_known_admitted(const live_known *b, uint32_t hash, int type, const char *name,
                        size_t name_len, const char *tags, size_t tags_len);

/* Records that Redis admitted the series. */
void live_known_note_admitted(live_known *b, uint32_t hash, int type, const char *name,
                              size_t name_len, const char *tags, size_t tags_len);

/* Entries held (for tests and logs). */
size_t live_known_count(const live_known *b);

#endif
