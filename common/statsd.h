/*
 * statsd.h — parse one HTTP batch of StatsD/DogStatsD lines into events.
 *
 * Contract: pure (no I/O, no globals, no clocks). A batch is atomic:
 * statsd_parse_batch() either accepts every line (returns 0, b->count events)
 * or rejects the batch (returns STATSD_INVALID) and lists the bad lines with
 * their 1-based line number and a human-readable reason. Empty lines (and a
 * trailing "\r") are ignored but still counted for line numbering.
 *
 * Accepted grammar, one line:
 *   name ":" value "|" type [ "|@" rate ] [ "|#" tag { "," tag } ] [ "|T" unix_seconds ]
 *   name ":" member "|s" [ "|@" rate ] [ "|#" tag { "," tag } ] [ "|T" unix_seconds ]
 *   type  = "c" | "g" | "ms" | "h" | "d"
 *   name  = 1..max_name_len chars of [A-Za-z0-9_.-]
 *   value = a finite decimal number (strtod syntax without hex/inf/nan);
 *           for "g" a leading '+' or '-' makes it relative (EVENT_GAUGE_RELATIVE)
 *   member = 1..STATSD_MEMBER_MAX bytes, any but '|', control characters
 *           (0x00-0x1f, 0x7f: so no '\n', '\r', NUL) (user ids, emails,
 *           UUIDs, UTF-8); the event carries hash_digest64(member) (event.h),
 *           value 0 and rate 1: a set's "|@rate" is checked like any other
 *           and then ignored (a set counts distinct members; sampling them
 *           would only lose some)
 *   rate  = a number in [1e-15, 1] (that is, 1 / rate at most EVENT_AMOUNT_MAX)
 *   and |value / rate| at most EVENT_AMOUNT_MAX (event.h: the numeric domain)
 *   tag   = 1..200 chars of [A-Za-z0-9_.:/-] (no ',', '|', '{', '}', spaces)
 *   unix_seconds = integer in [0, 4102444800) (before 2100-01-01)
 * The sections after the type may come in any order, each at most once.
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

typedef struct statsd_limits {
    size_t max_lines;      /* non-empty lines per batch; more is an error naming line max_lines+1 */
    size_t max_name_len;   /* <= EVENT_NAME_MAX */
    size_t max_tags_len;   /* canonical tags length, <= EVENT_TAGS_MAX */
    size_t max_errors;     /* errors recorded in detail; error_total still counts all */
} statsd_limits;

typedef struct statsd_error {
    uint32_t line;                   /* 1-based line number in the body */
    char reason[STATSD_REASON_MAX];  /* e.g. "unknown metric type \"x\"" */
} statsd_error;

typedef struct statsd_batch {
    metric_event *events;  /* b->count valid events when the parse returned 0 */
    size_t count;
    statsd_error *errors;  /* the first min(error_total, max_errors) errors, in line order */
    size_t error_count;
    size_t error_total;
    /* private */
    size_t events_cap;
    size_t errors_cap;
    char *arena;
    size_t arena_cap;
    size_t arena_len;
} statsd_batch;

/* Zero-initialises a batch. No allocation. */
void statsd_batch_init(statsd_batch *b);

/* Frees everything the batch owns; the batch may be re-initialised afterwards. */
void statsd_batch_free(statsd_batch *b);

/*
 * Parses `len` bytes of `body` (need not be NUL-terminated) into `b`,
 * discarding whatever `b` held before (its buffers are reused).
 * Events without "|T" get stamp_ms = default_stamp_ms.
 * Returns 0 (all lines valid; b->count may be 0 for an empty body),
 * STATSD_INVALID (b->errors filled, b->count is 0), or -1 when memory runs out
 * (err filled).
 */
int statsd_parse_batch(statsd_batch *b, const char *body, size_t len,
                       const statsd_limits *limits, int64_t default_stamp_ms,
                       char *err, size_t errlen);

#endif
