/*
 * flusher_metrics.c — see flusher_metrics.h.
 */
#include "flusher_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "version.h"

flusher_metrics *flusher_metrics_new(int partitions)
{
    flusher_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->lag = calloc((size_t)partitions, sizeof *m->lag);
    if (!m->lag) {
        free(m);
        return NULL;
    }
    m->partitions = partitions;
    for (int p = 0; p < partitions; p++)
        atomic_store(&m->lag[p].records, -1);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m->start_time = (double)ts.tv_sec + ts.tv_nsec / 1e9;
    return m;
}

void flusher_metrics_free(flusher_metrics *m)
{
    if (!m)
        return;
    free(m->lag);
    free(m);
}

#define GET(x) ((double)atomic_load_explicit(&(x), memory_order_relaxed))

/* One partition's sample; *present = 0 leaves it out. */
typedef double (*partition_value)(const flusher_partition_lag *l, int64_t now_ms, int *present);

static double lag_records(const flusher_partition_lag *l, int64_t now_ms, int *present)
{
    (void)now_ms;
    int64_t r = atomic_load(&l->records);
    *present = r >= 0;
    return (double)r;
}

static double lag_seconds(const flusher_partition_lag *l, int64_t now_ms, int *present)
{
    int64_t r = atomic_load(&l->records), at = atomic_load(&l->committed_ms);
    *present = r >= 0;
    return r == 0 || at <= 0 || now_ms < at ? 0 : (double)(now_ms - at) / 1000;
}

static double claim_epoch(const flusher_partition_lag *l, int64_t now_ms, int *present)
{
    (void)now_ms;
    int64_t e = atomic_load(&l->epoch);
    *present = e > 0;
    return (double)e;
}

static void render_per_partition(const flusher_metrics *m, int64_t now_ms, prom_text *t,
                                 const char *name, const char *help, partition_value value)
{
    prom_text_family(t, name, "gauge", help);
    for (int p = 0; p < m->partitions; p++) {
        int present;
        double v = value(&m->lag[p], now_ms, &present);
        char part[16];
        snprintf(part, sizeof part, "%d", p);
        const char *labels[] = {"partition", part, NULL};
        if (present)
            prom_text_sample(t, name, labels, v);
    }
}

static void render_lag(const flusher_metrics *m, int64_t now_ms, prom_text *t)
{
    render_per_partition(m, now_ms, t, "tally_flusher_lag_records",
                         "Records of the partition not yet committed to SQLite (Kafka's high "
                         "watermark minus the committed offset).", lag_records);
    render_per_partition(m, now_ms, t, "tally_flusher_lag_seconds",
                         "While records are not committed: the age of the partition's last "
                         "committed record (its Kafka timestamp); 0 when caught up.", lag_seconds);
    render_per_partition(m, now_ms, t, "tally_flusher_partition_epoch",
                         "The epoch this flusher claimed the partition at in SQLite "
                         "(partition_claims); only partitions it owns.", claim_epoch);
}

void flusher_metrics_render(const flusher_metrics *m, int64_t now_ms, prom_text *t)
{
    prom_text_family(t, "tally_flusher_build_info", "gauge", "tally-flusher's version (always 1).");
    const char *version[] = {"version", TALLY_VERSION, NULL};
    prom_text_sample(t, "tally_flusher_build_info", version, 1);
    prom_text_single(t, "tally_flusher_start_time_seconds", "gauge",
                     "When the process started, in Unix seconds.", m->start_time);
    prom_text_single(t, "tally_flusher_consuming", "gauge",
                     "1 once the flusher has joined its consumer group (partitions: tally_flusher_partition_epoch).", GET(m->consuming));
    prom_text_single(t, "tally_flusher_commits_total", "counter", "SQLite commits of a flush.",
                     GET(m->commits));
    prom_text_histogram(t, "tally_flusher_commit_duration_seconds",
                        "Time of one flush's SQLite transaction.", &m->commit_seconds);
    prom_text_single(t, "tally_flusher_events_committed_total", "counter",
                     "Events committed to SQLite.", GET(m->events_committed));
    prom_text_single(t, "tally_flusher_last_commit_events", "gauge",
                     "Events in the last commit.", GET(m->last_commit_events));
    prom_text_single(t, "tally_flusher_records_consumed_total", "counter",
                     "Kafka records consumed (applied, duplicate or rejected).",
                     GET(m->records_consumed));
    prom_text_single(t, "tally_flusher_records_rejected_total", "counter",
                     "Kafka records that could not be decoded (kept in rejected_records).",
                     GET(m->records_rejected));
    prom_text_single(t, "tally_flusher_batches_duplicate_total", "counter",
                     "Batches skipped as already committed (a client retry within the dedup "
                     "window).", GET(m->batches_duplicate));
    prom_text_single(t, "tally_flusher_kafka_errors_total", "counter",
                     "Kafka errors reported to the consumer (librdkafka retries them).",
                     GET(m->kafka_errors));
    prom_text_single(t, "tally_flusher_cache_invalidations_total", "counter",
                     "Cache version keys replaced after commits and retention steps.",
                     GET(m->cache_invalidations));
    prom_text_family(t, "tally_flusher_retention_steps_total", "counter",
                     "Retention steps committed, by kind.");
    const char *rollup[] = {"kind", "rollup", NULL}, *expire[] = {"kind", "expire", NULL};
    prom_text_sample(t, "tally_flusher_retention_steps_total", rollup, GET(m->retention_rollups));
    prom_text_sample(t, "tally_flusher_retention_steps_total", expire, GET(m->retention_expiries));
    prom_text_single(t, "tally_flusher_retention_rows_total", "counter",
                     "Rows written or deleted by retention steps.", GET(m->retention_rows));
    prom_text_single(t, "tally_flusher_retention_failures_total", "counter",
                     "Retention steps that failed (rolled back; retried).",
                     GET(m->retention_failures));
    prom_text_single(t, "tally_flusher_rebalances_total", "counter",
                     "Partition assignments received from the consumer group.",
                     GET(m->rebalances));
    prom_text_single(t, "tally_flusher_replaying", "gauge",
                     "1 from the start until the flusher first caught up with the topic.",
                     GET(m->replaying));
    prom_text_single(t, "tally_flusher_replay_total_records", "gauge",
                     "Records behind at the start (what the replay reads).", GET(m->replay_total));
    prom_text_single(t, "tally_flusher_replay_remaining_records", "gauge",
                     "Records of the replay still to commit (0 once caught up).",
                     GET(m->replay_remaining));
    render_lag(m, now_ms, t);
}
