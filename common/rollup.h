/*
 * rollup.h — the resolutions of the stored buckets, and which rows a read
 * takes from each. Pure: no I/O; the flusher's store keeps the state in
 * SQLite (rollup_state, schema.h) and the query path reads it there.
 *
 * Resolutions: raw (flusher.bucket_seconds), 1 minute and 1 hour. A coarser
 * resolution is kept only when it is a multiple of the raw width and wider
 * than it (with bucket_seconds = 60 there is no 1-minute resolution). Each
 * one has
 *   rolled_until  windows before it are rolled up into this resolution
 *                 (raw: unbounded);
 *   kept_from     its rows before it are deleted.
 * Invariants the flusher keeps (retention.h): rolled_until is a multiple of
 * the width and never passes the finer resolution's; a resolution's rows are
 * deleted only where the next coarser one holds them (kept_from <= that
 * one's rolled_until, and a multiple of its width).
 *
 * A read at a resolution (rollup_choose: the coarsest not wider than the
 * step) takes, per resolution, one span of bucket starts: the chosen one
 * where it has rows, the finer ones where it is not rolled up yet, the
 * coarser ones where it is deleted. The spans do not overlap and cover every
 * bucket from the coarsest kept_from on.
 */
#ifndef TALLY_ROLLUP_H
#define TALLY_ROLLUP_H

#include <stdint.h>

#define ROLLUP_LEVELS 3              /* raw, 1 minute, 1 hour */
#define ROLLUP_UNBOUNDED INT64_MAX
#define ROLLUP_WIDEST_SECONDS 3600   /* the coarsest resolution's width */

typedef struct rollup_level {
    int64_t width;        /* seconds */
    int active;           /* this resolution is kept */
    int64_t rolled_until; /* raw: ROLLUP_UNBOUNDED */
    int64_t kept_from;
} rollup_level;

typedef struct rollup_state {
    rollup_level level[ROLLUP_LEVELS]; /* [0] raw, [1] 60 s, [2] 3600 s */
} rollup_state;

typedef struct rollup_span {
    int64_t width;  /* of the resolution; -1 when inactive (an empty span) */
    int64_t lo, hi; /* bucket starts [lo, hi) */
} rollup_span;

/* Nothing rolled up or deleted yet, for raw buckets of bucket_seconds. */
void rollup_state_init(rollup_state *st, int bucket_seconds);

/* Applies one stored rollup_state row (width 0 = raw); a width this bucket
 * size does not keep is ignored. */
void rollup_state_set(rollup_state *st, int64_t width, int64_t rolled_until, int64_t kept_from);

/* The level of width `width` (0 = raw), or -1 when there is none. */
int rollup_level_of(const rollup_state *st, int64_t width);

/* The next active level coarser (finer) than `level`, or -1. */
int rollup_coarser(const rollup_state *st, int level);
int rollup_finer(const rollup_state *st, int level);

/* The level a read with this step (seconds; <= 0: an instant read) uses. */
int rollup_choose(const rollup_state *st, int64_t step_seconds);

/* Fills spans[level] for a read at `chosen` (see above). */
void rollup_spans(const rollup_state *st, int chosen, rollup_span spans[ROLLUP_LEVELS]);

#endif
