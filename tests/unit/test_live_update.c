/*
 * test_live_update.c — the per-batch fold into one Redis EVAL: dedup key,
 * key list, per-series pre-aggregation (counters, gauge composition,
 * distributions), first-seen order, and exact number formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format.h"
#include "live_update.h"

static metric_event ev(metric_type type, const char *name, const char *tags, double value,
                       double rate, uint8_t flags)
{
    metric_event e = {0};
    e.type = type;
    e.flags = flags;
    e.name = name;
    e.name_len = (uint16_t)strlen(name);
    e.tags = tags;
    e.tags_len = (uint16_t)(tags ? strlen(tags) : 0);
    e.value = value;
    e.sample_rate = rate;
    e.stamp_ms = 1000;
    return e;
}

/* argv layout: EVAL script numkeys fence dedup[n] opkeys[ops] ttl mode n (verb field value)[ops] */
#define ARGS_BEFORE_OPS 3
static int g_batches = 1; /* n of the update under test */
static int first_op_key(void) { return 4 + g_batches; }
static const char *key_of(const live_update *u, int op) { return u->argv[first_op_key() + op]; }
static const char *arg_of(const live_update *u, int ops, int i) { return u->argv[first_op_key() + ops + i]; }
static const char *verb_of(const live_update *u, int ops, int op) { return arg_of(u, ops, ARGS_BEFORE_OPS + 3 * op); }
static const char *field_of(const live_update *u, int ops, int op) { return arg_of(u, ops, ARGS_BEFORE_OPS + 3 * op + 1); }
static const char *value_of(const live_update *u, int ops, int op) { return arg_of(u, ops, ARGS_BEFORE_OPS + 3 * op + 2); }
static int expected_argc(int ops) { return first_op_key() + ops + ARGS_BEFORE_OPS + 3 * ops; }

/* Folds one batch and builds its update (group of one). */
static int build_one(live_update *u, const char *id, const metric_event *e, size_t n, int ttl,
                     live_mode mode)
{
    char err[128];
    live_fold *f = live_fold_new(e, n, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {id};
    size_t lens[1] = {strlen(id)};
    g_batches = 1;
    int rc = live_update_build(u, folds, ids, lens, 1, ttl, mode, err, sizeof err);
    live_fold_free(f); /* the update owns copies: the fold may go first */
    return rc;
}

static void test_counters_fold_per_series(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_COUNTER, "req", NULL, 1, 1, 0),
        ev(METRIC_COUNTER, "req", "env:prod", 2, 1, 0),
        ev(METRIC_COUNTER, "req", NULL, 10, 0.5, 0),
        ev(METRIC_COUNTER, "req", NULL, 0.1, 1, 0),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b1", e, 4, 600, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 2);
    int ops = 2;
    assert_int_equal(u.argc, expected_argc(ops));
    assert_string_equal(u.argv[0], "EVAL");
    assert_string_equal(u.argv[2], "4"); /* fence, 1 dedup key, 2 op keys */
    assert_string_equal(u.argv[3], "tally:live:rebuilding");
    assert_string_equal(u.argv[4], "tally:batch:{b1}");
    assert_string_equal(key_of(&u, 0), "tally:{req}:counter");
    assert_string_equal(arg_of(&u, ops, 0), "600");
    assert_string_equal(arg_of(&u, ops, 1), "ingest");
    assert_string_equal(arg_of(&u, ops, 2), "1");
    assert_string_equal(verb_of(&u, ops, 0), "add"); /* a fraction: HINCRBYFLOAT */
    assert_string_equal(field_of(&u, ops, 0), "");
    assert_string_equal(value_of(&u, ops, 0), "21.1");
    assert_string_equal(verb_of(&u, ops, 1), "addi");
    assert_string_equal(field_of(&u, ops, 1), "env:prod");
    assert_string_equal(value_of(&u, ops, 1), "2");
    for (int i = 0; i < u.argc; i++)
        assert_int_equal(u.argvlen[i], strlen(u.argv[i]));
    live_update_free(&u);
    assert_null(u.argv);
}

static void test_gauge_composition(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_GAUGE, "g_rel", NULL, 5, 1, EVENT_GAUGE_RELATIVE),
        ev(METRIC_GAUGE, "g_rel", NULL, -2, 1, EVENT_GAUGE_RELATIVE),
        ev(METRIC_GAUGE, "g_abs", NULL, 5, 1, EVENT_GAUGE_RELATIVE),
        ev(METRIC_GAUGE, "g_abs", NULL, 20, 1, 0),
        ev(METRIC_GAUGE, "g_abs", NULL, -3, 1, EVENT_GAUGE_RELATIVE),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 5, 60, LIVE_MODE_INGEST), 0);
    int ops = 2;
    assert_string_equal(key_of(&u, 0), "tally:{g_rel}:gauge");
    assert_string_equal(verb_of(&u, ops, 0), "addi"); /* a whole delta */
    assert_string_equal(value_of(&u, ops, 0), "3");
    assert_string_equal(key_of(&u, 1), "tally:{g_abs}:gauge");
    assert_string_equal(verb_of(&u, ops, 1), "set");
    assert_string_equal(value_of(&u, ops, 1), "17");
    live_update_free(&u);
}

static void test_distribution_ops(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 10, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 30, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 20, 0.5, 0),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 3, 60, LIVE_MODE_INGEST), 0);
    int ops = 4;
    assert_int_equal(u.argc, expected_argc(ops));
    const char *keys[] = {"tally:{lat}:dist:count", "tally:{lat}:dist:sum",
                          "tally:{lat}:dist:min", "tally:{lat}:dist:max"};
    const char *verbs[] = {"addi", "addi", "min", "max"};
    const char *values[] = {"4", "80", "10", "30"};
    for (int i = 0; i < ops; i++) {
        assert_string_equal(key_of(&u, i), keys[i]);
        assert_string_equal(verb_of(&u, ops, i), verbs[i]);
        assert_string_equal(field_of(&u, ops, i), "a:1");
        assert_string_equal(value_of(&u, ops, i), values[i]);
    }
    live_update_free(&u);
}

static void test_types_are_separate_series_in_first_seen_order(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_GAUGE, "x", NULL, 1, 1, 0),
        ev(METRIC_COUNTER, "x", NULL, 1, 1, 0),
        ev(METRIC_COUNTER, "y", NULL, 1, 1, 0),
        ev(METRIC_GAUGE, "x", NULL, 2, 1, 0),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 4, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 3);
    assert_string_equal(key_of(&u, 0), "tally:{x}:gauge");
    assert_string_equal(key_of(&u, 1), "tally:{x}:counter");
    assert_string_equal(key_of(&u, 2), "tally:{y}:counter");
    assert_string_equal(value_of(&u, 3, 0), "2");
    live_update_free(&u);
}

static void test_many_series_grow_the_table(void **state)
{
    (void)state;
    enum { N = 5000 };
    static char names[N][16];
    static metric_event e[2 * N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "m%d", i);
        e[2 * i] = ev(METRIC_COUNTER, names[i], NULL, 1, 1, 0);
        e[2 * i + 1] = ev(METRIC_COUNTER, names[i], NULL, 2, 1, 0);
    }
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 2 * N, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, N);
    for (int i = 0; i < N; i++)
        assert_string_equal(value_of(&u, N, i), "3");
    live_update_free(&u);
}

static void test_rebuild_mode_is_marked(void **state)
{
    (void)state;
    metric_event e[] = {ev(METRIC_COUNTER, "req", NULL, 1, 1, 0)};
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 1, 60, LIVE_MODE_REBUILD), 0);
    assert_string_equal(arg_of(&u, 1, 1), "rebuild");
    live_update_free(&u);
}

/* A group merges its batches per series in order: counters add up, a later
 * absolute gauge wins, relative gauges add; every batch gets its dedup key. */
static void test_group_merges_in_order(void **state)
{
    (void)state;
    metric_event b1[] = {ev(METRIC_COUNTER, "a", NULL, 1, 1, 0), ev(METRIC_GAUGE, "g", NULL, 5, 1, 0),
                         ev(METRIC_GAUGE, "r", NULL, 1, 1, EVENT_GAUGE_RELATIVE)};
    metric_event b2[] = {ev(METRIC_COUNTER, "a", NULL, 2, 1, 0),
                         ev(METRIC_GAUGE, "g", NULL, 1, 1, EVENT_GAUGE_RELATIVE),
                         ev(METRIC_COUNTER, "b", NULL, 1, 1, 0),
                         ev(METRIC_GAUGE, "r", NULL, 2, 1, EVENT_GAUGE_RELATIVE)};
    metric_event b3[] = {ev(METRIC_GAUGE, "g", NULL, 7, 1, 0), ev(METRIC_COUNTER, "a", NULL, 4, 1, 0)};
    char err[128];
    live_fold *f[3] = {live_fold_new(b1, 3, err, sizeof err), live_fold_new(b2, 4, err, sizeof err),
                       live_fold_new(b3, 2, err, sizeof err)};
    assert_non_null(f[0]);
    assert_non_null(f[1]);
    assert_non_null(f[2]);
    assert_int_equal(live_fold_series(f[1]), 4);
    const live_fold *folds[3] = {f[0], f[1], f[2]};
    const char *ids[3] = {"x", "yy", "z"};
    size_t lens[3] = {1, 2, 1};
    live_update u;
    assert_int_equal(live_update_build(&u, folds, ids, lens, 3, 60, LIVE_MODE_INGEST, err,
                                       sizeof err), 0);
    g_batches = 3;
    int ops = 4; /* a, g, r, b */
    assert_int_equal(u.argc, expected_argc(ops));
    assert_int_equal(u.series, 4);
    assert_string_equal(u.argv[2], "8"); /* fence + 3 dedup keys + 4 op keys */
    assert_string_equal(u.argv[4], "tally:batch:{x}");
    assert_string_equal(u.argv[5], "tally:batch:{yy}");
    assert_string_equal(u.argv[6], "tally:batch:{z}");
    assert_string_equal(arg_of(&u, ops, 2), "3");
    const char *keys[] = {"tally:{a}:counter", "tally:{g}:gauge", "tally:{r}:gauge", "tally:{b}:counter"};
    const char *verbs[] = {"addi", "set", "addi", "addi"};
    const char *values[] = {"7", "7", "3", "1"};
    for (int i = 0; i < ops; i++) {
        assert_string_equal(key_of(&u, i), keys[i]);
        assert_string_equal(verb_of(&u, ops, i), verbs[i]);
        assert_string_equal(value_of(&u, ops, i), values[i]);
    }
    live_update_free(&u);
    for (int i = 0; i < 3; i++)
        live_fold_free(f[i]);
}

static void test_group_never_holds_one_batch_twice(void **state)
{
    (void)state;
    const char *ids[] = {"a", "b", "c", "b", "d"};
    assert_int_equal(live_group_length(ids, 5, 256), 3); /* the second "b" waits */
    assert_int_equal(live_group_length(ids + 3, 2, 256), 2);
    assert_int_equal(live_group_length(ids, 5, 2), 2);
    assert_int_equal(live_group_length(ids, 0, 256), 0);
    const char *same[] = {"x", "x"};
    assert_int_equal(live_group_length(same, 2, 256), 1);
}

static void test_format_double_is_exact_and_short(void **state)
{
    (void)state;
    char buf[FORMAT_DOUBLE_MAX];
    format_double(buf, sizeof buf, 0.1);
    assert_string_equal(buf, "0.1");
    format_double(buf, sizeof buf, 100000);
    assert_string_equal(buf, "100000");
    format_double(buf, sizeof buf, 0.1 + 0.2);
    assert_string_equal(buf, "0.30000000000000004");
    format_double(buf, sizeof buf, 9007199254740993.0);
    assert_true(strtod(buf, NULL) == 9007199254740993.0);
    /* whole numbers (the integer fast path) print as %.15g would */
    const double whole[] = {0, -7, 42, -123456789012345, 999999999999999, 1e15, -1e15, 1e300};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        char want[64];
        int n = format_double(buf, sizeof buf, whole[i]);
        snprintf(want, sizeof want, "%.15g", whole[i]);
        assert_string_equal(buf, want);
        assert_int_equal(n, (int)strlen(want));
    }
    format_double(buf, sizeof buf, -0.0);
    assert_string_equal(buf, "-0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_fold_per_series),
        cmocka_unit_test(test_gauge_composition),
        cmocka_unit_test(test_distribution_ops),
        cmocka_unit_test(test_types_are_separate_series_in_first_seen_order),
        cmocka_unit_test(test_many_series_grow_the_table),
        cmocka_unit_test(test_rebuild_mode_is_marked),
        cmocka_unit_test(test_group_merges_in_order),
        cmocka_unit_test(test_group_never_holds_one_batch_twice),
        cmocka_unit_test(test_format_double_is_exact_and_short),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
