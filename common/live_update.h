/*
 * live_update.h — folds one accepted batch into a single Redis call (pure).
 *
 * The batch is pre-aggregated per series (name, tags, type) in line order:
 * counters sum value/rate, gauges compose their operations in order (the last
 * absolute value plus later deltas, or one delta), distributions sum count and
 * value and keep min/max. The result is the argument vector of ONE `EVAL` of
 * a Lua script that (1) defers the batch when a Redis rebuild holds the
 * fence key (LIVE_MODE_INGEST only; the rebuild replays the batch from Kafka),
 * (2) claims the batch's dedup key with SET NX EX and (3) only if it was new,
 * applies every series update. So a batch reaches Redis in one round trip, a
 * retried batch is applied at most once within the dedup window (rule 3), and
 * ingest and a concurrent rebuild never both apply one batch. Keys follow
 * redis_keys.h.
 */
#ifndef TALLY_LIVE_UPDATE_H
#define TALLY_LIVE_UPDATE_H

#include <stddef.h>

#include "event.h"

typedef struct live_update {
    int argc;          /* argv[0] = "EVAL" ... ready for redisAsyncCommandArgv */
    char **argv;       /* owned; each element malloc'd */
    size_t *argvlen;   /* owned */
    size_t series;     /* number of distinct series touched */
} live_update;

/* Result of the script. */
#define LIVE_DUPLICATE 0 /* the batch's dedup key existed: applied before */
#define LIVE_APPLIED 1
#define LIVE_DEFERRED 2  /* a rebuild holds the fence: it will apply the batch */

typedef enum live_mode {
    LIVE_MODE_INGEST,  /* tally-ingest: defer while a rebuild runs */
    LIVE_MODE_REBUILD, /* the rebuild itself: ignore the fence */
} live_mode;

/*
 * Builds the EVAL for `count` events of batch `batch_id`. dedup_ttl_seconds is
 * the dedup key's lifetime. Returns 0, or -1 with err filled (out of memory,
 * key too long). On success the caller owns *u and frees it with
 * live_update_free(); on failure *u holds nothing.
 */
int live_update_build(live_update *u, const char *batch_id, size_t batch_id_len,
                      const metric_event *events, size_t count, int dedup_ttl_seconds,
                      live_mode mode, char *err, size_t errlen);

void live_update_free(live_update *u);

#endif
