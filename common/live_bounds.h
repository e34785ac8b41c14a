/*
 * live_bounds.h — what one writer knows about the live view's all-time
 * distribution minimum and maximum, so it can leave out updates that cannot
 * change them.
 *
 * The live view keeps, per distribution series, the smallest and largest
 * value ever seen (sorted sets updated with ZADD LT / GT). Those only ever
 * move outward, so once a writer has applied a minimum m to Redis, the
 * stored minimum is <= m from then on, and a later ZADD LT with a value
 * >= m is a no-op that can be skipped (likewise for maxima). After warm-up
 * almost every distribution update is such a no-op: skipping them removes
 * about a third of the commands of a typical group.
 *
 * Why this stays exact: an entry is recorded only after the group that sent
 * it has been applied (live_bounds_note after LIVE_APPLIED); every applied
 * batch is in Kafka, so a rebuild (tally-flusher --rebuild-redis) restores
 * a minimum that is again <= m. Losing an entry (the table is a bounded,
 * direct-mapped cache) only means sending the command.
 *
 * Memory is bounded by the constructor's byte limit, not by load.
 */
#ifndef TALLY_LIVE_BOUNDS_H
#define TALLY_LIVE_BOUNDS_H

#include <stddef.h>
#include <stdint.h>

typedef struct live_bounds live_bounds;

/* A table of `slots` entries (a power of two) holding at most `max_bytes` of
 * names and tags. Returns NULL when out of memory. */
live_bounds *live_bounds_new(size_t slots, size_t max_bytes);

void live_bounds_free(live_bounds *b);

/* Forgets every entry: what the live view holds is no longer known (Redis
 * restarted, or its data was replaced). */
void live_bounds_clear(live_bounds *b);

/* Whether the live view's stored minimum / maximum of the series is known to
 * be <= min / >= max already (then the update may be skipped). */
int live_bounds_covers_min(const live_bounds *b, uint32_t hash, const char *name,
                           size_t name_len, const char *tags, size_t tags_len, double min);
int live_bounds_covers_max(const live_bounds *b, uint32_t hash, const char *name,
                           size_t name_len, const char *tags, size_t tags_len, double max);

/* Records that the live view now holds a minimum <= min and a maximum >= max
 * for the series. Call only after the update that carried them was applied. */
void live_bounds_note(live_bounds *b, uint32_t hash, const char *name, size_t name_len,
                      const char *tags, size_t tags_len, double min, double max);

/* Entries held (for tests and logs). */
size_t live_bounds_count(const live_bounds *b);

#endif
