/*
 * test_prom_text.c — the Prometheus text writer: families, escaping, values,
 * and the histogram's cumulative buckets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom_text.h"

static void family_and_samples(void **state)
{
    (void)state;
    prom_text t;
    prom_text_init(&t);
    prom_text_family(&t, "tally_x_total", "counter", "Things, with a \\ and a\nnewline.");
    const char *labels[] = {"reason", "bad \"name\"\\\n", "code", "400", NULL};
    prom_text_sample(&t, "tally_x_total", labels, 3);
    prom_text_sample(&t, "tally_x_total", NULL, 12345678901234567.0);
    assert_false(prom_text_failed(&t));
    assert_string_equal(t.buf, "# HELP tally_x_total Things, with a \\\\ and a\\nnewline.\n"
                               "# TYPE tally_x_total counter\n"
                               "tally_x_total{reason=\"bad \\\"name\\\"\\\\\\n\",code=\"400\"} 3\n"
                               "tally_x_total 12345678901234568\n");
    prom_text_free(&t);
}

static void special_values(void **state)
{
    (void)state;
    prom_text t;
    prom_text_init(&t);
    prom_text_sample(&t, "a", NULL, 0.25);
    prom_text_sample(&t, "b", NULL, 1.0 / 0.0);
    prom_text_sample(&t, "c", NULL, -1.0 / 0.0);
    prom_text_sample(&t, "d", NULL, 0.0 / 0.0);
    assert_string_equal(t.buf, "a 0.25\nb +Inf\nc -Inf\nd NaN\n");
    prom_text_free(&t);
}

static void histogram_is_cumulative(void **state)
{
    (void)state;
    prom_hist h;
    memset(&h, 0, sizeof h);
    prom_hist_observe(&h, 0.0001); /* le 0.0005 */
    prom_hist_observe(&h, 0.0005); /* le 0.0005 (bounds are inclusive) */
    prom_hist_observe(&h, 0.003);  /* le 0.005 */
    prom_hist_observe(&h, 60);     /* +Inf */
    prom_text t;
    prom_text_init(&t);
    prom_text_histogram(&t, "tally_ack_seconds", "Ack latency.", &h);
    assert_non_null(strstr(t.buf, "# TYPE tally_ack_seconds histogram\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_bucket{le=\"0.0005\"} 2\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_bucket{le=\"0.0025\"} 2\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_bucket{le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_bucket{le=\"10\"} 3\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t.buf, "tally_ack_seconds_count 4\n"));
    const char *sum = strstr(t.buf, "tally_ack_seconds_sum ");
    assert_non_null(sum);
    double v = strtod(sum + strlen("tally_ack_seconds_sum "), NULL);
    assert_true(v > 60.0035 && v < 60.0037);
    prom_text_free(&t);
}

static void grows_past_its_first_buffer(void **state)
{
    (void)state;
    prom_text t;
    prom_text_init(&t);
    char long_help[10000];
    memset(long_help, 'h', sizeof long_help - 1);
    long_help[sizeof long_help - 1] = '\0';
    for (int i = 0; i < 10; i++)
        prom_text_family(&t, "tally_big", "gauge", long_help);
    assert_false(prom_text_failed(&t));
    assert_int_equal(t.len, 10 * (strlen("# HELP tally_big ") + 9999 + 1 +
                                  strlen("# TYPE tally_big gauge\n")));
    prom_text_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(family_and_samples),
        cmocka_unit_test(special_values),
        cmocka_unit_test(histogram_is_cumulative),
        cmocka_unit_test(grows_past_its_first_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
