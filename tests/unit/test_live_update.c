/*
 * test_live_update.c — the fold of batches into one pipelined Redis
 * transaction, and the reading of its replies.
 *
 * live_update_build() writes RESP-encoded commands back to back; a small
 * parser here splits u->resp into commands (checking it agrees with u->ends
 * and u->commands, and that every bulk length is exact) and every test
 * asserts the exact arguments:
 *   - the frame: WATCH [fence, ingest mode only] dedup keys, EVAL guard with
 *     1+n keys and the mode, MULTI, SET dedup 1 EX ttl per batch, EXEC;
 *   - per-series folding: counters (sample rates, fractions), gauge
 *     composition (HSET after an absolute value, else HINCRBYFLOAT of the
 *     delta), distributions (count, sum, ZADD LT min, ZADD GT max);
 *   - whole sums through HINCRBY on the main hash, fractions (and |v| >=
 *     1e15) through HINCRBYFLOAT on the ":frac" hash, zero as "0";
 *   - types as separate series in first-seen order, a table of many series,
 *     group merges in delivery order (gauges included), a too-long batch id;
 *   - live_guard_verdict() and live_outcome() on hand-built replies;
 *   - live_group_length() and exact number formatting (format_double).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <hiredis/hiredis.h>

#include "format.h"
#include "live_known.h"
#include "dedup.h"
#include "live_update.h"
#include "redis_hll.h"
#include "redis_keys.h"
#include "redis_slots.h"

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

/* ---- a test-local RESP parser ------------------------------------------------ */

typedef struct parsed_cmd {
    size_t argc;
    char **argv; /* NUL-terminated copies */
    size_t *lens;
} parsed_cmd;

/* The parsed commands of the updates alive in a test (at most a few at once). */
typedef struct parsed_update {
    const live_update *u;
    const char *resp;
    size_t n;
    parsed_cmd *cmds;
} parsed_update;

#define MAX_PARSED 4
static parsed_update g_parsed[MAX_PARSED];

/* Reads "<prefix><digits>\r\n" at *pos. */
static size_t read_count(const char *buf, size_t len, size_t *pos, char prefix)
{
    assert_true(*pos < len);
    assert_int_equal(buf[*pos], prefix);
    (*pos)++;
    size_t n = 0, digits = 0;
    while (*pos < len && buf[*pos] >= '0' && buf[*pos] <= '9') {
        n = n * 10 + (size_t)(buf[*pos] - '0');
        (*pos)++;
        digits++;
    }
    assert_true(digits > 0);
    assert_true(*pos + 2 <= len);
    assert_memory_equal(buf + *pos, "\r\n", 2);
    *pos += 2;
    return n;
}

static void parsed_free(parsed_update *p)
{
    for (size_t i = 0; i < p->n; i++) {
        for (size_t j = 0; j < p->cmds[i].argc; j++)
            free(p->cmds[i].argv[j]);
        free(p->cmds[i].argv);
        free(p->cmds[i].lens);
    }
    free(p->cmds);
    memset(p, 0, sizeof *p);
}

/* Splits u->resp into commands; every command must end at u->ends[i]. */
static void parse_update(const live_update *u)
{
    parsed_update *p = NULL;
    for (size_t k = 0; k < MAX_PARSED && !p; k++)
        if (!g_parsed[k].u)
            p = &g_parsed[k];
    assert_non_null(p);
    assert_non_null(u->resp);
    assert_non_null(u->ends);
    assert_true(u->commands > 0);
    p->u = u;
    p->resp = u->resp;
    p->cmds = calloc(u->commands, sizeof *p->cmds);
    assert_non_null(p->cmds);
    size_t pos = 0;
    while (pos < u->resp_len) {
        assert_true(p->n < u->commands); /* no bytes past the last command */
        parsed_cmd *c = &p->cmds[p->n];
        c->argc = read_count(u->resp, u->resp_len, &pos, '*');
        assert_true(c->argc >= 1);
        c->argv = calloc(c->argc, sizeof *c->argv);
        c->lens = calloc(c->argc, sizeof *c->lens);
        assert_non_null(c->argv);
        assert_non_null(c->lens);
        p->n++; /* owned from here on, for parsed_free */
        for (size_t j = 0; j < c->argc; j++) {
            size_t len = read_count(u->resp, u->resp_len, &pos, '$');
            assert_true(pos + len + 2 <= u->resp_len);
            c->argv[j] = malloc(len + 1);
            assert_non_null(c->argv[j]);
            memcpy(c->argv[j], u->resp + pos, len);
            c->argv[j][len] = '\0';
            c->lens[j] = len;
            pos += len;
            assert_memory_equal(u->resp + pos, "\r\n", 2); /* the length was exact */
            pos += 2;
        }
        assert_int_equal(pos, u->ends[p->n - 1]);
    }
    assert_int_equal(pos, u->resp_len);
    assert_int_equal(p->n, u->commands);
}

static const parsed_cmd *parsed(const live_update *u, size_t i)
{
    for (size_t k = 0; k < MAX_PARSED; k++) {
        if (g_parsed[k].u == u) {
            assert_ptr_equal(g_parsed[k].resp, u->resp);
            assert_true(i < g_parsed[k].n);
            return &g_parsed[k].cmds[i];
        }
    }
    fail_msg("update not parsed");
    return NULL;
}

/* Command i's name, its number of arguments (name included), its argument j. */
static const char *cmd(const live_update *u, size_t i) { return parsed(u, i)->argv[0]; }
static size_t nargs(const live_update *u, size_t i) { return parsed(u, i)->argc; }
static const char *arg(const live_update *u, size_t i, size_t j)
{
    const parsed_cmd *c = parsed(u, i);
    assert_true(j < c->argc);
    return c->argv[j];
}

/* Command i is exactly the `argc` strings given (name first). */
static void expect_cmd(const live_update *u, size_t i, size_t argc, ...)
{
    assert_int_equal(nargs(u, i), argc);
    va_list ap;
    va_start(ap, argc);
    for (size_t j = 0; j < argc; j++)
        assert_string_equal(arg(u, i, j), va_arg(ap, const char *));
    va_end(ap);
}

/* The digest and Kafka time every test batch i gets, and what its dedup key holds. */
#define TEST_DIGEST "0123456789abcdef"
static int64_t test_log_ms(size_t i) { return 5000 + (int64_t)i; }
static void test_claim(char *out, size_t len, size_t i)
{
    snprintf(out, len, TEST_DIGEST " %lld", (long long)test_log_ms(i));
}

/* The batches of a group with these ids (at most 8). */
static void test_batches(live_batch *out, const char *const *ids, size_t n)
{
    assert_true(n <= 8);
    for (size_t i = 0; i < n; i++)
        out[i] = (live_batch){ids[i], strlen(ids[i]), TEST_DIGEST, test_log_ms(i)};
}

/* Checks WATCH, EVAL, MULTI, the SETs and EXEC around `updates` series
 * commands; returns the index of the first series command. `ttl` is the
 * dedup window: each key lives for it plus DEDUP_SLACK_SECONDS. */
static size_t expect_frame(const live_update *u, const char *const *ids, size_t n, const char *ttl,
                           live_mode mode, size_t updates)
{
    char key[128], num[24];
    size_t fence = mode == LIVE_MODE_INGEST ? 1 : 0;
    assert_int_equal(u->commands, 3 + n + updates + 1);

    assert_string_equal(cmd(u, 0), "WATCH");
    assert_int_equal(nargs(u, 0), 1 + fence + n);
    if (fence)
        assert_string_equal(arg(u, 0, 1), "tally:{0}:live:rebuilding");
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tally:{0}:batch:%s", ids[i]);
        assert_string_equal(arg(u, 0, 1 + fence + i), key);
    }

    assert_int_equal(LIVE_GUARD_REPLY, 1);
    assert_string_equal(cmd(u, LIVE_GUARD_REPLY), "EVAL");
    /* EVAL script numkeys fence dedup[n] mode window claims[n] */
    assert_int_equal(nargs(u, 1), 5 + n + 1 + n);
    assert_non_null(strstr(arg(u, 1, 1), "KEYS[1]"));
    snprintf(num, sizeof num, "%zu", 1 + n);
    assert_string_equal(arg(u, 1, 2), num);
    assert_string_equal(arg(u, 1, 3), "tally:{0}:live:rebuilding");
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tally:{0}:batch:%s", ids[i]);
        assert_string_equal(arg(u, 1, 4 + i), key);
    }
    assert_string_equal(arg(u, 1, 4 + n), mode == LIVE_MODE_INGEST ? "ingest" : "rebuild");
    snprintf(num, sizeof num, "%lld", atoll(ttl) * 1000);
    assert_string_equal(arg(u, 1, 5 + n), num);
    char claim[64];
    for (size_t i = 0; i < n; i++) {
        test_claim(claim, sizeof claim, i);
        assert_string_equal(arg(u, 1, 6 + n + i), claim);
    }

    expect_cmd(u, 2, 1, "MULTI");
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof key, "tally:{0}:batch:%s", ids[i]);
        test_claim(claim, sizeof claim, i);
        snprintf(num, sizeof num, "%d", atoi(ttl) + DEDUP_SLACK_SECONDS);
        expect_cmd(u, 3 + i, 5, "SET", key, claim, "EX", num);
    }
    assert_int_equal(live_exec_reply(u), u->commands - 1);
    expect_cmd(u, live_exec_reply(u), 1, "EXEC");
    return 3 + n;
}

/* Builds the update of a group and parses it. */
static int build_group(live_update *u, const live_fold *const *folds, const char *const *ids,
                       size_t n, int ttl, live_mode mode)
{
    char err[128];
    live_batch batches[8];
    test_batches(batches, ids, n);
    int rc = live_update_build(u, folds, batches, n, ttl, mode, NULL, 0, err, sizeof err);
    if (rc == 0)
        parse_update(u);
    return rc;
}

/* Folds one batch and builds its update (group of one). */
static int build_one(live_update *u, const char *id, const metric_event *e, size_t n, int ttl,
                     live_mode mode)
{
    char err[128];
    live_fold *f = live_fold_new(e, n, 1, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {id};
    int rc = build_group(u, folds, ids, 1, ttl, mode);
    live_fold_free(f); /* the commands are copies; only u->bounds borrows the fold (unused here) */
    return rc;
}

/* Frees the update and its parse. */
static void done(live_update *u)
{
    for (size_t k = 0; k < MAX_PARSED; k++)
        if (g_parsed[k].u == u)
            parsed_free(&g_parsed[k]);
    live_update_free(u);
    assert_null(u->resp);
    assert_null(u->ends);
    assert_int_equal(u->resp_len, 0);
    assert_int_equal(u->commands, 0);
}

/* ---- folding and commands ---------------------------------------------------- */

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
    const char *ids[] = {"b1"};
    size_t s = expect_frame(&u, ids, 1, "600", LIVE_MODE_INGEST, 2);
    expect_cmd(&u, 0, 3, "WATCH", "tally:{0}:live:rebuilding", "tally:{0}:batch:b1");
    /* 1 + 10/0.5 + 0.1: a fraction, so the whole total goes to the :frac hash */
    expect_cmd(&u, s, 4, "HINCRBYFLOAT", "tally:{0}:req:counter:frac", "", "21.1");
    expect_cmd(&u, s + 1, 4, "HINCRBY", "tally:{0}:req:counter", "env:prod", "2");
    done(&u);
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
        ev(METRIC_GAUGE, "g_frac", "k:v", 0.5, 1, EVENT_GAUGE_RELATIVE),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 6, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 3);
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 3);
    /* a delta, even a whole one, is added as a float to the one gauge hash */
    expect_cmd(&u, s, 4, "HINCRBYFLOAT", "tally:{0}:g_rel:gauge", "", "3");
    /* the last absolute value plus the later deltas: 20 - 3 */
    expect_cmd(&u, s + 1, 4, "HSET", "tally:{0}:g_abs:gauge", "", "17");
    expect_cmd(&u, s + 2, 4, "HINCRBYFLOAT", "tally:{0}:g_frac:gauge", "k:v", "0.5");
    done(&u);
}

static void test_distribution_ops(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 10, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 30, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat", "a:1", 20, 0.5, 0),
        ev(METRIC_DISTRIBUTION, "lat2", NULL, 1.5, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat2", NULL, 2, 0.25, 0),
        ev(METRIC_DISTRIBUTION, "lat3", NULL, -4, 0.3, 0),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 6, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 3);
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 12);
    /* count = 1 + 1 + 2, sum = 10 + 30 + 40 */
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:lat:dist:count", "a:1", "4");
    expect_cmd(&u, s + 1, 4, "HINCRBY", "tally:{0}:lat:dist:sum", "a:1", "80");
    expect_cmd(&u, s + 2, 5, "ZADD", "tally:{0}:lat:dist:min", "LT", "10", "a:1");
    expect_cmd(&u, s + 3, 5, "ZADD", "tally:{0}:lat:dist:max", "GT", "30", "a:1");
    /* whole count 1 + 4, fractional sum 1.5 + 8: each split on its own */
    expect_cmd(&u, s + 4, 4, "HINCRBY", "tally:{0}:lat2:dist:count", "", "5");
    expect_cmd(&u, s + 5, 4, "HINCRBYFLOAT", "tally:{0}:lat2:dist:sum:frac", "", "9.5");
    expect_cmd(&u, s + 6, 5, "ZADD", "tally:{0}:lat2:dist:min", "LT", "1.5", "");
    expect_cmd(&u, s + 7, 5, "ZADD", "tally:{0}:lat2:dist:max", "GT", "2", "");
    /* 1/0.3 and -4/0.3 are fractions; min and max are the raw value */
    expect_cmd(&u, s + 8, 4, "HINCRBYFLOAT", "tally:{0}:lat3:dist:count:frac", "",
               "3.3333333333333335");
    expect_cmd(&u, s + 9, 4, "HINCRBYFLOAT", "tally:{0}:lat3:dist:sum:frac", "",
               "-13.333333333333334");
    expect_cmd(&u, s + 10, 5, "ZADD", "tally:{0}:lat3:dist:min", "LT", "-4", "");
    expect_cmd(&u, s + 11, 5, "ZADD", "tally:{0}:lat3:dist:max", "GT", "-4", "");
    done(&u);
}

/* Builds one batch's update against `bounds`; the fold is returned (the
 * update's bounds borrow its strings) and must be freed by the caller. */
static live_fold *build_bounded(live_update *u, const metric_event *e, size_t n,
                                const live_known *bounds)
{
    char err[128];
    live_fold *f = live_fold_new(e, n, 1, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {"b"};
    live_batch batches[1];
    test_batches(batches, ids, 1);
    assert_int_equal(live_update_build(u, folds, batches, 1, 60, LIVE_MODE_INGEST, bounds, 0, err,
                                       sizeof err),
                     0);
    parse_update(u);
    return f;
}

/* Min/max updates the live view provably holds (noted after an applied
 * group) are left out; a new extreme or another series is still sent. */
static void test_bounds_leave_out_covered_min_max(void **state)
{
    (void)state;
    live_known *b = live_known_new(64, 4096);
    assert_non_null(b);
    const char *ids[] = {"b"};
    live_update u;

    metric_event first[] = {ev(METRIC_DISTRIBUTION, "lat", "a:1", 10, 1, 0),
                            ev(METRIC_DISTRIBUTION, "lat", "a:1", 30, 1, 0)};
    live_fold *f = build_bounded(&u, first, 2, b);
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 4);
    expect_cmd(&u, s + 2, 5, "ZADD", "tally:{0}:lat:dist:min", "LT", "10", "a:1");
    expect_cmd(&u, s + 3, 5, "ZADD", "tally:{0}:lat:dist:max", "GT", "30", "a:1");
    assert_int_equal(u.nbounds, 1);
    live_update_note_bounds(&u, b); /* the group was applied */
    assert_int_equal(live_known_count(b), 1);
    done(&u);
    live_fold_free(f);

    /* inside [10, 30]: only count and sum */
    metric_event inside[] = {ev(METRIC_DISTRIBUTION, "lat", "a:1", 15, 1, 0),
                             ev(METRIC_DISTRIBUTION, "lat", "a:1", 30, 1, 0)};
    f = build_bounded(&u, inside, 2, b);
    s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 2);
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:lat:dist:count", "a:1", "2");
    expect_cmd(&u, s + 1, 4, "HINCRBY", "tally:{0}:lat:dist:sum", "a:1", "45");
    done(&u); /* not applied: nothing noted */
    live_fold_free(f);

    /* a new minimum is sent, the covered maximum is not; another series is new */
    metric_event lower[] = {ev(METRIC_DISTRIBUTION, "lat", "a:1", 5, 1, 0),
                            ev(METRIC_DISTRIBUTION, "lat", "a:2", 20, 1, 0)};
    f = build_bounded(&u, lower, 2, b);
    s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 7);
    expect_cmd(&u, s + 2, 5, "ZADD", "tally:{0}:lat:dist:min", "LT", "5", "a:1");
    expect_cmd(&u, s + 3, 4, "HINCRBY", "tally:{0}:lat:dist:count", "a:2", "1");
    expect_cmd(&u, s + 5, 5, "ZADD", "tally:{0}:lat:dist:min", "LT", "20", "a:2");
    expect_cmd(&u, s + 6, 5, "ZADD", "tally:{0}:lat:dist:max", "GT", "20", "a:2");
    live_update_note_bounds(&u, b);
    done(&u);
    live_fold_free(f);
    assert_true(live_known_covers_min(b, 0, METRIC_DISTRIBUTION, "x", 1, NULL, 0, 1) == 0); /* unknown series */

    /* after the note, 5 is the known minimum of lat a:1 */
    metric_event again[] = {ev(METRIC_DISTRIBUTION, "lat", "a:1", 5, 1, 0)};
    f = build_bounded(&u, again, 1, b);
    expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 2);
    done(&u);
    live_fold_free(f);
    live_known_free(b);
}

/* The cache compares whole keys, forgets on collision and never exceeds its
 * byte limit. */
static void test_bounds_cache_is_exact_and_bounded(void **state)
{
    (void)state;
    live_known *b = live_known_new(1, 10); /* one slot, 10 bytes of keys */
    assert_non_null(b);
    live_known_note(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 1, 9);
    assert_true(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 1));
    assert_true(live_known_covers_max(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 9));
    assert_false(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 0.5));
    assert_false(live_known_covers_max(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 9.5));
    /* same hash, other key: not covered (full comparison) */
    assert_false(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abd", 3, "t:1", 3, 5));
    assert_false(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:2", 3, 5));
    /* a note widens, never narrows */
    live_known_note(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 4, 4);
    assert_true(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 1));
    assert_true(live_known_covers_max(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 9));
    /* another series in the only slot replaces it */
    live_known_note(b, 8, METRIC_DISTRIBUTION, "xy", 2, NULL, 0, 0, 0);
    assert_false(live_known_covers_min(b, 7, METRIC_DISTRIBUTION, "abc", 3, "t:1", 3, 5));
    assert_true(live_known_covers_min(b, 8, METRIC_DISTRIBUTION, "xy", 2, NULL, 0, 0));
    assert_int_equal(live_known_count(b), 1);
    /* a key longer than the byte limit is not kept */
    live_known_note(b, 9, METRIC_DISTRIBUTION, "0123456789", 10, "z", 1, 0, 0);
    assert_false(live_known_covers_min(b, 9, METRIC_DISTRIBUTION, "0123456789", 10, "z", 1, 0));
    live_known_free(b);

    /* the byte limit empties the table rather than growing past it */
    b = live_known_new(4, 6);
    live_known_note(b, 0, METRIC_DISTRIBUTION, "aaa", 3, NULL, 0, 1, 1);
    live_known_note(b, 1, METRIC_DISTRIBUTION, "bbb", 3, NULL, 0, 1, 1);
    assert_int_equal(live_known_count(b), 2);
    live_known_note(b, 2, METRIC_DISTRIBUTION, "ccc", 3, NULL, 0, 1, 1);
    assert_int_equal(live_known_count(b), 1);
    assert_true(live_known_covers_max(b, 2, METRIC_DISTRIBUTION, "ccc", 3, NULL, 0, 1));
    assert_false(live_known_covers_max(b, 0, METRIC_DISTRIBUTION, "aaa", 3, NULL, 0, 1));
    live_known_free(b);

    /* admission: known per (type, name, tags); an admitted series has no bounds yet */
    b = live_known_new(8, 1024);
    assert_false(live_known_admitted(b, 3, METRIC_COUNTER, "req", 3, "a:1", 3));
    live_known_note_admitted(b, 3, METRIC_COUNTER, "req", 3, "a:1", 3);
    assert_true(live_known_admitted(b, 3, METRIC_COUNTER, "req", 3, "a:1", 3));
    assert_false(live_known_admitted(b, 3, METRIC_GAUGE, "req", 3, "a:1", 3));
    assert_false(live_known_admitted(b, 3, METRIC_COUNTER, "req", 3, "a:2", 3));
    live_known_note_admitted(b, 4, METRIC_DISTRIBUTION, "lat", 3, NULL, 0);
    assert_false(live_known_covers_min(b, 4, METRIC_DISTRIBUTION, "lat", 3, NULL, 0, 1e9));
    assert_false(live_known_covers_max(b, 4, METRIC_DISTRIBUTION, "lat", 3, NULL, 0, -1e9));
    live_known_clear(b);
    assert_false(live_known_admitted(b, 3, METRIC_COUNTER, "req", 3, "a:1", 3));
    live_known_free(b);
}

/* Whole sums below 1e15 go through HINCRBY on the main hash; fractions and
 * large magnitudes through HINCRBYFLOAT on the ":frac" hash; zero is "0". */
static void test_whole_and_fractional_sums(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_COUNTER, "whole", NULL, 10, 1, 0),
        ev(METRIC_COUNTER, "whole", NULL, 11, 1, 0),
        ev(METRIC_COUNTER, "tenth", NULL, 0.1, 1, 0),
        ev(METRIC_COUNTER, "halves", NULL, 0.5, 1, 0),
        ev(METRIC_COUNTER, "halves", NULL, 0.5, 1, 0),
        ev(METRIC_COUNTER, "zero", NULL, 5, 1, 0),
        ev(METRIC_COUNTER, "zero", NULL, -5, 1, 0),
        ev(METRIC_COUNTER, "negzero", NULL, -0.0, 1, 0),
        ev(METRIC_COUNTER, "neg", NULL, -3, 1, 0),
        ev(METRIC_COUNTER, "negfrac", NULL, -0.5, 1, 0),
        ev(METRIC_COUNTER, "below", NULL, 999999999999999.0, 1, 0),
        ev(METRIC_COUNTER, "negbelow", NULL, -999999999999999.0, 1, 0),
        ev(METRIC_COUNTER, "limit", NULL, 1e15, 1, 0),
        ev(METRIC_COUNTER, "neglimit", NULL, -1e15, 1, 0),
        ev(METRIC_COUNTER, "rated", NULL, 3, 0.5, 0),
        ev(METRIC_GAUGE, "gzero", NULL, -0.0, 1, EVENT_GAUGE_RELATIVE),
    };
    size_t count = sizeof e / sizeof e[0];
    live_update u;
    assert_int_equal(build_one(&u, "w", e, count, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 13);
    const char *ids[] = {"w"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 13);
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:whole:counter", "", "21");
    expect_cmd(&u, s++, 4, "HINCRBYFLOAT", "tally:{0}:tenth:counter:frac", "", "0.1");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:halves:counter", "", "1");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:zero:counter", "", "0");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:negzero:counter", "", "0");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:neg:counter", "", "-3");
    expect_cmd(&u, s++, 4, "HINCRBYFLOAT", "tally:{0}:negfrac:counter:frac", "", "-0.5");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:below:counter", "", "999999999999999");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:negbelow:counter", "", "-999999999999999");
    expect_cmd(&u, s++, 4, "HINCRBYFLOAT", "tally:{0}:limit:counter:frac", "", "1e+15");
    expect_cmd(&u, s++, 4, "HINCRBYFLOAT", "tally:{0}:neglimit:counter:frac", "", "-1e+15");
    expect_cmd(&u, s++, 4, "HINCRBY", "tally:{0}:rated:counter", "", "6");
    expect_cmd(&u, s++, 4, "HINCRBYFLOAT", "tally:{0}:gzero:gauge", "", "0");
    assert_int_equal(s, live_exec_reply(&u));
    done(&u);
}

/* The split is decided on the merged total of the group, not per batch. */
static void test_group_fractions_sum_before_split(void **state)
{
    (void)state;
    metric_event b1[] = {ev(METRIC_COUNTER, "c", "t:1", 0.25, 1, 0),
                         ev(METRIC_COUNTER, "d", NULL, 2, 1, 0)};
    metric_event b2[] = {ev(METRIC_COUNTER, "c", "t:1", 0.75, 1, 0),
                         ev(METRIC_COUNTER, "d", NULL, 0.5, 1, 0)};
    char err[128];
    live_fold *f[2] = {live_fold_new(b1, 2, 1, err, sizeof err), live_fold_new(b2, 2, 1, err, sizeof err)};
    assert_non_null(f[0]);
    assert_non_null(f[1]);
    const live_fold *folds[2] = {f[0], f[1]};
    const char *ids[2] = {"p", "q"};
    live_update u;
    assert_int_equal(build_group(&u, folds, ids, 2, 30, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 2);
    size_t s = expect_frame(&u, ids, 2, "30", LIVE_MODE_INGEST, 2);
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:c:counter", "t:1", "1");
    expect_cmd(&u, s + 1, 4, "HINCRBYFLOAT", "tally:{0}:d:counter:frac", "", "2.5");
    done(&u);
    live_fold_free(f[0]);
    live_fold_free(f[1]);
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
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 3);
    expect_cmd(&u, s, 4, "HSET", "tally:{0}:x:gauge", "", "2");
    expect_cmd(&u, s + 1, 4, "HINCRBY", "tally:{0}:x:counter", "", "1");
    expect_cmd(&u, s + 2, 4, "HINCRBY", "tally:{0}:y:counter", "", "1");
    done(&u);
}

/* Names and tags are carried byte for byte, with exact bulk lengths. */
static void test_names_and_tags_are_binary_safe(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_COUNTER, "api.req-total", "env:prod,host:a b", 1, 1, 0),
        ev(METRIC_COUNTER, "api.req-total", "env:prod,host:a b", 1, 1, 0),
        ev(METRIC_COUNTER, "api.req-total", "env:prod,host:a\r\nb", 1, 1, 0),
    };
    live_update u;
    assert_int_equal(build_one(&u, "id-\xc3\xa9", e, 3, 86400, LIVE_MODE_INGEST), 0);
    const char *ids[] = {"id-\xc3\xa9"};
    size_t s = expect_frame(&u, ids, 1, "86400", LIVE_MODE_INGEST, 2);
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:api.req-total:counter", "env:prod,host:a b", "2");
    expect_cmd(&u, s + 1, 4, "HINCRBY", "tally:{0}:api.req-total:counter", "env:prod,host:a\r\nb",
               "1");
    done(&u);
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
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, N);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "tally:{0}:m%d:counter", i);
        expect_cmd(&u, s + (size_t)i, 4, "HINCRBY", key, "", "3");
    }
    done(&u);
}

static void test_rebuild_mode_is_marked(void **state)
{
    (void)state;
    metric_event e[] = {ev(METRIC_COUNTER, "req", NULL, 1, 1, 0)};
    live_update u;
    assert_int_equal(build_one(&u, "b", e, 1, 60, LIVE_MODE_REBUILD), 0);
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_REBUILD, 1);
    expect_cmd(&u, 0, 2, "WATCH", "tally:{0}:batch:b");
    assert_string_equal(arg(&u, 1, 2), "2"); /* the fence stays KEYS[1] */
    assert_string_equal(arg(&u, 1, 3), "tally:{0}:live:rebuilding");
    assert_string_equal(arg(&u, 1, 5), "rebuild");
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:req:counter", "", "1");
    done(&u);
}

/* Only ingest watches the fence; everything else is the same in both modes. */
static void test_watch_has_fence_only_in_ingest_mode(void **state)
{
    (void)state;
    metric_event b1[] = {ev(METRIC_COUNTER, "a", NULL, 1, 1, 0)};
    metric_event b2[] = {ev(METRIC_GAUGE, "g", "k:v", 4, 1, 0)};
    char err[128];
    live_fold *f[2] = {live_fold_new(b1, 1, 1, err, sizeof err), live_fold_new(b2, 1, 1, err, sizeof err)};
    assert_non_null(f[0]);
    assert_non_null(f[1]);
    const live_fold *folds[2] = {f[0], f[1]};
    const char *ids[2] = {"i1", "i2"};
    live_update in, re;
    assert_int_equal(build_group(&in, folds, ids, 2, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(build_group(&re, folds, ids, 2, 60, LIVE_MODE_REBUILD), 0);
    expect_cmd(&in, 0, 4, "WATCH", "tally:{0}:live:rebuilding", "tally:{0}:batch:i1", "tally:{0}:batch:i2");
    expect_cmd(&re, 0, 3, "WATCH", "tally:{0}:batch:i1", "tally:{0}:batch:i2");
    expect_frame(&in, ids, 2, "60", LIVE_MODE_INGEST, 2);
    expect_frame(&re, ids, 2, "60", LIVE_MODE_REBUILD, 2);
    assert_string_equal(arg(&in, 1, 6), "ingest");
    assert_string_equal(arg(&re, 1, 6), "rebuild");
    assert_int_equal(in.commands, re.commands);
    for (size_t i = 1; i < in.commands; i++) {
        assert_int_equal(nargs(&in, i), nargs(&re, i));
        for (size_t j = 0; j < nargs(&in, i); j++)
            if (!(i == LIVE_GUARD_REPLY && j == 6)) /* (the mode, checked above) */
                assert_string_equal(arg(&in, i, j), arg(&re, i, j));
    }
    expect_cmd(&in, 5, 4, "HINCRBY", "tally:{0}:a:counter", "", "1");
    expect_cmd(&in, 6, 4, "HSET", "tally:{0}:g:gauge", "k:v", "4");
    done(&in);
    done(&re);
    live_fold_free(f[0]);
    live_fold_free(f[1]);
}

/* A group merges its batches per series in order: counters add up, a later
 * absolute gauge wins, relative gauges add (to the absolute value before
 * them, if any); every batch gets its dedup key. */
static void test_group_merges_in_order(void **state)
{
    (void)state;
    metric_event b1[] = {ev(METRIC_COUNTER, "a", NULL, 1, 1, 0), ev(METRIC_GAUGE, "g", NULL, 5, 1, 0),
                         ev(METRIC_GAUGE, "r", NULL, 1, 1, EVENT_GAUGE_RELATIVE),
                         ev(METRIC_GAUGE, "h", NULL, 10, 1, 0)};
    metric_event b2[] = {ev(METRIC_COUNTER, "a", NULL, 2, 1, 0),
                         ev(METRIC_GAUGE, "g", NULL, 1, 1, EVENT_GAUGE_RELATIVE),
                         ev(METRIC_COUNTER, "b", NULL, 1, 1, 0),
                         ev(METRIC_GAUGE, "r", NULL, 2, 1, EVENT_GAUGE_RELATIVE)};
    metric_event b3[] = {ev(METRIC_GAUGE, "g", NULL, 7, 1, 0), ev(METRIC_COUNTER, "a", NULL, 4, 1, 0),
                         ev(METRIC_GAUGE, "h", NULL, -4, 1, EVENT_GAUGE_RELATIVE)};
    char err[128];
    live_fold *f[3] = {live_fold_new(b1, 4, 1, err, sizeof err), live_fold_new(b2, 4, 1, err, sizeof err),
                       live_fold_new(b3, 3, 1, err, sizeof err)};
    assert_non_null(f[0]);
    assert_non_null(f[1]);
    assert_non_null(f[2]);
    assert_int_equal(live_fold_series(f[0]), 4);
    assert_int_equal(live_fold_series(f[1]), 4);
    assert_int_equal(live_fold_series(f[2]), 3);
    const live_fold *folds[3] = {f[0], f[1], f[2]};
    const char *ids[3] = {"x", "yy", "z"};
    live_update u;
    assert_int_equal(build_group(&u, folds, ids, 3, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 5); /* a, g, r, h, b */
    size_t s = expect_frame(&u, ids, 3, "60", LIVE_MODE_INGEST, 5);
    expect_cmd(&u, 0, 5, "WATCH", "tally:{0}:live:rebuilding", "tally:{0}:batch:x", "tally:{0}:batch:yy",
               "tally:{0}:batch:z");
    assert_string_equal(arg(&u, 1, 2), "4"); /* fence + 3 dedup keys */
    expect_cmd(&u, s, 4, "HINCRBY", "tally:{0}:a:counter", "", "7");
    expect_cmd(&u, s + 1, 4, "HSET", "tally:{0}:g:gauge", "", "7");
    expect_cmd(&u, s + 2, 4, "HINCRBYFLOAT", "tally:{0}:r:gauge", "", "3");
    expect_cmd(&u, s + 3, 4, "HSET", "tally:{0}:h:gauge", "", "6");
    expect_cmd(&u, s + 4, 4, "HINCRBY", "tally:{0}:b:counter", "", "1");
    done(&u);
    for (int i = 0; i < 3; i++)
        live_fold_free(f[i]);
}

/* ---- sets ------------------------------------------------------------------- */

static metric_event set_ev(const char *name, const char *tags, uint64_t member)
{
    metric_event e = ev(METRIC_SET, name, tags, 0, 1, 0);
    e.member = member;
    return e;
}

/* Argument j of command i is the PFADD element of member digest m. */
static void expect_element(const live_update *u, size_t i, size_t j, uint64_t m)
{
    unsigned char want[REDIS_HLL_ELEMENT_BYTES];
    redis_hll_element(m, want);
    const parsed_cmd *c = parsed(u, i);
    assert_true(j < c->argc);
    assert_int_equal(c->lens[j], sizeof want);
    assert_memory_equal(c->argv[j], want, sizeof want);
}

/* A set series becomes PFADD of its distinct members (the digests' 8
 * little-endian bytes, in ascending order) into tally:{S}:NAME:set:TAGS, then
 * HSET of its tags into the name's index tally:{S}:NAME:set. */
static void test_set_pfadds_distinct_members(void **state)
{
    (void)state;
    metric_event e[] = {
        set_ev("users", NULL, 9), set_ev("users", NULL, 7), set_ev("users", "app:web", 1),
        set_ev("users", NULL, 7), set_ev("users", NULL, 0x0102030405060708ull),
        ev(METRIC_COUNTER, "users", NULL, 1, 1, 0), set_ev("users", NULL, 9),
    };
    live_update u;
    assert_int_equal(build_one(&u, "b", e, sizeof e / sizeof e[0], 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 3);
    const char *ids[] = {"b"};
    size_t s = expect_frame(&u, ids, 1, "60", LIVE_MODE_INGEST, 5);
    assert_string_equal(cmd(&u, s), "PFADD");
    assert_int_equal(nargs(&u, s), 2 + 3);
    assert_string_equal(arg(&u, s, 1), "tally:{0}:users:set:");
    expect_element(&u, s, 2, 7);
    expect_element(&u, s, 3, 9);
    expect_element(&u, s, 4, 0x0102030405060708ull);
    expect_cmd(&u, s + 1, 4, "HSET", "tally:{0}:users:set", "", "1");
    assert_string_equal(cmd(&u, s + 2), "PFADD");
    assert_int_equal(nargs(&u, s + 2), 3);
    assert_string_equal(arg(&u, s + 2, 1), "tally:{0}:users:set:app:web");
    expect_element(&u, s + 2, 2, 1);
    expect_cmd(&u, s + 3, 4, "HSET", "tally:{0}:users:set", "app:web", "1");
    expect_cmd(&u, s + 4, 4, "HINCRBY", "tally:{0}:users:counter", "", "1");
    assert_int_equal(u.nbounds, 0); /* a set has no bounds to remember */
    done(&u);
}

/* A group PFADDs each set's union once; a series of more distinct members
 * than LIVE_PFADD_CHUNK takes several PFADDs. */
static void test_set_group_union_and_chunks(void **state)
{
    (void)state;
    enum { N = 2 * LIVE_PFADD_CHUNK + 100 };
    static metric_event b1[N], b2[N];
    for (size_t i = 0; i < N; i++) {
        b1[i] = set_ev("s", "k:v", 2 * i);     /* even digests */
        b2[i] = set_ev("s", "k:v", 2 * i + N); /* half of them even too: shared with b1 */
    }
    metric_event b3[] = {set_ev("t", NULL, 5), set_ev("s", "k:v", 0)};
    char err[128];
    live_fold *f[3] = {live_fold_new(b1, N, 1, err, sizeof err), live_fold_new(b2, N, 1, err, sizeof err),
                       live_fold_new(b3, 2, 1, err, sizeof err)};
    assert_true(f[0] && f[1] && f[2]);
    const live_fold *folds[3] = {f[0], f[1], f[2]};
    const char *ids[3] = {"x", "y", "z"};
    live_update u;
    assert_int_equal(build_group(&u, folds, ids, 3, 60, LIVE_MODE_INGEST), 0);
    assert_int_equal(u.series, 2);
    /* the union: 0, 2, ..., 2(N-1) and N, N+2, ..., 3N-2: N + N/2 distinct */
    size_t distinct = N + N / 2, pfadds = (distinct + LIVE_PFADD_CHUNK - 1) / LIVE_PFADD_CHUNK;
    size_t s = expect_frame(&u, ids, 3, "60", LIVE_MODE_INGEST, pfadds + 1 + 2);
    uint64_t prev = 0, seen = 0;
    for (size_t p = 0; p < pfadds; p++) {
        assert_string_equal(cmd(&u, s + p), "PFADD");
        assert_string_equal(arg(&u, s + p, 1), "tally:{0}:s:set:k:v");
        size_t elements = nargs(&u, s + p) - 2;
        assert_int_equal(elements, p + 1 < pfadds ? LIVE_PFADD_CHUNK : distinct % LIVE_PFADD_CHUNK);
        for (size_t j = 0; j < elements; j++) {
            const parsed_cmd *c = parsed(&u, s + p);
            uint64_t m = 0;
            for (int k = 7; k >= 0; k--)
                m = m << 8 | (unsigned char)c->argv[2 + j][k];
            assert_true(seen == 0 || m > prev); /* ascending: distinct */
            assert_true(m % 2 == 0 || (m >= N && m < 3 * N));
            prev = m;
            seen++;
        }
    }
    assert_int_equal(seen, distinct);
    expect_cmd(&u, s + pfadds, 4, "HSET", "tally:{0}:s:set", "k:v", "1");
    assert_string_equal(arg(&u, s + pfadds + 1, 1), "tally:{0}:t:set:");
    expect_element(&u, s + pfadds + 1, 2, 5);
    expect_cmd(&u, s + pfadds + 2, 4, "HSET", "tally:{0}:t:set", "", "1");
    done(&u);
    for (int i = 0; i < 3; i++)
        live_fold_free(f[i]);
}

static void test_batch_id_too_long_fails_cleanly(void **state)
{
    (void)state;
    static char id[1001];
    memset(id, 'x', sizeof id - 1);
    metric_event e[] = {ev(METRIC_COUNTER, "a", NULL, 1, 1, 0)};
    char err[128] = "";
    live_fold *f = live_fold_new(e, 1, 1, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {id};
    live_batch batches[1];
    test_batches(batches, ids, 1);
    live_update u;
    assert_int_equal(live_update_build(&u, folds, batches, 1, 60, LIVE_MODE_INGEST, NULL, 0, err,
                                       sizeof err), -1);
    assert_non_null(strstr(err, "too long"));
    assert_null(u.resp);
    assert_null(u.ends);
    assert_int_equal(u.commands, 0);
    live_fold_free(f);
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

/* ---- replies ----------------------------------------------------------------- */

/* Hand-built replies, freed together by replies_free(). */
static redisReply *g_replies[64];
static size_t g_nreplies;

static redisReply *reply_new(int type)
{
    assert_true(g_nreplies < sizeof g_replies / sizeof g_replies[0]);
    redisReply *r = calloc(1, sizeof *r);
    assert_non_null(r);
    r->type = type;
    g_replies[g_nreplies++] = r;
    return r;
}

static redisReply *r_int(long long v)
{
    redisReply *r = reply_new(REDIS_REPLY_INTEGER);
    r->integer = v;
    return r;
}

static redisReply *r_nil(void) { return reply_new(REDIS_REPLY_NIL); }

static redisReply *r_text(int type, const char *s)
{
    redisReply *r = reply_new(type);
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *r_err(const char *s) { return r_text(REDIS_REPLY_ERROR, s); }
static redisReply *r_status(const char *s) { return r_text(REDIS_REPLY_STATUS, s); }
static redisReply *r_str(const char *s) { return r_text(REDIS_REPLY_STRING, s); }

static redisReply *r_array(size_t n, ...)
{
    redisReply *r = reply_new(REDIS_REPLY_ARRAY);
    r->elements = n;
    r->element = n ? calloc(n, sizeof *r->element) : NULL;
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        r->element[i] = va_arg(ap, redisReply *);
    va_end(ap);
    return r;
}

static void replies_free(void)
{
    for (size_t i = 0; i < g_nreplies; i++) {
        free(g_replies[i]->element);
        free(g_replies[i]);
    }
    g_nreplies = 0;
}

/* The replies of a successful EXEC: SET, HINCRBY, HINCRBYFLOAT, HSET, ZADD. */
static redisReply *exec_ok(void)
{
    return r_array(5, r_status("OK"), r_int(21), r_str("0.1"), r_int(0), r_int(1));
}

static void test_guard_go_then_exec_applies(void **state)
{
    (void)state;
    size_t dups[3] = {0}, ndups = 99;
    char why[128] = "";
    int v = live_guard_verdict(r_array(1, r_int(1)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_APPLIED);
    assert_int_equal(ndups, 0);
    assert_int_equal(live_outcome(v, exec_ok(), why, sizeof why), LIVE_APPLIED);

    ndups = 99; /* a group of three */
    v = live_guard_verdict(r_array(1, r_int(1)), 3, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_APPLIED);
    assert_int_equal(ndups, 0);
    assert_int_equal(live_outcome(v, r_array(1, r_status("OK")), why, sizeof why), LIVE_APPLIED);
    replies_free();
}

static void test_guard_fenced_defers(void **state)
{
    (void)state;
    size_t dups[2] = {0}, ndups = 99;
    char why[128] = "";
    int v = live_guard_verdict(r_array(1, r_int(2)), 2, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_DEFERRED);
    assert_int_equal(ndups, 0);
    assert_int_equal(live_outcome(v, r_nil(), why, sizeof why), LIVE_DEFERRED);
    replies_free();
}

static void test_guard_names_duplicates(void **state)
{
    (void)state;
    size_t dups[3] = {0}, ndups = 99;
    char why[128] = "";
    int v = live_guard_verdict(r_array(2, r_int(0), r_int(2)), 2, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_DUPLICATE);
    assert_int_equal(ndups, 1);
    assert_int_equal(dups[0], 2);
    assert_int_equal(live_outcome(v, r_nil(), why, sizeof why), LIVE_DUPLICATE);

    v = live_guard_verdict(r_array(3, r_int(0), r_int(1), r_int(3)), 3, dups, &ndups, why,
                           sizeof why);
    assert_int_equal(v, LIVE_DUPLICATE);
    assert_int_equal(ndups, 2);
    assert_int_equal(dups[0], 1);
    assert_int_equal(dups[1], 3);
    replies_free();
}

static void test_exec_aborted_by_another_client_retries(void **state)
{
    (void)state;
    size_t dups[1], ndups = 99;
    char why[128] = "";
    int v = live_guard_verdict(r_array(1, r_int(1)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_APPLIED);
    assert_int_equal(live_outcome(v, r_nil(), why, sizeof why), LIVE_RETRY);
    replies_free();
}

static void test_exec_with_refused_updates_is_partial(void **state)
{
    (void)state;
    size_t dups[1], ndups = 99;
    char why[256] = "";
    int v = live_guard_verdict(r_array(1, r_int(1)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_APPLIED);
    redisReply *exec = r_array(4, r_status("OK"),
                               r_err("WRONGTYPE Operation against a key holding the wrong kind of value"),
                               r_int(3), r_err("ERR hash value is not an integer"));
    assert_int_equal(live_outcome(v, exec, why, sizeof why), LIVE_PARTIAL);
    assert_non_null(strstr(why, "WRONGTYPE Operation against a key"));
    assert_non_null(strstr(why, "2 of 4"));
    assert_null(strstr(why, "hash value is not an integer")); /* the first error is named */

    /* a short buffer truncates, it does not overflow */
    char tiny[8];
    memset(tiny, '#', sizeof tiny);
    assert_int_equal(live_outcome(v, exec, tiny, sizeof tiny), LIVE_PARTIAL);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
    replies_free();
}

/* A HINCRBY reply at 2^53 or more asks for a carry of exactly that field;
 * smaller ones, HINCRBYFLOAT and HSET replies do not. */
static void test_carry_of_large_integer_fields(void **state)
{
    (void)state;
    metric_event e[] = {
        ev(METRIC_COUNTER, "big", "env:a", 999999999999999.0, 1, 0),
        ev(METRIC_DISTRIBUTION, "lat", NULL, 5, 1, 0),
        ev(METRIC_COUNTER, "small", NULL, 3, 1, 0),
        ev(METRIC_COUNTER, "frac", NULL, 0.5, 1, 0),
    };
    live_update u, carry;
    char err[128];
    live_fold *f = live_fold_new(e, 4, 1, err, sizeof err); /* (u borrows its strings) */
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {"b1"};
    assert_int_equal(build_group(&u, folds, ids, 1, 60, LIVE_MODE_INGEST), 0);
    /* EXEC: SET, HINCRBY big, HINCRBY dist:count, HINCRBY dist:sum, ZADD, ZADD,
     * HINCRBY small, HINCRBYFLOAT frac */
    assert_string_equal(cmd(&u, 4), "HINCRBY");
    assert_int_equal(u.nwhole, 4);
    redisReply *exec = r_array(8, r_status("OK"), r_int(LIVE_CARRY_THRESHOLD), r_int(1),
                               r_int(-LIVE_CARRY_THRESHOLD - 5), r_int(1), r_int(1),
                               r_int(LIVE_CARRY_THRESHOLD - 1), r_str("0.5"));
    assert_int_equal(live_update_carry(&u, exec, &carry, err, sizeof err), 0);
    parse_update(&carry);
    assert_int_equal(carry.commands, 2);
    assert_string_equal(cmd(&carry, 0), "EVAL");
    assert_non_null(strstr(arg(&carry, 0, 1), "HINCRBYFLOAT"));
    assert_string_equal(arg(&carry, 0, 2), "2");
    assert_string_equal(arg(&carry, 0, 3), "tally:{0}:big:counter");
    assert_string_equal(arg(&carry, 0, 4), "tally:{0}:big:counter:frac");
    assert_string_equal(arg(&carry, 0, 5), "env:a");
    assert_string_equal(arg(&carry, 0, 6), "9007199254740992");
    assert_string_equal(arg(&carry, 1, 3), "tally:{0}:lat:dist:sum");
    assert_string_equal(arg(&carry, 1, 4), "tally:{0}:lat:dist:sum:frac");
    assert_string_equal(arg(&carry, 1, 5), "");
    done(&carry);

    /* nothing near the limit: no carry */
    redisReply *calm = r_array(8, r_status("OK"), r_int(7), r_int(1), r_int(5), r_int(1),
                               r_int(1), r_int(3), r_str("0.5"));
    assert_int_equal(live_update_carry(&u, calm, &carry, err, sizeof err), 0);
    assert_int_equal(carry.commands, 0);
    live_update_free(&carry);
    done(&u);
    live_fold_free(f);
    replies_free();
}

/* A value that is not finite is never written: the build fails cleanly. */
static void test_non_finite_value_is_refused(void **state)
{
    (void)state;
    metric_event e[] = {ev(METRIC_GAUGE, "g", NULL, INFINITY, 1, 0)};
    live_update u;
    char err[128] = "";
    live_fold *f = live_fold_new(e, 1, 1, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    const char *ids[1] = {"b"};
    live_batch batches[1];
    test_batches(batches, ids, 1);
    assert_int_equal(live_update_build(&u, folds, batches, 1, 60, LIVE_MODE_INGEST, NULL, 0, err,
                                       sizeof err),
                     -1);
    assert_string_equal(err, "a folded value is not finite");
    assert_null(u.resp);
    live_fold_free(f);
}

static void test_guard_failures(void **state)
{
    (void)state;
    size_t dups[4] = {0}, ndups = 99;
    char why[128] = "";

    /* an error reply: its text is the reason, and the outcome stays failed */
    int v = live_guard_verdict(r_err("ERR Error running script: @user_script:2: boom"), 1, dups,
                               &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    assert_int_equal(ndups, 0);
    assert_non_null(strstr(why, "boom"));
    assert_int_equal(live_outcome(v, r_nil(), why, sizeof why), LIVE_FAILED);
    assert_int_equal(live_outcome(v, exec_ok(), why, sizeof why), LIVE_FAILED);
    assert_non_null(strstr(why, "boom")); /* kept for the caller */

    /* connection lost */
    why[0] = '\0';
    ndups = 99;
    v = live_guard_verdict(NULL, 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    assert_int_equal(ndups, 0);
    assert_non_null(strstr(why, "connection"));
    assert_int_equal(live_outcome(v, NULL, why, sizeof why), LIVE_FAILED);

    /* duplicate positions out of range: nothing listed */
    why[0] = '\0';
    v = live_guard_verdict(r_array(2, r_int(0), r_int(5)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    assert_int_equal(ndups, 0);
    assert_true(why[0] != '\0');
    v = live_guard_verdict(r_array(2, r_int(0), r_int(0)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    assert_int_equal(ndups, 0);
    v = live_guard_verdict(r_array(3, r_int(0), r_int(1), r_int(3)), 2, dups, &ndups, why,
                           sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    assert_int_equal(ndups, 0); /* the valid position before the bad one is dropped */
    v = live_guard_verdict(r_array(2, r_int(0), r_str("1")), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);

    /* malformed answers */
    v = live_guard_verdict(r_array(1, r_int(0)), 1, dups, &ndups, why, sizeof why); /* no dups */
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_array(3, r_int(0), r_int(1), r_int(1)), 1, dups, &ndups, why,
                           sizeof why); /* more than n */
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_array(1, r_int(7)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_array(1, r_int(-1)), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_array(0), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_array(1, r_str("1")), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_status("OK"), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    v = live_guard_verdict(r_nil(), 1, dups, &ndups, why, sizeof why);
    assert_int_equal(v, LIVE_FAILED);
    replies_free();
}

static void test_exec_failures(void **state)
{
    (void)state;
    char why[128] = "";
    /* connection lost before EXEC's reply */
    assert_int_equal(live_outcome(LIVE_APPLIED, NULL, why, sizeof why), LIVE_FAILED);
    assert_non_null(strstr(why, "connection"));
    /* EXEC refused as a whole */
    why[0] = '\0';
    assert_int_equal(live_outcome(LIVE_APPLIED,
                                  r_err("EXECABORT Transaction discarded because of previous errors."),
                                  why, sizeof why),
                     LIVE_FAILED);
    assert_non_null(strstr(why, "EXECABORT"));
    /* not an array nor nil */
    why[0] = '\0';
    assert_int_equal(live_outcome(LIVE_APPLIED, r_status("OK"), why, sizeof why), LIVE_FAILED);
    assert_true(why[0] != '\0');
    /* the guard refused, yet EXEC ran: unexpected */
    why[0] = '\0';
    assert_int_equal(live_outcome(LIVE_DEFERRED, exec_ok(), why, sizeof why), LIVE_FAILED);
    assert_true(why[0] != '\0');
    assert_int_equal(live_outcome(LIVE_DUPLICATE, exec_ok(), why, sizeof why), LIVE_FAILED);
    replies_free();
}

/* ---- number formatting --------------------------------------------------------- */

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
    /* short decimals (the printf-free path) print their digits and parse back */
    const struct { double v; const char *text; } short_decimals[] = {
        {12.3, "12.3"}, {-0.05, "-0.05"}, {0.0001, "0.0001"}, {123456.789, "123456.789"},
        {-99999999.5, "-99999999.5"}, {0.000001, "0.000001"}, {2.5, "2.5"}};
    for (size_t i = 0; i < sizeof short_decimals / sizeof short_decimals[0]; i++) {
        int n = format_double(buf, sizeof buf, short_decimals[i].v);
        assert_string_equal(buf, short_decimals[i].text);
        assert_int_equal(n, (int)strlen(short_decimals[i].text));
        assert_true(strtod(buf, NULL) == short_decimals[i].v);
    }
    /* values that are not short decimals still round-trip exactly */
    const double others[] = {1e-7, 1.0 / 3, 123456789.123, 2e9 + 0.5, -4.9e-324, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        format_double(buf, sizeof buf, others[i]);
        assert_true(strtod(buf, NULL) == others[i]);
    }
}

/* ---- shards ------------------------------------------------------------------ */

/* With 4 shards each series goes to the transaction of its name's shard
 * (CRC16 mod 4), with that shard's fence and dedup keys only: every key of
 * a transaction carries one hash tag. */
static void test_shards_split_a_group(void **state)
{
    (void)state;
    enum { SHARDS = 4, NAMES = 12 };
    char names[NAMES][8];
    metric_event e[NAMES];
    unsigned expect[SHARDS] = {0};
    for (int k = 0; k < NAMES; k++) {
        snprintf(names[k], sizeof names[k], "m%d", k);
        e[k] = ev(METRIC_COUNTER, names[k], NULL, 1, 1, 0);
        unsigned shard = redis_shard_of(names[k], strlen(names[k]), SHARDS);
        assert_int_equal(shard, redis_crc16(names[k], strlen(names[k])) % SHARDS);
        expect[shard]++;
    }
    char err[128];
    live_fold *f = live_fold_new(e, NAMES, SHARDS, err, sizeof err);
    assert_non_null(f);
    size_t n;
    const uint16_t *list = live_fold_shards(f, &n);
    size_t touched = 0;
    for (unsigned k = 0; k < SHARDS; k++)
        touched += expect[k] > 0;
    assert_int_equal(n, touched);
    size_t seen = 0;
    for (size_t k = 0; k < n; k++) {
        if (k > 0)
            assert_true(list[k] > list[k - 1]);
        unsigned shard = list[k];
        const live_fold *folds[1] = {f};
        live_batch batch = {"b", 1, TEST_DIGEST, 5000};
        live_update u;
        assert_int_equal(live_update_build(&u, folds, &batch, 1, 60, LIVE_MODE_INGEST, NULL, shard,
                                           err, sizeof err),
                         0);
        parse_update(&u);
        char tag[32], fence[48], dedup[48];
        snprintf(tag, sizeof tag, "tally:{%u}:", shard);
        snprintf(fence, sizeof fence, "tally:{%u}:live:rebuilding", shard);
        snprintf(dedup, sizeof dedup, "tally:{%u}:batch:b", shard);
        expect_cmd(&u, 0, 3, "WATCH", fence, dedup);
        assert_string_equal(arg(&u, 1, 3), fence);
        assert_int_equal(u.series, expect[shard]);
        for (size_t c = 4; c + 1 < u.commands; c++) { /* the series' commands */
            assert_string_equal(cmd(&u, c), "HINCRBY");
            assert_memory_equal(arg(&u, c, 1), tag, strlen(tag));
            const char *name = arg(&u, c, 1) + strlen(tag);
            size_t len = strcspn(name, ":");
            assert_int_equal(redis_shard_of(name, len, SHARDS), shard);
            seen++;
        }
        done(&u);
    }
    assert_int_equal(seen, NAMES);
    live_fold_free(f);
}

/* One claim per batch, in its id's home shard, with that shard's fence. */
static void test_claims_build_per_batch(void **state)
{
    (void)state;
    const char *ids[2] = {"client/k1", "k2"};
    live_batch batches[2];
    test_batches(batches, ids, 2);
    live_update u;
    char err[128];
    assert_int_equal(live_claims_build(&u, batches, 2, 60, LIVE_MODE_INGEST, 8, err, sizeof err), 0);
    parse_update(&u);
    assert_int_equal(u.commands, 2);
    for (size_t i = 0; i < 2; i++) {
        unsigned home = redis_crc16(ids[i], strlen(ids[i])) % 8;
        char key[64], fence[64], claim[64], window[16], ttl[16];
        snprintf(key, sizeof key, "tally:{%u}:claim:%s", home, ids[i]);
        snprintf(fence, sizeof fence, "tally:{%u}:live:rebuilding", home);
        test_claim(claim, sizeof claim, i);
        snprintf(window, sizeof window, "%d", 60 * 1000);
        snprintf(ttl, sizeof ttl, "%d", 60 + DEDUP_SLACK_SECONDS);
        assert_int_equal(nargs(&u, i), 9);
        assert_string_equal(cmd(&u, i), "EVAL");
        assert_string_equal(arg(&u, i, 2), "2");
        assert_string_equal(arg(&u, i, 3), key);
        assert_string_equal(arg(&u, i, 4), fence);
        assert_string_equal(arg(&u, i, 5), "ingest");
        assert_string_equal(arg(&u, i, 6), window);
        assert_string_equal(arg(&u, i, 7), claim);
        assert_string_equal(arg(&u, i, 8), ttl);
    }
    done(&u);
    char held[LIVE_CLAIM_MAX];
    live_claim_value(held, TEST_DIGEST, 42, 1);
    assert_string_equal(held, TEST_DIGEST " 42 done");
}

static void test_claim_verdicts(void **state)
{
    (void)state;
    char why[128];
    long long answers[] = {0, 1, 2, -1, 7};
    int verdicts[] = {LIVE_APPLIED, LIVE_DUPLICATE, LIVE_DEFERRED, LIVE_CONFLICTED, LIVE_FAILED};
    for (size_t i = 0; i < 5; i++) {
        redisReply r = {.type = REDIS_REPLY_INTEGER, .integer = answers[i]};
        assert_int_equal(live_claim_verdict(&r, why, sizeof why), verdicts[i]);
    }
    char msg[] = "NOSCRIPT";
    redisReply e = {.type = REDIS_REPLY_ERROR, .str = msg, .len = sizeof msg - 1};
    assert_int_equal(live_claim_verdict(&e, why, sizeof why), LIVE_FAILED);
    assert_string_equal(why, "NOSCRIPT");
    assert_int_equal(live_claim_verdict(NULL, why, sizeof why), LIVE_FAILED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_fold_per_series),
        cmocka_unit_test(test_gauge_composition),
        cmocka_unit_test(test_distribution_ops),
        cmocka_unit_test(test_whole_and_fractional_sums),
        cmocka_unit_test(test_group_fractions_sum_before_split),
        cmocka_unit_test(test_types_are_separate_series_in_first_seen_order),
        cmocka_unit_test(test_names_and_tags_are_binary_safe),
        cmocka_unit_test(test_many_series_grow_the_table),
        cmocka_unit_test(test_rebuild_mode_is_marked),
        cmocka_unit_test(test_watch_has_fence_only_in_ingest_mode),
        cmocka_unit_test(test_group_merges_in_order),
        cmocka_unit_test(test_set_pfadds_distinct_members),
        cmocka_unit_test(test_set_group_union_and_chunks),
        cmocka_unit_test(test_batch_id_too_long_fails_cleanly),
        cmocka_unit_test(test_group_never_holds_one_batch_twice),
        cmocka_unit_test(test_guard_go_then_exec_applies),
        cmocka_unit_test(test_guard_fenced_defers),
        cmocka_unit_test(test_guard_names_duplicates),
        cmocka_unit_test(test_exec_aborted_by_another_client_retries),
        cmocka_unit_test(test_exec_with_refused_updates_is_partial),
        cmocka_unit_test(test_carry_of_large_integer_fields),
        cmocka_unit_test(test_non_finite_value_is_refused),
        cmocka_unit_test(test_guard_failures),
        cmocka_unit_test(test_exec_failures),
        cmocka_unit_test(test_format_double_is_exact_and_short),
        cmocka_unit_test(test_bounds_leave_out_covered_min_max),
        cmocka_unit_test(test_bounds_cache_is_exact_and_bounded),
        cmocka_unit_test(test_shards_split_a_group),
        cmocka_unit_test(test_claims_build_per_batch),
        cmocka_unit_test(test_claim_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
