/*
 * test_client_properties.c — unit tests of common/client_properties.c (the
 * parser, on text) and of kafka_conf_apply_client_properties() (the file:
 * its permissions, and librdkafka's verdict on the values, on a real
 * rd_kafka_conf_t; no broker is needed, nothing connects).
 *
 * Files are written into a private mkdtemp() directory with an explicit
 * mode (fchmod, so the umask does not decide what is tested).
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

#include <librdkafka/rdkafka.h>

#include "client_properties.h"
#include "kafka_conf.h"

static char tmp_dir[256];

/* ---- helpers ------------------------------------------------------------ */

#define MAX_SEEN 16

struct seen {
    int n;
    char key[MAX_SEEN][128];
    char value[MAX_SEEN][256];
    int line[MAX_SEEN];
    int refuse_at; /* 1-based call that fails, 0 = none */
};

static int record(void *opaque, const char *key, const char *value, int line, char *why,
                  size_t whylen)
{
    struct seen *s = opaque;
    if (s->refuse_at && s->n + 1 == s->refuse_at) {
        snprintf(why, whylen, "refused by the test");
        return -1;
    }
    assert_true(s->n < MAX_SEEN);
    snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
    snprintf(s->value[s->n], sizeof s->value[0], "%s", value);
    s->line[s->n] = line;
    s->n++;
    return 0;
}

static int parse(const char *text, struct seen *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    err[0] = '\0';
    return client_properties_parse(text, strlen(text), "t.properties", record, s, err, errlen);
}

static void expect_error(const char *err, const char *want)
{
    if (!strstr(err, want)) {
        print_error("expected \"%s\" in \"%s\"\n", want, err);
        fail();
    }
}

/* Writes text to tmp_dir/name with `mode`; path receives its path. */
static void write_file(const char *name, const char *text, mode_t mode, char *path, size_t len)
{
    int n = snprintf(path, len, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && (size_t)n < len);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(fchmod(fd, mode), 0);
    size_t want = strlen(text);
    assert_int_equal(write(fd, text, want), (ssize_t)want);
    assert_int_equal(close(fd), 0);
}

static void conf_value(rd_kafka_conf_t *conf, const char *key, char *out, size_t len)
{
    size_t size = len;
    assert_int_equal(rd_kafka_conf_get(conf, key, out, &size), RD_KAFKA_CONF_OK);
}

/* ---- the parser --------------------------------------------------------- */

static void good_file_parsed_in_order_and_trimmed(void **state)
{
    (void)state;
    struct seen s;
    char err[512];
    int n = parse("security.protocol=SASL_SSL\n"
                  "  sasl.mechanisms =  SCRAM-SHA-512\t\n"
                  "sasl.username=tally\r\n"
                  "sasl.password = p#ss=word with spaces \n"
                  "ssl.ca.location=/etc/ssl/certs/ca.pem",
                  &s, err, sizeof err);
    assert_int_equal(n, 5);
    assert_int_equal(s.n, 5);
    assert_string_equal(s.key[0], "security.protocol");
    assert_string_equal(s.value[0], "SASL_SSL");
    assert_string_equal(s.key[1], "sasl.mechanisms");
    assert_string_equal(s.value[1], "SCRAM-SHA-512");
    assert_string_equal(s.value[2], "tally"); /* CRLF line end trimmed */
    /* split at the first '=', no inline comment, inner blanks kept */
    assert_string_equal(s.key[3], "sasl.password");
    assert_string_equal(s.value[3], "p#ss=word with spaces");
    assert_string_equal(s.key[4], "ssl.ca.location"); /* no final newline */
    assert_string_equal(s.value[4], "/etc/ssl/certs/ca.pem");
    assert_int_equal(s.line[0], 1);
    assert_int_equal(s.line[4], 5);
}

static void comments_and_blank_lines_ignored(void **state)
{
    (void)state;
    struct seen s;
    char err[512];
    int n = parse("# Kafka security for Tally\n"
                  "\n"
                  "   \t\n"
                  "  # indented comment: acks=0\n"
                  "! Java's other comment mark\n"
                  "security.protocol=PLAINTEXT\n"
                  "\r\n"
                  "#sasl.password=x\n",
                  &s, err, sizeof err);
    assert_int_equal(n, 1);
    assert_string_equal(s.key[0], "security.protocol");
    assert_int_equal(s.line[0], 6);
    assert_int_equal(parse("", &s, err, sizeof err), 0);
    assert_int_equal(parse("# only a comment\n\n", &s, err, sizeof err), 0);
}

static void forbidden_key_named_with_its_line(void **state)
{
    (void)state;
    struct seen s;
    char err[512];
    assert_int_equal(parse("security.protocol=PLAINTEXT\n# durability is Tally's\nacks=0\n", &s,
                           err, sizeof err),
                     -1);
    expect_error(err, "t.properties:3: acks: not allowed here");
    expect_error(err, "security.protocol, sasl.* and ssl.*");
    assert_int_equal(s.n, 0); /* nothing applied: the whole file is checked first */

    const char *forbidden[] = {"enable.idempotence=false", "bootstrap.servers=evil:9092",
                               "debug=all", "ssl.=x", "sasl.=x", "security.protocolx=SSL",
                               "message.timeout.ms=1"};
    for (size_t i = 0; i < sizeof forbidden / sizeof *forbidden; i++) {
        assert_int_equal(parse(forbidden[i], &s, err, sizeof err), -1);
        expect_error(err, "t.properties:1: ");
        expect_error(err, "not allowed here");
    }
    assert_true(client_property_allowed("security.protocol"));
    assert_true(client_property_allowed("sasl.oauthbearer.config"));
    assert_true(client_property_allowed("ssl.key.password"));
    assert_false(client_property_allowed("acks"));
    assert_false(client_property_allowed("ssl."));
}

static void malformed_lines_refused_with_line(void **state)
{
    (void)state;
    struct seen s;
    char err[512];
    assert_int_equal(parse("\n\nsasl.password\n", &s, err, sizeof err), -1);
    expect_error(err, "t.properties:3: expected key=value");
    assert_null(strstr(err, "sasl.password")); /* a line without '=' may be a bare secret */
    assert_int_equal(parse("=x\n", &s, err, sizeof err), -1);
    expect_error(err, "t.properties:1: no key before '='");
    assert_int_equal(parse("sasl.username=\n", &s, err, sizeof err), -1);
    expect_error(err, "t.properties:1: sasl.username: empty value");
    assert_int_equal(parse("ssl.key password=x\n", &s, err, sizeof err), -1);
    expect_error(err, "t.properties:1: ssl.key password: a key holds no blanks");
    assert_int_equal(parse("# c\nssl.certificate.pem=-----BEGIN \\\n  more\n", &s, err, sizeof err),
                     -1);
    expect_error(err, "t.properties:2: a line continued with a trailing backslash");
    /* an even number of backslashes is no continuation: taken literally */
    assert_int_equal(parse("sasl.password=a\\\\\n", &s, err, sizeof err), 1);
    assert_string_equal(s.value[0], "a\\\\");
    static const char with_nul[] = "ssl.key.password=x\n\nsasl.password=a\0b\n";
    memset(&s, 0, sizeof s);
    assert_int_equal(client_properties_parse(with_nul, sizeof with_nul - 1, "t.properties", record,
                                             &s, err, sizeof err),
                     -1);
    expect_error(err, "t.properties:3: a NUL byte");
}

static void callback_refusal_reported_at_its_line(void **state)
{
    (void)state;
    struct seen s;
    char err[512];
    memset(&s, 0, sizeof s);
    s.refuse_at = 2;
    const char *text = "ssl.ca.location=/a\n\nsecurity.protocol=bogus\n";
    assert_int_equal(client_properties_parse(text, strlen(text), "t.properties", record, &s, err,
                                             sizeof err),
                     -1);
    assert_string_equal(err, "t.properties:3: security.protocol: refused by the test");
}

/* ---- the file, applied to a real librdkafka config ---------------------- */

static void file_applied_to_librdkafka(void **state)
{
    (void)state;
    char path[512], err[1024], value[256];
    write_file("good.properties",
               "# test\nsecurity.protocol = SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\n"
               "sasl.username=tally\nsasl.password=s3cret\n",
               0600, path, sizeof path);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), 0);
    conf_value(conf, "security.protocol", value, sizeof value);
    assert_string_equal(value, "sasl_plaintext");
    conf_value(conf, "sasl.username", value, sizeof value);
    assert_string_equal(value, "tally");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(unlink(path), 0);
}

static void empty_path_applies_nothing(void **state)
{
    (void)state;
    char err[256] = "";
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, "", err, sizeof err), 0);
    rd_kafka_conf_destroy(conf);
}

static void group_or_other_readable_file_refused(void **state)
{
    (void)state;
    const mode_t modes[] = {0640, 0604, 0644, 0660, 0601};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++) {
        char path[512], err[1024];
        write_file("open.properties", "security.protocol=PLAINTEXT\nsasl.password=s3cret\n",
                   modes[i], path, sizeof path);
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        assert_non_null(conf);
        assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), -1);
        expect_error(err, "kafka.client_properties: ");
        expect_error(err, path);
        expect_error(err, "lets group or others read it");
        expect_error(err, "chmod 600");
        assert_null(strstr(err, "s3cret"));
        rd_kafka_conf_destroy(conf);
        assert_int_equal(unlink(path), 0);
    }
    /* 0400 is private too */
    char path[512], err[1024];
    write_file("ro.properties", "security.protocol=PLAINTEXT\n", 0400, path, sizeof path);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), 0);
    rd_kafka_conf_destroy(conf);
    assert_int_equal(unlink(path), 0);
}

static void missing_file_refused(void **state)
{
    (void)state;
    char path[512], err[1024];
    snprintf(path, sizeof path, "%s/absent.properties", tmp_dir);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), -1);
    expect_error(err, "kafka.client_properties: ");
    expect_error(err, path);
    expect_error(err, ": No such file or directory");
    /* a directory is not a properties file */
    assert_int_equal(kafka_conf_apply_client_properties(conf, tmp_dir, err, sizeof err), -1);
    expect_error(err, "not a regular file");
    rd_kafka_conf_destroy(conf);
}

static void librdkafka_refusal_reaches_the_message(void **state)
{
    (void)state;
    char path[512], err[1024];
    write_file("bogus.properties", "sasl.username=tally\n\nsecurity.protocol=bogus\n", 0600, path,
               sizeof path);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), -1);
    char want[600];
    snprintf(want, sizeof want, "kafka.client_properties: %s:3: security.protocol: ", path);
    expect_error(err, want);
    expect_error(err, "Invalid value \"bogus\" for configuration property \"security.protocol\"");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(unlink(path), 0);

    write_file("unknown.properties", "ssl.no.such.thing=1\n", 0600, path, sizeof path);
    conf = rd_kafka_conf_new();
    assert_non_null(conf);
    assert_int_equal(kafka_conf_apply_client_properties(conf, path, err, sizeof err), -1);
    expect_error(err, ":1: ssl.no.such.thing: No such configuration property");
    rd_kafka_conf_destroy(conf);
    assert_int_equal(unlink(path), 0);
}

/* ---- main --------------------------------------------------------------- */

static int make_tmp_dir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tally-props-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    const char *left[] = {"good.properties", "open.properties", "ro.properties",
                          "bogus.properties", "unknown.properties"};
    for (size_t i = 0; i < sizeof left / sizeof *left; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", tmp_dir, left[i]);
        unlink(path); /* left behind only by a failed test; absence is fine */
    }
    return rmdir(tmp_dir) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(good_file_parsed_in_order_and_trimmed),
        cmocka_unit_test(comments_and_blank_lines_ignored),
        cmocka_unit_test(forbidden_key_named_with_its_line),
        cmocka_unit_test(malformed_lines_refused_with_line),
        cmocka_unit_test(callback_refusal_reported_at_its_line),
        cmocka_unit_test(file_applied_to_librdkafka),
        cmocka_unit_test(empty_path_applies_nothing),
        cmocka_unit_test(group_or_other_readable_file_refused),
        cmocka_unit_test(missing_file_refused),
        cmocka_unit_test(librdkafka_refusal_reaches_the_message),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
