/*
 * test_store.c — the distribution sketches the store writes (store.h,
 * schema.h), against a temporary SQLite file (mkdtemp under /tmp).
 *
 * What is proved: a bucket flushed twice holds the sketch of the union of
 * both flushes' values (byte for byte the encoding of a sketch built from
 * the union, and quantiles within alpha of the exact union quantiles); only
 * distribution rows get a sketch; tally_sketch_merge merges two blobs and
 * refuses a corrupt one, a NULL or a type without a sketch with an error
 * naming itself; a corrupt stored sketch makes the next commit touching its
 * bucket fail with that error and leaves every table as it was (ROLLBACK),
 * and the store stays usable; a version 3 database upgraded has no sketch
 * for its earlier buckets. Sets: a bucket flushed twice holds the
 * HyperLogLog of the union of its members (byte for byte the hll of all of
 * them, its count within the HLL's error), with a catalog row and no metrics
 * row; tally_sketch_merge('set', ...) merges and refuses a corrupt one. The
 * database is read back through a second
 * connection with plain sqlite3 calls and ddsketch_decode, as a reader would.
 *
 * Weights are 1, 2 and 4 (rates 1, .5, .25), exact in binary, so the merged
 * counts are exact and the byte comparison is meaningful (ddsketch.h: merge
 * equals the sketch of the union up to the rounding of non-integral weights).
 */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "aggregate.h"
#include "ddsketch.h"
#include "hash.h"
#include "hll.h"
#include "redis_hll.h"
#include "pending.h"
#include "schema.h"
#include "store.h"
#include "config.h"
#include "retention.h"

#define BUCKET_SECONDS 10
#define BOUND (DDSKETCH_ALPHA * (1.0 + 1e-9))

static const double QS[] = {0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1};
#define NQ (sizeof QS / sizeof QS[0])

typedef struct sample {
    double v, w;
} sample;

typedef struct fixture {
    char dir[64];
    char path[128];
    store *st;
    aggregate *agg;
    pending *pend;
    int64_t next_offset;
} fixture;

/* ---- fixture ---------------------------------------------------------------- */

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    char err[512];
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/tally-test-store-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    int64_t next[1];
    if (store_open(&f->st, f->path, "FULL", BUCKET_SECONDS, 60, err, sizeof err) < 0 ||
        store_claim(f->st, "t", (const int[]){0}, 1, 1, "test", next, err, sizeof err) < 0) {
        print_error("store_open: %s\n", err);
        return -1;
    }
    f->agg = aggregate_new(BUCKET_SECONDS);
    f->pend = pending_new(1);
    *state = f;
    return f->agg && f->pend ? 0 : -1;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char file[200];
    store_close(f->st);
    aggregate_free(f->agg);
    pending_free(f->pend);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(file, sizeof file, "%s%s", f->path, suffix[i]);
        unlink(file);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---- building flushes ------------------------------------------------------- */

static void add(fixture *f, metric_type type, const char *name, double value, double weight,
                int64_t stamp_ms)
{
    char err[256] = "";
    metric_event ev = {
        .type = type, .name = name, .name_len = (uint16_t)strlen(name), .tags = "route:/a",
        .tags_len = 8, .value = value, .sample_rate = 1.0 / weight, .stamp_ms = stamp_ms,
    };
    if (aggregate_add(f->agg, &ev, err, sizeof err) != 0)
        fail_msg("aggregate_add: %s", err);
}

/* Adds every sample to "lat" at stamp_ms and to `all` (when not NULL). */
static void add_samples(fixture *f, const sample *d, size_t n, int64_t stamp_ms, ddsketch *all)
{
    for (size_t i = 0; i < n; i++) {
        add(f, METRIC_DISTRIBUTION, "lat", d[i].v, d[i].w, stamp_ms);
        if (all)
            assert_int_equal(ddsketch_add(all, d[i].v, d[i].w), 0);
    }
}

/* Notes the flush's one message (a new batch id at the next offset). */
static void note_message(fixture *f)
{
    char id[32], err[256];
    snprintf(id, sizeof id, "b%lld", (long long)f->next_offset);
    assert_int_equal(pending_add_batch(f->pend, id, strlen(id), 1000, "0123456789abcdef", 0,
                                       f->next_offset, err, sizeof err), 0);
    pending_note_offset(f->pend, 0, f->next_offset++);
}

static int commit(fixture *f, store_commit_stats *stats, char *err, size_t errlen)
{
    note_message(f);
    int rc = store_commit(f->st, "t", f->agg, f->pend, stats, err, errlen);
    aggregate_clear(f->agg);
    pending_clear(f->pend);
    return rc;
}

static void commit_ok(fixture *f, store_commit_stats *stats)
{
    char err[512] = "";
    if (commit(f, stats, err, sizeof err) != 0)
        fail_msg("store_commit: %s", err);
}

/* ---- reading back ------------------------------------------------------------ */

static sqlite3 *open_reader(const fixture *f)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    return db;
}

/* The stored blob of (name, "route:/a", type, bucket) through
 * SCHEMA_SKETCHES_FROM (malloc'd copy, *len bytes), or NULL when none. */
static unsigned char *stored_blob(const fixture *f, const char *name, const char *type,
                                  int64_t bucket, size_t *len)
{
    sqlite3 *db = open_reader(f);
    sqlite3_stmt *st;
    unsigned char *out = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, SCHEMA_SKETCHES_FROM, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "route:/a", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, bucket);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) == bucket) {
        *len = (size_t)sqlite3_column_bytes(st, 1);
        out = malloc(*len ? *len : 1);
        assert_non_null(out);
        memcpy(out, sqlite3_column_blob(st, 1), *len);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* The distribution sketch of "lat" in bucket. */
static unsigned char *stored_sketch(const fixture *f, int64_t bucket, size_t *len)
{
    return stored_blob(f, "lat", "distribution", bucket, len);
}

static double scalar(const fixture *f, const char *sql)
{
    sqlite3 *db = open_reader(f);
    sqlite3_stmt *st;
    double v = -12345;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void exec_sql(const fixture *f, const char *sql)
{
    sqlite3 *db = open_reader(f);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", sql, msg);
    sqlite3_close(db);
}

/* Every row of every table the store writes, as one string (malloc'd). */
static char *dump(const fixture *f)
{
    static const char sql[] =
        "SELECT 'M ' || name || ' ' || tags || ' ' || type || ' ' || bucket || ' ' || lines || ' '"
        " || value || ' ' || weight || ' ' || ifnull(min, 'N') || ' ' || ifnull(max, 'N') FROM metrics"
        " UNION ALL SELECT 'K ' || name || ' ' || tags || ' ' || type || ' ' || bucket || ' ' ||"
        " hex(data) FROM sketches"
        " UNION ALL SELECT 'S ' || name || ' ' || type || ' ' || first_bucket || ' ' || last_bucket"
        " || ' ' || total_value || ' ' || total_weight FROM series"
        " UNION ALL SELECT 'G ' || name || ' ' || value FROM gauges"
        " UNION ALL SELECT 'O ' || partition || ' ' || next_offset FROM kafka_offsets"
        " UNION ALL SELECT 'B ' || batch_id FROM batches ORDER BY 1";
    sqlite3 *db = open_reader(f);
    sqlite3_stmt *st;
    size_t len = 0, cap = 4096;
    char *out = malloc(cap);
    assert_non_null(out);
    out[0] = '\0';
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *row = (const char *)sqlite3_column_text(st, 0);
        size_t n = strlen(row);
        while (len + n + 2 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        memcpy(out + len, row, n);
        len += n;
        out[len++] = '\n';
        out[len] = '\0';
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

/* ---- the exact answer ------------------------------------------------------- */

static int by_value(const void *a, const void *b)
{
    double x = ((const sample *)a)->v, y = ((const sample *)b)->v;
    return (x > y) - (x < y);
}

/* ddsketch.h's rule on d sorted by value: the first value whose cumulative
 * weight exceeds q * (count - 1). */
static double exact_quantile(const sample *d, size_t n, double q)
{
    double total = 0.0, cum = 0.0;
    for (size_t i = 0; i < n; i++)
        total += d[i].w;
    for (size_t i = 0; i < n; i++) {
        cum += d[i].w;
        if (cum > q * (total - 1.0))
            return d[i].v;
    }
    return d[n - 1].v;
}

static void check_quantiles(const ddsketch *s, sample *d, size_t n)
{
    qsort(d, n, sizeof *d, by_value);
    for (size_t i = 0; i < NQ; i++) {
        double got, want = exact_quantile(d, n, QS[i]);
        assert_int_equal(ddsketch_quantile(s, QS[i], &got), 0);
        if (!(fabs(got - want) <= BOUND * fabs(want)))
            fail_msg("q=%g: stored sketch %.17g, exact union %.17g", QS[i], got, want);
    }
}

/* ---- data: two flushes of one bucket, overlapping ranges -------------------- */

enum { N1 = 100, N2 = 200 };

/* Flush 1: 1..100 ms, every fourth sampled at 1/2; flush 2: 50..448 ms by 2,
 * every fifth sampled at 1/4. */
static void make_data(sample *d1, sample *d2)
{
    for (int i = 0; i < N1; i++)
        d1[i] = (sample){i + 1, i % 4 == 0 ? 2.0 : 1.0};
    for (int i = 0; i < N2; i++)
        d2[i] = (sample){50 + 2 * i, i % 5 == 0 ? 4.0 : 1.0};
}

/* ---- tests --------------------------------------------------------------------- */

static void test_bucket_sketch_is_sketch_of_union(void **state)
{
    fixture *f = *state;
    sample d[N1 + N2];
    make_data(d, d + N1);
    ddsketch *all = ddsketch_new();
    assert_non_null(all);
    store_commit_stats stats;

    add_samples(f, d, N1, 1000, all);
    add(f, METRIC_COUNTER, "lat", 1, 1, 1000);
    add(f, METRIC_GAUGE, "lat", 1, 1, 1000);
    commit_ok(f, &stats);
    assert_int_equal(stats.rows, 3);
    assert_int_equal(stats.sketches, 1);

    add_samples(f, d + N1, N2, 2000, all);           /* the same bucket (0) */
    add(f, METRIC_DISTRIBUTION, "lat", 7, 1, 12000);  /* bucket 10 */
    commit_ok(f, &stats);
    assert_int_equal(stats.sketches, 2);

    /* Only distributions have sketches: buckets 0 and 10. */
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches"), 2);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches WHERE type <> 'distribution'"), 0);

    size_t len = 0;
    unsigned char *blob = stored_sketch(f, 0, &len);
    assert_non_null(blob);
    unsigned char *want = NULL;
    size_t want_len = 0;
    assert_int_equal(ddsketch_encode(all, &want, &want_len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(blob, want, len); /* the sketch of the union, byte for byte */

    ddsketch *got = ddsketch_new();
    assert_non_null(got);
    char err[128] = "";
    if (ddsketch_decode(got, blob, len, err, sizeof err) != 0)
        fail_msg("decode the stored sketch: %s", err);
    assert_true(ddsketch_count(got) ==
                scalar(f, "SELECT weight FROM metrics WHERE type = 'distribution' AND bucket = 0"));
    check_quantiles(got, d, N1 + N2);
    printf("measured: stored sketch of %d values in 1..448 ms: %zu bytes, %zu bins\n", N1 + N2,
           len, ddsketch_bins(got));

    free(blob);
    free(want);
    ddsketch_free(got);
    ddsketch_free(all);
}

static void test_sketch_merge_function(void **state)
{
    fixture *f = *state;
    sample d[N1 + N2];
    make_data(d, d + N1);
    ddsketch *a = ddsketch_new(), *b = ddsketch_new(), *all = ddsketch_new();
    assert_true(a && b && all);
    for (size_t i = 0; i < N1 + N2; i++) {
        assert_int_equal(ddsketch_add(i < N1 ? a : b, d[i].v, d[i].w), 0);
        assert_int_equal(ddsketch_add(all, d[i].v, d[i].w), 0);
    }
    unsigned char *ea, *eb, *eall;
    size_t la, lb, lall;
    assert_int_equal(ddsketch_encode(a, &ea, &la), 0);
    assert_int_equal(ddsketch_encode(b, &eb, &lb), 0);
    assert_int_equal(ddsketch_encode(all, &eall, &lall), 0);

    /* A connection of our own, set up like the store's. */
    sqlite3 *db = open_reader(f);
    char err[512] = "";
    if (schema_init_writer(db, f->path, BUCKET_SECONDS, err, sizeof err) != 0)
        fail_msg("schema_init_writer: %s", err);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT tally_sketch_merge(?1, ?2, ?3)", -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, "distribution", -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, ea, (int)la, SQLITE_STATIC);
    sqlite3_bind_blob(st, 3, eb, (int)lb, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), (int)lall);
    assert_memory_equal(sqlite3_column_blob(st, 0), eall, lall);
    sqlite3_reset(st);

    /* Refusals, each naming the function: a corrupt blob (version byte 7,
     * then a truncated one), a NULL, a type without a sketch. */
    ea[0] = 7;
    assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
    assert_non_null(strstr(sqlite3_errmsg(db), "tally_sketch_merge: argument 2"));
    assert_non_null(strstr(sqlite3_errmsg(db), "version 7"));
    sqlite3_reset(st);
    ea[0] = DDSKETCH_FORMAT_VERSION;
    sqlite3_bind_blob(st, 3, eb, (int)lb - 1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
    assert_non_null(strstr(sqlite3_errmsg(db), "tally_sketch_merge: argument 3"));
    sqlite3_reset(st);
    sqlite3_bind_null(st, 3);
    assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
    assert_non_null(strstr(sqlite3_errmsg(db), "tally_sketch_merge: argument 3 is not a blob"));
    sqlite3_reset(st);
    sqlite3_bind_blob(st, 3, eb, (int)lb, SQLITE_STATIC);
    sqlite3_bind_text(st, 1, "counter", -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
    assert_non_null(strstr(sqlite3_errmsg(db), "tally_sketch_merge: no sketch merge for type 'counter'"));
    sqlite3_finalize(st);
    sqlite3_close(db);

    free(ea);
    free(eb);
    free(eall);
    ddsketch_free(a);
    ddsketch_free(b);
    ddsketch_free(all);
}

static void test_corrupt_stored_sketch_fails_commit(void **state)
{
    fixture *f = *state;
    sample d[N1 + N2];
    make_data(d, d + N1);
    add_samples(f, d, N1, 1000, NULL);
    commit_ok(f, NULL);
    exec_sql(f, "UPDATE sketches SET data = CAST(x'07' || substr(data, 2) AS BLOB) WHERE bucket = 0");
    char *before = dump(f);

    /* The next flush touches the corrupt bucket, among other writes. */
    add_samples(f, d + N1, N2, 2000, NULL);
    add(f, METRIC_COUNTER, "c", 5, 1, 2000);
    add(f, METRIC_GAUGE, "g", 3, 1, 2000);
    char err[512] = "";
    assert_int_equal(commit(f, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "tally_sketch_merge"));
    assert_non_null(strstr(err, "unsupported ddsketch version 7"));
    assert_non_null(strstr(err, "name lat, tags 'route:/a', bucket 0"));

    char *after = dump(f);
    assert_string_equal(after, before); /* rolled back: nothing of the flush */
    free(after);

    /* The transaction is closed: a flush not touching that bucket commits. */
    add(f, METRIC_DISTRIBUTION, "lat", 9, 1, 12000);
    commit_ok(f, NULL);
    after = dump(f);
    assert_string_not_equal(after, before);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches"), 2);
    free(after);
    free(before);
}

/* A version 3 database (no series catalog, no sketches) upgraded: its
 * buckets have no sketch; a bucket flushed again after the upgrade gets a
 * sketch of the later values only, whose count then falls short of the
 * row's weight (schema.h: how a reader tells). */
static void test_upgraded_rows_have_no_sketch(void **state)
{
    fixture *f = *state;
    add(f, METRIC_DISTRIBUTION, "lat", 5, 1, 1000);
    add(f, METRIC_DISTRIBUTION, "lat", 6, 1, 12000);
    commit_ok(f, NULL);
    store_close(f->st);
    f->st = NULL;
    exec_sql(f, "DROP TABLE sketches; DROP TABLE series; DROP INDEX IF EXISTS series_prom_name;"
                " UPDATE meta SET value = '3' WHERE key = 'schema_version'");
    char err[512] = "";
    int64_t next[1];
    if (store_open(&f->st, f->path, "FULL", BUCKET_SECONDS, 60, err, sizeof err) != 0 ||
        store_claim(f->st, "t", (const int[]){0}, 1, 1, "test", next, err, sizeof err) != 0)
        fail_msg("store_open after the upgrade: %s", err);
    assert_int_equal((int)scalar(f, "SELECT value FROM meta WHERE key = 'schema_version'"), SCHEMA_VERSION);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches"), 0);
    size_t len;
    assert_null(stored_sketch(f, 0, &len));

    add(f, METRIC_DISTRIBUTION, "lat", 7, 1, 2000);   /* bucket 0 again */
    add(f, METRIC_DISTRIBUTION, "lat", 8, 1, 22000);  /* bucket 20, new */
    commit_ok(f, NULL);
    assert_null(stored_sketch(f, 10, &len));          /* untouched since the upgrade */
    unsigned char *blob = stored_sketch(f, 0, &len);
    assert_non_null(blob);
    ddsketch *s0 = ddsketch_new();
    assert_non_null(s0);
    assert_int_equal(ddsketch_decode(s0, blob, len, err, sizeof err), 0);
    assert_true(ddsketch_count(s0) == 1); /* the row's weight is 2 */
    assert_true(scalar(f, "SELECT weight FROM metrics WHERE bucket = 0") == 2);
    free(blob);
    ddsketch_free(s0);
}

/* ---- sets ---------------------------------------------------------------- */

/* Adds member n of family "F-n" (its digest, as the parser makes it) to the
 * set `name` at stamp_ms, and to `all` (when not NULL) as the flusher does. */
static void add_member(fixture *f, const char *name, unsigned n, int64_t stamp_ms, hll *all)
{
    char m[32], err[256] = "";
    int len = snprintf(m, sizeof m, "F-%u", n);
    metric_event ev = {
        .type = METRIC_SET, .name = name, .name_len = (uint16_t)strlen(name), .tags = "route:/a",
        .tags_len = 8, .sample_rate = 1.0, .stamp_ms = stamp_ms,
        .member = hash_digest64(m, (size_t)len),
    };
    if (aggregate_add(f->agg, &ev, err, sizeof err) != 0)
        fail_msg("aggregate_add: %s", err);
    if (all)
        assert_int_not_equal(hll_add_hash(all, redis_hll_hash(ev.member)), -1);
}

/* A set's bucket flushed twice holds the HyperLogLog of the union of both
 * flushes' members, byte for byte; a set has a catalog row and sketches but
 * no metrics row. */
static void test_set_bucket_is_hll_of_union(void **state)
{
    fixture *f = *state;
    hll *all = hll_new(), *later = hll_new();
    assert_true(all && later);
    store_commit_stats stats;
    for (unsigned i = 0; i < 3000; i++) /* 0..2999, each twice */
        add_member(f, "users", i % 1500 + (i / 1500) * 1500, 1000 + i % 7, all);
    for (unsigned i = 0; i < 3000; i++)
        add_member(f, "users", i, 2000, NULL);
    add(f, METRIC_COUNTER, "users", 1, 1, 1000);
    commit_ok(f, &stats);
    assert_int_equal(stats.rows, 1);     /* the counter's */
    assert_int_equal(stats.sketches, 1); /* the set's */

    for (unsigned i = 2000; i < 6000; i++) /* 1,000 of them seen before */
        add_member(f, "users", i, 3000, all);
    for (unsigned i = 6000; i < 6100; i++)
        add_member(f, "users", i, 12000, later); /* bucket 10 */
    commit_ok(f, &stats);
    assert_int_equal(stats.rows, 0);
    assert_int_equal(stats.sketches, 2);

    assert_int_equal((int)scalar(f, "SELECT count(*) FROM metrics WHERE type = 'set'"), 0);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches WHERE type = 'set'"), 2);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM series WHERE type = 'set' AND"
                                    " name = 'users' AND tags = 'route:/a' AND first_bucket = 0"
                                    " AND last_bucket = 10 AND total_value = 0"),
                     1);
    assert_int_equal((int)scalar(f, "SELECT total_weight FROM series WHERE type = 'set'"),
                     6000 + 4000 + 100); /* the lines */

    size_t len = 0, want_len = 0;
    unsigned char *blob = stored_blob(f, "users", "set", 0, &len), *want = NULL;
    assert_non_null(blob);
    assert_int_equal(hll_encode(all, &want, &want_len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(blob, want, len); /* the HyperLogLog of the union, byte for byte */
    hll *got = hll_new();
    char err[128] = "";
    assert_non_null(got);
    if (hll_decode(got, blob, len, err, sizeof err) != 0)
        fail_msg("decode the stored hll: %s", err);
    uint64_t n = hll_count(got);
    printf("measured: a bucket of 6000 distinct members over two flushes counts %llu (%zu bytes)\n",
           (unsigned long long)n, len);
    assert_true(n > 6000 * (1 - 3 * 0.0081) && n < 6000 * (1 + 3 * 0.0081)); /* 3 std errors */
    free(blob);
    free(want);

    blob = stored_blob(f, "users", "set", 10, &len);
    assert_non_null(blob);
    assert_int_equal(hll_encode(later, &want, &want_len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(blob, want, len);
    hll_clear(got);
    assert_int_equal(hll_decode(got, blob, len, err, sizeof err), 0);
    assert_int_equal(hll_count(got), 100); /* sparse: exact */
    free(blob);
    free(want);
    hll_free(got);
    hll_free(all);
    hll_free(later);
}

/* tally_sketch_merge('set', a, b) is the register-wise max of the two
 * HyperLogLogs (the encoding of the union's); a corrupt one is refused. */
static void test_set_sketch_merge_function(void **state)
{
    fixture *f = *state;
    hll *a = hll_new(), *b = hll_new(), *all = hll_new();
    assert_true(a && b && all);
    for (unsigned i = 0; i < 5000; i++) {
        uint64_t h = redis_hll_hash(hash_digest64(&i, sizeof i));
        assert_int_not_equal(hll_add_hash(i < 3000 ? a : b, h), -1);
        assert_int_not_equal(hll_add_hash(all, h), -1);
    }
    unsigned char *ea, *eb, *eall;
    size_t la, lb, lall;
    assert_int_equal(hll_encode(a, &ea, &la), 0);
    assert_int_equal(hll_encode(b, &eb, &lb), 0);
    assert_int_equal(hll_encode(all, &eall, &lall), 0);
    sqlite3 *db = open_reader(f);
    char err[512] = "";
    if (schema_init_writer(db, f->path, BUCKET_SECONDS, err, sizeof err) != 0)
        fail_msg("schema_init_writer: %s", err);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT tally_sketch_merge('set', ?1, ?2)", -1, &st,
                                        NULL), SQLITE_OK);
    sqlite3_bind_blob(st, 1, ea, (int)la, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, eb, (int)lb, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_bytes(st, 0), (int)lall);
    assert_memory_equal(sqlite3_column_blob(st, 0), eall, lall);
    sqlite3_reset(st);
    eb[0] = 9; /* an hll version that does not exist */
    assert_int_equal(sqlite3_step(st), SQLITE_ERROR);
    assert_non_null(strstr(sqlite3_errmsg(db), "tally_sketch_merge: argument 3: corrupt set sketch"));
    assert_non_null(strstr(sqlite3_errmsg(db), "unsupported hll version 9"));
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(ea);
    free(eb);
    free(eall);
    hll_free(a);
    hll_free(b);
    hll_free(all);
}

/* ---- fencing (store_claim) ------------------------------------------------------- */

/* A second store claims partition 0: it resumes at the first one's offset,
 * and the first can never commit for it again (nothing of that flush is
 * written); the claimant commits. */
static void test_claim_fences_the_previous_owner(void **state)
{
    fixture *f = *state;
    char err[512] = "";
    add(f, METRIC_COUNTER, "c", 1, 1, 1000);
    commit_ok(f, NULL);
    assert_int_equal(store_epoch(f->st, 0), 1);

    store *other = NULL;
    int64_t next[1];
    assert_int_equal(store_open(&other, f->path, "FULL", BUCKET_SECONDS, 60, err, sizeof err), 0);
    assert_int_equal(store_claim(other, "t", (const int[]){0}, 1, 1, "flusher-b", next, err,
                                 sizeof err), 0);
    assert_int_equal(next[0], 1);
    assert_int_equal(store_epoch(other, 0), 2);

    add(f, METRIC_COUNTER, "c", 5, 1, 1000);
    assert_int_equal(commit(f, NULL, err, sizeof err), STORE_FENCED);
    assert_non_null(strstr(err, "claimed by flusher-b at epoch 2"));
    assert_int_equal((int)scalar(f, "SELECT value FROM metrics WHERE name = 'c'"), 1);
    assert_int_equal((int)scalar(f, "SELECT next_offset FROM kafka_offsets"), 1);

    store *mine = f->st; /* the claimant commits the same offset */
    f->st = other;
    f->next_offset = next[0];
    add(f, METRIC_COUNTER, "c", 7, 1, 1000);
    commit_ok(f, NULL);
    assert_int_equal((int)scalar(f, "SELECT value FROM metrics WHERE name = 'c'"), 8);
    assert_int_equal((int)scalar(f, "SELECT epoch FROM partition_claims"), 2);
    f->st = mine;
    store_close(other);
}

/* Without a claim (never made, or released at a revoke) nothing commits. */
static void test_released_claim_cannot_commit(void **state)
{
    fixture *f = *state;
    char err[512] = "";
    store_release(f->st);
    assert_int_equal(store_epoch(f->st, 0), 0);
    add(f, METRIC_COUNTER, "c", 1, 1, 1000);
    assert_int_equal(commit(f, NULL, err, sizeof err), STORE_FENCED);
    assert_non_null(strstr(err, "never claimed it"));
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM metrics"), 0);
    assert_int_equal(store_claim(f->st, "t", (const int[]){3}, 1, 1, "x", (int64_t[1]){0}, err,
                                 sizeof err), -1);
    assert_non_null(strstr(err, "outside"));
}

/* ---- retention (retention.h, store_retention_step) ------------------------------- */

#define HOUR0 1699999200LL /* a whole hour, in Unix seconds */
#define DAYS(n) ((int64_t)(n) * 86400)

static int first_at(void *ctx, int level, int64_t from, int64_t *bucket, char *err,
                    size_t errlen)
{
    return store_first_at(ctx, level, from, bucket, err, errlen);
}

/* Runs every retention step due at `now`; returns how many ran. */
static int retain(fixture *f, int64_t now)
{
    tally_config cfg;
    config_defaults(&cfg);
    retention_rows rows = {first_at, f->st};
    retention_step step;
    char err[512] = "";
    int rc, steps = 0;
    while ((rc = retention_next(store_rollups(f->st), &cfg, now, &rows, &step, err,
                                sizeof err)) == 1) {
        if (store_retention_step(f->st, &step, NULL, err, sizeof err) != 0)
            fail_msg("store_retention_step: %s", err);
        assert_true(++steps < 200);
    }
    if (rc != 0)
        fail_msg("retention_next: %s", err);
    return steps;
}

/* One hour of every type at HOUR0: bucket i (of 360) gets counter "c" i+1,
 * gauge "g" i, distribution "lat" the value i+1 and set "u" member i % 50. */
static void flush_an_hour(fixture *f, ddsketch *all)
{
    for (int i = 0; i < 360; i++) {
        int64_t ms = (HOUR0 + 10 * i + 5) * 1000;
        add(f, METRIC_COUNTER, "c", i + 1, 1, ms);
        add(f, METRIC_GAUGE, "g", i, 1, ms);
        add(f, METRIC_DISTRIBUTION, "lat", i + 1, 1, ms);
        assert_int_equal(ddsketch_add(all, i + 1, 1), 0);
        add_member(f, "u", (unsigned)(i % 50), ms, NULL);
    }
    commit_ok(f, NULL);
}

/* The roll-up rows of width w: count, and the values of one series. */
static double rolled(const fixture *f, const char *col, const char *name, int width)
{
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT %s FROM rollup_metrics WHERE name = '%s' AND width = %d",
             col, name, width);
    return scalar(f, sql);
}

static void assert_hour_rolled(const fixture *f, int width, const ddsketch *all)
{
    assert_int_equal((int)rolled(f, "sum(value)", "c", width), 360 * 361 / 2);
    assert_int_equal((int)rolled(f, "sum(lines)", "c", width), 360);
    assert_int_equal((int)rolled(f, "max(value)", "g", width), 359);
    assert_int_equal((int)rolled(f, "sum(weight)", "lat", width), 360);
    assert_int_equal((int)rolled(f, "min(min)", "lat", width), 1);
    assert_int_equal((int)rolled(f, "max(max)", "lat", width), 360);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM rollup_sketches WHERE width = %d"
             " AND type = 'distribution'", width);
    assert_int_equal((int)scalar(f, sql), width == 3600 ? 1 : 60);
    if (width != 3600)
        return;
    /* the hour's merged sketch is the sketch of all its values */
    sqlite3 *db = open_reader(f);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT data FROM rollup_sketches WHERE width = 3600"
                                            " AND type = 'distribution'", -1, &st, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    ddsketch *got = ddsketch_new();
    char err[128];
    assert_int_equal(ddsketch_decode(got, sqlite3_column_blob(st, 0),
                                     (size_t)sqlite3_column_bytes(st, 0), err, sizeof err), 0);
    for (size_t i = 0; i < NQ; i++) {
        double a, b;
        assert_int_equal(ddsketch_quantile(got, QS[i], &a), 0);
        assert_int_equal(ddsketch_quantile(all, QS[i], &b), 0);
        assert_float_equal(a, b, 1e-9);
    }
    ddsketch_free(got);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

/* The distinct members of set "u" in rollup_sketches width w (all its rows). */
static uint64_t set_members(const fixture *f, int width)
{
    sqlite3 *db = open_reader(f);
    sqlite3_stmt *st;
    hll *h = hll_new();
    char err[128];
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT data FROM rollup_sketches WHERE name = 'u'"
                                            " AND width = ?1", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int(st, 1, width);
    while (sqlite3_step(st) == SQLITE_ROW)
        assert_int_equal(hll_decode(h, sqlite3_column_blob(st, 0),
                                    (size_t)sqlite3_column_bytes(st, 0), err, sizeof err), 0);
    uint64_t n = hll_count(h);
    hll_free(h);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/* Retention rolls an hour up to 1 min and 1 h with unchanged sums, the
 * gauge's last value and the very sketch of the hour; past each age it
 * deletes that resolution (the series totals stay); a late row adds to the
 * roll-ups that hold its window; past the last age a set keeps its members
 * in its all-time row. */
static void test_retention_rolls_up_and_expires(void **state)
{
    fixture *f = *state;
    ddsketch *all = ddsketch_new();
    flush_an_hour(f, all);

    assert_true(retain(f, HOUR0 + DAYS(1)) > 0);
    assert_hour_rolled(f, 60, all);
    assert_hour_rolled(f, 3600, all);
    assert_int_equal(set_members(f, 3600), 50);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM metrics"), 3 * 360); /* raw kept */
    assert_int_equal(retain(f, HOUR0 + DAYS(1)), 0);                          /* nothing due */

    retain(f, HOUR0 + DAYS(100)); /* raw (14 d) and minutes (90 d) go */
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM metrics"), 0);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM sketches"), 0);
    assert_int_equal((int)rolled(f, "count(*)", "c", 60), 0);
    assert_hour_rolled(f, 3600, all);
    assert_int_equal((int)scalar(f, "SELECT total_value FROM series WHERE name = 'c'"),
                     360 * 361 / 2);

    /* a late counter line for the old hour: only its hour row (and the total) grow */
    add(f, METRIC_COUNTER, "c", 1000, 1, (HOUR0 + 15) * 1000);
    commit_ok(f, NULL);
    assert_int_equal((int)rolled(f, "sum(value)", "c", 3600), 360 * 361 / 2 + 1000);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM metrics"), 0);
    assert_int_equal((int)rolled(f, "count(*)", "c", 60), 0);
    assert_int_equal((int)scalar(f, "SELECT total_value FROM series WHERE name = 'c'"),
                     360 * 361 / 2 + 1000);

    retain(f, HOUR0 + DAYS(800)); /* hours (730 d) go; the set folds */
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM rollup_metrics"), 0);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM rollup_sketches WHERE width > 0"), 0);
    assert_int_equal(set_members(f, 0), 50);
    assert_int_equal((int)scalar(f, "SELECT total_value FROM series WHERE name = 'c'"),
                     360 * 361 / 2 + 1000);
    ddsketch_free(all);
}

/* A step that fails (here: a corrupt sketch) changes nothing, state included. */
static void test_retention_step_is_atomic(void **state)
{
    fixture *f = *state;
    ddsketch *all = ddsketch_new();
    flush_an_hour(f, all);
    exec_sql(f, "UPDATE sketches SET data = x'00' WHERE type = 'distribution'"
                " AND bucket = 1699999200");
    tally_config cfg;
    config_defaults(&cfg);
    retention_rows rows = {first_at, f->st};
    retention_step step;
    char err[512] = "";
    assert_int_equal(retention_next(store_rollups(f->st), &cfg, HOUR0 + DAYS(1), &rows, &step,
                                    err, sizeof err), 1);
    assert_int_equal(step.kind, RETENTION_ROLLUP);
    assert_int_equal(store_retention_step(f->st, &step, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "corrupt"));
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM rollup_metrics"), 0);
    assert_int_equal((int)scalar(f, "SELECT count(*) FROM rollup_state"), 0);
    assert_int_equal(store_rollups(f->st)->level[1].rolled_until, 0);
    ddsketch_free(all);
}

/* Two flushers on one file: a step planned from a state another store has
 * moved on from changes nothing and asks for a new plan. */
static void test_retention_stale_plan_is_refused(void **state)
{
    fixture *f = *state;
    ddsketch *all = ddsketch_new();
    flush_an_hour(f, all);
    char err[512] = "";
    store *other = NULL;
    assert_int_equal(store_open(&other, f->path, "FULL", BUCKET_SECONDS, 60, err, sizeof err), 0);
    tally_config cfg;
    config_defaults(&cfg);
    retention_rows rows = {first_at, f->st};
    retention_step step;
    assert_int_equal(retention_next(store_rollups(f->st), &cfg, HOUR0 + DAYS(1), &rows, &step,
                                    err, sizeof err), 1);
    assert_int_equal(store_retention_step(other, &step, NULL, err, sizeof err), 0);
    double rows_after_one = scalar(f, "SELECT count(*) FROM rollup_metrics");
    double sum_after_one = rolled(f, "sum(value)", "c", 60);
    assert_true(rows_after_one > 0 && sum_after_one > 0);
    assert_int_equal(store_retention_step(f->st, &step, NULL, err, sizeof err), STORE_STALE_PLAN);
    assert_float_equal(scalar(f, "SELECT count(*) FROM rollup_metrics"), rows_after_one, 0);
    assert_float_equal(rolled(f, "sum(value)", "c", 60), sum_after_one, 0); /* not twice */
    store_close(other);
    retain(f, HOUR0 + DAYS(1)); /* planned again from the stored state */
    assert_hour_rolled(f, 60, all);
    assert_hour_rolled(f, 3600, all);
    ddsketch_free(all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bucket_sketch_is_sketch_of_union, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sketch_merge_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_stored_sketch_fails_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgraded_rows_have_no_sketch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_bucket_is_hll_of_union, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_sketch_merge_function, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_rolls_up_and_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_step_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_stale_plan_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_fences_the_previous_owner, setup, teardown),
        cmocka_unit_test_setup_teardown(test_released_claim_cannot_commit, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
