/*
 * query_source.c — see query_source.h.
 *
 * A select runs in two steps. First the catalog (schema.h: series) names the
 * candidates: with a __name__ equality matcher only the series of that
 * Prometheus name and, for a distribution, of the name without its _count,
 * _sum, _min or _max suffix (one indexed lookup); otherwise every series.
 * Each candidate exposes one or more Prometheus series (a distribution four),
 * whose label sets are matched, sorted and made unique (two StatsD series
 * that map to one label set answer as the first, by name, tags and type:
 * README "Names"). Then each survivor's rows are read from the first bucket
 * that can matter to the end of its data, in one range scan: cumulative
 * series need the sum of everything after the range too, since their value
 * at bucket b is the catalog's total minus the rows after b.
 */
#include "query_source.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "event.h"
#include "format.h"
#include "http_reply.h"
#include "prom_name.h"
#include "ddsketch.h"
#include "hll.h"
#include "rollup.h"
#include "schema.h"
#include "totals_json.h"

/* What a Prometheus series shows of a StatsD series. */
typedef enum exposed_kind {
    EXPOSE_VALUE,     /* counter (cumulative) or gauge (last value) */
    EXPOSE_COUNT,     /* distribution: cumulative sum of weights */
    EXPOSE_SUM,       /* distribution: cumulative sum of values */
    EXPOSE_MIN,       /* distribution: smallest value in the window */
    EXPOSE_MAX,       /* distribution: largest value in the window */
    EXPOSE_QUANTILE,  /* distribution: NAME{quantile="q"} over the window (merged sketches) */
    EXPOSE_DISTINCT,  /* set: NAME, its distinct members over the window (merged hlls) */
} exposed_kind;

/* The quantiles a distribution shows when a query names none. */
static const char *const default_quantiles[] = {"0.5", "0.9", "0.99"};

/* One Prometheus series to read. */
typedef struct candidate {
    char *name, *tags, *type;  /* the StatsD series (owned) */
    exposed_kind kind;
    double quantile;           /* EXPOSE_QUANTILE */
    double total_value, total_weight;
    promql_labels labels;
    size_t order;              /* catalog order, the tie-break of a collision */
} candidate;

typedef struct candidate_list {
    candidate *items;
    size_t count, cap;
} candidate_list;

struct query_source {
    char path[CONFIG_PATH_MAX];
    int64_t lookback_ms;
    sqlite3 *db;
    sqlite3_stmt *by_prom_name, *all_series, *by_name, *rows_from, *totals, *sketches_from;
    sqlite3_stmt *set_all, *rollups_get;
    int bucket_seconds;
    rollup_state rollups;      /* read by query_source_begin(), in the read transaction */
    ddsketch *sketch;          /* scratch: one window's merged sketch */
    hll *set;                  /* scratch: one window's merged set */
    int in_transaction;
    unsigned types_seen;
    size_t series_seen;
};

query_source *query_source_new(const tally_config *cfg)
{
    query_source *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    snprintf(q->path, sizeof q->path, "%s", cfg->sqlite.path);
    q->bucket_seconds = cfg->flusher.bucket_seconds;
    q->lookback_ms = (int64_t)cfg->query.lookback_seconds * 1000;
    q->sketch = ddsketch_new();
    q->set = hll_new();
    if (!q->sketch || !q->set) {
        ddsketch_free(q->sketch);
        hll_free(q->set);
        free(q);
        return NULL;
    }
    return q;
}

static void close_db(query_source *q)
{
    sqlite3_stmt *all[] = {q->by_prom_name, q->all_series, q->by_name, q->rows_from, q->totals,
                           q->sketches_from, q->set_all, q->rollups_get};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        sqlite3_finalize(all[i]);
    q->by_prom_name = q->all_series = q->by_name = q->rows_from = q->totals = NULL;
    q->sketches_from = q->set_all = q->rollups_get = NULL;
    sqlite3_close(q->db);
    q->db = NULL;
}

void query_source_free(query_source *q)
{
    if (!q)
        return;
    close_db(q);
    ddsketch_free(q->sketch);
    hll_free(q->set);
    free(q);
}

static int open_db(query_source *q, char *err, size_t errlen)
{
    if (q->db)
        return 0;
    if (sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(q->db, 1000) != SQLITE_OK ||
        sqlite3_prepare_v2(q->db, SCHEMA_SERIES_BY_PROM_NAME, -1, &q->by_prom_name, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_SERIES_ALL, -1, &q->all_series, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_SERIES_BY_NAME, -1, &q->by_name, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_ROWS_SPANS, -1, &q->rows_from, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_TOTALS_BY_NAME, -1, &q->totals, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_SKETCHES_SPANS, -1, &q->sketches_from, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_SET_SKETCHES_ALL, -1, &q->set_all, NULL) ||
        sqlite3_prepare_v2(q->db, SCHEMA_ROLLUP_STATE_GET, -1, &q->rollups_get, NULL)) {
        snprintf(err, errlen, "sqlite %s: %s (has tally-flusher created it?)", q->path,
                 q->db ? sqlite3_errmsg(q->db) : "cannot open");
        close_db(q);
        return -1;
    }
    return 0;
}

/* The resolutions' state (rollup.h), as of this read transaction. */
static int read_rollups(query_source *q, char *err, size_t errlen)
{
    rollup_state_init(&q->rollups, q->bucket_seconds);
    sqlite3_stmt *st = q->rollups_get;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        rollup_state_set(&q->rollups, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                         sqlite3_column_int64(st, 2));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "sqlite read rollup_state: %s", sqlite3_errmsg(q->db));
        return -1;
    }
    return 0;
}

/* Binds ?4 (the earliest bucket end wanted) and the spans of a read at the
 * resolution `step_seconds` chooses (schema.h SCHEMA_ROWS_SPANS). */
static int bind_spans(query_source *q, sqlite3_stmt *st, int64_t min_end, int64_t step_seconds)
{
    rollup_span sp[ROLLUP_LEVELS];
    rollup_spans(&q->rollups, rollup_choose(&q->rollups, step_seconds), sp);
    int rc = sqlite3_bind_int64(st, 4, min_end);
    for (int i = 0; i < ROLLUP_LEVELS && rc == SQLITE_OK; i++) {
        int at = 5 + 3 * i;
        rc = sqlite3_bind_int64(st, at, sp[i].width);
        rc = rc == SQLITE_OK ? sqlite3_bind_int64(st, at + 1, sp[i].lo) : rc;
        rc = rc == SQLITE_OK ? sqlite3_bind_int64(st, at + 2, sp[i].hi) : rc;
    }
    return rc;
}

int query_source_begin(query_source *q, char *err, size_t errlen)
{
    if (open_db(q, err, errlen) != 0)
        return -1;
    if (sqlite3_exec(q->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite BEGIN: %s", sqlite3_errmsg(q->db));
        close_db(q);
        return -1;
    }
    q->in_transaction = 1;
    q->types_seen = 0;
    q->series_seen = 0;
    return read_rollups(q, err, errlen);
}

void query_source_end(query_source *q)
{
    if (q->db && q->in_transaction)
        sqlite3_exec(q->db, "COMMIT", NULL, NULL, NULL);
    q->in_transaction = 0;
}

/* Fails a statement: the message, then the connection is reopened next time. */
static int sql_failed(query_source *q, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "sqlite %s: %s", what, sqlite3_errmsg(q->db));
    return -1;
}

/* ---- candidates --------------------------------------------------------------- */

static void candidate_free(candidate *c)
{
    free(c->name);
    free(c->tags);
    free(c->type);
    for (size_t i = 0; i < c->labels.count; i++) {
        free(c->labels.items[i].name);
        free(c->labels.items[i].value);
    }
    free(c->labels.items);
}

static void candidates_free(candidate_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        candidate_free(&l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

typedef struct label_ctx {
    promql_labels *labels;
    int failed;
} label_ctx;

static int add_tag_label(void *arg, const char *label, const char *value, size_t value_len)
{
    label_ctx *lc = arg;
    char v[EVENT_TAGS_MAX + 1];
    snprintf(v, sizeof v, "%.*s", (int)value_len, value);
    if (promql_labels_add(lc->labels, label, v) != 0)
        lc->failed = 1;
    return lc->failed;
}

/* Builds the labels of a candidate: __name__ plus its tags (plus quantile). */
static int build_labels(candidate *c, const char *prom_name, const char *quantile)
{
    char exposed[PROM_NAME_MAX + 8];
    int suffixed = c->kind >= EXPOSE_COUNT && c->kind <= EXPOSE_MAX;
    snprintf(exposed, sizeof exposed, "%s%s", prom_name,
             suffixed ? prom_dist_suffixes[c->kind] : "");
    if (promql_labels_add(&c->labels, "__name__", exposed) != 0)
        return -1;
    label_ctx lc = {&c->labels, 0};
    prom_labels_from_tags(c->tags, strlen(c->tags), add_tag_label, &lc);
    if (!lc.failed && quantile && promql_labels_add(&c->labels, "quantile", quantile) != 0)
        return -1;
    return lc.failed ? -1 : 0;
}

static char *column_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return strdup(t ? (const char *)t : "");
}

/* The value of a quantile="q" equality matcher that names a valid
 * quantile, or NULL. */
static const char *quantile_asked(const promql_matcher *m, size_t n, double *q)
{
    for (size_t i = 0; i < n; i++) {
        if (m[i].op != PROMQL_MATCH_EQ || strcmp(m[i].name, "quantile") != 0)
            continue;
        char *end;
        *q = strtod(m[i].value, &end);
        return end != m[i].value && *end == '\0' && *q >= 0 && *q <= 1 ? m[i].value : NULL;
    }
    return NULL;
}

/* Adds one exposed series of the catalog row if it matches m[0..n). */
static int add_candidate(candidate_list *l, sqlite3_stmt *st, exposed_kind k,
                         const char *quantile, const promql_matcher *m, size_t n)
{
    if (l->count == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        candidate *grown = realloc(l->items, ncap * sizeof *grown);
        if (!grown)
            return -1;
        l->items = grown;
        l->cap = ncap;
    }
    candidate *c = &l->items[l->count];
    memset(c, 0, sizeof *c);
    c->kind = k;
    c->quantile = quantile ? strtod(quantile, NULL) : 0;
    c->order = l->count;
    c->name = column_dup(st, 1);
    c->tags = column_dup(st, 2);
    c->type = column_dup(st, 3);
    c->total_value = sqlite3_column_double(st, 4);
    c->total_weight = sqlite3_column_double(st, 5);
    const char *prom = (const char *)sqlite3_column_text(st, 0);
    if (!c->name || !c->tags || !c->type || build_labels(c, prom ? prom : "", quantile) != 0) {
        candidate_free(c);
        return -1;
    }
    if (promql_matchers_match(m, n, &c->labels))
        l->count++;
    else
        candidate_free(c);
    return 0;
}

/* Adds the Prometheus series one catalog row exposes that match m[0..n):
 * one for a counter, gauge or set; a distribution's _count, _sum, _min, _max
 * and its quantiles (the one a quantile="q" matcher asks for, else 0.5, 0.9
 * and 0.99). */
static int add_candidates(candidate_list *l, sqlite3_stmt *st, const promql_matcher *m,
                          size_t n)
{
    metric_type type = metric_type_from_name((const char *)sqlite3_column_text(st, 3));
    if (type == METRIC_SET)
        return add_candidate(l, st, EXPOSE_DISTINCT, NULL, m, n);
    if (type != METRIC_DISTRIBUTION)
        return add_candidate(l, st, EXPOSE_VALUE, NULL, m, n);
    for (exposed_kind k = EXPOSE_COUNT; k <= EXPOSE_MAX; k++)
        if (add_candidate(l, st, k, NULL, m, n) != 0)
            return -1;
    double q;
    const char *asked = quantile_asked(m, n, &q);
    if (asked)
        return add_candidate(l, st, EXPOSE_QUANTILE, asked, m, n);
    for (size_t i = 0; i < sizeof default_quantiles / sizeof default_quantiles[0]; i++)
        if (add_candidate(l, st, EXPOSE_QUANTILE, default_quantiles[i], m, n) != 0)
            return -1;
    return 0;
}

static const char *name_equality(const promql_matcher *m, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m[i].op == PROMQL_MATCH_EQ && strcmp(m[i].name, "__name__") == 0)
            return m[i].value;
    return NULL;
}

static int compare_candidates(const void *x, const void *y)
{
    const candidate *a = x, *b = y;
    int c = promql_labels_compare(&a->labels, &b->labels);
    return c ? c : (a->order > b->order) - (a->order < b->order);
}

/* Sorts by labels and keeps the first of each label set. */
static void make_unique(candidate_list *l)
{
    if (l->count > 1)
        qsort(l->items, l->count, sizeof *l->items, compare_candidates);
    size_t kept = 0;
    for (size_t i = 0; i < l->count; i++) {
        if (kept > 0 && promql_labels_compare(&l->items[kept - 1].labels, &l->items[i].labels) == 0)
            candidate_free(&l->items[i]);
        else
            l->items[kept++] = l->items[i];
    }
    l->count = kept;
}

static int find_candidates(query_source *q, const promql_matcher *m, size_t n,
                           candidate_list *out, char *err, size_t errlen)
{
    const char *name = name_equality(m, n);
    sqlite3_stmt *st = name ? q->by_prom_name : q->all_series;
    char *base = NULL;
    if (name) {
        base = malloc(strlen(name) + 1);
        if (!base) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        prom_name_strip_suffix(base, name);
        int bad = sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT) != SQLITE_OK ||
                  sqlite3_bind_text(st, 2, base, -1, SQLITE_TRANSIENT) != SQLITE_OK;
        free(base);
        if (bad)
            return sql_failed(q, "bind", err, errlen);
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (add_candidates(out, st, m, n) != 0) {
            sqlite3_reset(st);
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sql_failed(q, "read series", err, errlen);
    make_unique(out);
    return 0;
}

/* ---- samples -------------------------------------------------------------------- */

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* The evaluation times of a select and the window of each. */
typedef struct windows {
    int64_t first, step, width, last; /* step 0: one time, `first` */
} windows;

/* The index k of the evaluation time first + k step whose window holds the
 * end of `bucket` (the first time at or after it), WINDOW_NONE when no
 * window holds it, WINDOW_PAST once it ends after the last time (buckets
 * come in order: nothing later can be in a window either). */
#define WINDOW_NONE (-1)
#define WINDOW_PAST (-2)
static int64_t window_of(const windows *w, int64_t end_seconds)
{
    int64_t end = end_seconds * 1000;
    if (end > w->last)
        return WINDOW_PAST;
    int64_t k = w->step ? -floor_div(w->first - end, w->step) : 0; /* first time >= end */
    int64_t t = w->first + k * w->step;
    return k < 0 || t > w->last || t - w->width >= end ? WINDOW_NONE : k;
}

/* A roll-up row wider than the lookback also stands, with its value, at
 * each lookback after its end within its width (until the next row ends):
 * without it an instant selection between two hourly rows would find
 * nothing (README "Retention"). */
static int push_holds(const query_source *q, promql_series *out, int64_t end, int64_t width_ms,
                      int64_t until, int64_t min_ms, int64_t max_ms, double v)
{
    if (width_ms <= q->lookback_ms)
        return 0;
    for (int64_t t = end + q->lookback_ms; t < end + width_ms && t < until && t <= max_ms;
         t += q->lookback_ms)
        if (t >= min_ms && promql_series_push(out, t, v) != 0)
            return -1;
    return 0;
}

/* Cumulative and last-value series: a sample at each row's end in range
 * (rows of every resolution the read takes, in order of their end). */
static int read_raw(query_source *q, sqlite3_stmt *st, const candidate *c, int64_t min_ms,
                    int64_t max_ms, promql_series *out)
{
    int sum_weight = c->kind == EXPOSE_COUNT;
    int cumulative = c->kind != EXPOSE_VALUE || strcmp(c->type, "counter") == 0;
    double running = 0, after = 0; /* sums from the first row read, and past max_ms */
    int64_t last_end = INT64_MIN, last_width = 0;
    double last_v = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t end = sqlite3_column_int64(st, 0) * 1000;
        double v = sqlite3_column_double(st, sum_weight ? 2 : 1);
        if (last_end != INT64_MIN &&
            push_holds(q, out, last_end, last_width, end, min_ms, max_ms, last_v) != 0)
            return -1;
        if (end > max_ms) {
            last_end = INT64_MIN;
            if (!cumulative)
                break;
            after += v;
            continue;
        }
        running += v;
        last_end = end;
        last_width = sqlite3_column_int64(st, 5) * 1000;
        last_v = cumulative ? running : v;
        if (end >= min_ms && promql_series_push(out, end, last_v) != 0)
            return -1;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -2;
    if (last_end != INT64_MIN &&
        push_holds(q, out, last_end, last_width, INT64_MAX, min_ms, max_ms, last_v) != 0)
        return -1;
    if (cumulative) {
        double total = sum_weight ? c->total_weight : c->total_value;
        double before = total - running - after; /* the rows before the first one read */
        for (size_t i = 0; i < out->count; i++)
            out->samples[i].v += before;
    }
    return 0;
}

/* Window series (min, max): one sample per evaluation time whose window
 * holds a bucket end. */
static int read_windows(sqlite3_stmt *st, const candidate *c,
                        const windows *w, promql_series *out)
{
    int is_min = c->kind == EXPOSE_MIN;
    int64_t current = -1;
    double acc = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t k = window_of(w, sqlite3_column_int64(st, 0));
        if (k == WINDOW_PAST)
            break;
        if (k == WINDOW_NONE || sqlite3_column_type(st, is_min ? 3 : 4) == SQLITE_NULL)
            continue;
        double v = sqlite3_column_double(st, is_min ? 3 : 4);
        if (k != current) {
            if (current >= 0 && promql_series_push(out, w->first + current * w->step, acc) != 0)
                return -1;
            current = k;
            acc = v;
        } else {
            acc = is_min ? (v < acc ? v : acc) : (v > acc ? v : acc);
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -2;
    if (current >= 0 && promql_series_push(out, w->first + current * w->step, acc) != 0)
        return -1;
    return 0;
}

/* A kind of sketch a window merges: its buckets' blobs are decoded into
 * one scratch sketch (a decode merges), which then gives the window's
 * sample (or none) and is emptied. */
typedef struct window_sketch {
    int (*merge)(query_source *q, const void *blob, size_t len, char *err, size_t errlen);
    int (*sample)(query_source *q, const candidate *c, double *v); /* 0: *v, else none */
    void (*clear)(query_source *q);
} window_sketch;

static int quantile_merge(query_source *q, const void *blob, size_t len, char *err, size_t errlen)
{
    return ddsketch_decode(q->sketch, blob, len, err, errlen);
}
static int quantile_sample(query_source *q, const candidate *c, double *v)
{
    return ddsketch_quantile(q->sketch, c->quantile, v);
}
static void quantile_clear(query_source *q) { ddsketch_clear(q->sketch); }
static const window_sketch QUANTILES = {quantile_merge, quantile_sample, quantile_clear};

static int distinct_merge(query_source *q, const void *blob, size_t len, char *err, size_t errlen)
{
    return hll_decode(q->set, blob, len, err, errlen);
}
static int distinct_sample(query_source *q, const candidate *c, double *v)
{
    (void)c;
    *v = (double)hll_count(q->set);
    return 0;
}
static void distinct_clear(query_source *q) { hll_clear(q->set); }
static const window_sketch DISTINCTS = {distinct_merge, distinct_sample, distinct_clear};

/* Closes one window: the merged sketch's sample at its time t. */
static int push_window(query_source *q, const window_sketch *k, const candidate *c, int64_t t,
                       promql_series *out)
{
    double v;
    int rc = k->sample(q, c, &v) == 0 ? promql_series_push(out, t, v) : 0;
    k->clear(q);
    return rc;
}

/* Sketch series (quantiles, distinct counts): per evaluation time, the
 * sketches of every bucket that ended in its window, merged, then read. */
static int read_sketch_windows(query_source *q, sqlite3_stmt *st, const window_sketch *k,
                               const candidate *c, const windows *w, promql_series *out,
                               char *err, size_t errlen)
{
    int64_t current = -1;
    int rc;
    k->clear(q);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t at = window_of(w, sqlite3_column_int64(st, 0));
        if (at == WINDOW_PAST)
            break;
        if (at == WINDOW_NONE)
            continue;
        if (at != current && current >= 0 &&
            push_window(q, k, c, w->first + current * w->step, out) != 0)
            return -1;
        current = at;
        const void *blob = sqlite3_column_blob(st, 1);
        if (k->merge(q, blob, (size_t)sqlite3_column_bytes(st, 1), err, errlen)) {
            k->clear(q);
            return -3; /* a corrupt sketch: say so rather than answer wrong */
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return -2;
    if (current >= 0 && push_window(q, k, c, w->first + current * w->step, out) != 0)
        return -1;
    return 0;
}

static int read_candidate(query_source *q, const candidate *c, int64_t min_ms, int64_t max_ms,
                          const windows *w, promql_series *out, char *err, size_t errlen)
{
    const window_sketch *sketch = c->kind == EXPOSE_QUANTILE   ? &QUANTILES
                                  : c->kind == EXPOSE_DISTINCT ? &DISTINCTS
                                                               : NULL;
    int windowed = sketch || c->kind == EXPOSE_MIN || c->kind == EXPOSE_MAX;
    /* (a held roll-up row may have ended up to an hour before the range) */
    int64_t from_ms = windowed ? w->first - w->width : min_ms - ROLLUP_WIDEST_SECONDS * 1000;
    sqlite3_stmt *st = sketch ? q->sketches_from : q->rows_from;
    if (sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, c->tags, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, c->type, -1, SQLITE_STATIC) != SQLITE_OK ||
        bind_spans(q, st, floor_div(from_ms, 1000), w->step / 1000) != SQLITE_OK)
        return sql_failed(q, "bind", err, errlen);
    int rc = sketch     ? read_sketch_windows(q, st, sketch, c, w, out, err, errlen)
             : windowed ? read_windows(st, c, w, out)
                        : read_raw(q, st, c, min_ms, max_ms, out);
    if (rc == -2)
        sql_failed(q, "read rows", err, errlen);
    else if (rc == -1)
        snprintf(err, errlen, "out of memory");
    sqlite3_reset(st);
    return rc ? -1 : 0;
}

static unsigned type_bit(const char *type)
{
    metric_type t = metric_type_from_name(type);
    return t ? 1u << t : 0;
}

unsigned query_source_types_seen(const query_source *q)
{
    return q->types_seen;
}

size_t query_source_series_seen(const query_source *q)
{
    return q->series_seen;
}

static int move_labels(promql_series *s, candidate *c)
{
    for (size_t i = 0; i < c->labels.count; i++)
        if (promql_labels_add(&s->labels, c->labels.items[i].name, c->labels.items[i].value))
            return -1;
    return 0;
}

static int select_series(void *ctx, const promql_matcher *m, size_t n, int64_t min_ms,
                         int64_t max_ms, int64_t step_ms, promql_series_set *out, char *err,
                         size_t errlen)
{
    query_source *q = ctx;
    windows w = step_ms > 0
                    ? (windows){min_ms + q->lookback_ms, step_ms, step_ms, max_ms}
                    : (windows){max_ms, 0, q->lookback_ms, max_ms};
    candidate_list l = {0};
    int rc = find_candidates(q, m, n, &l, err, errlen);
    for (size_t i = 0; rc == 0 && i < l.count; i++) {
        promql_series *s;
        q->types_seen |= type_bit(l.items[i].type);
        q->series_seen++;
        if (promql_series_set_add(out, &s) != 0 || move_labels(s, &l.items[i]) != 0) {
            snprintf(err, errlen, "out of memory");
            rc = -1;
        } else if (step_ms >= 0) {
            rc = read_candidate(q, &l.items[i], min_ms, max_ms, &w, s, err, errlen);
        }
    }
    candidates_free(&l);
    return rc;
}

promql_source query_source_promql(query_source *q)
{
    return (promql_source){q, select_series};
}

static void json_string(struct evbuffer *out, const char *s)
{
    http_json_string(out, s, strlen(s));
}


/* ---- GET /api/v1/metadata ------------------------------------------------------ */

/* A distribution is a summary; a set's distinct count over a window a gauge. */
static const char *prom_type(const char *type)
{
    metric_type t = metric_type_from_name(type);
    return t == METRIC_DISTRIBUTION ? "summary" : t == METRIC_SET ? "gauge" : type;
}

int query_source_metadata(query_source *q, const char *metric, struct evbuffer *out, char *err,
                          size_t errlen)
{
    sqlite3_stmt *st = q->all_series;
    char (*seen)[PROM_NAME_MAX] = NULL; /* names written, to write each once */
    size_t count = 0, cap = 0;
    int rc;
    evbuffer_add(out, "{", 1);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *prom = (const char *)sqlite3_column_text(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        const char *type = (const char *)sqlite3_column_text(st, 3);
        if (!prom || !name || !type || (metric && strcmp(metric, prom) != 0))
            continue;
        size_t i = 0;
        while (i < count && strcmp(seen[i], prom) != 0)
            i++;
        if (i < count)
            continue;
        if (count == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *grown = realloc(seen, ncap * sizeof *seen);
            if (!grown) {
                rc = SQLITE_NOMEM;
                break;
            }
            seen = grown;
            cap = ncap;
        }
        snprintf(seen[count], sizeof seen[count], "%s", prom);
        evbuffer_add_printf(out, "%s", count++ ? "," : "");
        json_string(out, prom);
        evbuffer_add(out, ":[{\"type\":", 10);
        json_string(out, prom_type(type));
        char help[EVENT_NAME_MAX + 32];
        snprintf(help, sizeof help, "StatsD %s %s", type, name);
        evbuffer_add(out, ",\"help\":", 8);
        json_string(out, help);
        evbuffer_add(out, ",\"unit\":\"\"}]", 12);
    }
    sqlite3_reset(st);
    free(seen);
    evbuffer_add(out, "}", 1);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_NOMEM ? (snprintf(err, errlen, "out of memory"), -1)
                                  : sql_failed(q, "read series", err, errlen);
    return (int)count;
}

/* ---- GET /v1/series/NAME ------------------------------------------------------- */

/* One step window of a native series. */
typedef struct native_point {
    int64_t t;
    double value, count, sum, min, max;
    int has_range;
} native_point;

static void write_point(struct evbuffer *out, metric_type type, const native_point *p, int first)
{
    evbuffer_add_printf(out, "%s{\"t\":%lld", first ? "" : ",", (long long)p->t);
    if (type == METRIC_DISTRIBUTION) {
        http_json_number(out, "count", p->count);
        http_json_number(out, "sum", p->sum);
        http_json_number(out, "min", p->min);
        http_json_number(out, "max", p->max);
    } else {
        http_json_number(out, "value", p->value);
    }
    evbuffer_add(out, "}", 1);
}

/* Folds one row into the window point p (a new window when p->t differs). */
static void fold_row(native_point *p, sqlite3_stmt *st, int fresh)
{
    double value = sqlite3_column_double(st, 1), weight = sqlite3_column_double(st, 2);
    int has_range = sqlite3_column_type(st, 3) != SQLITE_NULL;
    double lo = sqlite3_column_double(st, 3), hi = sqlite3_column_double(st, 4);
    if (fresh) {
        p->value = p->sum = p->count = 0;
        p->has_range = 0;
    }
    p->sum += value;
    p->count += weight;
    p->value = value; /* (a counter's is replaced by the sum when written) */
    if (has_range) {
        p->min = p->has_range && p->min < lo ? p->min : lo;
        p->max = p->has_range && p->max > hi ? p->max : hi;
        p->has_range = 1;
    }
}

/* Closes a native window: a counter shows its sum, a set its distinct
 * members (the window's hlls merged), then the point is written. */
static void close_point(query_source *q, struct evbuffer *out, metric_type type, native_point *p,
                        int first)
{
    if (type == METRIC_COUNTER)
        p->value = p->sum;
    if (type == METRIC_SET) {
        p->value = (double)hll_count(q->set);
        hll_clear(q->set);
    }
    write_point(out, type, p, first);
}

/* One series of GET /v1/series/NAME: its rows (a set: its sketches) from the
 * first window on, folded per window. 0, -1 an SQLite error, -3 a corrupt
 * set sketch (err filled). */
static int write_native_series(query_source *q, const char *name, const char *tags,
                               const char *type_name, int64_t from, int64_t to, int64_t step,
                               struct evbuffer *out, char *err, size_t errlen)
{
    int64_t first_t = -floor_div(-from, step) * step;
    metric_type type = metric_type_from_name(type_name);
    sqlite3_stmt *st = type == METRIC_SET ? q->sketches_from : q->rows_from;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, tags, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 3, type_name, -1, SQLITE_STATIC) != SQLITE_OK ||
        bind_spans(q, st, first_t - step + 1, step) != SQLITE_OK)
        return -1;
    int points = 0, rc, corrupt = 0;
    native_point p = {.t = INT64_MIN};
    hll_clear(q->set);
    evbuffer_add(out, "{\"tags\":", 8);
    json_string(out, tags);
    evbuffer_add(out, ",\"type\":", 8);
    json_string(out, type_name);
    evbuffer_add(out, ",\"points\":[", 11);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t end = sqlite3_column_int64(st, 0);
        int64_t t = -floor_div(-end, step) * step; /* the window (t - step, t] */
        if (t > to)
            break;
        if (t < first_t)
            continue;
        if (t != p.t && p.t != INT64_MIN)
            close_point(q, out, type, &p, points++ == 0);
        if (type != METRIC_SET)
            fold_row(&p, st, t != p.t);
        else if (hll_decode(q->set, sqlite3_column_blob(st, 1),
                            (size_t)sqlite3_column_bytes(st, 1), err, errlen) != 0) {
            corrupt = 1;
            break;
        }
        p.t = t;
    }
    if (p.t != INT64_MIN && !corrupt)
        close_point(q, out, type, &p, points == 0);
    evbuffer_add(out, "]}", 2);
    sqlite3_reset(st);
    hll_clear(q->set);
    return corrupt ? -3 : rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int query_source_native(query_source *q, const char *name, int64_t from, int64_t to,
                        int64_t step, struct evbuffer *out, char *err, size_t errlen)
{
    sqlite3_stmt *st = q->by_name;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT) != SQLITE_OK)
        return sql_failed(q, "bind", err, errlen);
    int found = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        char *tags = column_dup(st, 0), *type = column_dup(st, 1);
        if (!found) {
            evbuffer_add(out, "{\"name\":", 8);
            json_string(out, name);
            evbuffer_add_printf(out, ",\"from\":%lld,\"to\":%lld,\"step\":%lld,\"series\":[",
                                (long long)from, (long long)to, (long long)step);
        } else {
            evbuffer_add(out, ",", 1);
        }
        found = 1;
        int bad = !tags || !type
                      ? -1
                      : write_native_series(q, name, tags, type, from, to, step, out, err, errlen);
        free(tags);
        free(type);
        if (bad) {
            sqlite3_reset(st);
            return bad == -3 ? -1 : sql_failed(q, "read rows", err, errlen);
        }
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        return sql_failed(q, "read series", err, errlen);
    if (found)
        evbuffer_add(out, "]}\n", 3);
    return found;
}

/* ---- GET /v1/counters/NAME?source=sqlite ------------------------------------------- */

/* The distinct members a set series was ever sent: its buckets' hlls
 * merged. 0, -1 an SQLite error, -3 a corrupt sketch (err filled). */
static int set_total(query_source *q, const char *name, const char *tags, double *count,
                     char *err, size_t errlen)
{
    sqlite3_stmt *st = q->set_all;
    int rc, corrupt = 0;
    hll_clear(q->set);
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_bind_text(st, 2, tags, -1, SQLITE_STATIC) != SQLITE_OK)
        return -1;
    while (!corrupt && (rc = sqlite3_step(st)) == SQLITE_ROW)
        corrupt = hll_decode(q->set, sqlite3_column_blob(st, 0),
                             (size_t)sqlite3_column_bytes(st, 0), err, errlen) != 0;
    sqlite3_reset(st);
    *count = (double)hll_count(q->set);
    hll_clear(q->set);
    return corrupt ? -3 : rc == SQLITE_DONE ? 0 : -1;
}

/* One catalog row as a series total (tags copied into *tags_out). */
static int total_of(sqlite3_stmt *st, series_total *t, char **tags_out)
{
    *tags_out = column_dup(st, 0);
    if (!*tags_out)
        return -1;
    *t = (series_total){.tags = *tags_out, .tags_len = strlen(*tags_out)};
    int gauge = strcmp((const char *)sqlite3_column_text(st, 1), "gauge") == 0;
    t->value = gauge ? sqlite3_column_double(st, 6) : sqlite3_column_double(st, 2);
    t->sum = sqlite3_column_double(st, 2);
    t->count = sqlite3_column_double(st, 3);
    t->has_range = sqlite3_column_type(st, 4) != SQLITE_NULL;
    t->min = sqlite3_column_double(st, 4);
    t->max = sqlite3_column_double(st, 5);
    return 0;
}

int query_source_totals(query_source *q, const char *name, metric_type type, int stale,
                        const char *note, struct evbuffer *out, char *err, size_t errlen)
{
    sqlite3_stmt *st = q->totals;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT) != SQLITE_OK)
        return sql_failed(q, "bind", err, errlen);
    series_total *series = NULL;
    char **tags = NULL;
    size_t n = 0, cap = 0;
    unsigned types = 0;
    int rc, failed = 0;
    while (!failed && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        metric_type mt = metric_type_from_name((const char *)sqlite3_column_text(st, 1));
        if (!mt)
            continue; /* (a type this reader does not know) */
        types |= 1u << mt;
        if (type == 0)
            type = mt; /* (rows come sorted by type: counter, distribution, gauge) */
        if (mt != type)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            series_total *gs = realloc(series, ncap * sizeof *gs);
            char **gt = gs ? realloc(tags, ncap * sizeof *gt) : NULL;
            series = gs ? gs : series;
            tags = gt ? gt : tags;
            if (!gs || !gt) {
                failed = 1;
                break;
            }
            cap = ncap;
        }
        if (total_of(st, &series[n], &tags[n]) != 0)
            failed = 1;
        else
            n++;
    }
    sqlite3_reset(st);
    int found = !failed && rc == SQLITE_DONE && n > 0, set_rc = 0;
    for (size_t i = 0; found && type == METRIC_SET && i < n && set_rc == 0; i++)
        set_rc = set_total(q, name, tags[i], &series[i].value, err, errlen);
    found = found && set_rc == 0;
    if (found) {
        totals_answer a = {name, type, types, "sqlite", stale, note};
        totals_json_write(out, &a, series, n);
    }
    for (size_t i = 0; i < n; i++)
        free(tags[i]);
    free(tags);
    free(series);
    if (failed)
        return snprintf(err, errlen, "out of memory"), -1;
    if (set_rc == -3)
        return -1;
    if (rc != SQLITE_DONE || set_rc != 0)
        return sql_failed(q, "read totals", err, errlen);
    return found;
}
