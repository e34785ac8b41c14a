/*
 * test_config.c — unit tests of conf/config.c.
 *
 * Each test writes a small config file into a private mkdtemp() directory,
 * loads it and checks both the resulting values and the exact problem lines
 * ("FILE:LINE: KEY: why"). Expected defaults are written out here from the
 * comments in config.h, independently of the table in config.c, so a wrong
 * row in the table fails a test. The shipped conf/tally.conf is found via
 * argv[1], $TALLY_SOURCE, this source file's own path (__FILE__), or the
 * build directory's parents; the tests that need it are skipped (and say so)
 * only if none of those exists.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

#define PROBLEMS_LEN 8192

static char tmp_dir[256];
static char shipped_conf[1024];

/* ---- helpers ------------------------------------------------------------ */

/* Writes `text` to tmp_dir/name and stores the path in `path`. */
static void write_conf(const char *name, const char *text, char *path, size_t path_len)
{
    int n = snprintf(path, path_len, "%s/%s", tmp_dir, name);
    assert_true(n > 0 && (size_t)n < path_len);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(fputs(text, f) >= 0);
    assert_int_equal(fclose(f), 0);
}

static void remove_conf(const char *path)
{
    assert_int_equal(unlink(path), 0);
}

/* Fails, printing all problems, unless "PATH:LINE: what" is one of them. */
static void expect_problem(const char *problems, const char *path, int line, const char *what)
{
    char want[1024];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, what);
    if (!strstr(problems, want)) {
        print_error("expected problem \"%s\" not among:\n%s\n", want, problems);
        fail();
    }
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Loads `text` as a config file; returns the problem count. */
static int load_text(const char *text, tally_config *cfg, char *problems, char *path,
                     size_t path_len)
{
    write_conf("t.conf", text, path, path_len);
    int n = config_load(path, cfg, problems, PROBLEMS_LEN);
    remove_conf(path);
    return n;
}

static void assert_defaults(const tally_config *c)
{
    assert_string_equal(c->ingest.listen_address, "127.0.0.1");
    assert_int_equal(c->ingest.listen_port, 8080);
    assert_false(c->ingest.reuse_port);
    assert_true(c->ingest.max_body_bytes == 8LL * 1024 * 1024);
    assert_int_equal(c->ingest.max_lines, 50000);
    assert_int_equal(c->ingest.max_name_length, 200);
    assert_int_equal(c->ingest.max_tags_length, 512);
    assert_int_equal(c->ingest.max_errors_reported, 100);
    assert_int_equal(c->ingest.max_inflight_batches, 1024);
    assert_int_equal(c->ingest.max_inflight_bytes, 32LL * 1024 * 1024);
    assert_int_equal(c->ingest.max_connections, 512);
    assert_int_equal(c->ingest.client_timeout_seconds, 10);
    assert_int_equal(c->ingest.keepalive_timeout_seconds, 60);
    assert_int_equal(c->ingest.max_header_bytes, 16384);
    assert_int_equal(c->ingest.max_header_count, 64);
    assert_int_equal(c->ingest.max_series_per_batch, 10000);
    assert_string_equal(c->kafka.brokers, "127.0.0.1:9092");
    assert_string_equal(c->kafka.topic, "tally-events");
    assert_int_equal(c->kafka.partitions, 1);
    assert_int_equal(c->kafka.replication_factor, 1);
    assert_int_equal(c->kafka.min_insync_replicas, 1);
    assert_int_equal(c->kafka.delivery_timeout_ms, 5000);
    assert_int_equal(c->kafka.linger_ms, 0);
    assert_int_equal(c->kafka.max_message_bytes, 1000000);
    assert_string_equal(c->kafka.consumer_group, "");
    char group[300];
    config_consumer_group(c, group, sizeof group);
    assert_string_equal(group, "tally-flusher-tally-events");
    assert_string_equal(c->flusher.instance_id, "");
    assert_int_equal(c->flusher.session_timeout_ms, 10000);
    assert_string_equal(c->redis.host, "127.0.0.1");
    assert_int_equal(c->redis.port, 6379);
    assert_int_equal(c->redis.timeout_ms, 500);
    assert_string_equal(c->redis.on_unavailable, "accept");
    assert_int_equal(c->redis.require_durable, 1);
    assert_string_equal(c->sqlite.path, "var/data/tally.db");
    assert_string_equal(c->sqlite.synchronous, "FULL");
    assert_int_equal(c->flusher.max_batch_events, 1000000);
    assert_int_equal(c->flusher.max_interval_ms, 1000);
    assert_int_equal(c->flusher.bucket_seconds, 10);
    assert_int_equal(c->dedup.window_seconds, 3600);
    assert_string_equal(c->log.level, "info");
}

static int file_exists(const char *p)
{
    return access(p, R_OK) == 0;
}

/* Finds conf/tally.conf; leaves shipped_conf empty if it is nowhere. */
static void locate_shipped_conf(int argc, char **argv)
{
    char cand[1024];
    if (argc > 1 && file_exists(argv[1])) {
        snprintf(shipped_conf, sizeof shipped_conf, "%s", argv[1]);
        return;
    }
    const char *src = getenv("TALLY_SOURCE");
    if (src && *src) {
        snprintf(cand, sizeof cand, "%s/conf/tally.conf", src);
        if (file_exists(cand)) {
            snprintf(shipped_conf, sizeof shipped_conf, "%s", cand);
            return;
        }
    }
    /* CMake compiles with the absolute source path, so __FILE__ is
     * SOURCE/tests/unit/test_config.c. */
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/test_config.c");
    if (tail) {
        snprintf(cand, sizeof cand, "%.*sconf/tally.conf", (int)(tail - self), self);
        if (file_exists(cand)) {
            snprintf(shipped_conf, sizeof shipped_conf, "%s", cand);
            return;
        }
    }
    static const char *const rel[] = { "../conf/tally.conf", "../../conf/tally.conf",
                                       "conf/tally.conf" };
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
        if (file_exists(rel[i])) {
            snprintf(shipped_conf, sizeof shipped_conf, "%s", rel[i]);
            return;
        }
    }
    shipped_conf[0] = '\0';
}

static void skip_without_shipped_conf(void)
{
    if (!shipped_conf[0]) {
        print_message("SKIP: conf/tally.conf not found (pass its path as argv[1] "
                      "or set TALLY_SOURCE to the repo root)\n");
        skip();
    }
}

/* ---- tests -------------------------------------------------------------- */

static void defaults_match_header(void **state)
{
    (void)state;
    tally_config c;
    memset(&c, 0xAB, sizeof c);
    config_defaults(&c);
    assert_defaults(&c);
}

static void shipped_conf_loads_clean_with_defaults(void **state)
{
    (void)state;
    skip_without_shipped_conf();
    char problems[PROBLEMS_LEN];
    tally_config c;
    int n = config_load(shipped_conf, &c, problems, sizeof problems);
    if (n != 0)
        print_error("%s", problems);
    assert_int_equal(n, 0);
    assert_string_equal(problems, "");
    assert_defaults(&c);
}

/* Every key of the reference table appears in the shipped file. */
static void shipped_conf_has_every_key(void **state)
{
    (void)state;
    skip_without_shipped_conf();
    char *ref = NULL;
    size_t ref_len = 0;
    FILE *mem = open_memstream(&ref, &ref_len);
    assert_non_null(mem);
    config_print_reference(mem);
    assert_int_equal(ferror(mem), 0);
    assert_int_equal(fclose(mem), 0);

    config_t lc;
    config_init(&lc);
    assert_int_equal(config_read_file(&lc, shipped_conf), CONFIG_TRUE);
    int keys = 0;
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "| `", 3) != 0)
            continue;
        char *start = line + 3, *end = strchr(start, '`');
        assert_non_null(end);
        *end = '\0';
        if (!config_lookup(&lc, start)) {
            print_error("key %s missing from %s\n", start, shipped_conf);
            fail();
        }
        keys++;
    }
    config_destroy(&lc);
    free(ref);
    assert_int_equal(keys, 90); /* every field of tally_config */
}

static void override_values(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: {\n"
                      "  listen_address = \"0.0.0.0\";\n"
                      "  listen_port = 9090;\n"
                      "  reuse_port = true;\n"
                      "  max_body_bytes = 1048576;\n"   /* plain int for an int64 key */
                      "};\n"
                      "redis = { require_durable = false; port = 6380; };\n"
                      "sqlite: { path = \"/tmp/x.db\"; synchronous = \"NORMAL\"; };\n"
                      "log: { level = \"debug\"; };\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 0);
    assert_string_equal(c.ingest.listen_address, "0.0.0.0");
    assert_int_equal(c.ingest.listen_port, 9090);
    assert_true(c.ingest.reuse_port);
    assert_true(c.ingest.max_body_bytes == 1048576);
    assert_int_equal(c.redis.require_durable, 0);
    assert_int_equal(c.redis.port, 6380);
    assert_string_equal(c.sqlite.path, "/tmp/x.db");
    assert_string_equal(c.sqlite.synchronous, "NORMAL");
    assert_string_equal(c.log.level, "debug");
    /* untouched keys keep their defaults */
    assert_int_equal(c.ingest.max_lines, 50000);
    assert_string_equal(c.redis.host, "127.0.0.1");
    assert_string_equal(c.kafka.topic, "tally-events");

    n = load_text("ingest: { max_body_bytes = 268435456L; };\n", &c, problems, path,
                  sizeof path);
    assert_int_equal(n, 0);
    assert_true(c.ingest.max_body_bytes == 256LL * 1024 * 1024);
}

static void empty_file_gives_defaults(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    assert_int_equal(load_text("# nothing\n", &c, problems, path, sizeof path), 0);
    assert_defaults(&c);
}

static void unknown_key_reported_with_line(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest:\n"
                      "{\n"
                      "  listen_port = 9000;\n"
                      "  listen_prot = 9001;\n"
                      "};\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 1);
    assert_int_equal(count_lines(problems), 1);
    expect_problem(problems, path, 4, "ingest.listen_prot: unknown key\n");
}

static void unknown_section_and_misplaced_key(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingets: {\n"
                      "  listen_port = 1;\n"
                      "};\n"
                      "verbose = true;\n"
                      "port = 6379;\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 4);
    assert_int_equal(count_lines(problems), 4);
    expect_problem(problems, path, 1, "ingets: unknown section (known sections: ingest, kafka, "
                                      "redis, sqlite, flusher, retention, dedup, query, statsd, cache,"
                                      " log)");
    expect_problem(problems, path, 2,
                   "ingets.listen_port: unknown key (did you mean ingest.listen_port?)");
    expect_problem(problems, path, 4, "verbose: unknown key\n");
    expect_problem(problems, path, 5, "port: unknown key (did you mean redis.port?)");
    assert_int_equal(c.ingest.listen_port, 8080);
}

static void section_given_as_scalar(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("redis = 5;\n", &c, problems, path, sizeof path);
    assert_int_equal(n, 1);
    expect_problem(problems, path, 1, "redis: expected a group { ... }, got an integer");
}

static void out_of_range_reported_with_range(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: {\n"
                      "  listen_port = 70000;\n"
                      "  max_tags_length = -1;\n"
                      "  max_body_bytes = 268435457L;\n"
                      "  max_lines = 5000000000;\n"     /* too big for int */
                      "};\n"
                      "dedup: { window_seconds = 59; };\n",
                      &c, problems, path, sizeof path);
    if (n != 5)
        print_error("%s", problems);
    assert_int_equal(n, 5);
    expect_problem(problems, path, 2, "ingest.listen_port: 70000 is out of range 1..65535");
    expect_problem(problems, path, 3, "ingest.max_tags_length: -1 is out of range 0..1024");
    expect_problem(problems, path, 4,
                   "ingest.max_body_bytes: 268435457 is out of range 1024..268435456");
    expect_problem(problems, path, 5, "ingest.max_lines: 5000000000 is out of range 1..1000000");
    expect_problem(problems, path, 7, "dedup.window_seconds: 59 is out of range 60..2592000");
    /* an invalid value is never stored */
    assert_int_equal(c.ingest.listen_port, 8080);
    assert_int_equal(c.ingest.max_tags_length, 512);
    assert_int_equal(c.dedup.window_seconds, 3600);
}

/* libconfig 1.5 keeps only the low 32 bits of a plain literal that does not
 * fit an int: 4294967396 would read as 100, in range. It must be refused. */
static void oversized_literal_not_wrapped_into_range(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("flusher: {\n"
                      "  max_batch_events = 4294967396;\n"
                      "  bucket_seconds=0x100000005;\n"
                      "};\n"
                      "ingest: { max_body_bytes = 4294968320; };\n",
                      &c, problems, path, sizeof path);
    if (n != 3)
        print_error("%s", problems);
    assert_int_equal(n, 3);
    expect_problem(problems, path, 2,
                   "flusher.max_batch_events: 4294967396 is out of range 1..10000000");
    expect_problem(problems, path, 3, "flusher.bucket_seconds: 0x100000005 is out of range 1..86400");
    expect_problem(problems, path, 5,
                   "ingest.max_body_bytes: 4294968320 is out of range 1024..268435456");
    assert_int_equal(c.flusher.max_batch_events, 1000000);
    assert_int_equal(c.flusher.bucket_seconds, 10);
    assert_true(c.ingest.max_body_bytes == 8LL * 1024 * 1024);
}

static void range_bounds_are_inclusive(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: { listen_port = 65535; max_tags_length = 0; "
                      "max_body_bytes = 1024; };\n"
                      "kafka: { linger_ms = 1000; partitions = 1; };\n"
                      "redis: { port = 1; };\n",
                      &c, problems, path, sizeof path);
    if (n)
        print_error("%s", problems);
    assert_int_equal(n, 0);
    assert_int_equal(c.ingest.listen_port, 65535);
    assert_int_equal(c.ingest.max_tags_length, 0);
    assert_true(c.ingest.max_body_bytes == 1024);
    assert_int_equal(c.kafka.linger_ms, 1000);
    assert_int_equal(c.redis.port, 1);
}

/* kafka.min_insync_replicas may not exceed kafka.replication_factor, whichever
 * comes first in the file or is left at its default; a refused value is not
 * compared (its own problem suffices). */
static void min_insync_bounded_by_replication(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("kafka: { replication_factor = 3; min_insync_replicas = 2; };\n", &c,
                      problems, path, sizeof path);
    assert_int_equal(n, 0);
    assert_int_equal(c.kafka.replication_factor, 3);
    assert_int_equal(c.kafka.min_insync_replicas, 2);

    n = load_text("kafka: { min_insync_replicas = 3; replication_factor = 3; };\n", &c, problems,
                  path, sizeof path);
    assert_int_equal(n, 0);
    assert_int_equal(c.kafka.min_insync_replicas, 3);

    n = load_text("kafka: {\n"
                  "  min_insync_replicas = 3;\n"
                  "  replication_factor = 2;\n"
                  "};\n",
                  &c, problems, path, sizeof path);
    assert_int_equal(n, 1);
    assert_int_equal(count_lines(problems), 1);
    expect_problem(problems, path, 2,
                   "kafka.min_insync_replicas: 3 is more than kafka.replication_factor (2): no "
                   "write could reach more in-sync replicas than a partition has; lower it or "
                   "raise kafka.replication_factor\n");

    /* replication_factor left at its default, 1 */
    n = load_text("kafka: { min_insync_replicas = 2; };\n", &c, problems, path, sizeof path);
    assert_int_equal(n, 1);
    expect_problem(problems, path, 1,
                   "kafka.min_insync_replicas: 2 is more than kafka.replication_factor (1)");

    /* min_insync_replicas left at its default, 1: never above */
    n = load_text("kafka: { replication_factor = 5; };\n", &c, problems, path, sizeof path);
    assert_int_equal(n, 0);
    assert_int_equal(c.kafka.min_insync_replicas, 1);

    /* an out-of-range replication_factor is one problem, not two */
    n = load_text("kafka: { replication_factor = 33; min_insync_replicas = 2; };\n", &c,
                  problems, path, sizeof path);
    assert_int_equal(n, 1);
    expect_problem(problems, path, 1, "kafka.replication_factor: 33 is out of range 1..32\n");
    n = load_text("kafka: { replication_factor = 0; min_insync_replicas = 0; };\n", &c, problems,
                  path, sizeof path);
    assert_int_equal(n, 2);
    expect_problem(problems, path, 1, "kafka.replication_factor: 0 is out of range 1..32");
    expect_problem(problems, path, 1, "kafka.min_insync_replicas: 0 is out of range 1..32");
}

static void wrong_type_reported(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: {\n"
                      "  listen_port = \"8080\";\n"
                      "  max_lines = 100.0;\n"
                      "  listen_address = 127;\n"
                      "  max_body_bytes = [1, 2];\n"
                      "};\n"
                      "redis: {\n"
                      "  require_durable = 1;\n"
                      "  timeout_ms = true;\n"
                      "  host = { name = \"x\"; };\n"
                      "};\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 7);
    assert_int_equal(count_lines(problems), 7);
    expect_problem(problems, path, 2, "ingest.listen_port: expected an integer, got a string");
    expect_problem(problems, path, 3, "ingest.max_lines: expected an integer, got a float");
    expect_problem(problems, path, 4, "ingest.listen_address: expected a string, got an integer");
    expect_problem(problems, path, 5, "ingest.max_body_bytes: expected an integer, got an array");
    expect_problem(problems, path, 8,
                   "redis.require_durable: expected true or false, got an integer");
    expect_problem(problems, path, 9, "redis.timeout_ms: expected an integer, got a boolean");
    expect_problem(problems, path, 10, "redis.host: expected a string, got a group");
}

static void multiple_problems_all_reported(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: { listen_port = 0; };\n"
                      "kafka: {\n"
                      "  brokers = \"\";\n"
                      "  topik = \"x\";\n"
                      "};\n"
                      "sqlite: { synchronous = \"OFF\"; };\n"
                      "log: { level = 3; };\n"
                      "extra: { a = 1; };\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 7);
    assert_int_equal(count_lines(problems), 7);
    expect_problem(problems, path, 1, "ingest.listen_port: 0 is out of range 1..65535");
    expect_problem(problems, path, 3, "kafka.brokers: must not be empty");
    expect_problem(problems, path, 4, "kafka.topik: unknown key");
    expect_problem(problems, path, 6,
                   "sqlite.synchronous: \"OFF\" is not one of FULL|NORMAL|EXTRA");
    expect_problem(problems, path, 7, "log.level: expected a string, got an integer");
    expect_problem(problems, path, 8, "extra: unknown section");
    expect_problem(problems, path, 8, "extra.a: unknown key");
    /* reported in file order */
    assert_true(strstr(problems, "ingest.listen_port") < strstr(problems, "kafka.brokers"));
    assert_true(strstr(problems, "kafka.brokers") < strstr(problems, "log.level"));
}

static void empty_required_strings(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest: { listen_address = \"\"; };\n"
                      "kafka: { brokers = \"\"; topic = \"\"; };\n"
                      "redis: { host = \"\"; };\n"
                      "sqlite: { path = \"\"; };\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 5);
    expect_problem(problems, path, 1, "ingest.listen_address: must not be empty");
    expect_problem(problems, path, 2, "kafka.brokers: must not be empty");
    expect_problem(problems, path, 2, "kafka.topic: must not be empty");
    expect_problem(problems, path, 3, "redis.host: must not be empty");
    expect_problem(problems, path, 4, "sqlite.path: must not be empty");
    assert_string_equal(c.sqlite.path, "var/data/tally.db");
}

static void syntax_error_reported_with_line(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("ingest:\n"
                      "{\n"
                      "  listen_port = ;\n"
                      "};\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 1);
    assert_int_equal(count_lines(problems), 1);
    expect_problem(problems, path, 3, "-: syntax error: ");
    assert_defaults(&c);
}

static void missing_file_is_one_problem(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    snprintf(path, sizeof path, "%s/does-not-exist.conf", tmp_dir);
    int n = config_load(path, &c, problems, sizeof problems);
    assert_int_equal(n, 1);
    expect_problem(problems, path, 0, "-: cannot read file: ");
    assert_defaults(&c);
}

static void enum_validation(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512];
    tally_config c;
    int n = load_text("sqlite: { synchronous = \"full\"; };\n"
                      "log: { level = \"trace\"; };\n",
                      &c, problems, path, sizeof path);
    assert_int_equal(n, 2);
    expect_problem(problems, path, 1,
                   "sqlite.synchronous: \"full\" is not one of FULL|NORMAL|EXTRA");
    expect_problem(problems, path, 2, "log.level: \"trace\" is not one of debug|info|warn|error");
    assert_string_equal(c.sqlite.synchronous, "FULL");

    const char *const ok[][2] = { { "EXTRA", "warn" }, { "NORMAL", "error" }, { "FULL", "info" } };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char text[256];
        snprintf(text, sizeof text, "sqlite: { synchronous = \"%s\"; };\nlog: { level = \"%s\"; };\n",
                 ok[i][0], ok[i][1]);
        assert_int_equal(load_text(text, &c, problems, path, sizeof path), 0);
        assert_string_equal(c.sqlite.synchronous, ok[i][0]);
        assert_string_equal(c.log.level, ok[i][1]);
    }
}

/* Builds `key = "<len x's>";` inside `section`. */
static void long_string_conf(char *text, size_t text_len, const char *section, const char *key,
                             size_t len)
{
    int n = snprintf(text, text_len, "%s: { %s = \"", section, key);
    assert_true(n > 0 && (size_t)n + len + 8 < text_len);
    memset(text + n, 'x', len);
    snprintf(text + n + len, text_len - (size_t)n - len, "\"; };\n");
}

static void string_too_long(void **state)
{
    (void)state;
    char problems[PROBLEMS_LEN], path[512], text[4096];
    tally_config c;

    long_string_conf(text, sizeof text, "redis", "host", CONFIG_STR_MAX);
    assert_int_equal(load_text(text, &c, problems, path, sizeof path), 1);
    expect_problem(problems, path, 1, "redis.host: too long: 256 bytes, at most 255");
    assert_string_equal(c.redis.host, "127.0.0.1");

    long_string_conf(text, sizeof text, "redis", "host", CONFIG_STR_MAX - 1);
    assert_int_equal(load_text(text, &c, problems, path, sizeof path), 0);
    assert_int_equal(strlen(c.redis.host), CONFIG_STR_MAX - 1);

    long_string_conf(text, sizeof text, "sqlite", "path", CONFIG_PATH_MAX);
    assert_int_equal(load_text(text, &c, problems, path, sizeof path), 1);
    expect_problem(problems, path, 1, "sqlite.path: too long: 1024 bytes, at most 1023");

    long_string_conf(text, sizeof text, "sqlite", "path", CONFIG_PATH_MAX - 1);
    assert_int_equal(load_text(text, &c, problems, path, sizeof path), 0);
    assert_int_equal(strlen(c.sqlite.path), CONFIG_PATH_MAX - 1);
}

static void problems_buffer_truncated_but_all_counted(void **state)
{
    (void)state;
    char big[PROBLEMS_LEN], path[512];
    char small[40];
    tally_config c;
    const char *text = "a = 1;\nb = 2;\nc = 3;\nd = 4;\n";
    memset(small, 'Z', sizeof small);
    write_conf("t.conf", text, path, sizeof path);
    assert_int_equal(config_load(path, &c, small, sizeof small), 4);
    assert_true(memchr(small, '\0', sizeof small) != NULL);
    assert_int_equal(config_load(path, &c, big, sizeof big), 4);
    assert_int_equal(strncmp(small, big, strlen(small)), 0);
    assert_int_equal(config_load(path, &c, NULL, 0), 4);
    remove_conf(path);
}

static void reference_is_a_markdown_table(void **state)
{
    (void)state;
    char *ref = NULL;
    size_t ref_len = 0;
    FILE *mem = open_memstream(&ref, &ref_len);
    assert_non_null(mem);
    config_print_reference(mem);
    assert_int_equal(fclose(mem), 0);
    assert_non_null(ref);
    const char *header = "| key | type | default | range | description |\n"
                         "|-----|------|---------|-------|-------------|\n";
    assert_int_equal(strncmp(ref, header, strlen(header)), 0);
    assert_non_null(strstr(ref, "| `ingest.listen_port` | int | `8080` | 1..65535 | "));
    assert_non_null(strstr(ref, "| `ingest.max_body_bytes` | int64 | `8388608` | 1024..268435456 | "));
    assert_non_null(strstr(ref, "| `redis.require_durable` | bool | `true` | "));
    assert_non_null(strstr(ref, "| `sqlite.path` | string | `\"var/data/tally.db\"` | 1..1023 bytes | "));
    assert_non_null(strstr(ref, "| `sqlite.synchronous` | enum | `\"FULL\"` | FULL, NORMAL, EXTRA | "));
    assert_non_null(strstr(ref, "| `log.level` | enum | `\"info\"` | debug, info, warn, error | "));
    /* every line has exactly the 6 pipes of 5 columns */
    assert_int_equal(count_lines(ref), 2 + 90);
    for (char *line = strtok(ref, "\n"); line; line = strtok(NULL, "\n")) {
        int pipes = 0;
        for (char *p = line; *p; p++)
            pipes += *p == '|';
        assert_int_equal(pipes, 6);
    }
    free(ref);
}

/* ---- main --------------------------------------------------------------- */

static int make_tmp_dir(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/tally-config-XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmp_dir) ? 0 : -1;
}

static int remove_tmp_dir(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/t.conf", tmp_dir);
    unlink(path); /* left behind only by a failed test; absence is fine */
    return rmdir(tmp_dir) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    locate_shipped_conf(argc, argv);
    if (shipped_conf[0])
        print_message("using shipped config %s\n", shipped_conf);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_match_header),
        cmocka_unit_test(shipped_conf_loads_clean_with_defaults),
        cmocka_unit_test(shipped_conf_has_every_key),
        cmocka_unit_test(override_values),
        cmocka_unit_test(empty_file_gives_defaults),
        cmocka_unit_test(unknown_key_reported_with_line),
        cmocka_unit_test(unknown_section_and_misplaced_key),
        cmocka_unit_test(section_given_as_scalar),
        cmocka_unit_test(out_of_range_reported_with_range),
        cmocka_unit_test(oversized_literal_not_wrapped_into_range),
        cmocka_unit_test(range_bounds_are_inclusive),
        cmocka_unit_test(min_insync_bounded_by_replication),
        cmocka_unit_test(wrong_type_reported),
        cmocka_unit_test(multiple_problems_all_reported),
        cmocka_unit_test(empty_required_strings),
        cmocka_unit_test(syntax_error_reported_with_line),
        cmocka_unit_test(missing_file_is_one_problem),
        cmocka_unit_test(enum_validation),
        cmocka_unit_test(string_too_long),
        cmocka_unit_test(problems_buffer_truncated_but_all_counted),
        cmocka_unit_test(reference_is_a_markdown_table),
    };
    return cmocka_run_group_tests(tests, make_tmp_dir, remove_tmp_dir);
}
