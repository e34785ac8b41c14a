/*
 * live_update.c — see live_update.h.
 *
 * Why one Lua call per batch: a batch of 1,000 lines sent as 1,000 commands
 * would cost 1,000 Redis operations and could be half-applied if the
 * connection dropped in the middle; folded per series and sent as one EVAL it
 * costs one round trip, typically far fewer operations, and Redis runs the
 * script atomically, so the dedup claim and the updates land together.
 *
 * Script arguments: KEYS[1] is the dedup key, KEYS[2] the rebuild fence;
 * KEYS[i] (i >= 3) is the hash of operation i-2. ARGV[1] = dedup TTL,
 * ARGV[2] = event count (stored in the dedup key for diagnosis), ARGV[3] =
 * mode ("ingest" or "rebuild"), then three ARGV per operation: verb ("add",
 * "set", "min", "max"), hash field (the canonical tags), value.
 *
 * The fence check and the dedup claim run inside the same atomic script as
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
#include "redis_keys.h"

static const char live_update_script[] =
    "if ARGV[3] ~= 'rebuild' and redis.call('EXISTS', KEYS[2]) == 1 then return 2 end\n"
    "if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[1]) then return 0 end\n"
    "for i = 3, #KEYS do\n"
    "  local a = 4 + (i - 3) * 3\n"
    "  local verb, field, v = ARGV[a], ARGV[a + 1], ARGV[a + 2]\n"
    "  if verb == 'add' then redis.call('HINCRBYFLOAT', KEYS[i], field, v)\n"
    "  elseif verb == 'set' then redis.call('HSET', KEYS[i], field, v)\n"
    "  else\n"
    "    local cur = redis.call('HGET', KEYS[i], field)\n"
    "    local n = tonumber(v)\n"
    "    if not cur or (verb == 'min' and n < tonumber(cur)) or (verb == 'max' and n > tonumber(cur)) then\n"
    "      redis.call('HSET', KEYS[i], field, v)\n"
    "    end\n"
    "  end\n"
    "end\n"
    "return 1\n";

/* One series of the batch, folded. */
typedef struct series_fold {
    const metric_event *first; /* name, tags, type come from here */
    int gauge_absolute;        /* gauge: an absolute value was seen */
    double total;              /* counter total / gauge running value / distribution sum */
    double weight;             /* distribution: sum of 1/rate */
    double min, max;           /* distribution */
} series_fold;

typedef struct fold_table {
    series_fold *slots;    /* open addressing, linear probing */
    uint32_t *order;       /* slot indexes in first-seen order */
    size_t cap, used;
} fold_table;

static uint64_t series_hash(const metric_event *ev)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)ev->type;
    for (size_t i = 0; i < ev->name_len; i++)
        h = (h ^ (unsigned char)ev->name[i]) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;
    for (size_t i = 0; i < ev->tags_len; i++)
        h = (h ^ (unsigned char)ev->tags[i]) * 1099511628211ull;
    return h;
}

static int same_series(const metric_event *a, const metric_event *b)
{
    return a->type == b->type && a->name_len == b->name_len && a->tags_len == b->tags_len &&
           memcmp(a->name, b->name, a->name_len) == 0 &&
           (a->tags_len == 0 || memcmp(a->tags, b->tags, a->tags_len) == 0);
}

static series_fold *fold_find(fold_table *t, const metric_event *ev)
{
    size_t mask = t->cap - 1;
    for (size_t i = series_hash(ev) & mask;; i = (i + 1) & mask) {
        series_fold *s = &t->slots[i];
        if (!s->first) {
            s->first = ev;
            s->min = INFINITY;
            s->max = -INFINITY;
            t->order[t->used++] = (uint32_t)i;
            return s;
        }
        if (same_series(s->first, ev))
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

/* Number of hash operations a folded series becomes. */
static int series_ops(const series_fold *s)
{
    return s->first->type == METRIC_DISTRIBUTION ? 4 : 1;
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

static int push_key(argv_builder *b, const metric_event *ev, const char *suffix)
{
    char key[REDIS_KEY_MAX];
    int n = redis_key_metric(key, sizeof key, ev->name, ev->name_len, suffix);
    return n < 0 ? -1 : push_arg(b, key, (size_t)n);
}

static int push_op(argv_builder *b, const char *verb, const metric_event *ev, double v)
{
    char num[FORMAT_DOUBLE_MAX];
    int n = format_double(num, sizeof num, v);
    if (push_arg(b, verb, strlen(verb)) != 0 ||
        push_arg(b, ev->tags_len ? ev->tags : "", ev->tags_len) != 0)
        return -1;
    return push_arg(b, num, (size_t)n);
}

static int push_series_keys(argv_builder *b, const series_fold *s)
{
    const metric_event *ev = s->first;
    switch (ev->type) {
    case METRIC_COUNTER: return push_key(b, ev, "counter");
    case METRIC_GAUGE: return push_key(b, ev, "gauge");
    case METRIC_DISTRIBUTION:
        return push_key(b, ev, "dist:count") || push_key(b, ev, "dist:sum") ||
               push_key(b, ev, "dist:min") || push_key(b, ev, "dist:max");
    }
    return -1;
}

static int push_series_ops(argv_builder *b, const series_fold *s)
{
    const metric_event *ev = s->first;
    switch (ev->type) {
    case METRIC_COUNTER: return push_op(b, "add", ev, s->total);
    case METRIC_GAUGE: return push_op(b, s->gauge_absolute ? "set" : "add", ev, s->total);
    case METRIC_DISTRIBUTION:
        return push_op(b, "add", ev, s->weight) || push_op(b, "add", ev, s->total) ||
               push_op(b, "min", ev, s->min) || push_op(b, "max", ev, s->max);
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

int live_update_build(live_update *u, const char *batch_id, size_t batch_id_len,
                      const metric_event *events, size_t count, int dedup_ttl_seconds,
                      live_mode mode, char *err, size_t errlen)
{
    memset(u, 0, sizeof *u);
    fold_table t = {0};
    t.cap = 16;
    while (t.cap < count * 2)
        t.cap <<= 1;
    t.slots = calloc(t.cap, sizeof *t.slots);
    t.order = malloc(t.cap * sizeof *t.order);
    if (!t.slots || !t.order)
        goto oom;
    for (size_t i = 0; i < count; i++)
        fold_event(fold_find(&t, &events[i]), &events[i]);

    size_t ops = 0;
    for (size_t i = 0; i < t.used; i++)
        ops += (size_t)series_ops(&t.slots[t.order[i]]);
    /* EVAL script numkeys dedupkey fence opkeys... ttl count mode (verb field value)... */
    u->argc = (int)(3 + 2 + ops + 3 + 3 * ops);
    u->argv = calloc((size_t)u->argc, sizeof *u->argv);
    u->argvlen = calloc((size_t)u->argc, sizeof *u->argvlen);
    if (!u->argv || !u->argvlen)
        goto oom;
    u->series = t.used;

    argv_builder b = {u, 0};
    char numkeys[24], ttl[24], events_text[24], batch_key[REDIS_KEY_MAX];
    int nk = snprintf(numkeys, sizeof numkeys, "%zu", ops + 2);
    int nt = snprintf(ttl, sizeof ttl, "%d", dedup_ttl_seconds);
    int ne = snprintf(events_text, sizeof events_text, "%zu", count);
    int nb = redis_key_batch(batch_key, sizeof batch_key, batch_id, batch_id_len);
    if (nb < 0) {
        snprintf(err, errlen, "batch id too long for a Redis key");
        free(t.slots);
        free(t.order);
        live_update_free(u);
        return -1;
    }
    if (push_arg(&b, "EVAL", 4) || push_arg(&b, live_update_script, strlen(live_update_script)) ||
        push_arg(&b, numkeys, (size_t)nk) || push_arg(&b, batch_key, (size_t)nb) ||
        push_arg(&b, REDIS_KEY_REBUILD_FENCE, strlen(REDIS_KEY_REBUILD_FENCE)))
        goto oom;
    for (size_t i = 0; i < t.used; i++)
        if (push_series_keys(&b, &t.slots[t.order[i]]) != 0)
            goto oom;
    const char *mode_text = mode == LIVE_MODE_REBUILD ? "rebuild" : "ingest";
    if (push_arg(&b, ttl, (size_t)nt) || push_arg(&b, events_text, (size_t)ne) ||
        push_arg(&b, mode_text, strlen(mode_text)))
        goto oom;
    for (size_t i = 0; i < t.used; i++)
        if (push_series_ops(&b, &t.slots[t.order[i]]) != 0)
            goto oom;
    assert(b.next == u->argc);
    free(t.slots);
    free(t.order);
    return 0;
oom:
    free(t.slots);
    free(t.order);
    live_update_free(u);
    snprintf(err, errlen, "out of memory building the Redis update");
    return -1;
}
