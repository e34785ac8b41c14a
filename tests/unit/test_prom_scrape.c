/*
 * test_prom_scrape.c — reading samples back out of the exposition that
 * common/prom_text writes (what `tally status` does with /metrics): a family
 * by name (not a longer name it prefixes), a sample by one label, sums over
 * a family's samples, comments skipped, and nothing found in garbage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "prom_scrape.h"
#include "prom_text.h"

typedef struct seen {
    int n;
    char labels[4][64];
    double values[4];
} seen;

static void collect(void *ctx, const char *labels, size_t len, double v)
{
    seen *s = ctx;
    if (s->n < 4) {
        snprintf(s->labels[s->n], sizeof s->labels[0], "%.*s", (int)len, labels);
        s->values[s->n] = v;
    }
    s->n++;
}

static void reads_what_prom_text_wrote(void **state)
{
    (void)state;
    prom_text t;
    prom_text_init(&t);
    prom_text_family(&t, "tally_flusher_lag_records", "gauge", "Records behind.");
    const char *p0[] = {"partition", "0", NULL}, *p1[] = {"partition", "1", NULL};
    prom_text_sample(&t, "tally_flusher_lag_records", p0, 12);
    prom_text_sample(&t, "tally_flusher_lag_records", p1, 30);
    prom_text_single(&t, "tally_flusher_lag_records_max", "gauge", "A longer name.", 99);
    prom_text_single(&t, "tally_up", "gauge", "Up.", 1);
    prom_text_single(&t, "tally_big_total", "counter", "Big.", 12345678901234567.0);
    assert_false(prom_text_failed(&t));

    seen s = {0};
    assert_int_equal(prom_scrape_each(t.buf, "tally_flusher_lag_records", collect, &s), 2);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.labels[0], "partition=\"0\"");
    assert_float_equal(s.values[0], 12, 0);
    assert_string_equal(s.labels[1], "partition=\"1\"");
    assert_float_equal(s.values[1], 30, 0);

    double v = -1;
    assert_int_equal(prom_scrape_value(t.buf, "tally_flusher_lag_records", "partition=\"1\"", &v), 1);
    assert_float_equal(v, 30, 0);
    assert_int_equal(prom_scrape_value(t.buf, "tally_flusher_lag_records", "partition=\"7\"", &v), 0);
    assert_int_equal(prom_scrape_value(t.buf, "tally_up", NULL, &v), 1);
    assert_float_equal(v, 1, 0);
    assert_int_equal(prom_scrape_value(t.buf, "tally_big_total", NULL, &v), 1);
    assert_float_equal(v, 12345678901234568.0, 0);
    assert_float_equal(prom_scrape_sum(t.buf, "tally_flusher_lag_records"), 42, 0);
    assert_int_equal(prom_scrape_value(t.buf, "tally_missing", NULL, &v), 0);
    assert_float_equal(prom_scrape_sum(t.buf, "tally_missing"), 0, 0);
    prom_text_free(&t);
}

static void garbage_holds_no_sample(void **state)
{
    (void)state;
    double v;
    assert_int_equal(prom_scrape_value("", "a", NULL, &v), 0);
    assert_int_equal(prom_scrape_value("a", "a", NULL, &v), 0);
    assert_int_equal(prom_scrape_value("a{x=\"1\" 3\n", "a", NULL, &v), 0); /* no '}' */
    assert_int_equal(prom_scrape_value("a zz\n", "a", NULL, &v), 0);
    assert_int_equal(prom_scrape_value("# a 1\n", "a", NULL, &v), 0);
    assert_int_equal(prom_scrape_value("ab 1\na 2", "a", NULL, &v), 1); /* no newline at the end */
    assert_float_equal(v, 2, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_what_prom_text_wrote),
        cmocka_unit_test(garbage_holds_no_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
