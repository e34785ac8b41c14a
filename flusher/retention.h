/*
 * retention.h — what the flusher's retention does next: roll finished
 * windows up to the coarser resolutions, then delete each resolution's rows
 * past its age (retention.* in the config). Pure: the store runs each step
 * in a transaction of its own (store_retention_step), so a crash anywhere
 * leaves the step wholly done or not at all, and the next plan redoes it.
 *
 * Steps (rollup.h for the resolutions and their invariants), first due first:
 *   roll up   level L, windows [rolled_until, +chunk) once the whole chunk has
 *             ended RETENTION_GRACE_SECONDS ago (and, from a roll-up source,
 *             once the source has rolled it up): rolled_until advances;
 *   expire    level L, rows [kept_from, +chunk) whose end is older than L's
 *             age, only where the next coarser level holds them (the coarsest
 *             level's sets fold into their all-time row first): kept_from
 *             advances.
 * A chunk reads at most 60 source rows per series (a roll-up of 1 min from
 * 10 s buckets: 10 min; of 1 h from 1 min: 1 h), which bounds a step's
 * transaction. A step starts at the first stored row at or after the state
 * (the windows between hold nothing), so a gap in the data, or an old
 * database, is crossed in one step, not walked chunk by chunk.
 */
#ifndef TALLY_RETENTION_H
#define TALLY_RETENTION_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rollup.h"

#define RETENTION_GRACE_SECONDS 60  /* a window is rolled up this long after it ended */
#define RETENTION_CHUNK_ROWS 60     /* source rows per series in one step, at most */

typedef enum { RETENTION_ROLLUP = 1, RETENTION_EXPIRE } retention_kind;

typedef struct retention_step {
    retention_kind kind;
    int level;          /* rolled up into (ROLLUP) or deleted from (EXPIRE) */
    int source;         /* ROLLUP: the level rolled up from */
    int fold_sets;      /* EXPIRE of the coarsest level: keep the sets' registers */
    int64_t lo, hi;     /* buckets [lo, hi) */
} retention_step;

/* Where the stored rows are: *bucket = the first bucket >= from that level
 * holds (INT64_MAX: none). Returns 0, or -1 on an error (err filled). */
typedef struct retention_rows {
    int (*first_at)(void *ctx, int level, int64_t from, int64_t *bucket, char *err,
                    size_t errlen);
    void *ctx;
} retention_rows;

/*
 * The next step due at `now` (Unix seconds) for `st`. Returns 1 and *out, 0
 * when nothing is due (or retention.enabled is false), -1 when rows.first_at
 * failed (err filled).
 */
int retention_next(const rollup_state *st, const tally_config *cfg, int64_t now,
                   const retention_rows *rows, retention_step *out, char *err, size_t errlen);

/* The state after `step` (what the store writes in the step's transaction). */
void retention_apply(rollup_state *st, const retention_step *step);

#endif
