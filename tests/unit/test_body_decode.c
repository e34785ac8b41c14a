/*
 * test_body_decode.c — request bodies as clients encode them: identity
 * passes through, gzip inflates exactly (one member or several), a body that
 * inflates past the limit (a gzip bomb) and corrupt or truncated gzip are
 * refused, other encodings are unsupported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "body_decode.h"

/* gzip of `len` bytes of `text` (malloc'd). */
static uint8_t *gzip(const void *text, size_t len, size_t *out_len)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, (uLong)len) + 32;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    zs.next_in = (Bytef *)text;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = cap - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

static void test_identity_passes_through(void **state)
{
    (void)state;
    const uint8_t body[] = "a:1|c\n";
    const uint8_t *out;
    size_t len;
    int owned;
    char err[128];
    assert_int_equal(body_decode(NULL, body, 6, 100, &out, &len, &owned, err, sizeof err), BODY_OK);
    assert_ptr_equal(out, body);
    assert_int_equal(owned, 0);
    assert_int_equal(body_decode("identity", body, 6, 100, &out, &len, &owned, err, sizeof err),
                     BODY_OK);
    assert_int_equal(len, 6);
    assert_int_equal(body_decode("br", body, 6, 100, &out, &len, &owned, err, sizeof err),
                     BODY_UNSUPPORTED);
    assert_non_null(strstr(err, "\"br\""));
}

static void test_gzip_inflates_exactly(void **state)
{
    (void)state;
    size_t n = 200000, zlen;
    char *text = malloc(n);
    assert_non_null(text);
    for (size_t i = 0; i < n; i++)
        text[i] = "api.requests:1|c\n"[i % 17];
    uint8_t *z = gzip(text, n, &zlen);
    const uint8_t *out;
    size_t len;
    int owned;
    char err[128];
    assert_int_equal(body_decode("gzip", z, zlen, n, &out, &len, &owned, err, sizeof err), BODY_OK);
    assert_int_equal(owned, 1);
    assert_int_equal(len, n);
    assert_memory_equal(out, text, n);
    free((void *)out);
    /* exactly at the limit is fine, one byte less is too large */
    assert_int_equal(body_decode("GZIP", z, zlen, n - 1, &out, &len, &owned, err, sizeof err),
                     BODY_TOO_LARGE);
    assert_non_null(strstr(err, "more than 199999 bytes"));
    free(z);
    free(text);
}

static void test_two_members_concatenate(void **state)
{
    (void)state;
    size_t l1, l2;
    uint8_t *a = gzip("a:1|c\n", 6, &l1), *b = gzip("b:2|c\n", 6, &l2);
    uint8_t *both = malloc(l1 + l2);
    assert_non_null(both);
    memcpy(both, a, l1);
    memcpy(both + l1, b, l2);
    const uint8_t *out;
    size_t len;
    int owned;
    char err[128];
    assert_int_equal(body_decode("x-gzip", both, l1 + l2, 100, &out, &len, &owned, err, sizeof err),
                     BODY_OK);
    assert_int_equal(len, 12);
    assert_memory_equal(out, "a:1|c\nb:2|c\n", 12);
    free((void *)out);
    free(a);
    free(b);
    free(both);
}

/* 64 MiB of zeros is about 64 KB of gzip: refused at the 1 MiB limit. */
static void test_gzip_bomb_is_refused(void **state)
{
    (void)state;
    size_t n = 64u << 20, zlen;
    char *zeros = calloc(1, n);
    assert_non_null(zeros);
    uint8_t *z = gzip(zeros, n, &zlen);
    free(zeros);
    assert_true(zlen < n / 500);
    const uint8_t *out;
    size_t len;
    int owned;
    char err[128];
    assert_int_equal(body_decode("gzip", z, zlen, 1u << 20, &out, &len, &owned, err, sizeof err),
                     BODY_TOO_LARGE);
    free(z);
}

static void test_corrupt_and_truncated_gzip(void **state)
{
    (void)state;
    size_t zlen;
    uint8_t *z = gzip("a:1|c\nb:2|c\n", 12, &zlen);
    const uint8_t *out;
    size_t len;
    int owned;
    char err[128];
    assert_int_equal(body_decode("gzip", z, zlen - 5, 100, &out, &len, &owned, err, sizeof err),
                     BODY_CORRUPT);
    assert_non_null(strstr(err, "not valid gzip"));
    z[zlen - 3] ^= 0xff; /* the length in the trailer */
    assert_int_equal(body_decode("gzip", z, zlen, 100, &out, &len, &owned, err, sizeof err),
                     BODY_CORRUPT);
    const uint8_t plain[] = "a:1|c\n";
    assert_int_equal(body_decode("gzip", plain, 6, 100, &out, &len, &owned, err, sizeof err),
                     BODY_CORRUPT);
    assert_int_equal(body_decode("gzip", plain, 0, 100, &out, &len, &owned, err, sizeof err),
                     BODY_CORRUPT);
    free(z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identity_passes_through),
        cmocka_unit_test(test_gzip_inflates_exactly),
        cmocka_unit_test(test_two_members_concatenate),
        cmocka_unit_test(test_gzip_bomb_is_refused),
        cmocka_unit_test(test_corrupt_and_truncated_gzip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
