/*
 * main.c — tally-flusher: drains the Kafka topic into SQLite, exactly once.
 *
 * Wiring only: config -> store (SQLite) -> consumer in its group; each
 * assignment is claimed in SQLite (store_claim: fencing) and starts at the
 * offsets stored there; each revoke commits first -> loop { poll; decode
 * (record); dedup (pending + store);
 * aggregate } -> store_commit when the pending flush holds
 * flusher.max_batch_events events, is flusher.max_interval_ms old, or the
 * consumer has caught up with the topic (a poll found nothing new). While
 * idle (a poll found nothing), retention (retention.h) runs its due steps,
 * each its own transaction, for a bounded time.
 *
 * Every consumed message, applied, skipped as a duplicate or rejected,
 * advances its partition's next offset in the pending flush, and the commit
 * writes those offsets with the data. Any error that could leave memory and
 * SQLite disagreeing ends the process with a non-zero status: the restart
 * resumes from the stored offsets, which is the replay path that is tested,
 * instead of a recovery path that is not.
 *
 * Crash injection (tests prove replay is exact with it): with
 * TALLY_FLUSHER_CRASH_AT = after_consume | mid_aggregate | before_commit |
 * after_commit | mid_retention (inside a retention step, before its COMMIT) the process raise(SIGKILL)s the Nth time it passes that point,
 * N = TALLY_FLUSHER_CRASH_COUNT (default 1).
 */
#include <getopt.h>
#include <inttypes.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aggregate.h"
#include "cache_invalidate.h"
#include "clock.h"
#include "config.h"
#include "consumer.h"
#include "flusher_metrics.h"
#include "log.h"
#include "metrics_http.h"
#include "service.h"
#include "pending.h"
#include "rebuild.h"
#include "record.h"
#include "retention.h"
#include "store.h"

#define POLL_TIMEOUT_MS 100
#define RETENTION_CHECK_MS 10000   /* how often an idle flusher looks for retention steps */
#define RETENTION_BUDGET_MS 250    /* then it goes back to consuming */
/* Rejected payloads are kept in memory until the commit: flush early past this. */
#define REJECT_BYTES_MAX (64u * 1024u * 1024u)

/* ---- crash injection ----------------------------------------------------------- */

enum crash_point { CRASH_AFTER_CONSUME, CRASH_MID_AGGREGATE, CRASH_BEFORE_COMMIT, CRASH_AFTER_COMMIT,
                   CRASH_MID_RETENTION, CRASH_NONE };
static const char *const crash_names[] = {"after_consume", "mid_aggregate", "before_commit", "after_commit",
                                          "mid_retention"};
static enum crash_point crash_at = CRASH_NONE;
static long crash_count = 1, crash_seen;

static int crash_init(char *err, size_t errlen)
{
    const char *at = getenv("TALLY_FLUSHER_CRASH_AT");
    if (!at || !*at)
        return 0;
    for (int i = 0; i < CRASH_NONE; i++)
        if (strcmp(at, crash_names[i]) == 0)
            crash_at = (enum crash_point)i;
    if (crash_at == CRASH_NONE) {
        snprintf(err, errlen, "TALLY_FLUSHER_CRASH_AT=%s is not after_consume, mid_aggregate,"
                 " before_commit, after_commit or mid_retention", at);
        return -1;
    }
    const char *n = getenv("TALLY_FLUSHER_CRASH_COUNT");
    if (n && *n) {
        char *end;
        crash_count = strtol(n, &end, 10);
        if (*end || crash_count < 1) {
            snprintf(err, errlen, "TALLY_FLUSHER_CRASH_COUNT=%s is not a positive integer", n);
            return -1;
        }
    }
    log_warn("crash injection armed: SIGKILL at pass %ld of %s", crash_count, at);
    return 0;
}

static void crash_point(enum crash_point p)
{
    if (crash_at == p && ++crash_seen == crash_count)
        raise(SIGKILL);
}

static void crash_before_commit(void *arg)
{
    (void)arg;
    crash_point(CRASH_BEFORE_COMMIT);
}

static void crash_mid_retention(void *arg)
{
    (void)arg;
    crash_point(CRASH_MID_RETENTION);
}

/* ---- state ------------------------------------------------------------------------ */

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t reopen_requested;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        reopen_requested = 1;
    else
        stop_requested = 1;
}

/* Between two polls: the watchdog, and SIGHUP's log reopen. */
static void service_chores(void)
{
    service_watchdog_tick();
    if (!reopen_requested)
        return;
    reopen_requested = 0;
    log_reopen();
}

typedef struct flusher {
    const tally_config *cfg;
    store *st;
    consumer *cons;
    aggregate *agg;
    pending *pend;
    cache_invalidator *cache; /* NULL: cache.enabled is false */
    int partitions;
    int64_t *position;        /* next offset expected per partition (-1: unknown) */
    long long first_ms;       /* monotonic time of the pending flush's first message */
    long long retention_ms;   /* monotonic time of the next retention check */
    flusher_metrics *metrics;
    int64_t *committed;       /* per partition: next offset committed to SQLite (-1: none) */
    int64_t *seen_ms;         /* per partition: Kafka timestamp of the last record consumed */
    char owner[256];          /* this flusher's group member id, written into its claims */
    int failed;               /* a rebalance callback hit an error: stop (failure says why) */
    char failure[512];
    long long lag_ms;         /* monotonic time of the next lag update */
} flusher;

/* Whether the partition is this flusher's: assigned by Kafka and claimed in
 * SQLite (the store holds its epoch until the revoke releases it). */
static int owns(const flusher *f, int partition)
{
    return store_epoch(f->st, partition) > 0;
}

/* ---- metrics (flusher_metrics.h) ---------------------------------------------------- */

#define BUMP(field, n) atomic_fetch_add_explicit(&f->metrics->field, (n), memory_order_relaxed)

/* After a commit: the counters, and what each partition has committed. */
static void note_commit(flusher *f, const struct timespec *c0, const struct timespec *c1)
{
    flusher_metrics *m = f->metrics;
    uint64_t events = aggregate_events(f->agg);
    BUMP(commits, 1);
    BUMP(events_committed, events);
    atomic_store(&m->last_commit_events, events);
    BUMP(batches_duplicate, pending_skipped(f->pend));
    BUMP(records_rejected, pending_reject_count(f->pend));
    atomic_store(&m->cache_invalidations, cache_invalidations(f->cache));
    prom_hist_observe(&m->commit_seconds,
                      (double)(c1->tv_sec - c0->tv_sec) + (double)(c1->tv_nsec - c0->tv_nsec) / 1e9);
    for (int p = 0; p < f->partitions; p++) {
        int64_t next = pending_next_offset(f->pend, p);
        if (next < 0)
            continue;
        f->committed[p] = next;
        atomic_store(&m->lag[p].committed_ms, f->seen_ms[p]);
    }
}

/* At most once a second: each partition's lag from Kafka's cached high
 * watermark, and the replay's progress (it ends when the flusher first
 * catches up: caught_up). */
static void note_lag(flusher *f, int caught_up)
{
    long long now = clock_mono_ms();
    if (now < f->lag_ms && !caught_up)
        return;
    f->lag_ms = now + 1000;
    int64_t behind = 0;
    for (int p = 0; p < f->partitions; p++) {
        int64_t high;
        if (!owns(f, p) || consumer_cached_high(f->cons, p, &high) != 0)
            continue;
        int64_t from = f->committed[p] < 0 ? 0 : f->committed[p];
        int64_t lag = high > from ? high - from : 0;
        atomic_store(&f->metrics->lag[p].records, lag);
        behind += lag;
    }
    if (caught_up && pending_messages(f->pend) == 0)
        atomic_store(&f->metrics->replaying, 0);
    atomic_store(&f->metrics->replay_remaining,
                 atomic_load(&f->metrics->replaying) ? behind : 0);
}

/* Once given partitions: what the replay from their SQLite offsets has to read. */
static void note_replay_start(flusher *f)
{
    int64_t total = 0;
    for (int p = 0; p < f->partitions; p++) {
        int64_t low = 0, high = 0;
        if (!owns(f, p))
            continue;
        char err[256];
        if (consumer_watermarks(f->cons, p, &low, &high, 5000, err, sizeof err) != 0) {
            log_warn("%s (replay progress unknown)", err);
            return;
        }
        int64_t from = f->committed[p] < low ? low : f->committed[p];
        total += high > from ? high - from : 0;
    }
    atomic_store(&f->metrics->replay_total, total);
    atomic_store(&f->metrics->replay_remaining, total);
    atomic_store(&f->metrics->replaying, total > 0);
    if (total > 0)
        log_info("replaying %" PRId64 " records from the SQLite offsets", total);
}

static void render_metrics(void *ctx, prom_text *page)
{
    const flusher *f = ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    flusher_metrics_render(f->metrics, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, page);
}

/* Commits the pending flush and clears it. */
static int flush(flusher *f, char *err, size_t errlen)
{
    struct timespec c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &c0);
    store_commit_stats stats;
    int rc = store_commit(f->st, f->cfg->kafka.topic, f->agg, f->pend, &stats, err, errlen);
    if (rc != 0)
        return rc; /* -1, or STORE_FENCED */
    crash_point(CRASH_AFTER_COMMIT);
    cache_invalidate(f->cache, f->agg); /* (after the commit: source first) */
    clock_gettime(CLOCK_MONOTONIC, &c1);
    note_commit(f, &c0, &c1);

    char offsets[512];
    size_t used = 0;
    offsets[0] = '\0';
    for (int p = 0; p < f->partitions; p++) {
        int64_t next = pending_next_offset(f->pend, p);
        if (next < 0)
            continue;
        int n = snprintf(offsets + used, sizeof offsets - used, "%s%d:%" PRId64, used ? "," : "", p, next);
        if (n < 0 || (size_t)n >= sizeof offsets - used) {
            snprintf(offsets + sizeof offsets - 4, 4, "...");
            break;
        }
        used += (size_t)n;
    }
    double ms = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
    log_info("commit: events=%zu rows=%zu sketches=%zu gauges=%zu batches=%zu skipped_duplicates=%zu"
             " rejected=%zu messages=%zu pruned=%lld offsets=%s duration_ms=%.1f"
             " cache_invalidations=%llu",
             aggregate_events(f->agg), stats.rows, stats.sketches, stats.gauges, stats.batches,
             pending_skipped(f->pend), stats.rejected, pending_messages(f->pend), stats.pruned,
             offsets, ms, (unsigned long long)cache_invalidations(f->cache));
    aggregate_clear(f->agg);
    pending_clear(f->pend);
    return 0;
}

/* Whether the record is a retry of a batch applied before (dedup.h): in this
 * flush (*in_flush set) or in SQLite. Returns 1 (a retry: skip it), 0 (apply
 * it), -1 (err filled). A retry with another body is logged: ingest answered
 * it 409 if Redis was there to tell, and it never counts. */
static int is_retry(flusher *f, const record_reader *r, const rd_kafka_message_t *m,
                    const char *digest, int64_t log_ms, const pending_batch **in_flush,
                    int *known, char *err, size_t errlen)
{
    int64_t first_ms = 0;
    char first_digest[DEDUP_DIGEST_TEXT];
    *in_flush = pending_find_batch(f->pend, r->batch_id, r->batch_id_len);
    *known = *in_flush != NULL;
    if (*in_flush) {
        first_ms = (*in_flush)->log_ms;
        snprintf(first_digest, sizeof first_digest, "%s", (*in_flush)->digest);
    } else {
        *known = store_batch_lookup(f->st, r->batch_id, r->batch_id_len, &first_ms, first_digest,
                                    err, errlen);
        if (*known < 0)
            return -1;
    }
    if (!*known || !dedup_is_retry(first_ms, log_ms, f->cfg->dedup.window_seconds))
        return 0;
    pending_note_skipped(f->pend);
    if (!dedup_same_body(first_digest, digest))
        log_warn("batch %.*s at partition %d offset %" PRId64 " reuses its key for a different "
                 "body within the dedup window: skipped, the first body counts",
                 (int)r->batch_id_len, r->batch_id, (int)m->partition, (int64_t)m->offset);
    else
        log_debug("duplicate batch %.*s at partition %d offset %" PRId64 " skipped",
                  (int)r->batch_id_len, r->batch_id, (int)m->partition, (int64_t)m->offset);
    return 1;
}

/* Applies one validated record: dedup, then every event. */
static int apply_record(flusher *f, record_reader *r, const rd_kafka_message_t *m,
                        char *err, size_t errlen)
{
    char digest[DEDUP_DIGEST_TEXT];
    int64_t log_ms;
    consumer_batch_identity(m, digest, &log_ms);
    const pending_batch *in_flush;
    int known;
    int retry = is_retry(f, r, m, digest, log_ms, &in_flush, &known, err, errlen);
    if (retry != 0)
        return retry < 0 ? -1 : 0;
    metric_event ev;
    uint32_t half = r->count / 2;
    for (uint32_t i = 0; record_next(r, &ev); i++) {
        if (i == half)
            crash_point(CRASH_MID_AGGREGATE);
        if (aggregate_add(f->agg, &ev, err, errlen) < 0)
            return -1;
    }
    if (in_flush) { /* counted again, past the window */
        pending_renew_batch(f->pend, in_flush, log_ms, digest, (int32_t)m->partition,
                            (int64_t)m->offset);
        return 0;
    }
    return pending_add_batch(f->pend, r->batch_id, r->batch_id_len, log_ms, digest,
                             (int32_t)m->partition, (int64_t)m->offset, err, errlen);
}

/* Handles one polled message or event. Returns 0, or -1 (fatal, err filled). */
static int handle_message(flusher *f, const rd_kafka_message_t *m, char *err, size_t errlen)
{
    if (m->err) {
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            return 0;
        if (m->err == RD_KAFKA_RESP_ERR__FATAL || m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
            snprintf(err, errlen, "kafka: partition %d: %s (stored offsets are in SQLite table"
                     " kafka_offsets)", (int)m->partition, rd_kafka_message_errstr(m));
            return -1;
        }
        log_warn("kafka: %s (librdkafka retries)", rd_kafka_message_errstr(m));
        BUMP(kafka_errors, 1);
        return 0;
    }
    crash_point(CRASH_AFTER_CONSUME);
    int32_t part = m->partition;
    int64_t off = m->offset;
    if (part < 0 || part >= f->partitions) {
        snprintf(err, errlen, "kafka: message from partition %d, beyond the topic's %d", (int)part,
                 f->partitions);
        return -1;
    }
    if (!owns(f, part)) {
        log_warn("kafka: message from partition %d, which this flusher does not own: ignored",
                 (int)part);
        return 0;
    }
    if (off < f->position[part]) {
        log_warn("kafka: partition %d offset %" PRId64 " delivered again (expected >= %" PRId64 "), ignored",
                 (int)part, off, f->position[part]);
        return 0;
    }
    if (pending_messages(f->pend) == 0)
        f->first_ms = clock_mono_ms();

    record_reader r;
    char why[256];
    int rc;
    if (!m->payload || m->len == 0) {
        snprintf(why, sizeof why, "empty message");
        rc = -1;
    } else {
        rc = record_open(&r, m->payload, m->len, why, sizeof why);
    }
    if (rc < 0) {
        log_warn("rejected record at partition %d offset %" PRId64 ": %s (kept in rejected_records)",
                 (int)part, off, why);
        if (pending_add_reject(f->pend, part, off, why, m->payload, m->payload ? m->len : 0, err, errlen) < 0)
            return -1;
    } else {
        int applied = apply_record(f, &r, m, err, errlen);
        record_close(&r);
        if (applied < 0)
            return -1;
    }
    pending_note_offset(f->pend, part, off);
    f->position[part] = off + 1;
    f->seen_ms[part] = rd_kafka_message_timestamp(m, NULL);
    BUMP(records_consumed, 1);
    return 0;
}

static int flush_due(const flusher *f)
{
    const pending *p = f->pend;
    if (pending_messages(p) == 0)
        return 0;
    size_t work = aggregate_events(f->agg) + pending_skipped(p) + pending_reject_count(p);
    return work >= (size_t)f->cfg->flusher.max_batch_events || pending_reject_bytes(p) >= REJECT_BYTES_MAX ||
           clock_mono_ms() - f->first_ms >= f->cfg->flusher.max_interval_ms;
}

/* ---- retention ------------------------------------------------------------------- */

static int rows_first_at(void *ctx, int level, int64_t from, int64_t *bucket, char *err,
                         size_t errlen)
{
    return store_first_at(ctx, level, from, bucket, err, errlen);
}

static void log_step(const retention_step *s, long long changes)
{
    static const char *const names[] = {"raw", "1 min", "1 h"};
    log_info("retention: %s %s buckets [%" PRId64 ", %" PRId64 ") (%lld rows)",
             s->kind == RETENTION_ROLLUP ? "rolled up to" : "deleted", names[s->level], s->lo,
             s->hi, changes);
}

/* When caught up, at most every RETENTION_CHECK_MS: the retention steps due,
 * for at most RETENTION_BUDGET_MS (then back to consuming; the rest waits
 * for the next check). A failed step is logged and retried at the next
 * check: retention never stops the flusher, and a step is all or nothing. */
static void retention_tick(flusher *f)
{
    long long start = clock_mono_ms();
    if (!f->cfg->retention.enabled || start < f->retention_ms)
        return;
    f->retention_ms = start + RETENTION_CHECK_MS;
    retention_rows rows = {rows_first_at, f->st};
    retention_step step;
    char err[512];
    int rc, steps = 0;
    while (!stop_requested && clock_mono_ms() - start < RETENTION_BUDGET_MS &&
           (rc = retention_next(store_rollups(f->st), f->cfg, (int64_t)time(NULL), &rows, &step,
                                err, sizeof err)) == 1) {
        long long changes = 0;
        int done = store_retention_step(f->st, &step, &changes, err, sizeof err);
        if (done == STORE_STALE_PLAN)
            continue; /* another flusher on this file stepped first: plan again */
        if (done != 0) {
            BUMP(retention_failures, 1);
            rc = -1;
            break;
        }
        steps++;
        if (step.kind == RETENTION_ROLLUP)
            BUMP(retention_rollups, 1);
        else
            BUMP(retention_expiries, 1);
        BUMP(retention_rows, (uint64_t)(changes > 0 ? changes : 0));
        log_step(&step, changes);
    }
    if (rc < 0)
        log_error("retention: %s (retried in %d s)", err, RETENTION_CHECK_MS / 1000);
    else if (rc == 1)
        f->retention_ms = clock_mono_ms(); /* more is due: go on after the next poll */
    if (steps > 0) {
        cache_invalidate_all(f->cache);
        atomic_store(&f->metrics->cache_invalidations, cache_invalidations(f->cache));
    }
}

/* ---- rebalances (consumer.h: called from inside consumer_poll) -------------------- */

static void fail_in_callback(flusher *f, const char *why)
{
    f->failed = 1;
    snprintf(f->failure, sizeof f->failure, "%s", why);
}

/* Kafka gives these partitions: claim them in SQLite (fencing every earlier
 * owner) and start each at its stored offset. */
static int on_assign(void *ctx, const int *parts, int count, int64_t *next)
{
    flusher *f = ctx;
    char err[512];
    if (f->failed)
        return -1;
    if (store_claim(f->st, f->cfg->kafka.topic, parts, count, f->partitions, f->owner, next, err,
                    sizeof err) < 0) {
        fail_in_callback(f, err);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        int p = parts[i];
        f->position[p] = f->committed[p] = next[p];
        atomic_store(&f->metrics->lag[p].epoch, store_epoch(f->st, p));
        log_info("partition %d: claimed at epoch %" PRId64 ", resuming at %s%" PRId64, p,
                 store_epoch(f->st, p), next[p] < 0 ? "beginning " : "offset ",
                 next[p] < 0 ? (int64_t)0 : next[p]);
    }
    if (count == 0)
        log_info("kafka: no partition assigned to %s (the group has more flushers than partitions)",
                 f->owner);
    BUMP(rebalances, 1);
    note_replay_start(f);
    return 0;
}

/* Kafka takes the partitions back (an eager rebalance takes all of them):
 * commit what is pending while they are still ours. A fenced commit means
 * another flusher claimed them first: what is pending is dropped, never
 * committed (that flusher reads it again from the stored offsets). */
static void on_revoke(void *ctx, const int *parts, int count)
{
    flusher *f = ctx;
    (void)parts;
    if (!f->failed && pending_messages(f->pend) > 0) {
        char err[512];
        int rc = flush(f, err, sizeof err);
        if (rc == STORE_FENCED)
            log_warn("%s", err);
        else if (rc < 0)
            fail_in_callback(f, err);
    }
    aggregate_clear(f->agg);
    pending_clear(f->pend);
    store_release(f->st);
    for (int p = 0; p < f->partitions; p++) {
        atomic_store(&f->metrics->lag[p].records, -1);
        atomic_store(&f->metrics->lag[p].epoch, 0);
    }
    log_info("kafka: %d partition%s revoked (rebalance)", count, count == 1 ? "" : "s");
}

static int run(flusher *f, char *err, size_t errlen)
{
    while (!stop_requested) {
        service_chores();
        int timeout = POLL_TIMEOUT_MS;
        if (pending_messages(f->pend) > 0) {
            long long left = f->first_ms + f->cfg->flusher.max_interval_ms - clock_mono_ms();
            timeout = left < 0 ? 0 : left < timeout ? (int)left : timeout;
        }
        rd_kafka_message_t *m = consumer_poll(f->cons, timeout);
        if (f->failed) {
            snprintf(err, errlen, "%s", f->failure);
            if (m)
                rd_kafka_message_destroy(m);
            return -1;
        }
        if (m) {
            int rc = handle_message(f, m, err, errlen);
            rd_kafka_message_destroy(m);
            if (rc < 0)
                return -1;
        }
        /* Nothing more to read right now (caught up): commit at once rather
         * than wait out max_interval_ms, so a replay ends with its last
         * events committed and a quiet stream is fresh in SQLite. */
        int caught_up = !m && pending_messages(f->pend) > 0;
        if ((caught_up || flush_due(f)) && flush(f, err, errlen) < 0)
            return -1;
        note_lag(f, !m);
        if (!m)
            retention_tick(f); /* idle: nothing to read right now */
    }
    service_stopping();
    log_info("stop requested: committing what is pending");
    if (pending_messages(f->pend) > 0 && flush(f, err, errlen) < 0)
        return -1;
    return 0;
}

/* SIGTERM and SIGINT set stop_requested, SIGHUP reopen_requested. Returns
 * 0, or -1 (logged). */
static int install_stop_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0) {
        log_error("sigaction failed");
        return -1;
    }
    return 0;
}

/* --rebuild-redis: the whole process is one rebuild. Exit 0 on success. */
static int run_rebuild(const tally_config *cfg)
{
    if (install_stop_handlers() != 0)
        return 1;
    rebuild_stats st;
    char err[1024];
    if (rebuild_redis(cfg, &stop_requested, &st, err, sizeof err) != 0) {
        log_error("rebuild failed: %s (the live view stays marked stale; run it again)", err);
        return 1;
    }
    printf("rebuild: ok in %.2f s%s: deleted %zu keys, wrote %zu series values and %zu dedup "
           "keys from SQLite, replayed %zu Kafka records (%zu batches applied, %zu already "
           "counted, %zu undecodable)\n",
           st.seconds, st.attempts > 1 ? " (run again: ingest marked the view stale meanwhile)" : "",
           st.keys_deleted, st.series_written, st.markers_written, st.records_replayed,
           st.batches_applied, st.batches_skipped, st.records_rejected);
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: tally-flusher [-c FILE] [--check-config] [--help-config] [--rebuild-redis]\n"
                 "  -c FILE          configuration file (default conf/tally.conf)\n"
                 "  --rebuild-redis  restore the Redis live view from SQLite + the Kafka tail\n"
                 "                   and exit (safe while tally-ingest and the flusher run)\n"
                 "  --check-config   validate the configuration and exit (0 = valid)\n"
                 "  --help-config    print every configuration key as a markdown table\n");
}

int main(int argc, char **argv)
{
    const char *path = "conf/tally.conf";
    int check_only = 0, rebuild_only = 0;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'k'},
        {"help-config", no_argument, NULL, 'r'},
        {"rebuild-redis", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'k': check_only = 1; break;
        case 'r': config_print_reference(stdout); return 0;
        case 'R': rebuild_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }

    static tally_config cfg;
    static char problems[16384];
    config_defaults(&cfg);
    int nproblems = config_load(path, &cfg, problems, sizeof problems);
    if (check_only) {
        if (nproblems) {
            fputs(problems, stderr);
            fprintf(stderr, "tally-flusher: %d configuration problem%s in %s\n", nproblems,
                    nproblems == 1 ? "" : "s", path);
            return 2;
        }
        printf("%s: configuration OK\n", path);
        return 0;
    }
    if (nproblems) {
        fputs(problems, stderr);
        return 2;
    }
    int level = log_level_parse(cfg.log.level);
    log_init("tally-flusher", level < 0 ? LOG_LEVEL_INFO : (log_level)level);
    if (log_open_file(cfg.log.file) != 0) {
        fprintf(stderr, "tally-flusher: log.file %s: %s\n", cfg.log.file, strerror(errno));
        return 2;
    }

    char err[1024];
    if (rebuild_only)
        return run_rebuild(&cfg);
    if (crash_init(err, sizeof err) < 0) {
        log_error("%s", err);
        return 2;
    }
    if (install_stop_handlers() != 0)
        return 1;

    flusher f = {.cfg = &cfg};
    metrics_http *http = NULL;
    int status = 1;
    if (store_open(&f.st, cfg.sqlite.path, cfg.sqlite.synchronous, cfg.flusher.bucket_seconds,
                   cfg.dedup.window_seconds, err, sizeof err) < 0)
        goto out;
    store_set_before_commit_hook(f.st, crash_before_commit, NULL);
    store_set_retention_hook(f.st, crash_mid_retention, NULL);
    consumer_events events = {on_assign, on_revoke, &f};
    if (consumer_instance_id(&cfg, f.owner, sizeof f.owner, err, sizeof err) < 0 ||
        consumer_open(&f.cons, &cfg, &events, &stop_requested, err, sizeof err) < 0)
        goto out;
    f.partitions = consumer_partitions(f.cons);
    f.position = malloc((size_t)f.partitions * sizeof *f.position);
    f.committed = malloc((size_t)f.partitions * sizeof *f.committed);
    f.seen_ms = calloc((size_t)f.partitions, sizeof *f.seen_ms);
    f.metrics = flusher_metrics_new(f.partitions);
    f.agg = aggregate_new(cfg.flusher.bucket_seconds);
    f.pend = pending_new(f.partitions);
    f.cache = cache_invalidator_new(&cfg);
    if (!f.position || !f.committed || !f.seen_ms || !f.metrics || !f.agg || !f.pend ||
        (cfg.cache.enabled && !f.cache)) {
        snprintf(err, sizeof err, "out of memory");
        goto out;
    }
    if (cfg.flusher.metrics_port > 0 &&
        !(http = metrics_http_start(cfg.flusher.metrics_address, cfg.flusher.metrics_port,
                                    render_metrics, &f, err, sizeof err)))
        goto out;
    for (int p = 0; p < f.partitions; p++)
        f.position[p] = f.committed[p] = -1;
    if (consumer_subscribe(f.cons, err, sizeof err) < 0)
        goto out;
    atomic_store(&f.metrics->consuming, 1);
    char group[CONFIG_STR_MAX + 32];
    config_consumer_group(&cfg, group, sizeof group);
    log_info("consuming %s (%d partitions) from %s into %s, in group %s as %s", cfg.kafka.topic,
             f.partitions, cfg.kafka.brokers, cfg.sqlite.path, group, f.owner);
    service_ready("consuming %s into %s", cfg.kafka.topic, cfg.sqlite.path);
    if (run(&f, err, sizeof err) < 0)
        goto out;
    status = 0;
out:
    if (status)
        log_error("%s", err);
    /* Leaving the group calls on_revoke once more: after a failure nothing
     * may be committed (the restart replays), and it needs f whole. */
    f.failed = f.failed || status != 0;
    consumer_close(f.cons);
    metrics_http_stop(http); /* (before what it renders is freed) */
    flusher_metrics_free(f.metrics);
    free(f.committed);
    free(f.seen_ms);
    pending_free(f.pend);
    aggregate_free(f.agg);
    cache_invalidator_free(f.cache);
    free(f.position);
    store_close(f.st);
    if (status == 0)
        log_info("stopped");
    return status;
}
