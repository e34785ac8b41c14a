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
 * One line, two callers. check_line() is the grammar; statsd_check_line()
 * (the UDP/TCP listeners: a line alone) and statsd_parse_batch() (every
 * line of an HTTP body) both run it, so a line the listeners keep is a line
 * a batch accepts. Every refusal carries a reason code (statsd.h) besides
 * its text, so drops can be counted by kind.
 *
 * Character classes. Names and tags are checked against ASCII bitmaps; only
 * a byte >= 0x80 takes the slow path, read_utf8(), which accepts one
 * well-formed UTF-8 sequence (shortest form, no surrogates) that is not a C1
 * control or a Unicode space. Plain ASCII lines never leave the bitmaps.
 *
 * Packed values ("n:1:2:3|d", DogStatsD 1.1) are checked once (each value
 * parsed, the largest magnitude checked against the domain at the line's
 * rate) and parsed again only when their events are emitted; a one-value
 * line, the common case, is parsed once. DogStatsD events and service checks
 * are checked and counted, never turned into events.
 *
 * Reasons are formatted only on the error path; quoted tokens are clipped and
 * non-printable bytes escaped so the reason is always safe to show.
 */
#include "statsd.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
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

/* name: [A-Za-z0-9_.-] (and UTF-8 beyond ASCII, on the slow path) */
#define NAME_LO (RANGE('0', '9') | BIT('-') | BIT('.'))
#define NAME_HI (RANGE('A' - 64, 'Z' - 64) | BIT('_' - 64) | RANGE('a' - 64, 'z' - 64))
/* tag: printable ASCII (0x20-0x7e) but ',' and '|' (and UTF-8, slow path) */
#define TAG_LO (RANGE(0x20, 0x3f) & ~BIT(','))
#define TAG_HI (RANGE(0, 0x7e - 64) & ~BIT('|' - 64))

static inline bool is_in_class(unsigned char c, uint64_t lo, uint64_t hi)
{
    if (c < 64) return (lo >> c) & 1u;
    if (c < 128) return (hi >> (c - 64)) & 1u;
    return false;
}

static inline bool is_name_char(unsigned char c) { return is_in_class(c, NAME_LO, NAME_HI); }
static inline bool is_tag_char(unsigned char c) { return is_in_class(c, TAG_LO, TAG_HI); }

/* ---- UTF-8 (the slow path: only bytes >= 0x80 get here) ------------------ */

typedef enum utf8_status { UTF8_OK, UTF8_MALFORMED, UTF8_REFUSED } utf8_status;

/* Reads the one UTF-8 sequence at [s, end) (s[0] >= 0x80): well-formed
 * (RFC 3629: shortest form, no surrogates, at most U+10FFFF), and not a C1
 * control or a Unicode space (ambiguous in a name, invisible in a tag).
 * Sets *len to its length on UTF8_OK or UTF8_REFUSED. */
static utf8_status read_utf8(const unsigned char *s, const unsigned char *end, size_t *len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf; /* the range of the second byte */
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1fu; }
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3; cp = c & 0x0fu;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4; cp = c & 0x07u;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else {
        return UTF8_MALFORMED;
    }
    if ((size_t)(end - s) < n) return UTF8_MALFORMED;
    if (s[1] < lo || s[1] > hi) return UTF8_MALFORMED;
    cp = (cp << 6) | (s[1] & 0x3fu);
    for (size_t i = 2; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return UTF8_MALFORMED;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    *len = n;
    if ((cp >= 0x80 && cp <= 0xa0) || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200b) ||
        cp == 0x2028 || cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000 ||
        cp == 0xfeff)
        return UTF8_REFUSED;
    return UTF8_OK;
}

/* ---- reasons ------------------------------------------------------------- */

static const char *const REASON_NAMES[STATSD_CODE_COUNT] = {
    [STATSD_OK] = "ok",
    [STATSD_BAD_NAME] = "bad_name",
    [STATSD_NAME_TOO_LONG] = "name_too_long",
    [STATSD_BAD_UTF8] = "bad_utf8",
    [STATSD_BAD_VALUE] = "bad_value",
    [STATSD_TOO_MANY_VALUES] = "too_many_values",
    [STATSD_BAD_MEMBER] = "bad_member",
    [STATSD_UNKNOWN_TYPE] = "unknown_type",
    [STATSD_BAD_RATE] = "bad_rate",
    [STATSD_ZERO_RATE] = "zero_rate",
    [STATSD_BAD_TAGS] = "bad_tags",
    [STATSD_TAGS_TOO_LONG] = "tags_too_long",
    [STATSD_BAD_TIMESTAMP] = "bad_timestamp",
    [STATSD_DUPLICATE_SECTION] = "duplicate_section",
    [STATSD_UNKNOWN_SECTION] = "unknown_section",
    [STATSD_OUT_OF_DOMAIN] = "out_of_domain",
    [STATSD_BAD_EVENT] = "bad_event",
    [STATSD_BAD_SERVICE_CHECK] = "bad_service_check",
    [STATSD_TOO_MANY_LINES] = "too_many_lines",
    [STATSD_LINE_TOO_LONG] = "line_too_long",
};

const char *statsd_reason_name(int code)
{
    if (code < 0 || code >= STATSD_CODE_COUNT || REASON_NAMES[code] == NULL) return "unknown";
    return REASON_NAMES[code];
}

/* Fills reason and returns code (so a refusal is one statement). */
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static int refuse(char *reason, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, STATSD_REASON_MAX, fmt, ap);
    va_end(ap);
    return code;
}

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

/* Checks one tag [s, s+n) byte by byte: the bitmap for ASCII, the UTF-8
 * reader only from the first byte >= 0x80 on. */
static int check_tag(const char *s, size_t n, char *reason)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    char q[QUOTE_BUF];
    while (p < end) {
        if (is_tag_char(*p)) {
            p++;
            continue;
        }
        size_t len = 0;
        utf8_status st = *p >= 0x80 ? read_utf8(p, end, &len) : UTF8_REFUSED;
        if (st == UTF8_OK) {
            p += len;
            continue;
        }
        quote_token(q, sizeof q, s, n);
        if (st == UTF8_MALFORMED)
            return refuse(reason, STATSD_BAD_UTF8, "malformed UTF-8 in tag \"%s\"", q);
        return refuse(reason, STATSD_BAD_TAGS, "invalid tag \"%s\"", q);
    }
    return STATSD_OK;
}

/* Canonicalises the raw tags [s, s+n) into out (room for n bytes): sorted,
 * duplicates and empty tags dropped, ','-joined. Returns STATSD_OK with
 * *out_len set, or a code with reason filled. */
static int canonicalise_tags(const char *s, size_t n, size_t max_tags_len, char *out,
                             size_t *out_len, char *reason)
{
    tag_slice tags[TAGS_PER_LINE_MAX];
    size_t count = 0;

    const char *p = s, *end = s + n;
    for (bool last = false; !last;) {
        const char *start = p;
        const char *comma = memchr(p, ',', (size_t)(end - p));
        last = comma == NULL;
        size_t len = (size_t)((last ? end : comma) - start);
        if (!last) p = comma + 1;
        if (len == 0) continue; /* "|#", "a,,b", "a,": empty tags are skipped */
        if (len > TAG_LEN_MAX)
            return refuse(reason, STATSD_TAGS_TOO_LONG, "tag longer than %d bytes", TAG_LEN_MAX);
        int rc = check_tag(start, len, reason);
        if (rc != STATSD_OK) return rc;
        if (count == TAGS_PER_LINE_MAX)
            return refuse(reason, STATSD_TAGS_TOO_LONG, "too many tags (limit %d)",
                          TAGS_PER_LINE_MAX);
        tags[count].p = start;
        tags[count].n = len;
        count++;
    }

    sort_tags(tags, count);

    size_t total = 0;
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (kept > 0 && compare_tags(&tags[kept - 1], &tags[i]) == 0) continue;
        tags[kept++] = tags[i];
        total += tags[i].n + (kept > 1);
    }
    if (total > max_tags_len)
        return refuse(reason, STATSD_TAGS_TOO_LONG,
                      "tags longer than %zu bytes (canonical form is %zu)", max_tags_len, total);

    /* Canonical tags are never longer than the raw section. */
    assert(total <= n);
    char *w = out;
    for (size_t i = 0; i < kept; i++) {
        if (i > 0) *w++ = ',';
        memcpy(w, tags[i].p, tags[i].n);
        w += tags[i].n;
    }
    *out_len = total;
    return STATSD_OK;
}

/* ---- one line ------------------------------------------------------------ */

typedef struct parse_limits {
    size_t max_name_len;
    size_t max_tags_len;
} parse_limits;

/* What the line checker found: the first event, and where the packed
 * values are (the batch makes one event of each). */
typedef struct line_result {
    statsd_line_kind kind;
    metric_event ev;
    size_t values;
    const char *value;   /* the value section "v[:v...]" of a metric line */
    size_t value_len;
} line_result;

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
    if (n == 0) return refuse(reason, STATSD_UNKNOWN_TYPE, "missing metric type after '|'");
    quote_token(q, sizeof q, s, n);
    return refuse(reason, STATSD_UNKNOWN_TYPE, "unknown metric type \"%s\"", q);
}

/* One number of a value section. */
static int parse_value(const char *s, size_t n, double *out, bool packed, char *reason)
{
    char q[QUOTE_BUF];
    switch (parse_number(s, n, out)) {
    case NUM_OK:
        return STATSD_OK;
    case NUM_EMPTY:
        return refuse(reason, STATSD_BAD_VALUE,
                      packed ? "empty value in packed values" : "missing value after ':'");
    case NUM_TOO_LONG:
        return refuse(reason, STATSD_BAD_VALUE, "value too long (more than %d bytes)",
                      VALUE_TOKEN_MAX);
    case NUM_RANGE:
        quote_token(q, sizeof q, s, n);
        return refuse(reason, STATSD_BAD_VALUE, "value \"%s\" is out of range", q);
    case NUM_INVALID:
        break;
    }
    quote_token(q, sizeof q, s, n);
    return refuse(reason, STATSD_BAD_VALUE, "value \"%s\" is not a number", q);
}

/* The value section [s, s+n) of a non-set line: one value or up to
 * STATSD_VALUES_MAX ':'-separated ones, each a number. Sets r->ev.value (the
 * first), *max_abs (the largest magnitude, for the domain check) and
 * r->values. */
static int parse_values(const char *s, size_t n, line_result *r, double *max_abs, char *reason)
{
    const char *colon = memchr(s, ':', n);
    if (colon == NULL) { /* the common case: one value */
        int rc = parse_value(s, n, &r->ev.value, false, reason);
        if (rc != STATSD_OK) return rc;
        *max_abs = fabs(r->ev.value);
        r->values = 1;
        return STATSD_OK;
    }
    const char *p = s, *end = s + n;
    size_t count = 0;
    double m = 0;
    for (;;) {
        const char *tok = p;
        const char *c = memchr(p, ':', (size_t)(end - p));
        const char *tok_end = c ? c : end;
        if (++count > STATSD_VALUES_MAX)
            return refuse(reason, STATSD_TOO_MANY_VALUES, "more than %d packed values",
                          STATSD_VALUES_MAX);
        double v = 0;
        int rc = parse_value(tok, (size_t)(tok_end - tok), &v, true, reason);
        if (rc != STATSD_OK) return rc;
        if (count == 1) r->ev.value = v;
        if (fabs(v) > m) m = fabs(v);
        if (c == NULL) break;
        p = c + 1;
    }
    *max_abs = m;
    r->values = count;
    return STATSD_OK;
}

/* A set's member [s, s+n): 1..STATSD_MEMBER_MAX bytes, none a control
 * character ('|' and '\n' cannot occur: they end the field and the line).
 * The event keeps only its digest (event.h). */
static int parse_member(const char *s, size_t n, metric_event *ev, char *reason)
{
    if (n == 0) return refuse(reason, STATSD_BAD_MEMBER, "missing set member after ':'");
    if (n > STATSD_MEMBER_MAX)
        return refuse(reason, STATSD_BAD_MEMBER, "set member longer than %d bytes",
                      STATSD_MEMBER_MAX);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return refuse(reason, STATSD_BAD_MEMBER,
                          "byte 0x%02x in set member (control characters are not allowed)", c);
    }
    ev->member = hash_digest64(s, n);
    ev->value = 0.0;
    return STATSD_OK;
}

static int parse_rate(const char *s, size_t n, metric_event *ev, char *reason)
{
    char q[QUOTE_BUF];
    double rate = 0;
    num_status st = parse_number(s, n, &rate);
    if (st == NUM_OK && rate > 0.0 && rate <= 1.0) {
        ev->sample_rate = rate;
        return STATSD_OK;
    }
    quote_token(q, sizeof q, s, n);
    if (st == NUM_EMPTY) return refuse(reason, STATSD_BAD_RATE, "empty sample rate after '|@'");
    if (st != NUM_OK && st != NUM_RANGE)
        return refuse(reason, STATSD_BAD_RATE, "sample rate \"%s\" is not a number", q);
    if (st == NUM_OK && rate == 0.0)
        return refuse(reason, STATSD_ZERO_RATE,
                      "sample rate \"%s\" is zero (a line sampled at rate 0 was never sent)", q);
    return refuse(reason, STATSD_BAD_RATE, "sample rate \"%s\" must be in (0, 1]", q);
}

static int parse_stamp(const char *s, size_t n, metric_event *ev, char *reason)
{
    int64_t secs = 0;
    if (!parse_unix_seconds(s, n, &secs)) {
        char q[QUOTE_BUF];
        quote_token(q, sizeof q, s, n);
        return refuse(reason, STATSD_BAD_TIMESTAMP,
                      "timestamp \"%s\" is not a valid Unix time in seconds", q);
    }
    ev->stamp_ms = secs * 1000;
    ev->flags |= EVENT_CLIENT_STAMP;
    return STATSD_OK;
}

/* Scans a name from p: ASCII by the bitmap, UTF-8 beyond it. Stops at the
 * first byte a name cannot hold (returned in *stop); returns STATSD_OK or a
 * UTF-8 refusal. */
static int scan_name(const char *p, const char *end, const char **stop, char *reason)
{
    const unsigned char *u = (const unsigned char *)p, *e = (const unsigned char *)end;
    for (;;) {
        while (u < e && is_name_char(*u)) u++;
        if (u == e || *u < 0x80) break;
        size_t len = 0;
        utf8_status st = read_utf8(u, e, &len);
        if (st == UTF8_MALFORMED)
            return refuse(reason, STATSD_BAD_UTF8, "malformed UTF-8 (byte 0x%02x) in metric name",
                          *u);
        if (st == UTF8_REFUSED)
            return refuse(reason, STATSD_BAD_NAME,
                          "Unicode control or space character in metric name");
        u += len;
    }
    *stop = (const char *)u;
    return STATSD_OK;
}

/* A whole name [s, s+n) (a service check's): every byte a name byte. */
static int check_name(const char *s, size_t n, size_t max_len, char *reason)
{
    const char *stop = NULL;
    int rc = scan_name(s, s + n, &stop, reason);
    if (rc != STATSD_OK) return rc;
    if (stop != s + n) {
        char c[16];
        describe_char(c, sizeof c, (unsigned char)*stop);
        return refuse(reason, STATSD_BAD_NAME, "invalid character %s in name", c);
    }
    if (n == 0) return refuse(reason, STATSD_BAD_NAME, "empty name");
    if (n > max_len) return refuse(reason, STATSD_NAME_TOO_LONG, "name longer than %zu bytes", max_len);
    return STATSD_OK;
}

/* Parses "name:" at the start of [*pp, end) and finds the value section
 * after it (read once the type is known: a set's is a member, not numbers);
 * leaves *pp at the '|' that follows it. */
static int parse_name_value(const char **pp, const char *end, const parse_limits *lim,
                            line_result *r, char *reason)
{
    const char *name = *pp, *p = NULL;
    int rc = scan_name(name, end, &p, reason);
    if (rc != STATSD_OK) return rc;
    size_t name_len = (size_t)(p - name);

    if (p == end || *p == '|')
        return refuse(reason, STATSD_BAD_NAME, "missing ':' between name and value");
    if (*p != ':') {
        char c[16];
        describe_char(c, sizeof c, (unsigned char)*p);
        return refuse(reason, STATSD_BAD_NAME, "invalid character %s in metric name", c);
    }
    if (name_len == 0) return refuse(reason, STATSD_BAD_NAME, "empty metric name");
    if (name_len > lim->max_name_len)
        return refuse(reason, STATSD_NAME_TOO_LONG, "metric name longer than %zu bytes",
                      lim->max_name_len);
    r->ev.name = name;
    r->ev.name_len = (uint16_t)name_len;

    const char *value = ++p;
    const char *bar = memchr(p, '|', (size_t)(end - p));
    if (bar == NULL) {
        if (p == end) return refuse(reason, STATSD_BAD_VALUE, "missing value after ':'");
        return refuse(reason, STATSD_UNKNOWN_TYPE,
                      "missing metric type (expected |c, |g, |ms, |h, |d or |s after the value)");
    }
    r->value = value;
    r->value_len = (size_t)(bar - value);
    *pp = bar;
    return STATSD_OK;
}

/* The sections a line may have after its fixed part; each at most once. */
enum section {
    SEC_RATE, SEC_TAGS, SEC_STAMP, SEC_CONTAINER, SEC_EXTERNAL, SEC_CARD,
    SEC_DATE, SEC_HOST, SEC_KEY, SEC_PRIORITY, SEC_SOURCE, SEC_ALERT, SEC_MESSAGE,
};
static const char *const SECTION_NAMES[] = {
    [SEC_RATE] = "sample rate", [SEC_TAGS] = "tags", [SEC_STAMP] = "timestamp",
    [SEC_CONTAINER] = "container id (|c:)", [SEC_EXTERNAL] = "external data (|e:)",
    [SEC_CARD] = "cardinality (|card:)", [SEC_DATE] = "date (|d:)", [SEC_HOST] = "host (|h:)",
    [SEC_KEY] = "aggregation key (|k:)", [SEC_PRIORITY] = "priority (|p:)",
    [SEC_SOURCE] = "source type (|s:)", [SEC_ALERT] = "alert type (|t:)",
    [SEC_MESSAGE] = "message (|m:)",
};

static bool has_prefix(const char *s, size_t n, const char *prefix)
{
    size_t k = strlen(prefix);
    return n >= k && memcmp(s, prefix, k) == 0;
}

/* Which section the token [tok, tok+n) opens for a line of `kind`; sets
 * *skip to the length of its prefix. -1: none. */
static int classify_section(const char *tok, size_t n, statsd_line_kind kind, size_t *skip)
{
    *skip = 1;
    switch (tok[0]) {
    case '#': return SEC_TAGS;
    case '@': return kind == STATSD_LINE_METRIC ? SEC_RATE : -1;
    case 'T': return kind == STATSD_LINE_METRIC ? SEC_STAMP : -1;
    default: break;
    }
    *skip = 2;
    if (has_prefix(tok, n, "card:")) { *skip = 5; return SEC_CARD; }
    if (has_prefix(tok, n, "c:")) return SEC_CONTAINER;
    if (has_prefix(tok, n, "e:")) return SEC_EXTERNAL;
    if (kind == STATSD_LINE_METRIC || n < 2 || tok[1] != ':') return -1;
    switch (tok[0]) {
    case 'd': return SEC_DATE;
    case 'h': return SEC_HOST;
    case 'k': return kind == STATSD_LINE_EVENT ? SEC_KEY : -1;
    case 'p': return kind == STATSD_LINE_EVENT ? SEC_PRIORITY : -1;
    case 's': return kind == STATSD_LINE_EVENT ? SEC_SOURCE : -1;
    case 't': return kind == STATSD_LINE_EVENT ? SEC_ALERT : -1;
    case 'm': return kind == STATSD_LINE_SERVICE_CHECK ? SEC_MESSAGE : -1;
    default: return -1;
    }
}

static bool token_is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* Parses the sections starting at p ('|' or end) of a line of r->kind;
 * canonical tags go to tags_out (room for the raw section). */
static int parse_sections(const char *p, const char *end, const parse_limits *lim,
                          line_result *r, char *tags_out, char *reason)
{
    unsigned seen = 0;
    metric_event *ev = &r->ev;
    int bad = r->kind == STATSD_LINE_EVENT ? STATSD_BAD_EVENT : STATSD_BAD_SERVICE_CHECK;
    char q[QUOTE_BUF];
    while (p < end) {
        assert(*p == '|');
        const char *tok = ++p;
        const char *bar = memchr(p, '|', (size_t)(end - p));
        p = bar ? bar : end;
        size_t n = (size_t)(p - tok);
        if (n == 0) return refuse(reason, STATSD_UNKNOWN_SECTION, "empty section after '|'");
        size_t skip = 0;
        int sec = classify_section(tok, n, r->kind, &skip);
        if (sec < 0) {
            quote_token(q, sizeof q, tok, n);
            return refuse(reason, STATSD_UNKNOWN_SECTION,
                          r->kind == STATSD_LINE_METRIC
                              ? "unknown section \"|%s\" (expected |@rate, |#tags or |T<seconds>)"
                              : "unknown section \"|%s\"",
                          q);
        }
        if (sec == SEC_MESSAGE) { /* a service check's message: the rest of the line */
            p = end;
            n = (size_t)(end - tok);
        }
        if (seen & (1u << sec))
            return refuse(reason, STATSD_DUPLICATE_SECTION, "duplicate %s section",
                          SECTION_NAMES[sec]);
        seen |= 1u << sec;
        const char *arg = tok + skip;
        size_t argn = n - skip;
        int rc = STATSD_OK;
        switch (sec) {
        case SEC_RATE: rc = parse_rate(arg, argn, ev, reason); break;
        case SEC_STAMP: rc = parse_stamp(arg, argn, ev, reason); break;
        case SEC_TAGS: {
            size_t tags_len = 0;
            rc = canonicalise_tags(arg, argn, lim->max_tags_len, tags_out, &tags_len, reason);
            if (rc == STATSD_OK) {
                ev->tags = tags_len ? tags_out : NULL;
                ev->tags_len = (uint16_t)tags_len;
            }
            break;
        }
        case SEC_DATE: {
            int64_t secs = 0;
            if (!parse_unix_seconds(arg, argn, &secs)) {
                quote_token(q, sizeof q, arg, argn);
                rc = refuse(reason, bad, "date \"%s\" is not a valid Unix time in seconds", q);
            }
            break;
        }
        case SEC_PRIORITY:
            if (!token_is(arg, argn, "normal") && !token_is(arg, argn, "low")) {
                quote_token(q, sizeof q, arg, argn);
                rc = refuse(reason, bad, "priority \"%s\" is not normal or low", q);
            }
            break;
        case SEC_ALERT:
            if (!token_is(arg, argn, "error") && !token_is(arg, argn, "warning") &&
                !token_is(arg, argn, "info") && !token_is(arg, argn, "success")) {
                quote_token(q, sizeof q, arg, argn);
                rc = refuse(reason, bad, "alert type \"%s\" is not error, warning, info or success",
                            q);
            }
            break;
        default: /* container id, external data, cardinality, host, key, source, message */
            break;
        }
        if (rc != STATSD_OK) return rc;
    }
    return STATSD_OK;
}

/* Reads a decimal length of 1..6 digits at *pp ending in `stop`. */
static bool read_length(const char **pp, const char *end, char stop, size_t *out)
{
    const char *p = *pp;
    size_t v = 0, digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 6) {
        v = v * 10 + (size_t)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || p == end || *p != stop) return false;
    *out = v;
    *pp = p + 1;
    return true;
}

static bool has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) return true;
    }
    return false;
}

/* "_e{T,X}:title|text{|section}" (the line starts with "_e{"). */
static int check_event(const char *line, const char *end, const parse_limits *lim,
                       line_result *r, char *tags_out, char *reason)
{
    const char *p = line + 3;
    size_t title_len = 0, text_len = 0;
    r->kind = STATSD_LINE_EVENT;
    if (!read_length(&p, end, ',', &title_len) || !read_length(&p, end, '}', &text_len) ||
        p == end || *p != ':')
        return refuse(reason, STATSD_BAD_EVENT,
                      "event header is not \"_e{title_length,text_length}:\"");
    p++;
    if (title_len == 0) return refuse(reason, STATSD_BAD_EVENT, "event has an empty title");
    size_t rest = (size_t)(end - p);
    if (title_len > rest || rest - title_len < 1 + text_len)
        return refuse(reason, STATSD_BAD_EVENT,
                      "event title and text are shorter than their lengths (%zu, %zu bytes)",
                      title_len, text_len);
    if (p[title_len] != '|')
        return refuse(reason, STATSD_BAD_EVENT, "event title is not %zu bytes followed by '|'",
                      title_len);
    const char *text = p + title_len + 1;
    const char *after = text + text_len;
    if (after < end && *after != '|')
        return refuse(reason, STATSD_BAD_EVENT, "event text is not %zu bytes followed by '|' or the end",
                      text_len);
    if (has_control(p, title_len) || has_control(text, text_len))
        return refuse(reason, STATSD_BAD_EVENT, "control character in event title or text");
    return parse_sections(after, end, lim, r, tags_out, reason);
}

/* "_sc|name|status{|section}" (the line starts with "_sc|"). */
static int check_service_check(const char *line, const char *end, const parse_limits *lim,
                               line_result *r, char *tags_out, char *reason)
{
    const char *name = line + 4;
    r->kind = STATSD_LINE_SERVICE_CHECK;
    const char *bar = memchr(name, '|', (size_t)(end - name));
    if (bar == NULL)
        return refuse(reason, STATSD_BAD_SERVICE_CHECK, "service check has no status");
    char why[STATSD_REASON_MAX];
    if (check_name(name, (size_t)(bar - name), lim->max_name_len, why) != STATSD_OK)
        return refuse(reason, STATSD_BAD_SERVICE_CHECK, "service check %s", why);
    const char *status = bar + 1;
    const char *p = memchr(status, '|', (size_t)(end - status));
    if (p == NULL) p = end;
    if (p - status != 1 || *status < '0' || *status > '3') {
        char q[QUOTE_BUF];
        quote_token(q, sizeof q, status, (size_t)(p - status));
        return refuse(reason, STATSD_BAD_SERVICE_CHECK,
                      "service check status \"%s\" is not 0, 1, 2 or 3", q);
    }
    return parse_sections(p, end, lim, r, tags_out, reason);
}

/* Checks one non-empty line (no '\n', no trailing '\r'), the one grammar of
 * statsd.h. Canonical tags go to tags_out (room for min(n, max_tags_len)
 * bytes). Returns STATSD_OK with *r filled (stamp_ms 0 unless "|T"), or a
 * code with reason filled. */
static int check_line(const char *line, size_t n, const parse_limits *lim, char *tags_out,
                      line_result *r, char *reason)
{
    const char *p = line, *end = line + n;
    metric_event *ev = &r->ev;

    memset(ev, 0, sizeof *ev);
    ev->sample_rate = 1.0;
    r->kind = STATSD_LINE_METRIC;
    r->values = 0;
    r->value = NULL;
    r->value_len = 0;

    if (line[0] == '_' && n >= 3) {
        if (line[1] == 'e' && line[2] == '{')
            return check_event(line, end, lim, r, tags_out, reason);
        if (n >= 4 && line[1] == 's' && line[2] == 'c' && line[3] == '|')
            return check_service_check(line, end, lim, r, tags_out, reason);
    }

    int rc = parse_name_value(&p, end, lim, r, reason);
    if (rc != STATSD_OK) return rc;
    assert(p < end && *p == '|');
    const char *type = ++p;
    const char *bar = memchr(p, '|', (size_t)(end - p));
    p = bar ? bar : end;
    rc = parse_type(type, (size_t)(p - type), ev, reason);
    if (rc != STATSD_OK) return rc;
    bool set = ev->type == METRIC_SET;
    double max_abs = 0;
    if (set) {
        rc = parse_member(r->value, r->value_len, ev, reason);
        r->values = 1;
    } else {
        rc = parse_values(r->value, r->value_len, r, &max_abs, reason);
    }
    if (rc != STATSD_OK) return rc;
    if (ev->type == METRIC_GAUGE && (r->value[0] == '+' || r->value[0] == '-'))
        ev->flags |= EVENT_GAUGE_RELATIVE;
    rc = parse_sections(p, end, lim, r, tags_out, reason);
    if (rc != STATSD_OK) return rc;
    if (set) ev->sample_rate = 1.0; /* a set counts distinct members: a rate says nothing */
    if (!event_amount_in_domain(max_abs, ev->sample_rate))
        return refuse(reason, STATSD_OUT_OF_DOMAIN,
                      "value %.17g at sample rate %.17g: |value / rate| and 1 / rate may be at "
                      "most %g",
                      r->values > 1 ? max_abs : ev->value, ev->sample_rate, EVENT_AMOUNT_MAX);

    assert(isfinite(ev->value));
    assert(ev->sample_rate > 0.0 && ev->sample_rate <= 1.0);
    assert(ev->name_len >= 1 && ev->name_len <= EVENT_NAME_MAX);
    assert(ev->type == METRIC_SET || ev->member == 0);
    assert(r->values >= 1 && r->values <= STATSD_VALUES_MAX);
    return STATSD_OK;
}

int statsd_name_valid(const char *name, size_t len, size_t max_len)
{
    char reason[STATSD_REASON_MAX];
    if (max_len > EVENT_NAME_MAX) max_len = EVENT_NAME_MAX;
    return check_name(name, len, max_len, reason) == STATSD_OK;
}

static parse_limits clamp_limits(const statsd_limits *limits)
{
    parse_limits lim = {
        .max_name_len = limits->max_name_len < EVENT_NAME_MAX ? limits->max_name_len
                                                              : EVENT_NAME_MAX,
        .max_tags_len = limits->max_tags_len < EVENT_TAGS_MAX ? limits->max_tags_len
                                                              : EVENT_TAGS_MAX,
    };
    return lim;
}

int statsd_check_line(const char *line, size_t len, const statsd_limits *limits,
                      statsd_line_info *out)
{
    assert(line != NULL || len == 0);
    assert(limits != NULL && out != NULL);
    parse_limits lim = clamp_limits(limits);
    out->reason[0] = '\0';
    out->values = 0;
    if (len == 0) return refuse(out->reason, STATSD_BAD_NAME, "empty line");
    line_result r;
    int rc = check_line(line, len, &lim, out->tags, &r, out->reason);
    out->kind = r.kind;
    if (rc != STATSD_OK) return rc;
    out->ev = r.ev;
    out->values = r.kind == STATSD_LINE_METRIC ? r.values : 0;
    return STATSD_OK;
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
    if (b->arena_cap >= need && b->arena != NULL) return 0;
    char *a = malloc(need ? need : 1);
    if (a == NULL) {
        snprintf(err, errlen, "out of memory allocating %zu-byte tag arena", need);
        return -1;
    }
    free(b->arena);
    b->arena = a;
    b->arena_cap = need;
    return 0;
}

/* Grows the event array so `more` events fit. */
static int reserve_events(statsd_batch *b, size_t more, char *err, size_t errlen)
{
    if (b->events_cap - b->count >= more) return 0;
    size_t cap = b->events_cap ? b->events_cap : 256;
    while (cap - b->count < more) {
        if (cap > SIZE_MAX / 2 / sizeof *b->events) {
            snprintf(err, errlen, "too many events for memory");
            return -1;
        }
        cap *= 2;
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
static int add_error(statsd_batch *b, size_t line, int code, const char *reason,
                     size_t max_errors, char *err, size_t errlen)
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
    e->code = code;
    snprintf(e->reason, sizeof e->reason, "%s", reason);
    return 0;
}

/* Appends the events of a checked metric line: the first as checked, each
 * further packed value a copy with its own value (and, for a gauge, its own
 * relative flag). The values were all checked: they parse again. */
static void emit_events(statsd_batch *b, const line_result *r, int64_t default_stamp_ms)
{
    metric_event ev = r->ev;
    if (!(ev.flags & EVENT_CLIENT_STAMP)) ev.stamp_ms = default_stamp_ms;
    if (r->values == 1) {
        b->events[b->count++] = ev;
        return;
    }
    const char *p = r->value, *end = r->value + r->value_len;
    for (size_t i = 0; i < r->values; i++) {
        const char *c = memchr(p, ':', (size_t)(end - p));
        const char *tok_end = c ? c : end;
        num_status st = parse_number(p, (size_t)(tok_end - p), &ev.value);
        assert(st == NUM_OK);
        (void)st;
        if (ev.type == METRIC_GAUGE) {
            ev.flags &= ~EVENT_GAUGE_RELATIVE;
            if (p[0] == '+' || p[0] == '-') ev.flags |= EVENT_GAUGE_RELATIVE;
        }
        b->events[b->count++] = ev;
        p = tok_end + 1;
    }
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
    b->events_ignored = 0;
    b->service_checks_ignored = 0;
    b->arena_len = 0;

    parse_limits lim = clamp_limits(limits);
    if (reserve_arena(b, len, err, errlen) != 0) return -1;

    const char *p = body, *end = body + len;
    size_t line_no = 0, nonempty = 0, events = 0;
    char reason[STATSD_REASON_MAX];
    line_result r;

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
            if (add_error(b, line_no, STATSD_TOO_MANY_LINES, reason, limits->max_errors, err,
                          errlen) != 0)
                goto oom;
            break;
        }
        int rc = check_line(line, n, &lim, b->arena + b->arena_len, &r, reason);
        if (rc != STATSD_OK) {
            if (add_error(b, line_no, rc, reason, limits->max_errors, err, errlen) != 0) goto oom;
            continue;
        }
        if (r.kind == STATSD_LINE_EVENT) {
            b->events_ignored++;
            continue;
        }
        if (r.kind == STATSD_LINE_SERVICE_CHECK) {
            b->service_checks_ignored++;
            continue;
        }
        events += r.values;
        if (events > limits->max_lines) {
            snprintf(reason, sizeof reason,
                     "too many events (limit %zu; each packed value is one)", limits->max_lines);
            if (add_error(b, line_no, STATSD_TOO_MANY_LINES, reason, limits->max_errors, err,
                          errlen) != 0)
                goto oom;
            break;
        }
        if (b->error_total > 0) continue; /* the batch is refused: only errors matter now */
        if (reserve_events(b, r.values, err, errlen) != 0) goto oom;
        b->arena_len += r.ev.tags_len;
        emit_events(b, &r, default_stamp_ms);
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
