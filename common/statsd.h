/*
 * statsd.h — check StatsD/DogStatsD lines; parse one HTTP batch of them into events.
 *
 * Contract: pure (no I/O, no globals, no clocks). One line grammar, one
 * implementation: statsd_check_line() checks a line on its own (the UDP/TCP
 * listeners) and statsd_parse_batch() runs the same code on every line of a
 * body. A batch is atomic: statsd_parse_batch() either accepts every line
 * (returns 0, b->count events) or rejects the batch (returns STATSD_INVALID)
 * and lists the bad lines with their 1-based line number, a reason code
 * (enum statsd_reason_code, statsd_reason_name) and a human-readable reason.
 * Empty lines (and a trailing "\r") are ignored but still counted for line
 * numbering.
 *
 * Accepted grammar, one line:
 *   name ":" value { ":" value } "|" type { section }      (packed values: DogStatsD 1.1)
 *   name ":" member "|s" { section }
 *   "_e{" title_len "," text_len "}:" title "|" text { event_section }
 *   "_sc|" name "|" status { check_section }
 *   type    = "c" | "g" | "ms" | "h" | "d"
 *   section = "|@" rate | "|#" [ tag { "," tag } ] | "|T" unix_seconds
 *           | "|c:" container_id | "|e:" external_data | "|card:" cardinality
 *             (any order, each at most once; c:, e:, card: are checked to be
 *              non-empty and then ignored)
 *   name    = 1..max_name_len bytes of [A-Za-z0-9_.-] or well-formed UTF-8
 *             beyond ASCII (no C1 controls, no Unicode spaces)
 *   value   = a finite decimal number (strtod syntax without hex/inf/nan);
 *             for "g" a leading '+' or '-' makes it relative (EVENT_GAUGE_RELATIVE).
 *             Up to STATSD_VALUES_MAX values per line, each its own event
 *             (same name, type, tags, rate and stamp)
 *   member  = 1..STATSD_MEMBER_MAX bytes, any but '|', control characters
 *             (0x00-0x1f, 0x7f) (user ids, emails, UUIDs, UTF-8; ':' too: a
 *             set is never packed); the event carries hash_digest64(member)
 *             (event.h), value 0 and rate 1: a set's "|@rate" is checked like
 *             any other and then ignored
 *   rate    = a number in [1e-15, 1] (that is, 1 / rate at most EVENT_AMOUNT_MAX)
 *   and |value / rate| at most EVENT_AMOUNT_MAX (event.h: the numeric domain)
 *   tag     = 0..200 bytes of printable ASCII but ',' and '|' (space included),
 *             or well-formed UTF-8 as in names; empty tags are skipped.
 *             "k:v" is a key and a value (split at the first ':'), a tag
 *             without ':' is a bare tag. Canonical form: sorted bytewise,
 *             duplicates dropped, ','-joined, at most max_tags_len bytes
 *   unix_seconds = integer in [0, 4102444800) (before 2100-01-01)
 *   DogStatsD events and service checks are checked to be well-formed and
 *   counted (events_ignored, service_checks_ignored), never stored. Lengths
 *   in "_e{...}" are in bytes. event_section = "|d:" seconds | "|h:" host |
 *   "|k:" key | "|p:" (low|normal) | "|s:" source | "|t:" (error|warning|
 *   info|success) | "|#" tags | c:/e:/card: as above; check_section = "|d:"
 *   seconds | "|h:" host | "|#" tags | c:/e:/card: | "|m:" message (the
 *   rest of the line); status = 0..3.
 *
 * Memory: events point into `body` (names) and into the batch's arena
 * (canonical tags), so `body` must outlive every use of b->events.
 */
#ifndef TALLY_STATSD_H
#define TALLY_STATSD_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define STATSD_INVALID 1       /* statsd_parse_batch: at least one invalid line */
#define STATSD_REASON_MAX 128
#define STATSD_MEMBER_MAX 256  /* longest set member, in bytes */
#define STATSD_VALUES_MAX 256  /* most packed values in one line ("n:1:2:3|d") */

/* Why a line was refused. The names (statsd_reason_name) are stable: they
 * are the "code" of an HTTP 400's errors and the reason label of
 * tally_statsd_lines_dropped_total. README "Reason codes" describes each. */
typedef enum statsd_reason_code {
    STATSD_OK = 0,
    STATSD_BAD_NAME,          /* empty, missing ':', or a byte names may not hold */
    STATSD_NAME_TOO_LONG,     /* longer than max_name_len */
    STATSD_BAD_UTF8,          /* malformed UTF-8 in a name or a tag */
    STATSD_BAD_VALUE,         /* missing, not a finite decimal number, empty packed value */
    STATSD_TOO_MANY_VALUES,   /* more than STATSD_VALUES_MAX packed values */
    STATSD_BAD_MEMBER,        /* a set member empty, too long, or holding a control byte */
    STATSD_UNKNOWN_TYPE,      /* missing or unknown metric type */
    STATSD_BAD_RATE,          /* sample rate not a number or outside (0, 1] */
    STATSD_ZERO_RATE,         /* sample rate 0 ("|@0": Etsy reads it as 1) */
    STATSD_BAD_TAGS,          /* a tag holding a control byte */
    STATSD_TAGS_TOO_LONG,     /* a tag over 200 bytes, over 512 tags, canonical form over max_tags_len */
    STATSD_BAD_TIMESTAMP,     /* "|T" not Unix seconds in [0, 2100) */
    STATSD_DUPLICATE_SECTION, /* a section twice */
    STATSD_UNKNOWN_SECTION,   /* a section Tally does not know, or an empty one */
    STATSD_OUT_OF_DOMAIN,     /* |value / rate| or 1 / rate above EVENT_AMOUNT_MAX */
    STATSD_BAD_EVENT,         /* a malformed DogStatsD event ("_e{...}") */
    STATSD_BAD_SERVICE_CHECK, /* a malformed DogStatsD service check ("_sc|...") */
    STATSD_TOO_MANY_LINES,    /* a batch past max_lines lines or max_lines events */
    STATSD_LINE_TOO_LONG,     /* not the parser's: a StatsD TCP line over 64 KiB (connection closed) */
    STATSD_CODE_COUNT
} statsd_reason_code;

/* The code's stable snake_case name ("ok", "bad_name", ...); "unknown" for
 * a value outside the enum. */
const char *statsd_reason_name(int code);

typedef enum statsd_line_kind {
    STATSD_LINE_METRIC,        /* one or more metric events */
    STATSD_LINE_EVENT,         /* a DogStatsD event: counted, not stored */
    STATSD_LINE_SERVICE_CHECK  /* a DogStatsD service check: counted, not stored */
} statsd_line_kind;

typedef struct statsd_limits {
    size_t max_lines;      /* non-empty lines per batch; more is an error naming line max_lines+1 */
    size_t max_name_len;   /* <= EVENT_NAME_MAX */
    size_t max_tags_len;   /* canonical tags length, <= EVENT_TAGS_MAX */
    size_t max_errors;     /* errors recorded in detail; error_total still counts all */
} statsd_limits;

typedef struct statsd_error {
    uint32_t line;                   /* 1-based line number in the body */
    int code;                        /* statsd_reason_code, never STATSD_OK */
    char reason[STATSD_REASON_MAX];  /* e.g. "unknown metric type \"x\"" */
} statsd_error;

typedef struct statsd_batch {
    metric_event *events;  /* b->count valid events when the parse returned 0 */
    size_t count;
    statsd_error *errors;  /* the first min(error_total, max_errors) errors, in line order */
    size_t error_count;
    size_t error_total;
    size_t events_ignored;          /* well-formed DogStatsD events (never stored) */
    size_t service_checks_ignored;  /* well-formed DogStatsD service checks (never stored) */
    /* private */
    size_t events_cap;
    size_t errors_cap;
    char *arena;
    size_t arena_cap;
    size_t arena_len;
} statsd_batch;

/* What statsd_check_line() found in one line. */
typedef struct statsd_line_info {
    statsd_line_kind kind;
    size_t values;      /* metric events the line makes (packed values); 0 for the others */
    metric_event ev;    /* a metric line's first event: name points into the line, tags
                         * into `tags` (canonical), stamp_ms 0 unless "|T" */
    char tags[EVENT_TAGS_MAX];
    char reason[STATSD_REASON_MAX]; /* when refused */
} statsd_line_info;

/*
 * Checks one line (len bytes, no '\n', not NUL-terminated; a trailing '\r'
 * is part of it: strip it first) exactly as statsd_parse_batch() checks a
 * line of a body. Returns STATSD_OK with *out filled, or the reason code with
 * out->reason filled. Allocates nothing; limits->max_lines is not used.
 */
int statsd_check_line(const char *line, size_t len, const statsd_limits *limits,
                      statsd_line_info *out);

/* Whether name[0..len) is a metric name the grammar accepts: 1..max_len
 * bytes of [A-Za-z0-9_.-] or well-formed UTF-8 (the read path asks this of
 * a name in a URL). */
int statsd_name_valid(const char *name, size_t len, size_t max_len);

/* Zero-initialises a batch. No allocation. */
void statsd_batch_init(statsd_batch *b);

/* Frees everything the batch owns; the batch may be re-initialised afterwards. */
void statsd_batch_free(statsd_batch *b);

/*
 * Parses `len` bytes of `body` (need not be NUL-terminated) into `b`,
 * discarding whatever `b` held before (its buffers are reused).
 * Events without "|T" get stamp_ms = default_stamp_ms. At most
 * limits->max_lines non-empty lines and max_lines events (a packed value is
 * one event): the line past either is refused (STATSD_TOO_MANY_LINES) and
 * the parse stops there.
 * Returns 0 (all lines valid; b->count may be 0 for an empty body or one of
 * only events and service checks: see events_ignored, service_checks_ignored),
 * STATSD_INVALID (b->errors filled, b->count is 0), or -1 when memory runs out
 * (err filled).
 */
int statsd_parse_batch(statsd_batch *b, const char *body, size_t len,
                       const statsd_limits *limits, int64_t default_stamp_ms,
                       char *err, size_t errlen);

#endif
