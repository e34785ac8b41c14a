/*
 * test_statsd.c — unit tests for the StatsD batch parser (common/statsd.c).
 *
 * Every body is copied into a malloc'd buffer of exactly its length (no NUL
 * terminator), so AddressSanitizer catches any read past the end of a line.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "statsd.h"

#define STAMP 1700000000123LL

static statsd_limits limits_default(void)
{
    statsd_limits l = {.max_lines = 50000, .max_name_len = 200, .max_tags_len = 1024,
                       .max_errors = 100};
    return l;
}

/* A parse whose body lives in an exact-size heap buffer. */
typedef struct parsed {
    statsd_batch b;
    char *body;
    size_t len;
    int rc;
    char err[256];
} parsed;

static void parse_with(parsed *p, const char *text, size_t len, const statsd_limits *l)
{
    free(p->body);
    p->body = malloc(len ? len : 1);
    assert_non_null(p->body);
    memcpy(p->body, text, len);
    p->len = len;
    p->err[0] = '\0';
    p->rc = statsd_parse_batch(&p->b, p->body, len, l, STAMP, p->err, sizeof p->err);
}

static void parse_text(parsed *p, const char *text)
{
    statsd_limits l = limits_default();
    parse_with(p, text, strlen(text), &l);
}

static void parsed_init(parsed *p)
{
    memset(p, 0, sizeof *p);
    statsd_batch_init(&p->b);
}

static void parsed_free(parsed *p)
{
    statsd_batch_free(&p->b);
    free(p->body);
    p->body = NULL;
}

static void assert_str_n(const char *got, size_t got_len, const char *want)
{
    assert_int_equal(got_len, strlen(want));
    if (got_len > 0) assert_memory_equal(got, want, got_len);
}

/* Parses one line that must be valid and returns its event by value. */
static metric_event parse_one(parsed *p, const char *line)
{
    parse_text(p, line);
    if (p->rc != 0 && p->b.error_count > 0)
        fail_msg("line \"%s\" rejected: %s", line, p->b.errors[0].reason);
    assert_int_equal(p->rc, 0);
    assert_int_equal(p->b.count, 1);
    assert_int_equal(p->b.error_total, 0);
    return p->b.events[0];
}

/* Asserts that `line`, placed as line 2 after a valid line, is rejected with `reason`. */
static void assert_line_rejected(const char *line, const char *reason)
{
    parsed p;
    parsed_init(&p);
    char text[2048];
    snprintf(text, sizeof text, "ok.metric:1|c\n%s\nok.metric:2|c", line);
    parse_text(&p, text);
    if (p.rc != STATSD_INVALID) fail_msg("line \"%s\" was accepted", line);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.error_total, 1);
    assert_int_equal(p.b.error_count, 1);
    assert_int_equal(p.b.errors[0].line, 2);
    if (strcmp(p.b.errors[0].reason, reason) != 0)
        fail_msg("line \"%s\": reason \"%s\", want \"%s\"", line, p.b.errors[0].reason, reason);
    parsed_free(&p);
}

/* ---- valid lines ---------------------------------------------------------- */

static void test_counter_basic(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "api.requests.count:1|c");
    assert_int_equal(ev.type, METRIC_COUNTER);
    assert_int_equal(ev.flags, 0);
    assert_str_n(ev.name, ev.name_len, "api.requests.count");
    assert_true(ev.name == p.body); /* zero copy: the name is in the body */
    assert_int_equal(ev.tags_len, 0);
    assert_true(ev.value == 1.0);
    assert_true(ev.sample_rate == 1.0);
    assert_int_equal(ev.stamp_ms, STAMP);
    parsed_free(&p);
}

static void test_counter_negative_fractional(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "x:-2.5|c");
    assert_true(ev.value == -2.5);
    assert_int_equal(ev.flags, 0);
    ev = parse_one(&p, "x:+0.125|c");
    assert_true(ev.value == 0.125);
    assert_int_equal(ev.flags, 0); /* sign only means "relative" for gauges */
    ev = parse_one(&p, "x_y-z.W9:1e3|c");
    assert_true(ev.value == 1000.0);
    parsed_free(&p);
}

static void test_gauge_absolute_and_relative(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "mem.free:42|g");
    assert_int_equal(ev.type, METRIC_GAUGE);
    assert_int_equal(ev.flags, 0);
    assert_true(ev.value == 42.0);

    ev = parse_one(&p, "mem.free:+3|g");
    assert_int_equal(ev.type, METRIC_GAUGE);
    assert_int_equal(ev.flags, EVENT_GAUGE_RELATIVE);
    assert_true(ev.value == 3.0);

    ev = parse_one(&p, "mem.free:-3.5|g");
    assert_int_equal(ev.flags, EVENT_GAUGE_RELATIVE);
    assert_true(ev.value == -3.5);

    ev = parse_one(&p, "mem.free:-0|g|T1600000000");
    assert_int_equal(ev.flags, EVENT_GAUGE_RELATIVE | EVENT_CLIENT_STAMP);
    assert_true(ev.value == 0.0 && signbit(ev.value));
    parsed_free(&p);
}

static void test_distribution_types(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    const char *lines[] = {"lat:12.5|ms", "lat:12.5|h", "lat:12.5|d"};
    for (size_t i = 0; i < 3; i++) {
        metric_event ev = parse_one(&p, lines[i]);
        assert_int_equal(ev.type, METRIC_DISTRIBUTION);
        assert_true(ev.value == 12.5);
        assert_int_equal(ev.flags, 0);
    }
    parsed_free(&p);
}

static void test_sample_rate_every_type(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    const char *lines[] = {"a:1|c|@0.5", "a:1|g|@0.5", "a:+1|g|@0.5", "a:1|ms|@0.5",
                           "a:1|h|@0.5", "a:1|d|@0.5"};
    for (size_t i = 0; i < 6; i++) {
        metric_event ev = parse_one(&p, lines[i]);
        assert_true(ev.sample_rate == 0.5);
    }
    assert_true(parse_one(&p, "a:1|c|@1").sample_rate == 1.0);
    assert_true(parse_one(&p, "a:1|c|@1e-3").sample_rate == 0.001);
    parsed_free(&p);
}

static void test_tags_and_timestamp(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "api.requests.count:1|c|#host:a,env:prod");
    assert_str_n(ev.tags, ev.tags_len, "env:prod,host:a");
    /* canonical tags live in the arena, not in the body */
    assert_true(ev.tags < p.body || ev.tags >= p.body + p.len);

    ev = parse_one(&p, "x:1|c|T1700000000");
    assert_int_equal(ev.stamp_ms, 1700000000000LL);
    assert_int_equal(ev.flags, EVENT_CLIENT_STAMP);
    assert_int_equal(parse_one(&p, "x:1|c|T0").stamp_ms, 0);
    assert_int_equal(parse_one(&p, "x:1|c|T4102444799").stamp_ms, 4102444799000LL);
    parsed_free(&p);
}

static void test_sections_any_order(void **state)
{
    (void)state;
    const char *lines[] = {
        "svc.lat:7|ms|@0.25|#b:2,a:1|T1650000000",
        "svc.lat:7|ms|#b:2,a:1|@0.25|T1650000000",
        "svc.lat:7|ms|T1650000000|#a:1,b:2|@0.25",
        "svc.lat:7|ms|T1650000000|@0.25|#b:2,a:1",
        "svc.lat:7|ms|@0.25|T1650000000|#a:1,b:2,a:1",
    };
    parsed p;
    parsed_init(&p);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        metric_event ev = parse_one(&p, lines[i]);
        assert_int_equal(ev.type, METRIC_DISTRIBUTION);
        assert_str_n(ev.name, ev.name_len, "svc.lat");
        assert_true(ev.value == 7.0);
        assert_true(ev.sample_rate == 0.25);
        assert_str_n(ev.tags, ev.tags_len, "a:1,b:2");
        assert_int_equal(ev.stamp_ms, 1650000000000LL);
        assert_int_equal(ev.flags, EVENT_CLIENT_STAMP);
    }
    parsed_free(&p);
}

/* The fast decimal path must give exactly what strtod gives. */
static void test_numbers_match_strtod(void **state)
{
    (void)state;
    const char *values[] = {
        "0", "1", "-1", "+7", "-0", "0.1", "0.2", "0.3", "1.", ".5", "-.5", "123.456",
        "999999999999999", "9999999999999999e-5", "0.000000000000001", "3.141592653589793",
        "2.718281828459045235", "1e3", "1E-3", "-1.5e+10", "4.9e-324", "1.7976931348623157e14",
        "00000000000000000001", "0.1234567890123456789", "100000000000000000000000e-10",
        "123456789012345.6", "12345.678901234",
    };
    parsed p;
    parsed_init(&p);
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "n:%s|c", values[i]);
        metric_event ev = parse_one(&p, line);
        double want = strtod(values[i], NULL);
        if (memcmp(&ev.value, &want, sizeof want) != 0)
            fail_msg("value %s parsed as %.17g, strtod gives %.17g", values[i], ev.value, want);
    }
    /* a generated sweep over the fast path's shapes */
    for (unsigned i = 0; i < 20000; i++) {
        char num[64], line[96];
        unsigned long long m = (unsigned long long)i * 2654435761ULL % 1000000000000000ULL;
        unsigned frac = i % 16;
        snprintf(num, sizeof num, "%llu", m);
        size_t n = strlen(num);
        if (frac > 0 && frac < n) {
            memmove(num + n - frac + 1, num + n - frac, frac + 1);
            num[n - frac] = '.';
        }
        snprintf(line, sizeof line, "n:%s|g", num);
        metric_event ev = parse_one(&p, line);
        double want = strtod(num, NULL);
        if (memcmp(&ev.value, &want, sizeof want) != 0)
            fail_msg("value %s parsed as %.17g, strtod gives %.17g", num, ev.value, want);
    }
    /* 16 to 19 significant digits: beyond what the fast path may take exactly */
    unsigned long long x = 88172645463325252ULL;
    for (unsigned i = 0; i < 20000; i++) {
        char num[64], line[96];
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned digits = 16 + i % 4;
        snprintf(num, sizeof num, "1%0*llu", (int)digits - 1, x % 1000000000000000000ULL);
        num[digits] = '\0';
        size_t dot = 1 + i % 15; /* (at most 15 whole digits: inside the numeric domain) */
        memmove(num + dot + 1, num + dot, digits - dot + 1);
        num[dot] = '.';
        snprintf(line, sizeof line, "n:%s|d", num);
        metric_event ev = parse_one(&p, line);
        double want = strtod(num, NULL);
        if (memcmp(&ev.value, &want, sizeof want) != 0)
            fail_msg("value %s parsed as %.17g, strtod gives %.17g", num, ev.value, want);
    }
    parsed_free(&p);
}

/* ---- error reasons -------------------------------------------------------- */

static void test_error_name(void **state)
{
    (void)state;
    assert_line_rejected("foo|c", "missing ':' between name and value");
    assert_line_rejected("foo", "missing ':' between name and value");
    assert_line_rejected("fo{o:1|c", "invalid character '{' in metric name");
    assert_line_rejected("foo bar:1|c", "invalid character ' ' in metric name");
    assert_line_rejected("a\x01" "b:1|c", "invalid character byte 0x01 in metric name");
    assert_line_rejected(":1|c", "empty metric name");
    assert_line_rejected(" x:1|c", "invalid character ' ' in metric name");
}

static void test_error_value(void **state)
{
    (void)state;
    assert_line_rejected("x:abc|c", "value \"abc\" is not a number");
    assert_line_rejected("x:|c", "missing value after ':'");
    assert_line_rejected("x:", "missing value after ':'");
    assert_line_rejected("x:1", "missing metric type (expected |c, |g, |ms, |h, |d or |s after the value)");
    assert_line_rejected("x:0x10|c", "value \"0x10\" is not a number");
    assert_line_rejected("x:inf|c", "value \"inf\" is not a number");
    assert_line_rejected("x:-inf|g", "value \"-inf\" is not a number");
    assert_line_rejected("x:nan|c", "value \"nan\" is not a number");
    assert_line_rejected("x:NaN|ms", "value \"NaN\" is not a number");
    assert_line_rejected("x: 1|c", "value \" 1\" is not a number");
    assert_line_rejected("x:1 |c", "value \"1 \" is not a number");
    assert_line_rejected("x:1e|c", "value \"1e\" is not a number");
    assert_line_rejected("x:1.2.3|c", "value \"1.2.3\" is not a number");
    assert_line_rejected("x:.|c", "value \".\" is not a number");
    assert_line_rejected("x:-|g", "value \"-\" is not a number");
    assert_line_rejected("x:1,5|c", "value \"1,5\" is not a number");
    assert_line_rejected("x:1e999|c", "value \"1e999\" is out of range");
    /* the numeric domain (event.h): a line adds at most 1e15 to any running value */
    assert_line_rejected("x:1e308|c",
                         "value 1e+308 at sample rate 1: |value / rate| and 1 / rate may be at "
                         "most 1e+15");
    assert_line_rejected("g:1e308|g",
                         "value 1e+308 at sample rate 1: |value / rate| and 1 / rate may be at "
                         "most 1e+15");
    assert_line_rejected("g:+1e308|g",
                         "value 1e+308 at sample rate 1: |value / rate| and 1 / rate may be at "
                         "most 1e+15");
    assert_line_rejected("x:-1.0000000000000002e15|ms",
                         "value -1000000000000000.2 at sample rate 1: |value / rate| and 1 / rate "
                         "may be at most 1e+15");
    assert_line_rejected("x:6e14|c|@0.5",
                         "value 600000000000000 at sample rate 0.5: |value / rate| and 1 / rate "
                         "may be at most 1e+15");
    {   /* at the bound exactly: accepted */
        parsed p;
        parsed_init(&p);
        assert_true(parse_one(&p, "x:1e15|c").value == 1e15);
        assert_true(parse_one(&p, "x:-5e14|ms|@0.5").value == -5e14);
        assert_true(parse_one(&p, "x:-1e15|g").value == -1e15);
        parsed_free(&p);
    }
    assert_line_rejected("x:0|d|@1e-16",
                         "value 0 at sample rate 9.9999999999999998e-17: |value / rate| and 1 / "
                         "rate may be at most 1e+15");
    char line[200];
    snprintf(line, sizeof line, "x:%065d|c", 1);
    assert_line_rejected(line, "value too long (more than 64 bytes)");
    snprintf(line, sizeof line, "x:%064d|c", 1); /* exactly 64 bytes is fine */
    parsed p;
    parsed_init(&p);
    assert_true(parse_one(&p, line).value == 1.0);
    parsed_free(&p);
    /* a long bad token is clipped in the reason */
    assert_line_rejected("x:abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz|c",
                         "value \"abcdefghijklmnopqrstuvwxyzabcdef...\" is not a number");
}

static void test_error_type(void **state)
{
    (void)state;
    assert_line_rejected("x:1|x", "unknown metric type \"x\"");
    assert_line_rejected("x:1|cc", "unknown metric type \"cc\"");
    assert_line_rejected("x:1|C", "unknown metric type \"C\"");
    assert_line_rejected("x:1|m", "unknown metric type \"m\"");
    assert_line_rejected("x:1|c\r|@0.5", "unknown metric type \"c\\x0d\"");
    assert_line_rejected("x:1|", "missing metric type after '|'");
    assert_line_rejected("x:1||c", "missing metric type after '|'");
    assert_line_rejected("x:1|S", "unknown metric type \"S\"");
    assert_line_rejected("x:1|ss", "unknown metric type \"ss\"");
}

/* ---- sets ------------------------------------------------------------------ */

/* "name:MEMBER|s": the event carries the member's digest, value 0, rate 1. */
static void test_set_member_is_its_digest(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "users.active:alice@example.com|s");
    assert_int_equal(ev.type, METRIC_SET);
    assert_str_n(ev.name, ev.name_len, "users.active");
    assert_true(ev.member == hash_digest64("alice@example.com", 17));
    assert_true(ev.value == 0 && !signbit(ev.value) && ev.sample_rate == 1.0);
    assert_int_equal(ev.flags, 0);
    assert_int_equal(ev.tags_len, 0);
    /* any byte but '|' and control characters: ':', '#', '@', spaces, UTF-8, -1 */
    const char *members[] = {"a:b:c", "#tag", "@0.5", "two words", "caf\xc3\xa9",
                             "550e8400-e29b-41d4-a716-446655440000", "-1", "+1", "1e999",
                             "\x7e\x80\xff"};
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++) {
        char line[128];
        snprintf(line, sizeof line, "s:%s|s", members[i]);
        ev = parse_one(&p, line);
        assert_int_equal(ev.type, METRIC_SET);
        assert_true(ev.member == hash_digest64(members[i], strlen(members[i])));
        assert_int_equal(ev.flags, 0); /* "+1" is no relative gauge */
    }
    /* a rate is checked and ignored, tags and stamps as for any line */
    ev = parse_one(&p, "s:bob|s|@0.1|#b:2,a:1|T1650000000");
    assert_true(ev.sample_rate == 1.0 && ev.member == hash_digest64("bob", 3));
    assert_str_n(ev.tags, ev.tags_len, "a:1,b:2");
    assert_int_equal(ev.stamp_ms, 1650000000000LL);
    assert_int_equal(ev.flags, EVENT_CLIENT_STAMP);
    /* 256 bytes is the longest member */
    char line[300] = "s:";
    memset(line + 2, 'm', STATSD_MEMBER_MAX);
    memcpy(line + 2 + STATSD_MEMBER_MAX, "|s", 3);
    ev = parse_one(&p, line);
    assert_true(ev.member == hash_digest64(line + 2, STATSD_MEMBER_MAX));
    /* the other types' members stay 0 */
    assert_true(parse_one(&p, "c:1|c").member == 0);
    parsed_free(&p);
}

static void test_set_errors(void **state)
{
    (void)state;
    assert_line_rejected("s:|s", "missing set member after ':'");
    char line[300] = "s:";
    memset(line + 2, 'm', STATSD_MEMBER_MAX + 1);
    memcpy(line + 3 + STATSD_MEMBER_MAX, "|s", 3);
    assert_line_rejected(line, "set member longer than 256 bytes");
    assert_line_rejected("s:a\tb|s", "byte 0x09 in set member (control characters are not allowed)");
    assert_line_rejected("s:a\rb|s", "byte 0x0d in set member (control characters are not allowed)");
    assert_line_rejected("s:a\x7f|s", "byte 0x7f in set member (control characters are not allowed)");
    assert_line_rejected("s:\x01|s", "byte 0x01 in set member (control characters are not allowed)");
    assert_line_rejected("s:bob|s|@2", "sample rate \"2\" must be in (0, 1]");
    assert_line_rejected("s:bob|s|@x", "sample rate \"x\" is not a number");
    assert_line_rejected("s:bob|s|x", "unknown section \"|x\" (expected |@rate, |#tags or |T<seconds>)");
    assert_line_rejected("s:bob", "missing metric type (expected |c, |g, |ms, |h, |d or |s after the value)");

    /* a NUL inside a member */
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    parse_with(&p, "s:a\0b|s", 7, &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_string_equal(p.b.errors[0].reason,
                        "byte 0x00 in set member (control characters are not allowed)");
    /* a trailing "\r" ends the line, as for any type */
    parse_text(&p, "s:bob|s\r\n");
    assert_int_equal(p.rc, 0);
    assert_true(p.b.events[0].member == hash_digest64("bob", 3));
    parsed_free(&p);
}

static void test_error_rate(void **state)
{
    (void)state;
    assert_line_rejected("x:1|c|@2", "sample rate \"2\" must be in (0, 1]");
    assert_line_rejected("x:1|c|@0", "sample rate \"0\" is zero (a line sampled at rate 0 was never sent)");
    assert_line_rejected("x:1|c|@-0.5", "sample rate \"-0.5\" must be in (0, 1]");
    assert_line_rejected("x:1|c|@1.0000001", "sample rate \"1.0000001\" must be in (0, 1]");
    assert_line_rejected("x:1|c|@1e999", "sample rate \"1e999\" must be in (0, 1]");
    assert_line_rejected("x:1|c|@abc", "sample rate \"abc\" is not a number");
    assert_line_rejected("x:1|c|@nan", "sample rate \"nan\" is not a number");
    assert_line_rejected("x:1|c|@", "empty sample rate after '|@'");
    assert_line_rejected("x:1|c|@0.5|@0.5", "duplicate sample rate section");
}

static void test_error_tags(void **state)
{
    (void)state;
    assert_line_rejected("x:1|c|#a\tb", "invalid tag \"a\\x09b\"");
    assert_line_rejected("x:1|c|#ok,a\x7f" "b", "invalid tag \"a\\x7fb\"");
    assert_line_rejected("x:1|c|#a|#b", "duplicate tags section");
    char line[512], tag[260];
    memset(tag, 't', 201);
    tag[201] = '\0';
    snprintf(line, sizeof line, "x:1|c|#%s", tag);
    assert_line_rejected(line, "tag longer than 200 bytes");
    tag[200] = '\0';
    snprintf(line, sizeof line, "x:1|c|#%s", tag);
    parsed p;
    parsed_init(&p);
    assert_int_equal(parse_one(&p, line).tags_len, 200);
    parsed_free(&p);
}

static void test_error_timestamp_and_sections(void **state)
{
    (void)state;
    assert_line_rejected("x:1|c|Tx", "timestamp \"x\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T", "timestamp \"\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T-1", "timestamp \"-1\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T1.5", "timestamp \"1.5\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T1700000000000",
                         "timestamp \"1700000000000\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T4102444800",
                         "timestamp \"4102444800\" is not a valid Unix time in seconds");
    assert_line_rejected("x:1|c|T1|T2", "duplicate timestamp section");
    assert_line_rejected("x:1|c|Q1", "unknown section \"|Q1\" (expected |@rate, |#tags or |T<seconds>)");
    assert_line_rejected("x:1|c|", "empty section after '|'");
    assert_line_rejected("x:1|c||@0.5", "empty section after '|'");
}

/* ---- batches ---------------------------------------------------------------- */

static void test_multi_error_batch(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "a:1|c\n"      /* 1 */
                   "b:x|c\n"      /* 2 bad */
                   "c:1|g\n"      /* 3 */
                   "\n"           /* 4 empty */
                   "d:1|q\n"      /* 5 bad */
                   "e:1|ms|@0.1\n" /* 6 */
                   "f{:1|c\n");   /* 7 bad */
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.error_total, 3);
    assert_int_equal(p.b.error_count, 3);
    assert_int_equal(p.b.errors[0].line, 2);
    assert_string_equal(p.b.errors[0].reason, "value \"x\" is not a number");
    assert_int_equal(p.b.errors[1].line, 5);
    assert_string_equal(p.b.errors[1].reason, "unknown metric type \"q\"");
    assert_int_equal(p.b.errors[2].line, 7);
    assert_string_equal(p.b.errors[2].reason, "invalid character '{' in metric name");
    parsed_free(&p);
}

static void test_max_errors_cap(void **state)
{
    (void)state;
    char text[4096] = "";
    for (int i = 1; i <= 40; i++) strcat(text, i % 2 ? "bad|c\n" : "good:1|c\n");
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    l.max_errors = 3;
    parse_with(&p, text, strlen(text), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.error_total, 20);
    assert_int_equal(p.b.error_count, 3);
    assert_int_equal(p.b.errors[0].line, 1);
    assert_int_equal(p.b.errors[1].line, 3);
    assert_int_equal(p.b.errors[2].line, 5);

    l.max_errors = 0;
    parse_with(&p, text, strlen(text), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.error_total, 20);
    assert_int_equal(p.b.error_count, 0);
    assert_int_equal(p.b.count, 0);

    l.max_errors = 1000; /* more than the error array had: must grow */
    parse_with(&p, text, strlen(text), &l);
    assert_int_equal(p.b.error_total, 20);
    assert_int_equal(p.b.error_count, 20);
    assert_int_equal(p.b.errors[19].line, 39);
    parsed_free(&p);
}

static void test_batch_atomic(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "a:1|c\nb:2|c\nc:3|c\nd:4|c|@5\ne:5|c\n");
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.error_total, 1);
    assert_int_equal(p.b.errors[0].line, 4);
    parsed_free(&p);
}

static void test_crlf_and_empty_lines(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "\r\na:1|c\r\n\r\n\nb:2|g|#z,y\r\n\n");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 2);
    assert_str_n(p.b.events[0].name, p.b.events[0].name_len, "a");
    assert_str_n(p.b.events[1].name, p.b.events[1].name_len, "b");
    assert_str_n(p.b.events[1].tags, p.b.events[1].tags_len, "y,z");
    assert_true(p.b.events[1].value == 2.0);

    /* no trailing newline, and a CRLF before the last line */
    parse_text(&p, "a:1|c\r\nb:2|c");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 2);

    /* empty lines still count for numbering */
    parse_text(&p, "\n\r\n\nbad\n");
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.errors[0].line, 4);

    /* empty bodies */
    parse_text(&p, "");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 0);
    parse_text(&p, "\n\r\n\n");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 0);
    statsd_limits l = limits_default();
    assert_int_equal(statsd_parse_batch(&p.b, NULL, 0, &l, STAMP, p.err, sizeof p.err), 0);
    assert_int_equal(p.b.count, 0);
    parsed_free(&p);
}

static void test_limit_name_length(void **state)
{
    (void)state;
    char line[600];
    parsed p;
    parsed_init(&p);
    memset(line, 'n', 200);
    strcpy(line + 200, ":1|c");
    assert_int_equal(parse_one(&p, line).name_len, 200);
    memset(line, 'n', 201);
    strcpy(line + 201, ":1|c");
    assert_line_rejected(line, "metric name longer than 200 bytes");

    /* a configured limit above EVENT_NAME_MAX is clamped to it */
    statsd_limits l = limits_default();
    l.max_name_len = 1000;
    memset(line, 'n', 255);
    strcpy(line + 255, ":1|c");
    parse_with(&p, line, strlen(line), &l);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.events[0].name_len, 255);
    memset(line, 'n', 256);
    strcpy(line + 256, ":1|c");
    parse_with(&p, line, strlen(line), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_string_equal(p.b.errors[0].reason, "metric name longer than 255 bytes");
    parsed_free(&p);
}

static void test_limit_tags_length(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    l.max_tags_len = 10;
    const char *ok = "x:1|c|#b:222,a:1";
    parse_with(&p, ok, strlen(ok), &l);
    assert_int_equal(p.rc, 0);
    assert_str_n(p.b.events[0].tags, p.b.events[0].tags_len, "a:1,b:222");
    const char *ok10 = "x:1|c|#b:2222,a:1";
    parse_with(&p, ok10, strlen(ok10), &l);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.events[0].tags_len, 10);
    const char *bad = "x:1|c|#b:22222,a:1";
    parse_with(&p, bad, strlen(bad), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_string_equal(p.b.errors[0].reason, "tags longer than 10 bytes (canonical form is 11)");
    /* the limit applies to the canonical form: duplicates do not count */
    const char *dups = "x:1|c|#a:1,a:1,a:1,a:1,b:2222";
    parse_with(&p, dups, strlen(dups), &l);
    assert_int_equal(p.rc, 0);
    assert_str_n(p.b.events[0].tags, p.b.events[0].tags_len, "a:1,b:2222");
    parsed_free(&p);
}

static void test_limit_max_lines(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    l.max_lines = 2;
    const char *two = "\na:1|c\n\nb:1|c\n\n";
    parse_with(&p, two, strlen(two), &l);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 2);

    const char *three = "a:1|c\n\nb:1|c\n\nc:1|c\nbad\nworse\n";
    parse_with(&p, three, strlen(three), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.error_total, 1); /* parsing stops at the first line past the limit */
    assert_int_equal(p.b.errors[0].line, 5);
    assert_string_equal(p.b.errors[0].reason, "too many lines (limit 2)");

    l.max_lines = 50000;
    size_t n = 50001;
    char *big = malloc(n * 6);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) memcpy(big + i * 6, "a:1|c\n", 6);
    parse_with(&p, big, n * 6, &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.errors[0].line, 50001);
    assert_string_equal(p.b.errors[0].reason, "too many lines (limit 50000)");
    parse_with(&p, big, (n - 1) * 6, &l);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 50000);
    free(big);
    parsed_free(&p);
}

static void test_tag_canonical_form(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    assert_str_n(parse_one(&p, "x:1|c|#c,b,a").tags, 5, "a,b,c");
    metric_event ev = parse_one(&p, "x:1|c|#b,a,b,a,b");
    assert_str_n(ev.tags, ev.tags_len, "a,b");
    ev = parse_one(&p, "x:1|c|#a:1,a");
    assert_str_n(ev.tags, ev.tags_len, "a,a:1"); /* prefix sorts first */
    ev = parse_one(&p, "x:1|c|#b,B,a,A,_,1");
    assert_str_n(ev.tags, ev.tags_len, "1,A,B,_,a,b"); /* bytewise, not locale */
    ev = parse_one(&p, "x:1|c|#only");
    assert_str_n(ev.tags, ev.tags_len, "only");
    ev = parse_one(&p, "x:1|c|#k:v/w.x-y_z");
    assert_str_n(ev.tags, ev.tags_len, "k:v/w.x-y_z");

    /* many tags (the qsort path), reversed, with duplicates */
    char line[2048] = "x:1|c|#", want[2048] = "";
    for (int i = 59; i >= 0; i--) {
        char t[16];
        snprintf(t, sizeof t, "t%02d,", i);
        strcat(line, t);
        if (i % 3 == 0) strcat(line, t);
    }
    line[strlen(line) - 1] = '\0';
    for (int i = 0; i < 60; i++) {
        char t[16];
        snprintf(t, sizeof t, i ? ",t%02d" : "t%02d", i);
        strcat(want, t);
    }
    ev = parse_one(&p, line);
    assert_str_n(ev.tags, ev.tags_len, want);
    parsed_free(&p);
}

/* Every byte is accepted in names and tags exactly when the grammar allows it. */
static void test_character_classes(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    for (int c = 0; c < 256; c++) {
        if (c == '\n' || c == ':' || c == '|') continue; /* structural in a name */
        int name_ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '.' || c == '-';
        char line[32];
        int n = snprintf(line, sizeof line, "a%cb:1|c", 'X');
        line[1] = (char)c;
        parse_with(&p, line, (size_t)n, &l);
        if ((p.rc == 0) != name_ok) fail_msg("name byte 0x%02x: rc %d", c, p.rc);
    }
    for (int c = 0; c < 256; c++) {
        if (c == '\n' || c == ',' || c == '|') continue; /* structural in tags */
        int tag_ok = c >= 0x20 && c < 0x7f; /* printable ASCII; a lone byte >= 0x80 is not UTF-8 */
        char line[32];
        int n = snprintf(line, sizeof line, "x:1|c|#a%cb", 'X');
        line[8] = (char)c;
        parse_with(&p, line, (size_t)n, &l);
        if ((p.rc == 0) != tag_ok) fail_msg("tag byte 0x%02x: rc %d", c, p.rc);
    }
    parsed_free(&p);
}

static void test_buffer_reuse(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    char big[64 * 1024] = "";
    size_t off = 0;
    for (int i = 0; i < 1000; i++)
        off += (size_t)snprintf(big + off, sizeof big - off, "m%d:%d|c|#h:%d,e:p\n", i, i, i % 7);
    parse_text(&p, big);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 1000);
    assert_str_n(p.b.events[999].tags, p.b.events[999].tags_len, "e:p,h:5");
    char *arena = p.b.arena;
    metric_event *events = p.b.events;
    size_t cap = p.b.events_cap;

    /* a bad batch in between leaves no trace in the next one */
    parse_text(&p, "a:1|c\nb|c\n");
    assert_int_equal(p.rc, STATSD_INVALID);

    parse_text(&p, "small:2|g|#z:1,y:2\nother:3|ms\n");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 2);
    assert_int_equal(p.b.error_total, 0);
    assert_int_equal(p.b.error_count, 0);
    assert_true(p.b.arena == arena);   /* smaller body: no reallocation */
    assert_true(p.b.events == events);
    assert_int_equal(p.b.events_cap, cap);
    assert_str_n(p.b.events[0].name, p.b.events[0].name_len, "small");
    assert_str_n(p.b.events[0].tags, p.b.events[0].tags_len, "y:2,z:1");
    assert_true(p.b.events[0].tags == p.b.arena); /* arena restarted */
    assert_int_equal(p.b.events[1].tags_len, 0);
    assert_true(p.b.events[1].value == 3.0);

    /* a failing line's tags do not consume arena space */
    parse_text(&p, "a:1|c|#q,p|@7\nb:1|c|#s,r\n");
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.arena_len, 0); /* nor do the good lines of a refused batch */
    parsed_free(&p);

    /* free then init again works */
    parsed_init(&p);
    parse_text(&p, "a:1|c");
    assert_int_equal(p.rc, 0);
    parsed_free(&p);
    statsd_batch_free(&p.b); /* double free of a freed batch is harmless */
}

static void test_events_point_into_body(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "first:1|c|#a\nsecond:2|c|#b,a\n");
    assert_int_equal(p.rc, 0);
    for (size_t i = 0; i < p.b.count; i++) {
        const metric_event *ev = &p.b.events[i];
        assert_true(ev->name >= p.body && ev->name + ev->name_len <= p.body + p.len);
        assert_true(ev->tags >= p.b.arena && ev->tags + ev->tags_len <= p.b.arena + p.b.arena_cap);
    }
    assert_true(p.b.events[1].name == p.body + 13);
    parsed_free(&p);
}

/* ---- DogStatsD wire format, reason codes ------------------------------------ */

/* Checks `line` both ways, alone (statsd_check_line) and as a body of one
 * line (statsd_parse_batch): both must give `code`. */
static void assert_code(const char *line, int code)
{
    size_t n = strlen(line);
    char *buf = malloc(n ? n : 1);
    assert_non_null(buf);
    memcpy(buf, line, n);
    statsd_limits l = limits_default();
    statsd_line_info *info = malloc(sizeof *info);
    assert_non_null(info);
    int rc = statsd_check_line(buf, n, &l, info);
    if (rc != code)
        fail_msg("line \"%s\": statsd_check_line gives %s (%s), want %s", line,
                 statsd_reason_name(rc), info->reason, statsd_reason_name(code));
    if (code != STATSD_OK) assert_true(info->reason[0] != '\0');
    parsed p;
    parsed_init(&p);
    parse_with(&p, line, n, &l);
    if (code == STATSD_OK) {
        if (p.rc != 0) fail_msg("line \"%s\": batch refused: %s", line, p.b.errors[0].reason);
    } else {
        if (p.rc != STATSD_INVALID) fail_msg("line \"%s\": batch accepted", line);
        if (p.b.errors[0].code != code)
            fail_msg("line \"%s\": batch code %s, want %s", line,
                     statsd_reason_name(p.b.errors[0].code), statsd_reason_name(code));
        assert_string_equal(p.b.errors[0].reason, info->reason);
    }
    parsed_free(&p);
    free(info);
    free(buf);
}

static void test_reason_names(void **state)
{
    (void)state;
    assert_string_equal(statsd_reason_name(STATSD_OK), "ok");
    assert_string_equal(statsd_reason_name(STATSD_BAD_NAME), "bad_name");
    assert_string_equal(statsd_reason_name(STATSD_ZERO_RATE), "zero_rate");
    assert_string_equal(statsd_reason_name(STATSD_TOO_MANY_LINES), "too_many_lines");
    assert_string_equal(statsd_reason_name(-1), "unknown");
    assert_string_equal(statsd_reason_name(STATSD_CODE_COUNT), "unknown");
    for (int i = 0; i < STATSD_CODE_COUNT; i++) {
        const char *a = statsd_reason_name(i);
        assert_string_not_equal(a, "unknown");
        assert_true(strspn(a, "abcdefghijklmnopqrstuvwxyz_0123456789") == strlen(a));
        for (int j = 0; j < i; j++) assert_string_not_equal(a, statsd_reason_name(j));
    }
}

static void test_packed_values(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "lat:1:2.5:3|d|@0.5|#b:2,a:1|T1700000000");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 3);
    const double want[] = {1, 2.5, 3};
    for (size_t i = 0; i < 3; i++) {
        const metric_event *ev = &p.b.events[i];
        assert_str_n(ev->name, ev->name_len, "lat");
        assert_true(ev->name == p.body);
        assert_int_equal(ev->type, METRIC_DISTRIBUTION);
        assert_true(ev->value == want[i]);
        assert_true(ev->sample_rate == 0.5);
        assert_str_n(ev->tags, ev->tags_len, "a:1,b:2");
        assert_true(ev->tags == p.b.events[0].tags); /* one canonical copy */
        assert_int_equal(ev->stamp_ms, 1700000000000LL);
        assert_int_equal(ev->flags, EVENT_CLIENT_STAMP);
    }
    /* gauges: each value relative or absolute on its own */
    parse_text(&p, "g:+1:-2:3|g");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 3);
    assert_true(p.b.events[0].value == 1 && p.b.events[0].flags == EVENT_GAUGE_RELATIVE);
    assert_true(p.b.events[1].value == -2 && p.b.events[1].flags == EVENT_GAUGE_RELATIVE);
    assert_true(p.b.events[2].value == 3 && p.b.events[2].flags == 0);
    assert_int_equal(p.b.events[2].stamp_ms, STAMP);
    /* counters and timers; lines around them keep their order */
    parse_text(&p, "a:1|c\nc:1:2|c\nt:10:20|ms\nz:9|c");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 6);
    assert_str_n(p.b.events[2].name, p.b.events[2].name_len, "c");
    assert_true(p.b.events[2].value == 2 && p.b.events[2].type == METRIC_COUNTER);
    assert_true(p.b.events[4].value == 20 && p.b.events[4].type == METRIC_DISTRIBUTION);
    assert_str_n(p.b.events[5].name, p.b.events[5].name_len, "z");
    /* a set is never packed: "a:b" is one member */
    parse_text(&p, "s:a:b|s");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 1);
    assert_true(p.b.events[0].member == hash_digest64("a:b", 3));

    /* STATSD_VALUES_MAX values, not one more */
    char line[4096] = "m:";
    size_t off = 2;
    for (int i = 0; i < STATSD_VALUES_MAX; i++) off += (size_t)sprintf(line + off, "%s1", i ? ":" : "");
    strcpy(line + off, "|c");
    parse_text(&p, line);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, STATSD_VALUES_MAX);
    strcpy(line + off, ":1|c");
    assert_code(line, STATSD_TOO_MANY_VALUES);
    parsed_free(&p);

    assert_line_rejected("x:1::2|c", "empty value in packed values");
    assert_line_rejected("x:1:|c", "empty value in packed values");
    assert_line_rejected("x:1:abc|d", "value \"abc\" is not a number");
    assert_code("x:1::2|c", STATSD_BAD_VALUE);
    assert_code("x:1:2e15|c", STATSD_OUT_OF_DOMAIN); /* every value is in the domain */
    assert_code("x:1:2e14|c|@0.1", STATSD_OUT_OF_DOMAIN);
    assert_code("x:1:2e14|c|@0.5", STATSD_OK);
}

static void test_packed_values_count_against_max_lines(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    statsd_limits l = limits_default();
    l.max_lines = 4;
    const char *ok = "a:1:2|c\nb:3:4|c";
    parse_with(&p, ok, strlen(ok), &l);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 4);
    const char *over = "a:1:2|c\nb:3:4:5|c\nc:1|c";
    parse_with(&p, over, strlen(over), &l);
    assert_int_equal(p.rc, STATSD_INVALID);
    assert_int_equal(p.b.error_total, 1);
    assert_int_equal(p.b.errors[0].line, 2);
    assert_int_equal(p.b.errors[0].code, STATSD_TOO_MANY_LINES);
    assert_string_equal(p.b.errors[0].reason, "too many events (limit 4; each packed value is one)");
    parsed_free(&p);
}

static void test_container_id_and_datadog_sections(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "x:2|c|c:ci-1234:abcd:0x7f");
    assert_true(ev.value == 2 && ev.type == METRIC_COUNTER && ev.tags_len == 0);
    ev = parse_one(&p, "x:2|c|#b,a|c:abc|e:it-false,cn-web,pu-1:2|card:orchestrator|@0.5");
    assert_str_n(ev.tags, ev.tags_len, "a,b");
    assert_true(ev.sample_rate == 0.5);
    ev = parse_one(&p, "x:2|g|card:high|T1700000001|c:id");
    assert_int_equal(ev.stamp_ms, 1700000001000LL);
    assert_int_equal(ev.flags, EVENT_CLIENT_STAMP);
    parsed_free(&p);
    assert_code("x:1|c|c:a|c:b", STATSD_DUPLICATE_SECTION);
    assert_line_rejected("x:1|c|e:a|e:b", "duplicate external data (|e:) section");
    assert_code("x:1|c|card:low|card:high", STATSD_DUPLICATE_SECTION);
    assert_code("x:1|c|c", STATSD_UNKNOWN_SECTION);
    assert_code("x:1|c|card", STATSD_UNKNOWN_SECTION);
    assert_code("x:1|c|h:host", STATSD_UNKNOWN_SECTION); /* an event's section, not a metric's */
}

static void test_section_order_free(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "x:3|ms|@0.25|#b:1,a:2|T1700000000|c:cid",
        "x:3|ms|c:cid|T1700000000|#b:1,a:2|@0.25",
        "x:3|ms|#b:1,a:2|c:cid|@0.25|T1700000000",
        "x:3|ms|T1700000000|@0.25|c:cid|#a:2,b:1",
    };
    parsed p;
    parsed_init(&p);
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        metric_event ev = parse_one(&p, lines[i]);
        assert_int_equal(ev.type, METRIC_DISTRIBUTION);
        assert_true(ev.value == 3 && ev.sample_rate == 0.25);
        assert_str_n(ev.tags, ev.tags_len, "a:2,b:1");
        assert_int_equal(ev.stamp_ms, 1700000000000LL);
    }
    parsed_free(&p);
    assert_code("x:1|c|@0.5|#a|@0.5", STATSD_DUPLICATE_SECTION);
    assert_code("x:1|c|#a|T1|#b", STATSD_DUPLICATE_SECTION);
}

static void test_empty_tags(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "x:1|c|#");
    assert_int_equal(ev.tags_len, 0);
    assert_null(ev.tags);
    ev = parse_one(&p, "x:1|c|#a:b,,c:d");
    assert_str_n(ev.tags, ev.tags_len, "a:b,c:d");
    ev = parse_one(&p, "x:1|c|#,z,,a,");
    assert_str_n(ev.tags, ev.tags_len, "a,z");
    ev = parse_one(&p, "x:1|c|#,,,");
    assert_int_equal(ev.tags_len, 0);
    ev = parse_one(&p, "s:bob|s|#");
    assert_int_equal(ev.tags_len, 0);
    /* the series is the same as without the section */
    parse_text(&p, "x:1|c|#\nx:1|c\nx:1|c|#a,,\nx:1|c|#a");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.events[0].tags_len, p.b.events[1].tags_len);
    assert_str_n(p.b.events[2].tags, p.b.events[2].tags_len, "a");
    parsed_free(&p);
}

static void test_tag_values_printable(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev = parse_one(&p, "x:1|c|#url:http://h:8080/p?q=1&r=2,path:/a/b,t:a:b");
    assert_str_n(ev.tags, ev.tags_len, "path:/a/b,t:a:b,url:http://h:8080/p?q=1&r=2");
    ev = parse_one(&p, "x:1|c|#msg:a b,k:{v}[w]@#$%^*()=+~`'\"\\;<>!");
    assert_str_n(ev.tags, ev.tags_len, "k:{v}[w]@#$%^*()=+~`'\"\\;<>!,msg:a b");
    ev = parse_one(&p, "x:1|c|#canary"); /* a bare tag stays as it is */
    assert_str_n(ev.tags, ev.tags_len, "canary");
    parsed_free(&p);
    assert_code("x:1|c|#a\tb", STATSD_BAD_TAGS);
    assert_code("x:1|c|#a\x7f", STATSD_BAD_TAGS);
    assert_code("x:1|c|#a\x01,b", STATSD_BAD_TAGS);
}

static void test_utf8_names_and_tags(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    metric_event ev =
        parse_one(&p, "caf\xc3\xa9.latency:12|ms|#\xe6\x97\xa5\xe6\x9c\xac:\xe6\x9d\xb1\xe4\xba\xac,"
                      "city:S\xc3\xa3o Paulo");
    assert_str_n(ev.name, ev.name_len, "caf\xc3\xa9.latency");
    assert_true(ev.value == 12 && ev.type == METRIC_DISTRIBUTION);
    /* bytewise order: 'c' (0x63) before 0xe6 */
    assert_str_n(ev.tags, ev.tags_len,
                 "city:S\xc3\xa3o Paulo,\xe6\x97\xa5\xe6\x9c\xac:\xe6\x9d\xb1\xe4\xba\xac");
    ev = parse_one(&p, "\xf0\x9f\x98\x80:1|c"); /* a 4-byte character */
    assert_str_n(ev.name, ev.name_len, "\xf0\x9f\x98\x80");
    parse_text(&p, "\xd0\xbc\xd0\xb5\xd1\x82\xd1\x80\xd0\xb8\xd0\xba\xd0\xb0:1:2|c|#\xef\xbf\xbd");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 2);
    assert_str_n(p.b.events[1].tags, p.b.events[1].tags_len, "\xef\xbf\xbd");
    parsed_free(&p);

    /* malformed UTF-8: bad_utf8 */
    assert_code("caf\xc3:1|c", STATSD_BAD_UTF8);          /* a lead byte without its continuation */
    assert_code("a\xff:1|c", STATSD_BAD_UTF8);
    assert_code("a\x80:1|c", STATSD_BAD_UTF8);            /* a lone continuation byte */
    assert_code("\xc0\xaf:1|c", STATSD_BAD_UTF8);         /* overlong '/' */
    assert_code("\xe0\x80\xaf:1|c", STATSD_BAD_UTF8);     /* overlong, 3 bytes */
    assert_code("\xed\xa0\x80:1|c", STATSD_BAD_UTF8);     /* a UTF-16 surrogate */
    assert_code("\xf4\x90\x80\x80:1|c", STATSD_BAD_UTF8); /* beyond U+10FFFF */
    assert_code("x:1|c|#a:\xe6\x97", STATSD_BAD_UTF8);     /* cut at the end of the line */
    assert_code("x:1|c|#a:\xe6\x97,b", STATSD_BAD_UTF8);
    assert_line_rejected("a\xff:1|c", "malformed UTF-8 (byte 0xff) in metric name");
    assert_line_rejected("x:1|c|#k:\xc3", "malformed UTF-8 in tag \"k:\\xc3\"");
    /* well-formed but ambiguous in a name: Unicode spaces and C1 controls */
    assert_code("a\xc2\xa0" "b:1|c", STATSD_BAD_NAME);     /* NO-BREAK SPACE */
    assert_code("a\xc2\x85" "b:1|c", STATSD_BAD_NAME);     /* NEL */
    assert_code("a\xe2\x80\xa8" "b:1|c", STATSD_BAD_NAME); /* LINE SEPARATOR */
    assert_code("a\xe3\x80\x80" "b:1|c", STATSD_BAD_NAME); /* IDEOGRAPHIC SPACE */
    assert_code("x:1|c|#a\xc2\xa0", STATSD_BAD_TAGS);
    /* the read path's name check agrees */
    assert_true(statsd_name_valid("caf\xc3\xa9", 5, 255));
    assert_false(statsd_name_valid("caf\xc3", 4, 255));
    assert_false(statsd_name_valid("a b", 3, 255));
    assert_false(statsd_name_valid("", 0, 255));
    assert_false(statsd_name_valid("abcd", 4, 3));
}

static void test_dogstatsd_events(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "_e{5,4}:hello|text");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.events_ignored, 1);
    assert_int_equal(p.b.service_checks_ignored, 0);
    parse_text(&p, "_e{5,4}:hello|text|d:1700000000|h:web-1|k:agg|p:low|s:src|t:warning|"
                   "#a:b,c|c:ci-1|e:x|card:low");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.events_ignored, 1);
    /* the lengths delimit: title and text may hold '|' */
    parse_text(&p, "_e{3,3}:a|b|c|d|t:info");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.events_ignored, 1);
    parse_text(&p, "_e{2,0}:hi|");
    assert_int_equal(p.rc, 0);
    /* UTF-8 title: lengths in bytes */
    parse_text(&p, "_e{5,1}:caf\xc3\xa9|x");
    assert_int_equal(p.rc, 0);
    /* among metrics */
    parse_text(&p, "x:1|c\n_e{1,1}:a|b\n_sc|check|0\ny:2:3|d\n_e{1,1}:c|d");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 3);
    assert_int_equal(p.b.events_ignored, 2);
    assert_int_equal(p.b.service_checks_ignored, 1);
    assert_str_n(p.b.events[1].name, p.b.events[1].name_len, "y");
    assert_true(p.b.events[2].value == 3);
    parsed_free(&p);

    assert_code("_e{1,1}:a|b", STATSD_OK);
    assert_code("_e{0,1}:|a", STATSD_BAD_EVENT);
    assert_code("_e{5,4}:hi|t", STATSD_BAD_EVENT);
    assert_code("_e{2,2}:abc|de", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:a|bc", STATSD_BAD_EVENT);
    assert_code("_e{x,1}:a|b", STATSD_BAD_EVENT);
    assert_code("_e{1,1}a|b", STATSD_BAD_EVENT);
    assert_code("_e{1,1:a|b", STATSD_BAD_EVENT);
    assert_code("_e{1234567,1}:a|b", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:a|b|p:high", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:a|b|t:fatal", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:a|b|d:yesterday", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:\x01|b", STATSD_BAD_EVENT);
    assert_code("_e{1,1}:a|b|z:1", STATSD_UNKNOWN_SECTION);
    assert_code("_e{1,1}:a|b|@0.5", STATSD_UNKNOWN_SECTION);
    assert_code("_e{1,1}:a|b|#a|#b", STATSD_DUPLICATE_SECTION);
    assert_code("_e{1,1}:a|b|#a\tb", STATSD_BAD_TAGS);
    assert_code("_e:1|c", STATSD_OK); /* a metric named "_e" */
}

static void test_dogstatsd_service_checks(void **state)
{
    (void)state;
    parsed p;
    parsed_init(&p);
    parse_text(&p, "_sc|db.up|0");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.count, 0);
    assert_int_equal(p.b.service_checks_ignored, 1);
    /* "m:" is the rest of the line, '|' included */
    parse_text(&p, "_sc|db.up|2|d:1700000000|h:h1|#env:prod|m:down | really|c:x");
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.b.service_checks_ignored, 1);
    parsed_free(&p);
    assert_code("_sc|db.up|3|c:ci|card:high", STATSD_OK);
    assert_code("_sc|db.up|4", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc|db.up|00", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc|db.up", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc|db.up|", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc||0", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc|db up|0", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc|db.up|0|p:low", STATSD_UNKNOWN_SECTION);
    assert_code("_sc|db.up|0|h:a|h:b", STATSD_DUPLICATE_SECTION);
    assert_code("_sc|db.up|0|d:x", STATSD_BAD_SERVICE_CHECK);
    assert_code("_sc:1|c", STATSD_OK); /* a metric named "_sc" */
}

/* Each refusal, and where Tally is stricter than a peer (README "Differences
 * from peers' parsers"), with its code. */
static void test_refusal_codes(void **state)
{
    (void)state;
    assert_code("foo|c", STATSD_BAD_NAME);
    assert_code(":1|c", STATSD_BAD_NAME);
    assert_code("my metric:1|c", STATSD_BAD_NAME);   /* Etsy would sanitise to my_metric */
    assert_code("a/b:1|c", STATSD_BAD_NAME);         /* Etsy: a-b */
    assert_code("name#tag=v:1|c", STATSD_BAD_NAME);  /* statsd_exporter's Librato tags */
    assert_code("name,tag=v:1|c", STATSD_BAD_NAME);  /* statsd_exporter/telegraf InfluxDB tags */
    assert_code("name;tag=v:1|c", STATSD_BAD_NAME);  /* Graphite tags */
    assert_code("name[tag=v]:1|c", STATSD_BAD_NAME); /* SignalFx tags */
    assert_code("a@b:1|c", STATSD_BAD_NAME);
    char name[300];
    memset(name, 'n', 201);
    strcpy(name + 201, ":1|c");
    assert_code(name, STATSD_NAME_TOO_LONG);
    assert_code("x:abc|c", STATSD_BAD_VALUE);
    assert_code("x:|c", STATSD_BAD_VALUE);
    assert_code("x:", STATSD_BAD_VALUE);
    assert_code("x:1e400|c", STATSD_BAD_VALUE);
    assert_code("x:1", STATSD_UNKNOWN_TYPE);
    assert_code("x:1|", STATSD_UNKNOWN_TYPE);
    assert_code("x:1|q", STATSD_UNKNOWN_TYPE);
    assert_code("x:1|c:2|ms", STATSD_UNKNOWN_TYPE); /* Etsy's several metrics in one line */
    assert_code("x:1|kv", STATSD_UNKNOWN_TYPE);     /* Etsy's key/value type */
    assert_code("s:|s", STATSD_BAD_MEMBER);
    assert_code("x:1|c|@2", STATSD_BAD_RATE);
    assert_code("x:1|c|@-0.5", STATSD_BAD_RATE);
    assert_code("x:1|c|@x", STATSD_BAD_RATE);
    assert_code("x:1|c|@", STATSD_BAD_RATE);
    assert_code("x:1|c|@0", STATSD_ZERO_RATE); /* Etsy reads @0 as 1 */
    assert_code("x:1|c|@0.0", STATSD_ZERO_RATE);
    assert_code("x:1|c|@1e-16", STATSD_OUT_OF_DOMAIN);
    assert_code("x:1e16|c", STATSD_OUT_OF_DOMAIN);
    assert_code("x:1|c|#a\x02", STATSD_BAD_TAGS);
    char tags[400] = "x:1|c|#";
    memset(tags + 7, 't', 201);
    tags[208] = '\0';
    assert_code(tags, STATSD_TAGS_TOO_LONG);
    assert_code("x:1|c|Tx", STATSD_BAD_TIMESTAMP);
    assert_code("x:1|c|T4102444800", STATSD_BAD_TIMESTAMP);
    assert_code("x:1|c|T1|T2", STATSD_DUPLICATE_SECTION);
    assert_code("x:1|c|Q1", STATSD_UNKNOWN_SECTION);
    assert_code("x:1|c|", STATSD_UNKNOWN_SECTION);
    assert_code("x:1|c|@0.5|", STATSD_UNKNOWN_SECTION);
}

/* statsd_check_line fills the line's info as the batch makes its events. */
static void test_check_line_info(void **state)
{
    (void)state;
    statsd_limits l = limits_default();
    statsd_line_info *info = malloc(sizeof *info);
    assert_non_null(info);
    const char *line = "api.lat:5:6|d|#z,a:1|@0.5|T1700000000";
    assert_int_equal(statsd_check_line(line, strlen(line), &l, info), STATSD_OK);
    assert_int_equal(info->kind, STATSD_LINE_METRIC);
    assert_int_equal(info->values, 2);
    assert_str_n(info->ev.name, info->ev.name_len, "api.lat");
    assert_true(info->ev.value == 5 && info->ev.sample_rate == 0.5);
    assert_str_n(info->ev.tags, info->ev.tags_len, "a:1,z");
    assert_int_equal(info->ev.stamp_ms, 1700000000000LL);
    line = "_e{1,1}:a|b";
    assert_int_equal(statsd_check_line(line, strlen(line), &l, info), STATSD_OK);
    assert_int_equal(info->kind, STATSD_LINE_EVENT);
    assert_int_equal(info->values, 0);
    line = "_sc|a|1";
    assert_int_equal(statsd_check_line(line, strlen(line), &l, info), STATSD_OK);
    assert_int_equal(info->kind, STATSD_LINE_SERVICE_CHECK);
    assert_int_equal(statsd_check_line("", 0, &l, info), STATSD_BAD_NAME);
    line = "x:1|c|@0";
    assert_int_equal(statsd_check_line(line, strlen(line), &l, info), STATSD_ZERO_RATE);
    assert_string_equal(info->reason, "sample rate \"0\" is zero (a line sampled at rate 0 was never sent)");
    free(info);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter_basic),
        cmocka_unit_test(test_counter_negative_fractional),
        cmocka_unit_test(test_gauge_absolute_and_relative),
        cmocka_unit_test(test_distribution_types),
        cmocka_unit_test(test_sample_rate_every_type),
        cmocka_unit_test(test_tags_and_timestamp),
        cmocka_unit_test(test_sections_any_order),
        cmocka_unit_test(test_numbers_match_strtod),
        cmocka_unit_test(test_error_name),
        cmocka_unit_test(test_error_value),
        cmocka_unit_test(test_error_type),
        cmocka_unit_test(test_set_member_is_its_digest),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_error_rate),
        cmocka_unit_test(test_error_tags),
        cmocka_unit_test(test_error_timestamp_and_sections),
        cmocka_unit_test(test_multi_error_batch),
        cmocka_unit_test(test_max_errors_cap),
        cmocka_unit_test(test_batch_atomic),
        cmocka_unit_test(test_crlf_and_empty_lines),
        cmocka_unit_test(test_limit_name_length),
        cmocka_unit_test(test_limit_tags_length),
        cmocka_unit_test(test_limit_max_lines),
        cmocka_unit_test(test_tag_canonical_form),
        cmocka_unit_test(test_character_classes),
        cmocka_unit_test(test_buffer_reuse),
        cmocka_unit_test(test_events_point_into_body),
        cmocka_unit_test(test_reason_names),
        cmocka_unit_test(test_packed_values),
        cmocka_unit_test(test_packed_values_count_against_max_lines),
        cmocka_unit_test(test_container_id_and_datadog_sections),
        cmocka_unit_test(test_section_order_free),
        cmocka_unit_test(test_empty_tags),
        cmocka_unit_test(test_tag_values_printable),
        cmocka_unit_test(test_utf8_names_and_tags),
        cmocka_unit_test(test_dogstatsd_events),
        cmocka_unit_test(test_dogstatsd_service_checks),
        cmocka_unit_test(test_refusal_codes),
        cmocka_unit_test(test_check_line_info),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
