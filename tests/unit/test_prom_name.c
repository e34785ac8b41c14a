/*
 * test_prom_name.c — unit tests for common/prom_name.c: StatsD names and
 * tags as Prometheus names and labels, ASCII and UTF-8.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "prom_name.h"

static void assert_prom_name(const char *statsd, const char *want)
{
    char out[PROM_NAME_MAX + 8];
    size_t n = prom_name_from_statsd(out, statsd, strlen(statsd));
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
}

static void test_ascii_names(void **state)
{
    (void)state;
    assert_prom_name("api.requests", "api_requests");
    assert_prom_name("a-b_c:d", "a_b_c:d");
    assert_prom_name("9lives", "_9lives");
    assert_prom_name("", "");
}

static void test_utf8_names(void **state)
{
    (void)state;
    assert_prom_name("caf\xc3\xa9", "caf_");                 /* é: 2 bytes, one '_' */
    assert_prom_name("\xe6\x97\xa5\xe6\x9c\xac.req", "___req"); /* 日本: 3 bytes each */
    assert_prom_name("x\xf0\x9f\x98\x80y", "x_y");            /* an emoji: 4 bytes */
    assert_prom_name("\xc3\xa9t\xc3\xa9", "_t_");
    /* the Prometheus name is never longer than the StatsD name + 1 */
    char name[256], out[PROM_NAME_MAX + 8];
    memset(name, 'a', 255);
    name[0] = '7';
    assert_int_equal(prom_name_from_statsd(out, name, 255), 256);
}

typedef struct labels {
    char text[512];
    size_t len;
} labels;

static int collect(void *ctx, const char *label, const char *value, size_t value_len)
{
    labels *l = ctx;
    l->len += (size_t)snprintf(l->text + l->len, sizeof l->text - l->len, "%s=\"%.*s\";", label,
                               (int)value_len, value);
    return 0;
}

static void assert_labels(const char *tags, const char *want)
{
    labels l = {.len = 0};
    l.text[0] = '\0';
    assert_int_equal(prom_labels_from_tags(tags, strlen(tags), collect, &l), 0);
    assert_string_equal(l.text, want);
}

static void test_labels(void **state)
{
    (void)state;
    assert_labels("env:prod,host:a", "env=\"prod\";host=\"a\";");
    /* values keep ':' '/' '?' spaces and UTF-8 verbatim */
    assert_labels("url:http://x/y?z=1", "url=\"http://x/y?z=1\";");
    assert_labels("city:S\xc3\xa3o Paulo", "city=\"S\xc3\xa3o Paulo\";");
    /* keys are mapped like names, a UTF-8 character to one '_' */
    assert_labels("r\xc3\xa9gion:eu", "r_gion=\"eu\";");
    assert_labels("a.b:1", "a_b=\"1\";");
    assert_labels("k:v:w", "k=\"v:w\";"); /* split at the first ':' */
    /* a bare tag is k="true" */
    assert_labels("canary", "canary=\"true\";");
    assert_labels(":v", "_=\"v\";");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_names),
        cmocka_unit_test(test_utf8_names),
        cmocka_unit_test(test_labels),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
