/*
 * payload.h — request bodies for the benchmark: one batch of metric lines in
 * StatsD or InfluxDB line protocol, generated once and re-sent many times.
 *
 * Contract in a few lines:
 *  - A type mix is a set of percentages for the StatsD types c, g, ms, h and d
 *    ("c=80,g=10,ms=10"); mix_parse() checks it and names what is wrong.
 *  - payload_new() builds a body of exactly `lines` lines, every line naming
 *    one of `names` distinct metrics (bench.m0 .. bench.mN-1) and a type drawn
 *    from the mix, from a seeded generator: the same arguments give the same
 *    body. It touches no I/O.
 *  - StatsD lines carry no timestamp (the service stamps them on receipt).
 *    InfluxDB lines end in a 19-digit nanosecond timestamp that
 *    payload_stamp() rewrites in place before each send, so that no point is
 *    ever sent twice with the same series and time (InfluxDB would overwrite
 *    it instead of storing a new point).
 */
#ifndef TALLY_BENCH_PAYLOAD_H
#define TALLY_BENCH_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

/* PAYLOAD_GET: no body; each request is a GET of the URL (a read, e.g. a
 * query_range), counted as one event. */
typedef enum { PAYLOAD_STATSD, PAYLOAD_INFLUX, PAYLOAD_GET } payload_format;

enum { MIX_C, MIX_G, MIX_MS, MIX_H, MIX_D, MIX_TYPES };

typedef struct type_mix {
    unsigned weight[MIX_TYPES]; /* percentages (any positive total is accepted) */
} type_mix;

/*
 * Parses "TYPE=PCT,..." with TYPE one of c, g, ms, h, d into *mix (types not
 * named get 0). Returns 0, or -1 with err filled (unknown type, bad number,
 * repeated type, all weights zero).
 */
int mix_parse(const char *text, type_mix *mix, char *err, size_t err_len);

/* One splitmix64 step: a small, good, seedable generator. */
uint64_t bench_rand(uint64_t *state);

typedef struct payload payload;

/*
 * Builds a body of `lines` lines (1 <= lines, 1 <= names) in `format`, drawing
 * names, types and values from *rng (advanced). Returns NULL with err filled
 * when out of memory. The caller owns the payload (payload_free).
 */
payload *payload_new(payload_format format, unsigned lines, unsigned names, const type_mix *mix,
                     uint64_t *rng, char *err, size_t err_len);

void payload_free(payload *p);

/* The body and its length; valid until payload_stamp() or payload_free(). */
const char *payload_body(const payload *p, size_t *len);

/* Number of lines in the body. */
unsigned payload_lines(const payload *p);

/*
 * InfluxDB format only: sets the timestamp of line i to first_ns + i.
 * Requires 10^18 <= first_ns and first_ns + lines < 10^19 (19 digits; true
 * for any wall-clock time between 2001 and 2286). No-op for StatsD.
 */
void payload_stamp(payload *p, int64_t first_ns);

#endif
