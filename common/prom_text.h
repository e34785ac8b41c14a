/*
 * prom_text.h — writing /metrics in Prometheus' text exposition format
 * (version 0.0.4), shared by tally-ingest and tally-flusher; and the one
 * latency histogram their metrics use.
 *
 * Contract: pure (no I/O). A prom_text grows its own buffer; once an
 * allocation fails it stops writing and prom_text_failed() says so (the
 * caller answers 500). Families are written as "# HELP" and "# TYPE" lines
 * followed by their samples; label values are escaped ('\\', '"', '\n');
 * values print as Prometheus reads them (integers exactly, NaN, +Inf).
 *
 * prom_hist: cumulative-friendly buckets of seconds (PROM_HIST_BOUNDS upper
 * bounds plus +Inf), counts and sum as relaxed atomics, so one thread can
 * observe while another (a scrape) reads.
 */
#ifndef TALLY_PROM_TEXT_H
#define TALLY_PROM_TEXT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct prom_text {
    char *buf;
    size_t len, cap;
    int failed;
} prom_text;

void prom_text_init(prom_text *t);
void prom_text_free(prom_text *t);
int prom_text_failed(const prom_text *t);

/* "# HELP name help" and "# TYPE name type" (counter, gauge, histogram). */
void prom_text_family(prom_text *t, const char *name, const char *type, const char *help);

/* name{k1="v1",...} value; labels: NULL, or pairs ending with NULL. */
void prom_text_sample(prom_text *t, const char *name, const char *const *labels, double value);

/* A family of one sample without labels: HELP, TYPE and the sample. */
void prom_text_single(prom_text *t, const char *name, const char *type, const char *help,
                      double value);

#define PROM_HIST_BOUNDS 14

typedef struct prom_hist {
    _Atomic uint64_t buckets[PROM_HIST_BOUNDS + 1]; /* per bucket (not cumulative); last: +Inf */
    _Atomic uint64_t sum_ns;
} prom_hist;

/* The upper bounds, in seconds: 0.0005 .. 10. */
extern const double prom_hist_bounds[PROM_HIST_BOUNDS];

void prom_hist_observe(prom_hist *h, double seconds);

/* The family (HELP, TYPE histogram) and its _bucket (cumulative, le=...),
 * _sum and _count samples. */
void prom_text_histogram(prom_text *t, const char *name, const char *help, const prom_hist *h);

#endif
