/*
 * aggregate.h — folds metric events into per-(name, tags, type, bucket) rows.
 *
 * Pure: no I/O, no clock. The flusher feeds every event of the pending flush
 * in consume order; the store then iterates the rows and series and upserts
 * them in one SQLite transaction; clear() empties the aggregate for the next
 * flush while keeping its memory, except the distribution sketches, which it
 * frees (below). One event adds at most one series, one row and one sketch
 * bin, so memory is bounded by the flush trigger (flusher.max_batch_events),
 * not by load.
 *
 * Row semantics (bucket = floor(stamp_ms / 1000 / bucket_seconds) * bucket_seconds,
 * in Unix seconds, floored towards minus infinity):
 *   counter:      lines += 1; value += v / rate; weight += 1 / rate; no min/max.
 *   set:          lines += 1; weight += 1 (so weight = lines); value 0; no min/max;
 *                 set: the member added to the row's HyperLogLog.
 *   distribution: lines += 1; value += v / rate; weight += 1 / rate; min/max of v;
 *                 sketch: v added with weight 1 / rate (event_weight).
 *   gauge:        lines += 1; weight += 1; value = the series' running value after
 *                 the last op (in consume order) that fell in this bucket.
 *
 * Gauges: each series keeps {absolute_known, running}. An absolute op sets
 * running = v and absolute_known = 1; a relative op ("+v"/"-v") adds v. While
 * no absolute op has been seen in this flush, running is a delta relative to
 * the series' value before the flush (the "base", stored in SQLite; 0 for a
 * new gauge), and rows record it with value_relative = 1; the store resolves
 * them as base + value. Because a bucket can see relative ops before the
 * series' first absolute op and absolute ones after it, a gauge row keeps two
 * ranges: [rel_min, rel_max] (relative to the base) and [min, max] (absolute);
 * the stored min/max is the combination of both after resolution.
 *
 * Sketches: every distribution row owns a DDSketch (ddsketch.h, alpha = 1%)
 * of its values, created with the row's first event, so its quantiles are
 * within 1% of the exact weighted quantiles of the row; the store upserts it
 * next to the row. Other rows have none (NULL). clear() and free() free the
 * sketches: a sketch's bins grow with the span of its values (up to ~40 KB),
 * and keeping the largest flush's sketches for reuse would pin that peak, so
 * each flush allocates one sketch (and its bins) per distribution row.
 *
 * Sets: every set row owns an hll (hll.h) of its members, created with the
 * row's first event; a member digest d (event.h) is added as
 * hll_add_hash(redis_hll_hash(d)), the register Redis' PFADD of the same
 * member sets (redis_hll.h), so SQLite's registers and the live view's are
 * one function of the data. A set row has no metrics row (the store writes
 * its catalog entry and its sketch only). Memory: a row's hll is sparse (4
 * bytes per distinct member, at most 4 KB) until its 1025th distinct
 * register, then 16 KB, so a flush of E events holds at most about
 * 4 E + 16 KB * E / 1025 bytes of them; clear() and free() free them.
 */
#ifndef TALLY_AGGREGATE_H
#define TALLY_AGGREGATE_H

#include <stddef.h>
#include <stdint.h>

#include "ddsketch.h"
#include "event.h"
#include "hll.h"

/* A series: (type, name, tags), strings copied and NUL-terminated, owned by
 * the aggregate until the next aggregate_clear()/aggregate_free(). */
typedef struct agg_series {
    const char *name;
    const char *tags;          /* "" when the series has no tags */
    uint16_t name_len;
    uint16_t tags_len;
    metric_type type;
    uint32_t hash;             /* private: hash of (type, name, tags) */
    /* Gauges only. */
    uint8_t absolute_known;    /* an absolute op was seen in this flush */
    uint8_t needs_base;        /* the first op of this flush was relative: rows
                                  and the final value depend on the stored base */
    double running;            /* final value (relative to the base unless absolute_known) */
} agg_series;

/* A bucket row of one series. */
typedef struct agg_row {
    uint32_t series;           /* index for aggregate_series_at() */
    int64_t bucket;            /* Unix seconds, multiple of bucket_seconds */
    int64_t lines;             /* events folded into this row */
    double value;              /* see the table above */
    double weight;
    double min, max;           /* distribution: of values; gauge: of absolute values;
                                  valid only when has_range */
    double rel_min, rel_max;   /* gauge: of values relative to the base; valid only
                                  when has_rel_range */
    uint8_t has_range;
    uint8_t has_rel_range;
    uint8_t value_relative;    /* gauge: value is relative to the base */
    ddsketch *sketch;          /* distribution: the row's values weighted 1 / rate
                                  (non-NULL once an event was folded in); NULL for
                                  other types. Owned by the aggregate, valid until
                                  the next clear/free. */
    hll *set;                  /* set: the row's members (non-NULL once an event
                                  was folded in); NULL for other types; owned like
                                  sketch. */
} agg_row;

typedef struct aggregate aggregate;

/*
 * Creates an empty aggregate for buckets of `bucket_seconds` (>= 1).
 * Returns NULL when out of memory. The caller owns it (aggregate_free).
 */
aggregate *aggregate_new(int bucket_seconds);

/* Frees everything; NULL is a no-op. Series/row pointers become invalid. */
void aggregate_free(aggregate *a);

/*
 * Folds one event. Requires an event as record_next() produces it (type known,
 * sample_rate in (0, 1], finite value). Strings are copied: the event's buffer
 * may be freed afterwards. Returns 0, or -1 with err filled (invalid event,
 * out of memory); after -1 the aggregate is still consistent but the event is
 * not (or only partly) counted, so the caller must not commit it. A
 * distribution event whose value or weight its sketch refuses (outside
 * event.h's domain) or that finds no memory for the sketch is such an error,
 * and so is a set event without memory for its row's hll.
 */
int aggregate_add(aggregate *a, const metric_event *ev, char *err, size_t errlen);

/* The bucket (Unix seconds) an event stamped `stamp_ms` falls in. */
int64_t aggregate_bucket(int64_t stamp_ms, int bucket_seconds);

/* Events folded since the last clear. */
size_t aggregate_events(const aggregate *a);

/* Iteration, in first-seen order (deterministic for a given event sequence).
 * Indexes are valid until the next add/clear; pointers until the next add/clear. */
size_t aggregate_series_count(const aggregate *a);
const agg_series *aggregate_series_at(const aggregate *a, size_t i);
size_t aggregate_row_count(const aggregate *a);
const agg_row *aggregate_row_at(const aggregate *a, size_t i);

/* Empties the aggregate (after a commit): frees the rows' sketches and
 * hlls and keeps the rest of its allocated memory. */
void aggregate_clear(aggregate *a);

#endif
