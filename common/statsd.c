/*
 * statsd.c — the batch parser: StatsD/DogStatsD lines in, metric events out.
 *
 * The parser sits on the ingest hot path, so it is built to touch every byte
 * of the body about once and to allocate nothing per line.
 *
 * Zero copy. A metric name is a slice of the request body, so events point
 * straight into it. Tags cannot be used in place because the series identity
 * needs their canonical form (sorted bytewise, duplicates dropped), so each
 * line's canonical tags are written into a per-batch arena. The arena is sized
 * once per parse to at least the body length: a line's canonical tags are
 * never longer than its raw "#..." section, so the arena can never overflow
 * and pointers into it never move while the batch is being filled. Buffers
 * (events, errors, arena) belong to the batch and only grow, so a long-lived
 * batch reaches a steady state where parsing allocates nothing at all.
 *
 * Numbers. strtod() needs a NUL-terminated string and the body is not one, so
 * running strtod on the body could read past the end of the line (and of the
 * buffer). Most values are short plain decimals ("1", "0.25", "-3"), so those
 * take a fast path: up to 15 significant digits fit a double's 53-bit
 * mantissa exactly, and dividing by an exact power of ten is one correctly
 * rounded operation, which is the result strtod would give. Anything else
 * (exponents, long mantissas) is checked against a whitelist of characters,
 * which also rules out hex, "inf", "nan" and leading spaces, copied into a
 * bounded local buffer and handed to strtod, which must consume all of it
 * and return a finite value. strtod follows LC_NUMERIC; the process keeps the
 * default "C" locale.
 *
 * Errors. A batch is atomic, so a bad line does not stop the parse: every
 * line is still checked so the client can fix them all in one round trip.
 * Only the first max_errors are described (bounding the response size);
 * error_total counts them all. The one exception is max_lines: the first
 * non-empty line past the limit is reported and parsing stops there, because
 * the batch is already rejected and the rest of the body is unbounded.
 *
 * Domain. A line whose amount is outside event.h's numeric domain (|value /
 * rate| or 1 / rate above EVENT_AMOUNT_MAX) is a bad line like any other, so
 * nothing a client sends can take a running value out of the finite range.
 *
 * Sets. The value of "name:MEMBER|s" is not a number, so the value is only
 * delimited first and read once the type is known. A member is kept as its
 * 64-bit digest (hash_digest64), never as its bytes: the record and
 * everything after it carry 8 bytes per line whatever the member, and no
 * client's user ids or emails reach Kafka, Redis or SQLite. Two members
 * with one digest count as one (about n^2 / 2^65 of n members: nothing next
 * to the HyperLogLog's own error).
 *
 * Reasons are formatted only on the error path; quoted tokens are clipped and
 * non-printable bytes escaped so the reason is always safe to show.
 */
#include "statsd.h"

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define VALUE_TOKEN_MAX 64   /* longest numeric token accepted (value, rate) */
#define TAG_LEN_MAX 200      /* longest single tag */
#define TAGS_PER_LINE_MAX 512 /* EVENT_TAGS_MAX allows at most 512 distinct tags */
#define STAMP_SECONDS_END 4102444800LL /* 2100-01-01T00:00:00Z */
#define QUOTE_MAX 32         /* bytes of a bad token echoed in a reason */
#define QUOTE_BUF 48         /* room for QUOTE_MAX bytes, escapes clipped to fit */

/* ---- character classes (ASCII bitmaps, two 64-bit words) ---------------- */

#define BIT(c) (1ULL << (c))
#define RANGE(lo, hi) ((~0ULL >> (63 - ((hi) - (lo)))) << (lo))

/* name: [A-Za-z0-9_.-] */
#define NAME_LO (RANGE('0', '9') | BIT('-') | BIT('.'))
#define NAME_HI (RANGE('A' - 64, 'Z' - 64) | BIT('_' - 64) | RANGE('a' - 64, 'z' - 64))
/* tag: [A-Za-z0-9_.:/-] */
#define TAG_LO (NAME_LO | BIT('/') | BIT(':'))
#define TAG_HI NAME_HI

static inline bool is_in_class(unsigned char c, uint64_t lo, uint64_t hi)
{
    if (c < 64) return (lo >> c) & 1u;
    if (c < 128) return (hi >> (c - 64)) & 1u;
    return false;
}

static inline bool is_name_char(unsigned char c) { return is_in_class(c, NAME_LO, NAME_HI); }
static inline bool is_tag_char(unsigned char c) { return is_in_class(c, TAG_LO, TAG_HI); }

/* ---- reasons ------------------------------------------------------------- */

typedef struct tag_slice {
    const char *p;
    size_t n;
} tag_slice;

/* Writes a printable, clipped copy of [s, s+n) into out (always terminated). */
static void quote_token(char *out, size_t outlen, const char *s, size_t n)
{
    size_t o = 0;
    assert(outlen > 8);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= QUOTE_MAX || o + 8 >= outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        }
    }
    out[o] = '\0';
}

/* Describes a single byte for "invalid character ..." reasons. */
static void describe_char(char *out, size_t outlen, unsigned char c)
{
    if (c >= 0x20 && c < 0x7f && c != '\'')
        snprintf(out, outlen, "'%c'", c);
    else
        snprintf(out, outlen, "byte 0x%02x", c);
}

/* ---- numbers ------------------------------------------------------------- */

typedef enum num_status { NUM_OK, NUM_EMPTY, NUM_TOO_LONG, NUM_INVALID, NUM_RANGE } num_status;

static const double POW10[] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15,
};

/* Fast path for [sign] digits [. digits] with at most 15 digits in all.
 * Returns true and sets *out when the token has that shape. */
static bool parse_plain_decimal(const char *s, size_t n, double *out)
{
    size_t i = 0;
    bool neg = false;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t mant = 0;
    unsigned digits = 0, frac = 0;
    bool dot = false;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d < 10) {
            mant = mant * 10 + d;
            digits++;
            frac += dot;
        } else if (s[i] == '.' && !dot) {
            dot = true;
        } else {
            return false;
        }
    }
    if (digits == 0 || digits > 15) return false;
    assert(frac < sizeof POW10 / sizeof POW10[0]);
    double v = (double)mant / POW10[frac];
    *out = neg ? -v : v;
    return true;
}

/* Parses a finite decimal number from the token [s, s+n) (not terminated). */
static num_status parse_number(const char *s, size_t n, double *out)
{
    if (n == 0) return NUM_EMPTY;
    if (n > VALUE_TOKEN_MAX) return NUM_TOO_LONG;
    if (parse_plain_decimal(s, n, out)) return NUM_OK;

    char buf[VALUE_TOKEN_MAX + 1];
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || c == '.' || c == '+' || c == '-' || c == 'e' || c == 'E'))
            return NUM_INVALID;
        buf[i] = c;
    }
    buf[n] = '\0';
    char *end = NULL;
    double v = strtod(buf, &end);
    if (end != buf + n) return NUM_INVALID;
    if (!isfinite(v)) return NUM_RANGE;
    *out = v;
    return NUM_OK;
}

/* Parses "|T" seconds: plain digits, in [0, STAMP_SECONDS_END). */
static bool parse_unix_seconds(const char *s, size_t n, int64_t *secs)
{
    if (n == 0 || n > 10) return false;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d >= 10) return false;
        v = v * 10 + d;
    }
    if (v >= STAMP_SECONDS_END) return false;
    *secs = v;
    return true;
}

/* ---- tags ---------------------------------------------------------------- */

static int compare_tags(const tag_slice *a, const tag_slice *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->p, b->p, n);
    if (c != 0) return c;
    return (a->n > b->n) - (a->n < b->n);
}

static int compare_tags_qsort(const void *a, const void *b)
{
    return compare_tags(a, b);
}

static void sort_tags(tag_slice *t, size_t n)
{
    if (n > 16) {
        qsort(t, n, sizeof *t, compare_tags_qsort);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        tag_slice x = t[i];
        size_t j = i;
        while (j > 0 && compare_tags(&t[j - 1], &x) > 0) {
            t[j] = t[j - 1];
            j--;
        }
        t[j] = x;
    }
}

/* Canonicalises the raw tags [s, s+n) into the arena at b->arena_len.
 * On success *out and *out_len describe the canonical string and the arena
 * advances; on failure reason is filled and the arena is unchanged. */
static int canonicalise_tags(statsd_batch *b, const char *s, size_t n, size_t max_tags_len,
                             const char **out, size_t *out_len, char *reason)
{
    tag_slice tags[TAGS_PER_LINE_MAX];
    size_t count = 0;
    char q[QUOTE_BUF];

    const char *p = s, *end = s + n;
    for (;;) {
        const char *start = p;
        while (p < end && *p != ',') p++;
        size_t len = (size_t)(p - start);
        if (len == 0) {
            snprintf(reason, STATSD_REASON_MAX, "empty tag in tags section");
            return -1;
        }
        if (len > TAG_LEN_MAX) {
            snprintf(reason, STATSD_REASON_MAX, "tag longer than %d bytes", TAG_LEN_MAX);
            return -1;
        }
        for (size_t i = 0; i < len; i++) {
            if (!is_tag_char((unsigned char)start[i])) {
                quote_token(q, sizeof q, start, len);
                snprintf(reason, STATSD_REASON_MAX, "invalid tag \"%s\"", q);
                return -1;
            }
        }
        if (count == TAGS_PER_LINE_MAX) {
            snprintf(reason, STATSD_REASON_MAX, "too many tags (limit %d)", TAGS_PER_LINE_MAX);
            return -1;
        }
        tags[count].p = start;
        tags[count].n = len;
        count++;
        if (p == end) break;
        p++; /* skip ',' */
    }

    sort_tags(tags, count);

    size_t total = 0;
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (kept > 0 && compare_tags(&tags[kept - 1], &tags[i]) == 0) continue;
        tags[kept++] = tags[i];
        total += tags[i].n + (kept > 1);
    }
    if (total > max_tags_len) {
        snprintf(reason, STATSD_REASON_MAX, "tags longer than %zu bytes (canonical form is %zu)",
                 max_tags_len, total);
        return -1;
    }

    /* Canonical tags are never longer than the raw section. */
    assert(total <= n);
    assert(b->arena_len + total <= b->arena_cap);
    char *w = b->arena + b->arena_len;
    for (size_t i = 0; i < kept; i++) {
        if (i > 0) *w++ = ',';
        memcpy(w, tags[i].p, tags[i].n);
        w += tags[i].n;
    }
    *out = b->arena + b->arena_len;
    *out_len = total;
    b->arena_len += total;
    return 0;
}

/* ---- one line ------------------------------------------------------------ */

typedef struct parse_limits {
    size_t max_name_len;
    size_t max_tags_len;
} parse_limits;

/* Parses the metric type token into ev->type. */
static int parse_type(const char *s, size_t n, metric_event *ev, char *reason)
{
    char q[QUOTE_BUF];
    if (n == 1 && s[0] == 'c') { ev->type = METRIC_COUNTER; return 0; }
    if (n == 1 && s[0] == 'g') { ev->type = METRIC_GAUGE; return 0; }
    if ((n == 2 && s[0] == 'm' && s[1] == 's') || (n == 1 && (s[0] == 'h' || s[0] == 'd'))) {
        ev->type = METRIC_DISTRIBUTION;
        return 0;
    }
    if (n == 1 && s[0] == 's') {
        ev->type = METRIC_SET;
        return 0;
    }
    if (n == 0) {
        snprintf(reason, STATSD_REASON_MAX, "missing metric type after '|'");
        return -1;
    }
    quote_token(q, sizeof q, s, n);
    snprintf(reason, STATSD_REASON_MAX, "unknown metric type \"%s\"", q);
    return -1;
}

static int parse_value(const char *s, size_t n, metric_event *ev, char *reason)
{
    char q[QUOTE_BUF];
    switch (parse_number(s, n, &ev->value)) {
    case NUM_OK:
        return 0;
    case NUM_EMPTY:
        snprintf(reason, STATSD_REASON_MAX, "missing value after ':'");
        return -1;
    case NUM_TOO_LONG:
        snprintf(reason, STATSD_REASON_MAX, "value too long (more than %d bytes)", VALUE_TOKEN_MAX);
        return -1;
    case NUM_RANGE:
        quote_token(q, sizeof q, s, n);
        snprintf(reason, STATSD_REASON_MAX, "value \"%s\" is out of range", q);
        return -1;
    case NUM_INVALID:
        break;
    }
    quote_token(q, sizeof q, s, n);
    snprintf(reason, STATSD_REASON_MAX, "value \"%s\" is not a number", q);
    return -1;
}

/* A set's member [s, s+n): 1..STATSD_MEMBER_MAX bytes, none a control
 * character ('|' and '\n' cannot occur: they end the field and the line).
 * The event keeps only its digest (event.h). */
static int parse_member(const char *s, size_t n, metric_event *ev, char *reason)
{
    if (n == 0) {
        snprintf(reason, STATSD_REASON_MAX, "missing set member after ':'");
        return -1;
    }
    if (n > STATSD_MEMBER_MAX) {
        snprintf(reason, STATSD_REASON_MAX, "set member longer than %d bytes", STATSD_MEMBER_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) {
            snprintf(reason, STATSD_REASON_MAX,
                     "byte 0x%02x in set member (control characters are not allowed)", c);
            return -1;
        }
    }
    ev->member = hash_digest64(s, n);
    ev->value = 0.0;
    return 0;
}

static int parse_rate(const char *s, size_t n, metric_event *ev, char *reason)
{
    char q[QUOTE_BUF];
    double rate = 0;
    num_status st = parse_number(s, n, &rate);
    if (st == NUM_OK && rate > 0.0 && rate <= 1.0) {
        ev->sample_rate = rate;
        return 0;
    }
    quote_token(q, sizeof q, s, n);
    if (st == NUM_EMPTY) {
        snprintf(reason, STATSD_REASON_MAX, "empty sample rate after '|@'");
        return -1;
    }
    if (st != NUM_OK && st != NUM_RANGE) {
        snprintf(reason, STATSD_REASON_MAX, "sample rate \"%s\" is not a number", q);
        return -1;
    }
    snprintf(reason, STATSD_REASON_MAX, "sample rate \"%s\" must be in (0, 1]", q);
    return -1;
}

static int parse_stamp(const char *s, size_t n, metric_event *ev, char *reason)
{
    int64_t secs = 0;
    if (!parse_unix_seconds(s, n, &secs)) {
        char q[QUOTE_BUF];
        quote_token(q, sizeof q, s, n);
        snprintf(reason, STATSD_REASON_MAX,
                 "timestamp \"%s\" is not a valid Unix time in seconds", q);
        return -1;
    }
    ev->stamp_ms = secs * 1000;
    ev->flags |= EVENT_CLIENT_STAMP;
    return 0;
}

/* Parses "name:" at the start of [*pp, end) and finds the value after it
 * (parsed once the type is known: a set's is a member, not a number); leaves
 * *pp at the '|' that follows the value, whose bytes are [*value,
 * *value + *value_len). */
static int parse_name_value(const char **pp, const char *end, const parse_limits *lim,
                            metric_event *ev, const char **value_out, size_t *value_len,
                            char *reason)
{
    const char *p = *pp;
    const char *name = p;
    while (p < end && is_name_char((unsigned char)*p)) p++;
    size_t name_len = (size_t)(p - name);

    if (p == end || *p == '|') {
        snprintf(reason, STATSD_REASON_MAX, "missing ':' between name and value");
        return -1;
    }
    if (*p != ':') {
        char c[16];
        describe_char(c, sizeof c, (unsigned char)*p);
        snprintf(reason, STATSD_REASON_MAX, "invalid character %s in metric name", c);
        return -1;
    }
    if (name_len == 0) {
        snprintf(reason, STATSD_REASON_MAX, "empty metric name");
        return -1;
    }
    if (name_len > lim->max_name_len) {
        snprintf(reason, STATSD_REASON_MAX, "metric name longer than %zu bytes", lim->max_name_len);
        return -1;
    }
    ev->name = name;
    ev->name_len = (uint16_t)name_len;

    const char *value = ++p;
    while (p < end && *p != '|') p++;
    if (p == end) {
        if (p == value) {
            snprintf(reason, STATSD_REASON_MAX, "missing value after ':'");
            return -1;
        }
        snprintf(reason, STATSD_REASON_MAX,
                 "missing metric type (expected |c, |g, |ms, |h, |d or |s after the value)");
        return -1;
    }
    *value_out = value;
    *value_len = (size_t)(p - value);
    *pp = p;
    return 0;
}

/* Parses the optional "|@", "|#", "|T" sections starting at p ('|' or end). */
static int parse_sections(statsd_batch *b, const char *p, const char *end,
                          const parse_limits *lim, metric_event *ev, char *reason)
{
    bool seen_rate = false, seen_tags = false, seen_stamp = false;
    while (p < end) {
        assert(*p == '|');
        const char *tok = ++p;
        while (p < end && *p != '|') p++;
        size_t n = (size_t)(p - tok);
        if (n == 0) {
            snprintf(reason, STATSD_REASON_MAX, "empty section after '|'");
            return -1;
        }
        const char *arg = tok + 1;
        size_t argn = n - 1;
        switch (tok[0]) {
        case '@':
            if (seen_rate) {
                snprintf(reason, STATSD_REASON_MAX, "duplicate sample rate section");
                return -1;
            }
            seen_rate = true;
            if (parse_rate(arg, argn, ev, reason) != 0) return -1;
            break;
        case '#': {
            if (seen_tags) {
                snprintf(reason, STATSD_REASON_MAX, "duplicate tags section");
                return -1;
            }
            seen_tags = true;
            if (argn == 0) {
                snprintf(reason, STATSD_REASON_MAX, "empty tags section '|#'");
                return -1;
            }
            const char *tags = NULL;
            size_t tags_len = 0;
            if (canonicalise_tags(b, arg, argn, lim->max_tags_len, &tags, &tags_len, reason) != 0)
                return -1;
            ev->tags = tags;
            ev->tags_len = (uint16_t)tags_len;
            break;
        }
        case 'T':
            if (seen_stamp) {
                snprintf(reason, STATSD_REASON_MAX, "duplicate timestamp section");
                return -1;
            }
            seen_stamp = true;
            if (parse_stamp(arg, argn, ev, reason) != 0) return -1;
            break;
        default: {
            char q[QUOTE_BUF];
            quote_token(q, sizeof q, tok, n);
            snprintf(reason, STATSD_REASON_MAX,
                     "unknown section \"|%s\" (expected |@rate, |#tags or |T<seconds>)", q);
            return -1;
        }
        }
    }
    return 0;
}

/* Parses one non-empty line (no '\n', no trailing '\r') into *ev.
 * Returns 0, or -1 with reason filled; on failure the arena is unchanged. */
static int parse_line(statsd_batch *b, const char *line, size_t n, const parse_limits *lim,
                      int64_t default_stamp_ms, metric_event *ev, char *reason)
{
    const char *p = line, *end = line + n;
    size_t arena_mark = b->arena_len;

    ev->flags = 0;
    ev->tags = NULL;
    ev->tags_len = 0;
    ev->sample_rate = 1.0;
    ev->stamp_ms = default_stamp_ms;
    ev->member = 0;

    const char *value = NULL;
    size_t value_len = 0;
    if (parse_name_value(&p, end, lim, ev, &value, &value_len, reason) != 0) goto fail;
    assert(p < end && *p == '|');
    const char *type = ++p;
    while (p < end && *p != '|') p++;
    if (parse_type(type, (size_t)(p - type), ev, reason) != 0) goto fail;
    int set = ev->type == METRIC_SET;
    if ((set ? parse_member(value, value_len, ev, reason)
             : parse_value(value, value_len, ev, reason)) != 0)
        goto fail;
    if (ev->type == METRIC_GAUGE && (value[0] == '+' || value[0] == '-'))
        ev->flags |= EVENT_GAUGE_RELATIVE;
    if (parse_sections(b, p, end, lim, ev, reason) != 0) goto fail;
    if (set)
        ev->sample_rate = 1.0; /* a set counts distinct members: a rate says nothing */
    if (!event_amount_in_domain(ev->value, ev->sample_rate)) {
        snprintf(reason, STATSD_REASON_MAX,
                 "value %.17g at sample rate %.17g: |value / rate| and 1 / rate may be at most "
                 "%g",
                 ev->value, ev->sample_rate, EVENT_AMOUNT_MAX);
        goto fail;
    }

    assert(isfinite(ev->value));
    assert(ev->sample_rate > 0.0 && ev->sample_rate <= 1.0);
    assert(ev->name_len >= 1 && ev->name_len <= EVENT_NAME_MAX);
    assert(ev->type == METRIC_SET || ev->member == 0);
    return 0;
fail:
    b->arena_len = arena_mark;
    return -1;
}

/* ---- batch --------------------------------------------------------------- */

void statsd_batch_init(statsd_batch *b)
{
    assert(b != NULL);
    memset(b, 0, sizeof *b);
}

void statsd_batch_free(statsd_batch *b)
{
    if (b == NULL) return;
    free(b->events);
    free(b->errors);
    free(b->arena);
    memset(b, 0, sizeof *b);
}

/* Makes the arena hold at least `need` bytes; its old contents are dropped. */
static int reserve_arena(statsd_batch *b, size_t need, char *err, size_t errlen)
{
    if (b->arena_cap >= need) return 0;
    char *a = malloc(need);
    if (a == NULL) {
        snprintf(err, errlen, "out of memory allocating %zu-byte tag arena", need);
        return -1;
    }
    free(b->arena);
    b->arena = a;
    b->arena_cap = need;
    return 0;
}

/* Grows the event array so one more event fits. */
static int reserve_event(statsd_batch *b, char *err, size_t errlen)
{
    if (b->count < b->events_cap) return 0;
    size_t cap = b->events_cap ? b->events_cap * 2 : 256;
    if (cap > SIZE_MAX / sizeof *b->events) cap = SIZE_MAX / sizeof *b->events;
    if (cap <= b->count) {
        snprintf(err, errlen, "too many events for memory");
        return -1;
    }
    metric_event *ev = realloc(b->events, cap * sizeof *ev);
    if (ev == NULL) {
        snprintf(err, errlen, "out of memory growing event array to %zu events", cap);
        return -1;
    }
    b->events = ev;
    b->events_cap = cap;
    return 0;
}

/* Counts an error on `line` and records its detail while under max_errors. */
static int add_error(statsd_batch *b, size_t line, const char *reason, size_t max_errors,
                     char *err, size_t errlen)
{
    b->error_total++;
    if (b->error_count >= max_errors) return 0;
    if (b->error_count == b->errors_cap) {
        size_t cap = b->errors_cap ? b->errors_cap * 2 : 16;
        if (cap > max_errors) cap = max_errors;
        statsd_error *e = realloc(b->errors, cap * sizeof *e);
        if (e == NULL) {
            snprintf(err, errlen, "out of memory growing error list to %zu entries", cap);
            return -1;
        }
        b->errors = e;
        b->errors_cap = cap;
    }
    statsd_error *e = &b->errors[b->error_count++];
    e->line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    return 0;
}

int statsd_parse_batch(statsd_batch *b, const char *body, size_t len,
                       const statsd_limits *limits, int64_t default_stamp_ms,
                       char *err, size_t errlen)
{
    assert(b != NULL && limits != NULL);
    assert(body != NULL || len == 0);

    b->count = 0;
    b->error_count = 0;
    b->error_total = 0;
    b->arena_len = 0;

    parse_limits lim = {
        .max_name_len = limits->max_name_len < EVENT_NAME_MAX ? limits->max_name_len
                                                              : EVENT_NAME_MAX,
        .max_tags_len = limits->max_tags_len < EVENT_TAGS_MAX ? limits->max_tags_len
                                                              : EVENT_TAGS_MAX,
    };

    if (reserve_arena(b, len, err, errlen) != 0) return -1;

    const char *p = body, *end = body + len;
    size_t line_no = 0, nonempty = 0;
    char reason[STATSD_REASON_MAX];

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line = p;
        const char *line_end = nl ? nl : end;
        p = nl ? nl + 1 : end;
        line_no++;

        size_t n = (size_t)(line_end - line);
        if (n > 0 && line[n - 1] == '\r') n--;
        if (n == 0) continue;

        if (++nonempty > limits->max_lines) {
            snprintf(reason, sizeof reason, "too many lines (limit %zu)", limits->max_lines);
            if (add_error(b, line_no, reason, limits->max_errors, err, errlen) != 0) goto oom;
            break;
        }
        if (reserve_event(b, err, errlen) != 0) goto oom;
        if (parse_line(b, line, n, &lim, default_stamp_ms, &b->events[b->count], reason) == 0) {
            b->count++;
        } else if (add_error(b, line_no, reason, limits->max_errors, err, errlen) != 0) {
            goto oom;
        }
    }

    if (b->error_total > 0) {
        b->count = 0;
        return STATSD_INVALID;
    }
    return 0;
oom:
    b->count = 0;
    return -1;
}
