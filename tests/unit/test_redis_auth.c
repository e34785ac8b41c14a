/*
 * test_redis_auth.c — unit tests of common/redis_auth.c (the password in a
 * password file, the config rules, the AUTH arguments) and, through it, of
 * common/secret_file.c (permissions, missing files). No Redis is needed:
 * the AUTH exchange itself is tested against a real Redis by
 * tests/integration/test_redis_auth.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "redis_auth.h"

static char tmp_dir[256];

static void expect_error(const char *err, const char *want)
{
    if (!strstr(err, want)) {
        print_error("expected \"%s\" in \"%s\"\n", want, err);
        fail();
    }
}

/* Writes len bytes of text to tmp_dir/pw with `mode`; path receives its path. */
static void write_file(const char *text, size_t len, mode_t mode, char *path, size_t pathlen)
{
    int n = snprintf(path, pathlen, "%s/pw", tmp_dir);
    assert_true(n > 0 && (size_t)n < pathlen);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    assert_int_equal(close(fd), 0);
}

/* ---- the password in the file's text ------------------------------------ */

static void parse_ok(const char *text, size_t len, const char *want)
{
    char out[64], err[256];
    if (redis_auth_parse_password(text, len, out, sizeof out, err, sizeof err) != 0) {
        print_error("\"%s\": %s\n", text, err);
        fail();
    }
    assert_string_equal(out, want);
}

static void parse_fails(const char *text, size_t len, const char *why)
{
    char out[64], err[256];
    assert_int_equal(redis_auth_parse_password(text, len, out, sizeof out, err, sizeof err), -1);
    expect_error(err, why);
}

#define TEXT(s) s, sizeof s - 1

static void password_is_the_first_line(void **state)
{
    (void)state;
    parse_ok(TEXT("s3cret\n"), "s3cret");
    parse_ok(TEXT("s3cret\r\n"), "s3cret");
    parse_ok(TEXT("s3cret"), "s3cret");           /* no newline at all */
    parse_ok(TEXT("s3cret\n\n"), "s3cret");       /* only one line end is the password's */
    parse_ok(TEXT("s3cret\nsecond line\n"), "s3cret");
    parse_ok(TEXT(" with blanks \t\n"), " with blanks \t"); /* every other byte counts */
    parse_ok(TEXT("ends in cr\r"), "ends in cr\r");   /* a lone CR is not a line end */
    parse_ok(TEXT("two\r\r\n"), "two\r");
    parse_ok(TEXT("p#ss=w\\rd\n"), "p#ss=w\\rd");
}

static void bad_passwords_refused(void **state)
{
    (void)state;
    parse_fails(TEXT(""), "the file is empty");
    parse_fails(TEXT("\n"), "its first line is empty");
    parse_fails(TEXT("\r\n"), "its first line is empty");
    parse_fails(TEXT("\ns3cret\n"), "its first line is empty");
    parse_fails(TEXT("s3\0cret\n"), "NUL byte");
    char longer[100];
    memset(longer, 'x', sizeof longer);
    parse_fails(longer, sizeof longer, "longer than 63 bytes");
    parse_ok(longer, 63, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* ---- the config rules ----------------------------------------------------- */

static void no_auth_without_password_file(void **state)
{
    (void)state;
    redis_auth a;
    char err[512];
    const char *argv[3];
    size_t argvlen[3];
    assert_int_equal(redis_auth_load(&a, "", "", err, sizeof err), 0);
    assert_false(a.enabled);
    assert_int_equal(redis_auth_argv(&a, argv, argvlen), 0);
}

static void username_without_password_file_is_an_error(void **state)
{
    (void)state;
    redis_auth a;
    char err[512];
    assert_int_equal(redis_auth_load(&a, "tally", "", err, sizeof err), -1);
    expect_error(err, "redis.username is \"tally\" but redis.password_file is empty");
    assert_false(a.enabled);
}

static void password_file_gives_auth_arguments(void **state)
{
    (void)state;
    redis_auth a;
    char path[512], err[512];
    const char *argv[3];
    size_t argvlen[3];
    write_file(TEXT("s3cret\r\n"), 0600, path, sizeof path);

    assert_int_equal(redis_auth_load(&a, "", path, err, sizeof err), 0);
    assert_true(a.enabled);
    assert_int_equal(redis_auth_argv(&a, argv, argvlen), 2);
    assert_string_equal(argv[0], "AUTH");
    assert_string_equal(argv[1], "s3cret");
    assert_int_equal(argvlen[1], 6);

    assert_int_equal(redis_auth_load(&a, "tally", path, err, sizeof err), 0);
    assert_int_equal(redis_auth_argv(&a, argv, argvlen), 3);
    assert_string_equal(argv[0], "AUTH");
    assert_string_equal(argv[1], "tally");
    assert_string_equal(argv[2], "s3cret");
    assert_int_equal(argvlen[0], 4);
    assert_int_equal(argvlen[1], 5);

    redis_auth_clear(&a);
    assert_false(a.enabled);
    assert_int_equal(a.password[0], '\0');
    assert_int_equal(redis_auth_argv(&a, argv, argvlen), 0);

    /* owner read-only is private too */
    write_file(TEXT("s3cret\n"), 0400, path, sizeof path);
    assert_int_equal(redis_auth_load(&a, "tally", path, err, sizeof err), 0);
    assert_int_equal(unlink(path), 0);
}

static void group_or_other_readable_password_file_refused(void **state)
{
    (void)state;
    const mode_t modes[] = {0644, 0640, 0604, 0620, 0602, 0610, 0700 | 0007};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        redis_auth a;
        char path[512], err[512], mode[64];
        write_file(TEXT("s3cret\n"), modes[i], path, sizeof path);
        assert_int_equal(redis_auth_load(&a, "tally", path, err, sizeof err), -1);
        expect_error(err, "redis.password_file ");
        expect_error(err, path);
        snprintf(mode, sizeof mode, "holds secrets but its mode %03o lets group or others read it", (unsigned)modes[i]);
        expect_error(err, mode);
        expect_error(err, "chmod 600");
        assert_null(strstr(err, "s3cret"));
        assert_false(a.enabled);
        assert_int_equal(unlink(path), 0);
    }
}

static void missing_empty_or_odd_password_file_refused(void **state)
{
    (void)state;
    redis_auth a;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/absent", tmp_dir);
    assert_int_equal(redis_auth_load(&a, "", path, err, sizeof err), -1);
    expect_error(err, "redis.password_file ");
    expect_error(err, "absent: No such file or directory");

    write_file(TEXT(""), 0600, path, sizeof path);
    assert_int_equal(redis_auth_load(&a, "", path, err, sizeof err), -1);
    expect_error(err, ": the file is empty");

    write_file(TEXT("\nsecond-line-secret\n"), 0600, path, sizeof path);
    assert_int_equal(redis_auth_load(&a, "", path, err, sizeof err), -1);
    expect_error(err, ": its first line is empty");
    assert_null(strstr(err, "second-line-secret"));

    /* larger than any password file */
    size_t big = REDIS_AUTH_FILE_MAX + 1;
    char *text = malloc(big);
    assert_non_null(text);
    memset(text, 'x', big);
    write_file(text, big, 0600, path, sizeof path);
    free(text);
    assert_int_equal(redis_auth_load(&a, "", path, err, sizeof err), -1);
    expect_error(err, "more than the 65536 allowed");
    assert_int_equal(unlink(path), 0);

    assert_int_equal(redis_auth_load(&a, "", tmp_dir, err, sizeof err), -1);
    expect_error(err, "not a regular file");
}

static int make_tmp_dir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tally-auth-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/pw", tmp_dir);
    unlink(path); /* left behind only by a failed test; absence is fine */
    return rmdir(tmp_dir) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(password_is_the_first_line),
        cmocka_unit_test(bad_passwords_refused),
        cmocka_unit_test(no_auth_without_password_file),
        cmocka_unit_test(username_without_password_file_is_an_error),
        cmocka_unit_test(password_file_gives_auth_arguments),
        cmocka_unit_test(group_or_other_readable_password_file_refused),
        cmocka_unit_test(missing_empty_or_odd_password_file_refused),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
