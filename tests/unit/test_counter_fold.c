/*
 * test_counter_fold.c — the StatsD listeners' folding of counter lines
 * (ingest/counter_fold.h): which lines fold and under which key, the text
 * written back (read again by the one parser, statsd_parse_batch, to the
 * same sums), the extra_lines of each entry, the domain limit, and a fold
 * of many series (the table grows).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "counter_fold.h"
#include "statsd.h"

static const statsd_limits LIMITS = {1, EVENT_NAME_MAX, EVENT_TAGS_MAX, 1};

/* Checks the line with the one parser and folds it: counter_fold_add's answer. */
static int fold_line(counter_fold *f, const char *line)
{
    static statsd_line_info info;
    assert_int_equal(statsd_check_line(line, strlen(line), &LIMITS, &info), STATSD_OK);
    return counter_fold_add(f, line, strlen(line), &info.ev);
}

/* Writes the fold into text (NUL-terminated) and extra; returns the entries. */
static size_t write_fold(counter_fold *f, char **text, uint32_t **extra)
{
    size_t n = counter_fold_count(f), room = counter_fold_bytes(f);
    *text = malloc(room + 1);
    *extra = malloc((n + 1) * sizeof **extra);
    assert_non_null(*text);
    assert_non_null(*extra);
    size_t len = counter_fold_write(f, *text, *extra);
    assert_true(len <= room);
    (*text)[len] = '\0';
    assert_int_equal(counter_fold_count(f), 0); /* emptied */
    return n;
}

static void test_lines_differing_only_in_value_fold(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    assert_int_equal(fold_line(&f, "api.hits:1|c|#env:prod,region:eu"), 1);
    assert_int_equal(fold_line(&f, "api.hits:2|c|#env:prod,region:eu"), 1);
    assert_int_equal(fold_line(&f, "api.hits:+4|c|#env:prod,region:eu"), 1);
    assert_int_equal(counter_fold_count(&f), 1);
    char *text;
    uint32_t *extra;
    assert_int_equal(write_fold(&f, &text, &extra), 1);
    assert_string_equal(text, "api.hits:7|c|#env:prod,region:eu\n");
    assert_int_equal(extra[0], 2);
    free(text), free(extra);
    counter_fold_free(&f);
}

static void test_other_sections_are_other_entries(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    assert_int_equal(fold_line(&f, "a:1|c"), 1);
    assert_int_equal(fold_line(&f, "a:1|c|@0.5"), 1);
    assert_int_equal(fold_line(&f, "a:1|c|#x:1,y:2"), 1);
    assert_int_equal(fold_line(&f, "a:1|c|#y:2,x:1"), 1); /* bytes differ: its own */
    assert_int_equal(fold_line(&f, "a:1|c|T1700000000"), 1);
    assert_int_equal(fold_line(&f, "b:5|c"), 1);
    assert_int_equal(fold_line(&f, "a:2|c|@0.5"), 1);
    assert_int_equal(fold_line(&f, "a:3|c"), 1);
    char *text;
    uint32_t *extra;
    assert_int_equal(write_fold(&f, &text, &extra), 6);
    assert_string_equal(text, "a:4|c\na:3|c|@0.5\na:1|c|#x:1,y:2\na:1|c|#y:2,x:1\n"
                              "a:1|c|T1700000000\nb:5|c\n");
    uint32_t want[] = {1, 1, 0, 0, 0, 0};
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(extra[i], want[i]);
    free(text), free(extra);
    counter_fold_free(&f);
}

static void test_only_single_value_counters_fold(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    assert_int_equal(fold_line(&f, "g:1|g"), 0);
    assert_int_equal(fold_line(&f, "t:12|ms"), 0);
    assert_int_equal(fold_line(&f, "d:1:2:3|d"), 0);
    assert_int_equal(fold_line(&f, "u:alice|s"), 0);
    assert_int_equal(fold_line(&f, "c:1:2|c"), 0); /* packed: kept as sent */
    assert_int_equal(counter_fold_count(&f), 0);
    counter_fold_free(&f);
}

/* The text written back, parsed again: the same sums at the same rates. */
static void test_written_text_parses_to_the_sums(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    assert_int_equal(fold_line(&f, "frac:0.1|c"), 1);
    assert_int_equal(fold_line(&f, "frac:0.2|c"), 1);
    assert_int_equal(fold_line(&f, "neg:-3|c|@0.25"), 1);
    assert_int_equal(fold_line(&f, "neg:-2.5|c|@0.25"), 1);
    assert_int_equal(fold_line(&f, "big:400000000000000|c"), 1);
    assert_int_equal(fold_line(&f, "big:500000000000000|c"), 1);
    char *text;
    uint32_t *extra;
    assert_int_equal(write_fold(&f, &text, &extra), 3);
    statsd_batch b;
    statsd_batch_init(&b);
    statsd_limits limits = {100, EVENT_NAME_MAX, EVENT_TAGS_MAX, 10};
    char err[128];
    assert_int_equal(statsd_parse_batch(&b, text, strlen(text), &limits, 1000, err, sizeof err), 0);
    assert_int_equal(b.count, 3);
    assert_true(b.events[0].value == 0.1 + 0.2);
    assert_true(b.events[1].value == -5.5 && b.events[1].sample_rate == 0.25);
    assert_true(b.events[2].value == 9e14);
    assert_int_equal(extra[0], 1);
    assert_int_equal(extra[1], 1);
    assert_int_equal(extra[2], 1);
    statsd_batch_free(&b);
    free(text), free(extra);
    counter_fold_free(&f);
}

/* A line that would take its entry out of event.h's domain is not folded. */
static void test_domain_limit(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    assert_int_equal(fold_line(&f, "x:600000000000000|c"), 1);
    assert_int_equal(fold_line(&f, "x:600000000000000|c"), 0); /* 1.2e15 > 1e15 */
    assert_int_equal(fold_line(&f, "x:1|c"), 1);
    /* at rate 1e-15 a line weighs 1e15: a second one may not join it */
    assert_int_equal(fold_line(&f, "r:0|c|@0.000000000000001"), 1);
    assert_int_equal(fold_line(&f, "r:0|c|@0.000000000000001"), 0);
    char *text;
    uint32_t *extra;
    assert_int_equal(write_fold(&f, &text, &extra), 2);
    assert_string_equal(text, "x:600000000000001|c\nr:0|c|@0.000000000000001\n");
    assert_int_equal(extra[0], 1);
    assert_int_equal(extra[1], 0);
    free(text), free(extra);
    counter_fold_free(&f);
}

/* 5,000 series, each twice: the table grows past its first size, every
 * entry is found again, and the fold is empty and reusable after a write. */
static void test_many_series(void **state)
{
    (void)state;
    counter_fold f;
    counter_fold_init(&f);
    char line[64];
    for (int round = 0; round < 2; round++) {
        for (int pass = 0; pass < 2; pass++)
            for (int i = 0; i < 5000; i++) {
                snprintf(line, sizeof line, "s.%d:%d|c|#k:v", i, i);
                assert_int_equal(fold_line(&f, line), 1);
            }
        assert_int_equal(counter_fold_count(&f), 5000);
        char *text;
        uint32_t *extra;
        assert_int_equal(write_fold(&f, &text, &extra), 5000);
        const char *p = text;
        for (int i = 0; i < 5000; i++) {
            snprintf(line, sizeof line, "s.%d:%d|c|#k:v\n", i, 2 * i);
            assert_memory_equal(p, line, strlen(line));
            p += strlen(line);
            assert_int_equal(extra[i], 1);
        }
        assert_int_equal(*p, '\0');
        free(text), free(extra);
    }
    counter_fold_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_differing_only_in_value_fold),
        cmocka_unit_test(test_other_sections_are_other_entries),
        cmocka_unit_test(test_only_single_value_counters_fold),
        cmocka_unit_test(test_written_text_parses_to_the_sums),
        cmocka_unit_test(test_domain_limit),
        cmocka_unit_test(test_many_series),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
