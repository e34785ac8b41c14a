/*
 * format.h — text formatting shared by the HTTP API and the Redis writer:
 * exact round-trip doubles, JSON string escaping, digit grouping. Pure.
 */
#ifndef TALLY_FORMAT_H
#define TALLY_FORMAT_H

#include <stddef.h>

#define FORMAT_DOUBLE_MAX 32

/* Writes the shortest of "%.15g"/"%.16g"/"%.17g" that reads back as exactly v
 * into buf (at least FORMAT_DOUBLE_MAX bytes). Returns the length (<
 * FORMAT_DOUBLE_MAX), or -1 with buf = "" when v is not finite: no text of
 * Redis, SQLite or JSON holds infinity or NaN, so the caller must decide
 * (JSON writes null, a Redis update is refused). */
int format_double(char *buf, size_t buflen, double v);

#define FORMAT_PROM_VALUE_MAX 400

/* A sample value as the Prometheus API writes it (Go's FormatFloat(v, 'f',
 * -1, 64)): the shortest digits that read back as v, never an exponent
 * ("1000000000000000000000", "0.000001"), and "NaN", "+Inf", "-Inf".
 * buf holds at least FORMAT_PROM_VALUE_MAX bytes. Returns the length. */
int format_prom_value(char *buf, size_t buflen, double v);

/* Writes `src` (len bytes) JSON-escaped, without quotes, into dst; returns the
 * number of bytes written (excluding the NUL), or -1 when dst is too small.
 * dst needs at most 6*len+1 bytes. */
int json_escape(char *dst, size_t dstlen, const char *src, size_t len);

/* n with its digits grouped by commas ("1,234,567") into buf (at least 28
 * bytes for any int64). Returns the length. */
int format_thousands(char *buf, size_t buflen, long long n);

#endif
