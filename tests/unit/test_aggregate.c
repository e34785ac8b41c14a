/*
 * test_aggregate.c — unit tests of the flusher's pre-aggregation (aggregate.h)
 * and of the pending flush's batch-id set (pending.h).
 *
 * The last group runs the store (store.h) against a temporary SQLite file:
 * it is where relative gauges are resolved and flushes are combined, so the
 * aggregate's output is only meaningful together with it.
 *
 * Each test builds events by hand, folds them, and checks the rows the store
 * would write. Rows are looked up by (name, tags, type, bucket), never by
 * position, except where first-seen order is itself the property tested.
 */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* cmocka 1.1's assert_float_equal compares floats; these are doubles. */
#define assert_double_equal(a, b, eps) assert_double_near((a), (b), (eps), __FILE__, __LINE__)

static void assert_double_near(double a, double b, double eps, const char *file, int line)
{
    if (!(fabs(a - b) <= eps))
        fail_msg("%s:%d: %.17g != %.17g (epsilon %g)", file, line, a, b, eps);
}

#include "aggregate.h"
#include "hash.h"
#include "pending.h"
#include "redis_hll.h"
#include "store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <unistd.h>

static metric_event ev_make(metric_type type, const char *name, const char *tags, double value,
                            double rate, int64_t stamp_ms, uint8_t flags)
{
    metric_event ev = {
        .type = type, .flags = flags, .name = name, .name_len = (uint16_t)strlen(name),
        .tags = tags, .tags_len = tags ? (uint16_t)strlen(tags) : 0,
        .value = value, .sample_rate = rate, .stamp_ms = stamp_ms,
    };
    return ev;
}

static void add(aggregate *a, metric_type type, const char *name, const char *tags, double value,
                double rate, int64_t stamp_ms, uint8_t flags)
{
    char err[256] = "";
    metric_event ev = ev_make(type, name, tags, value, rate, stamp_ms, flags);
    int rc = aggregate_add(a, &ev, err, sizeof err);
    if (rc != 0)
        fail_msg("aggregate_add: %s", err);
}

/* The row of (name, tags, type, bucket), or NULL. */
static const agg_row *find_row(const aggregate *a, const char *name, const char *tags,
                               metric_type type, int64_t bucket)
{
    for (size_t i = 0; i < aggregate_row_count(a); i++) {
        const agg_row *r = aggregate_row_at(a, i);
        const agg_series *s = aggregate_series_at(a, r->series);
        if (s->type == type && r->bucket == bucket && strcmp(s->name, name) == 0 &&
            strcmp(s->tags, tags ? tags : "") == 0)
            return r;
    }
    return NULL;
}

static const agg_series *find_series(const aggregate *a, const char *name, const char *tags, metric_type type)
{
    for (size_t i = 0; i < aggregate_series_count(a); i++) {
        const agg_series *s = aggregate_series_at(a, i);
        if (s->type == type && strcmp(s->name, name) == 0 && strcmp(s->tags, tags ? tags : "") == 0)
            return s;
    }
    return NULL;
}

static int setup(void **state)
{
    *state = aggregate_new(10);
    return *state ? 0 : -1;
}

static int teardown(void **state)
{
    aggregate_free(*state);
    return 0;
}

/* ---- buckets ---------------------------------------------------------------- */

static void test_bucket_boundaries(void **state)
{
    (void)state;
    assert_int_equal(aggregate_bucket(0, 10), 0);
    assert_int_equal(aggregate_bucket(9999, 10), 0);
    assert_int_equal(aggregate_bucket(10000, 10), 10);
    assert_int_equal(aggregate_bucket(19999, 10), 10);
    /* Negative stamps floor towards minus infinity, not towards zero. */
    assert_int_equal(aggregate_bucket(-1, 10), -10);
    assert_int_equal(aggregate_bucket(-10000, 10), -10);
    assert_int_equal(aggregate_bucket(-10001, 10), -20);
    assert_int_equal(aggregate_bucket(-999, 1), -1);
    assert_int_equal(aggregate_bucket(-1000, 1), -1);
    assert_int_equal(aggregate_bucket(-1001, 1), -2);
    /* A realistic stamp and a day-long bucket. */
    assert_int_equal(aggregate_bucket(1764131509123LL, 10), 1764131500LL);
    assert_int_equal(aggregate_bucket(1764131509123LL, 86400), 1764115200LL);
    assert_int_equal(aggregate_bucket(1764131509123LL, 1), 1764131509LL);
}

static void test_events_land_in_their_buckets(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_COUNTER, "hits", NULL, 1, 1.0, -1, 0);
    add(a, METRIC_COUNTER, "hits", NULL, 1, 1.0, 0, 0);
    add(a, METRIC_COUNTER, "hits", NULL, 1, 1.0, 9999, 0);
    add(a, METRIC_COUNTER, "hits", NULL, 1, 1.0, 10000, 0);
    assert_int_equal(aggregate_row_count(a), 3);
    assert_int_equal(aggregate_series_count(a), 1);
    assert_int_equal(find_row(a, "hits", NULL, METRIC_COUNTER, -10)->lines, 1);
    assert_int_equal(find_row(a, "hits", NULL, METRIC_COUNTER, 0)->lines, 2);
    assert_int_equal(find_row(a, "hits", NULL, METRIC_COUNTER, 10)->lines, 1);
    assert_int_equal(aggregate_events(a), 4);
}

/* ---- counters --------------------------------------------------------------- */

static void test_counter_rates(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_COUNTER, "req", "env:prod", 3, 1.0, 1000, 0);
    add(a, METRIC_COUNTER, "req", "env:prod", 2, 0.5, 2000, 0);   /* counts as 4 */
    add(a, METRIC_COUNTER, "req", "env:prod", 1, 0.25, 3000, 0);  /* counts as 4 */
    add(a, METRIC_COUNTER, "req", "env:dev", 7, 1.0, 3000, 0);    /* other series */
    add(a, METRIC_COUNTER, "req", NULL, -2, 1.0, 3000, 0);        /* untagged: other series */
    const agg_row *r = find_row(a, "req", "env:prod", METRIC_COUNTER, 0);
    assert_non_null(r);
    assert_int_equal(r->lines, 3);
    assert_double_equal(r->value, 11.0, 1e-12);
    assert_double_equal(r->weight, 1 + 2 + 4, 1e-12);
    assert_false(r->has_range);
    assert_double_equal(find_row(a, "req", "env:dev", METRIC_COUNTER, 0)->value, 7, 0);
    assert_double_equal(find_row(a, "req", NULL, METRIC_COUNTER, 0)->value, -2, 0);
    assert_int_equal(aggregate_series_count(a), 3);
}

/* A folded counter (the StatsD listeners': event.h extra_lines) counts as the
 * lines it stands for: the same row as those lines one by one. */
static void test_folded_counter(void **state)
{
    aggregate *a = *state;
    char err[256] = "";
    metric_event ev = ev_make(METRIC_COUNTER, "req", "k:v", 9, 0.5, 1000, 0);
    ev.extra_lines = 2; /* three lines at rate 0.5: 2, 3 and 4 */
    assert_int_equal(aggregate_add(a, &ev, err, sizeof err), 0);
    add(a, METRIC_COUNTER, "req", "k:v", 1, 0.5, 2000, 0);
    const agg_row *r = find_row(a, "req", "k:v", METRIC_COUNTER, 0);
    assert_non_null(r);
    assert_int_equal(r->lines, 4);
    assert_double_equal(r->value, (9 + 1) / 0.5, 0);
    assert_double_equal(r->weight, 4 / 0.5, 0);
}

static void test_types_are_separate_series(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_COUNTER, "x", NULL, 1, 1.0, 0, 0);
    add(a, METRIC_GAUGE, "x", NULL, 5, 1.0, 0, 0);
    add(a, METRIC_DISTRIBUTION, "x", NULL, 9, 1.0, 0, 0);
    assert_int_equal(aggregate_series_count(a), 3);
    assert_double_equal(find_row(a, "x", NULL, METRIC_COUNTER, 0)->value, 1, 0);
    assert_double_equal(find_row(a, "x", NULL, METRIC_GAUGE, 0)->value, 5, 0);
    assert_double_equal(find_row(a, "x", NULL, METRIC_DISTRIBUTION, 0)->value, 9, 0);
}

static void test_name_tags_split_is_part_of_identity(void **state)
{
    aggregate *a = *state;
    /* Same bytes overall, split differently between name and tags. */
    add(a, METRIC_COUNTER, "ab", "c:d", 1, 1.0, 0, 0);
    add(a, METRIC_COUNTER, "abc", ":d", 1, 1.0, 0, 0);
    assert_int_equal(aggregate_series_count(a), 2);
}

/* ---- distributions ------------------------------------------------------------ */

static void test_distribution(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_DISTRIBUTION, "lat", "route:/a", 12.5, 1.0, 500, 0);
    add(a, METRIC_DISTRIBUTION, "lat", "route:/a", 3.0, 0.5, 600, 0);
    add(a, METRIC_DISTRIBUTION, "lat", "route:/a", 40.0, 0.1, 700, 0);
    add(a, METRIC_DISTRIBUTION, "lat", "route:/a", -1.0, 1.0, 12000, 0); /* next bucket */
    const agg_row *r = find_row(a, "lat", "route:/a", METRIC_DISTRIBUTION, 0);
    assert_non_null(r);
    assert_int_equal(r->lines, 3);
    assert_double_equal(r->value, 12.5 + 6.0 + 400.0, 1e-9);
    assert_double_equal(r->weight, 1 + 2 + 10, 1e-9);
    assert_true(r->has_range);
    assert_double_equal(r->min, 3.0, 0);   /* of the values, not value/rate */
    assert_double_equal(r->max, 40.0, 0);
    r = find_row(a, "lat", "route:/a", METRIC_DISTRIBUTION, 10);
    assert_int_equal(r->lines, 1);
    assert_double_equal(r->min, -1.0, 0);
    assert_double_equal(r->max, -1.0, 0);
}

/* The exact weighted q-quantile of values[0..n) (ascending) with weights
 * w[0..n), by ddsketch.h's rule: the first value whose cumulative weight
 * exceeds q * (count - 1). */
static double exact_weighted_quantile(const double *values, const double *w, size_t n, double q)
{
    double total = 0.0, cum = 0.0;
    for (size_t i = 0; i < n; i++)
        total += w[i];
    for (size_t i = 0; i < n; i++) {
        cum += w[i];
        if (cum > q * (total - 1.0))
            return values[i];
    }
    return values[n - 1];
}

static void test_distribution_sketch(void **state)
{
    aggregate *a = *state;
    /* 1..1000 ms; every third line sampled at 1/4 (weight 4, exact in binary),
     * added in a scrambled order (i * 7919 mod 1000 visits each once). */
    enum { N = 1000 };
    static double values[N], weights[N];
    for (int i = 0; i < N; i++) {
        values[i] = i + 1;
        weights[i] = (i % 3 == 0) ? 4.0 : 1.0;
    }
    for (int k = 0; k < N; k++) {
        int i = (int)((k * 7919L) % N);
        add(a, METRIC_DISTRIBUTION, "lat", "route:/a", values[i], 1.0 / weights[i], 500, 0);
    }
    add(a, METRIC_COUNTER, "lat", "route:/a", 1, 1.0, 500, 0);
    add(a, METRIC_GAUGE, "lat", "route:/a", 1, 1.0, 500, 0);
    assert_null(find_row(a, "lat", "route:/a", METRIC_COUNTER, 0)->sketch);
    assert_null(find_row(a, "lat", "route:/a", METRIC_GAUGE, 0)->sketch);

    const agg_row *r = find_row(a, "lat", "route:/a", METRIC_DISTRIBUTION, 0);
    assert_non_null(r);
    assert_non_null(r->sketch);
    assert_double_equal(ddsketch_count(r->sketch), r->weight, 0);
    static const double qs[] = {0, 0.01, 0.25, 0.5, 0.75, 0.9, 0.99, 1};
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double got, want = exact_weighted_quantile(values, weights, N, qs[i]);
        assert_int_equal(ddsketch_quantile(r->sketch, qs[i], &got), 0);
        if (!(fabs(got - want) <= DDSKETCH_ALPHA * want * (1 + 1e-9)))
            fail_msg("q=%g: sketch %.17g exact %.17g", qs[i], got, want);
    }
    double lo, hi;
    ddsketch_quantile(r->sketch, 0, &lo);
    ddsketch_quantile(r->sketch, 1, &hi);
    assert_true(lo == r->min && hi == r->max);

    /* clear() resets it: the same series' next row holds only its own event. */
    aggregate_clear(a);
    add(a, METRIC_DISTRIBUTION, "lat", "route:/a", 250, 0.5, 500, 0);
    r = find_row(a, "lat", "route:/a", METRIC_DISTRIBUTION, 0);
    assert_non_null(r->sketch);
    assert_double_equal(ddsketch_count(r->sketch), 2, 0);
    double q;
    assert_int_equal(ddsketch_quantile(r->sketch, 0.5, &q), 0);
    assert_double_equal(q, 250, 0);

    /* A weight beyond the sketch's domain (1 / rate > 1e15) is an error
     * naming the sketch, and the row is unchanged. */
    char err[256] = "";
    metric_event ev = ev_make(METRIC_DISTRIBUTION, "lat", "route:/a", 1, 1e-16, 500, 0);
    assert_int_equal(aggregate_add(a, &ev, err, sizeof err), -1);
    assert_non_null(strstr(err, "sketch"));
    assert_int_equal(r->lines, 1);
    assert_double_equal(ddsketch_count(r->sketch), 2, 0);
}

/* ---- gauges -------------------------------------------------------------------- */

/* ---- sets ------------------------------------------------------------------ */

/* Folds member "F-n" of set `name` (its digest, as the parser makes it). */
static void add_member(aggregate *a, const char *name, const char *tags, unsigned n,
                       int64_t stamp_ms)
{
    char m[32], err[256] = "";
    int len = snprintf(m, sizeof m, "F-%u", n);
    metric_event ev = ev_make(METRIC_SET, name, tags, 0, 1.0, stamp_ms, 0);
    ev.member = hash_digest64(m, (size_t)len);
    if (aggregate_add(a, &ev, err, sizeof err) != 0)
        fail_msg("aggregate_add: %s", err);
}

/* A set row counts its lines (weight = lines), has no value or range, and
 * owns the hll of its members: exact while sparse, within the HyperLogLog's
 * error once dense; other rows have none. The hll is PFADD's registers:
 * hll_add_hash(redis_hll_hash(digest)). */
static void test_set_rows(void **state)
{
    aggregate *a = *state;
    for (unsigned i = 0; i < 900; i++) /* 300 members, each three times, bucket 0 */
        add_member(a, "users", "app:web", i % 300, 1000 + i);
    for (unsigned i = 0; i < 60000; i++) /* 20,000 members, each three times, bucket 10 */
        add_member(a, "users", "app:web", i % 20000, 15000);
    add(a, METRIC_COUNTER, "users", "app:web", 1, 1.0, 1000, 0);
    const agg_series *se = find_series(a, "users", "app:web", METRIC_SET);
    assert_non_null(se);
    const agg_row *r = find_row(a, "users", "app:web", METRIC_SET, 0);
    assert_non_null(r);
    assert_int_equal(r->lines, 900);
    assert_true(r->weight == 900 && r->value == 0 && !r->has_range);
    assert_null(r->sketch);
    assert_non_null(r->set);
    assert_int_equal(hll_count(r->set), 300);
    hll *want = hll_new();
    assert_non_null(want);
    for (unsigned i = 0; i < 300; i++) {
        char m[32];
        int len = snprintf(m, sizeof m, "F-%u", i);
        assert_int_not_equal(hll_add_hash(want, redis_hll_hash(hash_digest64(m, (size_t)len))), -1);
    }
    uint8_t got_regs[HLL_REGISTERS], want_regs[HLL_REGISTERS];
    hll_registers(r->set, got_regs);
    hll_registers(want, want_regs);
    assert_memory_equal(got_regs, want_regs, HLL_REGISTERS);
    hll_free(want);

    r = find_row(a, "users", "app:web", METRIC_SET, 10);
    assert_non_null(r);
    assert_int_equal(r->lines, 60000);
    uint64_t n = hll_count(r->set);
    printf("measured: 20000 distinct members (60000 lines) count %llu\n", (unsigned long long)n);
    assert_true(n > 20000 * (1 - 3 * 0.0081) && n < 20000 * (1 + 3 * 0.0081)); /* 3 std errors */
    assert_null(find_row(a, "users", "app:web", METRIC_COUNTER, 0)->set);

    aggregate_clear(a); /* frees the hlls (ASan: no leak); the next flush starts empty */
    add_member(a, "users", "app:web", 1, 1000);
    r = find_row(a, "users", "app:web", METRIC_SET, 0);
    assert_int_equal(r->lines, 1);
    assert_int_equal(hll_count(r->set), 1);
}

static void test_gauge_absolute_sequence(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_GAUGE, "temp", NULL, 20, 1.0, 1000, 0);
    add(a, METRIC_GAUGE, "temp", NULL, 25, 1.0, 2000, 0);
    add(a, METRIC_GAUGE, "temp", NULL, 18, 1.0, 3000, 0);
    add(a, METRIC_GAUGE, "temp", NULL, 30, 1.0, 15000, 0);
    const agg_row *r = find_row(a, "temp", NULL, METRIC_GAUGE, 0);
    assert_int_equal(r->lines, 3);
    assert_double_equal(r->weight, 3, 0);
    assert_double_equal(r->value, 18, 0);   /* last op of the bucket */
    assert_false(r->value_relative);
    assert_true(r->has_range);
    assert_false(r->has_rel_range);
    assert_double_equal(r->min, 18, 0);
    assert_double_equal(r->max, 25, 0);
    r = find_row(a, "temp", NULL, METRIC_GAUGE, 10);
    assert_double_equal(r->value, 30, 0);
    const agg_series *s = find_series(a, "temp", NULL, METRIC_GAUGE);
    assert_true(s->absolute_known);
    assert_false(s->needs_base);
    assert_double_equal(s->running, 30, 0);
}

static void test_gauge_relative_only_is_flagged(void **state)
{
    aggregate *a = *state;
    add(a, METRIC_GAUGE, "queue", NULL, 5, 1.0, 1000, EVENT_GAUGE_RELATIVE);
    add(a, METRIC_GAUGE, "queue", NULL, -2, 1.0, 2000, EVENT_GAUGE_RELATIVE);
    add(a, METRIC_GAUGE, "queue", NULL, 4, 1.0, 11000, EVENT_GAUGE_RELATIVE);
    const agg_row *r = find_row(a, "queue", NULL, METRIC_GAUGE, 0);
    assert_true(r->value_relative);
    assert_double_equal(r->value, 3, 0);    /* base + 5 - 2 */
    assert_false(r->has_range);
    assert_true(r->has_rel_range);
    assert_double_equal(r->rel_min, 3, 0);
    assert_double_equal(r->rel_max, 5, 0);
    r = find_row(a, "queue", NULL, METRIC_GAUGE, 10);
    assert_true(r->value_relative);
    assert_double_equal(r->value, 7, 0);    /* running continues across buckets */
    const agg_series *s = find_series(a, "queue", NULL, METRIC_GAUGE);
    assert_false(s->absolute_known);
    assert_true(s->needs_base);
    assert_double_equal(s->running, 7, 0);
}

static void test_gauge_relative_then_absolute(void **state)
{
    aggregate *a = *state;
    /* Bucket 0: +10 (relative), then =100 (absolute), then +1 -> 101. */
    add(a, METRIC_GAUGE, "g", "h:1", 10, 1.0, 100, EVENT_GAUGE_RELATIVE);
    add(a, METRIC_GAUGE, "g", "h:1", 100, 1.0, 200, 0);
    add(a, METRIC_GAUGE, "g", "h:1", 1, 1.0, 300, EVENT_GAUGE_RELATIVE);
    /* Bucket 10: -50 -> 51, absolute because an absolute op was seen. */
    add(a, METRIC_GAUGE, "g", "h:1", -50, 1.0, 10000, EVENT_GAUGE_RELATIVE);
    const agg_row *r = find_row(a, "g", "h:1", METRIC_GAUGE, 0);
    assert_false(r->value_relative);
    assert_double_equal(r->value, 101, 0);
    assert_int_equal(r->lines, 3);
    assert_true(r->has_rel_range);      /* base + 10 */
    assert_double_equal(r->rel_min, 10, 0);
    assert_double_equal(r->rel_max, 10, 0);
    assert_true(r->has_range);          /* 100, 101 */
    assert_double_equal(r->min, 100, 0);
    assert_double_equal(r->max, 101, 0);
    r = find_row(a, "g", "h:1", METRIC_GAUGE, 10);
    assert_false(r->value_relative);
    assert_double_equal(r->value, 51, 0);
    assert_false(r->has_rel_range);
    const agg_series *s = find_series(a, "g", "h:1", METRIC_GAUGE);
    assert_true(s->absolute_known);
    assert_true(s->needs_base);         /* bucket 0's range depends on the base */
    assert_double_equal(s->running, 51, 0);
}

static void test_gauge_out_of_order_buckets(void **state)
{
    aggregate *a = *state;
    /* Consume order decides; stamps may go back (client-stamped events). */
    add(a, METRIC_GAUGE, "g", NULL, 1, 1.0, 15000, EVENT_GAUGE_RELATIVE); /* b10: base+1 (rel) */
    add(a, METRIC_GAUGE, "g", NULL, 7, 1.0, 5000, 0);                     /* b0: 7 */
    add(a, METRIC_GAUGE, "g", NULL, 2, 1.0, 16000, EVENT_GAUGE_RELATIVE); /* b10: 9 (abs) */
    add(a, METRIC_GAUGE, "g", NULL, 3, 1.0, 1000, EVENT_GAUGE_RELATIVE);  /* b0: 12 */
    const agg_row *b0 = find_row(a, "g", NULL, METRIC_GAUGE, 0);
    const agg_row *b10 = find_row(a, "g", NULL, METRIC_GAUGE, 10);
    assert_double_equal(b0->value, 12, 0);
    assert_false(b0->value_relative);
    assert_double_equal(b0->min, 7, 0);
    assert_double_equal(b0->max, 12, 0);
    assert_double_equal(b10->value, 9, 0);
    assert_false(b10->value_relative);
    assert_true(b10->has_rel_range);
    assert_double_equal(b10->rel_min, 1, 0);
    assert_double_equal(b10->min, 9, 0);
    assert_double_equal(find_series(a, "g", NULL, METRIC_GAUGE)->running, 12, 0);
}

/* ---- scale, order, clear --------------------------------------------------------- */

static void test_many_series_grow_tables(void **state)
{
    aggregate *a = *state;
    enum { N = 20000 };
    char name[32];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            snprintf(name, sizeof name, "m.%d", i);
            add(a, METRIC_COUNTER, name, "k:v", i, 1.0, (int64_t)(i % 3) * 10000, 0);
        }
    assert_int_equal(aggregate_series_count(a), N);
    assert_int_equal(aggregate_row_count(a), N);
    assert_int_equal(aggregate_events(a), 2 * N);
    for (int i = 0; i < N; i += 997) {
        snprintf(name, sizeof name, "m.%d", i);
        const agg_row *r = find_row(a, name, "k:v", METRIC_COUNTER, (i % 3) * 10);
        assert_non_null(r);
        assert_int_equal(r->lines, 2);
        assert_double_equal(r->value, 2.0 * i, 0);
    }
    /* First-seen order. */
    assert_string_equal(aggregate_series_at(a, 0)->name, "m.0");
    assert_string_equal(aggregate_series_at(a, N - 1)->name, "m.19999");
}

static void test_clear_and_reuse(void **state)
{
    aggregate *a = *state;
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "before.%d", i);
        add(a, METRIC_GAUGE, name, NULL, 1, 1.0, 0, EVENT_GAUGE_RELATIVE);
    }
    aggregate_clear(a);
    assert_int_equal(aggregate_events(a), 0);
    assert_int_equal(aggregate_row_count(a), 0);
    assert_int_equal(aggregate_series_count(a), 0);
    /* A series seen before the clear starts from scratch (gauge state too). */
    add(a, METRIC_GAUGE, "before.7", NULL, 4, 1.0, 0, EVENT_GAUGE_RELATIVE);
    const agg_series *s = find_series(a, "before.7", NULL, METRIC_GAUGE);
    assert_double_equal(s->running, 4, 0);
    assert_false(s->absolute_known);
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "after.%d", i);
        add(a, METRIC_COUNTER, name, "t", 2, 1.0, 0, 0);
    }
    assert_int_equal(aggregate_series_count(a), 5001);
    assert_null(find_row(a, "before.8", NULL, METRIC_GAUGE, 0));
    assert_double_equal(find_row(a, "after.4999", "t", METRIC_COUNTER, 0)->value, 2, 0);
}

static void test_strings_are_copied(void **state)
{
    aggregate *a = *state;
    char name[16] = "volatile", tags[16] = "a:b";
    add(a, METRIC_COUNTER, name, tags, 1, 1.0, 0, 0);
    memset(name, 'x', sizeof name - 1);
    memset(tags, 'y', sizeof tags - 1);
    assert_string_equal(aggregate_series_at(a, 0)->name, "volatile");
    assert_string_equal(aggregate_series_at(a, 0)->tags, "a:b");
    /* A long name near the limits (arena chunk larger than a name). */
    char big_name[EVENT_NAME_MAX + 1], big_tags[EVENT_TAGS_MAX + 1];
    memset(big_name, 'n', EVENT_NAME_MAX);
    big_name[EVENT_NAME_MAX] = '\0';
    memset(big_tags, 't', EVENT_TAGS_MAX);
    big_tags[EVENT_TAGS_MAX] = '\0';
    add(a, METRIC_COUNTER, big_name, big_tags, 1, 1.0, 0, 0);
    assert_int_equal(aggregate_series_at(a, 1)->name_len, EVENT_NAME_MAX);
    assert_int_equal(aggregate_series_at(a, 1)->tags_len, EVENT_TAGS_MAX);
}

static void test_invalid_events_rejected(void **state)
{
    aggregate *a = *state;
    char err[256];
    metric_event ev = ev_make(METRIC_COUNTER, "x", NULL, 1, 0.0, 0, 0);
    assert_int_equal(aggregate_add(a, &ev, err, sizeof err), -1);
    ev = ev_make((metric_type)9, "x", NULL, 1, 1.0, 0, 0);
    assert_int_equal(aggregate_add(a, &ev, err, sizeof err), -1);
    assert_non_null(strstr(err, "type"));
    ev = ev_make(METRIC_COUNTER, "x", NULL, 1.0 / 0.0, 1.0, 0, 0);
    assert_int_equal(aggregate_add(a, &ev, err, sizeof err), -1);
    assert_int_equal(aggregate_events(a), 0);
    assert_int_equal(aggregate_row_count(a), 0);
}

/* ---- pending batch set ----------------------------------------------------------- */

static void test_pending_batches_and_offsets(void **state)
{
    (void)state;
    pending *p = pending_new(3);
    assert_non_null(p);
    char err[256], id[32];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3000; i++) {
            snprintf(id, sizeof id, "batch-%d", i);
            assert_null(pending_find_batch(p, id, strlen(id)));
            assert_int_equal(pending_add_batch(p, id, strlen(id), 1000 + i, "-", i % 3, i, err, sizeof err), 0);
            assert_non_null(pending_find_batch(p, id, strlen(id)));
            pending_note_offset(p, i % 3, i);
        }
        assert_int_equal(pending_batch_count(p), 3000);
        assert_int_equal(pending_max_log_ms(p), 3999);
        assert_int_equal(pending_next_offset(p, 0), 2998);
        assert_int_equal(pending_next_offset(p, 2), 3000);
        const pending_batch *b = pending_batch_at(p, 1234);
        assert_memory_equal(pending_batch_id(p, b), "batch-1234", b->id_len);
        assert_int_equal(pending_add_reject(p, 1, 5000, "crc mismatch", "junk", 4, err, sizeof err), 0);
        assert_int_equal(pending_reject_bytes(p), 4);
        pending_clear(p);
        assert_int_equal(pending_batch_count(p), 0);
        assert_int_equal(pending_next_offset(p, 1), -1);
        assert_null(pending_find_batch(p, "batch-1", 7));
    }
    pending_free(p);
}

/* ---- store: combining flushes in SQLite ------------------------------------------ */

typedef struct store_fixture {
    char dir[64];
    char path[128];
    store *st;
    aggregate *agg;
    pending *pend;
} store_fixture;

static int store_setup(void **state)
{
    store_fixture *f = calloc(1, sizeof *f);
    char err[512];
    if (!f)
        return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/tally-test-store-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->path, sizeof f->path, "%s/t.db", f->dir);
    int64_t next[2];
    if (store_open(&f->st, f->path, "FULL", 10, 60, err, sizeof err) < 0 ||
        store_claim(f->st, "t", (const int[]){0, 1}, 2, 2, "test", next, err, sizeof err) < 0) {
        print_error("store_open: %s\n", err);
        return -1;
    }
    f->agg = aggregate_new(10);
    f->pend = pending_new(2);
    *state = f;
    return f->agg && f->pend ? 0 : -1;
}

static int store_teardown(void **state)
{
    store_fixture *f = *state;
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

static void commit_ok(store_fixture *f)
{
    char err[512] = "";
    if (store_commit(f->st, "t", f->agg, f->pend, NULL, err, sizeof err) != 0)
        fail_msg("store_commit: %s", err);
    aggregate_clear(f->agg);
    pending_clear(f->pend);
}

static void add_batch(store_fixture *f, const char *id, int64_t log_ms, int32_t part, int64_t off)
{
    char err[256];
    assert_int_equal(pending_add_batch(f->pend, id, strlen(id), log_ms, "0123456789abcdef", part, off,
                                       err, sizeof err), 0);
    pending_note_offset(f->pend, part, off);
}

/* One row of a metrics query as text ("lines|value|weight|min|max"). */
static void metrics_row(store_fixture *f, const char *name, const char *type, int64_t bucket, char *out, size_t outlen)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db,
        "SELECT lines || '|' || value || '|' || weight || '|' || coalesce(min, 'NULL') || '|' ||"
        " coalesce(max, 'NULL') FROM metrics WHERE name = ?1 AND type = ?2 AND bucket = ?3", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, bucket);
    if (sqlite3_step(st) == SQLITE_ROW)
        snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
    else
        snprintf(out, outlen, "missing");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static double scalar(store_fixture *f, const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    double v = -12345;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static void test_store_combines_flushes(void **state)
{
    store_fixture *f = *state;
    char row[256], err[512];

    /* Flush 1: a new gauge gets only relative ops: base 0. */
    add(f->agg, METRIC_COUNTER, "c", NULL, 1, 0.5, 1000, 0);
    add(f->agg, METRIC_DISTRIBUTION, "d", NULL, 5, 1.0, 1000, 0);
    add(f->agg, METRIC_DISTRIBUTION, "d", NULL, 1, 1.0, 1000, 0);
    add(f->agg, METRIC_GAUGE, "g", NULL, 5, 1.0, 1000, EVENT_GAUGE_RELATIVE);
    add(f->agg, METRIC_GAUGE, "g", NULL, 2, 1.0, 1000, EVENT_GAUGE_RELATIVE);
    add_batch(f, "b1", 1000, 0, 9);
    commit_ok(f);
    metrics_row(f, "c", "counter", 0, row, sizeof row);
    assert_string_equal(row, "1|2.0|2.0|NULL|NULL");
    metrics_row(f, "g", "gauge", 0, row, sizeof row);
    assert_string_equal(row, "2|7.0|2.0|5.0|7.0");
    assert_double_equal(scalar(f, "SELECT value FROM gauges WHERE name = 'g'"), 7, 0);

    /* Flush 2: -3 against base 7 (= 4), then =100, +1 (= 101), same bucket. */
    add(f->agg, METRIC_GAUGE, "g", NULL, -3, 1.0, 2000, EVENT_GAUGE_RELATIVE);
    add(f->agg, METRIC_GAUGE, "g", NULL, 100, 1.0, 2000, 0);
    add(f->agg, METRIC_GAUGE, "g", NULL, 1, 1.0, 2000, EVENT_GAUGE_RELATIVE);
    add(f->agg, METRIC_GAUGE, "g", NULL, 1, 1.0, 12000, EVENT_GAUGE_RELATIVE); /* bucket 10: 102 */
    add(f->agg, METRIC_COUNTER, "c", NULL, 2, 1.0, 1000, 0);
    add(f->agg, METRIC_DISTRIBUTION, "d", NULL, 9, 1.0, 1000, 0);
    /* 661 s after b1 with a 60 s window (+ 600 s slack, dedup.h): b1 leaves the
     * dedup window. */
    add_batch(f, "b2", 1000 + 60000 + DEDUP_SLACK_SECONDS * 1000 + 1001, 1, 4);
    commit_ok(f);
    metrics_row(f, "g", "gauge", 0, row, sizeof row);
    assert_string_equal(row, "5|101.0|5.0|4.0|101.0");
    metrics_row(f, "g", "gauge", 10, row, sizeof row);
    assert_string_equal(row, "1|102.0|1.0|102.0|102.0");
    metrics_row(f, "c", "counter", 0, row, sizeof row);
    assert_string_equal(row, "2|4.0|3.0|NULL|NULL");
    metrics_row(f, "d", "distribution", 0, row, sizeof row);
    assert_string_equal(row, "3|15.0|3.0|1.0|9.0");
    assert_double_equal(scalar(f, "SELECT value FROM gauges WHERE name = 'g'"), 102, 0);

    int64_t log_ms = 0;
    char digest[DEDUP_DIGEST_TEXT];
    assert_int_equal(store_batch_lookup(f->st, "b1", 2, &log_ms, digest, err, sizeof err), 0); /* pruned */
    assert_int_equal(store_batch_lookup(f->st, "b2", 2, &log_ms, digest, err, sizeof err), 1);
    assert_int_equal(log_ms, 1000 + 60000 + DEDUP_SLACK_SECONDS * 1000 + 1001);
    assert_string_equal(digest, "0123456789abcdef");
    int64_t next[2];
    assert_int_equal(store_load_offsets(f->st, "t", next, 2, err, sizeof err), 0);
    assert_int_equal(next[0], 10);
    assert_int_equal(next[1], 5);
    assert_int_equal(store_load_offsets(f->st, "other", next, 2, err, sizeof err), 0);
    assert_int_equal(next[0], -1);
    /* A stored partition beyond the topic's count is refused. */
    assert_int_equal(store_load_offsets(f->st, "t", next, 1, err, sizeof err), -1);
}

static void test_store_rolls_back_on_error(void **state)
{
    store_fixture *f = *state;
    char err[512] = "", row[256];
    add(f->agg, METRIC_COUNTER, "c", NULL, 1, 1.0, 0, 0);
    add_batch(f, "b1", 1000, 0, 0);
    commit_ok(f);
    /* Second flush: inserting its batch id fails (a trigger refuses it) after
     * the rows were upserted; nothing of the flush may remain. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TRIGGER refuse_b2 BEFORE INSERT ON batches"
                                      " WHEN NEW.batch_id = 'b2'"
                                      " BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    add(f->agg, METRIC_COUNTER, "c", NULL, 5, 1.0, 0, 0);
    add(f->agg, METRIC_GAUGE, "g", NULL, 3, 1.0, 0, 0);
    add_batch(f, "b2", 1000, 0, 1);
    assert_int_equal(store_commit(f->st, "t", f->agg, f->pend, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "injected failure"));
    metrics_row(f, "c", "counter", 0, row, sizeof row);
    assert_string_equal(row, "1|1.0|1.0|NULL|NULL");
    assert_double_equal(scalar(f, "SELECT count(*) FROM gauges"), 0, 0);
    assert_double_equal(scalar(f, "SELECT next_offset FROM kafka_offsets WHERE partition = 0"), 1, 0);
    /* The store is usable afterwards (the transaction was closed). */
    aggregate_clear(f->agg);
    pending_clear(f->pend);
    add(f->agg, METRIC_COUNTER, "c", NULL, 1, 1.0, 0, 0);
    add_batch(f, "b3", 1000, 0, 2);
    commit_ok(f);
    metrics_row(f, "c", "counter", 0, row, sizeof row);
    assert_string_equal(row, "2|2.0|2.0|NULL|NULL");
}

static void test_store_refuses_other_bucket_seconds(void **state)
{
    store_fixture *f = *state;
    store *other = NULL;
    char err[512] = "";
    assert_int_equal(store_open(&other, f->path, "NORMAL", 60, 60, err, sizeof err), -1);
    assert_null(other);
    assert_non_null(strstr(err, "bucket_seconds"));
    assert_int_equal(store_open(&other, f->path, "sometimes", 10, 60, err, sizeof err), -1);
    assert_int_equal(store_open(&other, f->path, "NORMAL", 10, 60, err, sizeof err), 0);
    store_close(other);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bucket_boundaries),
        cmocka_unit_test_setup_teardown(test_events_land_in_their_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_folded_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_types_are_separate_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_tags_split_is_part_of_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_distribution, setup, teardown),
        cmocka_unit_test_setup_teardown(test_distribution_sketch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_rows, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge_absolute_sequence, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge_relative_only_is_flagged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge_relative_then_absolute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gauge_out_of_order_buckets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_series_grow_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clear_and_reuse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_strings_are_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_events_rejected, setup, teardown),
        cmocka_unit_test(test_pending_batches_and_offsets),
        cmocka_unit_test_setup_teardown(test_store_combines_flushes, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_rolls_back_on_error, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_store_refuses_other_bucket_seconds, store_setup, store_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
