/*
 * counter_fold.h — the counter lines of one StatsD producer's batch in the
 * making (statsd_gather.h), folded: lines that differ only in their value
 * ("a:1|c|#x:y", "a:2|c|#x:y") become one line holding the sum ("a:3|c|#x:y")
 * that stands for both (event.h: extra_lines = 1). So a listener batch of
 * 10,000 lines over 100 counters goes down the write path as 100 events,
 * while the totals, the line counts and the weights in Redis and SQLite stay
 * those of the lines as sent (a folded counter's value / rate is the sum of
 * each line's, its weight (1 + extra_lines) / rate).
 *
 * What folds: a counter line the parser accepted with one value (not packed)
 * right after "NAME:". Its key is the line without the value: the name, then
 * every byte from the '|' after the value (so another rate, a tag order or a
 * |T of its own makes another entry). A line that would take its entry out of
 * event.h's domain (|sum| / rate or (1 + extra_lines) / rate over
 * EVENT_AMOUNT_MAX, or 2^32 lines) is not folded: the caller keeps it as it
 * is. Sums of whole values below 2^53 are exact; sums of fractions are the
 * sums of doubles, as the flusher's would be.
 *
 * Not thread-safe: one per producer. Pure (no I/O).
 */
#ifndef TALLY_COUNTER_FOLD_H
#define TALLY_COUNTER_FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"
#include "index_table.h"

#define COUNTER_FOLD_SUM_MAX 32 /* bytes of a sum as written, at most (and a NUL) */

typedef struct fold_entry fold_entry;

typedef struct counter_fold {
    index_table index;
    fold_entry *entries;
    size_t count, cap;
    char *keys;              /* every entry's key, back to back */
    size_t keys_len, keys_cap;
    size_t text_bytes;       /* what counter_fold_write() writes, at most */
} counter_fold;

void counter_fold_init(counter_fold *f);
void counter_fold_free(counter_fold *f);

/* Folds the line (len bytes, no '\n'; ev: the parser's event for it, whose
 * name points at the line's start). 1 folded (into a new or an existing
 * entry), 0 not a line that folds (keep it as it is), -1 out of memory. */
int counter_fold_add(counter_fold *f, const char *line, size_t len, const metric_event *ev);

/* Empties the fold (keeping its memory). */
void counter_fold_clear(counter_fold *f);

/* Entries held: the events the folded lines make. */
size_t counter_fold_count(const counter_fold *f);

/* Bytes counter_fold_write() needs at most. */
size_t counter_fold_bytes(const counter_fold *f);

/* Writes each entry, in the order first seen, as one '\n'-terminated line
 * ("NAME:SUM" and its sections) to out (counter_fold_bytes() of room) and
 * its extra_lines to extra[i] (counter_fold_count() of room); returns the
 * bytes written. Then empties the fold (keeping its memory). */
size_t counter_fold_write(counter_fold *f, char *out, uint32_t *extra);

#endif
