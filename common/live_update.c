/*
 * live_update.c — see live_update.h.
 *
 * Why one Lua call per group: a batch of 1,000 lines sent as 1,000 commands
 * would cost 1,000 Redis operations and could be half-applied if the
 * connection dropped in the middle; folded per series it costs one operation
 * per distinct series, and merging the batches that are waiting while the
 * previous call runs (group commit) makes that one operation per series per
 * group. Redis runs the script atomically, so the fence check, the dedup
 * claims and the updates land together or not at all.
 *
 * Script arguments: KEYS[1] is the rebuild fence, KEYS[2..n+1] the batches'
 * dedup keys, KEYS[n+2..] the hash of each operation. ARGV[1] = dedup TTL,
 * ARGV[2] = mode ("ingest" or "rebuild"), ARGV[3] = n, then three ARGV per
 * operation: verb ("add", "addi" = add a whole number, "set", "min", "max"),
 * hash field (the canonical tags), value.
 *
 * The fence check and the dedup claims run inside the same atomic script as
 * the updates, which is what makes a rebuild under live traffic exact: every
 * batch is applied either by ingest (before the fence, or after it with its
 * dedup key) or by the rebuild's Kafka replay, never by both and never by
 * neither (see flusher/rebuild.c).
 */
#include "live_update.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "hash.h"
#include "redis_keys.h"

static const char live_update_script[] =
    "local n = tonumber(ARGV[3])\n"
    "if ARGV[2] ~= 'rebuild' and redis.call('EXISTS', KEYS[1]) == 1 then return {2} end\n"
    "local dups = {0}\n"
    "for i = 1, n do\n"
    "  if redis.call('EXISTS', KEYS[1 + i]) == 1 then dups[#dups + 1] = i end\n"
    "end\n"
    "if #dups > 1 then return dups end\n"
    "for i = 1, n do redis.call('SET', KEYS[1 + i], '1', 'EX', ARGV[1]) end\n"
    "for k = n + 2, #KEYS do\n"
    "  local a = 4 + (k - n - 2) * 3\n"
    "  local verb, field, v = ARGV[a], ARGV[a + 1], ARGV[a + 2]\n"
    "  if verb == 'add' then redis.call('HINCRBYFLOAT', KEYS[k], field, v)\n"
    "  elseif verb == 'addi' then\n"
    "    local r = redis.pcall('HINCRBY', KEYS[k], field, v)\n"
    "    if type(r) == 'table' and r.err then redis.call('HINCRBYFLOAT', KEYS[k], field, v) end\n"
    "  elseif verb == 'set' then redis.call('HSET', KEYS[k], field, v)\n"
    "  else\n"
    "    local cur = redis.call('HGET', KEYS[k], field)\n"
    "    local x = tonumber(v)\n"
    "    if not cur or (verb == 'min' and x < tonumber(cur)) or (verb == 'max' and x > tonumber(cur)) then\n"
    "      redis.call('HSET', KEYS[k], field, v)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return {1}\n";

/* One series, folded over a batch or a group. */
typedef struct series_fold {
    metric_type type;
    const char *name;   /* owned by the live_fold (or borrowed from one, in a group) */
    const char *tags;
    uint16_t name_len;
    uint16_t tags_len;
    int gauge_absolute; /* gauge: an absolute value was seen */
    double total;       /* counter total / gauge value (or delta) / distribution sum */
    double weight;      /* distribution: sum of 1/rate */
    double min, max;    /* distribution */
} series_fold;

struct live_fold {
    series_fold *series;
    size_t count;
    char *strings; /* every name and tags, copied */
};

/* An open-addressing index over series, by (type, name, tags). */
typedef struct series_index {
    uint32_t *slots; /* position + 1 in `items`, 0 = empty */
    series_fold *items;
    size_t cap, count;
} series_index;

static uint32_t series_hash(metric_type type, const char *name, size_t name_len, const char *tags,
                            size_t tags_len)
{
    uint32_t h = hash_fnv1a_u64(HASH_FNV1A_INIT, (uint64_t)type);
    h = hash_fnv1a(h, name, name_len);
    h = hash_fnv1a(h, "\xff", 1); /* separates name from tags */
    return hash_fnv1a(h, tags, tags_len);
}

static int index_init(series_index *x, size_t expected)
{
    x->cap = 16;
    while (x->cap < expected * 2)
        x->cap <<= 1;
    x->count = 0;
    x->slots = calloc(x->cap, sizeof *x->slots);
    x->items = malloc((expected + 1) * sizeof *x->items);
    return x->slots && x->items ? 0 : -1;
}

static void index_free(series_index *x)
{
    free(x->slots);
    free(x->items);
}

/* The series (type, name, tags), created empty if new. Requires count < expected. */
static series_fold *index_find(series_index *x, metric_type type, const char *name,
                               uint16_t name_len, const char *tags, uint16_t tags_len)
{
    size_t mask = x->cap - 1;
    for (size_t i = series_hash(type, name, name_len, tags, tags_len) & mask;; i = (i + 1) & mask) {
        if (x->slots[i] == 0) {
            series_fold *s = &x->items[x->count];
            *s = (series_fold){.type = type, .name = name, .name_len = name_len, .tags = tags,
                               .tags_len = tags_len, .min = INFINITY, .max = -INFINITY};
            x->slots[i] = (uint32_t)++x->count;
            return s;
        }
        series_fold *s = &x->items[x->slots[i] - 1];
        if (s->type == type && s->name_len == name_len && s->tags_len == tags_len &&
            memcmp(s->name, name, name_len) == 0 &&
            (tags_len == 0 || memcmp(s->tags, tags, tags_len) == 0))
            return s;
    }
}

static void fold_event(series_fold *s, const metric_event *ev)
{
    switch (ev->type) {
    case METRIC_COUNTER:
        s->total += ev->value / ev->sample_rate;
        break;
    case METRIC_GAUGE:
        if (ev->flags & EVENT_GAUGE_RELATIVE) {
            s->total += ev->value;
        } else {
            s->total = ev->value;
            s->gauge_absolute = 1;
        }
        break;
    case METRIC_DISTRIBUTION:
        s->total += ev->value / ev->sample_rate;
        s->weight += event_weight(ev);
        if (ev->value < s->min)
            s->min = ev->value;
        if (ev->value > s->max)
            s->max = ev->value;
        break;
    }
}

/* Merges a later fold of the same series into `into` (order matters for gauges). */
static void merge_series(series_fold *into, const series_fold *later)
{
    if (into->type == METRIC_GAUGE && later->gauge_absolute) {
        into->total = later->total;
        into->gauge_absolute = 1;
    } else {
        into->total += later->total;
    }
    into->weight += later->weight;
    if (later->min < into->min)
        into->min = later->min;
    if (later->max > into->max)
        into->max = later->max;
}

live_fold *live_fold_new(const metric_event *events, size_t count, char *err, size_t errlen)
{
    live_fold *f = calloc(1, sizeof *f);
    series_index x = {0};
    if (!f || index_init(&x, count) != 0)
        goto oom;
    for (size_t i = 0; i < count; i++) {
        const metric_event *ev = &events[i];
        fold_event(index_find(&x, ev->type, ev->name, ev->name_len, ev->tags_len ? ev->tags : "",
                              ev->tags_len),
                   ev);
    }
    /* Copy the strings: the events' buffers may be gone when the group is built. */
    size_t bytes = 1;
    for (size_t k = 0; k < x.count; k++)
        bytes += (size_t)x.items[k].name_len + x.items[k].tags_len;
    f->strings = malloc(bytes);
    f->series = malloc((x.count + 1) * sizeof *f->series);
    if (!f->strings || !f->series)
        goto oom;
    char *w = f->strings;
    for (size_t k = 0; k < x.count; k++) {
        series_fold s = x.items[k];
        memcpy(w, s.name, s.name_len);
        s.name = w;
        w += s.name_len;
        if (s.tags_len)
            memcpy(w, s.tags, s.tags_len);
        s.tags = w;
        w += s.tags_len;
        f->series[k] = s;
    }
    assert((size_t)(w - f->strings) < bytes);
    f->count = x.count;
    index_free(&x);
    return f;
oom:
    index_free(&x);
    live_fold_free(f);
    snprintf(err, errlen, "out of memory folding a batch");
    return NULL;
}

size_t live_fold_series(const live_fold *f)
{
    return f->count;
}

void live_fold_free(live_fold *f)
{
    if (!f)
        return;
    free(f->series);
    free(f->strings);
    free(f);
}

/* ---- the EVAL ----------------------------------------------------------------- */

/* Number of hash operations a folded series becomes. */
static int series_ops(const series_fold *s)
{
    return s->type == METRIC_DISTRIBUTION ? 4 : 1;
}

typedef struct argv_builder {
    live_update *u;
    int next;
} argv_builder;

static int push_arg(argv_builder *b, const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, s, len);
    copy[len] = '\0';
    b->u->argv[b->next] = copy;
    b->u->argvlen[b->next] = len;
    b->next++;
    return 0;
}

static int push_key(argv_builder *b, const series_fold *s, const char *suffix)
{
    char key[REDIS_KEY_MAX];
    int n = redis_key_metric(key, sizeof key, s->name, s->name_len, suffix);
    return n < 0 ? -1 : push_arg(b, key, (size_t)n);
}

static int push_op(argv_builder *b, const char *verb, const series_fold *s, double v)
{
    /* Whole increments use HINCRBY (several times cheaper than HINCRBYFLOAT;
     * the script falls back to HINCRBYFLOAT when the field holds a fraction). */
    if (strcmp(verb, "add") == 0 && v > -1e15 && v < 1e15 && v == (double)(long long)v)
        verb = "addi";
    char num[FORMAT_DOUBLE_MAX];
    int n = format_double(num, sizeof num, v);
    if (push_arg(b, verb, strlen(verb)) != 0 || push_arg(b, s->tags, s->tags_len) != 0)
        return -1;
    return push_arg(b, num, (size_t)n);
}

static int push_series_keys(argv_builder *b, const series_fold *s)
{
    switch (s->type) {
    case METRIC_COUNTER: return push_key(b, s, "counter");
    case METRIC_GAUGE: return push_key(b, s, "gauge");
    case METRIC_DISTRIBUTION:
        return push_key(b, s, "dist:count") || push_key(b, s, "dist:sum") ||
               push_key(b, s, "dist:min") || push_key(b, s, "dist:max");
    }
    return -1;
}

static int push_series_ops(argv_builder *b, const series_fold *s)
{
    switch (s->type) {
    case METRIC_COUNTER: return push_op(b, "add", s, s->total);
    case METRIC_GAUGE: return push_op(b, s->gauge_absolute ? "set" : "add", s, s->total);
    case METRIC_DISTRIBUTION:
        return push_op(b, "add", s, s->weight) || push_op(b, "add", s, s->total) ||
               push_op(b, "min", s, s->min) || push_op(b, "max", s, s->max);
    }
    return -1;
}

void live_update_free(live_update *u)
{
    if (u->argv)
        for (int i = 0; i < u->argc; i++)
            free(u->argv[i]);
    free(u->argv);
    free(u->argvlen);
    memset(u, 0, sizeof *u);
}

int live_update_build(live_update *u, const live_fold *const *folds,
                      const char *const *batch_ids, const size_t *batch_id_lens, size_t n,
                      int dedup_ttl_seconds, live_mode mode, char *err, size_t errlen)
{
    assert(n >= 1);
    memset(u, 0, sizeof *u);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += folds[i]->count;
    series_index x = {0};
    if (index_init(&x, total) != 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < folds[i]->count; k++) {
            const series_fold *s = &folds[i]->series[k];
            series_fold *into = index_find(&x, s->type, s->name, s->name_len, s->tags, s->tags_len);
            merge_series(into, s);
        }
    }
    size_t ops = 0;
    for (size_t k = 0; k < x.count; k++)
        ops += (size_t)series_ops(&x.items[k]);
    /* EVAL script numkeys fence dedup[n] opkeys[ops] ttl mode n (verb field value)[ops] */
    u->argc = (int)(3 + 1 + n + ops + 3 + 3 * ops);
    u->argv = calloc((size_t)u->argc, sizeof *u->argv);
    u->argvlen = calloc((size_t)u->argc, sizeof *u->argvlen);
    if (!u->argv || !u->argvlen)
        goto oom;
    u->series = x.count;

    argv_builder b = {u, 0};
    char numkeys[24], ttl[24], count_text[24];
    int nk = snprintf(numkeys, sizeof numkeys, "%zu", 1 + n + ops);
    int nt = snprintf(ttl, sizeof ttl, "%d", dedup_ttl_seconds);
    int nc = snprintf(count_text, sizeof count_text, "%zu", n);
    if (push_arg(&b, "EVAL", 4) || push_arg(&b, live_update_script, strlen(live_update_script)) ||
        push_arg(&b, numkeys, (size_t)nk) ||
        push_arg(&b, REDIS_KEY_REBUILD_FENCE, strlen(REDIS_KEY_REBUILD_FENCE)))
        goto oom;
    for (size_t i = 0; i < n; i++) {
        char batch_key[REDIS_KEY_MAX];
        int nb = redis_key_batch(batch_key, sizeof batch_key, batch_ids[i], batch_id_lens[i]);
        if (nb < 0) {
            snprintf(err, errlen, "batch id too long for a Redis key");
            index_free(&x);
            live_update_free(u);
            return -1;
        }
        if (push_arg(&b, batch_key, (size_t)nb) != 0)
            goto oom;
    }
    for (size_t k = 0; k < x.count; k++)
        if (push_series_keys(&b, &x.items[k]) != 0)
            goto oom;
    const char *mode_text = mode == LIVE_MODE_REBUILD ? "rebuild" : "ingest";
    if (push_arg(&b, ttl, (size_t)nt) || push_arg(&b, mode_text, strlen(mode_text)) ||
        push_arg(&b, count_text, (size_t)nc))
        goto oom;
    for (size_t k = 0; k < x.count; k++)
        if (push_series_ops(&b, &x.items[k]) != 0)
            goto oom;
    assert(b.next == u->argc);
    index_free(&x);
    return 0;
oom:
    index_free(&x);
    live_update_free(u);
    snprintf(err, errlen, "out of memory building the Redis update");
    return -1;
}

size_t live_group_length(const char *const *ids, size_t n, size_t max)
{
    size_t len = 0;
    for (; len < n && len < max; len++)
        for (size_t k = 0; k < len; k++)
            if (strcmp(ids[k], ids[len]) == 0)
                return len;
    return len;
}
