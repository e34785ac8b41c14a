/*
 * store.c — SQLite persistence of flushes (see store.h for the schema and the
 * exactly-once argument).
 *
 * Every statement is prepared once in store_open() and reset after each use;
 * a commit is a handful of bound steps per row inside one BEGIN IMMEDIATE
 * transaction, which is what makes large flushes cheap (DESIGN.md measures
 * ~435k upserts/s at 100k rows per transaction). The metrics upsert combines
 * with what earlier flushes wrote: lines/value/weight add for counters and
 * distributions, a gauge's value is replaced (this flush is later in consume
 * order), min/max combine ignoring NULLs.
 *
 * Sketches: after the metrics rows, every distribution row's sketch
 * (ddsketch.h) and every set row's HyperLogLog (hll.h; a set has no metrics
 * row) is encoded and upserted into sketches; a bucket seen by an earlier
 * flush is merged by SQLite itself (tally_sketch_merge, schema.c), inside the
 * same transaction, so a sketch is exactly once exactly when its row is, and
 * a corrupt stored sketch fails the commit instead of being overwritten.
 *
 * Gauges: rows that the aggregate marks relative are resolved here, because
 * only the store knows the value before the flush. Bases are read inside the
 * transaction, before the gauges table is rewritten, so the resolution and
 * the write-back are atomic with everything else.
 *
 * Errors roll back and are returned with sqlite3_errmsg(); nothing is retried
 * here: retrying would re-apply an in-memory state the caller can no longer
 * vouch for, whereas restarting replays from the stored offsets.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <sqlite3.h>

#include "config.h"
#include "prom_name.h"
#include "retention.h"
#include "rollup.h"
#include "schema.h"

/* What one flush adds to a series' catalog row. */
typedef struct series_span {
    int64_t first, last;  /* buckets */
    double value, weight;
    double min, max;      /* valid when has_range */
    int has_range;
} series_span;

struct store {
    sqlite3 *db;
    char path[CONFIG_PATH_MAX];
    int bucket_seconds;
    int64_t dedup_window_ms;
    void (*hook)(void *);
    void *hook_arg;

    double *bases;          /* per aggregate series: stored gauge value (commit scratch) */
    size_t bases_cap;
    series_span *spans;     /* per aggregate series: this flush's sums (commit scratch) */
    size_t spans_cap;

    sqlite3_stmt *metric_upsert;
    sqlite3_stmt *series_upsert;
    sqlite3_stmt *sketch_upsert;
    sqlite3_stmt *gauge_get;
    sqlite3_stmt *gauge_put;
    sqlite3_stmt *batch_insert;
    sqlite3_stmt *batch_seen;
    sqlite3_stmt *reject_insert;
    sqlite3_stmt *offset_put;
    sqlite3_stmt *offsets_get;
    sqlite3_stmt *prune;
    sqlite3_stmt *claim_put, *claim_get, *state_get;

    int64_t *epochs;           /* per partition: the epoch this store claimed (0: not claimed) */
    int claim_partitions;      /* entries in epochs */

    rollup_state rollups;      /* as in rollup_state, after the last commit */
    void (*retention_hook)(void *);
    void *retention_hook_arg;
    sqlite3_stmt *rollup_row_upsert;
    sqlite3_stmt *rollup_sketch_upsert;
    sqlite3_stmt *state_put;
    sqlite3_stmt *first_raw, *first_rollup;
    /* retention steps: [kind][source is raw] */
    sqlite3_stmt *rollup_rows[2], *rollup_sketches[2];
    sqlite3_stmt *expire_rows[2], *expire_sketches[2], *fold_sets[2];
};

static void set_err(char *err, size_t errlen, const char *what, sqlite3 *db)
{
    snprintf(err, errlen, "sqlite: %s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

static int exec(store *s, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s: %s", what, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int prepare(store *s, sqlite3_stmt **st, const char *sql, char *err, size_t errlen)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: prepare \"%.60s...\": %s", sql, sqlite3_errmsg(s->db));
        return -1;
    }
    return 0;
}

/* The database holds every client's data: its directory is created 0700 when
 * missing, and an existing database file readable by others is made 0600. */
static int private_files(const char *path, char *err, size_t errlen)
{
    char dir[CONFIG_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "sqlite: cannot create %s: %s", dir, strerror(errno));
            return -1;
        }
    }
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) && chmod(path, st.st_mode & 0700) != 0) {
        snprintf(err, errlen, "sqlite: cannot make %s private (chmod 0600): %s", path,
                 strerror(errno));
        return -1;
    }
    return 0;
}

static int prepare_retention(store *s, char *err, size_t errlen)
{
    return prepare(s, &s->rollup_row_upsert, SCHEMA_ROLLUP_ROW_UPSERT, err, errlen) ||
           prepare(s, &s->rollup_sketch_upsert, SCHEMA_ROLLUP_SKETCH_UPSERT, err, errlen) ||
           prepare(s, &s->state_put, SCHEMA_ROLLUP_STATE_PUT, err, errlen) ||
           prepare(s, &s->first_raw, SCHEMA_FIRST_RAW_BUCKET, err, errlen) ||
           prepare(s, &s->first_rollup, SCHEMA_FIRST_ROLLUP_BUCKET, err, errlen) ||
           prepare(s, &s->rollup_rows[0], SCHEMA_ROLLUP_ROWS, err, errlen) ||
           prepare(s, &s->rollup_rows[1], SCHEMA_ROLLUP_RAW_ROWS, err, errlen) ||
           prepare(s, &s->rollup_sketches[0], SCHEMA_ROLLUP_SKETCHES, err, errlen) ||
           prepare(s, &s->rollup_sketches[1], SCHEMA_ROLLUP_RAW_SKETCHES, err, errlen) ||
           prepare(s, &s->expire_rows[0], SCHEMA_EXPIRE_ROWS, err, errlen) ||
           prepare(s, &s->expire_rows[1], SCHEMA_EXPIRE_RAW_ROWS, err, errlen) ||
           prepare(s, &s->expire_sketches[0], SCHEMA_EXPIRE_SKETCHES, err, errlen) ||
           prepare(s, &s->expire_sketches[1], SCHEMA_EXPIRE_RAW_SKETCHES, err, errlen) ||
           prepare(s, &s->fold_sets[0], SCHEMA_FOLD_SETS, err, errlen) ||
           prepare(s, &s->fold_sets[1], SCHEMA_FOLD_RAW_SETS, err, errlen)
               ? -1
               : 0;
}

/* Reads rollup_state into memory (at open, and inside each write
 * transaction: another flusher on the file may have stepped). */
static int load_rollups(store *s, char *err, size_t errlen)
{
    rollup_state_init(&s->rollups, s->bucket_seconds);
    sqlite3_stmt *st = s->state_get;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rollup_state_set(&s->rollups, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                         sqlite3_column_int64(st, 2));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        set_err(err, errlen, "read rollup_state", s->db);
        return -1;
    }
    return 0;
}

int store_open(store **out, const char *path, const char *synchronous, int bucket_seconds,
               int dedup_window_seconds, char *err, size_t errlen)
{
    assert(out && path && synchronous && bucket_seconds >= 1 && dedup_window_seconds > 0);
    *out = NULL;
    if (strcasecmp(synchronous, "FULL") != 0 && strcasecmp(synchronous, "NORMAL") != 0 &&
        strcasecmp(synchronous, "EXTRA") != 0) {
        snprintf(err, errlen, "sqlite.synchronous must be FULL, NORMAL or EXTRA, not '%s'", synchronous);
        return -1;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "store: out of memory");
        return -1;
    }
    snprintf(s->path, sizeof s->path, "%s", path);
    s->bucket_seconds = bucket_seconds;
    s->dedup_window_ms = (int64_t)dedup_window_seconds * 1000;

    if (private_files(path, err, errlen) != 0) {
        free(s);
        return -1;
    }
    mode_t umask_before = umask(077); /* a new database (and its -wal, -shm) is 0600 */
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    umask(umask_before);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        store_close(s);
        return -1;
    }
    if (sqlite3_extended_result_codes(s->db, 1) != SQLITE_OK ||
        sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS) != SQLITE_OK) {
        set_err(err, errlen, "configure connection", s->db);
        store_close(s);
        return -1;
    }

    /* journal_mode answers with the mode in effect: anything but "wal" means
     * WAL could not be enabled (e.g. a read-only directory). */
    sqlite3_stmt *st = NULL;
    if (prepare(s, &st, "PRAGMA journal_mode = WAL", err, errlen) < 0) {
        store_close(s);
        return -1;
    }
    rc = sqlite3_step(st);
    const unsigned char *mode = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    if (!mode || strcasecmp((const char *)mode, "wal") != 0) {
        if (rc == SQLITE_ROW)
            snprintf(err, errlen, "sqlite: %s: cannot enable WAL (journal_mode is %s)", path,
                     mode ? (const char *)mode : "?");
        else
            set_err(err, errlen, "PRAGMA journal_mode = WAL", s->db);
        sqlite3_finalize(st);
        store_close(s);
        return -1;
    }
    sqlite3_finalize(st);

    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA synchronous = %s", synchronous);
    if (exec(s, sql, "set synchronous", err, errlen) < 0 ||
        schema_init_writer(s->db, s->path, s->bucket_seconds, err, errlen) < 0 ||
        prepare(s, &s->metric_upsert, SCHEMA_METRIC_UPSERT, err, errlen) < 0 ||
        prepare(s, &s->series_upsert, SCHEMA_SERIES_UPSERT, err, errlen) < 0 ||
        prepare(s, &s->sketch_upsert, SCHEMA_SKETCH_UPSERT, err, errlen) < 0 ||
        prepare(s, &s->gauge_get, SCHEMA_GAUGE_GET, err, errlen) < 0 ||
        prepare(s, &s->gauge_put, SCHEMA_GAUGE_PUT, err, errlen) < 0 ||
        prepare(s, &s->batch_insert, SCHEMA_BATCH_INSERT, err, errlen) < 0 ||
        prepare(s, &s->batch_seen, SCHEMA_BATCH_GET, err, errlen) < 0 ||
        prepare(s, &s->reject_insert, SCHEMA_REJECT_INSERT, err, errlen) < 0 ||
        prepare(s, &s->offset_put, SCHEMA_OFFSET_PUT, err, errlen) < 0 ||
        prepare(s, &s->offsets_get, SCHEMA_OFFSETS_GET, err, errlen) < 0 ||
        prepare(s, &s->prune, SCHEMA_BATCH_PRUNE, err, errlen) < 0 ||
        prepare(s, &s->claim_put, SCHEMA_CLAIM_PUT, err, errlen) < 0 ||
        prepare(s, &s->claim_get, SCHEMA_CLAIM_GET, err, errlen) < 0 ||
        prepare(s, &s->state_get, SCHEMA_ROLLUP_STATE_GET, err, errlen) < 0 ||
        prepare_retention(s, err, errlen) < 0 || load_rollups(s, err, errlen) < 0) {
        store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

void store_close(store *s)
{
    if (!s)
        return;
    sqlite3_stmt *all[] = {s->metric_upsert, s->series_upsert, s->sketch_upsert, s->gauge_get,
                           s->gauge_put, s->batch_insert, s->batch_seen, s->reject_insert,
                           s->offset_put, s->offsets_get, s->prune, s->rollup_row_upsert,
                           s->rollup_sketch_upsert, s->state_put, s->rollup_rows[0],
                           s->rollup_rows[1], s->rollup_sketches[0], s->rollup_sketches[1],
                           s->expire_rows[0], s->expire_rows[1], s->expire_sketches[0],
                           s->expire_sketches[1], s->fold_sets[0], s->fold_sets[1],
                           s->first_raw, s->first_rollup, s->claim_put, s->claim_get, s->state_get};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]); /* NULL is a harmless no-op */
    if (s->db)
        sqlite3_close(s->db); /* every statement is finalized: cannot be SQLITE_BUSY */
    free(s->bases);
    free(s->spans);
    free(s->epochs);
    free(s);
}

void store_set_before_commit_hook(store *s, void (*hook)(void *arg), void *arg)
{
    s->hook = hook;
    s->hook_arg = arg;
}

int store_load_offsets(store *s, const char *topic, int64_t *next, int partitions,
                       char *err, size_t errlen)
{
    assert(partitions >= 1);
    for (int i = 0; i < partitions; i++)
        next[i] = -1;
    sqlite3_stmt *st = s->offsets_get;
    int ret = -1;
    if (sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC) != SQLITE_OK) {
        set_err(err, errlen, "bind topic", s->db);
        goto out;
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t part = sqlite3_column_int64(st, 0), off = sqlite3_column_int64(st, 1);
        if (part < 0 || part >= partitions || off < 0) {
            snprintf(err, errlen,
                     "kafka_offsets has (topic %s, partition %" PRId64 ", next_offset %" PRId64 ")"
                     " but the topic has %d partitions: refusing to resume", topic, part, off, partitions);
            goto out;
        }
        next[part] = off;
    }
    if (rc != SQLITE_DONE) {
        set_err(err, errlen, "read kafka_offsets", s->db);
        goto out;
    }
    ret = 0;
out:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return ret;
}

int store_batch_lookup(store *s, const char *id, size_t id_len, int64_t *log_ms,
                       char digest[DEDUP_DIGEST_TEXT], char *err, size_t errlen)
{
    sqlite3_stmt *st = s->batch_seen;
    int ret = -1;
    if (sqlite3_bind_text(st, 1, id, (int)id_len, SQLITE_STATIC) != SQLITE_OK) {
        set_err(err, errlen, "bind batch id", s->db);
        goto out;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *log_ms = sqlite3_column_int64(st, 0);
        const unsigned char *d = sqlite3_column_text(st, 1);
        snprintf(digest, DEDUP_DIGEST_TEXT, "%s", d ? (const char *)d : DEDUP_DIGEST_UNKNOWN);
        ret = 1;
    } else if (rc == SQLITE_DONE)
        ret = 0;
    else
        set_err(err, errlen, "look up batch id", s->db);
out:
    sqlite3_reset(st);
    return ret;
}

/* Steps a write statement to completion and resets it. */
static int step_done(store *s, sqlite3_stmt *st, const char *what, char *err, size_t errlen)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        set_err(err, errlen, what, s->db);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return 0;
}

#define BIND(call, what)                        \
    do {                                        \
        if ((call) != SQLITE_OK) {              \
            set_err(err, errlen, what, s->db);  \
            return -1;                          \
        }                                       \
    } while (0)

/* Reads the stored value of every gauge series whose rows are relative. */
static int load_bases(store *s, const aggregate *a, char *err, size_t errlen)
{
    size_t n = aggregate_series_count(a);
    if (n > s->bases_cap) {
        double *b = realloc(s->bases, n * sizeof *b);
        if (!b) {
            snprintf(err, errlen, "store: out of memory (%zu gauge bases)", n);
            return -1;
        }
        s->bases = b;
        s->bases_cap = n;
    }
    for (size_t i = 0; i < n; i++) {
        const agg_series *se = aggregate_series_at(a, i);
        s->bases[i] = 0.0;
        if (se->type != METRIC_GAUGE || !se->needs_base)
            continue;
        sqlite3_stmt *st = s->gauge_get;
        BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind gauge name");
        BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind gauge tags");
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            s->bases[i] = sqlite3_column_double(st, 0);
        else if (rc != SQLITE_DONE) {
            set_err(err, errlen, "read gauge base", s->db);
            sqlite3_reset(st);
            return -1;
        }
        sqlite3_reset(st);
    }
    return 0;
}

/* The roll-up levels a row of `bucket` must also be added to: those that
 * rolled its window up already and still keep it (bit per level). */
static unsigned late_levels(const store *s, int64_t bucket)
{
    unsigned mask = 0;
    for (int l = rollup_coarser(&s->rollups, 0); l > 0; l = rollup_coarser(&s->rollups, l)) {
        const rollup_level *lv = &s->rollups.level[l];
        if (bucket < lv->rolled_until && bucket - bucket % lv->width >= lv->kept_from)
            mask |= 1u << l;
    }
    return mask;
}

/* Binds name, tags, type, width, raw bucket (?1..?5) of a roll-up upsert. */
static int bind_rollup_key(store *s, sqlite3_stmt *st, const agg_series *se, int64_t width,
                           int64_t bucket, char *err, size_t errlen)
{
    BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind name");
    BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind tags");
    BIND(sqlite3_bind_text(st, 3, metric_type_name(se->type), -1, SQLITE_STATIC), "bind type");
    BIND(sqlite3_bind_int64(st, 4, width), "bind width");
    BIND(sqlite3_bind_int64(st, 5, bucket), "bind bucket");
    return 0;
}

/* A late row (its window already rolled up) added to each roll-up. */
/* What a late row adds to each roll-up holding its window: the row's
 * figures, or its sketch. */
typedef struct late_row {
    const agg_row *row;
    double value, lo, hi;
    int has_range;
} late_row;
typedef struct late_sketch {
    const unsigned char *buf;
    size_t len;
} late_sketch;

static int bind_late_row(store *s, sqlite3_stmt *st, const void *payload, char *err,
                         size_t errlen)
{
    const late_row *p = payload;
    BIND(sqlite3_bind_int64(st, 6, p->row->lines), "bind lines");
    BIND(sqlite3_bind_double(st, 7, p->value), "bind value");
    BIND(sqlite3_bind_double(st, 8, p->row->weight), "bind weight");
    BIND(p->has_range ? sqlite3_bind_double(st, 9, p->lo) : sqlite3_bind_null(st, 9), "bind min");
    BIND(p->has_range ? sqlite3_bind_double(st, 10, p->hi) : sqlite3_bind_null(st, 10), "bind max");
    return 0;
}

static int bind_late_sketch(store *s, sqlite3_stmt *st, const void *payload, char *err,
                            size_t errlen)
{
    const late_sketch *p = payload;
    BIND(sqlite3_bind_blob64(st, 6, p->buf, p->len, SQLITE_STATIC), "bind sketch");
    return 0;
}

/* Upserts `payload` (bound by `bind` after the key) with `st` into each
 * roll-up level that already holds the window of bucket r->bucket. */
static int write_late(store *s, sqlite3_stmt *st, const agg_series *se, const agg_row *r,
                      int (*bind)(store *, sqlite3_stmt *, const void *, char *, size_t),
                      const void *payload, const char *what, char *err, size_t errlen)
{
    unsigned mask = late_levels(s, r->bucket);
    for (int l = 1; l < ROLLUP_LEVELS; l++) {
        if (!(mask & (1u << l)))
            continue;
        if (bind_rollup_key(s, st, se, s->rollups.level[l].width, r->bucket, err, errlen) < 0 ||
            bind(s, st, payload, err, errlen) < 0 || step_done(s, st, what, err, errlen) < 0)
            return -1;
    }
    return 0;
}

static int write_late_row(store *s, const agg_series *se, const agg_row *r, double value,
                          int has_range, double lo, double hi, char *err, size_t errlen)
{
    late_row p = {r, value, lo, hi, has_range};
    return write_late(s, s->rollup_row_upsert, se, r, bind_late_row, &p, "upsert roll-up row",
                      err, errlen);
}

static int write_late_sketch(store *s, const agg_series *se, const agg_row *r,
                             const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    late_sketch p = {buf, len};
    return write_late(s, s->rollup_sketch_upsert, se, r, bind_late_sketch, &p,
                      "upsert roll-up sketch", err, errlen);
}

/* A raw row before the raw resolution's horizon is not kept (its roll-ups
 * and the series totals still take it). */
static int raw_kept(const store *s, int64_t bucket)
{
    return bucket >= s->rollups.level[0].kept_from;
}

/* Upserts the metrics row of every aggregate row but a set's (a set has
 * only its sketch and catalog entry: schema.h). */
static int write_rows(store *s, const aggregate *a, size_t *count, char *err, size_t errlen)
{
    sqlite3_stmt *st = s->metric_upsert;
    for (size_t i = 0; i < aggregate_row_count(a); i++) {
        const agg_row *r = aggregate_row_at(a, i);
        const agg_series *se = aggregate_series_at(a, r->series);
        if (se->type == METRIC_SET)
            continue;
        double value = r->value, lo = r->min, hi = r->max;
        int has_range = r->has_range;
        if (se->type == METRIC_GAUGE) {
            double base = s->bases[r->series];
            if (r->value_relative)
                value += base;
            if (r->has_rel_range) {
                double rlo = base + r->rel_min, rhi = base + r->rel_max;
                lo = has_range && lo < rlo ? lo : rlo;
                hi = has_range && hi > rhi ? hi : rhi;
                has_range = 1;
            }
            assert(has_range);
        }
        assert(se->type != METRIC_COUNTER || !has_range);
        if (write_late_row(s, se, r, value, has_range, lo, hi, err, errlen) < 0)
            return -1;
        if (!raw_kept(s, r->bucket))
            continue;
        BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind name");
        BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind tags");
        BIND(sqlite3_bind_text(st, 3, metric_type_name(se->type), -1, SQLITE_STATIC), "bind type");
        BIND(sqlite3_bind_int64(st, 4, r->bucket), "bind bucket");
        BIND(sqlite3_bind_int64(st, 5, r->lines), "bind lines");
        BIND(sqlite3_bind_double(st, 6, value), "bind value");
        BIND(sqlite3_bind_double(st, 7, r->weight), "bind weight");
        BIND(has_range ? sqlite3_bind_double(st, 8, lo) : sqlite3_bind_null(st, 8), "bind min");
        BIND(has_range ? sqlite3_bind_double(st, 9, hi) : sqlite3_bind_null(st, 9), "bind max");
        if (step_done(s, st, "upsert metrics row", err, errlen) < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

/* Upserts one encoded sketch (buf, len) of row r; the caller frees buf. On
 * failure err names the series and bucket after SQLite's message. */
static int upsert_sketch(store *s, const agg_series *se, const agg_row *r,
                         const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    sqlite3_stmt *st = s->sketch_upsert;
    BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind name");
    BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind tags");
    BIND(sqlite3_bind_text(st, 3, metric_type_name(se->type), -1, SQLITE_STATIC), "bind type");
    BIND(sqlite3_bind_int64(st, 4, r->bucket), "bind bucket");
    BIND(sqlite3_bind_blob64(st, 5, buf, len, SQLITE_STATIC), "bind sketch");
    if (step_done(s, st, "upsert sketch", err, errlen) == 0)
        return 0;
    size_t used = strlen(err);
    if (used + 1 < errlen)
        snprintf(err + used, errlen - used, " (name %s, tags '%s', bucket %" PRId64 ")",
                 se->name, se->tags, r->bucket);
    return -1;
}

/* Encodes the row's sketch (a distribution's DDSketch, a set's hll) into a
 * new buffer; 0 when the row has none, -1 when out of memory. */
static int encode_sketch(const agg_series *se, const agg_row *r, unsigned char **buf,
                         size_t *len)
{
    /* aggregate.h: made by the row's first event */
    assert(se->type != METRIC_DISTRIBUTION || (r->sketch && r->lines > 0));
    assert(se->type != METRIC_SET || (r->set && r->lines > 0));
    if (se->type == METRIC_DISTRIBUTION)
        return ddsketch_encode(r->sketch, buf, len) < 0 ? -1 : 1;
    if (se->type == METRIC_SET)
        return hll_encode(r->set, buf, len) < 0 ? -1 : 1;
    return 0;
}

/* Upserts the sketch of every distribution and set row (after the rows). */
static int write_sketches(store *s, const aggregate *a, size_t *count, char *err, size_t errlen)
{
    for (size_t i = 0; i < aggregate_row_count(a); i++) {
        const agg_row *r = aggregate_row_at(a, i);
        const agg_series *se = aggregate_series_at(a, r->series);
        unsigned char *buf = NULL;
        size_t len = 0;
        int has = encode_sketch(se, r, &buf, &len);
        if (has == 0)
            continue;
        if (has < 0) {
            snprintf(err, errlen, "store: out of memory (encoding the sketch of %s)", se->name);
            return -1;
        }
        int rc = write_late_sketch(s, se, r, buf, len, err, errlen);
        if (rc == 0 && raw_kept(s, r->bucket))
            rc = upsert_sketch(s, se, r, buf, len, err, errlen);
        free(buf);
        if (rc < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

/* Sums this flush's rows per series, for the catalog. */
static int sum_spans(store *s, const aggregate *a, char *err, size_t errlen)
{
    size_t n = aggregate_series_count(a);
    if (n > s->spans_cap) {
        series_span *grown = realloc(s->spans, n * sizeof *grown);
        if (!grown) {
            snprintf(err, errlen, "store: out of memory (%zu series)", n);
            return -1;
        }
        s->spans = grown;
        s->spans_cap = n;
    }
    for (size_t i = 0; i < n; i++)
        s->spans[i] = (series_span){INT64_MAX, INT64_MIN, 0.0, 0.0, 0.0, 0.0, 0};
    for (size_t i = 0; i < aggregate_row_count(a); i++) {
        const agg_row *r = aggregate_row_at(a, i);
        series_span *sp = &s->spans[r->series];
        sp->first = r->bucket < sp->first ? r->bucket : sp->first;
        sp->last = r->bucket > sp->last ? r->bucket : sp->last;
        metric_type type = aggregate_series_at(a, r->series)->type;
        if (type != METRIC_GAUGE)
            sp->value += r->value; /* a gauge's value is not a sum */
        sp->weight += r->weight;
        if (type == METRIC_DISTRIBUTION && r->has_range) {
            sp->min = sp->has_range && sp->min < r->min ? sp->min : r->min;
            sp->max = sp->has_range && sp->max > r->max ? sp->max : r->max;
            sp->has_range = 1;
        }
    }
    return 0;
}

/* Upserts every series of the flush into the catalog (schema.h). */
static int write_series(store *s, const aggregate *a, char *err, size_t errlen)
{
    if (sum_spans(s, a, err, errlen) < 0)
        return -1;
    sqlite3_stmt *st = s->series_upsert;
    for (size_t i = 0; i < aggregate_series_count(a); i++) {
        const agg_series *se = aggregate_series_at(a, i);
        const series_span *sp = &s->spans[i];
        if (sp->first > sp->last)
            continue; /* no row (cannot happen: every series has one) */
        char prom[PROM_NAME_MAX];
        size_t prom_len = prom_name_from_statsd(prom, se->name, se->name_len);
        BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind name");
        BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind tags");
        BIND(sqlite3_bind_text(st, 3, metric_type_name(se->type), -1, SQLITE_STATIC), "bind type");
        BIND(sqlite3_bind_text(st, 4, prom, (int)prom_len, SQLITE_TRANSIENT), "bind prom_name");
        BIND(sqlite3_bind_int64(st, 5, sp->first), "bind first bucket");
        BIND(sqlite3_bind_int64(st, 6, sp->last), "bind last bucket");
        BIND(sqlite3_bind_double(st, 7, sp->value), "bind total value");
        BIND(sqlite3_bind_double(st, 8, sp->weight), "bind total weight");
        BIND(sp->has_range ? sqlite3_bind_double(st, 9, sp->min) : sqlite3_bind_null(st, 9),
             "bind min");
        BIND(sp->has_range ? sqlite3_bind_double(st, 10, sp->max) : sqlite3_bind_null(st, 10),
             "bind max");
        if (step_done(s, st, "upsert series", err, errlen) < 0)
            return -1;
    }
    return 0;
}



static int write_gauges(store *s, const aggregate *a, size_t *count, char *err, size_t errlen)
{
    sqlite3_stmt *st = s->gauge_put;
    for (size_t i = 0; i < aggregate_series_count(a); i++) {
        const agg_series *se = aggregate_series_at(a, i);
        if (se->type != METRIC_GAUGE)
            continue;
        double value = se->absolute_known ? se->running : s->bases[i] + se->running;
        BIND(sqlite3_bind_text(st, 1, se->name, se->name_len, SQLITE_STATIC), "bind gauge name");
        BIND(sqlite3_bind_text(st, 2, se->tags, se->tags_len, SQLITE_STATIC), "bind gauge tags");
        BIND(sqlite3_bind_double(st, 3, value), "bind gauge value");
        if (step_done(s, st, "upsert gauge", err, errlen) < 0)
            return -1;
        (*count)++;
    }
    return 0;
}

static int write_pending(store *s, const char *topic, const pending *p, store_commit_stats *st_out,
                         char *err, size_t errlen)
{
    sqlite3_stmt *st = s->batch_insert;
    for (size_t i = 0; i < pending_batch_count(p); i++) {
        const pending_batch *b = pending_batch_at(p, i);
        BIND(sqlite3_bind_text(st, 1, pending_batch_id(p, b), (int)b->id_len, SQLITE_STATIC), "bind batch id");
        BIND(sqlite3_bind_int64(st, 2, b->log_ms), "bind log_ms");
        BIND(sqlite3_bind_text(st, 3, b->digest, -1, SQLITE_STATIC), "bind digest");
        BIND(sqlite3_bind_text(st, 4, topic, -1, SQLITE_STATIC), "bind topic");
        BIND(sqlite3_bind_int(st, 5, b->partition), "bind partition");
        BIND(sqlite3_bind_int64(st, 6, b->offset), "bind offset");
        if (step_done(s, st, "insert batch id", err, errlen) < 0)
            return -1;
    }
    st_out->batches = pending_batch_count(p);

    st = s->reject_insert;
    for (size_t i = 0; i < pending_reject_count(p); i++) {
        const pending_reject *r = pending_reject_at(p, i);
        BIND(sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC), "bind topic");
        BIND(sqlite3_bind_int(st, 2, r->partition), "bind partition");
        BIND(sqlite3_bind_int64(st, 3, r->offset), "bind offset");
        BIND(sqlite3_bind_text(st, 4, r->reason, -1, SQLITE_STATIC), "bind reason");
        BIND(sqlite3_bind_blob64(st, 5, r->payload ? (const void *)r->payload : (const void *)"",
                                 r->len, SQLITE_STATIC), "bind payload");
        if (step_done(s, st, "insert rejected record", err, errlen) < 0)
            return -1;
    }
    st_out->rejected = pending_reject_count(p);

    st = s->offset_put;
    for (int part = 0; part < pending_partitions(p); part++) {
        int64_t next = pending_next_offset(p, part);
        if (next < 0)
            continue;
        BIND(sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC), "bind topic");
        BIND(sqlite3_bind_int(st, 2, part), "bind partition");
        BIND(sqlite3_bind_int64(st, 3, next), "bind next_offset");
        if (step_done(s, st, "upsert kafka offset", err, errlen) < 0)
            return -1;
        st_out->partitions++;
    }

    if (pending_batch_count(p) > 0) {
        int64_t horizon =
            pending_max_log_ms(p) - s->dedup_window_ms - DEDUP_SLACK_SECONDS * 1000LL;
        BIND(sqlite3_bind_int64(s->prune, 1, horizon), "bind prune horizon");
        if (step_done(s, s->prune, "prune batches", err, errlen) < 0)
            return -1;
        st_out->pruned = sqlite3_changes64(s->db);
    }
    return 0;
}

/* ---- partition claims (fencing) --------------------------------------------------- */

/* Raises the epoch of (topic, partition) to claim it; *epoch = the new one. */
static int claim_one(store *s, const char *topic, int partition, const char *owner,
                     int64_t now_ms, int64_t *epoch, char *err, size_t errlen)
{
    sqlite3_stmt *st = s->claim_put;
    BIND(sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC), "bind topic");
    BIND(sqlite3_bind_int(st, 2, partition), "bind partition");
    BIND(sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC), "bind owner");
    BIND(sqlite3_bind_int64(st, 4, now_ms), "bind claimed_ms");
    int rc = sqlite3_step(st);
    *epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    if (rc == SQLITE_ROW)
        rc = sqlite3_step(st); /* RETURNING: the statement ends after its row */
    sqlite3_reset(st);
    if (rc != SQLITE_DONE || *epoch < 1) {
        set_err(err, errlen, "claim partition", s->db);
        return -1;
    }
    return 0;
}

static int ensure_epochs(store *s, int partitions, char *err, size_t errlen)
{
    if (partitions <= s->claim_partitions)
        return 0;
    int64_t *grown = realloc(s->epochs, (size_t)partitions * sizeof *grown);
    if (!grown) {
        snprintf(err, errlen, "store: out of memory");
        return -1;
    }
    for (int i = s->claim_partitions; i < partitions; i++)
        grown[i] = 0;
    s->epochs = grown;
    s->claim_partitions = partitions;
    return 0;
}

int store_claim(store *s, const char *topic, const int *parts, int count, int partitions,
                const char *owner, int64_t *next, char *err, size_t errlen)
{
    assert(s && topic && owner && next && count >= 0 && partitions >= 1);
    int64_t now = (int64_t)time(NULL) * 1000;
    if (ensure_epochs(s, partitions, err, errlen) < 0)
        return -1;
    int64_t *claimed = calloc((size_t)(count > 0 ? count : 1), sizeof *claimed);
    if (!claimed) {
        snprintf(err, errlen, "store: out of memory");
        return -1;
    }
    int ok = exec(s, "BEGIN IMMEDIATE", "begin", err, errlen) == 0;
    for (int i = 0; ok && i < count; i++) {
        if (parts[i] < 0 || parts[i] >= partitions) {
            snprintf(err, errlen, "claim: partition %d of %s is outside 0..%d", parts[i], topic,
                     partitions - 1);
            ok = 0;
        } else {
            ok = claim_one(s, topic, parts[i], owner, now, &claimed[i], err, errlen) == 0;
        }
    }
    ok = ok && store_load_offsets(s, topic, next, partitions, err, errlen) == 0 &&
         exec(s, "COMMIT", "commit", err, errlen) == 0;
    if (ok)
        for (int i = 0; i < count; i++)
            s->epochs[parts[i]] = claimed[i];
    else if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    free(claimed);
    return ok ? 0 : -1;
}

void store_release(store *s)
{
    for (int i = 0; i < s->claim_partitions; i++)
        s->epochs[i] = 0;
}

int64_t store_epoch(const store *s, int partition)
{
    return partition >= 0 && partition < s->claim_partitions ? s->epochs[partition] : 0;
}

/* Inside the commit's transaction: is every partition the flush consumed
 * still claimed by this store? 0 yes; STORE_FENCED (err names who holds it
 * now) or -1 (err) if not. */
static int check_claims(store *s, const char *topic, const pending *p, char *err, size_t errlen)
{
    sqlite3_stmt *st = s->claim_get;
    for (int part = 0; part < pending_partitions(p); part++) {
        if (pending_next_offset(p, part) < 0)
            continue;
        int64_t mine = store_epoch(s, part);
        BIND(sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC), "bind topic");
        BIND(sqlite3_bind_int(st, 2, part), "bind partition");
        int rc = sqlite3_step(st);
        int64_t epoch = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
        char owner[128];
        snprintf(owner, sizeof owner, "%s",
                 rc == SQLITE_ROW && sqlite3_column_text(st, 1)
                     ? (const char *)sqlite3_column_text(st, 1) : "nobody");
        sqlite3_reset(st);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            set_err(err, errlen, "read partition_claims", s->db);
            return -1;
        }
        if (mine == 0 || epoch != mine) {
            snprintf(err, errlen, "fenced: partition %d of %s is claimed by %s at epoch %" PRId64
                     " (this flusher %s): its uncommitted work is dropped, never committed",
                     part, topic, owner, epoch, mine ? "held an older epoch" : "never claimed it");
            return STORE_FENCED;
        }
    }
    return 0;
}

int store_commit(store *s, const char *topic, const aggregate *a, const pending *p,
                 store_commit_stats *stats, char *err, size_t errlen)
{
    assert(s && topic && a && p);
    store_commit_stats st = {0};
    if (exec(s, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
        return -1;
    int fenced = check_claims(s, topic, p, err, errlen);
    if (fenced != 0) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return fenced;
    }
    /* another flusher on this file may have run a retention step since */
    if (load_rollups(s, err, errlen) < 0 || load_bases(s, a, err, errlen) < 0 || write_rows(s, a, &st.rows, err, errlen) < 0 ||
        write_sketches(s, a, &st.sketches, err, errlen) < 0 ||
        write_series(s, a, err, errlen) < 0 || write_gauges(s, a, &st.gauges, err, errlen) < 0 ||
        write_pending(s, topic, p, &st, err, errlen) < 0)
        goto fail;
    if (s->hook)
        s->hook(s->hook_arg);
    if (exec(s, "COMMIT", "commit", err, errlen) < 0)
        goto fail;
    if (stats)
        *stats = st;
    return 0;
fail:
    /* A failed COMMIT may leave the transaction open (e.g. SQLITE_BUSY);
     * ROLLBACK is harmless when SQLite already rolled back by itself. */
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* ---- retention ------------------------------------------------------------------ */

const rollup_state *store_rollups(const store *s)
{
    return &s->rollups;
}

int store_first_at(store *s, int level, int64_t from, int64_t *bucket, char *err,
                   size_t errlen)
{
    sqlite3_stmt *st = level == 0 ? s->first_raw : s->first_rollup;
    *bucket = INT64_MAX;
    BIND(sqlite3_bind_int64(st, 1, from), "bind from");
    if (level > 0)
        BIND(sqlite3_bind_int64(st, 2, s->rollups.level[level].width), "bind width");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *bucket = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) {
        set_err(err, errlen, "find the first stored bucket", s->db);
        return -1;
    }
    return 0;
}

void store_set_retention_hook(store *s, void (*hook)(void *arg), void *arg)
{
    s->retention_hook = hook;
    s->retention_hook_arg = arg;
}

/* Runs one retention statement over [lo, hi): ?1 width, ?2 lo, ?3 hi, ?4 the
 * source width (bound only where the statement has it). */
static int run_span(store *s, sqlite3_stmt *st, int64_t width, int64_t lo, int64_t hi,
                    int64_t source_width, const char *what, char *err, size_t errlen)
{
    int params = sqlite3_bind_parameter_count(st);
    int64_t values[] = {width, lo, hi, source_width};
    for (int i = 0; i < params && i < 4; i++)
        BIND(sqlite3_bind_int64(st, i + 1, values[i]), "bind retention span");
    return step_done(s, st, what, err, errlen);
}

static int run_step(store *s, const retention_step *step, char *err, size_t errlen)
{
    const rollup_level *lv = &s->rollups.level[step->level];
    if (step->kind == RETENTION_ROLLUP) {
        int raw = step->source == 0;
        int64_t src_w = s->rollups.level[step->source].width;
        return run_span(s, s->rollup_rows[raw], lv->width, step->lo, step->hi, src_w,
                        "roll up rows", err, errlen) ||
                       run_span(s, s->rollup_sketches[raw], lv->width, step->lo, step->hi,
                                src_w, "roll up sketches", err, errlen)
                   ? -1
                   : 0;
    }
    int raw = step->level == 0;
    return (step->fold_sets && run_span(s, s->fold_sets[raw], lv->width, step->lo, step->hi,
                                        lv->width, "fold set registers", err, errlen)) ||
                   run_span(s, s->expire_rows[raw], lv->width, step->lo, step->hi, lv->width,
                            "delete expired rows", err, errlen) ||
                   run_span(s, s->expire_sketches[raw], lv->width, step->lo, step->hi,
                            lv->width, "delete expired sketches", err, errlen)
               ? -1
               : 0;
}

static int put_state(store *s, const rollup_state *next, int level, char *err, size_t errlen)
{
    const rollup_level *lv = &next->level[level];
    sqlite3_stmt *st = s->state_put;
    BIND(sqlite3_bind_int64(st, 1, level == 0 ? 0 : lv->width), "bind width");
    BIND(sqlite3_bind_int64(st, 2, level == 0 ? 0 : lv->rolled_until), "bind rolled_until");
    BIND(sqlite3_bind_int64(st, 3, lv->kept_from), "bind kept_from");
    return step_done(s, st, "write rollup_state", err, errlen);
}

static int same_rollups(const rollup_state *a, const rollup_state *b)
{
    for (int l = 0; l < ROLLUP_LEVELS; l++)
        if (a->level[l].rolled_until != b->level[l].rolled_until ||
            a->level[l].kept_from != b->level[l].kept_from)
            return 0;
    return 1;
}

int store_retention_step(store *s, const retention_step *step, long long *changes, char *err,
                         size_t errlen)
{
    rollup_state planned = s->rollups, next = s->rollups;
    retention_apply(&next, step);
    long long before = sqlite3_total_changes64(s->db);
    if (changes)
        *changes = 0;
    if (exec(s, "BEGIN IMMEDIATE", "begin", err, errlen) < 0)
        return -1;
    if (load_rollups(s, err, errlen) < 0)
        goto fail;
    if (!same_rollups(&planned, &s->rollups)) {
        /* another flusher on this file stepped first: plan again from its state */
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return STORE_STALE_PLAN;
    }
    if (run_step(s, step, err, errlen) < 0 || put_state(s, &next, step->level, err, errlen) < 0)
        goto fail;
    if (s->retention_hook)
        s->retention_hook(s->retention_hook_arg);
    if (exec(s, "COMMIT", "commit", err, errlen) < 0)
        goto fail;
    s->rollups = next;
    if (changes)
        *changes = sqlite3_total_changes64(s->db) - before - 1; /* (not the state row) */
    return 0;
fail:
    if (!sqlite3_get_autocommit(s->db))
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}
