/*
 * store.h — the SQLite source of truth, written only by tally-flusher.
 *
 * Exactly once (DESIGN.md rule 2): store_commit() writes the aggregates of a
 * flush, the batch ids it applied, the records it rejected and the next Kafka
 * offset of every partition it consumed in ONE transaction. On start the
 * flusher seeks to store_load_offsets(), so whatever instruction a crash hits,
 * either the whole flush is in the database and its messages are never read
 * again, or none of it is and they are read again.
 *
 * Schema: schema.h creates and upgrades it and holds every statement;
 * README.md "SQLite schema" documents it. What this store writes:
 *
 *   metrics(name, tags, type, bucket, lines, value, weight, min, max)
 *       One row per series and bucket (bucket = Unix seconds, a multiple of
 *       bucket_seconds). lines = events received. counter: value = sum of
 *       value/rate, weight = sum of 1/rate, min/max NULL. distribution: value =
 *       sum of value/rate, weight = sum of 1/rate (estimated count), min/max of
 *       the values. gauge: value = the gauge after the bucket's last op (in
 *       consume order), weight = lines, min/max of the gauge's values. A set
 *       has no metrics row.
 *   sketches(name, tags, type, bucket, data)
 *       One row per distribution row, in the same transaction: data = the
 *       DDSketch (ddsketch.h, alpha = 1%) of the bucket's values weighted
 *       1/rate; a later flush of the bucket merges into it (in SQL,
 *       tally_sketch_merge), so it is the sketch of every value the row
 *       counts. Rows written before schema version 4 have none: their
 *       buckets have no quantiles (a bucket straddling the upgrade gets a
 *       sketch of its later values, whose count is below the row's weight;
 *       schema.h). A set's bucket (type 'set'): data = the HyperLogLog
 *       (hll.h) of its members, merged likewise (register-wise max), so it is
 *       the HyperLogLog of every member the bucket was sent.
 *   series(name, tags, type, prom_name, first_bucket, last_bucket, total_value,
 *          total_weight)
 *       The catalog: every series, its bucket span and the sums of its rows'
 *       value (0 for a gauge and a set) and weight (a set's: its lines),
 *       updated in the same transaction.
 *   gauges(name, tags, value)
 *       The current value of every gauge (the base of relative ops "+v"/"-v").
 *   kafka_offsets(topic, partition, next_offset)
 *       Where the flusher resumes: the offset after the last message committed.
 *   partition_claims(topic, partition, epoch, owner, claimed_ms)
 *       Who owns a partition (store_claim): checked by every commit.
 *   batches(batch_id, log_ms, digest, topic, partition, offset)
 *       Batches applied (rule 3, dedup.h): id, Kafka timestamp of the record
 *       applied, body digest. Each commit deletes the ids older than
 *       dedup.window_seconds + DEDUP_SLACK_SECONDS before the newest batch of
 *       that commit (Kafka time: depends on the data only, never on a clock).
 *   rejected_records(topic, partition, offset, reason, payload)
 *       Records that could not be decoded, kept verbatim with the reason.
 *   rollup_metrics, rollup_sketches, rollup_state (schema.h, retention.h)
 *       The 1-minute and 1-hour resolutions. A flush's row whose window is
 *       rolled up already is added to each roll-up that holds its window, in
 *       the same transaction (so a roll-up is always its rows combined); a
 *       row before the raw horizon (rollup_state kept_from) is not kept raw.
 *   quarantined_rows(tbl, name, tags, type, bucket, reason)
 *       Rows a Tally before schema version 2 stored with a value that is not
 *       finite; moved there once by the upgrade.
 *
 * Not thread-safe: one store per thread.
 */
#ifndef TALLY_STORE_H
#define TALLY_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "aggregate.h"
#include "dedup.h"
#include "pending.h"
#include "retention.h"
#include "rollup.h"

#define STORE_BUSY_TIMEOUT_MS 5000
#define STORE_FENCED (-2)     /* store_commit: a partition was claimed by another flusher */
#define STORE_STALE_PLAN 2    /* store_retention_step: replan, another flusher stepped first */

typedef struct store store;

/* What one commit wrote. */
typedef struct store_commit_stats {
    size_t rows;        /* metrics rows upserted (none for a set) */
    size_t sketches;    /* sketches rows upserted (one per distribution or set row) */
    size_t gauges;      /* gauges rows upserted */
    size_t batches;     /* batch ids inserted */
    size_t rejected;    /* rejected records inserted */
    size_t partitions;  /* kafka_offsets rows upserted */
    long long pruned;   /* batch ids deleted from the dedup window */
} store_commit_stats;

/*
 * Opens (creating if needed) the database at `path` in WAL mode with
 * PRAGMA synchronous = `synchronous` (FULL, NORMAL or EXTRA) and a busy
 * timeout, creates the schema, and checks that it was created with the same
 * `bucket_seconds`. `dedup_window_seconds` (> 0) bounds the batches table.
 * Returns 0 and *out (caller owns: store_close), or -1 with err filled.
 */
int store_open(store **out, const char *path, const char *synchronous, int bucket_seconds,
               int dedup_window_seconds, char *err, size_t errlen);

/* Finalizes the statements and closes the database; NULL is a no-op. */
void store_close(store *s);

/*
 * Fills next[0..partitions-1] with the stored next offset of each partition
 * of `topic`, or -1 when none is stored. A stored partition >= `partitions`
 * is an error (the topic shrank: resuming would silently lose data).
 * Returns 0, or -1 with err filled.
 */
int store_load_offsets(store *s, const char *topic, int64_t *next, int partitions,
                       char *err, size_t errlen);

/*
 * Fencing (partition_claims): before consuming partitions, a flusher claims
 * them. In one transaction the epoch of each of parts[0..count-1] (each in
 * 0..partitions-1) is raised and owned by `owner`, and next[0..partitions-1]
 * is filled as store_load_offsets() does, so the claimant resumes exactly
 * where the last commit ended. The store remembers its epochs; store_commit()
 * refuses a flush with a message for a partition whose epoch moved on since
 * (STORE_FENCED), so a flusher that lost a partition can never commit for it.
 * Returns 0, or -1 with err filled (nothing claimed).
 */
int store_claim(store *s, const char *topic, const int *parts, int count, int partitions,
                const char *owner, int64_t *next, char *err, size_t errlen);

/* Forgets every claim (after Kafka revoked the partitions): a commit before
 * the next store_claim() is fenced. */
void store_release(store *s);

/* The epoch this store claimed `partition` at, 0 when it holds no claim. */
int64_t store_epoch(const store *s, int partition);

/* Returns 1 if the batch id is in the batches table (then *log_ms and
 * digest are its time and body digest, dedup.h), 0 if not, -1 with err filled. */
int store_batch_lookup(store *s, const char *id, size_t id_len, int64_t *log_ms,
                       char digest[DEDUP_DIGEST_TEXT], char *err, size_t errlen);

/*
 * Called inside store_commit() after every write and before COMMIT (tests
 * inject a crash there). NULL removes the hook.
 */
void store_set_before_commit_hook(store *s, void (*hook)(void *arg), void *arg);

/*
 * Writes one flush in a single transaction: BEGIN IMMEDIATE; upsert every
 * aggregate row (counters and distributions add; gauges take this flush's
 * value, relative rows resolved against the gauges table, base 0 for a new
 * gauge; no row for a set); upsert the sketch of every distribution and set
 * row (merged with the stored one: a corrupt stored sketch is an error naming
 * tally_sketch_merge and the row); upsert the series catalog and the final value of every gauge
 * series; insert the batch ids and rejected records; upsert the next offset
 * of every partition consumed; prune the dedup window; COMMIT. On any error
 * it rolls back and returns -1 with err filled; the database is then as
 * before the call and the caller must not retry with its in-memory state
 * (exit; the restart replays). First of all, inside the transaction, every
 * partition the flush consumed must still be claimed at this store's epoch
 * (store_claim): if not, nothing is written and it returns STORE_FENCED with
 * err naming the partition and its owner (drop the in-memory state).
 * Requires the aggregate to have been built with this store's bucket_seconds.
 * Does not clear `a` or `p`. Fills *stats (may be NULL) on success.
 */
int store_commit(store *s, const char *topic, const aggregate *a, const pending *p,
                 store_commit_stats *stats, char *err, size_t errlen);

/* ---- retention (retention.h) ---------------------------------------------------- */

/* The resolutions' state as committed, for retention_next(). */
const rollup_state *store_rollups(const store *s);

/* retention_rows.first_at over this store: the first bucket >= from that
 * `level` holds (INT64_MAX: none). 0, or -1 with err filled. */
int store_first_at(store *s, int level, int64_t from, int64_t *bucket, char *err,
                   size_t errlen);

/* Called inside store_retention_step() before COMMIT (tests inject a crash
 * there). NULL removes the hook. */
void store_set_retention_hook(store *s, void (*hook)(void *arg), void *arg);

/*
 * Runs one retention step in its own transaction: BEGIN IMMEDIATE; roll the
 * span up (rows and sketches) or delete it (rows and sketches; the coarsest
 * level's sets first fold into their all-time row); write rollup_state;
 * COMMIT. On error it rolls back (nothing changed) and returns -1 with err
 * filled. *changes (may be NULL): rows written or deleted. When rollup_state
 * in the database is no longer the one store_rollups() gave (another flusher
 * on the same file stepped first), it changes nothing, reloads the state and
 * returns STORE_STALE_PLAN: plan again.
 */
int store_retention_step(store *s, const retention_step *step, long long *changes, char *err,
                         size_t errlen);

#endif
