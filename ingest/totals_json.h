/*
 * totals_json.h — the answer of GET /v1/counters/NAME (pure): the totals of
 * one metric name, per tag series, in the shape of its type:
 *
 *   counter       {"name","type":"counter","source","stale"[,"note"],"value":TOTAL,
 *                  "series":[{"tags","value"}...]}
 *   gauge         {"name","type":"gauge","source","stale"[,"note"],
 *                  "series":[{"tags","value"}...]}        (no total: gauges do not add)
 *   distribution  {"name","type":"distribution","source","stale"[,"note"],
 *                  "count","sum","min","max","series":[{"tags","count","sum","min","max"}...]}
 *   set           {"name","type":"set","source","stale"[,"note"],
 *                  "series":[{"tags","value"}...]}   value: the distinct members (an
 *                  estimate); no total: two series may share members
 *
 * plus "types":[...] when the name is used with several types (the answer is
 * for `type`, the others can be asked with ?type=). Series are sorted by tags.
 * Used by the live read (Redis) and the flushed read (SQLite) alike.
 */
#ifndef TALLY_TOTALS_JSON_H
#define TALLY_TOTALS_JSON_H

#include <stddef.h>

#include <event2/buffer.h>

#include "event.h"

typedef struct series_total {
    const char *tags;
    size_t tags_len;
    double value;        /* counter total, gauge value, set's distinct members */
    double count, sum;   /* distribution */
    double min, max;     /* distribution, when has_range */
    int has_range;
} series_total;

typedef struct totals_answer {
    const char *name;
    metric_type type;
    unsigned types;      /* every type the name has: mask of 1 << metric_type */
    const char *source;  /* "redis" or "sqlite" */
    int stale;
    const char *note;    /* NULL: none */
} totals_answer;

/* Appends the answer; sorts `series` in place by tags. */
void totals_json_write(struct evbuffer *b, const totals_answer *a, series_total *series, size_t n);

#endif
