/*
 * ddsketch.c — DDSketch: a quantile sketch whose answers are within a
 * relative error alpha of the exact quantile, and which merges exactly.
 *
 * Representation. A value v is counted in one of three places: a positive
 * store (v >= 1e-9), a negative store (v <= -1e-9) or a single zero count
 * (|v| < 1e-9). A store is a dense array of bin counts (doubles: a StatsD
 * value weighs 1 / sample_rate) over a window of consecutive keys. The key
 * of a positive value is the index of its bin under the logarithmic mapping
 * of ddsketch_mapping.h; the key of a negative value is MINUS the index of
 * its magnitude, so that in both stores ascending keys are ascending values
 * and one piece of code (collapse the lowest keys) serves both. The window
 * grows on demand (geometrically, from 64 bins) and is re-centred when a
 * key falls outside it, so a sketch of latencies between 1 ms and 10 s
 * holds ~460 bins (3.7 KB), whatever the number of values.
 *
 * Error bound. All the relative-error reasoning lives in
 * ddsketch_mapping.h: every value of a bin is within alpha of the bin's
 * representative. Here the sketch only has to find the right bin, and it
 * does so exactly: bins are ordered like the values they hold and each
 * holds exactly the weight of its values, so walking the bins in value
 * order (negative store, zero, positive store) and stopping where the
 * cumulative weight first exceeds rank = q * (count - 1) stops at the bin
 * holding the exact quantile. The answer is then clamped to the exact min
 * and max, which can only bring it closer (the exact quantile lies between
 * them); q = 0 and q = 1 are answered by the min and max themselves.
 *
 * Bounded memory. A store spans at most DDSKETCH_MAX_BINS keys. When a new
 * key (or a merge) would widen it past that, every bin below
 * hi - DDSKETCH_MAX_BINS + 1 is folded into that lowest kept bin, as
 * DataDog's CollapsingLowestDenseStore does: the lowest values lose their
 * accuracy, the rest keep it. Which bins are kept depends only on the
 * highest key ever seen, so the result does not depend on the order of
 * additions and merges: merge stays exact under collapse too. The whole
 * domain needs 2764 bins per sign, so collapse takes data spanning more
 * than 22 decades of one sign.
 *
 * Merge rule. Bin-wise addition of counts (after the same collapse), sum of
 * zero counts, min of mins, max of maxes. Every operation that can fail
 * (add, merge, decode) allocates first and changes the sketch only once
 * nothing can fail any more, so a failure leaves the sketch as it was.
 *
 * Serialised form: ddsketch.h (an on-disk format). The decoder builds a
 * separate sketch from the bytes, validating every field as it goes
 * (lengths, key order and range, the span, counts, extremes), and merges it
 * only once the whole input has been accepted.
 */
#include "ddsketch.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varint.h"

#define STORE_INITIAL_CAP 64
#define INTEGRAL_LIMIT 9007199254740992.0 /* 2^53 */
#define COUNT_F64_TAG 1u

typedef struct store {
    double *bins;   /* cap counters; bins[k - offset] counts key k */
    int32_t offset; /* the key of bins[0] */
    int32_t cap;
    int32_t lo, hi; /* occupied keys when total > 0: bins at lo and hi are nonzero */
    double total;   /* sum of bins; every bin is >= 1, so > 0 iff nonempty */
} store;

struct ddsketch {
    store pos; /* keys index(v) */
    store neg; /* keys -index(-v) */
    double zero;
    double min, max; /* +inf / -inf while empty */
};

/* A window change prepared by store_reserve() and applied by store_commit(). */
typedef struct store_plan {
    int32_t lo, hi; /* the keys the store will hold, lo the collapse floor */
    double *fresh;  /* a zeroed buffer of fresh_cap when the current is too small */
    int32_t fresh_cap;
} store_plan;

/* ---- stores --------------------------------------------------------------- */

static int store_empty(const store *s)
{
    return s->total == 0.0;
}

static double *store_bin(const store *s, int32_t key)
{
    assert(key >= s->offset && key < s->offset + s->cap);
    return &s->bins[key - s->offset];
}

/* Plans a window holding the current bins and keys lo..hi: the kept range
 * ends at the highest key and spans at most DDSKETCH_MAX_BINS, and a larger
 * buffer is allocated when needed. Returns 0, or -1 when out of memory
 * (nothing changed). */
static int store_reserve(const store *s, int32_t lo, int32_t hi, store_plan *p)
{
    if (!store_empty(s)) {
        lo = lo < s->lo ? lo : s->lo;
        hi = hi > s->hi ? hi : s->hi;
    }
    if (hi - lo + 1 > DDSKETCH_MAX_BINS)
        lo = hi - DDSKETCH_MAX_BINS + 1;
    p->lo = lo;
    p->hi = hi;
    p->fresh = NULL;
    p->fresh_cap = 0;
    int32_t need = hi - lo + 1;
    if (need <= s->cap)
        return 0;
    int32_t cap = s->cap > 0 ? 2 * s->cap : STORE_INITIAL_CAP;
    if (cap < need + need / 4)
        cap = need + need / 4;
    if (cap > DDSKETCH_MAX_BINS)
        cap = DDSKETCH_MAX_BINS;
    p->fresh = calloc((size_t)cap, sizeof *p->fresh);
    if (!p->fresh)
        return -1;
    p->fresh_cap = cap;
    return 0;
}

/* Releases what store_reserve() allocated for a plan that is not applied. */
static void store_plan_drop(store_plan *p)
{
    free(p->fresh);
    p->fresh = NULL;
}

/* Folds the bins below `floor` away: zeroes them and returns their sum. */
static double store_fold_below(store *s, int32_t floor)
{
    double folded = 0.0;
    if (store_empty(s))
        return 0.0;
    for (int32_t k = s->lo; k <= s->hi && k < floor; k++) {
        folded += *store_bin(s, k);
        *store_bin(s, k) = 0.0;
    }
    return folded;
}

/* Moves the kept keys first..last (first > last: none) into a window of
 * `cap` bins centred on the plan's range, in the fresh buffer or in place. */
static void store_move(store *s, const store_plan *p, int32_t first, int32_t last)
{
    int32_t cap = p->fresh ? p->fresh_cap : s->cap;
    int32_t offset = p->lo - (cap - (p->hi - p->lo + 1)) / 2;
    double *dst = p->fresh ? p->fresh : s->bins;
    int32_t n = last - first + 1;
    if (n > 0)
        memmove(dst + (first - offset), s->bins + (first - s->offset), (size_t)n * sizeof *dst);
    if (!p->fresh) {
        int32_t at = n > 0 ? first - offset : 0;
        memset(dst, 0, (size_t)at * sizeof *dst);
        if (n > 0)
            memset(dst + at + n, 0, (size_t)(cap - at - n) * sizeof *dst);
    } else {
        free(s->bins);
        s->bins = p->fresh;
        s->cap = cap;
    }
    s->offset = offset;
}

/* Applies a plan (cannot fail): collapses the bins below the plan's floor
 * into it and makes the window cover the plan's range. */
static void store_commit(store *s, const store_plan *p)
{
    double folded = store_fold_below(s, p->lo);
    int32_t first = store_empty(s) || s->lo < p->lo ? p->lo : s->lo;
    int32_t last = store_empty(s) ? p->lo - 1 : s->hi;
    if (p->fresh || p->lo < s->offset || p->hi >= s->offset + s->cap)
        store_move(s, p, first, last);
    if (folded > 0.0) {
        *store_bin(s, p->lo) += folded;
        s->lo = p->lo;
        if (s->hi < p->lo)
            s->hi = p->lo;
    }
}

/* Adds count c (> 0) at key, which the window covers, at or above its floor. */
static void store_put(store *s, int32_t key, double c)
{
    assert(c > 0.0);
    *store_bin(s, key) += c;
    if (store_empty(s)) {
        s->lo = key;
        s->hi = key;
    } else {
        s->lo = key < s->lo ? key : s->lo;
        s->hi = key > s->hi ? key : s->hi;
    }
    s->total += c;
}

/* Adds count c at key, collapsing if needed. Returns 0, or -1 (out of memory;
 * nothing changed). */
static int store_add(store *s, int32_t key, double c)
{
    store_plan p;
    if (store_reserve(s, key, key, &p) != 0)
        return -1;
    store_commit(s, &p);
    store_put(s, key < p.lo ? p.lo : key, c);
    return 0;
}

/* Adds every bin of `from` into `into` under the committed plan p (whose
 * floor is where bins below it go). into == from is allowed. */
static void store_merge_bins(store *into, const store *from, const store_plan *p)
{
    int32_t lo = from->lo, hi = from->hi;
    for (int32_t k = lo; k <= hi; k++) {
        double c = *store_bin(from, k);
        if (c > 0.0)
            store_put(into, k < p->lo ? p->lo : k, c);
    }
}

static void store_clear(store *s)
{
    if (s->bins)
        memset(s->bins, 0, (size_t)s->cap * sizeof *s->bins);
    s->total = 0.0;
    s->lo = s->hi = 0;
}

static size_t store_bins(const store *s)
{
    size_t n = 0;
    if (store_empty(s))
        return 0;
    for (int32_t k = s->lo; k <= s->hi; k++)
        n += *store_bin(s, k) > 0.0;
    return n;
}

/* ---- the sketch ----------------------------------------------------------- */

ddsketch *ddsketch_new(void)
{
    ddsketch *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->min = INFINITY;
    s->max = -INFINITY;
    return s;
}

void ddsketch_free(ddsketch *s)
{
    if (!s)
        return;
    free(s->pos.bins);
    free(s->neg.bins);
    free(s);
}

void ddsketch_clear(ddsketch *s)
{
    store_clear(&s->pos);
    store_clear(&s->neg);
    s->zero = 0.0;
    s->min = INFINITY;
    s->max = -INFINITY;
}

double ddsketch_count(const ddsketch *s)
{
    return s->neg.total + s->zero + s->pos.total;
}

size_t ddsketch_bins(const ddsketch *s)
{
    return store_bins(&s->pos) + store_bins(&s->neg);
}

static void note_extremes(ddsketch *s, double min, double max)
{
    if (min < s->min)
        s->min = min;
    if (max > s->max)
        s->max = max;
}

int ddsketch_add(ddsketch *s, double v, double weight)
{
    if (!(fabs(v) <= DDSKETCH_VALUE_MAX) || !(weight >= 1.0 && weight <= DDSKETCH_WEIGHT_MAX))
        return -1;
    if (ddsketch_count(s) + weight > DDSKETCH_COUNT_MAX)
        return -1;
    int rc = 0;
    if (fabs(v) < DDSKETCH_MIN_INDEXABLE)
        s->zero += weight;
    else if (v > 0.0)
        rc = store_add(&s->pos, ddsketch_mapping_index(v), weight);
    else
        rc = store_add(&s->neg, -ddsketch_mapping_index(-v), weight);
    if (rc != 0)
        return -1;
    note_extremes(s, v, v);
    return 0;
}

/* Plans the merge of one store; an empty `from` plans nothing. */
static int merge_reserve(const store *into, const store *from, store_plan *p)
{
    if (store_empty(from)) {
        p->fresh = NULL;
        return 0;
    }
    return store_reserve(into, from->lo, from->hi, p);
}

static void merge_apply(store *into, const store *from, const store_plan *p)
{
    if (store_empty(from))
        return;
    store_commit(into, p);
    store_merge_bins(into, from, p);
}

int ddsketch_merge(ddsketch *into, const ddsketch *from)
{
    if (ddsketch_count(into) + ddsketch_count(from) > DDSKETCH_COUNT_MAX)
        return -1;
    store_plan pp, np;
    if (merge_reserve(&into->pos, &from->pos, &pp) != 0)
        return -1;
    if (merge_reserve(&into->neg, &from->neg, &np) != 0) {
        store_plan_drop(&pp);
        return -1;
    }
    double zero = from->zero, min = from->min, max = from->max;
    merge_apply(&into->pos, &from->pos, &pp);
    merge_apply(&into->neg, &from->neg, &np);
    into->zero += zero;
    note_extremes(into, min, max);
    return 0;
}

/* Walks one store in ascending keys; returns 1 and sets *key at the bin where
 * the cumulative weight *cum first exceeds rank, else 0 (with *cum advanced). */
static int store_find_rank(const store *s, double rank, double *cum, int32_t *key)
{
    if (store_empty(s))
        return 0;
    for (int32_t k = s->lo; k <= s->hi; k++) {
        *cum += *store_bin(s, k);
        if (*cum > rank) {
            *key = k;
            return 1;
        }
    }
    return 0;
}

/* The value at rank in the weighted order, before clamping. */
static double value_at_rank(const ddsketch *s, double rank)
{
    double cum = 0.0;
    int32_t key;
    if (store_find_rank(&s->neg, rank, &cum, &key))
        return -ddsketch_mapping_value(-key);
    cum += s->zero;
    if (cum > rank)
        return 0.0;
    if (store_find_rank(&s->pos, rank, &cum, &key))
        return ddsketch_mapping_value(key);
    return s->max; /* rounding left the rank past the last bin */
}

int ddsketch_quantile(const ddsketch *s, double q, double *out)
{
    double count = ddsketch_count(s);
    if (!(q >= 0.0 && q <= 1.0) || count == 0.0)
        return -1;
    if (q == 0.0 || q == 1.0) {
        *out = q == 0.0 ? s->min : s->max; /* the exact answers are known */
        return 0;
    }
    double v = value_at_rank(s, q * (count - 1.0));
    *out = v < s->min ? s->min : v > s->max ? s->max : v;
    return 0;
}

/* ---- encoding ------------------------------------------------------------- */

static int count_is_integral(double c)
{
    return c < INTEGRAL_LIMIT && c == floor(c);
}

static unsigned char *put_count(unsigned char *w, double c)
{
    if (count_is_integral(c))
        return varint_put(w, (uint64_t)c * 2u);
    *w++ = COUNT_F64_TAG;
    return varint_put_f64(w, c);
}

static unsigned char *put_store(unsigned char *w, const store *s)
{
    w = varint_put(w, store_bins(s));
    int32_t prev = 0;
    for (int32_t k = s->lo; !store_empty(s) && k <= s->hi; k++) {
        double c = *store_bin(s, k);
        if (c == 0.0)
            continue;
        w = varint_put(w, varint_zigzag((int64_t)k - prev));
        w = put_count(w, c);
        prev = k;
    }
    return w;
}

/* An upper bound of the encoded size of a store. */
static size_t store_encoded_max(const store *s)
{
    size_t span = store_empty(s) ? 0 : (size_t)(s->hi - s->lo + 1);
    return VARINT_MAX_BYTES + span * (VARINT_MAX_BYTES + 9);
}

int ddsketch_encode(const ddsketch *s, unsigned char **out, size_t *len)
{
    size_t max = 1 + 9 + 16 + store_encoded_max(&s->pos) + store_encoded_max(&s->neg);
    unsigned char *buf = malloc(max);
    if (!buf)
        return -1;
    int empty = ddsketch_count(s) == 0.0;
    unsigned char *w = buf;
    *w++ = DDSKETCH_FORMAT_VERSION;
    w = put_count(w, s->zero);
    w = varint_put_f64(w, empty ? 0.0 : s->min);
    w = varint_put_f64(w, empty ? 0.0 : s->max);
    w = put_store(w, &s->pos);
    w = put_store(w, &s->neg);
    assert((size_t)(w - buf) <= max);
    *out = buf;
    *len = (size_t)(w - buf);
    return 0;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *c, *end;
    char *err;
    size_t errlen;
} reader;

static int fail(reader *r, const char *fmt, ...)
{
    if (r->err && r->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Reads a count; `what` names it in errors. A bin count must be >= 1; the
 * zero count (allow_zero) may also be 0. */
static int get_count(reader *r, int allow_zero, const char *what, double *out)
{
    uint64_t x;
    if (varint_get(&r->c, r->end, &x) != 0)
        return fail(r, "truncated or malformed %s", what);
    if (x == COUNT_F64_TAG) {
        if (varint_get_f64(&r->c, r->end, out) != 0)
            return fail(r, "truncated %s", what);
    } else if (x % 2u == 0 && x / 2u < (uint64_t)INTEGRAL_LIMIT) {
        *out = (double)(x / 2u);
    } else {
        return fail(r, "malformed %s", what);
    }
    if (!(*out >= 1.0 && *out <= DDSKETCH_COUNT_MAX) && !(allow_zero && *out == 0.0))
        return fail(r, "%s %g out of range", what, *out);
    return 0;
}

/* Reads the next key of a store (strictly above prev unless first) into
 * [kmin, kmax], within DDSKETCH_MAX_BINS of the store's first key. */
static int get_key(reader *r, const char *name, int first, int32_t prev, int32_t kfirst,
                   int32_t kmin, int32_t kmax, int32_t *key)
{
    uint64_t z;
    if (varint_get(&r->c, r->end, &z) != 0)
        return fail(r, "truncated or malformed %s bin index", name);
    int64_t delta = varint_unzigzag(z), base = first ? 0 : prev;
    if (!first && delta < 1)
        return fail(r, "%s bin indexes not increasing", name);
    if (delta < (int64_t)kmin - base || delta > (int64_t)kmax - base)
        return fail(r, "%s bin index out of range", name);
    int64_t k = base + delta;
    assert(k >= kmin && k <= kmax);
    if (!first && k - kfirst >= DDSKETCH_MAX_BINS)
        return fail(r, "%s bins span more than %d", name, DDSKETCH_MAX_BINS);
    *key = (int32_t)k;
    return 0;
}

/* Reads one store into s (empty, and part of the sketch being decoded,
 * whose total so far is *total). */
static int get_store(reader *r, const char *name, int32_t kmin, int32_t kmax, store *s,
                     double *total)
{
    uint64_t n;
    if (varint_get(&r->c, r->end, &n) != 0)
        return fail(r, "truncated or malformed %s bin count", name);
    if (n > DDSKETCH_MAX_BINS)
        return fail(r, "%s bin count %llu exceeds %d", name, (unsigned long long)n,
                    DDSKETCH_MAX_BINS);
    int32_t key = 0, kfirst = 0;
    for (uint64_t i = 0; i < n; i++) {
        double c;
        if (get_key(r, name, i == 0, key, kfirst, kmin, kmax, &key) != 0 ||
            get_count(r, 0, "bin count", &c) != 0)
            return -1;
        if (i == 0)
            kfirst = key;
        if (*total + c > DDSKETCH_COUNT_MAX)
            return fail(r, "total count exceeds %g", DDSKETCH_COUNT_MAX);
        if (store_add(s, key, c) != 0)
            return fail(r, "out of memory");
        *total += c;
    }
    return 0;
}

/* Whether min and max can be the extremes of what s holds. */
static int extremes_consistent(const ddsketch *s)
{
    const double t = DDSKETCH_MIN_INDEXABLE;
    int neg = !store_empty(&s->neg), pos = !store_empty(&s->pos), zero = s->zero > 0.0;
    if (!(fabs(s->min) <= DDSKETCH_VALUE_MAX && fabs(s->max) <= DDSKETCH_VALUE_MAX) ||
        s->min > s->max)
        return 0;
    if (neg != (s->min <= -t) || pos != (s->max >= t))
        return 0;
    if (!neg && !zero && s->min < t)
        return 0; /* only positives: the min is one of them */
    if (!pos && !zero && s->max > -t)
        return 0;
    return 1;
}

/* Reads the extremes into s; an empty sketch must carry +0.0 for both. */
static int check_extremes(reader *r, ddsketch *s)
{
    if (ddsketch_count(s) == 0.0) {
        uint64_t a, b;
        memcpy(&a, &s->min, sizeof a);
        memcpy(&b, &s->max, sizeof b);
        if (a != 0 || b != 0)
            return fail(r, "min/max of an empty sketch not 0");
        s->min = INFINITY;
        s->max = -INFINITY;
        return 0;
    }
    if (!extremes_consistent(s))
        return fail(r, "min %g / max %g inconsistent with the bins", s->min, s->max);
    return 0;
}

/* Parses a whole encoded sketch into the empty sketch s. */
static int parse(reader *r, ddsketch *s)
{
    if (r->c >= r->end)
        return fail(r, "empty ddsketch");
    unsigned version = *r->c++;
    if (version != DDSKETCH_FORMAT_VERSION)
        return fail(r, "unsupported ddsketch version %u", version);
    if (get_count(r, 1, "zero count", &s->zero) != 0)
        return -1;
    if (varint_get_f64(&r->c, r->end, &s->min) != 0 ||
        varint_get_f64(&r->c, r->end, &s->max) != 0)
        return fail(r, "truncated min/max");
    double total = s->zero;
    if (get_store(r, "positive", DDSKETCH_INDEX_MIN, DDSKETCH_INDEX_MAX, &s->pos, &total) != 0 ||
        get_store(r, "negative", -DDSKETCH_INDEX_MAX, -DDSKETCH_INDEX_MIN, &s->neg, &total) != 0)
        return -1;
    if (r->c != r->end)
        return fail(r, "%zu trailing bytes", (size_t)(r->end - r->c));
    return check_extremes(r, s);
}

int ddsketch_decode(ddsketch *into, const unsigned char *buf, size_t len, char *err,
                    size_t errlen)
{
    reader r = {buf, buf ? buf + len : buf, err, errlen};
    ddsketch *s = ddsketch_new();
    if (!s)
        return fail(&r, "out of memory");
    int rc = parse(&r, s);
    if (rc == 0 && ddsketch_merge(into, s) != 0)
        rc = fail(&r, "merge: total count exceeds %g or out of memory", DDSKETCH_COUNT_MAX);
    ddsketch_free(s);
    return rc;
}
