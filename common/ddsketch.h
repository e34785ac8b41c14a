/*
 * ddsketch.h — a mergeable quantile sketch with relative-error guarantees
 * (DDSketch, Masson, Rim and Lee, VLDB 2019) for StatsD distributions
 * (|ms, |h, |d). Pure: no I/O.
 *
 * Contract. A sketch summarises a multiset of weighted values v (finite,
 * |v| <= DDSKETCH_VALUE_MAX; weight = 1 / sample_rate in [1,
 * DDSKETCH_WEIGHT_MAX]). ddsketch_quantile(q) answers the value at rank
 * q * (count - 1) of the weighted order (the first value whose cumulative
 * weight exceeds that rank), and the answer y is within alpha = 1% of the
 * exact one x, |y - x| <= 0.01 |x| (plus ~1e-14 of rounding), whenever
 *   - |x| >= DDSKETCH_MIN_INDEXABLE (1e-9; smaller magnitudes count as zero
 *     and are answered as 0, clamped to the min and max seen), and
 *   - x lies in a bin the sketch kept: each of the positive and negative
 *     stores keeps at most DDSKETCH_MAX_BINS = 2560 consecutive bins, which
 *     span a factor gamma^2559 = 1.7e22 (22 decades). Data spanning more
 *     in one sign collapses that store's LOWEST values (the smallest
 *     positive values; the most negative ones) into its lowest kept bin, so
 *     the high quantiles keep the guarantee and only values below
 *     max_positive / 1.7e22 (resp. below -|closest_negative| * 1.7e22)
 *     lose it. Up to the domain (1e-9..1e15, 24 decades), this takes data
 *     spanning more than 22 decades in one sign.
 * q = 0 and q = 1 answer the exact min and max, and every answer is clamped
 * to [min, max]. Merging is exact: the merge of sketches equals the sketch
 * of the union of their data (the same bins, hence the same answers and the
 * same encoding, up to the rounding of adding non-integral weights in
 * another order).
 *
 * Serialised form (version 1; stored in SQLite BLOBs, so it is a public
 * on-disk format and only ever extended under a new version byte):
 *
 *   u8     version                       DDSKETCH_FORMAT_VERSION (1)
 *   count  zero_count                    weight of values with |v| < 1e-9
 *   f64    min                           exact min seen (+0.0 when empty)
 *   f64    max                           exact max seen (+0.0 when empty)
 *   store  positive                      keys k = index(v)     for v > 0
 *   store  negative                      keys k = -index(-v)   for v < 0
 *
 *   store := varint n                    nonzero bins, 0..DDSKETCH_MAX_BINS
 *            n x { varint zigzag(k - previous k)   (previous = 0 for the first)
 *                  count }               keys strictly increasing, last - first
 *                                        < DDSKETCH_MAX_BINS, within
 *                                        [DDSKETCH_INDEX_MIN, DDSKETCH_INDEX_MAX]
 *                                        (negated for the negative store)
 *   count := varint x:  x even: the count is x / 2 (integral counts < 2^53)
 *                       x == 1: an f64 follows (any other count)
 *                       any other odd x is corrupt
 *   varint: unsigned LEB128, minimal (varint.h); f64: IEEE-754 binary64,
 *   8 bytes little-endian; index(x) = ceil(ln x / ln gamma) with
 *   gamma = 1.01 / 0.99 (ddsketch_mapping.h).
 *
 * Keys are ascending in value order in both stores (the negative store
 * negates its indexes). A bin count is >= 1 (every weight is); the zero
 * count is 0 or >= 1; all counts together are at most DDSKETCH_COUNT_MAX.
 * min and max are in the domain, min <= max, and agree in sign with the
 * stores that hold values. The encoder writes counts as varints whenever
 * they are integral and below 2^53, so the same sketch always gives the same
 * bytes; the decoder also accepts the f64 form for any count.
 */
#ifndef TALLY_DDSKETCH_H
#define TALLY_DDSKETCH_H

#include <stddef.h>

#include "ddsketch_mapping.h"

#define DDSKETCH_FORMAT_VERSION 1u
#define DDSKETCH_MAX_BINS 2560       /* per store: ~20 KB of counts at most */
#define DDSKETCH_WEIGHT_MAX 1e15     /* = EVENT_AMOUNT_MAX: 1 / the smallest sample rate */
#define DDSKETCH_COUNT_MAX 1e300     /* total weight: keeps every sum finite */

typedef struct ddsketch ddsketch;

/* A new, empty sketch (owned by the caller, freed with ddsketch_free), or
 * NULL when out of memory. Allocates no bins until the first value. */
ddsketch *ddsketch_new(void);

/* Frees s and its bins; NULL is allowed. */
void ddsketch_free(ddsketch *s);

/* Adds value v with weight `weight`. Returns 0, or -1 with s unchanged when
 * v is not finite or |v| > DDSKETCH_VALUE_MAX, weight is not in
 * [1, DDSKETCH_WEIGHT_MAX], the total would pass DDSKETCH_COUNT_MAX, or
 * memory runs out. */
int ddsketch_add(ddsketch *s, double v, double weight);

/* Adds everything `from` holds to `into` (from is unchanged; into == from
 * doubles it). Returns 0, or -1 with into unchanged when out of memory or
 * the total would pass DDSKETCH_COUNT_MAX. */
int ddsketch_merge(ddsketch *into, const ddsketch *from);

/* The total weight added (0 for an empty sketch). */
double ddsketch_count(const ddsketch *s);

/* The number of nonzero bins held (both stores; the zero count is not a
 * bin): what the sketch costs in memory and on disk, about 10 bytes each
 * encoded. */
size_t ddsketch_bins(const ddsketch *s);

/* Sets *out to the q-quantile (see the contract above) and returns 0, or
 * returns -1 with *out untouched when s is empty or q is not in [0, 1]. */
int ddsketch_quantile(const ddsketch *s, double q, double *out);

/* Empties s; it keeps its memory for reuse. */
void ddsketch_clear(ddsketch *s);

/* Encodes s (format above) into a new malloc'd buffer *out of *len bytes,
 * owned by the caller. Deterministic. Returns 0, or -1 when out of memory
 * (*out and *len untouched). At most 1 + 9 + 16 + 2 * (10 + 19 * 2560)
 * bytes; typically a few hundred. */
int ddsketch_encode(const ddsketch *s, unsigned char **out, size_t *len);

/* Decodes the len bytes at buf and MERGES them into `into` (so reading many
 * buckets is decoding each into one sketch). The whole input is validated
 * before into changes: returns 0, or -1 with into unchanged and err (when
 * errlen > 0) naming the problem ("truncated", "unsupported ddsketch version
 * 7", "bin count 3000 exceeds 2560", ...). Never reads outside buf. */
int ddsketch_decode(ddsketch *into, const unsigned char *buf, size_t len, char *err,
                    size_t errlen);

#endif
