/*
 * fuzz_statsd.c — libFuzzer target for the StatsD batch parser (common/statsd.h).
 *
 * Contract: the input is one HTTP body, parsed with statsd_parse_batch() into
 * one batch initialised once and reused (as ingest reuses it), with limits
 * max_lines 1000, max_name_len 200, max_tags_len 512, max_errors 100. Whatever
 * the bytes, the parse must not crash, and:
 *   - accepted (0): one or more events (packed values) per non-empty metric
 *     line, none for a DogStatsD event ("_e{") or service check ("_sc|")
 *     line (counted in events_ignored, service_checks_ignored), in line
 *     order, each naming its line (name = the line's first name_len bytes,
 *     then ':'); every event within event.h's invariants (name_len 1..200 of
 *     [A-Za-z0-9_.-] or well-formed UTF-8, tags_len <= 512 in canonical form:
 *     tags of 1..200 bytes of printable ASCII but ',' '|', or well-formed
 *     UTF-8, sorted bytewise, no duplicates, joined by ','; event_amount_in_domain(); stamp
 *     = the default, or a client "|T" in [0, 2100-01-01) whole seconds with
 *     EVENT_CLIENT_STAMP); then the events survive record_encode_compact() and
 *     record_encode() + the record reader unchanged;
 *   - refused (STATSD_INVALID): no events, error_count = min(error_total, 100),
 *     errors on distinct non-empty lines in increasing order, each reason a
 *     non-empty printable string and a code in (STATSD_OK, STATSD_CODE_COUNT);
 *     more than 1000 non-empty lines is always refused;
 *   - either way, statsd_check_line() on each line alone agrees with the
 *     batch (the same code for a line the batch refused, STATSD_OK for one it
 *     did not), wherever the batch judged every line.
 * Any violated check aborts (fuzz_check.h), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz_check.h"
#include "record.h"
#include "statsd.h"

#define MAX_LINES 1000
#define MAX_NAME_LEN 200
#define MAX_TAGS_LEN 512
#define MAX_ERRORS 100
#define TAG_LEN_MAX 200                     /* one tag, statsd.h's grammar */
#define DEFAULT_STAMP_MS 1700000000123LL    /* receive time given to the parser */
#define STAMP_MS_END 4102444800000LL        /* 2100-01-01T00:00:00Z */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool is_name_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
}

static bool is_tag_char(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != ',' && c != '|';
}

/* Length of the well-formed UTF-8 sequence at s (s[0] >= 0x80), 0 if none:
 * written from RFC 3629's table, independently of the parser's reader. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    static const struct { unsigned char lo, hi, lo2, hi2; size_t n; } rows[] = {
        {0xc2, 0xdf, 0x80, 0xbf, 2}, {0xe0, 0xe0, 0xa0, 0xbf, 3}, {0xe1, 0xec, 0x80, 0xbf, 3},
        {0xed, 0xed, 0x80, 0x9f, 3}, {0xee, 0xef, 0x80, 0xbf, 3}, {0xf0, 0xf0, 0x90, 0xbf, 4},
        {0xf1, 0xf3, 0x80, 0xbf, 4}, {0xf4, 0xf4, 0x80, 0x8f, 4},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        if (s[0] < rows[r].lo || s[0] > rows[r].hi) continue;
        size_t n = rows[r].n;
        if (avail < n || s[1] < rows[r].lo2 || s[1] > rows[r].hi2) return 0;
        for (size_t i = 2; i < n; i++)
            if (s[i] < 0x80 || s[i] > 0xbf) return 0;
        return n;
    }
    return 0;
}

/* Whether [s, s+n) is all `ascii_ok` bytes or well-formed UTF-8 sequences. */
static bool chars_ok(const char *s, size_t n, bool (*ascii_ok)(unsigned char))
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            if (!ascii_ok(u[i])) return false;
            i++;
            continue;
        }
        size_t k = utf8_len(u + i, n - i);
        if (k == 0) return false;
        i += k;
    }
    return true;
}

/* Bytewise order of two slices (a shorter prefix sorts first). */
static int compare_bytes(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    if (c != 0) return c;
    return (an > bn) - (an < bn);
}

/* What statsd.h promises beyond event.h: name charset, canonical tags, stamps. */
static void check_parsed_event(size_t index, const metric_event *ev)
{
    FUZZ_CHECK(chars_ok(ev->name, ev->name_len, is_name_char),
               "event %zu: a byte or UTF-8 sequence names may not hold", index);

    const char *prev = NULL;
    size_t prev_len = 0;
    size_t start = 0;
    for (size_t i = 0; i <= ev->tags_len && ev->tags_len > 0; i++) {
        if (i < ev->tags_len && ev->tags[i] != ',') continue;
        const char *tag = ev->tags + start;
        size_t n = i - start;
        FUZZ_CHECK(chars_ok(tag, n, is_tag_char),
                   "event %zu: a byte or UTF-8 sequence tags may not hold in tag %zu..%zu", index,
                   start, i);
        if (n == 0 || n > TAG_LEN_MAX || (prev != NULL && compare_bytes(prev, prev_len, tag, n) >= 0))
            fuzz_print_event("parsed", index, ev);
        FUZZ_CHECK(n >= 1 && n <= TAG_LEN_MAX, "event %zu: canonical tag of %zu bytes", index, n);
        FUZZ_CHECK(prev == NULL || compare_bytes(prev, prev_len, tag, n) < 0,
                   "event %zu: canonical tags not sorted or not deduplicated", index);
        prev = tag;
        prev_len = n;
        start = i + 1;
    }

    if (ev->flags & EVENT_CLIENT_STAMP) {
        FUZZ_CHECK(ev->stamp_ms >= 0 && ev->stamp_ms < STAMP_MS_END && ev->stamp_ms % 1000 == 0,
                   "event %zu: client stamp_ms %lld not whole seconds in [0, 2100)", index,
                   (long long)ev->stamp_ms);
    } else {
        FUZZ_CHECK(ev->stamp_ms == DEFAULT_STAMP_MS,
                   "event %zu: stamp_ms %lld without |T (default %lld)", index,
                   (long long)ev->stamp_ms, (long long)DEFAULT_STAMP_MS);
    }
}

static void check_reason(size_t index, const statsd_error *e)
{
    size_t n = strnlen(e->reason, sizeof e->reason);
    FUZZ_CHECK(n > 0 && n < sizeof e->reason, "error %zu (line %u): reason empty or unterminated",
               index, e->line);
    FUZZ_CHECK(e->code > STATSD_OK && e->code < STATSD_CODE_COUNT,
               "error %zu (line %u): code %d", index, e->line, e->code);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(e->reason[i] >= 0x20 && e->reason[i] < 0x7f,
                   "error %zu (line %u): byte 0x%02x at %zu of the reason \"%s\"", index, e->line,
                   (unsigned char)e->reason[i], i, e->reason);
}

static bool is_ignored_line(const char *line, size_t n)
{
    return (n >= 3 && memcmp(line, "_e{", 3) == 0) || (n >= 4 && memcmp(line, "_sc|", 4) == 0);
}

/* Walks the body's lines as statsd.h defines them and checks the batch against
 * them: when accepted, each metric line's events in order (one per packed
 * value) and none for events and service checks; when refused, the error
 * lines. Each line judged by the batch is checked alone too. */
static void check_against_lines(const statsd_batch *b, int rc, const char *body, size_t len)
{
    static statsd_line_info info;
    static const statsd_limits alone = {
        .max_lines = 1, .max_name_len = MAX_NAME_LEN, .max_tags_len = MAX_TAGS_LEN, .max_errors = 1,
    };
    /* the lines the batch judged: all, unless errors went unrecorded or it stopped */
    size_t judged_to = SIZE_MAX;
    if (b->error_count > 0 && (b->error_count < b->error_total ||
                               b->errors[b->error_count - 1].code == STATSD_TOO_MANY_LINES))
        judged_to = b->errors[b->error_count - 1].line;
    const char *p = body, *end = body + len;
    size_t line_no = 0, nonempty = 0, next_error = 0, next_event = 0, ignored = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line = p;
        size_t n = (size_t)((nl ? nl : end) - line);
        p = nl ? nl + 1 : end;
        line_no++;
        if (n > 0 && line[n - 1] == '\r') n--;
        bool has_error = next_error < b->error_count && b->errors[next_error].line == line_no;
        if (n == 0) {
            FUZZ_CHECK(!has_error, "error %zu names empty line %zu", next_error + 1, line_no);
            continue;
        }
        nonempty++;
        if (line_no < judged_to || (line_no == judged_to && has_error &&
                                    b->errors[next_error].code != STATSD_TOO_MANY_LINES)) {
            int code = statsd_check_line(line, n, &alone, &info);
            int want = has_error ? b->errors[next_error].code : STATSD_OK;
            FUZZ_CHECK(code == want, "line %zu alone: %s (%s), in the batch: %s", line_no,
                       statsd_reason_name(code), info.reason, statsd_reason_name(want));
        }
        if (has_error) next_error++;
        if (rc != 0) continue;
        if (is_ignored_line(line, n)) {
            ignored++;
            continue;
        }
        size_t first = next_event;
        while (next_event < b->count && b->events[next_event].name == line) {
            const metric_event *ev = &b->events[next_event];
            if (!(ev->name_len < n && line[ev->name_len] == ':'))
                fuzz_print_event("parsed", next_event + 1, ev);
            FUZZ_CHECK(ev->name_len < n && line[ev->name_len] == ':',
                       "event %zu is not the name of line %zu", next_event + 1, line_no);
            next_event++;
        }
        FUZZ_CHECK(next_event > first && next_event - first <= STATSD_VALUES_MAX,
                   "line %zu made %zu events", line_no, next_event - first);
    }
    FUZZ_CHECK(next_error == b->error_count,
               "%zu of %zu recorded errors name a line that is not a non-empty line of the body "
               "in increasing order (first unmatched: line %u)",
               b->error_count - next_error, b->error_count,
               next_error < b->error_count ? b->errors[next_error].line : 0u);
    if (rc == 0) {
        FUZZ_CHECK(next_event == b->count, "accepted %zu events, the lines name %zu", b->count,
                   next_event);
        FUZZ_CHECK(ignored == b->events_ignored + b->service_checks_ignored,
                   "%zu event and service check lines, %zu + %zu ignored", ignored,
                   b->events_ignored, b->service_checks_ignored);
        FUZZ_CHECK(b->count <= MAX_LINES, "accepted %zu events (limit %d)", b->count, MAX_LINES);
    }
    if (nonempty > MAX_LINES)
        FUZZ_CHECK(rc != 0, "accepted %zu non-empty lines (limit %d)", nonempty, MAX_LINES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static statsd_batch batch;
    static bool initialised;
    if (!initialised) {
        statsd_batch_init(&batch);
        initialised = true;
    }
    static const statsd_limits limits = {
        .max_lines = MAX_LINES,
        .max_name_len = MAX_NAME_LEN,
        .max_tags_len = MAX_TAGS_LEN,
        .max_errors = MAX_ERRORS,
    };
    const char *body = (const char *)data;
    char err[256] = "";
    int rc = statsd_parse_batch(&batch, body, size, &limits, DEFAULT_STAMP_MS, err, sizeof err);
    FUZZ_CHECK(rc == 0 || rc == STATSD_INVALID || rc == -1, "statsd_parse_batch returned %d", rc);
    if (rc == -1) { /* out of memory: nothing to check but that no event is left */
        FUZZ_CHECK(batch.count == 0, "out of memory (%s) but %zu events left", err, batch.count);
        return 0;
    }

    if (rc == 0) {
        FUZZ_CHECK(batch.error_total == 0 && batch.error_count == 0,
                   "accepted with %zu errors (%zu recorded)", batch.error_total,
                   batch.error_count);
    } else {
        FUZZ_CHECK(batch.count == 0, "refused batch has %zu events", batch.count);
        FUZZ_CHECK(batch.error_total >= 1, "refused batch without an error");
        size_t want = batch.error_total < MAX_ERRORS ? batch.error_total : MAX_ERRORS;
        FUZZ_CHECK(batch.error_count == want, "error_count %zu, expected min(%zu, %d)",
                   batch.error_count, batch.error_total, MAX_ERRORS);
        for (size_t i = 0; i < batch.error_count; i++) check_reason(i + 1, &batch.errors[i]);
    }
    check_against_lines(&batch, rc, body, size);
    if (rc != 0) return 0;

    for (size_t i = 0; i < batch.count; i++) {
        const metric_event *ev = &batch.events[i];
        fuzz_check_event("parsed", i + 1, ev, MAX_NAME_LEN, MAX_TAGS_LEN, body, size, false);
        check_parsed_event(i + 1, ev);
    }

    /* What ingest does next: the accepted batch becomes a record (version 2),
     * which the flusher must read back exactly; version 1 must do the same. */
    static const char batch_id[] = "fuzz-statsd-batch";
    fuzz_round_trip("statsd -> compact record", RECORD_VERSION_COMPACT, batch_id,
                    sizeof batch_id - 1, DEFAULT_STAMP_MS, batch.events, batch.count, NULL, NULL);
    fuzz_round_trip("statsd -> version 1 record", RECORD_VERSION, batch_id, sizeof batch_id - 1,
                    DEFAULT_STAMP_MS, batch.events, batch.count, NULL, NULL);
    return 0;
}
