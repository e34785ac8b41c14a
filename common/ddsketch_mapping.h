/*
 * ddsketch_mapping.h — the logarithmic index mapping of Tally's DDSketch, and
 * the whole of its relative-error argument.
 *
 * The mapping cuts the positive reals into bins whose bounds grow
 * geometrically by gamma = (1 + alpha) / (1 - alpha). Bin i holds
 *
 *     (gamma^(i-1), gamma^i]          i = index(x) = ceil(log(x) / log(gamma))
 *
 * and every value in it is represented by one number,
 *
 *     value(i) = 2 * gamma^i / (gamma + 1) = (1 - alpha) * gamma^i.
 *
 * Why that bounds the relative error by alpha: for x in bin i,
 *   at the top, x = gamma^i:          (x - value) / x = 1 - (1 - alpha) = alpha;
 *   at the bottom, x -> gamma^(i-1):  (value - x) / x -> (1 - alpha) * gamma - 1
 *                                                     = (1 + alpha) - 1 = alpha;
 * and |value - x| / x is monotone in x on each side of value(i), so
 * |value(i) - x| <= alpha * x for every x in the bin. Any quantile answer that
 * is the value of the bin holding the exact quantile is therefore within alpha
 * of it; the sketch's only job is to find that bin (ddsketch.c).
 *
 * Floating point: log() and exp() are rounded, so a value within a few ulps
 * of a bin bound may land in the neighbouring bin. Its error is then alpha
 * plus about 1e-14 relative (the index is ~1700 at most, computed to ~1e-13
 * of a bin), so the bound the tests check is alpha * (1 + 1e-9).
 *
 * The domain: |x| in [DDSKETCH_MIN_INDEXABLE, DDSKETCH_VALUE_MAX], the StatsD
 * value bound of event.h. Indexes then lie in [DDSKETCH_INDEX_MIN,
 * DDSKETCH_INDEX_MAX] = [-1036, 1727]: 2764 bins cover the whole domain, and
 * the test pins both ends. Magnitudes below DDSKETCH_MIN_INDEXABLE are counted
 * as zero (absolute error below 1e-9 instead of a relative one).
 *
 * The constants are written out rather than computed so that every build and
 * every host maps a value to the same index (the index is what the on-disk
 * format stores). log(gamma) is log1p(2 alpha / (1 - alpha)) rounded to a
 * double; the unit test checks it.
 */
#ifndef TALLY_DDSKETCH_MAPPING_H
#define TALLY_DDSKETCH_MAPPING_H

#include <math.h>
#include <stdint.h>

#define DDSKETCH_ALPHA 0.01
#define DDSKETCH_GAMMA ((1.0 + DDSKETCH_ALPHA) / (1.0 - DDSKETCH_ALPHA))
#define DDSKETCH_LOG_GAMMA 0.020000666706669525
#define DDSKETCH_MIN_INDEXABLE 1e-9
#define DDSKETCH_VALUE_MAX 1e15
#define DDSKETCH_INDEX_MIN (-1036)
#define DDSKETCH_INDEX_MAX 1727

/* The index of the bin holding x. Requires x in [DDSKETCH_MIN_INDEXABLE,
 * DDSKETCH_VALUE_MAX]; the result is then in [DDSKETCH_INDEX_MIN, DDSKETCH_INDEX_MAX]. */
static inline int32_t ddsketch_mapping_index(double x)
{
    return (int32_t)ceil(log(x) / DDSKETCH_LOG_GAMMA);
}

/* The representative of bin i: within alpha (relative) of every x in the bin. */
static inline double ddsketch_mapping_value(int32_t i)
{
    return (1.0 - DDSKETCH_ALPHA) * exp((double)i * DDSKETCH_LOG_GAMMA);
}

#endif
