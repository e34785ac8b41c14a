/*
 * test_auth.c — the token file (auth.h): what it accepts, every refusal
 * names its line, a file others can read is refused, and auth_find matches
 * whole tokens only. The admission call (admission.h): asked only when a
 * series is new or the client is rate limited, and its answers read back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "admission.h"
#include "auth.h"
#include "redis_keys.h"
#include "redis_slots.h"

static char path[64];

/* Writes text to a fresh temporary file with the given mode. */
static const char *token_file(const char *text, mode_t mode)
{
    snprintf(path, sizeof path, "/tmp/tally-test-auth-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

static auth_table *load(const char *text, mode_t mode, char *err, size_t errlen)
{
    auth_table *t = auth_load(token_file(text, mode), err, errlen);
    unlink(path);
    return t;
}

static void test_good_file(void **state)
{
    (void)state;
    char err[256] = "";
    auth_table *t = load("# clients\n\n"
                         "app   write       0123456789abcdef   events_per_second=500\n"
                         "graf  read        fedcba9876543210zz # the dashboards\n"
                         "both  write,read  ABCDEFGHIJKLMNOPQRSTU batches_per_second=7 events_per_second=0\r\n",
                         0600, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(auth_count(t), 3);
    const auth_client *c = auth_find(t, "0123456789abcdef", 16);
    assert_non_null(c);
    assert_string_equal(c->name, "app");
    assert_int_equal(c->scopes, AUTH_SCOPE_WRITE);
    assert_int_equal(c->events_per_second, 500);
    assert_int_equal(c->batches_per_second, 0);
    c = auth_find(t, "ABCDEFGHIJKLMNOPQRSTU", 21);
    assert_non_null(c);
    assert_string_equal(c->name, "both");
    assert_int_equal(c->scopes, AUTH_SCOPE_WRITE | AUTH_SCOPE_READ);
    assert_int_equal(c->batches_per_second, 7);
    assert_string_equal(auth_find(t, "fedcba9876543210zz", 18)->name, "graf");
    /* whole tokens only: a prefix, an extension, another case, empty */
    assert_null(auth_find(t, "0123456789abcde", 15));
    assert_null(auth_find(t, "0123456789abcdef0", 17));
    assert_null(auth_find(t, "0123456789ABCDEF", 16));
    assert_null(auth_find(t, "", 0));
    char huge[AUTH_TOKEN_MAX + 2];
    memset(huge, 'a', sizeof huge);
    assert_null(auth_find(t, huge, sizeof huge));
    auth_free(t);
}

static void expect_refused(const char *text, mode_t mode, const char *why)
{
    char err[512] = "";
    auth_table *t = load(text, mode, err, sizeof err);
    if (t || !strstr(err, why))
        fail_msg("expected a refusal with \"%s\", got %s: %s", why, t ? "a table" : "error", err);
}

static void test_refusals_name_the_line(void **state)
{
    (void)state;
    expect_refused("a write 0123456789abcdef\n", 0644, "chmod 600");
    expect_refused("a write 0123456789abcdef\n", 0640, "lets group or others read it");
    expect_refused("# nothing\n\n", 0600, "no tokens");
    expect_refused("a write\n", 0600, ":1: expected NAME SCOPES TOKEN");
    expect_refused("\n\nbad.name write 0123456789abcdef\n", 0600, ":3: NAME must be");
    expect_refused("a admin 0123456789abcdef\n", 0600, ":1: SCOPES must be");
    expect_refused("a write short\n", 0600, ":1: TOKEN must be 16-256");
    expect_refused("a write 0123456789abcdef rate=5\n", 0600, ":1: a limit must be");
    expect_refused("a write 0123456789abcdef events_per_second=-1\n", 0600, ":1: a limit must be");
    expect_refused("a write 0123456789abcdef\na read 0123456789abcdeX\n", 0600,
                   ":2: NAME is used by an earlier line");
    expect_refused("a write 0123456789abcdef\nb read 0123456789abcdef\n", 0600,
                   ":2: TOKEN is used by an earlier line");
    char err[256];
    assert_null(auth_load("/nonexistent/tokens", err, sizeof err));
    assert_non_null(strstr(err, "No such file"));
}

static metric_event counter(const char *name)
{
    metric_event e = {0};
    e.type = METRIC_COUNTER;
    e.name = name;
    e.name_len = (uint16_t)strlen(name);
    e.tags = "";
    e.value = 1;
    e.sample_rate = 1;
    return e;
}

static void test_admission_asks_only_when_needed(void **state)
{
    (void)state;
    char err[128];
    metric_event evs[] = {counter("a"), counter("b"), counter("a")};
    live_fold *f = live_fold_new(evs, 3, 1, err, sizeof err);
    assert_non_null(f);
    live_known *known = live_known_new(64, 4096);
    admission a;
    /* two new series, no limits: one call carrying both (key, tags) pairs */
    assert_int_equal(admission_build(&a, f, 3, known, NULL, 1000, 1, err, sizeof err), 1);
    assert_int_equal(a.ncandidates, 2);
    assert_string_equal(a.argv[0], "EVAL");
    assert_string_equal(a.argv[2], "1");
    assert_string_equal(a.argv[3], REDIS_KEY_LIVE_SERIES);
    assert_string_equal(a.argv[4], "1000");
    assert_string_equal(a.argv[5], "3");
    assert_string_equal(a.argv[8], "1"); /* (one server: the script looks series up itself) */
    assert_int_equal(a.argc, 9 + 2 * 2);
    assert_string_equal(a.argv[9], "tally:{0}:a:counter");
    assert_int_equal(a.argvlen[10], 0);
    admission_note(&a, f, known);
    admission_free(&a);
    /* every series known and no limits: nothing to ask */
    assert_int_equal(admission_build(&a, f, 3, known, NULL, 1000, 1, err, sizeof err), 0);
    /* a rate-limited client is always asked, with its rate key */
    auth_client c = {.name = "app", .events_per_second = 50, .batches_per_second = 0};
    assert_int_equal(admission_build(&a, f, 3, known, &c, 1000, 1, err, sizeof err), 1);
    assert_int_equal(a.ncandidates, 0);
    assert_string_equal(a.argv[2], "2");
    assert_string_equal(a.argv[4], "tally:{admission}:rate:app");
    assert_string_equal(a.argv[7], "50");
    assert_string_equal(a.argv[8], "0");
    admission_free(&a);
    live_known_free(known);
    live_fold_free(f);
}

/* A set series is admitted by its index hash, tally:{S}:NAME:set, field TAGS:
 * the key the admission script's exact check (HEXISTS) finds it in. */
static void test_admission_of_a_set(void **state)
{
    (void)state;
    char err[128];
    metric_event e = counter("users");
    e.type = METRIC_SET;
    e.value = 0;
    e.member = 42;
    e.tags = "app:web";
    e.tags_len = 7;
    live_fold *f = live_fold_new(&e, 1, 1, err, sizeof err);
    assert_non_null(f);
    live_known *known = live_known_new(64, 4096);
    admission a;
    assert_int_equal(admission_build(&a, f, 1, known, NULL, 1000, 1, err, sizeof err), 1);
    assert_int_equal(a.ncandidates, 1);
    assert_string_equal(a.argv[9], "tally:{0}:users:set");
    assert_string_equal(a.argv[10], "app:web");
    admission_free(&a);
    live_known_free(known);
    live_fold_free(f);
}

/* On a Redis Cluster the script cannot read the series' hashes (other
 * slots): it is told so, and each candidate's lookup is its own call on the
 * slot of its hash, with the ":frac" companion beside it. */
static void test_admission_lookups_on_a_cluster(void **state)
{
    (void)state;
    char err[128];
    metric_event evs[] = {counter("a"), counter("b")};
    evs[1].tags = "env:prod";
    evs[1].tags_len = 8;
    live_fold *f = live_fold_new(evs, 2, 8, err, sizeof err);
    assert_non_null(f);
    live_known *known = live_known_new(64, 4096);
    admission a;
    assert_int_equal(admission_build(&a, f, 2, known, NULL, 1000, 0, err, sizeof err), 1);
    assert_string_equal(a.argv[8], "0");
    assert_int_equal(a.ncandidates, 2);
    for (size_t k = 0; k < a.ncandidates; k++) {
        const char *argv[6];
        size_t argvlen[6];
        char frac[REDIS_KEY_MAX], want[REDIS_KEY_MAX];
        assert_int_equal(admission_lookup_args(&a, k, argv, argvlen, frac, sizeof frac), 0);
        assert_string_equal(argv[0], "EVAL");
        assert_string_equal(argv[2], "2");
        assert_memory_equal(argv[3], a.argv[9 + 2 * k], argvlen[3]);
        snprintf(want, sizeof want, "%s:frac", a.argv[9 + 2 * k]);
        assert_string_equal(argv[4], want);
        assert_int_equal(redis_slot(argv[3], argvlen[3]), redis_slot(argv[4], argvlen[4]));
        assert_memory_equal(argv[5], a.argv[10 + 2 * k], argvlen[5]);
        assert_int_equal(argvlen[5], a.argvlen[10 + 2 * k]);
    }
    /* a key that does not fit the caller's buffer is refused, not cut */
    const char *argv[6];
    size_t argvlen[6];
    char small[8];
    assert_int_equal(admission_lookup_args(&a, 0, argv, argvlen, small, sizeof small), -1);
    admission_free(&a);
    /* once every lookup found its series, only the rate limits are asked:
     * no fold, no series, whatever the writer's table still holds */
    assert_int_equal(admission_build(&a, NULL, 2, known, NULL, 1000, 0, err, sizeof err), 0);
    auth_client c = {.name = "app", .events_per_second = 50, .batches_per_second = 0};
    assert_int_equal(admission_build(&a, NULL, 2, known, &c, 1000, 0, err, sizeof err), 1);
    assert_int_equal(a.ncandidates, 0);
    assert_int_equal(a.argc, 10);
    admission_free(&a);
    live_known_free(known);
    live_fold_free(f);
}

static redisReply *str(const char *s)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_STRING;
    r->str = (char *)s;
    r->len = strlen(s);
    return r;
}

static redisReply *num(long long v)
{
    redisReply *r = calloc(1, sizeof *r);
    r->type = REDIS_REPLY_INTEGER;
    r->integer = v;
    return r;
}

static void test_admission_verdicts(void **state)
{
    (void)state;
    long long n;
    const char *which;
    char why[128];
    redisReply *ok[] = {str("ok")};
    redisReply *series[] = {str("series"), num(1234)};
    redisReply *rate[] = {str("rate"), num(250), str("batches_per_second")};
    redisReply arr = {.type = REDIS_REPLY_ARRAY, .elements = 1, .element = ok};
    assert_int_equal(admission_verdict(&arr, &n, &which, why, sizeof why), ADMIT_OK);
    arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 2, .element = series};
    assert_int_equal(admission_verdict(&arr, &n, &which, why, sizeof why), ADMIT_TOO_MANY_SERIES);
    assert_int_equal(n, 1234);
    redisReply *look[] = {str("look up"), num(1001)};
    arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 2, .element = look};
    assert_int_equal(admission_verdict(&arr, &n, &which, why, sizeof why), ADMIT_LOOK_UP);
    assert_int_equal(n, 1001);
    free(look[0]);
    free(look[1]);
    arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 3, .element = rate};
    assert_int_equal(admission_verdict(&arr, &n, &which, why, sizeof why), ADMIT_RATE_LIMITED);
    assert_int_equal(n, 250);
    assert_string_equal(which, "batches_per_second");
    redisReply error = {.type = REDIS_REPLY_ERROR, .str = "OOM command not allowed", .len = 23};
    assert_int_equal(admission_verdict(&error, &n, &which, why, sizeof why), ADMIT_UNANSWERED);
    assert_non_null(strstr(why, "OOM"));
    arr = (redisReply){.type = REDIS_REPLY_ARRAY, .elements = 1, .element = series};
    assert_int_equal(admission_verdict(&arr, &n, &which, why, sizeof why), ADMIT_UNANSWERED);
    free(ok[0]);
    free(series[0]);
    free(series[1]);
    for (int i = 0; i < 3; i++)
        free(rate[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_refusals_name_the_line),
        cmocka_unit_test(test_admission_asks_only_when_needed),
        cmocka_unit_test(test_admission_of_a_set),
        cmocka_unit_test(test_admission_lookups_on_a_cluster),
        cmocka_unit_test(test_admission_verdicts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
