/*
 * test_record.c — unit tests for the Kafka record codec (common/record.c).
 *
 * Decoding tests always hand record_open() an exact-size heap copy, so
 * AddressSanitizer catches any read outside the record.
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

#include "record.h"
#include "statsd.h"

/* Independent bitwise CRC-32 (IEEE) used as the reference. */
static uint32_t crc32_reference(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Rewrites the trailer so that a deliberately edited record passes the CRC. */
static void reseal(uint8_t *buf, size_t len)
{
    uint32_t crc = crc32_reference(buf, len - 4);
    for (int i = 0; i < 4; i++) buf[len - 4 + i] = (uint8_t)(crc >> (8 * i));
}

/* record_open on an exact-size heap copy; returns rc and fills err. */
static int open_copy(const uint8_t *data, size_t len, record_reader *r, char *err, size_t errlen)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len) memcpy(copy, data, len);
    err[0] = '\0';
    int rc = record_open(r, len ? copy : NULL, len, err, errlen);
    if (rc == 0) { /* read everything while the copy is alive */
        metric_event ev;
        uint32_t n = 0;
        while (record_next(r, &ev)) n++;
        assert_int_equal(n, r->count);
        record_close(r);
    }
    free(copy);
    return rc;
}

static metric_event make_event(metric_type type, const char *name, const char *tags, double value)
{
    metric_event ev = {.type = type, .name = name, .name_len = (uint16_t)strlen(name),
                       .tags = tags, .tags_len = (uint16_t)(tags ? strlen(tags) : 0),
                       .value = value, .sample_rate = 1.0, .stamp_ms = 1700000000000LL};
    return ev;
}

/* A small valid record used by the corruption tests. */
static void encode_sample(uint8_t **buf, size_t *len)
{
    metric_event evs[3] = {
        make_event(METRIC_COUNTER, "api.requests", "env:prod,host:a", 1),
        make_event(METRIC_GAUGE, "mem.free", NULL, -12.5),
        make_event(METRIC_DISTRIBUTION, "lat", "x", 0.25),
    };
    evs[1].flags = EVENT_GAUGE_RELATIVE | EVENT_CLIENT_STAMP;
    evs[2].sample_rate = 0.1;
    char err[256];
    assert_int_equal(record_encode("batch-1", 7, 123456789, evs, 3, buf, len, err, sizeof err), 0);
}

static void assert_same_event(const metric_event *a, const metric_event *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->flags, b->flags);
    assert_int_equal(a->name_len, b->name_len);
    assert_memory_equal(a->name, b->name, a->name_len);
    assert_int_equal(a->tags_len, b->tags_len);
    if (a->tags_len) assert_memory_equal(a->tags, b->tags, a->tags_len);
    assert_memory_equal(&a->value, &b->value, sizeof a->value); /* bit-exact, keeps -0.0 */
    assert_memory_equal(&a->sample_rate, &b->sample_rate, sizeof a->sample_rate);
    assert_int_equal(a->stamp_ms, b->stamp_ms);
    assert_true(a->member == b->member);
    assert_int_equal(a->extra_lines, b->extra_lines);
}

/* A set event of member digest `member` (value 0, rate 1: event.h). */
static metric_event make_set(const char *name, const char *tags, uint64_t member)
{
    metric_event ev = make_event(METRIC_SET, name, tags, 0);
    ev.member = member;
    return ev;
}

/* ---- CRC ---------------------------------------------------------------- */

static void test_crc_check_value(void **state)
{
    (void)state;
    assert_int_equal(crc32_reference((const uint8_t *)"123456789", 9), 0xCBF43926u);

    /* The codec's table-driven CRC agrees with the reference over a record
     * whose batch id holds every byte value. */
    for (int half = 0; half < 2; half++) {
        char id[128];
        for (int i = 0; i < 128; i++) id[i] = (char)(i + 128 * half);
        metric_event ev = make_event(METRIC_COUNTER, "n", NULL, 1);
        uint8_t *buf;
        size_t len;
        char err[256];
        assert_int_equal(record_encode(id, 128, -1, &ev, 1, &buf, &len, err, sizeof err), 0);
        assert_int_equal(le32(buf + len - 4), crc32_reference(buf, len - 4));
        free(buf);
    }
}

/* ---- layout ------------------------------------------------------------- */

static void test_exact_byte_layout(void **state)
{
    (void)state;
    metric_event ev = make_event(METRIC_GAUGE, "ab", "t", -2.0);
    ev.flags = EVENT_GAUGE_RELATIVE;
    ev.sample_rate = 0.5;
    ev.stamp_ms = 0x0102030405060708LL;
    uint8_t *buf;
    size_t len;
    char err[256];
    assert_int_equal(record_encode("K", 1, 0x1122334455667788LL, &ev, 1, &buf, &len, err,
                                   sizeof err), 0);
    const uint8_t want[] = {
        0x54, 0x01,                                     /* magic, version */
        0x01, 0x00, 'K',                                /* batch id */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, /* received_ms */
        0x01, 0x00, 0x00, 0x00,                         /* event_count */
        0x02, 0x01, 0x02, 0x00, 0x01, 0x00,             /* type, flags, name_len, tags_len */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, /* -2.0 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f, /* 0.5 */
        0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* stamp_ms */
        'a', 'b', 't',
    };
    assert_int_equal(len, sizeof want + 4);
    assert_memory_equal(buf, want, sizeof want);
    assert_int_equal(le32(buf + sizeof want), crc32_reference(want, sizeof want));
    free(buf);
}

/* ---- round trips -------------------------------------------------------- */

static void test_round_trip_many(void **state)
{
    (void)state;
    enum { N = 2000 };
    static char names[N][EVENT_NAME_MAX];
    static char tags[N][EVENT_TAGS_MAX];
    metric_event *evs = calloc(N, sizeof *evs);
    assert_non_null(evs);
    uint32_t seed = 12345;
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t name_len = i == 0 ? EVENT_NAME_MAX : 1 + seed % 40;
        size_t tags_len = i == 1 ? EVENT_TAGS_MAX : (i % 3 ? seed % 60 : 0);
        for (size_t k = 0; k < name_len; k++) names[i][k] = (char)('a' + (seed + k) % 26);
        for (size_t k = 0; k < tags_len; k++) tags[i][k] = (char)('0' + (seed + k) % 40);
        metric_event *ev = &evs[i];
        ev->type = (metric_type)(1 + i % 4);
        ev->flags = ev->type == METRIC_GAUGE ? (uint8_t)(i % 4) : (uint8_t)(i % 2 ? EVENT_CLIENT_STAMP : 0);
        ev->name = names[i];
        ev->name_len = (uint16_t)name_len;
        ev->tags = tags_len ? tags[i] : NULL;
        ev->tags_len = (uint16_t)tags_len;
        const double specials[] = {0.0, -0.0, 1e-310, -1e13, 3.141592653589793, -7, 1e12 + 0.5};
        ev->value = i < 7 ? specials[i] : ((double)seed / 7.0 - 3e8);
        ev->sample_rate = i % 5 == 0 ? 1.0 : 1.0 / (double)(2 + i % 97);
        ev->stamp_ms = i == 2 ? INT64_MIN : i == 3 ? INT64_MAX : (int64_t)seed * 1000 - 5;
        if (ev->type == METRIC_SET) { /* no value, rate 1, any 64-bit digest */
            ev->value = 0.0;
            ev->sample_rate = 1.0;
            ev->member = i == 3 ? UINT64_MAX : (uint64_t)seed << 32 ^ (uint64_t)i * 0x9e3779b97f4a7c15ull;
        }
    }
    uint8_t *buf;
    size_t len;
    char err[256];
    char id[RECORD_BATCH_ID_MAX];
    memset(id, 'i', sizeof id);
    assert_int_equal(record_encode(id, sizeof id, -42, evs, N, &buf, &len, err, sizeof err), 0);

    record_reader r;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    assert_int_equal(r.count, N);
    assert_int_equal(r.batch_id_len, RECORD_BATCH_ID_MAX);
    assert_memory_equal(r.batch_id, id, sizeof id);
    assert_int_equal(r.received_ms, -42);
    metric_event ev;
    for (int i = 0; i < N; i++) {
        assert_int_equal(record_next(&r, &ev), 1);
        assert_same_event(&ev, &evs[i]);
        assert_true(ev.tags_len > 0 || ev.tags == NULL);
    }
    assert_int_equal(record_next(&r, &ev), 0);
    assert_int_equal(record_next(&r, &ev), 0);
    free(buf);
    free(evs);
}

static void test_empty_batch_round_trip(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    char err[256];
    assert_int_equal(record_encode(NULL, 0, 99, NULL, 0, &buf, &len, err, sizeof err), 0);
    assert_int_equal(len, 20);
    record_reader r;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.batch_id_len, 0);
    assert_int_equal(r.received_ms, 99);
    metric_event ev;
    assert_int_equal(record_next(&r, &ev), 0);
    free(buf);
}

/* Parser output survives the codec unchanged. */
static void test_parse_then_encode(void **state)
{
    (void)state;
    const char *body = "a.b:1|c|#z,y\nc:-2|g|T1600000000\nd:0.5|ms|@0.5\ne:x@y.z|s|#z\n";
    statsd_batch b;
    statsd_batch_init(&b);
    statsd_limits l = {.max_lines = 10, .max_name_len = 200, .max_tags_len = 100, .max_errors = 5};
    char err[256];
    assert_int_equal(statsd_parse_batch(&b, body, strlen(body), &l, 5, err, sizeof err), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(record_encode("id", 2, 5, b.events, b.count, &buf, &len, err, sizeof err), 0);
    record_reader r;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    assert_int_equal(r.count, 4);
    metric_event ev;
    for (size_t i = 0; i < b.count; i++) {
        assert_int_equal(record_next(&r, &ev), 1);
        assert_same_event(&ev, &b.events[i]);
    }
    free(buf);
    statsd_batch_free(&b);
}

/* ---- decode errors ------------------------------------------------------ */

static void test_version_and_magic(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    encode_sample(&buf, &len);
    record_reader r;
    char err[256];
    buf[1] = 7;
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "unsupported record version 7");
    buf[1] = 7;
    reseal(buf, len); /* a well-formed record from a future writer: still version first */
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "unsupported record version 7");
    buf[1] = RECORD_VERSION;
    buf[0] = 'X';
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "bad magic byte 0x58 (expected 0x54)");
    free(buf);
}

static void test_truncation_every_length(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    encode_sample(&buf, &len);
    record_reader r;
    char err[256];
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), 0);
    for (size_t n = 0; n < len; n++) {
        if (open_copy(buf, n, &r, err, sizeof err) != -1) fail_msg("truncated to %zu accepted", n);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(open_copy(buf, 0, &r, err, sizeof err), -1);
    assert_string_equal(err, "empty record");
    assert_int_equal(open_copy(buf, 10, &r, err, sizeof err), -1);
    assert_string_equal(err, "truncated header (10 bytes)");
    /* cut inside event 3 (events start at 4 + 7 + 12 = 23) */
    size_t ev3 = 23 + (30 + 12 + 15) + (30 + 8);
    assert_int_equal(open_copy(buf, ev3 + 10 + 4, &r, err, sizeof err), -1);
    assert_string_equal(err, "truncated at event 3");
    /* and with an extra byte at the end */
    uint8_t *longer = malloc(len + 1);
    assert_non_null(longer);
    memcpy(longer, buf, len);
    longer[len] = 0;
    assert_int_equal(open_copy(longer, len + 1, &r, err, sizeof err), -1);
    reseal(longer, len + 1);
    assert_int_equal(open_copy(longer, len + 1, &r, err, sizeof err), -1);
    assert_string_equal(err, "1 unexpected bytes after event 3");
    free(longer);
    free(buf);
}

static void test_flip_every_byte(void **state)
{
    (void)state;
    uint8_t *buf;
    size_t len;
    encode_sample(&buf, &len);
    record_reader r;
    char err[256];
    const uint8_t masks[] = {0x01, 0x80, 0xFF, 0x10};
    for (size_t i = 0; i < len; i++) {
        for (size_t m = 0; m < sizeof masks; m++) {
            buf[i] ^= masks[m];
            if (open_copy(buf, len, &r, err, sizeof err) != -1)
                fail_msg("flip 0x%02x at byte %zu accepted", masks[m], i);
            assert_true(err[0] != '\0');
            buf[i] ^= masks[m];
        }
    }
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), 0);
    /* a payload flip is reported as corruption */
    buf[len - 10] ^= 1;
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_non_null(strstr(err, "crc mismatch"));
    free(buf);
}

/* Records with a valid CRC but impossible contents (a buggy or foreign writer). */
static void test_semantic_validation(void **state)
{
    (void)state;
    record_reader r;
    char err[256];
    struct {
        size_t offset;  /* inside event 2, which starts at 23 + 57 = 80 */
        uint8_t bytes[8];
        size_t n;
        const char *want;
    } cases[] = {
        {80, {9}, 1, "event 2: unknown type 9"},
        {80, {0}, 1, "event 2: unknown type 0"},
        {80, {5}, 1, "event 2: unknown type 5"},
        {80, {METRIC_SET}, 1, "event 2: relative flag on a set"},
        {118, {METRIC_SET}, 1, "event 3: a set event has value 0 and rate 0.1 (must be 0 and 1)"},
        {81, {0x04}, 1, "event 2: unknown flags 0x04"},
        {80, {METRIC_COUNTER}, 1, "event 2: relative flag on a counter"},
        {80 + 6, {0, 0, 0, 0, 0, 0, 0xf0, 0x7f}, 8, "event 2: value is not finite"},
        {80 + 6, {0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, 8, "event 2: value is not finite"},
        {80 + 14, {0, 0, 0, 0, 0, 0, 0, 0x40}, 8, "event 2: sample rate 2 not in (0, 1]"},
        {80 + 14, {0, 0, 0, 0, 0, 0, 0, 0}, 8, "event 2: sample rate 0 not in (0, 1]"},
        {80 + 14, {0, 0, 0, 0, 0, 0, 0xf8, 0x7f}, 8, "event 2: sample rate nan not in (0, 1]"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint8_t *buf;
        size_t len;
        encode_sample(&buf, &len);
        memcpy(buf + cases[c].offset, cases[c].bytes, cases[c].n);
        reseal(buf, len);
        assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
        assert_string_equal(err, cases[c].want);
        free(buf);
    }

    /* name_len 0 with the record resized to stay consistent */
    metric_event ev = make_event(METRIC_COUNTER, "n", NULL, 1);
    uint8_t *buf;
    size_t len;
    assert_int_equal(record_encode(NULL, 0, 0, &ev, 1, &buf, &len, err, sizeof err), 0);
    uint8_t *cut = malloc(len - 1);
    assert_non_null(cut);
    memcpy(cut, buf, 18);                /* header + type, flags */
    cut[18] = 0;                         /* name_len = 0 */
    cut[19] = 0;
    memcpy(cut + 20, buf + 20, 26);      /* tags_len, value, rate, stamp */
    reseal(cut, len - 1);
    assert_int_equal(open_copy(cut, len - 1, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: name length 0 not in 1..255");
    free(cut);

    /* an event count that cannot fit */
    buf[12] = 0xff;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event count 255 does not fit in 31 bytes");
    free(buf);
}

/* ---- encode errors ------------------------------------------------------ */

static void test_encode_rejects(void **state)
{
    (void)state;
    uint8_t *buf = (uint8_t *)"x";
    size_t len = 1;
    char err[256];
    char id[RECORD_BATCH_ID_MAX + 1];
    memset(id, 'b', sizeof id);
    metric_event ok = make_event(METRIC_COUNTER, "n", NULL, 1);

    assert_int_equal(record_encode(id, sizeof id, 0, &ok, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "batch id is 193 bytes (limit 192)");
    assert_null(buf);
    assert_int_equal(len, 0);
    assert_int_equal(record_encode(id, RECORD_BATCH_ID_MAX, 0, &ok, 1, &buf, &len, err,
                                   sizeof err), 0);
    free(buf);

    if ((uint64_t)SIZE_MAX > UINT32_MAX) {
        size_t huge = (size_t)((uint64_t)UINT32_MAX + 1);
        assert_int_equal(record_encode("a", 1, 0, &ok, huge, &buf, &len, err, sizeof err), -1);
        assert_string_equal(err, "too many events for one record (4294967296)");
    }

    struct {
        metric_event ev;
        const char *want;
    } bad[] = {
        {make_event((metric_type)9, "n", NULL, 1), "event 1: unknown type 9"},
        {make_event(METRIC_COUNTER, "n", NULL, NAN), "event 1: value is not finite"},
        {make_event(METRIC_COUNTER, "n", NULL, INFINITY), "event 1: value is not finite"},
        {make_event(METRIC_COUNTER, "", NULL, 1), "event 1: name length 0 not in 1..255"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        metric_event evs[2] = {ok, bad[i].ev};
        assert_int_equal(record_encode("a", 1, 0, &evs[1], 1, &buf, &len, err, sizeof err), -1);
        assert_string_equal(err, bad[i].want);
        assert_int_equal(record_encode("a", 1, 0, evs, 2, &buf, &len, err, sizeof err), -1);
        assert_true(strncmp(err, "event 2:", 8) == 0);
    }
    metric_event ev = ok;
    ev.sample_rate = 0;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: sample rate 0 not in (0, 1]");
    ev = ok;
    ev.flags = EVENT_GAUGE_RELATIVE;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: relative flag on a counter");
    ev = ok;
    ev.flags = 0x40;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: unknown flags 0x40");
    ev = ok;
    ev.tags_len = EVENT_TAGS_MAX + 1;
    ev.tags = "x";
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: tags length 1025 exceeds 1024");
}

/* ---- version 2 (compact) -------------------------------------------------- */

/* A varied batch: repeated names and tags, integral and fractional values,
 * -0.0, values past 2^53, rates, client stamps on both sides of the batch's. */
enum { COMPACT_N = 600 };
static metric_event compact_events[COMPACT_N];
static char compact_names[8][16];

static void fill_compact_events(void)
{
    static const char *const tags[] = {NULL, "env:prod", "a:1,b:2", "host:x"};
    static const double values[] = {1, -7, 0.25, -0.0, 4e14, 987654321012.5, 3, 1e-9};
    for (int k = 0; k < 8; k++)
        snprintf(compact_names[k], sizeof compact_names[k], "metric.%d", k);
    for (int i = 0; i < COMPACT_N; i++) {
        metric_type type = (metric_type)(1 + i % 4);
        metric_event ev = type == METRIC_SET
                              ? make_set(compact_names[i % 8], tags[i % 4],
                                         i % 3 ? (uint64_t)i * 0x9e3779b97f4a7c15ull : (uint64_t)i)
                              : make_event(type, compact_names[i % 8], tags[i % 4], values[i % 8]);
        ev.stamp_ms = 1700000000000LL;
        if (i % 5 == 0) {
            ev.flags |= EVENT_CLIENT_STAMP;
            ev.stamp_ms += (i % 2 ? -1 : 1) * (int64_t)i * 1000;
        }
        if (i % 7 == 0 && type != METRIC_SET)
            ev.sample_rate = 0.5;
        if (type == METRIC_GAUGE && i % 2)
            ev.flags |= EVENT_GAUGE_RELATIVE;
        compact_events[i] = ev;
    }
}

static void test_compact_round_trip(void **state)
{
    (void)state;
    fill_compact_events();
    uint8_t *v1 = NULL, *v2 = NULL;
    size_t len1 = 0, len2 = 0;
    char err[256];
    assert_int_equal(record_encode("id", 2, 1700000000000LL, compact_events, COMPACT_N, &v1, &len1,
                                   err, sizeof err), 0);
    assert_int_equal(record_encode_compact("id", 2, 1700000000000LL, compact_events, COMPACT_N,
                                           &v2, &len2, err, sizeof err), 0);
    assert_int_equal(v2[1], RECORD_VERSION_COMPACT);
    assert_true(len2 * 3 < len1); /* the point of the format */
    record_reader r;
    assert_int_equal(record_open(&r, v2, len2, err, sizeof err), 0);
    assert_int_equal(r.version, RECORD_VERSION_COMPACT);
    assert_int_equal(r.count, COMPACT_N);
    assert_int_equal(r.received_ms, 1700000000000LL);
    assert_memory_equal(r.batch_id, "id", 2);
    for (int i = 0; i < COMPACT_N; i++) {
        metric_event ev;
        const metric_event *want = &compact_events[i];
        assert_int_equal(record_next(&r, &ev), 1);
        assert_int_equal(ev.type, want->type);
        assert_int_equal(ev.flags, want->flags);
        assert_int_equal(ev.name_len, want->name_len);
        assert_memory_equal(ev.name, want->name, want->name_len);
        assert_int_equal(ev.tags_len, want->tags_len);
        if (want->tags_len)
            assert_memory_equal(ev.tags, want->tags, want->tags_len);
        assert_memory_equal(&ev.value, &want->value, sizeof ev.value); /* bit-exact, -0.0 too */
        assert_true(ev.sample_rate == want->sample_rate);
        assert_int_equal(ev.stamp_ms, want->stamp_ms);
        assert_true(ev.member == want->member);
    }
    metric_event ev;
    assert_int_equal(record_next(&r, &ev), 0);
    record_close(&r);
    free(v1);
    free(v2);
}

static void test_compact_empty_batch(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(record_encode_compact(NULL, 0, 5, NULL, 0, &buf, &len, err, sizeof err), 0);
    record_reader r;
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), 0);
    assert_int_equal(r.count, 0);
    free(buf);
}

static void test_compact_truncation_and_flips(void **state)
{
    (void)state;
    fill_compact_events();
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(record_encode_compact("batch", 5, 1700000000000LL, compact_events, 40, &buf,
                                           &len, err, sizeof err), 0);
    record_reader r;
    for (size_t cut = 0; cut < len; cut++)
        assert_int_equal(open_copy(buf, cut, &r, err, sizeof err), -1);
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x5A;
        assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
        buf[i] ^= 0x5A;
    }
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), 0);
    free(buf);
}

static void test_compact_semantic_validation(void **state)
{
    (void)state;
    metric_event ev = make_event(METRIC_COUNTER, "n", NULL, 1);
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256];
    record_reader r;
    assert_int_equal(record_encode_compact("b", 1, ev.stamp_ms, &ev, 1, &buf, &len, err, sizeof err), 0);
    /* layout: 2 + 2 + 1 (id) + 8 + 4 + 4, string {u16 1, 'n'}, event at 24 */
    size_t event_at = 2 + 2 + 1 + 8 + 4 + 4 + 3;
    assert_int_equal(buf[event_at], METRIC_COUNTER);
    buf[event_at + 1] = 5; /* name index past the table */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: string index out of range");
    buf[event_at + 1] = 0;
    buf[event_at] = 0x80 | METRIC_COUNTER; /* folded lines the event does not carry */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "truncated at event 1");
    buf[event_at] = 0x10; /* type bits 0 (a set) with a rate */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event with a rate or an f64 value (head 0x10)");
    buf[event_at] = 0x20; /* a set with an f64 value */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event with a rate or an f64 value (head 0x20)");
    buf[event_at] = 0x04; /* a relative set */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: relative flag on a set");
    buf[event_at] = METRIC_COUNTER | 0x04; /* relative flag on a counter */
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: relative flag on a counter");
    buf[event_at] = METRIC_COUNTER;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), 0);
    free(buf);
}

/* ---- sets --------------------------------------------------------------- */

/* Version 1: type 4, the member's digest in the 8 value bytes, rate 1. */
static void test_set_layout_v1(void **state)
{
    (void)state;
    metric_event ev = make_set("s", NULL, 0x8877665544332211ull);
    ev.stamp_ms = 0;
    uint8_t *buf;
    size_t len;
    char err[256];
    assert_int_equal(record_encode(NULL, 0, 0, &ev, 1, &buf, &len, err, sizeof err), 0);
    const uint8_t want_event[] = {
        0x04, 0x00, 0x01, 0x00, 0x00, 0x00,             /* type 4, flags, name_len, tags_len */
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* the member's digest */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f, /* rate 1.0 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* stamp_ms */
        's',
    };
    assert_int_equal(len, 16 + sizeof want_event + 4);
    assert_memory_equal(buf + 16, want_event, sizeof want_event);
    record_reader r;
    metric_event got;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    assert_int_equal(record_next(&r, &got), 1);
    assert_same_event(&got, &ev);
    record_close(&r);
    /* a digest whose bits are a NaN as a double is still just a digest */
    free(buf);
    ev.member = 0x7ff8000000000001ull;
    assert_int_equal(record_encode(NULL, 0, 0, &ev, 1, &buf, &len, err, sizeof err), 0);
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    assert_int_equal(record_next(&r, &got), 1);
    assert_true(got.member == ev.member && got.value == 0.0);
    record_close(&r);
    /* the rate of a set must be 1 */
    buf[16 + 14 + 7] = 0x3f; /* rate 0.5: 0x3fe0...; here 0x3f f0 -> 0x3f 3f... */
    buf[16 + 14 + 6] = 0xe0;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event has value 0 and rate 0.5 (must be 0 and 1)");
    free(buf);
}

/* Version 2: head type bits 0, the digest as an unsigned varint. */
static void test_set_layout_v2(void **state)
{
    (void)state;
    metric_event evs[2] = {make_set("s", NULL, 300), make_set("s", "t", UINT64_MAX)};
    evs[1].flags = EVENT_CLIENT_STAMP;
    evs[1].stamp_ms = evs[0].stamp_ms + 1;
    uint8_t *buf;
    size_t len;
    char err[256];
    assert_int_equal(record_encode_compact(NULL, 0, evs[0].stamp_ms, evs, 2, &buf, &len, err,
                                           sizeof err), 0);
    /* header 2 + 2 + 8 + 4 + 4, strings {1, 's'} {1, 't'} */
    const uint8_t want_events[] = {
        0x00, 0x00, 0x00, 0xac, 0x02,                   /* set, name 0, no tags, 300 */
        0x48, 0x00, 0x02,                               /* set, client stamp, stamp delta; tags 1 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* 2^64 - 1 */
        0x02,                                           /* stamp delta +1, zigzag */
    };
    size_t at = 20 + 3 + 3;
    assert_int_equal(len, at + sizeof want_events + 4);
    assert_memory_equal(buf + at, want_events, sizeof want_events);
    record_reader r;
    metric_event got;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(record_next(&r, &got), 1);
        assert_same_event(&got, &evs[i]);
    }
    record_close(&r);
    /* a member varint longer than 64 bits */
    buf[at + 8 + 9] = 0x02;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "truncated at event 2");
    free(buf);
}

/* A set event with a value or a rate is refused by both encoders. */
static void test_set_encode_rejects(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256];
    metric_event ev = make_set("s", NULL, 7);
    ev.value = 1;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event has value 1 and rate 1 (must be 0 and 1)");
    assert_int_equal(record_encode_compact("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event has value 1 and rate 1 (must be 0 and 1)");
    ev.value = -0.0;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    ev.value = 0;
    ev.sample_rate = 0.5;
    assert_int_equal(record_encode_compact("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a set event has value 0 and rate 0.5 (must be 0 and 1)");
    ev.sample_rate = 1;
    ev.flags = EVENT_GAUGE_RELATIVE;
    assert_int_equal(record_encode("a", 1, 0, &ev, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: relative flag on a set");
    assert_null(buf);
}

/* A folded counter (event.h: extra_lines) in version 2: head bit 7 and a
 * varint after the other fields; only counters, within the domain; version 1
 * cannot carry it. */
static void test_folded_counter_layout(void **state)
{
    (void)state;
    metric_event evs[2] = {make_event(METRIC_COUNTER, "c", NULL, 7),
                           make_event(METRIC_COUNTER, "c", NULL, 3)};
    evs[0].extra_lines = 2;
    evs[1].extra_lines = 300;
    evs[1].sample_rate = 0.5;
    uint8_t *buf;
    size_t len;
    char err[256];
    assert_int_equal(record_encode_compact(NULL, 0, evs[0].stamp_ms, evs, 2, &buf, &len, err,
                                           sizeof err), 0);
    const uint8_t want_events[] = {
        0x81, 0x00, 0x00, 0x0e, 0x02,                   /* counter, folded; 7; 2 more lines */
        0x91, 0x00, 0x00, 0x06,                         /* counter, rate, folded; 3 */
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x3f, /* rate 0.5 */
        0xac, 0x02,                                     /* 300 more lines */
    };
    size_t at = 20 + 3; /* header, string {1, 'c'} */
    assert_int_equal(len, at + sizeof want_events + 4);
    assert_memory_equal(buf + at, want_events, sizeof want_events);
    record_reader r;
    metric_event got;
    assert_int_equal(record_open(&r, buf, len, err, sizeof err), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(record_next(&r, &got), 1);
        assert_same_event(&got, &evs[i]);
        assert_true(event_weight(&got) == (i == 0 ? 3.0 : 602.0));
        assert_int_equal(event_lines(&got), i == 0 ? 3 : 301);
    }
    record_close(&r);
    /* a gauge with folded lines */
    buf[at] = 0x82;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    assert_string_equal(err, "event 1: folded lines on a gauge (only counters fold)");
    /* an extra_lines of 0 is malformed */
    buf[at] = 0x81;
    buf[at + 4] = 0x00;
    reseal(buf, len);
    assert_int_equal(open_copy(buf, len, &r, err, sizeof err), -1);
    free(buf);
    buf = NULL;
    /* the encoders refuse what the decoder would */
    assert_int_equal(record_encode("a", 1, 0, evs, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: a folded counter needs the compact record");
    evs[0].type = METRIC_GAUGE;
    assert_int_equal(record_encode_compact("a", 1, 0, evs, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: folded lines on a gauge (only counters fold)");
    evs[0].type = METRIC_COUNTER;
    evs[0].sample_rate = 1e-6;
    evs[0].extra_lines = 2000000000u;
    assert_int_equal(record_encode_compact("a", 1, 0, evs, 1, &buf, &len, err, sizeof err), -1);
    assert_string_equal(err, "event 1: 2000000001 folded lines at rate 1e-06 leave the domain");
    assert_null(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_value),
        cmocka_unit_test(test_exact_byte_layout),
        cmocka_unit_test(test_round_trip_many),
        cmocka_unit_test(test_empty_batch_round_trip),
        cmocka_unit_test(test_parse_then_encode),
        cmocka_unit_test(test_version_and_magic),
        cmocka_unit_test(test_truncation_every_length),
        cmocka_unit_test(test_flip_every_byte),
        cmocka_unit_test(test_semantic_validation),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_compact_round_trip),
        cmocka_unit_test(test_compact_empty_batch),
        cmocka_unit_test(test_compact_truncation_and_flips),
        cmocka_unit_test(test_compact_semantic_validation),
        cmocka_unit_test(test_set_layout_v1),
        cmocka_unit_test(test_set_layout_v2),
        cmocka_unit_test(test_set_encode_rejects),
        cmocka_unit_test(test_folded_counter_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
