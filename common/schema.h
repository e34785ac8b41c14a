/*
 * schema.h — the SQLite schema of Tally's source of truth, and every SQL
 * statement that reads or writes it. The one place that knows table and
 * column names: the flusher's store (writes), the Redis rebuild, the query
 * path and the drill (reads) all take their SQL from here.
 *
 * Tables (a public interface, documented in README.md "SQLite schema";
 * schema_version 6):
 *
 *   meta(key, value)          'schema_version', 'bucket_seconds'
 *   metrics(name, tags, type, bucket, lines, value, weight, min, max)
 *                             one row per series and bucket (store.h)
 *   gauges(name, tags, value) the current value of every gauge
 *   series(name, tags, type, prom_name, first_bucket, last_bucket,
 *          total_value, total_weight, min, max)  + INDEX series_prom_name(prom_name)
 *                             the catalog of every series ever flushed, with
 *                             its Prometheus name (prom_name.h) and its
 *                             running totals (sum of value and of weight over
 *                             all its rows, written in the same transaction
 *                             as the rows): a counter's cumulative value at
 *                             bucket b is total_value minus the rows after b,
 *                             so a read scans its range, never the history.
 *   sketches(name, tags, type, bucket, data)
 *                             a mergeable sketch per series and bucket, written
 *                             in the same transaction as its metrics row: for
 *                             a distribution row, data is a DDSketch (alpha =
 *                             1%, ddsketch.h's serialised form) of the row's
 *                             values weighted 1 / sample_rate; for a set
 *                             (type 'set'), data is the HyperLogLog (hll.h's
 *                             serialised form) of the bucket's members, and a
 *                             set has no metrics row at all (a set has no
 *                             value or weight to keep there): its sketches
 *                             rows and its series row (total_value 0,
 *                             total_weight = lines) are all of it. Rows from
 *                             before version 4 (a
 *                             version 3 database upgraded) have no sketch row:
 *                             quantiles are absent for those buckets. A bucket
 *                             flushed both before and after the upgrade gets
 *                             a sketch of its later values only; its count
 *                             (ddsketch_count) is then below the row's weight,
 *                             which is how a reader tells a partial sketch
 *                             (otherwise they are equal, up to rounding).
 *   kafka_offsets, batches, rejected_records, quarantined_rows (store.h)
 *   rollup_metrics(name, tags, type, width, bucket, last_bucket, lines, value,
 *                  weight, min, max)
 *   rollup_sketches(name, tags, type, width, bucket, data)
 *                             the coarser resolutions (width 60 and 3600 s,
 *                             rollup.h): a row is its window's raw rows
 *                             combined as a flush combines them (a gauge: the
 *                             value of the window's last row, last_bucket);
 *                             a set's width-0 row holds the registers of its
 *                             deleted buckets
 *   rollup_state(width, rolled_until, kept_from)
 *                             per resolution (0 = raw): windows before
 *                             rolled_until are rolled up to it, rows before
 *                             kept_from are deleted
 *   partition_claims(topic, partition, epoch, owner, claimed_ms)
 *                             which flusher owns a partition (store.h
 *                             store_claim): each claim raises the epoch, and
 *                             a commit for a partition whose epoch moved on
 *                             is refused (fencing)
 *
 * Upgrades run inside the writer's schema transaction: 1 -> 2 quarantines
 * non-finite rows, 2 -> 3 times the dedup window by Kafka timestamps, 3 -> 4
 * builds the series catalog from the rows and adds the (empty) sketches table,
 * 4 -> 5 adds the (empty) roll-up tables, 5 -> 6 the (empty) partition_claims.
 */
#ifndef TALLY_SCHEMA_H
#define TALLY_SCHEMA_H

#include <stddef.h>

#include <sqlite3.h>

#define SCHEMA_VERSION 6

/*
 * Creates the schema (IF NOT EXISTS), upgrades an older one, and records or
 * checks bucket_seconds, in one transaction on `db` (open read-write; `path`
 * names it in messages). Registers on `db` the SQL functions
 * tally_prom_name(name) and tally_sketch_merge(type, a, b): the encoding of
 * the merge of the sketch blobs a and b, or an SQL error naming
 * tally_sketch_merge and the argument when a blob is corrupt or the type has
 * no sketch (the statement, hence the commit, fails). Returns 0, or -1 with
 * err filled and nothing changed.
 */
int schema_init_writer(sqlite3 *db, const char *path, int bucket_seconds, char *err,
                       size_t errlen);

/* ---- writes (tally-flusher's store) ---------------------------------------- */

/* ?1 name ?2 tags ?3 type ?4 bucket ?5 lines ?6 value ?7 weight ?8 min ?9 max:
 * counters and distributions add, a gauge takes the new value, min/max combine. */
extern const char SCHEMA_METRIC_UPSERT[];
/* ?1 name ?2 tags ?3 type ?4 prom_name ?5 first bucket ?6 last bucket ?7 value
 * ?8 weight (this flush's sums) ?9 min ?10 max (NULL for a counter): adds to
 * the totals, widens the bucket span and the range. */
extern const char SCHEMA_SERIES_UPSERT[];
/* ?1 name ?2 tags ?3 type ?4 bucket ?5 data (this flush's sketch of the row):
 * a new row takes it, an existing one becomes tally_sketch_merge(type, data,
 * ?5) (a DDSketch for 'distribution', a HyperLogLog for 'set'). Needs a
 * connection set up by schema_init_writer(). */
extern const char SCHEMA_SKETCH_UPSERT[];
extern const char SCHEMA_GAUGE_GET[];      /* ?1 name ?2 tags -> value */
extern const char SCHEMA_GAUGE_PUT[];      /* ?1 name ?2 tags ?3 value */
extern const char SCHEMA_BATCH_INSERT[];   /* ?1 id ?2 log_ms ?3 digest ?4 topic ?5 partition ?6 offset */
extern const char SCHEMA_BATCH_GET[];      /* ?1 id -> log_ms, digest */
extern const char SCHEMA_REJECT_INSERT[];  /* ?1 topic ?2 partition ?3 offset ?4 reason ?5 payload */
extern const char SCHEMA_OFFSET_PUT[];     /* ?1 topic ?2 partition ?3 next_offset */
extern const char SCHEMA_OFFSETS_GET[];    /* ?1 topic -> partition, next_offset */
/* ?1 topic ?2 partition ?3 owner ?4 claimed_ms -> the new epoch (1, or the
 * stored one + 1): every claim fences the claims before it. */
extern const char SCHEMA_CLAIM_PUT[];
extern const char SCHEMA_CLAIM_GET[];      /* ?1 topic ?2 partition -> epoch, owner */
extern const char SCHEMA_BATCH_PRUNE[];    /* ?1 horizon (log_ms) */

/* ---- reads ------------------------------------------------------------------- */

/* Totals per series for the Redis rebuild (no parameters):
 * counters -> name, tags, total; distributions -> name, tags, count, sum, min, max;
 * gauges -> name, tags, value; batches -> batch_id, log_ms, digest. */
extern const char SCHEMA_REBUILD_COUNTERS[];
extern const char SCHEMA_REBUILD_DISTRIBUTIONS[];
extern const char SCHEMA_REBUILD_GAUGES[];
/* Every set bucket, series after series (name, tags, bucket order) ->
 * name, tags, bucket, data (an hll): the rebuild merges each series' rows. */
extern const char SCHEMA_REBUILD_SETS[];
extern const char SCHEMA_REBUILD_BATCHES[];

/* ?1 LIKE pattern -> name, total of every counter matching it (the drill). */
extern const char SCHEMA_COUNTER_TOTALS_LIKE[];

/* The catalog: the series of two Prometheus names (?1, ?2), and every
 * series (no parameter), each -> prom_name, name, tags, type, total_value,
 * total_weight, sorted by name, tags, type. */
extern const char SCHEMA_SERIES_BY_PROM_NAME[];
extern const char SCHEMA_SERIES_ALL[];
/* ?1 name -> tags, type, total_value, total_weight (sorted by tags, type). */
extern const char SCHEMA_SERIES_BY_NAME[];
/* ?1 name -> tags, type, total_value, total_weight, min, max, gauge value
 * (the gauges table's, NULL for other types), sorted by type, tags: the
 * flushed totals of GET /v1/counters/NAME?source=sqlite. */
extern const char SCHEMA_TOTALS_BY_NAME[];
/* ?1 name ?2 tags ?3 type ?4 first bucket -> bucket, value, weight, min, max
 * of every row from that bucket on, in bucket order. */
extern const char SCHEMA_ROWS_FROM[];
/* ?1 name ?2 tags ?3 type ?4 first bucket -> bucket, data of every sketch from
 * that bucket on, in bucket order (decode each into one sketch to merge them;
 * a bucket with a metrics row but no sketch row predates the sketches). */
extern const char SCHEMA_SKETCHES_FROM[];

/* A series' rows (sketches) over the resolutions of a read (rollup.h):
 * ?1 name ?2 tags ?3 type ?4 the earliest bucket END wanted; raw rows of
 * width ?5 in the span [?6, ?7); roll-up rows of width ?8 in [?9, ?10) and of
 * width ?11 in [?12, ?13) -> bucket end, value, weight, min, max, width (rows)
 * or bucket end, data, width (sketches), in order of bucket end. */
extern const char SCHEMA_ROWS_SPANS[];
extern const char SCHEMA_SKETCHES_SPANS[];
/* ?1 name ?2 tags -> data of every hll of a set at every resolution (their
 * union is the set's distinct members over all time). */
extern const char SCHEMA_SET_SKETCHES_ALL[];

/* ---- retention (rollup.h; the flusher) ---------------------------------------- */

extern const char SCHEMA_ROLLUP_STATE_GET[]; /* -> width, rolled_until, kept_from */
extern const char SCHEMA_ROLLUP_STATE_PUT[]; /* ?1 width ?2 rolled_until ?3 kept_from */
/* ?1 from [?2 width] -> the first bucket >= ?1 of any raw row (roll-up row of
 * width ?2), NULL when none. */
extern const char SCHEMA_FIRST_RAW_BUCKET[];
extern const char SCHEMA_FIRST_ROLLUP_BUCKET[];
/* ?1 width ?2 from ?3 to (buckets [?2, ?3), multiples of ?1) [?4 the source
 * width, for a roll-up source]: insert the roll-ups of width ?1 of the rows
 * (sketches) there, from the raw tables or from the roll-ups of width ?4. */
extern const char SCHEMA_ROLLUP_RAW_ROWS[];
extern const char SCHEMA_ROLLUP_RAW_SKETCHES[];
extern const char SCHEMA_ROLLUP_ROWS[];
extern const char SCHEMA_ROLLUP_SKETCHES[];
/* ?1 name ?2 tags ?3 type ?4 width ?5 raw bucket ?6 lines ?7 value ?8 weight
 * ?9 min ?10 max: a late row added into its roll-up of width ?4. */
extern const char SCHEMA_ROLLUP_ROW_UPSERT[];
/* ?1 name ?2 tags ?3 type ?4 width ?5 raw bucket ?6 data: likewise a sketch. */
extern const char SCHEMA_ROLLUP_SKETCH_UPSERT[];
/* ?2 from ?3 to [?4 width]: delete the rows of [?2, ?3). */
extern const char SCHEMA_EXPIRE_RAW_ROWS[];
extern const char SCHEMA_EXPIRE_RAW_SKETCHES[];
extern const char SCHEMA_EXPIRE_ROWS[];
extern const char SCHEMA_EXPIRE_SKETCHES[];
/* ?2 from ?3 to [?4 width]: merge the set hlls of [?2, ?3) into each set's
 * all-time row (rollup_sketches width 0, bucket 0). */
extern const char SCHEMA_FOLD_RAW_SETS[];
extern const char SCHEMA_FOLD_SETS[];

#endif
