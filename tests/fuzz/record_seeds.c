/*
 * record_seeds.c — writes the seed corpus of fuzz_record (tests/fuzz/corpus/record/).
 *
 *   build-fuzz/fuzz_record_seeds OUTDIR
 *
 * Contract: writes a fixed set of valid records, each scenario in both
 * versions (v1-NAME.rec with record_encode(), v2-NAME.rec with
 * record_encode_compact(); folded counters, which version 1 cannot carry, in
 * version 2 only), into the existing directory OUTDIR, replacing
 * files of the same name. Deterministic: the same build writes the same
 * bytes. Every record is decoded again before it is written. Exits 0, or 1
 * with a message on stderr when encoding, checking or writing fails.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "record.h"

#define RECEIVED_MS 1700000000123LL
#define MANY 96

static char long_name[EVENT_NAME_MAX];
static char long_tags[EVENT_TAGS_MAX];
static char long_id[RECORD_BATCH_ID_MAX];

static metric_event event(metric_type type, const char *name, const char *tags, double value)
{
    metric_event ev = {
        .type = type,
        .name = name,
        .name_len = (uint16_t)strlen(name),
        .tags = tags,
        .tags_len = tags ? (uint16_t)strlen(tags) : 0,
        .value = value,
        .sample_rate = 1.0,
        .stamp_ms = RECEIVED_MS,
    };
    return ev;
}

static metric_event with_rate(metric_event ev, double rate)
{
    ev.sample_rate = rate;
    return ev;
}

static metric_event with_stamp(metric_event ev, int64_t stamp_ms)
{
    ev.stamp_ms = stamp_ms;
    ev.flags |= EVENT_CLIENT_STAMP;
    return ev;
}

static metric_event set_member(const char *name, const char *tags, uint64_t member)
{
    metric_event ev = event(METRIC_SET, name, tags, 0);
    ev.member = member;
    return ev;
}

static metric_event relative(metric_event ev)
{
    ev.flags |= EVENT_GAUGE_RELATIVE;
    return ev;
}

/* Encodes one scenario in one version, checks it decodes, writes OUTDIR/vN-NAME.rec. */
static int write_one(const char *dir, unsigned version, const char *name, const char *batch_id,
                     size_t batch_id_len, const metric_event *events, size_t count)
{
    char err[256] = "";
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = version == RECORD_VERSION
                 ? record_encode(batch_id, batch_id_len, RECEIVED_MS, events, count, &buf, &len,
                                 err, sizeof err)
                 : record_encode_compact(batch_id, batch_id_len, RECEIVED_MS, events, count, &buf,
                                         &len, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "record_seeds: %s (version %u): encode failed: %s\n", name, version, err);
        return -1;
    }
    record_reader r;
    if (record_open(&r, buf, len, err, sizeof err) != 0 || r.count != count) {
        fprintf(stderr, "record_seeds: %s (version %u): does not decode: %s\n", name, version,
                err);
        free(buf);
        return -1;
    }
    record_close(&r);

    char path[4096];
    int n = snprintf(path, sizeof path, "%s/v%u-%s.rec", dir, version, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        fprintf(stderr, "record_seeds: output path too long\n");
        free(buf);
        return -1;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "record_seeds: cannot create %s: %s\n", path, strerror(errno));
        free(buf);
        return -1;
    }
    size_t wrote = fwrite(buf, 1, len, f);
    int closed = fclose(f);
    free(buf);
    if (wrote != len || closed != 0) {
        fprintf(stderr, "record_seeds: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    printf("%s (%zu bytes, %zu events)\n", path, len, count);
    return 0;
}

static int write_both(const char *dir, const char *name, const char *batch_id,
                      const metric_event *events, size_t count)
{
    size_t id_len = batch_id ? strlen(batch_id) : 0;
    if (write_one(dir, RECORD_VERSION, name, batch_id, id_len, events, count) != 0) return -1;
    return write_one(dir, RECORD_VERSION_COMPACT, name, batch_id, id_len, events, count);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 1;
    }
    const char *dir = argv[1];
    int bad = 0;

    /* No events, no batch id. */
    bad |= write_both(dir, "empty", NULL, NULL, 0);

    /* One plain counter. */
    metric_event one[] = {event(METRIC_COUNTER, "requests", NULL, 1)};
    bad |= write_both(dir, "counter", "b-1", one, 1);

    /* Every type and flag, rates, client stamps either side of the receive
     * time, fractional, negative and -0.0 values. */
    metric_event mixed[] = {
        event(METRIC_COUNTER, "http.requests", "method:post,route:/v1/events", 1),
        with_rate(event(METRIC_COUNTER, "http.requests", "method:get", 3), 0.1),
        event(METRIC_GAUGE, "queue.depth", NULL, 42),
        relative(event(METRIC_GAUGE, "queue.depth", NULL, 5)),
        relative(event(METRIC_GAUGE, "queue.depth", NULL, -3.5)),
        event(METRIC_GAUGE, "temperature", "room:lab", -0.0),
        event(METRIC_DISTRIBUTION, "db.query_ms", "db:main", 12.75),
        with_rate(event(METRIC_DISTRIBUTION, "db.query_ms", "db:main", 320), 0.25),
        with_stamp(event(METRIC_COUNTER, "jobs.done", "team:core", 7), 1700000000000LL),
        with_stamp(event(METRIC_DISTRIBUTION, "latency", "az:a,region:eu-west-1", 0.004),
                   1700000100000LL),
        with_rate(with_stamp(event(METRIC_COUNTER, "jobs.done", NULL, 2), 0), 0.5),
        set_member("users.active", "app:web", 0x0123456789abcdefull),
        set_member("users.active", "app:web", UINT64_MAX),
        with_stamp(set_member("users.active", NULL, 0), 1700000000000LL),
    };
    bad |= write_both(dir, "mixed", "batch-0001", mixed, sizeof mixed / sizeof mixed[0]);

    /* Many events over few names and tag sets (the compact string table). */
    static const char *names[] = {"api.hits", "api.errors", "api.latency", "cache.size"};
    static const char *tags[] = {NULL, "env:prod", "env:prod,host:a"};
    metric_event many[MANY];
    for (size_t i = 0; i < MANY; i++) {
        metric_type t = i % 4 == 2 ? METRIC_DISTRIBUTION : i % 4 == 3 ? METRIC_GAUGE
                                                                      : METRIC_COUNTER;
        many[i] = event(t, names[i % 4], tags[i % 3], (double)(i * 7 % 50));
        if (i % 5 == 0) many[i].value += 0.5;
        if (i % 11 == 0) many[i] = with_rate(many[i], 0.5);
    }
    bad |= write_both(dir, "many", "retry-key-42", many, MANY);

    /* The largest name, tags and batch id. */
    memset(long_name, 'n', sizeof long_name);
    memset(long_tags, 't', sizeof long_tags);
    for (size_t i = 100; i < sizeof long_tags; i += 101) long_tags[i] = ',';
    memset(long_id, 'k', sizeof long_id);
    metric_event big = event(METRIC_COUNTER, "x", NULL, 1);
    big.name = long_name;
    big.name_len = EVENT_NAME_MAX;
    big.tags = long_tags;
    big.tags_len = EVENT_TAGS_MAX;
    metric_event limits[] = {big};
    if (write_one(dir, RECORD_VERSION, "limits", long_id, sizeof long_id, limits, 1) != 0 ||
        write_one(dir, RECORD_VERSION_COMPACT, "limits", long_id, sizeof long_id, limits, 1) != 0)
        bad = 1;

    /* The edges of the numeric domain and of the varint value encoding, and
     * stamps far from the receive time. */
    metric_event edges[] = {
        event(METRIC_COUNTER, "edge.max", NULL, EVENT_AMOUNT_MAX),
        event(METRIC_COUNTER, "edge.min", NULL, -EVENT_AMOUNT_MAX),
        event(METRIC_GAUGE, "edge.int", NULL, 999999999999999.0),
        event(METRIC_GAUGE, "edge.frac", NULL, 0.1),
        event(METRIC_GAUGE, "edge.tiny", NULL, 5e-324),
        with_rate(event(METRIC_COUNTER, "edge.rate", NULL, 1), 1e-15),
        with_rate(event(METRIC_DISTRIBUTION, "edge.sum", NULL, 0.5), 1e-15),
        with_stamp(event(METRIC_COUNTER, "edge.stamp", NULL, 1), INT64_MAX),
        with_stamp(event(METRIC_COUNTER, "edge.stamp", NULL, 1), INT64_MIN),
    };
    bad |= write_both(dir, "edges", "edges", edges, sizeof edges / sizeof edges[0]);

    /* Counters the StatsD listeners folded (version 2 only: head bit 7 and
     * extra_lines), beside lines as sent, at the edge of the domain too. */
    metric_event folded[] = {
        event(METRIC_COUNTER, "udp.hits", "env:prod", 57),
        with_rate(event(METRIC_COUNTER, "udp.hits", "env:prod", 12), 0.5),
        event(METRIC_COUNTER, "udp.hits", NULL, 1),
        event(METRIC_GAUGE, "udp.depth", NULL, 3),
        with_rate(event(METRIC_COUNTER, "udp.edge", NULL, 0), 1e-6),
    };
    folded[0].extra_lines = 56;
    folded[1].extra_lines = 300;
    folded[4].extra_lines = 999999998; /* (1 + extra) / rate just under 1e15 */
    bad |= write_one(dir, RECORD_VERSION_COMPACT, "folded", "udp-1", 5, folded,
                     sizeof folded / sizeof folded[0]);

    return bad ? 1 : 0;
}
