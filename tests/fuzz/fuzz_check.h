/*
 * fuzz_check.h — the checks the fuzz targets (fuzz_statsd.c, fuzz_record.c)
 * share: the invariants event.h promises for every event a parser or decoder
 * hands out, field-by-field event equality, and the encode/decode round trip.
 *
 * Contract: a failed check prints what failed (file, line, the event) to
 * stderr and calls abort(), which libFuzzer reports as a crash and for which it
 * saves the input as an artifact. Nothing here keeps state; only the round
 * trip allocates (the record, freed before it returns unless handed out).
 */
#ifndef TALLY_FUZZ_CHECK_H
#define TALLY_FUZZ_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "record.h"

#define FUZZ_CHECK(cond, ...)                                                              \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "fuzz check failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Prints `n` bytes of `s` with non-printable bytes escaped (at most 80 shown). */
static inline void fuzz_print_bytes(FILE *f, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i == 80) {
            fputs("...", f);
            break;
        }
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\')
            fputc(c, f);
        else
            fprintf(f, "\\x%02x", c);
    }
}

/* Prints one event on one line (to stderr, before a failed check). */
static inline void fuzz_print_event(const char *label, size_t index, const metric_event *ev)
{
    fprintf(stderr, "  %s event %zu: type %d flags 0x%02x name_len %u name \"", label, index,
            (int)ev->type, ev->flags, ev->name_len);
    if (ev->name != NULL) fuzz_print_bytes(stderr, ev->name, ev->name_len);
    fprintf(stderr, "\" tags_len %u tags \"", ev->tags_len);
    if (ev->tags != NULL) fuzz_print_bytes(stderr, ev->tags, ev->tags_len);
    fprintf(stderr, "\" value %.17g rate %.17g stamp_ms %lld member 0x%016llx\n", ev->value,
            ev->sample_rate, (long long)ev->stamp_ms, (unsigned long long)ev->member);
}

/* Whether p[0..n) lies inside base[0..base_len). */
static inline bool fuzz_within(const void *p, size_t n, const void *base, size_t base_len)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)base;
    return a >= lo && a - lo <= base_len && n <= base_len - (a - lo);
}

/*
 * The invariants of event.h for one event that was handed out as valid:
 * a known type; only known flags, the relative flag only on a gauge;
 * name_len in 1..max_name_len with a name pointer; tags_len <= max_tags_len
 * with a tags pointer when non-zero; value and rate in the numeric domain;
 * a set's value 0 and rate 1, any other type's member 0.
 * When names_base is not NULL the name must lie inside names_base[0..base_len)
 * (and so must the tags when tags_in_base).
 */
static inline void fuzz_check_event(const char *label, size_t index, const metric_event *ev,
                                    size_t max_name_len, size_t max_tags_len,
                                    const void *names_base, size_t base_len, bool tags_in_base)
{
    bool ok = true;
    const char *what = "";
    if (!(ev->type == METRIC_COUNTER || ev->type == METRIC_GAUGE ||
          ev->type == METRIC_DISTRIBUTION || ev->type == METRIC_SET)) {
        ok = false;
        what = "unknown type";
    } else if (ev->flags & ~(unsigned)(EVENT_GAUGE_RELATIVE | EVENT_CLIENT_STAMP)) {
        ok = false;
        what = "unknown flag";
    } else if ((ev->flags & EVENT_GAUGE_RELATIVE) && ev->type != METRIC_GAUGE) {
        ok = false;
        what = "relative flag on a non-gauge";
    } else if (ev->name_len < 1 || ev->name_len > max_name_len || ev->name == NULL) {
        ok = false;
        what = "name_len out of range (or no name)";
    } else if (ev->tags_len > max_tags_len || (ev->tags_len > 0 && ev->tags == NULL)) {
        ok = false;
        what = "tags_len out of range (or no tags pointer)";
    } else if (!event_amount_in_domain(ev->value, ev->sample_rate)) {
        ok = false;
        what = "value / sample_rate outside the numeric domain (event_amount_in_domain)";
    } else if (ev->type == METRIC_SET && (memcmp(&ev->value, &(double){0.0}, sizeof ev->value) != 0 ||
                                          ev->sample_rate != 1.0)) {
        ok = false;
        what = "a set event with a value or a rate";
    } else if (ev->type != METRIC_SET && ev->member != 0) {
        ok = false;
        what = "a member digest on an event that is not a set";
    } else if (ev->extra_lines != 0 &&
               (ev->type != METRIC_COUNTER ||
                !((1.0 + (double)ev->extra_lines) / ev->sample_rate <= EVENT_AMOUNT_MAX))) {
        ok = false;
        what = "folded lines on an event that is not a counter, or outside the domain";
    } else if (names_base != NULL && !fuzz_within(ev->name, ev->name_len, names_base, base_len)) {
        ok = false;
        what = "name points outside the input";
    } else if (names_base != NULL && tags_in_base && ev->tags_len > 0 &&
               !fuzz_within(ev->tags, ev->tags_len, names_base, base_len)) {
        ok = false;
        what = "tags point outside the input";
    }
    if (!ok) fuzz_print_event(label, index, ev);
    FUZZ_CHECK(ok, "%s event %zu: %s (limits: name %zu, tags %zu)", label, index, what,
               max_name_len, max_tags_len);
}

/* Whether two events are the same field by field (doubles compared bit for
 * bit, so -0.0 and 0.0 differ; strings by content; no tags == empty tags). */
static inline bool fuzz_same_event(const metric_event *a, const metric_event *b)
{
    return a->type == b->type && a->flags == b->flags && a->name_len == b->name_len &&
           memcmp(a->name, b->name, a->name_len) == 0 && a->tags_len == b->tags_len &&
           (a->tags_len == 0 || memcmp(a->tags, b->tags, a->tags_len) == 0) &&
           memcmp(&a->value, &b->value, sizeof a->value) == 0 &&
           memcmp(&a->sample_rate, &b->sample_rate, sizeof a->sample_rate) == 0 &&
           a->stamp_ms == b->stamp_ms && a->member == b->member &&
           a->extra_lines == b->extra_lines;
}

static inline void fuzz_check_same_event(const char *label, size_t index,
                                         const metric_event *want, const metric_event *got)
{
    bool same = fuzz_same_event(want, got);
    if (!same) {
        fuzz_print_event("original", index, want);
        fuzz_print_event("decoded", index, got);
    }
    FUZZ_CHECK(same, "%s: event %zu differs after the round trip", label, index);
}

/*
 * Encodes `events` with record_encode() (version RECORD_VERSION) or
 * record_encode_compact() (RECORD_VERSION_COMPACT), decodes the result and
 * checks that the encoder accepted them, the decoder accepts its output, and
 * the batch id, receive time, count and every event come back unchanged.
 * Returns the encoded record (the caller frees it) when out/out_len are given.
 */
static inline void fuzz_round_trip(const char *label, unsigned version, const char *batch_id,
                                   size_t batch_id_len, int64_t received_ms,
                                   const metric_event *events, size_t count, uint8_t **out,
                                   size_t *out_len)
{
    char err[256] = "";
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = version == RECORD_VERSION
                 ? record_encode(batch_id, batch_id_len, received_ms, events, count, &buf, &len,
                                 err, sizeof err)
                 : record_encode_compact(batch_id, batch_id_len, received_ms, events, count, &buf,
                                         &len, err, sizeof err);
    FUZZ_CHECK(rc == 0, "%s: version %u encoder refused %zu valid events: %s", label, version,
               count, err);
    record_reader r;
    rc = record_open(&r, buf, len, err, sizeof err);
    FUZZ_CHECK(rc == 0, "%s: decoder refused a version %u record of %zu events (%zu bytes): %s",
               label, version, count, len, err);
    FUZZ_CHECK(r.version == version, "%s: wrote version %u, read version %u", label, version,
               r.version);
    FUZZ_CHECK(r.batch_id_len == batch_id_len &&
                   (batch_id_len == 0 || memcmp(r.batch_id, batch_id, batch_id_len) == 0),
               "%s: batch id differs after the round trip", label);
    FUZZ_CHECK(r.received_ms == received_ms, "%s: received_ms %lld came back as %lld", label,
               (long long)received_ms, (long long)r.received_ms);
    FUZZ_CHECK(r.count == count, "%s: %zu events came back as %u", label, count, r.count);
    metric_event ev;
    for (size_t i = 0; i < count; i++) {
        FUZZ_CHECK(record_next(&r, &ev) == 1, "%s: record_next ended at event %zu of %zu", label,
                   i + 1, count);
        fuzz_check_same_event(label, i + 1, &events[i], &ev);
    }
    FUZZ_CHECK(record_next(&r, &ev) == 0, "%s: record_next returned more than %zu events", label,
               count);
    record_close(&r);
    if (out != NULL) {
        *out = buf;
        *out_len = len;
    } else {
        free(buf);
    }
}

#endif
