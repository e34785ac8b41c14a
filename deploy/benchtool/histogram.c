/*
 * histogram.c — log-linear bucketing for latency percentiles.
 *
 * A value v below HIST_LINEAR (256) is its own bucket index. Above that, let
 * s be the shift that leaves v's top eight bits: v >> s lies in [128, 256),
 * and the index is HIST_LINEAR + (s - 1) * 128 + ((v >> s) - 128). Every
 * bucket then spans 2^s values starting at (v >> s) << s, which is less than
 * 1/128 of the values it holds: the relative error stays under 0.8 % however
 * large the value, with a fixed 59 KB table and no floating point on the
 * recording path. This is the idea of HdrHistogram, reduced to one fixed
 * precision.
 */
#include "histogram.h"

#include <assert.h>
#include <math.h>
#include <string.h>

static unsigned bucket_of(uint64_t v)
{
    if (v < HIST_LINEAR) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= 8 */
    unsigned s = msb - 7u;                             /* >= 1 */
    uint64_t top = v >> s;                             /* in [128, 256) */
    assert(top >= HIST_SUB && top < 2 * HIST_SUB);
    unsigned idx = HIST_LINEAR + (s - 1u) * HIST_SUB + (unsigned)(top - HIST_SUB);
    assert(idx < HIST_BUCKETS);
    return idx;
}

/* The midpoint of bucket idx. */
static uint64_t value_of(unsigned idx)
{
    if (idx < HIST_LINEAR) return idx;
    unsigned s = (idx - HIST_LINEAR) / HIST_SUB + 1u;
    uint64_t top = (idx - HIST_LINEAR) % HIST_SUB + HIST_SUB;
    return (top << s) + ((uint64_t)1 << (s - 1u));
}

void hist_init(latency_hist *h)
{
    memset(h, 0, sizeof *h);
    h->min_us = UINT64_MAX;
}

void hist_record(latency_hist *h, uint64_t us)
{
    h->counts[bucket_of(us)]++;
    h->total++;
    if (us > h->max_us) h->max_us = us;
    if (us < h->min_us) h->min_us = us;
}

void hist_merge(latency_hist *dst, const latency_hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) dst->counts[i] += src->counts[i];
    dst->total += src->total;
    if (src->max_us > dst->max_us) dst->max_us = src->max_us;
    if (src->min_us < dst->min_us) dst->min_us = src->min_us;
}

uint64_t hist_percentile(const latency_hist *h, double pct)
{
    assert(pct > 0 && pct <= 100);
    if (h->total == 0) return 0;
    if (pct >= 100) return h->max_us;
    uint64_t rank = (uint64_t)ceil(pct / 100.0 * (double)h->total);
    if (rank == 0) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = value_of(i);
            if (v > h->max_us) v = h->max_us;
            if (v < h->min_us) v = h->min_us;
            return v;
        }
    }
    return h->max_us; /* not reached: the counts add up to total */
}
