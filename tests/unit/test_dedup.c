/*
 * test_dedup.c — the dedup rule (dedup.h): the window's boundary, which
 * digests name the same body, and the body digest itself (stable across
 * versions and hosts: a retry sent through another ingest must match).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dedup.h"

static void test_window_boundary(void **state)
{
    (void)state;
    assert_true(dedup_is_retry(1000, 1000, 60));
    assert_true(dedup_is_retry(1000, 61000, 60));  /* exactly the window: still a retry */
    assert_false(dedup_is_retry(1000, 61001, 60)); /* past it: counts again */
    assert_true(dedup_is_retry(5000, 1000, 60));   /* a clock that stepped back: a retry */
}

static void test_same_body(void **state)
{
    (void)state;
    assert_true(dedup_same_body("0123456789abcdef", "0123456789abcdef"));
    assert_false(dedup_same_body("0123456789abcdef", "0123456789abcdee"));
    assert_true(dedup_same_body(DEDUP_DIGEST_UNKNOWN, "0123456789abcdef"));
    assert_true(dedup_same_body("0123456789abcdef", DEDUP_DIGEST_UNKNOWN));
}

static void test_body_digest(void **state)
{
    (void)state;
    char a[DEDUP_DIGEST_TEXT], b[DEDUP_DIGEST_TEXT];
    dedup_body_digest("x:1|c\n", 6, a);
    assert_int_equal(strlen(a), 16);
    assert_int_equal(strspn(a, "0123456789abcdef"), 16);
    dedup_body_digest("x:1|c\n", 6, b);
    assert_string_equal(a, b);
    /* pinned: changing the function would turn every retry across an upgrade into a conflict */
    dedup_body_digest("", 0, a);
    dedup_body_digest("api.requests:1|c|#env:prod\n", 27, b);
    assert_string_equal(a, "1c77bf2c78b96c0f");
    assert_string_equal(b, "db7e59c49e371464");
    /* one changed, moved, added or removed byte, at any position, changes it */
    char body[64], other[64], d0[DEDUP_DIGEST_TEXT], d1[DEDUP_DIGEST_TEXT];
    memset(body, 'a', sizeof body);
    dedup_body_digest(body, sizeof body, d0);
    for (size_t i = 0; i < sizeof body; i++) {
        memcpy(other, body, sizeof body);
        other[i] = 'b';
        dedup_body_digest(other, sizeof other, d1);
        assert_string_not_equal(d0, d1);
        dedup_body_digest(body, i, d1);
        assert_string_not_equal(d0, d1);
    }
    dedup_body_digest("ab", 2, d0);
    dedup_body_digest("ba", 2, d1);
    assert_string_not_equal(d0, d1);
    dedup_body_digest("a", 1, d0);
    dedup_body_digest("a\0", 2, d1);
    assert_string_not_equal(d0, d1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_boundary),
        cmocka_unit_test(test_same_body),
        cmocka_unit_test(test_body_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
