/*
 * test_promql.c — unit tests of the PromQL subset (promql.h): lexer, parser,
 * canonical text and evaluator.
 *
 * Parsing is one table of (input, canonical text or error substring), in the
 * manner of Prometheus' parse_test.go. Every accepted input is also checked
 * to print back to itself: format(parse(format(parse(x)))) is format(parse(x)).
 *
 * Evaluation runs against an in-memory source: a fixed table of series,
 * filtered with promql_matchers_match and the requested window, which also
 * records each select so the tests can check one select per selector and the
 * window asked for. Times in the tables are seconds (S() makes milliseconds);
 * every expected number is worked out by hand in the comment beside it.
 */
#include <setjmp.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "promql.h"

#define S(sec) ((int64_t)llround((sec) * 1000.0))
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ==== parsing ================================================================== */

typedef struct parse_case {
    const char *in;
    const char *out;   /* canonical text, or NULL when the parse must fail */
    const char *err;   /* substring of the error message when it fails */
} parse_case;

static const parse_case PARSE_CASES[] = {
    /* numbers: shortest round-trip text, Go's %v layout */
    {"1", "1", NULL},
    {"1.50", "1.5", NULL},
    {".5", "0.5", NULL},
    {"5.", "5", NULL},
    {"1e3", "1000", NULL},
    {"1E-3", "0.001", NULL},
    {"1e-5", "1e-05", NULL},
    {"1e21", "1e+21", NULL},
    {"0x1f", "31", NULL},
    {"0X10", "16", NULL},
    {"010", "8", NULL},          /* Go's ParseInt base 0: octal */
    {"09", "9", NULL},           /* not octal: ParseFloat reads it as 9 */
    {"123456789012345678", "123456789012345680", NULL},   /* nearest double, 17 digits */
    {"0.1", "0.1", NULL},
    {"Inf", "Inf", NULL},
    {"+inf", "Inf", NULL},
    {"-Inf", "-Inf", NULL},
    {"NaN", "NaN", NULL},
    {"nan", "NaN", NULL},
    /* scalar arithmetic, precedence, parentheses, unary */
    {"1+1", "1 + 1", NULL},
    {"2*3-4/2", "2 * 3 - 4 / 2", NULL},
    {"(1+2)*3", "(1 + 2) * 3", NULL},
    {"1+(2*3)", "1 + 2 * 3", NULL},
    {"1-(2-3)", "1 - (2 - 3)", NULL},
    {"(1-2)-3", "1 - 2 - 3", NULL},
    {"1/(2/3)", "1 / (2 / 3)", NULL},
    {"((((1))))", "1", NULL},
    {"-1", "-1", NULL},
    {"- -1", "1", NULL},
    {"-(1)", "-1", NULL},
    {"+1", "1", NULL},
    {"-(1+2)", "-(1 + 2)", NULL},
    {"2*-3", "2 * -3", NULL},
    {"1 - -1", "1 - -1", NULL},
    {"1 # a comment\n + 2", "1 + 2", NULL},
    /* selectors */
    {"foo", "foo", NULL},
    {"foo:bar_total", "foo:bar_total", NULL},
    {"foo{}", "foo", NULL},
    {"foo{b=\"2\", a=\"1\"}", "foo{a=\"1\",b=\"2\"}", NULL},
    {"foo{a=\"1\",}", "foo{a=\"1\"}", NULL},
    {"foo{a=\"1\",a=\"1\"}", "foo{a=\"1\"}", NULL},
    {"{__name__=\"foo\", a=\"1\"}", "foo{a=\"1\"}", NULL},
    {"{__name__=\"foo\"}", "foo", NULL},
    {"{__name__=~\"foo|bar\"}", "{__name__=~\"foo|bar\"}", NULL},
    {"{a=\"1\"}", "{a=\"1\"}", NULL},
    {"foo{a!~\"ab\", a=~\"a.*\", a!=\"x\", a=\"y\"}", "foo{a=\"y\",a!=\"x\",a=~\"a.*\",a!~\"ab\"}", NULL},
    {"foo{a='single'}", "foo{a=\"single\"}", NULL},
    {"foo{a=\"q\\\"x\\\\y\\n\\t\"}", "foo{a=\"q\\\"x\\\\y\\n\\t\"}", NULL},
    {"foo{a='it\\'s'}", "foo{a=\"it's\"}", NULL},
    {"foo{a=~`a\\.b`}", "foo{a=~\"a\\\\.b\"}", NULL},
    {"foo{a=\"\\u00e9\\x41\\101\"}", "foo{a=\"\xc3\xa9" "AA\"}", NULL},
    {"foo{a=\"\\xff\"}", "foo{a=\"\\xff\"}", NULL},
    {"foo{by=\"x\", sum=\"y\"}", "foo{by=\"x\",sum=\"y\"}", NULL},   /* keywords are labels in braces */
    {"by", "{__name__=\"by\"}", NULL},                             /* a keyword as a metric name */
    {"sum", "{__name__=\"sum\"}", NULL},
    {"foo\n{\ta = \"1\" }", "foo{a=\"1\"}", NULL},
    /* ranges and durations */
    {"x[5m]", "x[5m]", NULL},
    {"x[300s]", "x[5m]", NULL},
    {"x[90m]", "x[1h30m]", NULL},
    {"x[1h30m]", "x[1h30m]", NULL},
    {"x[ 2d ]", "x[2d]", NULL},
    {"x[7d]", "x[1w]", NULL},
    {"x[14d]", "x[2w]", NULL},
    {"x[8d]", "x[8d]", NULL},
    {"x[365d]", "x[1y]", NULL},
    {"x[1w1d]", "x[8d]", NULL},
    {"x[100ms]", "x[100ms]", NULL},
    {"x[1500ms]", "x[1s500ms]", NULL},
    {"x{a=\"1\"}[30s]", "x{a=\"1\"}[30s]", NULL},
    /* functions and aggregations */
    {"rate(x[5m])", "rate(x[5m])", NULL},
    {"increase(x{a=\"b\"}[1h])", "increase(x{a=\"b\"}[1h])", NULL},
    {"delta(x[2m])", "delta(x[2m])", NULL},
    {"rate((x[5m]))", "rate(x[5m])", NULL},
    {"sum(x)", "sum(x)", NULL},
    {"SUM(x)", "sum(x)", NULL},
    {"sum by (b,a) (x)", "sum by (a, b) (x)", NULL},
    {"sum(x) by (b, a)", "sum by (a, b) (x)", NULL},
    {"sum by (a, a,) (x)", "sum by (a) (x)", NULL},
    {"sum by () (x)", "sum(x)", NULL},
    {"sum without () (x)", "sum without () (x)", NULL},
    {"sum without (instance) (x)", "sum without (instance) (x)", NULL},
    {"avg BY (job) (rate(x[5m]))", "avg by (job) (rate(x[5m]))", NULL},
    {"count(x) without (by, sum)", "count without (by, sum) (x)", NULL},
    {"min(x)", "min(x)", NULL},
    {"max(x)", "max(x)", NULL},
    {"sum(sum(x))", "sum(sum(x))", NULL},
    /* vector-scalar arithmetic */
    {"x*2", "x * 2", NULL},
    {"2*x", "2 * x", NULL},
    {"-x", "-x", NULL},
    {"+x", "x", NULL},
    {"-(x+1)", "-(x + 1)", NULL},
    {"rate(x[5m]) * 60", "rate(x[5m]) * 60", NULL},
    {"sum(x) / 2 + 1", "sum(x) / 2 + 1", NULL},
    {"1 + sum(x) * 2", "1 + sum(x) * 2", NULL},
    {"(1 + sum(x)) * 2", "(1 + sum(x)) * 2", NULL},
    {"x - -1", "x - -1", NULL},

    /* syntax errors, worded and positioned as Prometheus does */
    {"", NULL, "1:1: parse error: no expression found in input"},
    {"# just a comment\n\n", NULL, "no expression found in input"},
    {"1+", NULL, "1:3: parse error: unexpected end of input"},
    {"1 /", NULL, "unexpected end of input"},
    {"*1", NULL, "1:1: parse error: unexpected <op:*>"},
    {"(1))", NULL, "unexpected right parenthesis ')'"},
    {"((1)", NULL, "unclosed left parenthesis"},
    {"(", NULL, "unclosed left parenthesis"},
    {"1 2", NULL, "1:3: parse error: unexpected number \"2\", expected operator or end of input"},
    {".", NULL, "unexpected character: '.'"},
    {"2.5.", NULL, "1:4: parse error: unexpected character: '.'"},
    {"100..4", NULL, "unexpected number \".4\""},
    {"0deadbeef", NULL, "bad number or duration syntax: \"0de\""},
    {"1e400", NULL, "out of range"},
    {"1e", NULL, "error parsing number \"1e\": invalid syntax"},
    {"5m", NULL, "unexpected duration \"5m\""},
    {"1 =~ 1", NULL, "unexpected character after '=': '~'"},
    {"1 !~ 1", NULL, "unexpected character after '!': '~'"},
    {"foo{", NULL, "unexpected end of input inside braces"},
    {"}", NULL, "unexpected character: '}'"},
    {"foo{a=b}", NULL, "1:7: parse error: unexpected identifier \"b\" in label matching, expected string"},
    {"foo{a=\"b\" c}", NULL, "unexpected identifier \"c\" in label matching, expected \",\" or \"}\""},
    {"foo{,}", NULL, "unexpected \",\" in label matching, expected identifier or \"}\""},
    {"foo{gibberish}", NULL, "unexpected \"}\" in label matching, expected label matching operator"},
    {"foo{a:b=\"b\"}", NULL, "unexpected character inside braces: ':'"},
    {"foo{1}", NULL, "unexpected character inside braces: '1'"},
    {"foo{__name__= =}", NULL, "1:15: parse error: unexpected \"=\" in label matching, expected string"},
    {"{}", NULL, "1:1: parse error: vector selector must contain at least one non-empty matcher"},
    {"{x=\"\"}", NULL, "vector selector must contain at least one non-empty matcher"},
    {"{x=~\".*\"}", NULL, "vector selector must contain at least one non-empty matcher"},
    {"{x!~\".+\"}", NULL, "vector selector must contain at least one non-empty matcher"},
    {"{x!=\"a\"}", NULL, "vector selector must contain at least one non-empty matcher"},
    {"foo{__name__=\"bar\"}", NULL, "metric name must not be set twice: \"foo\" or \"bar\""},
    {"foo{a=\"\\q\"}", NULL, "1:7: parse error: unknown escape sequence U+0071 'q'"},
    {"foo{a=\"x", NULL, "unterminated quoted string"},
    {"foo{a=\"x\ny\"}", NULL, "unterminated quoted string"},
    {"foo{a=`x", NULL, "unterminated raw string"},
    {"foo{a=\"\xff\"}", NULL, "1:7: parse error: invalid UTF-8 rune"},
    {"foo{a=\"\\x00\"}", NULL, "NUL bytes are not supported in strings"},
    {"foo{a=\"\\u12\"}", NULL, "illegal character U+0022 '\"' in escape sequence"},
    {"foo{a=\"\\ud800\"}", NULL, "escape sequence is an invalid Unicode code point"},
    {"x[5]", NULL, "1:3: parse error: missing unit character in duration"},
    {"x[]", NULL, "missing unit character in duration"},
    {"x[5mm]", NULL, "bad duration syntax: \"5mm\""},
    {"x[5m1]", NULL, "bad duration syntax: \"5m1\""},
    {"x[5m1h]", NULL, "not a valid duration string: \"5m1h\""},
    {"x[5m1m]", NULL, "not a valid duration string: \"5m1m\""},
    {"x[0s]", NULL, "duration must be greater than 0"},
    {"x[5m", NULL, "unclosed left bracket"},
    {"x[5m]]", NULL, "unexpected right bracket ']'"},
    {"x[99999999999y]", NULL, "duration out of range"},
    {"(x)[5m]", NULL, "1:4: parse error: ranges only allowed for vector selectors"},
    {"sum(x)[5m]", NULL, "1:7: parse error: ranges only allowed for vector selectors"},
    {"x[5m][5m]", NULL, "1:6: parse error: ranges only allowed for vector selectors"},
    {"rate(x[5m],)", NULL, "trailing commas not allowed in function call args"},

    /* type errors */
    {"x[5m] + 1", NULL, "1:1: parse error: binary expression must contain only scalar and instant vector types"},
    {"1 - x[5m]", NULL, "1:5: parse error: binary expression must contain only scalar and instant vector types"},
    {"-x[5m]", NULL, "unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\""},
    {"rate(x)", NULL, "1:6: parse error: expected type range vector in call to function \"rate\", got instant vector"},
    {"increase(1)", NULL, "expected type range vector in call to function \"increase\", got scalar"},
    {"rate()", NULL, "expected 1 argument(s) in call to \"rate\", got 0"},
    {"rate(x[5m], y[5m])", NULL, "expected 1 argument(s) in call to \"rate\", got 2"},
    {"sum(x[5m])", NULL, "expected type instant vector in aggregation expression, got range vector"},
    {"sum(1)", NULL, "1:5: parse error: expected type instant vector in aggregation expression, got scalar"},
    {"sum()", NULL, "no arguments for aggregate expression provided"},
    {"sum () by (test)", NULL, "no arguments for aggregate expression provided"},
    {"sum(x, y)", NULL, "wrong number of arguments for aggregate expression provided, expected 1, got 2"},
    {"sum by (a) (x) by (b)", NULL, "unexpected <by>"},
    {"sum(x) without (a) by (b)", NULL, "unexpected <by>"},
    {"sum by a (x)", NULL, "1:8: parse error: unexpected identifier \"a\" in grouping opts, expected \"(\""},
    {"sum by (a:b) (x)", NULL, "unexpected metric identifier \"a:b\" in grouping opts, expected label"},
    {"sum without(,)(x)", NULL, "unexpected \",\" in grouping opts, expected label"},
    {"sum without(==)(x)", NULL, "unexpected <op:==> in grouping opts, expected label"},
    {"sum x by (a)", NULL, "1:5: parse error: unexpected identifier \"x\""},
    {"MIN keep_common (x)", NULL, "1:5: parse error: unexpected identifier \"keep_common\""},

    /* constructs outside the subset: refused by name */
    {"\"foo\"", NULL, "1:1: parse error: string literals are not supported"},
    {"'foo' + 1", NULL, "string literals are not supported"},
    {"irate(x[5m])", NULL, "1:1: parse error: function \"irate\" is not supported"},
    {"histogram_quantile(0.9, x)", NULL, "function \"histogram_quantile\" is not supported"},
    {"sum(rate(x[5m])) + abs(x)", NULL, "1:20: parse error: function \"abs\" is not supported"},
    {"time()", NULL, "function \"time\" is not supported"},
    {"foo(x)", NULL, "unknown function with name \"foo\""},
    {"topk(3, x)", NULL, "1:1: parse error: aggregation \"topk\" is not supported"},
    {"bottomk by (a) (3, x)", NULL, "aggregation \"bottomk\" is not supported"},
    {"quantile(0.5, x)", NULL, "aggregation \"quantile\" is not supported"},
    {"stddev(x)", NULL, "aggregation \"stddev\" is not supported"},
    {"stdvar(x)", NULL, "aggregation \"stdvar\" is not supported"},
    {"group(x)", NULL, "aggregation \"group\" is not supported"},
    {"count_values(\"v\", x)", NULL, "aggregation \"count_values\" is not supported"},
    {"x + y", NULL, "1:3: parse error: binary operations between two vectors are not supported"},
    {"rate(x[5m]) / rate(y[5m])", NULL, "binary operations between two vectors are not supported"},
    {"sum(x) - x", NULL, "binary operations between two vectors are not supported"},
    {"x == 1", NULL, "1:3: parse error: comparison operator \"==\" is not supported"},
    {"x != 1", NULL, "comparison operator \"!=\" is not supported"},
    {"x > 1", NULL, "comparison operator \">\" is not supported"},
    {"x >= 1", NULL, "comparison operator \">=\" is not supported"},
    {"x < 1", NULL, "comparison operator \"<\" is not supported"},
    {"x <= 1", NULL, "comparison operator \"<=\" is not supported"},
    {"1 == 1", NULL, "comparison operator \"==\" is not supported"},
    {"x and y", NULL, "1:3: parse error: set operator \"and\" is not supported"},
    {"x or y", NULL, "set operator \"or\" is not supported"},
    {"x unless y", NULL, "set operator \"unless\" is not supported"},
    {"x % 2", NULL, "binary operator \"%\" is not supported"},
    {"x ^ 2", NULL, "binary operator \"^\" is not supported"},
    {"x atan2 y", NULL, "binary operator \"atan2\" is not supported"},
    {"x * bool 2", NULL, "1:5: parse error: \"bool\" modifier is not supported"},
    {"x + on(a) 2", NULL, "vector matching (\"on\") is not supported"},
    {"x + ignoring(a) 2", NULL, "vector matching (\"ignoring\") is not supported"},
    {"x offset 5m", NULL, "1:3: parse error: \"offset\" is not supported"},
    {"rate(x[5m] offset 1h)", NULL, "\"offset\" is not supported"},
    {"x @ 100", NULL, "1:3: parse error: \"@\" is not supported"},
    {"x[5m:1m]", NULL, "1:2: parse error: subqueries are not supported"},
    {"x[5m:]", NULL, "subqueries are not supported"},
    {"rate(sum(x)[5m:1m])", NULL, "subqueries are not supported"},
    {"x[5m::]", NULL, "subqueries are not supported"},   /* before the lexer's "unexpected colon" */

    /* regular expressions: POSIX ERE, with what RE2 reads differently refused */
    {"x{a=~\"(?i)foo\"}", NULL, "1:3: parse error: invalid regular expression \"(?i)foo\": (?...) groups and flags"},
    {"x{a=~\"\\\\d+\"}", NULL, "escape \\d is not supported"},
    {"x{a=~\"\\\\1\"}", NULL, "escape \\1 is not supported"},
    {"x{a=~\"a)|(b\"}", NULL, "unexpected )"},
    {"x{a=~\"(a\"}", NULL, "missing )"},
    {"x{a=~\"[\\\\]]\"}", NULL, "a backslash inside [...] is not supported"},
    {"x{a=~\"[a\"}", NULL, "unterminated [...]"},
    {"x{a=~\"a{1001}\"}", NULL, "invalid repeat count"},
    {"x{a=~\"a{3,2}\"}", NULL, "invalid repeat count"},
    {"x{a=~\"a{,3}\"}", NULL, "'{' must start a repetition"},
    {"x{a=~\"(a{1000}){1000}\"}", NULL, "regular expression too large"},
    {"x{a=~\"a\\\\\"}", NULL, "trailing backslash"},
    {"x{a=~\"+a\"}", NULL, "invalid regular expression \"+a\""},
    {"x{a=~\"[[:alpha:]]+\\\\.[]a]{2,3}|b*?\"}", "x{a=~\"[[:alpha:]]+\\\\.[]a]{2,3}|b*?\"}", NULL},

    /* positions on later lines count from the line start */
    {"sum(\n  x +\n  y)", NULL, "2:5: parse error: binary operations between two vectors are not supported"},
};

static void test_parse_table(void **state)
{
    (void)state;
    int bad = 0;
    for (size_t i = 0; i < COUNT(PARSE_CASES); i++) {
        const parse_case *c = &PARSE_CASES[i];
        promql_expr *e = NULL;
        char err[256] = "", text[1024] = "", again[1024] = "";
        int rc = promql_parse(c->in, strlen(c->in), &e, err, sizeof err);
        if (c->out) {
            if (rc != 0) {
                print_message("case %zu \"%s\": error %s\n", i, c->in, err);
                bad++;
                continue;
            }
            assert_true(promql_format(e, text, sizeof text) >= 0);
            promql_expr_free(e);
            if (strcmp(text, c->out) != 0) {
                print_message("case %zu \"%s\": got \"%s\", want \"%s\"\n", i, c->in, text, c->out);
                bad++;
                continue;
            }
            /* the canonical text reads back to itself */
            assert_int_equal(promql_parse(text, strlen(text), &e, err, sizeof err), 0);
            assert_true(promql_format(e, again, sizeof again) >= 0);
            promql_expr_free(e);
            if (strcmp(again, text) != 0) {
                print_message("case %zu \"%s\": reparsed to \"%s\"\n", i, text, again);
                bad++;
            }
        } else {
            if (rc != PROMQL_ERR_BAD_DATA || e != NULL || !strstr(err, c->err)) {
                print_message("case %zu \"%s\": rc %d, error \"%s\", want \"%s\"\n", i, c->in, rc, err, c->err);
                bad++;
            }
            promql_expr_free(e);
        }
    }
    assert_int_equal(bad, 0);
}

/* Canonical text as a cache key: queries meaning the same print the same. */
static void test_format_equivalent(void **state)
{
    (void)state;
    static const char *const groups[][4] = {
        {"sum by (job, instance) (rate(http{code=\"200\",method=\"GET\"}[300s]))",
         "sum(rate({method='GET', __name__=\"http\", code=\"200\"}[5m])) by (instance,job)",
         "SUM  BY(instance , job)(\n rate(http{code=\"200\",method=\"GET\",}[5m])\n)",
         "sum by (job, instance, job) ((rate((http{method=\"GET\",code=\"200\",code=\"200\"}[5m]))))"},
        {"2 * x + 1", "(2 * x) + 1", "((2*x))+1", "2*x+1"},
    };
    for (size_t g = 0; g < COUNT(groups); g++) {
        char first[512] = "";
        for (size_t k = 0; k < 4; k++) {
            promql_expr *e = NULL;
            char err[256] = "", text[512] = "";
            assert_int_equal(promql_parse(groups[g][k], strlen(groups[g][k]), &e, err, sizeof err), 0);
            assert_true(promql_format(e, text, sizeof text) > 0);
            promql_expr_free(e);
            if (k == 0) strcpy(first, text);
            else assert_string_equal(text, first);
        }
    }
}

static void test_format_buffer_too_small(void **state)
{
    (void)state;
    promql_expr *e = NULL;
    char err[128], buf[64];
    const char *q = "sum by (job) (rate(x{a=\"1\"}[5m]))";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    int n = promql_format(e, buf, sizeof buf);
    assert_int_equal(n, (int)strlen("sum by (job) (rate(x{a=\"1\"}[5m]))"));
    assert_int_equal(promql_format(e, buf, (size_t)n), -1);       /* no room for the NUL */
    assert_int_equal(promql_format(e, buf, (size_t)n + 1), n);
    assert_int_equal(promql_format(e, buf, 0), -1);
    promql_expr_free(e);
}

/* The parser's input need not be NUL-terminated: len bounds it. */
static void test_parse_uses_len(void **state)
{
    (void)state;
    promql_expr *e = NULL;
    char err[128], buf[64];
    const char q[] = "x + 1 + garbage that is not read";
    assert_int_equal(promql_parse(q, 5, &e, err, sizeof err), 0);
    assert_true(promql_format(e, buf, sizeof buf) > 0);
    assert_string_equal(buf, "x + 1");
    promql_expr_free(e);
}

/* Nesting is client input: bounded so neither the parser nor the evaluator can overflow the stack. */
static void test_parse_depth_limit(void **state)
{
    (void)state;
    char err[256];
    size_t n = 400;
    char *q = malloc(4 * n + 8);
    assert_non_null(q);
    promql_expr *e = NULL;

    size_t w = 0;   /* (((...(1)...))) */
    for (size_t i = 0; i < n; i++) q[w++] = '(';
    q[w++] = '1';
    for (size_t i = 0; i < n; i++) q[w++] = ')';
    assert_int_equal(promql_parse(q, w, &e, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "expression nested too deeply"));

    w = 0;          /* 1+1+1+...: a left-deep tree */
    for (size_t i = 0; i < n; i++) { q[w++] = '1'; q[w++] = '+'; }
    q[w++] = '1';
    assert_int_equal(promql_parse(q, w, &e, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "expression nested too deeply"));

    w = 0;          /* -------x */
    for (size_t i = 0; i < n; i++) q[w++] = '-';
    q[w++] = 'x';
    assert_int_equal(promql_parse(q, w, &e, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "expression nested too deeply"));

    w = 0;          /* 100 levels are fine */
    for (size_t i = 0; i < 100; i++) q[w++] = '(';
    q[w++] = 'x';
    for (size_t i = 0; i < 100; i++) { memcpy(q + w, "+1)", 3); w += 3; }
    assert_int_equal(promql_parse(q, w, &e, err, sizeof err), 0);
    promql_expr_free(e);
    free(q);
}

static void test_parse_selector(void **state)
{
    (void)state;
    promql_expr *e = NULL;
    char err[256];
    const promql_matcher *m;
    size_t n;
    const char *q = "up{job=~\"api|web\"}";
    assert_int_equal(promql_parse_selector(q, strlen(q), &e, err, sizeof err), 0);
    assert_int_equal(promql_expr_type(e), PROMQL_VECTOR);
    assert_int_equal(promql_expr_matchers(e, &m, &n), 0);
    assert_int_equal(n, 2);   /* job=~..., then __name__="up" */
    assert_string_equal(m[0].name, "job");
    assert_int_equal(m[0].op, PROMQL_MATCH_RE);
    assert_string_equal(m[1].name, "__name__");
    assert_string_equal(m[1].value, "up");
    promql_expr_free(e);

    static const struct { const char *in, *err; } bad[] = {
        {"{}", "vector selector must contain at least one non-empty matcher"},
        {"{a=~\".*\"}", "vector selector must contain at least one non-empty matcher"},
        {"x[5m]", "unexpected \"[\""},
        {"sum(x)", "unexpected \"(\""},
        {"x + 1", "unexpected <op:+>"},
        {"1", "unexpected number \"1\""},
    };
    for (size_t i = 0; i < COUNT(bad); i++) {
        e = NULL;
        assert_int_equal(promql_parse_selector(bad[i].in, strlen(bad[i].in), &e, err, sizeof err), PROMQL_ERR_BAD_DATA);
        assert_null(e);
        if (!strstr(err, bad[i].err)) fail_msg("\"%s\": %s", bad[i].in, err);
    }

    q = "rate(x[5m])";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    assert_int_equal(promql_expr_matchers(e, &m, &n), -1);   /* not a selector */
    promql_expr_free(e);
}

typedef struct seen {
    int calls;
    char names[4][32];
} seen;

static int note_selector(void *ctx, const promql_matcher *m, size_t n)
{
    seen *s = ctx;
    for (size_t i = 0; i < n; i++)
        if (strcmp(m[i].name, "__name__") == 0 && s->calls < 4)
            snprintf(s->names[s->calls], sizeof s->names[0], "%s", m[i].value);
    return ++s->calls == 99 ? 7 : 0;
}

static int stop_at_first(void *ctx, const promql_matcher *m, size_t n)
{
    (void)m;
    (void)n;
    ++*(int *)ctx;
    return 42;
}

static void test_foreach_selector(void **state)
{
    (void)state;
    promql_expr *e = NULL;
    char err[256];
    const char *q = "sum by (job) (rate(http_total{code=\"500\"}[5m])) * 2";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    seen s = {0};
    assert_int_equal(promql_foreach_selector(e, note_selector, &s), 0);
    assert_int_equal(s.calls, 1);
    assert_string_equal(s.names[0], "http_total");
    int calls = 0;
    assert_int_equal(promql_foreach_selector(e, stop_at_first, &calls), 42);
    assert_int_equal(calls, 1);
    promql_expr_free(e);

    q = "1 + 2";
    assert_int_equal(promql_parse(q, strlen(q), &e, err, sizeof err), 0);
    s = (seen){0};
    assert_int_equal(promql_foreach_selector(e, note_selector, &s), 0);
    assert_int_equal(s.calls, 0);
    promql_expr_free(e);
}

/* ==== labels and matchers ======================================================== */

static void test_labels_add(void **state)
{
    (void)state;
    promql_labels l = {0};
    assert_int_equal(promql_labels_add(&l, "job", "api"), 0);
    assert_int_equal(promql_labels_add(&l, "__name__", "up"), 0);
    assert_int_equal(promql_labels_add(&l, "instance", "a"), 0);
    assert_int_equal(l.count, 3);
    assert_string_equal(l.items[0].name, "__name__");   /* '_' sorts before lower case */
    assert_string_equal(l.items[1].name, "instance");
    assert_string_equal(l.items[2].name, "job");
    assert_int_equal(promql_labels_add(&l, "job", "web"), 0);   /* replaces */
    assert_int_equal(l.count, 3);
    assert_string_equal(promql_labels_get(&l, "job"), "web");
    assert_int_equal(promql_labels_add(&l, "instance", ""), 0);   /* an empty value removes */
    assert_int_equal(l.count, 2);
    assert_null(promql_labels_get(&l, "instance"));
    assert_int_equal(promql_labels_add(&l, "zone", ""), 0);       /* and never adds */
    assert_int_equal(l.count, 2);
    promql_labels_free(&l);
    assert_int_equal(l.count, 0);
    promql_labels_free(&l);
}

static void test_matchers(void **state)
{
    (void)state;
    promql_labels l = {0};
    assert_int_equal(promql_labels_add(&l, "__name__", "up"), 0);
    assert_int_equal(promql_labels_add(&l, "job", "api-1"), 0);
    static const struct { promql_match_op op; const char *name, *value; int want; } cases[] = {
        {PROMQL_MATCH_EQ, "job", "api-1", 1},
        {PROMQL_MATCH_EQ, "job", "api", 0},
        {PROMQL_MATCH_NE, "job", "api", 1},
        {PROMQL_MATCH_EQ, "zone", "", 1},        /* a missing label is the empty value */
        {PROMQL_MATCH_NE, "zone", "x", 1},
        {PROMQL_MATCH_RE, "job", "api", 0},      /* anchored: not a substring search */
        {PROMQL_MATCH_RE, "job", "api-.", 1},
        {PROMQL_MATCH_RE, "job", "a|api-1", 1},  /* the alternation stays inside the anchors */
        {PROMQL_MATCH_RE, "job", "api-1|x", 1},
        {PROMQL_MATCH_RE, "job", "pi-1|x", 0},
        {PROMQL_MATCH_RE, "job", "[a-z]+-[0-9]", 1},
        {PROMQL_MATCH_NRE, "job", "web.*", 1},
        {PROMQL_MATCH_RE, "zone", "x|", 1},      /* missing matches a regex matching "" */
        {PROMQL_MATCH_NRE, "zone", ".+", 1},
        {PROMQL_MATCH_RE, "__name__", "u.", 1},
    };
    for (size_t i = 0; i < COUNT(cases); i++) {
        promql_matcher m;
        char err[256] = "";
        assert_int_equal(promql_matcher_init(&m, cases[i].op, cases[i].name, cases[i].value, err, sizeof err), 0);
        if (promql_matchers_match(&m, 1, &l) != cases[i].want)
            fail_msg("case %zu: %s %d \"%s\"", i, cases[i].name, cases[i].op, cases[i].value);
        promql_matcher_free(&m);
    }
    promql_matcher m;
    char err[256] = "";
    assert_int_equal(promql_matcher_init(&m, PROMQL_MATCH_RE, "job", "(?i)API", err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "not supported"));
    promql_labels_free(&l);
}

/* ==== the fake data source ======================================================== */

#define STALE (-12345.0)   /* in the tables: replaced by the staleness marker */

typedef struct fake_series {
    const char *labels[10];         /* name, value, ..., NULL */
    double pts[8][2];               /* (seconds, value) */
    size_t n;
} fake_series;

static const fake_series DATA[] = {
    /* instant selection and lookback */
    {{"__name__", "gauge", "i", "1", NULL}, {{0, 1}, {60, 2}, {120, 3}}, 3},
    {{"__name__", "gauge", "i", "2", NULL}, {{0, 10}}, 1},
    {{"__name__", "stale", "i", "1", NULL}, {{0, 5}, {60, STALE}}, 2},
    /* counters for rate, increase, delta (seconds, value) */
    {{"__name__", "c", "k", "r1", NULL}, {{60, 10}, {120, 20}, {180, 30}, {240, 40}, {300, 50}}, 5},
    {{"__name__", "c", "k", "r2", NULL}, {{60, 10}, {120, 20}, {180, 5}, {240, 15}, {300, 25}}, 5},
    {{"__name__", "c", "k", "r3", NULL}, {{120, 1}, {180, 11}, {240, 21}, {300, 31}}, 4},
    {{"__name__", "c", "k", "r4", NULL}, {{100, 100}, {130, 130}, {160, 160}, {190, 190}}, 4},
    {{"__name__", "c", "k", "r5", NULL}, {{200, 7}}, 1},
    {{"__name__", "c", "k", "r6", NULL}, {{0, 0}, {300, 30}}, 2},
    /* aggregation */
    {{"__name__", "agg", "inst", "1", "job", "a", NULL}, {{100, 1}}, 1},
    {{"__name__", "agg", "inst", "2", "job", "a", NULL}, {{100, 2}}, 1},
    {{"__name__", "agg", "inst", "1", "job", "b", NULL}, {{100, 4}}, 1},
    {{"__name__", "agg", "extra", "x", "inst", "2", "job", "b", NULL}, {{100, 8}}, 1},
    {{"__name__", "agg_inf", "i", "1", NULL}, {{100, INFINITY}}, 1},
    {{"__name__", "agg_inf", "i", "2", NULL}, {{100, 1}}, 1},
    {{"__name__", "agg_nan", "i", "1", NULL}, {{100, NAN}}, 1},
    {{"__name__", "agg_nan", "i", "2", NULL}, {{100, 3}}, 1},
    /* two names, otherwise the same labels */
    {{"__name__", "dup_a", "k", "1", NULL}, {{0, 1}, {60, 2}}, 2},
    {{"__name__", "dup_b", "k", "1", NULL}, {{0, 3}, {60, 4}}, 2},
    /* the same, never present at the same step */
    {{"__name__", "m_a", "k", "1", NULL}, {{0, 1}}, 1},
    {{"__name__", "m_b", "k", "1", NULL}, {{1000, 2}}, 1},
    /* a broken answer, for the source checks */
    {{"__name__", "unordered", NULL}, {{60, 1}, {0, 2}}, 2},
};

typedef struct fake_source {
    int calls;
    int64_t min_ms, max_ms, step_ms;   /* of the last select */
    int fail;                          /* select fails */
    int sloppy;                        /* answer every series, ignoring the matchers */
} fake_source;

static double table_value(double v)
{
    if (v != STALE) return v;
    uint64_t bits = PROMQL_STALE_NAN_BITS;
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

static int add_fake_series(const fake_series *f, const promql_matcher *m, size_t n, int64_t min_ms, int64_t max_ms,
                           int sloppy, promql_series_set *out)
{
    promql_labels l = {0};
    for (size_t k = 0; f->labels[k]; k += 2)
        if (promql_labels_add(&l, f->labels[k], f->labels[k + 1]) != 0) return -1;
    if (!sloppy && !promql_matchers_match(m, n, &l)) {
        promql_labels_free(&l);
        return 0;
    }
    promql_series *s;
    if (promql_series_set_add(out, &s) != 0) {
        promql_labels_free(&l);
        return -1;
    }
    s->labels = l;
    for (size_t k = 0; k < f->n; k++) {
        int64_t t = S(f->pts[k][0]);
        if (t >= min_ms && t <= max_ms && promql_series_push(s, t, table_value(f->pts[k][1])) != 0) return -1;
    }
    return 0;
}

static int fake_select(void *ctx, const promql_matcher *m, size_t n, int64_t min_ms, int64_t max_ms,
                       int64_t step_ms, promql_series_set *out, char *err, size_t errlen)
{
    fake_source *src = ctx;
    src->calls++;
    src->min_ms = min_ms;
    src->max_ms = max_ms;
    src->step_ms = step_ms;
    if (src->fail) {
        snprintf(err, errlen, "boom: the store is down");
        return -1;
    }
    for (size_t i = 0; i < COUNT(DATA); i++)
        if (add_fake_series(&DATA[i], m, n, min_ms, max_ms, src->sloppy, out) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    return 0;
}

/* ==== evaluation helpers =========================================================== */

typedef struct want_point { double t_s; double v; } want_point;
typedef struct want_series {
    const char *labels;     /* as labels_text writes them */
    want_point pts[6];
    size_t n;
} want_series;

static void labels_text(const promql_labels *l, char *buf, size_t len)
{
    size_t w = (size_t)snprintf(buf, len, "{");
    for (size_t i = 0; i < l->count && w < len; i++)
        w += (size_t)snprintf(buf + w, len - w, "%s%s=\"%s\"", i ? "," : "", l->items[i].name, l->items[i].value);
    if (w < len) snprintf(buf + w, len - w, "}");
}

static int same_number(double got, double want)
{
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= 1e-12 * (fabs(want) > 1 ? fabs(want) : 1);
}

static promql_expr *parse_or_fail(const char *q)
{
    promql_expr *e = NULL;
    char err[256] = "";
    if (promql_parse(q, strlen(q), &e, err, sizeof err) != 0) fail_msg("parse \"%s\": %s", q, err);
    return e;
}

static void check_series(const char *q, const promql_series_set *got, const want_series *want, size_t nwant)
{
    if (got->count != nwant) fail_msg("%s: %zu series, want %zu", q, got->count, nwant);
    for (size_t i = 0; i < nwant; i++) {
        char text[256];
        const promql_series *s = &got->items[i];
        labels_text(&s->labels, text, sizeof text);
        if (strcmp(text, want[i].labels) != 0) fail_msg("%s: series %zu is %s, want %s", q, i, text, want[i].labels);
        if (s->count != want[i].n) fail_msg("%s: %s has %zu points, want %zu", q, text, s->count, want[i].n);
        for (size_t k = 0; k < want[i].n; k++) {
            if (s->samples[k].t_ms != S(want[i].pts[k].t_s) || !same_number(s->samples[k].v, want[i].pts[k].v))
                fail_msg("%s: %s point %zu is (%lld, %.17g), want (%lld, %.17g)", q, text, k,
                         (long long)s->samples[k].t_ms, s->samples[k].v, (long long)S(want[i].pts[k].t_s),
                         want[i].pts[k].v);
        }
    }
}

/* ==== instant queries =============================================================== */

typedef struct instant_case {
    const char *query;
    double t_s;
    promql_value_type type;
    double scalar;                 /* PROMQL_SCALAR */
    want_series series[5];         /* VECTOR: one point each at t; MATRIX: raw */
    size_t n;
} instant_case;

#define V(lbl, t, v) {lbl, {{t, v}}, 1}

static const instant_case INSTANT_CASES[] = {
    /* scalar arithmetic */
    {"1+1", 0, PROMQL_SCALAR, 2, {{0}}, 0},
    {"2*3-4/2", 0, PROMQL_SCALAR, 4, {{0}}, 0},              /* 6 - 2 */
    {"2+3*4", 0, PROMQL_SCALAR, 14, {{0}}, 0},               /* 2 + 12: * binds tighter */
    {"(2+3)*4", 0, PROMQL_SCALAR, 20, {{0}}, 0},
    {"10-4-3", 0, PROMQL_SCALAR, 3, {{0}}, 0},               /* (10 - 4) - 3: left associative */
    {"12/2/3", 0, PROMQL_SCALAR, 2, {{0}}, 0},               /* (12 / 2) / 3 */
    {"-1", 0, PROMQL_SCALAR, -1, {{0}}, 0},
    {"-2*3", 0, PROMQL_SCALAR, -6, {{0}}, 0},
    {"2*-3", 0, PROMQL_SCALAR, -6, {{0}}, 0},
    {"-(1+2)", 0, PROMQL_SCALAR, -3, {{0}}, 0},
    {"1e3+0x10", 0, PROMQL_SCALAR, 1016, {{0}}, 0},          /* 1000 + 16 */
    {"1/0", 0, PROMQL_SCALAR, INFINITY, {{0}}, 0},
    {"-1/0", 0, PROMQL_SCALAR, -INFINITY, {{0}}, 0},
    {"0/0", 0, PROMQL_SCALAR, NAN, {{0}}, 0},
    {"Inf-Inf", 0, PROMQL_SCALAR, NAN, {{0}}, 0},

    /* instant selection, lookback 5m (300 s) */
    {"gauge", 120, PROMQL_VECTOR, 0,                         /* i=1 has a sample exactly at t */
     {V("{__name__=\"gauge\",i=\"1\"}", 120, 3), V("{__name__=\"gauge\",i=\"2\"}", 120, 10)}, 2},
    {"gauge{i=\"1\"}", 119.999, PROMQL_VECTOR, 0, {V("{__name__=\"gauge\",i=\"1\"}", 119.999, 2)}, 1},
    {"gauge", 300, PROMQL_VECTOR, 0,                         /* i=2's sample at 0 is exactly t - 300 s: kept (2.x) */
     {V("{__name__=\"gauge\",i=\"1\"}", 300, 3), V("{__name__=\"gauge\",i=\"2\"}", 300, 10)}, 2},
    {"gauge", 300.001, PROMQL_VECTOR, 0, {V("{__name__=\"gauge\",i=\"1\"}", 300.001, 3)}, 1},  /* i=2 went stale */
    {"gauge", 420, PROMQL_VECTOR, 0, {V("{__name__=\"gauge\",i=\"1\"}", 420, 3)}, 1},        /* 120 = 420 - 300 */
    {"gauge", 420.001, PROMQL_VECTOR, 0, {{0}}, 0},          /* every series vanished */
    {"gauge", -1, PROMQL_VECTOR, 0, {{0}}, 0},               /* before the first sample */
    {"stale", 30, PROMQL_VECTOR, 0, {V("{__name__=\"stale\",i=\"1\"}", 30, 5)}, 1},
    {"stale", 60, PROMQL_VECTOR, 0, {{0}}, 0},               /* the staleness marker ends it */
    {"stale", 200, PROMQL_VECTOR, 0, {{0}}, 0},
    {"{i=\"1\", __name__=~\"g.*\"}", 120, PROMQL_VECTOR, 0, {V("{__name__=\"gauge\",i=\"1\"}", 120, 3)}, 1},

    /* rate, increase, delta at t = 300 s over [0 s, 300 s] */
    /* r1: 10..50 every 60 s from 60 s. delta 40, sampled 240 s, average 60 s, threshold 66 s;
     * to start 60 s < 66: extrapolate fully (zero point 240*10/40 = 60 s is not nearer); to end 0.
     * Interval 300 s, factor 300/240 = 1.25: increase 50, rate 50/300 = 1/6. */
    {"increase(c{k=\"r1\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r1\"}", 300, 50)}, 1},
    {"rate(c{k=\"r1\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r1\"}", 300, 1.0 / 6)}, 1},
    {"delta(c{k=\"r1\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r1\"}", 300, 50)}, 1},
    /* r2: 10 20 5 15 25, a reset after 20: 25 - 10 + 20 = 35; zero point 240*10/35 = 68.6 s is not
     * nearer than 60 s; factor 1.25: increase 43.75, rate 43.75/300. delta ignores resets: 15 * 1.25. */
    {"increase(c{k=\"r2\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r2\"}", 300, 43.75)}, 1},
    {"rate(c{k=\"r2\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r2\"}", 300, 43.75 / 300)}, 1},
    {"delta(c{k=\"r2\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r2\"}", 300, 18.75)}, 1},
    /* r3: 1 11 21 31 from 120 s: delta 30, sampled 180 s, average 60 s. To start 120 s, but the counter
     * was zero 180*1/30 = 6 s before its first sample: 6 < 66, so 6 s. Interval 186: 30*186/180 = 31.
     * delta has no zero floor: 120 >= 66 adds half an interval, 30 s: 30*210/180 = 35. */
    {"increase(c{k=\"r3\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r3\"}", 300, 31)}, 1},
    {"rate(c{k=\"r3\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r3\"}", 300, 31.0 / 300)}, 1},
    {"delta(c{k=\"r3\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r3\"}", 300, 35)}, 1},
    /* r4: 100..190 every 30 s from 100 s: delta 90, sampled 90, average 30, threshold 33. To start
     * 100 s (zero point 90*100/90 = 100 s, not nearer), to end 110 s: both gaps too large, each edge
     * gets half an interval, 15 s: interval 120, 90*120/90 = 120; rate 120/300 = 0.4. */
    {"increase(c{k=\"r4\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r4\"}", 300, 120)}, 1},
    {"rate(c{k=\"r4\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r4\"}", 300, 0.4)}, 1},
    /* r5: one sample: no output */
    {"rate(c{k=\"r5\"}[5m])", 300, PROMQL_VECTOR, 0, {{0}}, 0},
    /* r6: samples at 0 s and 300 s; [0 s, 300 s] is closed on the left (2.x), so both count:
     * delta 30 over exactly the range, factor 1: increase 30, rate 0.1. */
    {"increase(c{k=\"r6\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r6\"}", 300, 30)}, 1},
    {"rate(c{k=\"r6\"}[5m])", 300, PROMQL_VECTOR, 0, {V("{k=\"r6\"}", 300, 0.1)}, 1},
    {"rate(c{k=\"r6\"}[5m])", 300.001, PROMQL_VECTOR, 0, {{0}}, 0},    /* 0 s fell out of the window */
    /* every c series at once, sorted by labels, __name__ dropped; r5 gives nothing */
    {"increase(c[5m])", 300, PROMQL_VECTOR, 0,
     {V("{k=\"r1\"}", 300, 50), V("{k=\"r2\"}", 300, 43.75), V("{k=\"r3\"}", 300, 31),
      V("{k=\"r4\"}", 300, 120), V("{k=\"r6\"}", 300, 30)}, 5},
    /* rate * 60: per minute, and the result of arithmetic on it */
    {"rate(c{k=\"r4\"}[5m]) * 60", 300, PROMQL_VECTOR, 0, {V("{k=\"r4\"}", 300, 24)}, 1},   /* 0.4 * 60 */

    /* aggregations at t = 100 s over agg: (a,1)=1 (a,2)=2 (b,1)=4 (b,2,extra=x)=8 */
    {"sum(agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 15)}, 1},
    {"sum by (job) (agg)", 100, PROMQL_VECTOR, 0, {V("{job=\"a\"}", 100, 3), V("{job=\"b\"}", 100, 12)}, 2},
    {"sum(agg) by (job)", 100, PROMQL_VECTOR, 0, {V("{job=\"a\"}", 100, 3), V("{job=\"b\"}", 100, 12)}, 2},
    {"avg by (job) (agg)", 100, PROMQL_VECTOR, 0, {V("{job=\"a\"}", 100, 1.5), V("{job=\"b\"}", 100, 6)}, 2},
    {"count by (job) (agg)", 100, PROMQL_VECTOR, 0, {V("{job=\"a\"}", 100, 2), V("{job=\"b\"}", 100, 2)}, 2},
    {"min by (inst) (agg)", 100, PROMQL_VECTOR, 0, {V("{inst=\"1\"}", 100, 1), V("{inst=\"2\"}", 100, 2)}, 2},
    {"max by (inst) (agg)", 100, PROMQL_VECTOR, 0, {V("{inst=\"1\"}", 100, 4), V("{inst=\"2\"}", 100, 8)}, 2},
    {"max(agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 8)}, 1},
    {"min(agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 1)}, 1},
    {"avg(agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 3.75)}, 1},            /* 15 / 4 */
    {"count(agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 4)}, 1},
    /* without drops the listed labels and __name__; extra=x keeps b/2 apart; sorted: extra < job */
    {"sum without (inst) (agg)", 100, PROMQL_VECTOR, 0,
     {V("{extra=\"x\",job=\"b\"}", 100, 8), V("{job=\"a\"}", 100, 3), V("{job=\"b\"}", 100, 4)}, 3},
    {"count without (job, inst, extra) (agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 4)}, 1},
    {"sum by (nosuch) (agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 15)}, 1},
    {"sum by (extra) (agg)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 7), V("{extra=\"x\"}", 100, 8)}, 2},
    {"sum(agg{job=\"a\"}) * 2 + 1", 100, PROMQL_VECTOR, 0, {V("{}", 100, 7)}, 1},   /* 3 * 2 + 1 */
    {"sum(nosuch)", 100, PROMQL_VECTOR, 0, {{0}}, 0},                        /* no input, no group */
    {"avg(agg_inf)", 100, PROMQL_VECTOR, 0, {V("{}", 100, INFINITY)}, 1},    /* Inf and 1: the mean stays Inf */
    {"sum(agg_inf)", 100, PROMQL_VECTOR, 0, {V("{}", 100, INFINITY)}, 1},
    {"max(agg_nan)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 3)}, 1},           /* 3 replaces NaN */
    {"min(agg_nan)", 100, PROMQL_VECTOR, 0, {V("{}", 100, 3)}, 1},
    {"sum(agg_nan)", 100, PROMQL_VECTOR, 0, {V("{}", 100, NAN)}, 1},

    /* vector-scalar arithmetic drops __name__ */
    {"agg{job=\"a\"} * 2", 100, PROMQL_VECTOR, 0,
     {V("{inst=\"1\",job=\"a\"}", 100, 2), V("{inst=\"2\",job=\"a\"}", 100, 4)}, 2},
    {"10 - agg{job=\"a\"}", 100, PROMQL_VECTOR, 0,
     {V("{inst=\"1\",job=\"a\"}", 100, 9), V("{inst=\"2\",job=\"a\"}", 100, 8)}, 2},
    {"agg{job=\"a\"} / 0", 100, PROMQL_VECTOR, 0,
     {V("{inst=\"1\",job=\"a\"}", 100, INFINITY), V("{inst=\"2\",job=\"a\"}", 100, INFINITY)}, 2},
    {"(agg{job=\"a\"} - 1) / 0", 100, PROMQL_VECTOR, 0,                     /* 0/0 and 1/0 */
     {V("{inst=\"1\",job=\"a\"}", 100, NAN), V("{inst=\"2\",job=\"a\"}", 100, INFINITY)}, 2},
    {"-agg{job=\"a\"}", 100, PROMQL_VECTOR, 0,
     {V("{inst=\"1\",job=\"a\"}", 100, -1), V("{inst=\"2\",job=\"a\"}", 100, -2)}, 2},
    {"+agg{job=\"a\",inst=\"1\"}", 100, PROMQL_VECTOR, 0,                  /* unary plus keeps the name */
     {V("{__name__=\"agg\",inst=\"1\",job=\"a\"}", 100, 1)}, 1},
    {"2 * agg{job=\"b\"} - 1", 100, PROMQL_VECTOR, 0,                      /* 2*4-1, 2*8-1 */
     {V("{extra=\"x\",inst=\"2\",job=\"b\"}", 100, 15), V("{inst=\"1\",job=\"b\"}", 100, 7)}, 2},

    /* an instant query of a range selector: the raw samples in [t - 2m, t], names kept */
    {"gauge{i=\"1\"}[2m]", 120, PROMQL_MATRIX, 0,
     {{"{__name__=\"gauge\",i=\"1\"}", {{0, 1}, {60, 2}, {120, 3}}, 3}}, 1},
    {"gauge[2m]", 119, PROMQL_MATRIX, 0,                                    /* [-1 s, 119 s] */
     {{"{__name__=\"gauge\",i=\"1\"}", {{0, 1}, {60, 2}}, 2}, {"{__name__=\"gauge\",i=\"2\"}", {{0, 10}}, 1}}, 2},
    {"stale[5m]", 100, PROMQL_MATRIX, 0, {{"{__name__=\"stale\",i=\"1\"}", {{0, 5}}, 1}}, 1},   /* marker dropped */
    {"gauge[1m]", 500, PROMQL_MATRIX, 0, {{0}}, 0},
};

static void test_eval_instant_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(INSTANT_CASES); i++) {
        const instant_case *c = &INSTANT_CASES[i];
        fake_source fs = {0};
        promql_source src = {.ctx = &fs, .select = fake_select};
        promql_expr *e = parse_or_fail(c->query);
        promql_result r;
        char err[256] = "";
        int rc = promql_eval_instant(e, &src, NULL, S(c->t_s), &r, err, sizeof err);
        if (rc != 0) fail_msg("%s: rc %d: %s", c->query, rc, err);
        if (r.type != c->type) fail_msg("%s: type %d, want %d", c->query, r.type, c->type);
        if (c->type == PROMQL_SCALAR) {
            assert_int_equal(r.t_ms, S(c->t_s));
            if (!same_number(r.scalar, c->scalar)) fail_msg("%s: %.17g, want %.17g", c->query, r.scalar, c->scalar);
            assert_int_equal(fs.calls, 0);
        } else {
            check_series(c->query, &r.series, c->series, c->n);
            assert_int_equal(fs.calls, 1);   /* one selector, one select */
        }
        promql_result_free(&r);
        promql_expr_free(e);
    }
}

/* ==== range queries =================================================================== */

typedef struct range_case {
    const char *query;
    double start_s, end_s, step_s;
    want_series series[3];
    size_t n;
    double min_s;            /* the window the one select must ask for: [min_s, end_s] */
} range_case;

static const range_case RANGE_CASES[] = {
    /* a scalar: one series without labels, every step */
    {"1+1", 0, 120, 60, {{"{}", {{0, 2}, {60, 2}, {120, 2}}, 3}}, 1, 0},
    /* steps need not be aligned to the step */
    {"2*3", 7, 20, 5, {{"{}", {{7, 6}, {12, 6}, {17, 6}}, 3}}, 1, 0},
    /* gauge i=1 (0:1 60:2 120:3), lookback 300 s: at 480 s the last sample (120 s) is 360 s old;
     * i=2 (0:10) lasts through 300 s. Select window [0 - 300 s, 600 s]. */
    {"gauge", 0, 600, 120,
     {{"{__name__=\"gauge\",i=\"1\"}", {{0, 1}, {120, 3}, {240, 3}, {360, 3}}, 4},
      {"{__name__=\"gauge\",i=\"2\"}", {{0, 10}, {120, 10}, {240, 10}}, 3}}, 2, -300},
    /* increase over r2 (60:10 120:20 180:5 240:15 300:25), [2m] windows:
     *  120 s: [0,120] 10,20: delta 10, to start 60 < 66 (zero point 60*10/10 = 60, not nearer): 10*120/60 = 20
     *  180 s: [60,180] 10,20,5: 5-10+20 = 15 over exactly the window: 15
     *  240 s: [120,240] 20,5,15: 15-20+20 = 15: 15
     *  300 s: [180,300] 5,15,25: 20: 20
     * Select window [120 - 120 s, 300 s]. */
    {"increase(c{k=\"r2\"}[2m])", 120, 300, 60, {{"{k=\"r2\"}", {{120, 20}, {180, 15}, {240, 15}, {300, 20}}, 4}}, 1, 0},
    /* rate over r1 with [1m]: windows of two samples 60 s apart, 10 per minute: 1/6 each step;
     * at 60 s only one sample (60 s) is in [0, 60]: no point. */
    {"rate(c{k=\"r1\"}[1m]) * 60", 60, 300, 60,
     {{"{k=\"r1\"}", {{120, 10}, {180, 10}, {240, 10}, {300, 10}}, 4}}, 1, 0},
    /* sum over steps: agg's samples all sit at 100 s, visible through 400 s */
    {"sum by (job) (agg)", 0, 500, 100,
     {{"{job=\"a\"}", {{100, 3}, {200, 3}, {300, 3}, {400, 3}}, 4},
      {"{job=\"b\"}", {{100, 12}, {200, 12}, {300, 12}, {400, 12}}, 4}}, 2, -300},
    /* m_a (0:1) and m_b (1000:2) lose their names and never share a step: one merged series */
    {"{__name__=~\"m_.*\"} * 1", 0, 1200, 600, {{"{k=\"1\"}", {{0, 1}, {1200, 2}}, 2}}, 1, -300},
};

static void test_eval_range_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(RANGE_CASES); i++) {
        const range_case *c = &RANGE_CASES[i];
        fake_source fs = {0};
        promql_source src = {.ctx = &fs, .select = fake_select};
        promql_expr *e = parse_or_fail(c->query);
        promql_result r;
        char err[256] = "";
        int rc = promql_eval_range(e, &src, NULL, S(c->start_s), S(c->end_s), S(c->step_s), &r, err, sizeof err);
        if (rc != 0) fail_msg("%s: rc %d: %s", c->query, rc, err);
        assert_int_equal(r.type, PROMQL_MATRIX);
        check_series(c->query, &r.series, c->series, c->n);
        if (promql_expr_type(e) == PROMQL_SCALAR) {
            assert_int_equal(fs.calls, 0);
        } else {
            assert_int_equal(fs.calls, 1);   /* once for all steps */
            assert_int_equal(fs.min_ms, S(c->min_s));
            assert_int_equal(fs.max_ms, S(c->end_s));
            assert_int_equal(fs.step_ms, S(c->step_s));
        }
        promql_result_free(&r);
        promql_expr_free(e);
    }
}

/* ==== errors ============================================================================ */

typedef struct error_case {
    const char *query;
    int range;               /* evaluate as a range query 0..600 s step 60 s */
    double t_s;
    int rc;
    const char *err;
} error_case;

static const error_case ERROR_CASES[] = {
    {"gauge[5m]", 1, 0, PROMQL_ERR_BAD_DATA,
     "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector"},
    /* dup_a and dup_b differ only in __name__ */
    {"rate({__name__=~\"dup_.*\"}[5m])", 0, 60, PROMQL_ERR_EXECUTION, "vector cannot contain metrics with the same labelset"},
    {"rate({__name__=~\"dup_.*\"}[5m])", 1, 0, PROMQL_ERR_EXECUTION, "vector cannot contain metrics with the same labelset"},
    {"{__name__=~\"dup_.*\"} * 2", 0, 60, PROMQL_ERR_EXECUTION, "vector cannot contain metrics with the same labelset"},
    {"-{__name__=~\"dup_.*\"}", 0, 60, PROMQL_ERR_EXECUTION, "vector cannot contain metrics with the same labelset"},
    {"unordered", 0, 60, PROMQL_ERR_SOURCE, "data source returned samples out of order"},
};

static void test_eval_errors(void **state)
{
    (void)state;
    for (size_t i = 0; i < COUNT(ERROR_CASES); i++) {
        const error_case *c = &ERROR_CASES[i];
        fake_source fs = {0};
        promql_source src = {.ctx = &fs, .select = fake_select};
        promql_expr *e = parse_or_fail(c->query);
        promql_result r;
        char err[256] = "";
        int rc = c->range ? promql_eval_range(e, &src, NULL, 0, S(600), S(60), &r, err, sizeof err)
                          : promql_eval_instant(e, &src, NULL, S(c->t_s), &r, err, sizeof err);
        if (rc != c->rc || !strstr(err, c->err)) fail_msg("%s: rc %d \"%s\", want %d \"%s\"", c->query, rc, err, c->rc, c->err);
        assert_int_equal(r.series.count, 0);
        promql_result_free(&r);
        promql_expr_free(e);
    }
}

static void test_eval_range_arguments(void **state)
{
    (void)state;
    fake_source fs = {0};
    promql_source src = {.ctx = &fs, .select = fake_select};
    promql_expr *e = parse_or_fail("gauge");
    promql_result r;
    char err[256];
    assert_int_equal(promql_eval_range(e, &src, NULL, 0, S(60), 0, &r, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "zero or negative query resolution step widths are not accepted"));
    assert_int_equal(promql_eval_range(e, &src, NULL, S(60), 0, S(1), &r, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "end timestamp must not be before start time"));
    /* 0..11000 s at 1 s is 11,001 points */
    assert_int_equal(promql_eval_range(e, &src, NULL, 0, S(11000), S(1), &r, err, sizeof err), PROMQL_ERR_BAD_DATA);
    assert_non_null(strstr(err, "exceeded maximum resolution of 11,000 points per timeseries"));
    assert_int_equal(promql_eval_range(e, &src, NULL, 0, S(10999), S(1), &r, err, sizeof err), 0);
    promql_result_free(&r);
    /* extreme times do not overflow the window arithmetic */
    assert_int_equal(promql_eval_range(e, &src, NULL, INT64_MIN, INT64_MIN + 10, 5, &r, err, sizeof err), 0);
    assert_int_equal(fs.min_ms, INT64_MIN);
    assert_int_equal(r.series.count, 0);
    promql_result_free(&r);
    promql_expr_free(e);
}

static void test_eval_max_samples(void **state)
{
    (void)state;
    fake_source fs = {0};
    promql_source src = {.ctx = &fs, .select = fake_select};
    promql_result r;
    char err[256];
    const char *msg = "query processing would load too many samples into memory in query execution";

    /* agg has 4 series of one sample: 4 raw samples, then 4 points */
    promql_expr *e = parse_or_fail("agg");
    promql_limits lim = {.lookback_ms = 0, .max_samples = 3};
    assert_int_equal(promql_eval_instant(e, &src, &lim, S(100), &r, err, sizeof err), PROMQL_ERR_EXECUTION);
    assert_string_equal(err, msg);
    /* 4 raw held while the 4 points are made: 8 at the peak */
    lim.max_samples = 7;
    assert_int_equal(promql_eval_instant(e, &src, &lim, S(100), &r, err, sizeof err), PROMQL_ERR_EXECUTION);
    lim.max_samples = 8;
    assert_int_equal(promql_eval_instant(e, &src, &lim, S(100), &r, err, sizeof err), 0);
    assert_int_equal(r.series.count, 4);
    promql_result_free(&r);
    promql_expr_free(e);

    /* a scalar over 11 steps holds 11 values */
    e = parse_or_fail("1");
    lim.max_samples = 10;
    assert_int_equal(promql_eval_range(e, &src, &lim, 0, S(10), S(1), &r, err, sizeof err), PROMQL_ERR_EXECUTION);
    assert_string_equal(err, msg);
    lim.max_samples = 11;
    assert_int_equal(promql_eval_range(e, &src, &lim, 0, S(10), S(1), &r, err, sizeof err), 0);
    assert_int_equal(r.series.items[0].count, 11);
    promql_result_free(&r);
    promql_expr_free(e);
}

static void test_eval_lookback_limit(void **state)
{
    (void)state;
    fake_source fs = {0};
    promql_source src = {.ctx = &fs, .select = fake_select};
    promql_result r;
    char err[256];
    promql_expr *e = parse_or_fail("gauge");
    /* lookback 30 s: at 150 s i=1's sample at 120 s counts, i=2's at 0 s does not */
    promql_limits lim = {.lookback_ms = S(30), .max_samples = 0};
    assert_int_equal(promql_eval_instant(e, &src, &lim, S(150), &r, err, sizeof err), 0);
    assert_int_equal(fs.min_ms, S(120));
    const want_series want[] = {V("{__name__=\"gauge\",i=\"1\"}", 150, 3)};
    check_series("gauge, lookback 30s", &r.series, want, 1);
    promql_result_free(&r);
    assert_int_equal(promql_eval_instant(e, &src, &lim, S(150.001), &r, err, sizeof err), 0);
    assert_int_equal(r.series.count, 0);
    promql_result_free(&r);
    promql_expr_free(e);
}

static void test_eval_source(void **state)
{
    (void)state;
    promql_result r;
    char err[256];
    promql_expr *e = parse_or_fail("sum(rate(c[5m]))");

    fake_source fs = {.fail = 1};
    promql_source src = {.ctx = &fs, .select = fake_select};
    assert_int_equal(promql_eval_instant(e, &src, NULL, S(300), &r, err, sizeof err), PROMQL_ERR_SOURCE);
    assert_string_equal(err, "boom: the store is down");
    assert_int_equal(promql_eval_range(e, &src, NULL, 0, S(300), S(60), &r, err, sizeof err), PROMQL_ERR_SOURCE);
    promql_expr_free(e);

    /* a source may answer with every series: the evaluator applies the matchers itself */
    fs = (fake_source){.sloppy = 1};
    e = parse_or_fail("gauge{i=\"1\"}");
    assert_int_equal(promql_eval_instant(e, &src, NULL, S(120), &r, err, sizeof err), 0);
    const want_series want[] = {V("{__name__=\"gauge\",i=\"1\"}", 120, 3)};
    check_series("sloppy source", &r.series, want, 1);
    promql_result_free(&r);
    promql_expr_free(e);

    /* no source at all fails only when a selector needs one */
    e = parse_or_fail("gauge");
    assert_int_equal(promql_eval_instant(e, NULL, NULL, 0, &r, err, sizeof err), PROMQL_ERR_SOURCE);
    promql_expr_free(e);
    e = parse_or_fail("1 + 2");
    assert_int_equal(promql_eval_instant(e, NULL, NULL, 0, &r, err, sizeof err), 0);
    assert_true(r.scalar == 3);
    promql_result_free(&r);
    promql_expr_free(e);
}

/* A selector that is also a range-query argument: one select even over many steps. */
static void test_eval_select_once(void **state)
{
    (void)state;
    fake_source fs = {0};
    promql_source src = {.ctx = &fs, .select = fake_select};
    promql_result r;
    char err[256];
    promql_expr *e = parse_or_fail("sum(increase(c[5m])) / 2");
    assert_int_equal(promql_eval_range(e, &src, NULL, S(300), S(3300), S(30), &r, err, sizeof err), 0);
    assert_int_equal(fs.calls, 1);
    assert_int_equal(fs.min_ms, S(0));        /* 300 s - 5 m */
    assert_int_equal(fs.max_ms, S(3300));
    /* at 300 s: (50 + 43.75 + 31 + 120 + 30) / 2, the instant table's increases */
    assert_int_equal(r.series.count, 1);
    assert_int_equal(r.series.items[0].samples[0].t_ms, S(300));
    assert_true(same_number(r.series.items[0].samples[0].v, (50 + 43.75 + 31 + 120 + 30) / 2));
    promql_result_free(&r);
    promql_expr_free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_format_equivalent),
        cmocka_unit_test(test_format_buffer_too_small),
        cmocka_unit_test(test_parse_uses_len),
        cmocka_unit_test(test_parse_depth_limit),
        cmocka_unit_test(test_parse_selector),
        cmocka_unit_test(test_foreach_selector),
        cmocka_unit_test(test_labels_add),
        cmocka_unit_test(test_matchers),
        cmocka_unit_test(test_eval_instant_table),
        cmocka_unit_test(test_eval_range_table),
        cmocka_unit_test(test_eval_errors),
        cmocka_unit_test(test_eval_range_arguments),
        cmocka_unit_test(test_eval_max_samples),
        cmocka_unit_test(test_eval_lookback_limit),
        cmocka_unit_test(test_eval_source),
        cmocka_unit_test(test_eval_select_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
