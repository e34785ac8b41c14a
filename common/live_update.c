/*
 * live_update.c — see live_update.h.
 *
 * Why one transaction per group: a batch of 1,000 lines sent as 1,000
 * commands would cost 1,000 Redis operations and could be half-applied if
 * the connection dropped in the middle; folded per series it costs one
 * command per series field, and merging the batches that are waiting while
 * the previous transaction runs (group commit) makes that one command per
 * series field per group. MULTI/EXEC applies all of it or none of it (and
 * an AOF that ends inside a transaction is loaded without it).
 *
 * Why native commands under WATCH instead of one Lua script: measured with
 * `INFO commandstats` at 1,000 names, the script spent about 1.7 µs of Redis
 * time per series field, native commands in MULTI about 0.8 µs. The
 * only decisions (fence up? duplicate batch?) are taken by the guard, and a
 * refusal is expressed as a WATCH abort, so none of the updates needs a
 * script. The fence check and the dedup claims still land atomically with
 * the updates, which is what makes a rebuild under live traffic exact:
 * every batch is applied either by ingest (before the fence, or after it
 * with its dedup key) or by the rebuild's Kafka replay, never by both and
 * never by neither (see flusher/rebuild.c).
 */
#include "live_update.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedup.h"
#include "format.h"
#include "hash.h"
#include "index_table.h"
#include "live_known.h"
#include "redis_hll.h"
#include "redis_keys.h"

/* The guard: decides, after WATCH and before MULTI, whether the transaction
 * may apply. To refuse, it rewrites a watched key with its own value and TTL
 * (SET .. KEEPTTL), which aborts the EXEC that follows without changing any
 * data. Reply: {1} go, {2} fenced, {0, i...} batches i (1-based) are
 * retries (dedup.h; -i: a retry with another body, a conflict).
 * KEYS[1] = fence, KEYS[2..] = dedup keys; ARGV[1] = mode, ARGV[2] = the
 * window in ms, ARGV[3..] = each batch's "DIGEST TIME", as its key holds it.
 * A key that holds no such pair (written by an older ingest) is a retry. */
static const char live_guard_script[] =
    "local function touch(k) redis.call('SET', k, redis.call('GET', k), 'KEEPTTL') end\n"
    "if ARGV[1] ~= 'rebuild' and redis.call('EXISTS', KEYS[1]) == 1 then\n"
    "  touch(KEYS[1]) return {2}\n"
    "end\n"
    "local window = tonumber(ARGV[2])\n"
    "local dups = {0}\n"
    "for i = 2, #KEYS do\n"
    "  local held = redis.call('GET', KEYS[i])\n"
    "  if held then\n"
    "    local d0, t0 = string.match(held, '^(%S+) (%d+)$')\n"
    "    local d, t = string.match(ARGV[i + 1], '^(%S+) (%d+)$')\n"
    "    if not t0 or tonumber(t) - tonumber(t0) <= window then\n"
    "      touch(KEYS[i])\n"
    "      if t0 and d0 ~= d and d0 ~= '-' and d ~= '-' then dups[#dups + 1] = 1 - i\n"
    "      else dups[#dups + 1] = i - 1 end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if #dups > 1 then return dups end\n"
    "return {1}\n";

/* The claim of a batch id (live_claims_build): KEYS[1] = its claim, KEYS[2]
 * = the fence of the claim's shard; ARGV[1] = mode, ARGV[2] = the window in
 * ms, ARGV[3] = the claim ("DIGEST TIME"), ARGV[4] = its TTL in seconds.
 * Reply: 2 fenced (nothing written), -1 a conflict, 1 a retry of a batch
 * whose every part is applied ("done"), 0 go on (claimed now, or a retry). */
static const char live_claim_script[] =
    "if ARGV[1] ~= 'rebuild' and redis.call('EXISTS', KEYS[2]) == 1 then return 2 end\n"
    "local held = redis.call('GET', KEYS[1])\n"
    "if held then\n"
    "  local d0, t0, rest = string.match(held, '^(%S+) (%d+)(.*)$')\n"
    "  local d, t = string.match(ARGV[3], '^(%S+) (%d+)$')\n"
    "  if not t0 or tonumber(t) - tonumber(t0) <= tonumber(ARGV[2]) then\n"
    "    if t0 and d0 ~= d and d0 ~= '-' and d ~= '-' then return -1 end\n"
    "    if rest == ' done' then return 1 end\n"
    "    return 0\n"
    "  end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])\n"
    "return 0\n";

const char live_stale_mark_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "redis.call('SET', KEYS[2], ARGV[1])\n"
    "return 1\n";

/* The carry: moves a whole field at or past the threshold into its ":frac"
 * companion. HINCRBYFLOAT reads the integer text exactly (long double).
 * KEYS[1] = integer hash, KEYS[2] = its companion, ARGV[1] = field,
 * ARGV[2] = threshold. */
static const char live_carry_script[] =
    "local v = redis.call('HGET', KEYS[1], ARGV[1])\n"
    "if v and math.abs(tonumber(v)) >= tonumber(ARGV[2]) then\n"
    "  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[1], v)\n"
    "  redis.call('HDEL', KEYS[1], ARGV[1])\n"
    "  return 1\n"
    "end\n"
    "return 0\n";

/* One series, folded over a batch or a group. */
typedef struct series_fold {
    uint32_t hash;      /* of (type, name, tags): computed once, reused by the group merge */
    metric_type type;
    const char *name;   /* owned by the live_fold (or borrowed from one, in a group) */
    const char *tags;
    uint16_t name_len;
    uint16_t tags_len;
    uint16_t shard;     /* redis_shard_of(name): the hash tag of its keys */
    int gauge_absolute; /* gauge: an absolute value was seen */
    double total;       /* counter total / gauge value (or delta) / distribution sum */
    double weight;      /* distribution: sum of 1/rate */
    double min, max;    /* distribution */
    uint64_t *members;  /* set: its distinct member digests (in the fold's, or the
                           group's, members array) */
    size_t nmembers;    /* set: how many (while folding: lines seen) */
} series_fold;

struct live_fold {
    series_fold *series;
    size_t count;
    uint16_t *shards;  /* live_fold_shards() */
    size_t nshards;
    char *strings;     /* every name and tags, copied */
    uint64_t *members; /* every set series' distinct members, series after series */
};

/* The series in first-seen order, indexed by (type, name, tags) with an
 * index table (index_table.h). */
typedef struct series_index {
    index_table index;
    series_fold *items;
    size_t count;
} series_index;

static uint32_t series_hash(metric_type type, const char *name, size_t name_len, const char *tags,
                            size_t tags_len)
{
    uint32_t h = hash_fnv1a_u64(HASH_FNV1A_INIT, (uint64_t)type);
    h = hash_fnv1a(h, name, name_len);
    h = hash_fnv1a(h, "\xff", 1); /* separates name from tags */
    return hash_fnv1a(h, tags, tags_len);
}

/* Room for `expected` series: the items, and 2 x expected slots, so the
 * table never grows. 0, or -1 out of memory (index_free() then frees). */
static int index_init(series_index *x, size_t expected)
{
    size_t slots = 16;
    while (slots < expected * 2)
        slots <<= 1;
    x->count = 0;
    x->items = malloc((expected + 1) * sizeof *x->items);
    return index_table_init(&x->index, slots) == 0 && x->items ? 0 : -1;
}

static void index_free(series_index *x)
{
    index_table_free(&x->index);
    free(x->items);
}

/* The series being looked up, for the index table's callbacks. */
typedef struct series_key {
    const series_index *x;
    uint32_t hash;
    metric_type type;
    const char *name, *tags;
    uint16_t name_len, tags_len;
} series_key;

static int series_equal(const void *ctx, uint32_t index)
{
    const series_key *k = ctx;
    const series_fold *s = &k->x->items[index];
    return s->hash == k->hash && s->type == k->type && s->name_len == k->name_len &&
           s->tags_len == k->tags_len && memcmp(s->name, k->name, k->name_len) == 0 &&
           (k->tags_len == 0 || memcmp(s->tags, k->tags, k->tags_len) == 0);
}

static uint32_t series_hash_at(const void *ctx, uint32_t index)
{
    return ((const series_key *)ctx)->x->items[index].hash;
}

/* The series (type, name, tags), created empty if new. Requires count < expected. */
static series_fold *index_find(series_index *x, uint32_t hash, metric_type type, const char *name,
                               uint16_t name_len, const char *tags, uint16_t tags_len)
{
    series_key k = {x, hash, type, name, tags, name_len, tags_len};
    long at = index_table_find(&x->index, hash, series_equal, &k);
    if (at >= 0)
        return &x->items[at];
    /* Sized by index_init() for every series: the table does not grow, so
     * adding cannot fail. */
    int added = index_table_add(&x->index, hash, (uint32_t)x->count, series_hash_at, &k);
    assert(added == 0);
    (void)added;
    series_fold *s = &x->items[x->count++];
    *s = (series_fold){.hash = hash, .type = type, .name = name, .name_len = name_len, .tags = tags,
                       .tags_len = tags_len, .min = INFINITY, .max = -INFINITY};
    return s;
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
    case METRIC_SET: /* counted here, gathered by gather_members() */
        s->nmembers++;
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
    into->nmembers += later->nmembers; /* (a set's members: gather_members()) */
    if (later->min < into->min)
        into->min = later->min;
    if (later->max > into->max)
        into->max = later->max;
}

static int compare_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

/* Sorts the n digests at m and drops repeats; returns how many remain. */
static size_t members_unique(uint64_t *m, size_t n)
{
    if (n < 2)
        return n;
    qsort(m, n, sizeof *m, compare_u64);
    size_t kept = 1;
    for (size_t i = 1; i < n; i++)
        if (m[i] != m[kept - 1])
            m[kept++] = m[i];
    return kept;
}

/* Where a set's members come from: a batch's events (one member per set
 * event) or a fold's series (each set series' distinct members). */
typedef struct member_source {
    const metric_event *events; /* NULL: series */
    const series_fold *series;
    size_t count;
    int shard;                  /* series: only those of this shard (-1: all) */
} member_source;

/* The series of x that the i-th item of src belongs to, if it is a set's
 * (NULL otherwise); *from is then the source's series (NULL for an event). */
static series_fold *member_series(series_index *x, const member_source *src, size_t i,
                                  const series_fold **from)
{
    *from = NULL;
    if (src->series) {
        const series_fold *s = &src->series[i];
        if (s->type != METRIC_SET || (src->shard >= 0 && s->shard != src->shard))
            return NULL;
        *from = s;
        return index_find(x, s->hash, s->type, s->name, s->name_len, s->tags, s->tags_len);
    }
    const metric_event *ev = &src->events[i];
    if (ev->type != METRIC_SET)
        return NULL;
    const char *tags = ev->tags_len ? ev->tags : "";
    return index_find(x, series_hash(ev->type, ev->name, ev->name_len, tags, ev->tags_len),
                      ev->type, ev->name, ev->name_len, tags, ev->tags_len);
}

/* Gives every set series of x (its nmembers counting what is to come) a
 * slice of a new array *out (the caller frees it), fills the slices from
 * the n sources, whose every set series is already in x, and makes each
 * slice distinct (sorted, no repeats). Returns 0, or -1 out of memory. */
static int gather_members(series_index *x, const member_source *src, size_t n, uint64_t **out)
{
    size_t total = 0;
    for (size_t k = 0; k < x->count; k++)
        total += x->items[k].type == METRIC_SET ? x->items[k].nmembers : 0;
    *out = malloc((total ? total : 1) * sizeof **out);
    if (!*out)
        return -1;
    for (size_t k = 0, at = 0; k < x->count; k++) {
        series_fold *s = &x->items[k];
        if (s->type != METRIC_SET)
            continue;
        s->members = *out + at;
        at += s->nmembers;
        s->nmembers = 0;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < src[i].count; k++) {
            const series_fold *from;
            series_fold *s = member_series(x, &src[i], k, &from);
            if (!s)
                continue;
            if (!from) {
                s->members[s->nmembers++] = src[i].events[k].member;
                continue;
            }
            memcpy(s->members + s->nmembers, from->members, from->nmembers * sizeof *s->members);
            s->nmembers += from->nmembers;
        }
    }
    for (size_t k = 0; k < x->count; k++)
        if (x->items[k].type == METRIC_SET)
            x->items[k].nmembers = members_unique(x->items[k].members, x->items[k].nmembers);
    return 0;
}

static int compare_u16(const void *x, const void *y)
{
    uint16_t a = *(const uint16_t *)x, b = *(const uint16_t *)y;
    return (a > b) - (a < b);
}

/* f->shards: the shards of f's series, sorted, without repeats. */
static int list_shards(live_fold *f)
{
    f->shards = malloc((f->count + 1) * sizeof *f->shards);
    if (!f->shards)
        return -1;
    for (size_t k = 0; k < f->count; k++)
        f->shards[k] = f->series[k].shard;
    qsort(f->shards, f->count, sizeof *f->shards, compare_u16);
    f->nshards = 0;
    for (size_t k = 0; k < f->count; k++)
        if (f->nshards == 0 || f->shards[f->nshards - 1] != f->shards[k])
            f->shards[f->nshards++] = f->shards[k];
    return 0;
}

live_fold *live_fold_new(const metric_event *events, size_t count, unsigned shards, char *err,
                         size_t errlen)
{
    live_fold *f = calloc(1, sizeof *f);
    series_index x = {0};
    if (!f || index_init(&x, count) != 0)
        goto oom;
    for (size_t i = 0; i < count; i++) {
        const metric_event *ev = &events[i];
        const char *tags = ev->tags_len ? ev->tags : "";
        uint32_t h = series_hash(ev->type, ev->name, ev->name_len, tags, ev->tags_len);
        fold_event(index_find(&x, h, ev->type, ev->name, ev->name_len, tags, ev->tags_len), ev);
    }
    member_source source = {.events = events, .count = count, .shard = -1};
    if (gather_members(&x, &source, 1, &f->members) != 0)
        goto oom;
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
        s.shard = (uint16_t)redis_shard_of(s.name, s.name_len, shards);
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
    if (list_shards(f) != 0) {
        live_fold_free(f);
        snprintf(err, errlen, "out of memory folding a batch");
        return NULL;
    }
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

live_series_ref live_fold_series_at(const live_fold *f, size_t i)
{
    assert(i < f->count);
    const series_fold *s = &f->series[i];
    return (live_series_ref){.hash = s->hash, .type = s->type, .shard = s->shard, .name = s->name,
                             .tags = s->tags, .name_len = s->name_len, .tags_len = s->tags_len};
}

const uint16_t *live_fold_shards(const live_fold *f, size_t *n)
{
    *n = f->nshards;
    return f->shards;
}


void live_fold_free(live_fold *f)
{
    if (!f)
        return;
    free(f->series);
    free(f->strings);
    free(f->members);
    free(f->shards);
    free(f);
}

/* ---- the transaction ---------------------------------------------------------- */

/* A growing buffer of RESP-encoded commands, with the end of each command. */
typedef struct resp_builder {
    live_update *u;
    size_t cap, ends_cap;
    int failed; /* out of memory or out of range: everything after is ignored */
    int out_of_range; /* a value was not finite */
    size_t whole_cap;
    size_t exec_index; /* the reply position in EXEC's of the next queued command */
    const live_known *bounds; /* may be NULL */
} resp_builder;

static int reserve(resp_builder *b, size_t more)
{
    live_update *u = b->u;
    if (b->failed)
        return -1;
    if (u->resp_len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < u->resp_len + more)
        cap *= 2;
    char *grown = realloc(u->resp, cap);
    if (!grown) {
        b->failed = 1;
        return -1;
    }
    u->resp = grown;
    b->cap = cap;
    return 0;
}

static void put_bytes(resp_builder *b, const char *s, size_t len)
{
    if (reserve(b, len) == 0) {
        memcpy(b->u->resp + b->u->resp_len, s, len);
        b->u->resp_len += len;
    }
}

/* "<prefix><n>\r\n" (no printf: this runs a few times per series field) */
static void put_count(resp_builder *b, char prefix, size_t n)
{
    char text[32];
    size_t at = sizeof text;
    text[--at] = '\n';
    text[--at] = '\r';
    do {
        text[--at] = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    text[--at] = prefix;
    put_bytes(b, text + at, sizeof text - at);
}

static void begin_command(resp_builder *b, size_t argc)
{
    put_count(b, '*', argc);
}

static void end_command(resp_builder *b)
{
    live_update *u = b->u;
    if (b->failed)
        return;
    if (u->commands == b->ends_cap) {
        size_t cap = b->ends_cap ? 2 * b->ends_cap : 64;
        size_t *grown = realloc(u->ends, cap * sizeof *grown);
        if (!grown) {
            b->failed = 1;
            return;
        }
        u->ends = grown;
        b->ends_cap = cap;
    }
    u->ends[u->commands++] = u->resp_len;
    b->exec_index++;
}

static void put_arg(resp_builder *b, const char *s, size_t len)
{
    put_count(b, '$', len);
    put_bytes(b, s, len);
    put_bytes(b, "\r\n", 2);
}

static void put_text(resp_builder *b, const char *s)
{
    put_arg(b, s, strlen(s));
}

/* (Folds of lines in event.h's domain are finite; a value that is not is
 * refused rather than written.) */
static void put_double(resp_builder *b, double v)
{
    char num[FORMAT_DOUBLE_MAX];
    int n = format_double(num, sizeof num, v);
    if (n < 0) {
        b->failed = b->out_of_range = 1;
        return;
    }
    put_arg(b, num, (size_t)n);
}

/* "tally:{SHARD}:NAME:SUFFIX[EXTRA]" as one argument (extra_len bytes of extra). */
static void put_metric_key_bytes(resp_builder *b, const series_fold *s, const char *suffix,
                                 const char *extra, size_t extra_len)
{
    char tag[24];
    int tag_len = snprintf(tag, sizeof tag, "tally:{%u}:", (unsigned)s->shard);
    size_t suffix_len = strlen(suffix);
    size_t len = (size_t)tag_len + s->name_len + 1 + suffix_len + extra_len;
    put_count(b, '$', len);
    put_bytes(b, tag, (size_t)tag_len);
    put_bytes(b, s->name, s->name_len);
    put_bytes(b, ":", 1);
    put_bytes(b, suffix, suffix_len);
    put_bytes(b, extra, extra_len);
    put_bytes(b, "\r\n", 2);
}

static void put_metric_key(resp_builder *b, const series_fold *s, const char *suffix,
                           const char *extra)
{
    put_metric_key_bytes(b, s, suffix, extra, strlen(extra));
}

/* Adds v to the series' field of tally:{S}:NAME:SUFFIX. Sums (counters,
 * distribution count and sum) add whole amounts with HINCRBY, several times
 * cheaper than HINCRBYFLOAT, and fractions with HINCRBYFLOAT on the ":frac"
 * companion hash, so the main hash only ever holds integers and HINCRBY never
 * meets a fraction; the value is the sum of both fields. Gauges (which HSET
 * may have set to a fraction) always use HINCRBYFLOAT on their one hash. */
/* Remembers that the next command is a HINCRBY of the series' field. */
static void note_whole_add(resp_builder *b, const series_fold *s, const char *suffix)
{
    live_update *u = b->u;
    if (b->failed)
        return;
    if (u->nwhole == b->whole_cap) {
        size_t cap = b->whole_cap ? 2 * b->whole_cap : 64;
        live_whole_add *grown = realloc(u->whole_adds, cap * sizeof *grown);
        if (!grown) {
            b->failed = 1;
            return;
        }
        u->whole_adds = grown;
        b->whole_cap = cap;
    }
    u->whole_adds[u->nwhole++] = (live_whole_add){b->exec_index, s->name, s->tags, suffix,
                                                  s->name_len, s->tags_len, s->shard};
}

static void put_add(resp_builder *b, const series_fold *s, const char *suffix, double v, int split)
{
    int whole = split && live_sum_is_whole(v);
    if (whole)
        note_whole_add(b, s, suffix);
    begin_command(b, 4);
    put_text(b, whole ? "HINCRBY" : "HINCRBYFLOAT");
    put_metric_key(b, s, suffix, split && !whole ? REDIS_KEY_FRAC_SUFFIX : "");
    put_arg(b, s->tags, s->tags_len);
    put_double(b, v == 0 ? 0.0 : v); /* never "-0", which HINCRBY refuses */
    end_command(b);
}

/* HSET tally:{S}:NAME:SUFFIX tags v */
static void put_hset(resp_builder *b, const series_fold *s, const char *suffix, double v)
{
    begin_command(b, 4);
    put_text(b, "HSET");
    put_metric_key(b, s, suffix, "");
    put_arg(b, s->tags, s->tags_len);
    put_double(b, v);
    end_command(b);
}

/* ZADD tally:{S}:NAME:SUFFIX LT|GT v tags: keeps the smaller (LT) or larger (GT) score. */
static void put_zadd(resp_builder *b, const series_fold *s, const char *suffix, const char *cmp,
                     double v)
{
    begin_command(b, 5);
    put_text(b, "ZADD");
    put_metric_key(b, s, suffix, "");
    put_text(b, cmp);
    put_double(b, v);
    put_arg(b, s->tags, s->tags_len);
    end_command(b);
}

/* The set's distinct members into its HyperLogLog, tally:{S}:NAME:set:TAGS
 * (PFADD, at most LIVE_PFADD_CHUNK elements a command), and its tags into
 * the name's index of set series, tally:{S}:NAME:set (redis_keys.h). */
static void put_set(resp_builder *b, const series_fold *s)
{
    for (size_t at = 0; at < s->nmembers; at += LIVE_PFADD_CHUNK) {
        size_t n = s->nmembers - at < LIVE_PFADD_CHUNK ? s->nmembers - at : LIVE_PFADD_CHUNK;
        begin_command(b, 2 + n);
        put_text(b, "PFADD");
        put_metric_key_bytes(b, s, REDIS_KEY_SET_SUFFIX ":", s->tags, s->tags_len);
        for (size_t i = at; i < at + n; i++) {
            unsigned char element[REDIS_HLL_ELEMENT_BYTES];
            redis_hll_element(s->members[i], element);
            put_arg(b, (const char *)element, sizeof element);
        }
        end_command(b);
    }
    begin_command(b, 4);
    put_text(b, "HSET");
    put_metric_key(b, s, REDIS_KEY_SET_SUFFIX, "");
    put_arg(b, s->tags, s->tags_len);
    put_text(b, "1");
    end_command(b);
}

static void put_series(resp_builder *b, const series_fold *s)
{
    switch (s->type) {
    case METRIC_COUNTER:
        put_add(b, s, "counter", s->total, 1);
        break;
    case METRIC_GAUGE:
        if (s->gauge_absolute)
            put_hset(b, s, "gauge", s->total);
        else
            put_add(b, s, "gauge", s->total, 0);
        break;
    case METRIC_DISTRIBUTION:
        put_add(b, s, "dist:count", s->weight, 1);
        put_add(b, s, "dist:sum", s->total, 1);
        /* (an update the live view provably holds already is left out) */
        if (!live_known_covers_min(b->bounds, s->hash, METRIC_DISTRIBUTION, s->name, s->name_len,
                                   s->tags, s->tags_len, s->min))
            put_zadd(b, s, "dist:min", "LT", s->min);
        if (!live_known_covers_max(b->bounds, s->hash, METRIC_DISTRIBUTION, s->name, s->name_len,
                                   s->tags, s->tags_len, s->max))
            put_zadd(b, s, "dist:max", "GT", s->max);
        break;
    case METRIC_SET:
        put_set(b, s);
        break;
    }
}
/* WATCH the keys the guard reads, so that a change to any of them between the
 * guard and EXEC (by another client, or by the guard itself when it refuses)
 * aborts the transaction. */
static void put_watch(resp_builder *b, const char *fence, const char *const *dedup_keys,
                      const size_t *dedup_lens, size_t n)
{
    begin_command(b, 1 + (fence != NULL) + n);
    put_text(b, "WATCH");
    if (fence)
        put_text(b, fence);
    for (size_t i = 0; i < n; i++)
        put_arg(b, dedup_keys[i], dedup_lens[i]);
    end_command(b);
}

void live_update_free(live_update *u)
{
    free(u->resp);
    free(u->ends);
    free(u->bounds);
    free(u->whole_adds);
    memset(u, 0, sizeof *u);
}

int live_update_carry(const live_update *u, const redisReply *exec, live_update *carry,
                      char *err, size_t errlen)
{
    memset(carry, 0, sizeof *carry);
    resp_builder b = {.u = carry};
    char threshold[24];
    int tn = snprintf(threshold, sizeof threshold, "%lld", LIVE_CARRY_THRESHOLD);
    for (size_t i = 0; i < u->nwhole; i++) {
        const live_whole_add *a = &u->whole_adds[i];
        if (a->exec_index >= exec->elements)
            continue;
        const redisReply *r = exec->element[a->exec_index];
        if (r->type != REDIS_REPLY_INTEGER ||
            (r->integer < LIVE_CARRY_THRESHOLD && r->integer > -LIVE_CARRY_THRESHOLD))
            continue;
        series_fold s = {.name = a->name, .name_len = a->name_len, .shard = a->shard};
        begin_command(&b, 7);
        put_text(&b, "EVAL");
        put_text(&b, live_carry_script);
        put_text(&b, "2");
        put_metric_key(&b, &s, a->suffix, "");
        put_metric_key(&b, &s, a->suffix, REDIS_KEY_FRAC_SUFFIX);
        put_arg(&b, a->tags, a->tags_len);
        put_arg(&b, threshold, (size_t)tn);
        end_command(&b);
    }
    if (b.failed) {
        live_update_free(carry);
        snprintf(err, errlen, "out of memory building a carry");
        return -1;
    }
    return 0;
}

int live_update_build(live_update *u, const live_fold *const *folds, const live_batch *batches,
                      size_t n, int dedup_window_seconds, live_mode mode, const live_known *bounds,
                      unsigned shard, char *err, size_t errlen)
{
    assert(n >= 1);
    memset(u, 0, sizeof *u);
    char fence[REDIS_KEY_MAX];
    redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
    char (*dedup_keys)[REDIS_KEY_MAX] = malloc(n * sizeof *dedup_keys);
    char (*claims)[DEDUP_DIGEST_TEXT + 24] = malloc(n * sizeof *claims);
    size_t *dedup_lens = malloc(n * sizeof *dedup_lens);
    const char **dedup_ptrs = malloc(n * sizeof *dedup_ptrs);
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += folds[i]->count;
    series_index x = {0};
    uint64_t *members = NULL; /* the group's set members (gather_members) */
    if (!dedup_keys || !claims || !dedup_lens || !dedup_ptrs || index_init(&x, total) != 0)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        /* what the batch's dedup key holds: "DIGEST TIME" (dedup.h) */
        snprintf(claims[i], sizeof claims[i], "%.16s %lld", batches[i].digest,
                 (long long)(batches[i].log_ms < 0 ? 0 : batches[i].log_ms));
        int len = redis_key_batch(dedup_keys[i], REDIS_KEY_MAX, shard, batches[i].id,
                                  batches[i].id_len);
        if (len < 0) {
            snprintf(err, errlen, "batch id too long for a Redis key");
            goto fail;
        }
        dedup_lens[i] = (size_t)len;
        dedup_ptrs[i] = dedup_keys[i];
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < folds[i]->count; k++) {
            const series_fold *s = &folds[i]->series[k];
            if (s->shard != shard)
                continue;
            series_fold *into = index_find(&x, s->hash, s->type, s->name, s->name_len, s->tags,
                                           s->tags_len);
            into->shard = s->shard;
            merge_series(into, s);
        }
    }
    u->series = x.count;
    member_source *sources = malloc(n * sizeof *sources);
    if (!sources)
        goto oom;
    for (size_t i = 0; i < n; i++)
        sources[i] = (member_source){.series = folds[i]->series, .count = folds[i]->count,
                                     .shard = (int)shard};
    int gathered = gather_members(&x, sources, n, &members);
    free(sources);
    if (gathered != 0)
        goto oom;

    resp_builder b = {.u = u, .bounds = bounds};
    reserve(&b, 256 + 160 * (x.count + n));
    int ingest = mode == LIVE_MODE_INGEST;
    put_watch(&b, ingest ? fence : NULL, dedup_ptrs, dedup_lens, n);
    /* EVAL guard 1+n fence dedup[n] mode window claims[n] */
    begin_command(&b, 4 + 1 + n + 1 + n);
    put_text(&b, "EVAL");
    put_text(&b, live_guard_script);
    char numkeys[24];
    int nk = snprintf(numkeys, sizeof numkeys, "%zu", 1 + n);
    put_arg(&b, numkeys, (size_t)nk);
    put_text(&b, fence);
    for (size_t i = 0; i < n; i++)
        put_arg(&b, dedup_ptrs[i], dedup_lens[i]);
    put_text(&b, ingest ? "ingest" : "rebuild");
    char window_ms[24];
    put_arg(&b, window_ms,
            (size_t)snprintf(window_ms, sizeof window_ms, "%lld", dedup_window_seconds * 1000LL));
    for (size_t i = 0; i < n; i++)
        put_text(&b, claims[i]);
    end_command(&b);

    begin_command(&b, 1);
    put_text(&b, "MULTI");
    end_command(&b);
    b.exec_index = 0; /* EXEC answers for the commands queued from here on */
    char ttl[24];
    int nt = snprintf(ttl, sizeof ttl, "%d", dedup_window_seconds + DEDUP_SLACK_SECONDS);
    for (size_t i = 0; i < n; i++) {
        begin_command(&b, 5);
        put_text(&b, "SET");
        put_arg(&b, dedup_ptrs[i], dedup_lens[i]);
        put_text(&b, claims[i]);
        put_text(&b, "EX");
        put_arg(&b, ttl, (size_t)nt);
        end_command(&b);
    }
    size_t dists = 0;
    for (size_t k = 0; k < x.count; k++) {
        put_series(&b, &x.items[k]);
        dists += x.items[k].type == METRIC_DISTRIBUTION;
    }
    /* the distributions' bounds, for live_update_note_bounds once applied */
    u->bounds = malloc((dists ? dists : 1) * sizeof *u->bounds);
    if (!u->bounds)
        goto oom;
    for (size_t k = 0; k < x.count; k++) {
        const series_fold *s = &x.items[k];
        if (s->type == METRIC_DISTRIBUTION)
            u->bounds[u->nbounds++] = (live_series_bounds){s->hash, s->name_len, s->tags_len,
                                                           s->name, s->tags, s->min, s->max};
    }
    begin_command(&b, 1);
    put_text(&b, "EXEC");
    end_command(&b);
    if (b.out_of_range) {
        snprintf(err, errlen, "a folded value is not finite");
        goto fail;
    }
    if (b.failed)
        goto oom;
    index_free(&x);
    free(members);
    free(dedup_keys);
    free(claims);
    free(dedup_lens);
    free(dedup_ptrs);
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the Redis update");
fail:
    index_free(&x);
    free(members);
    free(dedup_keys);
    free(claims);
    free(dedup_lens);
    free(dedup_ptrs);
    live_update_free(u);
    return -1;
}

int live_claim_value(char *buf, const char *digest, int64_t log_ms, int done)
{
    return snprintf(buf, LIVE_CLAIM_MAX, "%.16s %lld%s", digest,
                    (long long)(log_ms < 0 ? 0 : log_ms), done ? " done" : "");
}

int live_claims_build(live_update *u, const live_batch *batches, size_t n,
                      int dedup_window_seconds, live_mode mode, unsigned shards, char *err,
                      size_t errlen)
{
    memset(u, 0, sizeof *u);
    resp_builder b = {.u = u};
    reserve(&b, n * (sizeof live_claim_script + 160));
    char window_ms[24], ttl[24];
    int nw = snprintf(window_ms, sizeof window_ms, "%lld", dedup_window_seconds * 1000LL);
    int nt = snprintf(ttl, sizeof ttl, "%d", dedup_window_seconds + DEDUP_SLACK_SECONDS);
    for (size_t i = 0; i < n; i++) {
        char key[REDIS_KEY_MAX], fence[REDIS_KEY_MAX], claim[LIVE_CLAIM_MAX];
        int kl = redis_key_claim(key, sizeof key, shards, batches[i].id, batches[i].id_len);
        if (kl < 0) {
            live_update_free(u);
            snprintf(err, errlen, "batch id too long for a Redis key");
            return -1;
        }
        redis_key_shard(fence, sizeof fence, redis_shard_of(batches[i].id, batches[i].id_len, shards),
                        REDIS_SHARD_FENCE);
        live_claim_value(claim, batches[i].digest, batches[i].log_ms, 0);
        begin_command(&b, 9);
        put_text(&b, "EVAL");
        put_text(&b, live_claim_script);
        put_text(&b, "2");
        put_arg(&b, key, (size_t)kl);
        put_text(&b, fence);
        put_text(&b, mode == LIVE_MODE_INGEST ? "ingest" : "rebuild");
        put_arg(&b, window_ms, (size_t)nw);
        put_text(&b, claim);
        put_arg(&b, ttl, (size_t)nt);
        end_command(&b);
    }
    if (b.failed) {
        live_update_free(u);
        snprintf(err, errlen, "out of memory building the claims");
        return -1;
    }
    return 0;
}

/* A missing reply (connection lost) or an error reply: fills why, returns 1. */
static int reply_failed(const redisReply *r, char *why, size_t whylen)
{
    if (r && r->type != REDIS_REPLY_ERROR)
        return 0;
    snprintf(why, whylen, "%s", r ? r->str : "redis connection lost");
    return 1;
}

int live_guard_verdict(const redisReply *guard, size_t n, size_t *dups, size_t *ndups, char *why,
                       size_t whylen)
{
    *ndups = 0;
    if (reply_failed(guard, why, whylen))
        return LIVE_FAILED;
    if (guard->type != REDIS_REPLY_ARRAY || guard->elements < 1 || guard->elements > n + 1 ||
        guard->element[0]->type != REDIS_REPLY_INTEGER) {
        snprintf(why, whylen, "unexpected reply from the update guard");
        return LIVE_FAILED;
    }
    long long verdict = guard->element[0]->integer;
    if (verdict == LIVE_APPLIED || verdict == LIVE_DEFERRED)
        return (int)verdict;
    if (verdict != LIVE_DUPLICATE || guard->elements < 2) {
        snprintf(why, whylen, "unexpected verdict %lld from the update guard", verdict);
        return LIVE_FAILED;
    }
    for (size_t i = 1; i < guard->elements; i++) {
        const redisReply *e = guard->element[i];
        long long pos = e->type == REDIS_REPLY_INTEGER ? (e->integer < 0 ? -e->integer : e->integer) : 0;
        if (pos < 1 || (size_t)pos > n) {
            *ndups = 0;
            snprintf(why, whylen, "unexpected duplicate position from the update guard");
            return LIVE_FAILED;
        }
        dups[(*ndups)++] = (size_t)pos | (e->integer < 0 ? LIVE_CONFLICT : 0);
    }
    return LIVE_DUPLICATE;
}

int live_claim_verdict(const redisReply *reply, char *why, size_t whylen)
{
    if (reply_failed(reply, why, whylen))
        return LIVE_FAILED;
    if (reply->type == REDIS_REPLY_INTEGER) {
        switch (reply->integer) {
        case 0: return LIVE_APPLIED;
        case 1: return LIVE_DUPLICATE;
        case 2: return LIVE_DEFERRED;
        case -1: return LIVE_CONFLICTED;
        }
    }
    snprintf(why, whylen, "unexpected reply from the batch claim");
    return LIVE_FAILED;
}

int live_outcome(int verdict, const redisReply *exec, char *why, size_t whylen)
{
    if (verdict == LIVE_FAILED)
        return LIVE_FAILED; /* why was filled by live_guard_verdict */
    if (reply_failed(exec, why, whylen))
        return LIVE_FAILED;
    if (exec->type == REDIS_REPLY_NIL) /* EXEC aborted: nothing applied */
        return verdict == LIVE_APPLIED ? LIVE_RETRY : verdict;
    if (exec->type != REDIS_REPLY_ARRAY || verdict != LIVE_APPLIED) {
        snprintf(why, whylen, "unexpected EXEC reply (guard verdict %d)", verdict);
        return LIVE_FAILED;
    }
    size_t refused = 0;
    const char *first = NULL;
    for (size_t i = 0; i < exec->elements; i++) {
        if (exec->element[i]->type == REDIS_REPLY_ERROR && !refused++)
            first = exec->element[i]->str;
    }
    if (refused) {
        snprintf(why, whylen, "redis refused %zu of %zu updates: %s", refused, exec->elements,
                 first);
        return LIVE_PARTIAL;
    }
    return LIVE_APPLIED;
}

void live_update_note_bounds(const live_update *u, live_known *b)
{
    for (size_t i = 0; i < u->nbounds; i++) {
        const live_series_bounds *sb = &u->bounds[i];
        live_known_note(b, sb->hash, METRIC_DISTRIBUTION, sb->name, sb->name_len, sb->tags,
                        sb->tags_len, sb->min, sb->max);
    }
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
