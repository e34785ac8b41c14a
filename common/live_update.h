/*
 * live_update.h — folds accepted batches into a single Redis call (pure).
 *
 * Two steps. live_fold_new() folds ONE batch per series (name, tags, type) in
 * line order: counters sum value/rate, gauges compose their operations in
 * order (the last absolute value plus later deltas, or one delta),
 * distributions sum count and value and keep min/max. live_update_build()
 * then merges the folds of a GROUP of batches, in delivery order, into the
 * argument vector of ONE `EVAL` of a Lua script that, atomically:
 *
 *   1. defers the whole group when a Redis rebuild holds the fence key
 *      (LIVE_MODE_INGEST only; the rebuild replays those batches from Kafka);
 *   2. refuses the whole group, naming the batches, if any batch's dedup key
 *      exists (the caller answers those as duplicates and resends the rest);
 *   3. otherwise sets every batch's dedup key (TTL = dedup window) and applies
 *      the merged series updates.
 *
 * Grouping is what keeps Redis off the critical path: concurrent batches
 * touching the same series cost one hash operation per series, not one per
 * batch. Every batch is still applied at most once within the dedup window
 * (rule 3), and ingest and a concurrent rebuild never both apply one batch.
 * Keys follow redis_keys.h.
 */
#ifndef TALLY_LIVE_UPDATE_H
#define TALLY_LIVE_UPDATE_H

#include <stddef.h>

#include "event.h"

/* First element of the script's reply. */
#define LIVE_DUPLICATE 0 /* refused: the 1-based indexes of the duplicate batches follow */
#define LIVE_APPLIED 1
#define LIVE_DEFERRED 2  /* a rebuild holds the fence: it will apply the batches */

typedef enum live_mode {
    LIVE_MODE_INGEST,  /* tally-ingest: defer while a rebuild runs */
    LIVE_MODE_REBUILD, /* the rebuild itself: ignore the fence */
} live_mode;

/* One batch folded per series; owns copies of its names and tags. */
typedef struct live_fold live_fold;

/* Folds `count` events (strings are copied: the events' buffers may go away).
 * Returns NULL with err filled when out of memory. */
live_fold *live_fold_new(const metric_event *events, size_t count, char *err, size_t errlen);

/* Distinct series of the batch. */
size_t live_fold_series(const live_fold *f);

void live_fold_free(live_fold *f);

typedef struct live_update {
    int argc;          /* argv[0] = "EVAL" ... ready for redisAsyncCommandArgv */
    char **argv;       /* owned; each element malloc'd */
    size_t *argvlen;   /* owned */
    size_t series;     /* distinct series after merging the group */
} live_update;

/*
 * Builds the EVAL for a group of `n` >= 1 batches, folds[i] with id
 * batch_ids[i] (batch_id_lens[i] bytes), merged in index order. Returns 0, or
 * -1 with err filled (out of memory, batch id too long). On success the caller
 * owns *u and frees it with live_update_free(); on failure *u holds nothing.
 */
int live_update_build(live_update *u, const live_fold *const *folds,
                      const char *const *batch_ids, const size_t *batch_id_lens, size_t n,
                      int dedup_ttl_seconds, live_mode mode, char *err, size_t errlen);

void live_update_free(live_update *u);

/* How many of the n queued batch ids (in order) may form one group: at most
 * `max`, and stopping before the first id already in the group. The script
 * checks dedup keys before it sets them, so two copies of one batch in a
 * group (a client's quick retry) would both be applied; split, the second
 * copy meets the first one's dedup key. */
size_t live_group_length(const char *const *ids, size_t n, size_t max);

#endif
