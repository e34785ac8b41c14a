/*
 * flusher_metrics.h — what tally-flusher counts, and its /metrics page
 * (Prometheus text, common/prom_text.h; README "Monitor with Prometheus").
 *
 * The main loop writes (relaxed atomics, no lock on the commit path); the
 * metrics listener thread (metrics_http.h) reads and renders. Lag is per
 * partition: records between the offset committed to SQLite and the high
 * watermark Kafka last reported, and the age of the last committed record's
 * Kafka timestamp while that lag is not zero; and, for the partitions this
 * flusher owns, the epoch it claimed them at.
 */
#ifndef TALLY_FLUSHER_METRICS_H
#define TALLY_FLUSHER_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "prom_text.h"

typedef struct flusher_partition_lag {
    _Atomic int64_t records;      /* -1: not known yet */
    _Atomic int64_t committed_ms; /* Kafka timestamp of the last record committed (0: none) */
    _Atomic int64_t epoch;        /* claimed at (store_claim); 0: not this flusher's */
} flusher_partition_lag;

typedef struct flusher_metrics {
    double start_time;                     /* Unix seconds */
    _Atomic int consuming;
    _Atomic uint64_t commits, events_committed, last_commit_events;
    _Atomic uint64_t records_consumed, records_rejected, batches_duplicate;
    _Atomic uint64_t kafka_errors, cache_invalidations, rebalances;
    _Atomic uint64_t retention_rollups, retention_expiries, retention_rows, retention_failures;
    _Atomic int replaying;
    _Atomic int64_t replay_total, replay_remaining;
    prom_hist commit_seconds;
    int partitions;
    flusher_partition_lag *lag;            /* [partitions] */
} flusher_metrics;

/* Zeroed counters for `partitions`; NULL when out of memory. */
flusher_metrics *flusher_metrics_new(int partitions);
void flusher_metrics_free(flusher_metrics *m);

/* The whole exposition of `m` at Unix time `now_ms` into t. */
void flusher_metrics_render(const flusher_metrics *m, int64_t now_ms, prom_text *t);

#endif
