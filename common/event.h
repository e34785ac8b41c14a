/*
 * event.h — the metric event model shared by tally-ingest and tally-flusher.
 *
 * An event is one parsed StatsD/DogStatsD line. It does not own its strings:
 * `name` and `tags` point into a buffer owned by whoever produced the event
 * (the batch parser's input body and arena, or a decoded Kafka record), and are
 * NOT NUL-terminated; always use the explicit lengths.
 *
 * Series identity is (name, tags, type). `tags` is the canonical form: the
 * DogStatsD tags sorted bytewise, duplicates removed, joined by ','; an empty
 * string (tags_len == 0) means "no tags".
 *
 * A set event ("name:MEMBER|s") carries no value: `member` is the 64-bit
 * digest of the member's bytes (hash_digest64, hash.h), so the member itself
 * never leaves tally-ingest (not in Kafka, not in Redis, not in SQLite); its
 * value is 0 and its sample_rate 1 (a set counts distinct members, so a rate
 * says nothing about it and is ignored).
 */
#ifndef TALLY_EVENT_H
#define TALLY_EVENT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum metric_type {
    METRIC_COUNTER = 1,      /* |c  : sum of value / sample_rate            */
    METRIC_GAUGE = 2,        /* |g  : last value; "+v"/"-v" are relative     */
    METRIC_DISTRIBUTION = 3, /* |ms |h |d : count, sum, min, max             */
    METRIC_SET = 4,          /* |s  : distinct members (HyperLogLog)         */
} metric_type;

/* Event flags. */
#define EVENT_GAUGE_RELATIVE 0x01u /* gauge line was "+v" or "-v": value is a signed delta */
#define EVENT_CLIENT_STAMP 0x02u   /* stamp_ms came from the client ("|T<unix seconds>") */

#define EVENT_NAME_MAX 255   /* hard upper bound of name_len (configured limit may be lower) */
#define EVENT_TAGS_MAX 1024  /* hard upper bound of tags_len (configured limit may be lower) */

typedef struct metric_event {
    metric_type type;
    uint8_t flags;       /* EVENT_* bits */
    uint16_t name_len;   /* 1..EVENT_NAME_MAX */
    uint16_t tags_len;   /* 0..EVENT_TAGS_MAX */
    const char *name;    /* not NUL-terminated */
    const char *tags;    /* canonical tags, not NUL-terminated; may be NULL when tags_len == 0 */
    double value;        /* in the domain below; as written on the line (a delta for relative
                            gauges); 0 for a set */
    double sample_rate;  /* in (0, 1]; 1.0 when the line has no "|@rate", and for a set */
    int64_t stamp_ms;    /* event time, Unix milliseconds (rule 4: set before Kafka) */
    uint64_t member;     /* set: hash_digest64 of the member's bytes; 0 for other types */
    uint32_t extra_lines; /* counter: lines folded into this event beyond the first (the
                            StatsD listeners fold a batch's counter lines that differ only
                            in their value: value is their sum); 0 for a line as sent and
                            for every other type */
} metric_event;

/*
 * The numeric domain (design rule 8). A line may carry at most
 * EVENT_AMOUNT_MAX in magnitude in everything it adds to a running value:
 * |value| (a gauge, a distribution's min/max), |value| / rate (what a counter
 * or a distribution sum adds) and 1 / rate (what a distribution count adds).
 * 1e15 is below 2^53, so whole amounts stay exact integers. With that bound a
 * running sum needs more than 1e293 lines to leave the range of a double, so
 * every fold, group merge, aggregate, SQLite row, Redis field and read stays
 * finite without a check of its own. The parser refuses a line outside the
 * domain (400 naming the line) and the record decoder a record holding one.
 */
#define EVENT_AMOUNT_MAX 1e15

/* Whether value and sample_rate are within the domain. (|value| <= |value| /
 * rate since rate <= 1; the quotient may overflow to infinity or be NaN for a
 * NaN value, and the comparison then refuses it.) */
static inline int event_amount_in_domain(double value, double sample_rate)
{
    double magnitude = value < 0 ? -value : value;
    return sample_rate > 0.0 && sample_rate <= 1.0 && 1.0 / sample_rate <= EVENT_AMOUNT_MAX &&
           magnitude / sample_rate <= EVENT_AMOUNT_MAX;
}

/* How many real events one sampled line stands for: 1 / sample_rate (and a
 * folded counter, 1 + extra_lines lines of one rate: that many times it). A
 * counter contributes value / sample_rate to its total; a distribution adds
 * weight to its count and value * weight to its sum. */
static inline double event_weight(const metric_event *ev)
{
    return (1.0 + (double)ev->extra_lines) / ev->sample_rate;
}

/* The StatsD lines an event stands for: 1 + extra_lines. */
static inline uint64_t event_lines(const metric_event *ev)
{
    return 1u + (uint64_t)ev->extra_lines;
}

/* Short lowercase name of a type ("counter", "gauge", "distribution", "set"):
 * the type column of SQLite's tables and the "type" of every answer. */
static inline const char *metric_type_name(metric_type t)
{
    switch (t) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_DISTRIBUTION: return "distribution";
    case METRIC_SET: return "set";
    }
    return "unknown";
}

/* The type named `name` (metric_type_name's inverse), or 0 for any other
 * string (NULL allowed). */
static inline metric_type metric_type_from_name(const char *name)
{
    static const metric_type all[] = {METRIC_COUNTER, METRIC_GAUGE, METRIC_DISTRIBUTION,
                                      METRIC_SET};
    for (size_t i = 0; name && i < sizeof all / sizeof all[0]; i++)
        if (strcmp(name, metric_type_name(all[i])) == 0)
            return all[i];
    return (metric_type)0;
}

#endif
