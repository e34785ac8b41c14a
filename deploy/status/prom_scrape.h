/*
 * prom_scrape.h — read samples out of a Prometheus text exposition (what
 * /metrics answers), for `tally status`. Pure; the text is not modified.
 *
 * A sample line is `name[{labels}] value [timestamp]`; comments (#) and
 * blank lines are skipped. Label blocks are matched as text: the caller asks
 * for a family name and, optionally, a `key="value"` pair the block must hold.
 */
#ifndef TALLY_PROM_SCRAPE_H
#define TALLY_PROM_SCRAPE_H

#include <stddef.h>

/* Calls each(ctx, labels, labels_len, value) for every sample of family
 * `name` (labels: the text between the braces, "" when none), in text order.
 * Returns the number of samples seen. */
size_t prom_scrape_each(const char *text, const char *name,
                        void (*each)(void *ctx, const char *labels, size_t labels_len,
                                     double value),
                        void *ctx);

/* The value of the first sample of `name` whose labels hold `label` (e.g.
 * "instance=\"cache\""; NULL: any). Returns 1 and *value, or 0 when none. */
int prom_scrape_value(const char *text, const char *name, const char *label, double *value);

/* The sum over every sample of `name` (0 when none). */
double prom_scrape_sum(const char *text, const char *name);

#endif
