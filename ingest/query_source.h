/*
 * query_source.h — the flushed buckets in SQLite, as the PromQL evaluator and
 * the native read route see them. One per reader thread (it owns a read-only
 * connection); never used by two threads at once.
 *
 * What a StatsD series looks like in the Prometheus API (README "Queries"):
 * every sample is stamped at the END of its bucket (bucket + bucket_seconds),
 * when the bucket is complete, so a query at t sees exactly the buckets that
 * ended by t.
 *   counter       NAME                  cumulative since the series' first bucket
 *   gauge         NAME                  the bucket's last value
 *   distribution  NAME_count, NAME_sum  cumulative (estimated count, sum)
 *                 NAME_min, NAME_max    over each step's window
 *                 NAME{quantile="q"}    over each step's window: the merged DDSketch
 *                                       of its buckets (relative error <= 1 %); q as a
 *                                       matcher asks, else 0.5, 0.9 and 0.99
 *   set           NAME                  over each step's window: the distinct members,
 *                                       from the merged HyperLogLogs of its buckets
 *                                       (hll.h: 0.81 % standard error)
 * A window is (t - step, t] for a range query and (t - lookback, t] for an
 * instant query: a sample at t merges every bucket that ended in it.
 *
 * Resolutions (rollup.h): a select reads, for its step, the coarsest
 * resolution not wider than the step (an instant query: raw), with finer
 * rows where it is not rolled up yet and coarser ones where it is deleted; a
 * row is stamped at its end (bucket + its width). A cumulative or last-value
 * row wider than the lookback is also sampled every lookback after its end,
 * within its width, so instant selections between hourly rows find it.
 *
 * Consistency: query_source_begin() opens a read transaction (one WAL
 * snapshot) that every select until query_source_end() reads, so a query
 * never mixes two flushes.
 */
#ifndef TALLY_QUERY_SOURCE_H
#define TALLY_QUERY_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "config.h"
#include "event.h"
#include "promql.h"

typedef struct query_source query_source;

/* Does not open the database yet (the flusher may not have created it).
 * Returns NULL when out of memory. */
query_source *query_source_new(const tally_config *cfg);
void query_source_free(query_source *q);

/* Opens the database if needed and begins a read transaction. Returns 0, or
 * -1 with err filled (no database yet, cannot open). */
int query_source_begin(query_source *q, char *err, size_t errlen);
void query_source_end(query_source *q);

/* The evaluator's view (promql_source.select) of this source. A select with
 * step_ms < 0 (never the evaluator's) returns the matching series' labels
 * only, without samples: /api/v1/series, labels and label values. */
promql_source query_source_promql(query_source *q);

/* Since query_source_begin(): the StatsD types of the series selected (a
 * mask of 1 << metric_type: counter, gauge, distribution, set) and how many
 * series the selects returned (0: nothing matched, a negative answer). */
unsigned query_source_types_seen(const query_source *q);
size_t query_source_series_seen(const query_source *q);

/* GET /api/v1/metadata: appends {"PROM_NAME":[{"type":..,"help":..,"unit":""}],...}
 * for every Prometheus name (or only `metric` when not NULL): counter,
 * gauge, summary for a distribution, gauge for a set. Returns the number of names, or -1
 * with err filled. */
int query_source_metadata(query_source *q, const char *metric, struct evbuffer *out, char *err,
                          size_t errlen);

/* GET /v1/series/NAME: appends {"name","from","to","step","series":[...]} to
 * out: per tag series and type, one point per step window (t - step, t] with
 * t a multiple of step in [from, to]: a counter's sum, a gauge's last value,
 * a distribution's count, sum, min and max, a set's distinct members. Returns 1 when written, 0 when
 * no series of that name was ever flushed (404), -1 with err filled. */
int query_source_native(query_source *q, const char *name, int64_t from, int64_t to,
                        int64_t step, struct evbuffer *out, char *err, size_t errlen);

/* GET /v1/counters/NAME?source=sqlite (and while Redis is down): appends
 * the flushed totals of `name` (totals_json.h) for type `type`, with `stale` and `note`
 * as given (0: the first the name has of counter, distribution, gauge, set;
 * a set's value: its distinct members over all its buckets). Returns 1 when written, 0 when the name (of that type) was never
 * flushed, -1 with err filled. */
int query_source_totals(query_source *q, const char *name, metric_type type, int stale,
                        const char *note, struct evbuffer *out, char *err, size_t errlen);

#endif
