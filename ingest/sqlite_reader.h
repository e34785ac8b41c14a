/*
 * sqlite_reader.h — read-only queries of the flushed totals in SQLite, for
 * GET /v1/counters/NAME?source=sqlite and for reads while Redis is down.
 *
 * Contract: opens sqlite.path read-only and lazily (the flusher creates the
 * database; until it exists every read fails with a clear reason). Never
 * writes. Queries are short primary-key range scans, run synchronously on
 * the event loop.
 */
#ifndef TALLY_SQLITE_READER_H
#define TALLY_SQLITE_READER_H

#include <stddef.h>

#include "config.h"

typedef struct sqlite_reader sqlite_reader;

/* One series' flushed total. */
typedef struct flushed_series {
    char *tags; /* canonical tags, NUL-terminated, owned by the result */
    double value;
} flushed_series;

typedef struct flushed_total {
    flushed_series *series;
    size_t count;
} flushed_total;

sqlite_reader *sqlite_reader_new(const tally_config *cfg);

/* Fills *out with every tag series of counter `name` and its flushed total.
 * Returns 0 (count may be 0: nothing flushed yet), or -1 with err filled.
 * Free the result with flushed_total_free(). */
int sqlite_reader_counter(sqlite_reader *r, const char *name, flushed_total *out, char *err,
                          size_t errlen);

void flushed_total_free(flushed_total *t);
void sqlite_reader_free(sqlite_reader *r);

#endif
