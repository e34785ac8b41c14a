/*
 * promql_eval.c — the PromQL evaluator: an AST, a data source and times in,
 * a scalar, vector or matrix out; and the label/series containers the data
 * source fills.
 *
 * Shape. Like Prometheus' engine, every node is evaluated once for all steps
 * of the query: an instant query is a range query with one step. A node's
 * value is either a scalar (one double per step) or a set of series whose
 * points are stamped with step times (a vector at every step at once), or,
 * for a range selector at the top of an instant query, the raw samples. Each
 * selector node asks the source once, for the whole query's window:
 *
 *   instant selector   [start - lookback, end]
 *   range selector     [start - range, end]
 *
 * and the steps are then cut from that data in memory with moving cursors,
 * so a range query costs one select per selector, never one per step.
 *
 * Selection at a step t (Prometheus 2.x; 3.x changed both to open on the left):
 *   - an instant selector takes each series' latest sample at or before t,
 *     if it is not older than t - lookback (a sample exactly at t - lookback
 *     still counts: 2.x drops only t' < t - lookback), and stamps it t;
 *   - a range selector takes the samples in [t - range, t], closed on both
 *     sides;
 *   - a sample whose value is the staleness marker ends the series there
 *     (promql_is_stale_nan); a range drops such samples.
 *
 * rate/increase/delta follow Prometheus' extrapolatedRate: the difference
 * between the last and first sample in the window (for rate and increase
 * corrected for counter resets: a drop adds the value before it), then
 * extrapolated toward the window's edges. An edge is extrapolated to fully
 * if the first (last) sample lies within 1.1 average sample intervals of it,
 * otherwise by half an interval; for counters the start is extrapolated no
 * further than where the counter would have been zero. rate divides by the
 * range in seconds. A window with fewer than two samples gives no output.
 *
 * Labels. Functions, aggregations, unary minus and arithmetic drop
 * __name__. A vector or matrix must never hold two series with the same
 * labels: for rate and unary minus that is an error if it happens at all
 * ("vector cannot contain metrics with the same labelset"), for arithmetic
 * with a scalar only if two series collide at the same step (otherwise their
 * points merge into one series), exactly where Prometheus checks. Output is
 * sorted by labels (Prometheus' labels.Compare), which also fixes the order
 * in which aggregations add their inputs: sum adds left to right in label
 * order, avg keeps Prometheus' running mean (with its infinity cases), min
 * and max let a non-NaN value replace NaN.
 *
 * Memory bound. max_samples bounds the samples held at once: every sample
 * the source returned (held until its node is computed), every point of every
 * intermediate vector, every scalar step. Prometheus counts only points it
 * has materialised per step, not the raw samples under a range; Tally counts
 * what it actually holds, so the same limit is a little stricter here. The
 * check runs after each select (the source has allocated by then; a source
 * that could return a huge answer should bound itself) and before keeping
 * any computed value.
 *
 * A data source may be sloppy about what it returns: the evaluator applies
 * the matchers again (so a source may filter coarsely, e.g. by name only) and
 * cuts every window itself. It may not be inconsistent: samples out of order
 * or two series with the same labels fail with PROMQL_ERR_SOURCE.
 */
#include "promql_internal.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== labels, series, sets ==================================================== */

/* Binary search: 1 and *at = its index if name is in l, else 0 and *at = where it would go. */
static int label_find(const promql_labels *l, const char *name, size_t *at)
{
    size_t lo = 0, hi = l->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->items[mid].name, name);
        if (c == 0) { *at = mid; return 1; }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    *at = lo;
    return 0;
}

static void label_remove(promql_labels *l, size_t at)
{
    free(l->items[at].name);
    free(l->items[at].value);
    memmove(&l->items[at], &l->items[at + 1], (l->count - at - 1) * sizeof l->items[0]);
    l->count--;
}

static int label_insert(promql_labels *l, size_t at, const char *name, const char *value)
{
    if (l->count == l->cap_) {
        size_t cap = l->cap_ ? l->cap_ * 2 : 8;
        promql_label *items = realloc(l->items, cap * sizeof *items);
        if (!items) return -1;
        l->items = items;
        l->cap_ = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    memmove(&l->items[at + 1], &l->items[at], (l->count - at) * sizeof l->items[0]);
    l->items[at] = (promql_label){.name = n, .value = v};
    l->count++;
    return 0;
}

int promql_labels_add(promql_labels *l, const char *name, const char *value)
{
    size_t at;
    if (!label_find(l, name, &at))
        return value[0] ? label_insert(l, at, name, value) : 0;
    if (!value[0]) {
        label_remove(l, at);
        return 0;
    }
    char *v = strdup(value);
    if (!v) return -1;
    free(l->items[at].value);
    l->items[at].value = v;
    return 0;
}

const char *promql_labels_get(const promql_labels *l, const char *name)
{
    size_t at;
    return label_find(l, name, &at) ? l->items[at].value : NULL;
}

void promql_labels_free(promql_labels *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->items[i].name);
        free(l->items[i].value);
    }
    free(l->items);
    memset(l, 0, sizeof *l);
}

static void labels_del(promql_labels *l, const char *name)
{
    size_t at;
    if (label_find(l, name, &at)) label_remove(l, at);
}

int promql_labels_compare(const promql_labels *a, const promql_labels *b)
{
    size_t n = a->count < b->count ? a->count : b->count;
    for (size_t i = 0; i < n; i++) {
        int c = strcmp(a->items[i].name, b->items[i].name);
        if (c) return c;
        c = strcmp(a->items[i].value, b->items[i].value);
        if (c) return c;
    }
    return a->count < b->count ? -1 : a->count > b->count;
}

int promql_series_push(promql_series *s, int64_t t_ms, double v)
{
    if (s->count == s->cap_) {
        size_t cap = s->cap_ ? s->cap_ * 2 : 16;
        promql_sample *samples = realloc(s->samples, cap * sizeof *samples);
        if (!samples) return -1;
        s->samples = samples;
        s->cap_ = cap;
    }
    s->samples[s->count++] = (promql_sample){.t_ms = t_ms, .v = v};
    return 0;
}

static void series_free(promql_series *s)
{
    promql_labels_free(&s->labels);
    free(s->samples);
    memset(s, 0, sizeof *s);
}

int promql_series_set_add(promql_series_set *set, promql_series **out)
{
    if (set->count == set->cap_) {
        size_t cap = set->cap_ ? set->cap_ * 2 : 16;
        promql_series *items = realloc(set->items, cap * sizeof *items);
        if (!items) return -1;
        set->items = items;
        set->cap_ = cap;
    }
    *out = &set->items[set->count++];
    memset(*out, 0, sizeof **out);
    return 0;
}

void promql_series_set_free(promql_series_set *set)
{
    for (size_t i = 0; i < set->count; i++) series_free(&set->items[i]);
    free(set->items);
    memset(set, 0, sizeof *set);
}

int promql_is_stale_nan(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits == PROMQL_STALE_NAN_BITS;
}

static int cmp_series(const void *a, const void *b)
{
    return promql_labels_compare(&((const promql_series *)a)->labels, &((const promql_series *)b)->labels);
}

/* ==== the evaluator ============================================================= */

typedef struct evaluator {
    const promql_source *src;
    int64_t lookback_ms;
    size_t max_samples;
    int64_t start, end, step;   /* step 0 for an instant query */
    size_t nsteps;
    size_t held;                /* samples held right now, all values together */
    char *err;
    size_t errlen;
} evaluator;

typedef struct value {
    promql_value_type type;
    double *scalar;             /* PROMQL_SCALAR: nsteps values */
    promql_series_set set;      /* VECTOR: points at step times, sorted, unique; MATRIX: raw samples */
    size_t held;                /* this value's share of evaluator.held */
} value;

static int ev_fail(evaluator *ev, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int ev_fail(evaluator *ev, int code, const char *fmt, ...)
{
    if (ev->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ev->err, ev->errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int nomem(evaluator *ev)
{
    return ev_fail(ev, PROMQL_ERR_NOMEM, "out of memory");
}

/* Counts n more samples held by v; fails when that would pass max_samples. */
static int charge(evaluator *ev, value *v, size_t n)
{
    if (n > ev->max_samples - ev->held)
        return ev_fail(ev, PROMQL_ERR_EXECUTION,
                       "query processing would load too many samples into memory in query execution");
    ev->held += n;
    v->held += n;
    return 0;
}

static void release(evaluator *ev, value *v, size_t n)
{
    assert(n <= v->held && n <= ev->held);
    ev->held -= n;
    v->held -= n;
}

static void value_free(evaluator *ev, value *v)
{
    release(ev, v, v->held);
    free(v->scalar);
    promql_series_set_free(&v->set);
    memset(v, 0, sizeof *v);
}

static int64_t sat_sub(int64_t a, int64_t b)
{
    assert(b >= 0);
    return a < INT64_MIN + b ? INT64_MIN : a - b;
}

static int64_t step_time(const evaluator *ev, size_t i)
{
    return ev->start + (int64_t)i * ev->step;
}

static size_t step_index(const evaluator *ev, int64_t t)
{
    return ev->step ? (size_t)((t - ev->start) / ev->step) : 0;
}

/* Moves *s (labels and samples) to the end of set; *s is left empty. */
static int set_take(evaluator *ev, promql_series_set *set, promql_series *s)
{
    promql_series *slot;
    if (promql_series_set_add(set, &slot) != 0) return nomem(ev);
    *slot = *s;
    memset(s, 0, sizeof *s);
    return 0;
}

/* ---- the data source ------------------------------------------------------------ */

static bool samples_ascending(const promql_series *s)
{
    for (size_t i = 1; i < s->count; i++)
        if (s->samples[i].t_ms <= s->samples[i - 1].t_ms) return false;
    return true;
}

/* Drops series the matchers reject, checks order and uniqueness, sorts. */
static int check_answer(evaluator *ev, const promql_matcher *m, size_t n, promql_series_set *set, size_t *total)
{
    size_t w = 0;
    *total = 0;
    for (size_t i = 0; i < set->count; i++) {
        promql_series *s = &set->items[i];
        if (!promql_matchers_match(m, n, &s->labels)) {
            series_free(s);
            continue;
        }
        set->items[w++] = *s;
        *total += s->count;
    }
    set->count = w;
    for (size_t i = 0; i < w; i++)
        if (!samples_ascending(&set->items[i]))
            return ev_fail(ev, PROMQL_ERR_SOURCE, "data source returned samples out of order");
    if (w > 1) qsort(set->items, w, sizeof *set->items, cmp_series);
    for (size_t i = 1; i < w; i++)
        if (promql_labels_compare(&set->items[i - 1].labels, &set->items[i].labels) == 0)
            return ev_fail(ev, PROMQL_ERR_SOURCE, "data source returned two series with the same labels");
    return 0;
}

/* One select for a selector node: the samples in [min_ms, max_ms] of every matching series, into raw. */
static int select_data(evaluator *ev, const promql_expr *sel, int64_t min_ms, value *raw)
{
    char msg[256] = "";
    memset(raw, 0, sizeof *raw);
    raw->type = PROMQL_MATRIX;
    if (!ev->src || !ev->src->select)
        return ev_fail(ev, PROMQL_ERR_SOURCE, "no data source");
    if (ev->src->select(ev->src->ctx, sel->matchers, sel->nmatchers, min_ms, ev->end, ev->step, &raw->set,
                        msg, sizeof msg) != 0) {
        promql_series_set_free(&raw->set);
        return ev_fail(ev, PROMQL_ERR_SOURCE, "%s", msg[0] ? msg : "data source select failed");
    }
    size_t total = 0;
    int rc = check_answer(ev, sel->matchers, sel->nmatchers, &raw->set, &total);
    if (!rc) rc = charge(ev, raw, total);
    if (rc) promql_series_set_free(&raw->set);
    return rc;
}

/* ---- vectors: uniqueness ---------------------------------------------------------- */

static int same_labelset(evaluator *ev)
{
    return ev_fail(ev, PROMQL_ERR_EXECUTION, "vector cannot contain metrics with the same labelset");
}

/* Merges b's points into a (both ascending); two points at one time are a collision. */
static int merge_points(evaluator *ev, promql_series *a, promql_series *b)
{
    size_t n = a->count + b->count, i = 0, j = 0, k = 0;
    promql_sample *m = malloc(n * sizeof *m);
    if (!m) return nomem(ev);
    while (i < a->count || j < b->count) {
        if (i < a->count && j < b->count && a->samples[i].t_ms == b->samples[j].t_ms) {
            free(m);
            return same_labelset(ev);
        }
        if (j == b->count || (i < a->count && a->samples[i].t_ms < b->samples[j].t_ms)) m[k++] = a->samples[i++];
        else m[k++] = b->samples[j++];
    }
    free(a->samples);
    a->samples = m;
    a->count = a->cap_ = n;
    return 0;
}

/*
 * Sorts a vector by labels after its labels changed. Two series with the same
 * labels are an error (strict), or merge when they never share a step.
 * On error the set is emptied (its samples stay charged to the value).
 */
static int normalise_vector(evaluator *ev, promql_series_set *set, bool strict)
{
    if (set->count > 1) qsort(set->items, set->count, sizeof *set->items, cmp_series);
    size_t w = 0;
    for (size_t r = 0; r < set->count; r++) {
        promql_series *s = &set->items[r];
        if (w == 0 || promql_labels_compare(&set->items[w - 1].labels, &s->labels) != 0) {
            set->items[w++] = *s;
            continue;
        }
        int rc = strict ? same_labelset(ev) : merge_points(ev, &set->items[w - 1], s);
        series_free(s);
        if (rc) {
            for (size_t k = r + 1; k < set->count; k++) series_free(&set->items[k]);
            set->count = w;
            return rc;
        }
    }
    set->count = w;
    return 0;
}

static void drop_metric_names(promql_series_set *set)
{
    for (size_t i = 0; i < set->count; i++) labels_del(&set->items[i].labels, PROMQL_METRIC_NAME);
}

/* ---- leaves ------------------------------------------------------------------------- */

static int eval_eval(evaluator *ev, const promql_expr *e, value *out);

static int eval_number(evaluator *ev, const promql_expr *e, value *out)
{
    out->type = PROMQL_SCALAR;
    out->scalar = malloc(ev->nsteps * sizeof *out->scalar);
    if (!out->scalar) return nomem(ev);
    for (size_t i = 0; i < ev->nsteps; i++) out->scalar[i] = e->number;
    return charge(ev, out, ev->nsteps);
}

/* One series' instant samples at every step, into o (stamped with the step time). */
static int instant_points(evaluator *ev, const promql_series *s, promql_series *o)
{
    size_t j = 0;
    for (size_t i = 0; i < ev->nsteps; i++) {
        int64_t ts = step_time(ev, i);
        while (j < s->count && s->samples[j].t_ms <= ts) j++;
        if (j == 0) continue;
        const promql_sample *c = &s->samples[j - 1];
        if (c->t_ms < sat_sub(ts, ev->lookback_ms) || promql_is_stale_nan(c->v)) continue;
        if (promql_series_push(o, ts, c->v) != 0) return nomem(ev);
    }
    return 0;
}

static int eval_selector(evaluator *ev, const promql_expr *e, value *out)
{
    value raw;
    int rc = select_data(ev, e, sat_sub(ev->start, ev->lookback_ms), &raw);
    out->type = PROMQL_VECTOR;
    for (size_t k = 0; !rc && k < raw.set.count; k++) {
        promql_series o = {0};
        rc = instant_points(ev, &raw.set.items[k], &o);
        if (!rc && o.count) rc = charge(ev, out, o.count);
        if (!rc && o.count) {
            o.labels = raw.set.items[k].labels;
            memset(&raw.set.items[k].labels, 0, sizeof o.labels);
            rc = set_take(ev, &out->set, &o);
        }
        series_free(&o);
    }
    value_free(ev, &raw);
    return rc;
}

/* Drops the staleness markers from a raw series, and with keep_window the samples outside [lo, hi]. */
static size_t compact_samples(promql_series *s, bool keep_window, int64_t lo, int64_t hi)
{
    size_t w = 0;
    for (size_t r = 0; r < s->count; r++) {
        const promql_sample *x = &s->samples[r];
        if (promql_is_stale_nan(x->v)) continue;
        if (keep_window && (x->t_ms < lo || x->t_ms > hi)) continue;
        s->samples[w++] = *x;
    }
    size_t dropped = s->count - w;
    s->count = w;
    return dropped;
}

/* A range selector at the top of an instant query: the raw samples in [t - range, t]. */
static int eval_matrix(evaluator *ev, const promql_expr *e, value *out)
{
    assert(ev->nsteps == 1);
    int rc = select_data(ev, e->lhs, sat_sub(ev->start, e->range_ms), out);
    if (rc) return rc;
    size_t w = 0, dropped = 0;
    for (size_t k = 0; k < out->set.count; k++) {
        promql_series *s = &out->set.items[k];
        dropped += compact_samples(s, true, sat_sub(ev->start, e->range_ms), ev->start);
        if (s->count == 0) series_free(s);
        else out->set.items[w++] = *s;
    }
    out->set.count = w;
    release(ev, out, dropped);
    return 0;
}

/* ---- rate, increase, delta -------------------------------------------------------- */

/* Go's time.Duration.Seconds() of a millisecond count, bit for bit. */
static double duration_seconds(int64_t ms)
{
    return (double)(ms / 1000) + (double)(ms % 1000) / 1000.0;
}

/* Prometheus' extrapolatedRate over n >= 2 samples of the window [range_start, range_end]. */
static double extrapolated_rate(const promql_sample *s, size_t n, int64_t range_start, int64_t range_end,
                                int64_t range_ms, func_id fn)
{
    assert(n >= 2);
    bool counter = fn != FN_DELTA;
    double result = s[n - 1].v - s[0].v;
    if (counter) {
        double prev = s[0].v;
        for (size_t i = 1; i < n; i++) {
            if (s[i].v < prev) result += prev;   /* a reset: the counter restarted from zero */
            prev = s[i].v;
        }
    }
    double to_start = (double)(s[0].t_ms - range_start) / 1000;
    double to_end = (double)(range_end - s[n - 1].t_ms) / 1000;
    double sampled = (double)(s[n - 1].t_ms - s[0].t_ms) / 1000;
    double average = sampled / (double)(n - 1);
    if (counter && result > 0 && s[0].v >= 0) {
        /* a counter is never negative: do not extrapolate to before it would have been zero */
        double to_zero = sampled * (s[0].v / result);
        if (to_zero < to_start) to_start = to_zero;
    }
    double threshold = average * 1.1;
    double interval = sampled;
    interval += to_start < threshold ? to_start : average / 2;
    interval += to_end < threshold ? to_end : average / 2;
    double factor = interval / sampled;
    if (fn == FN_RATE) factor /= duration_seconds(range_ms);
    return result * factor;
}

/* fn over one series' windows at every step, into o. */
static int range_points(evaluator *ev, const promql_series *s, int64_t range_ms, func_id fn, promql_series *o)
{
    size_t lo = 0, hi = 0;
    for (size_t i = 0; i < ev->nsteps; i++) {
        int64_t ts = step_time(ev, i), from = sat_sub(ts, range_ms);
        while (lo < s->count && s->samples[lo].t_ms < from) lo++;
        if (hi < lo) hi = lo;
        while (hi < s->count && s->samples[hi].t_ms <= ts) hi++;
        if (hi - lo < 2) continue;
        double v = extrapolated_rate(s->samples + lo, hi - lo, from, ts, range_ms, fn);
        if (promql_series_push(o, ts, v) != 0) return nomem(ev);
    }
    return 0;
}

static int eval_call(evaluator *ev, const promql_expr *e, value *out)
{
    const promql_expr *range = e->lhs;
    assert(range->kind == NODE_RANGE);
    value raw;
    int rc = select_data(ev, range->lhs, sat_sub(ev->start, range->range_ms), &raw);
    out->type = PROMQL_VECTOR;
    for (size_t k = 0; !rc && k < raw.set.count; k++) {
        promql_series *s = &raw.set.items[k];
        release(ev, &raw, compact_samples(s, false, 0, 0));
        promql_series o = {0};
        rc = range_points(ev, s, range->range_ms, e->fn, &o);
        if (!rc && o.count) rc = charge(ev, out, o.count);
        if (!rc && o.count) {
            o.labels = s->labels;
            memset(&s->labels, 0, sizeof s->labels);
            labels_del(&o.labels, PROMQL_METRIC_NAME);
            rc = set_take(ev, &out->set, &o);
        }
        series_free(&o);
    }
    value_free(ev, &raw);
    return rc ? rc : normalise_vector(ev, &out->set, true);
}

/* ---- arithmetic -------------------------------------------------------------------- */

static double apply(binop op, double a, double b)
{
    switch (op) {
    case BIN_ADD: return a + b;
    case BIN_SUB: return a - b;
    case BIN_MUL: return a * b;
    case BIN_DIV: return a / b;   /* IEEE: x/0 is +-Inf, 0/0 NaN, as in Go */
    }
    return NAN;
}

static int eval_neg(evaluator *ev, const promql_expr *e, value *out)
{
    int rc = eval_eval(ev, e->lhs, out);
    if (rc) return rc;
    if (out->type == PROMQL_SCALAR) {
        for (size_t i = 0; i < ev->nsteps; i++) out->scalar[i] = -out->scalar[i];
        return 0;
    }
    for (size_t k = 0; k < out->set.count; k++) {
        promql_series *s = &out->set.items[k];
        for (size_t i = 0; i < s->count; i++) s->samples[i].v = -s->samples[i].v;
    }
    drop_metric_names(&out->set);
    return normalise_vector(ev, &out->set, true);
}

/* vec op scalar (or scalar op vec when swapped), point by point, into vec. */
static int vector_scalar(evaluator *ev, binop op, value *vec, const value *sc, bool swapped)
{
    for (size_t k = 0; k < vec->set.count; k++) {
        promql_series *s = &vec->set.items[k];
        for (size_t i = 0; i < s->count; i++) {
            double a = s->samples[i].v, b = sc->scalar[step_index(ev, s->samples[i].t_ms)];
            s->samples[i].v = swapped ? apply(op, b, a) : apply(op, a, b);
        }
    }
    drop_metric_names(&vec->set);
    return normalise_vector(ev, &vec->set, false);
}

static int eval_binary(evaluator *ev, const promql_expr *e, value *out)
{
    value l = {0}, r = {0};
    int rc = eval_eval(ev, e->lhs, &l);
    if (!rc) rc = eval_eval(ev, e->rhs, &r);
    if (rc) {
        value_free(ev, &l);
        value_free(ev, &r);
        return rc;
    }
    if (l.type == PROMQL_SCALAR && r.type == PROMQL_SCALAR) {
        for (size_t i = 0; i < ev->nsteps; i++) l.scalar[i] = apply(e->op, l.scalar[i], r.scalar[i]);
    } else {
        assert(l.type == PROMQL_SCALAR || r.type == PROMQL_SCALAR);
        bool swapped = l.type == PROMQL_SCALAR;
        if (swapped) {
            value t = l;
            l = r;
            r = t;
        }
        rc = vector_scalar(ev, e->op, &l, &r, swapped);
    }
    value_free(ev, &r);
    *out = l;
    return rc;
}

/* ---- aggregation -------------------------------------------------------------------- */

typedef struct accumulator {
    double value;
    double mean;
    size_t count;
} accumulator;

static void acc_add(aggop op, accumulator *a, double v)
{
    if (a->count++ == 0) {
        a->value = a->mean = v;
        return;
    }
    switch (op) {
    case AGG_SUM: a->value += v; break;
    case AGG_MAX: if (a->value < v || isnan(a->value)) a->value = v; break;
    case AGG_MIN: if (a->value > v || isnan(a->value)) a->value = v; break;
    case AGG_COUNT: break;
    case AGG_AVG:
        /* Prometheus' running mean; an infinite mean stays unless a NaN or the other infinity comes */
        if (isinf(a->mean)) {
            if (isinf(v) && (a->mean > 0) == (v > 0)) break;
            if (!isinf(v) && !isnan(v)) break;
        }
        a->mean += v / (double)a->count - a->mean / (double)a->count;
        break;
    }
}

static double acc_result(aggop op, const accumulator *a)
{
    switch (op) {
    case AGG_AVG: return a->mean;
    case AGG_COUNT: return (double)a->count;
    default: return a->value;
    }
}

/* The labels of the group a series falls in: only the "by" labels, or all but the "without" ones and __name__. */
static int group_labels(const promql_expr *e, const promql_labels *in, promql_labels *out)
{
    memset(out, 0, sizeof *out);
    if (!e->without) {
        for (size_t g = 0; g < e->ngrouping; g++) {
            const char *v = promql_labels_get(in, e->grouping[g]);
            if (v && promql_labels_add(out, e->grouping[g], v) != 0) return -1;
        }
        return 0;
    }
    for (size_t i = 0; i < in->count; i++) {
        const char *name = in->items[i].name;
        bool drop = strcmp(name, PROMQL_METRIC_NAME) == 0;
        for (size_t g = 0; !drop && g < e->ngrouping; g++) drop = strcmp(name, e->grouping[g]) == 0;
        if (!drop && promql_labels_add(out, name, in->items[i].value) != 0) return -1;
    }
    return 0;
}

typedef struct group_sort {
    const promql_labels *labels;   /* group labels, by input index */
} group_sort;

/* Orders input indices by group labels, then by input position (so each group adds in input order). */
static int cmp_group_index(const void *a, const void *b, void *ctx)
{
    const group_sort *g = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int c = promql_labels_compare(&g->labels[x], &g->labels[y]);
    return c ? c : (x > y) - (x < y);
}

/* Aggregates the members order[a..b) of one group at every step into o. */
static int aggregate_group(evaluator *ev, aggop op, const promql_series_set *in, const size_t *order, size_t a,
                           size_t b, size_t *cursor, promql_series *o)
{
    for (size_t i = 0; i < ev->nsteps; i++) {
        int64_t ts = step_time(ev, i);
        accumulator acc = {0};
        for (size_t k = a; k < b; k++) {
            size_t idx = order[k];
            const promql_series *s = &in->items[idx];
            if (cursor[idx] < s->count && s->samples[cursor[idx]].t_ms == ts)
                acc_add(op, &acc, s->samples[cursor[idx]++].v);
        }
        if (acc.count && promql_series_push(o, ts, acc_result(op, &acc)) != 0) return nomem(ev);
    }
    return 0;
}

static int aggregate(evaluator *ev, const promql_expr *e, const promql_series_set *in, promql_labels *gl,
                     size_t *order, size_t *cursor, value *out)
{
    size_t n = in->count;
    for (size_t k = 0; k < n; k++) {
        if (group_labels(e, &in->items[k].labels, &gl[k]) != 0) return nomem(ev);
        order[k] = k;
    }
    group_sort g = {.labels = gl};
    if (n > 1) qsort_r(order, n, sizeof *order, cmp_group_index, &g);
    int rc = 0;
    for (size_t a = 0, b; !rc && a < n; a = b) {
        for (b = a + 1; b < n && promql_labels_compare(&gl[order[a]], &gl[order[b]]) == 0; b++) {
        }
        promql_series o = {0};
        rc = aggregate_group(ev, e->agg, in, order, a, b, cursor, &o);
        if (!rc && o.count) rc = charge(ev, out, o.count);
        if (!rc && o.count) {
            o.labels = gl[order[a]];
            memset(&gl[order[a]], 0, sizeof o.labels);
            rc = set_take(ev, &out->set, &o);
        }
        series_free(&o);
    }
    return rc;
}

static int eval_aggregation(evaluator *ev, const promql_expr *e, value *out)
{
    value in = {0};
    int rc = eval_eval(ev, e->lhs, &in);
    if (rc) return rc;
    out->type = PROMQL_VECTOR;
    size_t n = in.set.count;
    promql_labels *gl = calloc(n ? n : 1, sizeof *gl);
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    size_t *cursor = calloc(n ? n : 1, sizeof *cursor);
    rc = (gl && order && cursor) ? aggregate(ev, e, &in.set, gl, order, cursor, out) : nomem(ev);
    for (size_t k = 0; gl && k < n; k++) promql_labels_free(&gl[k]);
    free(gl);
    free(order);
    free(cursor);
    value_free(ev, &in);
    return rc;
}

/* ---- dispatch and entry points ---------------------------------------------------- */

static int eval_eval(evaluator *ev, const promql_expr *e, value *out)
{
    memset(out, 0, sizeof *out);
    int rc = 0;
    switch (e->kind) {
    case NODE_NUMBER: rc = eval_number(ev, e, out); break;
    case NODE_SELECTOR: rc = eval_selector(ev, e, out); break;
    case NODE_RANGE: rc = eval_matrix(ev, e, out); break;
    case NODE_NEG: rc = eval_neg(ev, e, out); break;
    case NODE_BINARY: rc = eval_binary(ev, e, out); break;
    case NODE_AGG: rc = eval_aggregation(ev, e, out); break;
    case NODE_CALL: rc = eval_call(ev, e, out); break;
    }
    if (rc) value_free(ev, out);
    return rc;
}

static void evaluator_init(evaluator *ev, const promql_source *src, const promql_limits *lim, char *err,
                           size_t errlen)
{
    memset(ev, 0, sizeof *ev);
    ev->src = src;
    ev->lookback_ms = (lim && lim->lookback_ms > 0) ? lim->lookback_ms : PROMQL_DEFAULT_LOOKBACK_MS;
    ev->max_samples = (lim && lim->max_samples > 0) ? lim->max_samples : PROMQL_DEFAULT_MAX_SAMPLES;
    ev->err = err;
    ev->errlen = errlen;
    if (errlen) err[0] = '\0';
}

int promql_eval_instant(const promql_expr *e, const promql_source *src, const promql_limits *lim,
                        int64_t t_ms, promql_result *out, char *err, size_t errlen)
{
    evaluator ev;
    evaluator_init(&ev, src, lim, err, errlen);
    ev.start = ev.end = t_ms;
    ev.nsteps = 1;
    memset(out, 0, sizeof *out);
    value v;
    int rc = eval_eval(&ev, e, &v);
    if (rc) return rc;
    out->type = v.type;
    out->t_ms = t_ms;
    if (v.type == PROMQL_SCALAR) out->scalar = v.scalar[0];
    else out->series = v.set;
    free(v.scalar);
    return 0;
}

static int check_range(evaluator *ev, const promql_expr *e, int64_t start_ms, int64_t end_ms, int64_t step_ms)
{
    if (e->type == PROMQL_MATRIX)
        return ev_fail(ev, PROMQL_ERR_BAD_DATA,
                       "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector");
    if (step_ms <= 0)
        return ev_fail(ev, PROMQL_ERR_BAD_DATA,
                       "zero or negative query resolution step widths are not accepted. Try a positive integer");
    if (end_ms < start_ms)
        return ev_fail(ev, PROMQL_ERR_BAD_DATA, "end timestamp must not be before start time");
    uint64_t steps = ((uint64_t)end_ms - (uint64_t)start_ms) / (uint64_t)step_ms + 1;
    if (steps > PROMQL_MAX_STEPS)
        return ev_fail(ev, PROMQL_ERR_BAD_DATA,
                       "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
    ev->nsteps = (size_t)steps;
    return 0;
}

/* A scalar's steps as one series without labels. */
static int scalar_series(evaluator *ev, const value *v, promql_series_set *set)
{
    promql_series *s;
    if (promql_series_set_add(set, &s) != 0) return nomem(ev);
    for (size_t i = 0; i < ev->nsteps; i++)
        if (promql_series_push(s, step_time(ev, i), v->scalar[i]) != 0) return nomem(ev);
    return 0;
}

int promql_eval_range(const promql_expr *e, const promql_source *src, const promql_limits *lim,
                      int64_t start_ms, int64_t end_ms, int64_t step_ms, promql_result *out,
                      char *err, size_t errlen)
{
    evaluator ev;
    evaluator_init(&ev, src, lim, err, errlen);
    memset(out, 0, sizeof *out);
    int rc = check_range(&ev, e, start_ms, end_ms, step_ms);
    if (rc) return rc;
    ev.start = start_ms;
    ev.end = end_ms;
    ev.step = step_ms;
    value v;
    if ((rc = eval_eval(&ev, e, &v)) != 0) return rc;
    out->type = PROMQL_MATRIX;
    out->t_ms = end_ms;
    if (v.type == PROMQL_SCALAR) {
        rc = scalar_series(&ev, &v, &out->series);
        value_free(&ev, &v);
        if (rc) promql_series_set_free(&out->series);
        return rc;
    }
    out->series = v.set;
    return 0;
}

void promql_result_free(promql_result *r)
{
    promql_series_set_free(&r->series);
    memset(r, 0, sizeof *r);
}
