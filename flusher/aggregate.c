/*
 * aggregate.c — the flusher's in-memory pre-aggregation (see aggregate.h).
 *
 * Layout. Series and rows live in two dense arrays, in first-seen order, so
 * iteration is cheap and deterministic (the same event sequence always gives
 * the same statements in the same order). Each array is indexed by its own
 * index table (index_table.h: open addressing over the array, load <= 1/2).
 * Rows are keyed by (series index, bucket), so a row lookup hashes two
 * integers instead of the strings: the name and tags are hashed once per
 * event, for the series.
 *
 * Strings are copied into an arena of chunks. Pointers into a chunk stay
 * valid while the aggregate grows (a growing flat buffer would move them),
 * and clear() rewinds the chunks instead of freeing them, so after the first
 * few flushes the steady state allocates nothing but the distribution rows'
 * sketches and the set rows' hlls: a row owns its sketch or hll through a
 * pointer (the rows array may move, the sketch does not), created by the
 * row's first event and freed by clear(), which bounds what a flush leaves
 * behind to the arrays and chunks.
 *
 * Trade-off: removal is not supported (nothing is removed between clears),
 * which is what the index table offers. Memory is bounded because every event
 * adds at most one series, one row and name_len + tags_len + 2 bytes of
 * strings, and the caller flushes after flusher.max_batch_events events.
 */
#include "aggregate.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "index_table.h"
#include "redis_hll.h"

#define AGG_INITIAL_SLOTS 64u
#define ARENA_CHUNK_MIN (64u * 1024u)

typedef struct arena_chunk {
    size_t size;
    size_t used;
    char data[];
} arena_chunk;

struct aggregate {
    int bucket_seconds;
    size_t events;

    agg_series *series;
    size_t nseries, series_cap;
    index_table series_index; /* series key -> its entry in series */

    agg_row *rows;
    size_t nrows, rows_cap;
    index_table row_index;    /* (series, bucket) -> its entry in rows */

    arena_chunk **chunks;
    size_t nchunks, chunks_cap, chunk_cur;
};

/* ---- arena ---------------------------------------------------------------- */

/* Returns n bytes that stay valid until clear/free, or NULL (out of memory). */
static char *arena_alloc(aggregate *a, size_t n)
{
    while (a->chunk_cur < a->nchunks) {
        arena_chunk *c = a->chunks[a->chunk_cur];
        if (c->size - c->used >= n) {
            char *p = c->data + c->used;
            c->used += n;
            return p;
        }
        /* Later chunks are still empty (used == 0) in this cycle; a chunk
         * skipped here stays unused until the next clear. */
        a->chunk_cur++;
    }
    if (a->nchunks == a->chunks_cap) {
        size_t cap = a->chunks_cap ? a->chunks_cap * 2 : 8;
        arena_chunk **chunks = realloc(a->chunks, cap * sizeof *chunks);
        if (!chunks)
            return NULL;
        a->chunks = chunks;
        a->chunks_cap = cap;
    }
    size_t size = n > ARENA_CHUNK_MIN ? n : ARENA_CHUNK_MIN;
    arena_chunk *c = malloc(sizeof *c + size);
    if (!c)
        return NULL;
    c->size = size;
    c->used = n;
    a->chunks[a->nchunks] = c;
    a->chunk_cur = a->nchunks;
    a->nchunks++;
    return c->data;
}

/* ---- lifecycle ---------------------------------------------------------------- */

aggregate *aggregate_new(int bucket_seconds)
{
    assert(bucket_seconds >= 1);
    aggregate *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->bucket_seconds = bucket_seconds;
    if (index_table_init(&a->series_index, AGG_INITIAL_SLOTS) != 0 ||
        index_table_init(&a->row_index, AGG_INITIAL_SLOTS) != 0) {
        aggregate_free(a);
        return NULL;
    }
    return a;
}

/* Frees the sketches and hlls of rows [0, nrows). */
static void free_sketches(aggregate *a)
{
    for (size_t i = 0; i < a->nrows; i++) {
        ddsketch_free(a->rows[i].sketch);
        hll_free(a->rows[i].set);
        a->rows[i].sketch = NULL;
        a->rows[i].set = NULL;
    }
}

void aggregate_free(aggregate *a)
{
    if (!a)
        return;
    free_sketches(a);
    for (size_t i = 0; i < a->nchunks; i++)
        free(a->chunks[i]);
    free(a->chunks);
    free(a->series);
    index_table_free(&a->series_index);
    free(a->rows);
    index_table_free(&a->row_index);
    free(a);
}

void aggregate_clear(aggregate *a)
{
    assert(a);
    free_sketches(a);
    index_table_clear(&a->series_index);
    index_table_clear(&a->row_index);
    for (size_t i = 0; i < a->nchunks; i++)
        a->chunks[i]->used = 0;
    a->chunk_cur = 0;
    a->nseries = 0;
    a->nrows = 0;
    a->events = 0;
}

/* ---- keys ------------------------------------------------------------------- */

int64_t aggregate_bucket(int64_t stamp_ms, int bucket_seconds)
{
    assert(bucket_seconds >= 1);
    /* floor(floor(x / 1000) / b) == floor(x / (1000 b)) for positive integer
     * divisors; C division truncates towards zero, so fix negative quotients. */
    int64_t span = (int64_t)bucket_seconds * 1000;
    int64_t q = stamp_ms / span;
    if (stamp_ms % span < 0)
        q--;
    return q * bucket_seconds;
}

static uint32_t series_hash(const metric_event *ev)
{
    uint32_t h = hash_fnv1a(HASH_FNV1A_INIT, &(uint8_t){(uint8_t)ev->type}, 1);
    h = hash_fnv1a(h, ev->name, ev->name_len);
    /* A separator keeps ("ab", "c") and ("a", "bc") apart. */
    h = hash_fnv1a(h, "\0", 1);
    return hash_fnv1a(h, ev->tags, ev->tags_len);
}

static uint32_t row_hash(uint32_t series, int64_t bucket)
{
    return hash_fnv1a_u64(hash_fnv1a_u64(HASH_FNV1A_INIT, series), (uint64_t)bucket);
}

/* Makes room in a dense array for one more entry (the index table makes its
 * own room in index_table_add). Returns 0 or -1 (out of memory). */
static int reserve(void **array, size_t *cap, size_t elem, size_t n)
{
    if (n >= UINT32_MAX - 1)
        return -1;
    if (n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        void *grown = realloc(*array, ncap * elem);
        if (!grown)
            return -1;
        *array = grown;
        *cap = ncap;
    }
    return 0;
}

/* The series key being looked up, for the index table's callbacks. */
typedef struct series_key {
    const aggregate *a;
    const metric_event *ev;
    uint32_t hash;
} series_key;

static int series_equal(const void *ctx, uint32_t index)
{
    const series_key *k = ctx;
    const agg_series *s = &k->a->series[index];
    const metric_event *ev = k->ev;
    return s->hash == k->hash && s->type == ev->type && s->name_len == ev->name_len &&
           s->tags_len == ev->tags_len && memcmp(s->name, ev->name, ev->name_len) == 0 &&
           (ev->tags_len == 0 || memcmp(s->tags, ev->tags, ev->tags_len) == 0);
}

static uint32_t series_hash_at(const void *ctx, uint32_t index)
{
    return ((const series_key *)ctx)->a->series[index].hash;
}

/* Appends the series of `ev` (not yet in the aggregate), copying its strings
 * into the arena. Returns its index or -1 (out of memory; nothing added). */
static long series_append(aggregate *a, const metric_event *ev, uint32_t h)
{
    if (reserve((void **)&a->series, &a->series_cap, sizeof *a->series, a->nseries) < 0)
        return -1;
    char *mem = arena_alloc(a, (size_t)ev->name_len + ev->tags_len + 2);
    if (!mem)
        return -1;
    /* Last, so that a failure leaves table and array in step (the arena
     * bytes then stay unused until aggregate_clear()). */
    series_key k = {a, ev, h};
    if (index_table_add(&a->series_index, h, (uint32_t)a->nseries, series_hash_at, &k) != 0)
        return -1;
    memcpy(mem, ev->name, ev->name_len);
    mem[ev->name_len] = '\0';
    char *tags = mem + ev->name_len + 1;
    if (ev->tags_len)
        memcpy(tags, ev->tags, ev->tags_len);
    tags[ev->tags_len] = '\0';

    size_t idx = a->nseries++;
    a->series[idx] = (agg_series){
        .name = mem, .tags = tags, .name_len = ev->name_len, .tags_len = ev->tags_len,
        .type = ev->type, .hash = h,
    };
    return (long)idx;
}

/* Finds or creates the series of `ev`; returns its index or -1 (out of memory). */
static long series_lookup(aggregate *a, const metric_event *ev)
{
    uint32_t h = series_hash(ev);
    series_key k = {a, ev, h};
    long at = index_table_find(&a->series_index, h, series_equal, &k);
    return at >= 0 ? at : series_append(a, ev, h);
}

/* The row key being looked up, for the index table's callbacks. */
typedef struct row_key {
    const aggregate *a;
    uint32_t series;
    int64_t bucket;
} row_key;

static int row_equal(const void *ctx, uint32_t index)
{
    const row_key *k = ctx;
    const agg_row *r = &k->a->rows[index];
    return r->series == k->series && r->bucket == k->bucket;
}

static uint32_t row_hash_at(const void *ctx, uint32_t index)
{
    const agg_row *r = &((const row_key *)ctx)->a->rows[index];
    return row_hash(r->series, r->bucket);
}

/* Finds or creates the row (series, bucket); returns its index or -1 (out of memory). */
static long row_lookup(aggregate *a, uint32_t series, int64_t bucket)
{
    uint32_t h = row_hash(series, bucket);
    row_key k = {a, series, bucket};
    long at = index_table_find(&a->row_index, h, row_equal, &k);
    if (at >= 0)
        return at;
    if (reserve((void **)&a->rows, &a->rows_cap, sizeof *a->rows, a->nrows) < 0 ||
        index_table_add(&a->row_index, h, (uint32_t)a->nrows, row_hash_at, &k) != 0)
        return -1;
    size_t idx = a->nrows++;
    a->rows[idx] = (agg_row){.series = series, .bucket = bucket};
    return (long)idx;
}

/* ---- folding ------------------------------------------------------------------ */

/* Adds the event to its row's sketch, creating the sketch with the row's
 * first event. Returns 0, or -1 with err filled and the row unchanged. */
static int sketch_add(agg_row *r, const agg_series *s, const metric_event *ev, char *err,
                      size_t errlen)
{
    if (!r->sketch && !(r->sketch = ddsketch_new())) {
        snprintf(err, errlen, "aggregate: out of memory (sketch of %s)", s->name);
        return -1;
    }
    if (ddsketch_add(r->sketch, ev->value, event_weight(ev)) < 0) {
        snprintf(err, errlen,
                 "aggregate: the sketch of %s refuses value %g with weight %g (out of memory,"
                 " or outside event.h's domain)", s->name, ev->value, event_weight(ev));
        return -1;
    }
    return 0;
}

/* Adds the set event's member to its row's hll (created with the row's first
 * event), as the register PFADD sets (redis_hll.h). Returns 0, or -1 with
 * err filled and the row unchanged. */
static int set_add(agg_row *r, const agg_series *s, const metric_event *ev, char *err,
                   size_t errlen)
{
    if ((!r->set && !(r->set = hll_new())) || hll_add_hash(r->set, redis_hll_hash(ev->member)) < 0) {
        snprintf(err, errlen, "aggregate: out of memory (the set %s)", s->name);
        return -1;
    }
    return 0;
}

static void range_add(double *lo, double *hi, uint8_t *has, double v)
{
    if (!*has) {
        *lo = *hi = v;
        *has = 1;
        return;
    }
    if (v < *lo)
        *lo = v;
    if (v > *hi)
        *hi = v;
}

int aggregate_add(aggregate *a, const metric_event *ev, char *err, size_t errlen)
{
    assert(a && ev);
    if (ev->type != METRIC_COUNTER && ev->type != METRIC_GAUGE && ev->type != METRIC_DISTRIBUTION &&
        ev->type != METRIC_SET) {
        snprintf(err, errlen, "aggregate: unknown metric type %d", (int)ev->type);
        return -1;
    }
    if (!ev->name || ev->name_len == 0 || ev->name_len > EVENT_NAME_MAX ||
        ev->tags_len > EVENT_TAGS_MAX || (ev->tags_len && !ev->tags)) {
        snprintf(err, errlen, "aggregate: invalid name or tags length");
        return -1;
    }
    if (!isfinite(ev->value) || !(ev->sample_rate > 0.0 && ev->sample_rate <= 1.0)) {
        snprintf(err, errlen, "aggregate: non-finite value or sample rate outside (0, 1]");
        return -1;
    }

    long si = series_lookup(a, ev);
    if (si < 0) {
        snprintf(err, errlen, "aggregate: out of memory (%zu series)", a->nseries);
        return -1;
    }
    long ri = row_lookup(a, (uint32_t)si, aggregate_bucket(ev->stamp_ms, a->bucket_seconds));
    if (ri < 0) {
        snprintf(err, errlen, "aggregate: out of memory (%zu rows)", a->nrows);
        return -1;
    }
    agg_series *s = &a->series[si];
    agg_row *r = &a->rows[ri];
    assert(s->type == ev->type && r->series == (uint32_t)si);
    if (ev->type == METRIC_DISTRIBUTION && sketch_add(r, s, ev, err, errlen) < 0)
        return -1;
    if (ev->type == METRIC_SET && set_add(r, s, ev, err, errlen) < 0)
        return -1;

    r->lines += event_lines(ev);
    switch (ev->type) {
    case METRIC_COUNTER:
        r->value += ev->value / ev->sample_rate;
        r->weight += event_weight(ev);
        break;
    case METRIC_DISTRIBUTION:
        r->value += ev->value / ev->sample_rate;
        r->weight += event_weight(ev);
        range_add(&r->min, &r->max, &r->has_range, ev->value);
        break;
    case METRIC_GAUGE:
        if (ev->flags & EVENT_GAUGE_RELATIVE) {
            if (!s->absolute_known)
                s->needs_base = 1;
            s->running += ev->value;
        } else {
            s->running = ev->value;
            s->absolute_known = 1;
        }
        r->weight += 1.0;
        r->value = s->running;
        r->value_relative = !s->absolute_known;
        if (s->absolute_known)
            range_add(&r->min, &r->max, &r->has_range, s->running);
        else
            range_add(&r->rel_min, &r->rel_max, &r->has_rel_range, s->running);
        /* A relative row exists only for a series whose value depends on the base. */
        assert(!r->value_relative || s->needs_base);
        break;
    case METRIC_SET:
        r->weight += 1.0;
        break;
    }
    a->events++;
    return 0;
}

/* ---- iteration ---------------------------------------------------------------- */

size_t aggregate_events(const aggregate *a) { return a->events; }
size_t aggregate_series_count(const aggregate *a) { return a->nseries; }
size_t aggregate_row_count(const aggregate *a) { return a->nrows; }

const agg_series *aggregate_series_at(const aggregate *a, size_t i)
{
    assert(i < a->nseries);
    return &a->series[i];
}

const agg_row *aggregate_row_at(const aggregate *a, size_t i)
{
    assert(i < a->nrows);
    return &a->rows[i];
}
