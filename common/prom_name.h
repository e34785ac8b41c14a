/*
 * prom_name.h — how a StatsD series is named in the Prometheus API (pure).
 *
 * Name: the StatsD name with every character outside [a-zA-Z0-9_:] replaced
 * by one '_' (statsd_exporter's convention: "api.requests" -> "api_requests";
 * a multi-byte UTF-8 character is one character: "café" -> "caf_"), and
 * a leading '_' when it would start with a digit (a Prometheus name cannot).
 * Labels: a tag "k:v" becomes label k="v" (the key mapped like a name, the
 * value kept verbatim: it may hold ':', '/', spaces and any UTF-8); a bare
 * tag "k" becomes k="true".
 * The mapping is not one-to-one ("a.b" and "a_b", or a counter and a gauge
 * of one name, map to the same series): README "Names" says what a query
 * then answers.
 */
#ifndef TALLY_PROM_NAME_H
#define TALLY_PROM_NAME_H

#include <stddef.h>

/* Longest Prometheus name of a name of EVENT_NAME_MAX bytes, plus a NUL. */
#define PROM_NAME_MAX (255 + 2)

/* Writes the Prometheus name of name[0..len) into out (at least len + 2
 * bytes); returns its length. */
size_t prom_name_from_statsd(char *out, const char *name, size_t len);

/* A distribution NAME is exposed as NAME_count, NAME_sum, NAME_min and
 * NAME_max (and NAME{quantile=...}): the suffixes, index 1..4 (0 is ""). */
#define PROM_DIST_SUFFIXES 5
extern const char *const prom_dist_suffixes[PROM_DIST_SUFFIXES];

/* Writes `name` without its distribution suffix into base (at least
 * strlen(name) + 1 bytes; the name itself when it has none); returns the
 * suffix index (0: none). */
int prom_name_strip_suffix(char *base, const char *name);

/* Calls fn once per tag of the canonical tags[0..len) with the label's name
 * (mapped, NUL-terminated) and value (tags' bytes, value_len, may be 0).
 * Stops at and returns fn's first non-zero return, else 0. */
int prom_labels_from_tags(const char *tags, size_t len,
                          int (*fn)(void *ctx, const char *label, const char *value,
                                    size_t value_len),
                          void *ctx);

#endif
