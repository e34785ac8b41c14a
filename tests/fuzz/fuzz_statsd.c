/*
 * fuzz_statsd.c — libFuzzer target for the StatsD batch parser (common/statsd.h).
 *
 * Contract: the input is one HTTP body, parsed with statsd_parse_batch() into
 * one batch initialised once and reused (as ingest reuses it), with limits
 * max_lines 1000, max_name_len 200, max_tags_len 512, max_errors 100. Whatever
 * the bytes, the parse must not crash, and:
 *   - accepted (0): one event per non-empty line, in line order, each naming
 *     its line (name = the line's first name_len bytes, then ':'); every event
 *     within event.h's invariants (name_len 1..200 of [A-Za-z0-9_.-], tags_len
 *     <= 512 in canonical form: tags of 1..200 [A-Za-z0-9_.:/-] bytes, sorted
 *     bytewise, no duplicates, joined by ','; event_amount_in_domain(); stamp
 *     = the default, or a client "|T" in [0, 2100-01-01) whole seconds with
 *     EVENT_CLIENT_STAMP); then the events survive record_encode_compact() and
 *     record_encode() + the record reader unchanged;
 *   - refused (STATSD_INVALID): no events, error_count = min(error_total, 100),
 *     errors on distinct non-empty lines in increasing order, each reason a
 *     non-empty printable string; more than 1000 non-empty lines is always
 *     refused.
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
    return is_name_char(c) || c == ':' || c == '/';
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
    for (size_t i = 0; i < ev->name_len; i++)
        FUZZ_CHECK(is_name_char((unsigned char)ev->name[i]),
                   "event %zu: byte 0x%02x at %zu in the name", index,
                   (unsigned char)ev->name[i], i);

    const char *prev = NULL;
    size_t prev_len = 0;
    size_t start = 0;
    for (size_t i = 0; i <= ev->tags_len && ev->tags_len > 0; i++) {
        if (i < ev->tags_len && ev->tags[i] != ',') {
            FUZZ_CHECK(is_tag_char((unsigned char)ev->tags[i]),
                       "event %zu: byte 0x%02x at %zu in the canonical tags", index,
                       (unsigned char)ev->tags[i], i);
            continue;
        }
        const char *tag = ev->tags + start;
        size_t n = i - start;
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
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(e->reason[i] >= 0x20 && e->reason[i] < 0x7f,
                   "error %zu (line %u): byte 0x%02x at %zu of the reason \"%s\"", index, e->line,
                   (unsigned char)e->reason[i], i, e->reason);
}

/* Walks the body's lines as statsd.h defines them and checks the batch against
 * them: events one per non-empty line when accepted, error lines when refused. */
static void check_against_lines(const statsd_batch *b, int rc, const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    size_t line_no = 0, nonempty = 0, next_error = 0;
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
        if (has_error) next_error++;
        if (rc != 0 || nonempty > b->count) continue;
        const metric_event *ev = &b->events[nonempty - 1];
        if (!(ev->name == line && ev->name_len < n && line[ev->name_len] == ':'))
            fuzz_print_event("parsed", nonempty, ev);
        FUZZ_CHECK(ev->name == line && ev->name_len < n && line[ev->name_len] == ':',
                   "event %zu is not the name of non-empty line %zu (line %zu of the body)",
                   nonempty, nonempty, line_no);
    }
    FUZZ_CHECK(next_error == b->error_count,
               "%zu of %zu recorded errors name a line that is not a non-empty line of the body "
               "in increasing order (first unmatched: line %u)",
               b->error_count - next_error, b->error_count,
               next_error < b->error_count ? b->errors[next_error].line : 0u);
    if (rc == 0)
        FUZZ_CHECK(b->count == nonempty, "accepted %zu events from %zu non-empty lines", b->count,
                   nonempty);
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
