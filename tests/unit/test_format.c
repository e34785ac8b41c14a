/*
 * test_format.c — sample values as the Prometheus API writes them
 * (format_prom_value: Go's FormatFloat(v, 'f', -1, 64)).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "format.h"
#include "progress_bar.h"

static void expect(double v, const char *want)
{
    char buf[FORMAT_PROM_VALUE_MAX];
    int n = format_prom_value(buf, sizeof buf, v);
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_positional(void **state)
{
    (void)state;
    expect(0, "0");
    expect(1, "1");
    expect(-3, "-3");
    expect(1.5, "1.5");
    expect(0.1, "0.1");
    expect(1e15, "1000000000000000");
    expect(1.2345e15, "1234500000000000");
    expect(1e21, "1000000000000000000000");
    expect(1e-7, "0.0000001");
    expect(-2.5e-3, "-0.0025");
    expect(123456.789, "123456.789");
    expect(1.0 / 3, "0.3333333333333333");
}

static void test_special(void **state)
{
    (void)state;
    expect(NAN, "NaN");
    expect(INFINITY, "+Inf");
    expect(-INFINITY, "-Inf");
}

static void test_round_trip(void **state)
{
    (void)state;
    char buf[FORMAT_PROM_VALUE_MAX];
    double values[] = {1.7976931348623157e308, 5e-324, 2.2250738585072014e-308, 9007199254740993.0,
                       123456789.123456789, -0.000123456789};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        format_prom_value(buf, sizeof buf, values[i]);
        assert_null(strchr(buf, 'e'));
        assert_true(strtod(buf, NULL) == values[i]);
    }
}

static void test_thousands(void **state)
{
    (void)state;
    char buf[32];
    const struct { long long n; const char *want; } cases[] = {
        {0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-1234, "-1,234"},
        {INT64_MIN, "-9,223,372,036,854,775,808"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        format_thousands(buf, sizeof buf, cases[i].n);
        assert_string_equal(buf, cases[i].want);
    }
}

static void test_progress_render(void **state)
{
    (void)state;
    char buf[160];
    progress_bar_render(buf, sizeof buf, "records", 5000, 10000, 12);
    assert_string_equal(buf, "[##########----------]  50.0 %  5,000 / 10,000 records  12 s left");
    progress_bar_render(buf, sizeof buf, "records", 0, 10, 0);
    assert_string_equal(buf, "[--------------------]   0.0 %  0 / 10 records");
    progress_bar_render(buf, sizeof buf, "records", 12, 10, 3); /* past the total: clamped */
    assert_string_equal(buf, "[####################] 100.0 %  10 / 10 records");
    progress_bar_render(buf, sizeof buf, "records", 42, 0, 3); /* no total known */
    assert_string_equal(buf, "42 records");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_thousands),
        cmocka_unit_test(test_progress_render),
        cmocka_unit_test(test_positional),
        cmocka_unit_test(test_special),
        cmocka_unit_test(test_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
