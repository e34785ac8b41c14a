/*
 * test_retention.c — the resolutions (common/rollup.h) and the retention
 * planner (flusher/retention.h), pure, against a model of the stored rows.
 *
 * What is proved: which resolutions a bucket width keeps; the resolution a
 * step reads; the spans a read takes from each resolution cover every bucket
 * once; the planner rolls finished windows up (not before the grace), deletes
 * each resolution past its age only where the coarser one holds it, keeps
 * every invariant of rollup.h after every step, crosses gaps in one step, and
 * ends with nothing due; retention.enabled = false plans nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "config.h"
#include "retention.h"
#include "rollup.h"

#define DAY 86400
#define T0 1699999200 /* a whole hour */

static void test_levels_kept_by_bucket_width(void **state)
{
    (void)state;
    rollup_state st;
    rollup_state_init(&st, 10);
    assert_int_equal(st.level[0].width, 10);
    assert_true(st.level[1].active && st.level[1].width == 60);
    assert_true(st.level[2].active && st.level[2].width == 3600);
    assert_int_equal(rollup_level_of(&st, 0), 0);
    assert_int_equal(rollup_level_of(&st, 3600), 2);
    rollup_state_init(&st, 60);
    assert_false(st.level[1].active);
    assert_true(st.level[2].active);
    assert_int_equal(rollup_coarser(&st, 0), 2);
    assert_int_equal(rollup_finer(&st, 2), 0);
    assert_int_equal(rollup_level_of(&st, 60), -1);
    rollup_state_init(&st, 7);
    assert_false(st.level[1].active || st.level[2].active);
    assert_int_equal(rollup_coarser(&st, 0), -1);
}

static void test_step_chooses_resolution(void **state)
{
    (void)state;
    rollup_state st;
    rollup_state_init(&st, 10);
    assert_int_equal(rollup_choose(&st, 0), 0);
    assert_int_equal(rollup_choose(&st, 59), 0);
    assert_int_equal(rollup_choose(&st, 60), 1);
    assert_int_equal(rollup_choose(&st, 3599), 1);
    assert_int_equal(rollup_choose(&st, 86400), 2);
}

static void assert_span(const rollup_span *s, int64_t width, int64_t lo, int64_t hi)
{
    assert_int_equal(s->width, width);
    assert_int_equal(s->lo, lo);
    assert_int_equal(s->hi, hi);
}

static void test_spans_cover_each_bucket_once(void **state)
{
    (void)state;
    rollup_state st;
    rollup_state_init(&st, 10);
    st.level[1].rolled_until = 60000;
    st.level[2].rolled_until = 36000;
    st.level[0].kept_from = 30000;
    st.level[1].kept_from = 7200;
    rollup_span sp[ROLLUP_LEVELS];
    rollup_spans(&st, 0, sp);
    assert_span(&sp[0], 10, 30000, ROLLUP_UNBOUNDED);
    assert_span(&sp[1], 60, 7200, 30000);
    assert_span(&sp[2], 3600, 0, 7200);
    rollup_spans(&st, 1, sp);
    assert_span(&sp[1], 60, 7200, 60000);
    assert_span(&sp[0], 10, 60000, ROLLUP_UNBOUNDED);
    assert_span(&sp[2], 3600, 0, 7200);
    rollup_spans(&st, 2, sp);
    assert_span(&sp[2], 3600, 0, 36000);
    assert_span(&sp[1], 60, 36000, 60000);
    assert_span(&sp[0], 10, 60000, ROLLUP_UNBOUNDED);
    /* without the 1-minute resolution */
    rollup_state_init(&st, 60);
    st.level[2].rolled_until = 7200;
    rollup_spans(&st, 2, sp);
    assert_span(&sp[2], 3600, 0, 7200);
    assert_span(&sp[0], 60, 7200, ROLLUP_UNBOUNDED);
    assert_int_equal(sp[1].width, -1);
    assert_int_equal(sp[1].lo, sp[1].hi);
}

/* ---- the planner against a model: raw rows in [T0, T0 + span) ----------------- */

typedef struct model {
    rollup_state st;
    int64_t span;
    int calls;
} model;

/* The rows a level holds: raw where not deleted; a roll-up where rolled and kept. */
static int model_first_at(void *ctx, int level, int64_t from, int64_t *bucket, char *err,
                          size_t errlen)
{
    (void)err, (void)errlen;
    model *m = ctx;
    const rollup_level *lv = &m->st.level[level];
    int64_t lo = T0 > lv->kept_from ? T0 : lv->kept_from;
    int64_t hi = T0 + m->span;
    if (level > 0 && lv->rolled_until < hi)
        hi = lv->rolled_until;
    if (from > lo)
        lo = from - from % lv->width;
    if (lo < from)
        lo = from;
    *bucket = lo < hi ? lo : INT64_MAX;
    m->calls++;
    return 0;
}

static void assert_invariants(const rollup_state *st)
{
    for (int l = 1; l < ROLLUP_LEVELS; l++)
        assert_int_equal(st->level[l].rolled_until % st->level[l].width, 0);
    assert_true(st->level[2].rolled_until <= st->level[1].rolled_until);
    assert_true(st->level[0].kept_from <= st->level[1].rolled_until);
    assert_int_equal(st->level[0].kept_from % 60, 0);
    assert_true(st->level[1].kept_from <= st->level[2].rolled_until);
    assert_int_equal(st->level[1].kept_from % 3600, 0);
}

/* Plans and applies steps at `now` until none is due; returns how many. */
static int run(model *m, const tally_config *cfg, int64_t now)
{
    retention_rows rows = {model_first_at, m};
    retention_step step;
    char err[128];
    int steps = 0, rc;
    while ((rc = retention_next(&m->st, cfg, now, &rows, &step, err, sizeof err)) == 1) {
        assert_true(step.lo < step.hi);
        if (step.kind == RETENTION_EXPIRE)
            assert_int_equal(step.fold_sets, step.level == 2);
        retention_apply(&m->st, &step);
        assert_invariants(&m->st);
        assert_true(++steps < 100);
    }
    assert_int_equal(rc, 0);
    return steps;
}

static void test_planner_rolls_up_then_expires(void **state)
{
    (void)state;
    tally_config cfg;
    config_defaults(&cfg);
    model m = {.span = 3600};
    rollup_state_init(&m.st, 10);

    /* the first 10 minutes have ended, but not their grace */
    run(&m, &cfg, T0 + 600 + RETENTION_GRACE_SECONDS - 1);
    assert_int_equal(m.st.level[1].rolled_until, 0);
    run(&m, &cfg, T0 + 600 + RETENTION_GRACE_SECONDS);
    assert_int_equal(m.st.level[1].rolled_until, T0 + 600);
    assert_int_equal(m.st.level[2].rolled_until, 0);
    assert_int_equal(m.st.level[0].kept_from, 0);

    /* a day later: all rolled up, nothing deleted yet (14 days) */
    run(&m, &cfg, T0 + DAY);
    assert_true(m.st.level[1].rolled_until >= T0 + 3600);
    assert_true(m.st.level[2].rolled_until >= T0 + 3600);
    assert_int_equal(m.st.level[0].kept_from, 0);

    /* 100 days later: raw and 1-minute rows deleted, hours kept (730 days) */
    run(&m, &cfg, T0 + 100 * (int64_t)DAY);
    assert_true(m.st.level[0].kept_from >= T0 + 3600);
    assert_true(m.st.level[1].kept_from >= T0 + 3600);
    assert_int_equal(m.st.level[2].kept_from, 0);

    /* 800 days later: the hours go too, and then nothing is due */
    run(&m, &cfg, T0 + 800 * (int64_t)DAY);
    assert_true(m.st.level[2].kept_from >= T0 + 3600);
    assert_int_equal(run(&m, &cfg, T0 + 800 * (int64_t)DAY), 0);
}

static void test_planner_crosses_gaps_in_one_step(void **state)
{
    (void)state;
    tally_config cfg;
    config_defaults(&cfg);
    model m = {.span = 600};
    rollup_state_init(&m.st, 10);
    /* 10 minutes of data then a year of nothing: a handful of steps, not 50,000 */
    int steps = run(&m, &cfg, T0 + 365 * (int64_t)DAY);
    assert_true(steps <= 12);
    assert_int_equal(m.st.level[1].rolled_until, T0 + 600); /* nothing after: no step */
}

static void test_disabled_plans_nothing(void **state)
{
    (void)state;
    tally_config cfg;
    config_defaults(&cfg);
    cfg.retention.enabled = 0;
    model m = {.span = 3600};
    rollup_state_init(&m.st, 10);
    assert_int_equal(run(&m, &cfg, T0 + 800 * (int64_t)DAY), 0);
    assert_int_equal(m.calls, 0);
}

static void test_forever_keeps_a_resolution(void **state)
{
    (void)state;
    tally_config cfg;
    config_defaults(&cfg);
    cfg.retention.raw_seconds = 0;
    model m = {.span = 3600};
    rollup_state_init(&m.st, 10);
    run(&m, &cfg, T0 + 100 * (int64_t)DAY);
    assert_int_equal(m.st.level[0].kept_from, 0);
    assert_true(m.st.level[1].kept_from >= T0 + 3600);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels_kept_by_bucket_width),
        cmocka_unit_test(test_step_chooses_resolution),
        cmocka_unit_test(test_spans_cover_each_bucket_once),
        cmocka_unit_test(test_planner_rolls_up_then_expires),
        cmocka_unit_test(test_planner_crosses_gaps_in_one_step),
        cmocka_unit_test(test_disabled_plans_nothing),
        cmocka_unit_test(test_forever_keeps_a_resolution),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
