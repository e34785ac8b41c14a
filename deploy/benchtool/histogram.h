/*
 * histogram.h — a log-linear latency histogram in the manner of HdrHistogram.
 *
 * Contract in a few lines:
 *  - Values are microseconds (uint64_t). Values below 256 µs have a bucket of
 *    their own; above that, every power of two is split into 128 equal
 *    buckets, so a recorded value is known to within 0.8 % (more than two
 *    significant digits) from 1 µs up to the full 64-bit range.
 *  - Recording is O(1) with no allocation; a histogram is a plain struct that a
 *    thread owns, and hist_merge() adds one into another afterwards.
 *  - Percentiles are answered with the midpoint of the bucket that holds the
 *    value of that rank, never above the exact maximum seen.
 */
#ifndef TALLY_BENCH_HISTOGRAM_H
#define TALLY_BENCH_HISTOGRAM_H

#include <stdint.h>

#define HIST_LINEAR 256u  /* values below this are exact */
#define HIST_SUB 128u     /* buckets per power of two above it */
#define HIST_BUCKETS (HIST_LINEAR + 56u * HIST_SUB)

typedef struct latency_hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;   /* values recorded */
    uint64_t max_us;  /* exact largest value */
    uint64_t min_us;  /* exact smallest value; UINT64_MAX when empty */
} latency_hist;

/* Empties h. */
void hist_init(latency_hist *h);

/* Counts one value of `us` microseconds. */
void hist_record(latency_hist *h, uint64_t us);

/* Adds every value of src into dst. */
void hist_merge(latency_hist *dst, const latency_hist *src);

/*
 * The value below which `pct` percent (0 < pct <= 100) of the recorded values
 * lie, in microseconds, to the histogram's precision; 0 when h is empty.
 * pct = 100 returns the exact maximum.
 */
uint64_t hist_percentile(const latency_hist *h, double pct);

#endif
