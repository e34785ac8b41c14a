/*
 * live_read.c — see live_read.h. The Lua call returns, for one name, the
 * HGETALL of its seven sum and value hashes (counter, gauge, distribution
 * count and sum, with their ":frac" companions), the ZRANGE of its min and
 * max sets, each of its set series' PFCOUNT (the series listed by its set
 * index, tally:{S}:NAME:set; each count then looks like a hash field: tags,
 * value; the set keys are named in the script, not passed as KEYS, since
 * their tags are only known there, and share the name's hash tag, hence its
 * Cluster slot) and whether the view is stale or being rebuilt: one round trip,
 * one consistent moment. Each field becomes an entry (tags, what, value);
 * sorted by tags, the entries of one series fold into one series_total.
 */
#include "live_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "http_reply.h"
#include "query_exec.h"
#include "redis_keys.h"
#include "statsd.h"
#include "totals_json.h"

static const char READ_SCRIPT[] =
    "local out = {}\n"
    "for i = 1, 7 do out[i] = redis.call('HGETALL', KEYS[i]) end\n"
    "out[8] = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')\n"
    "out[9] = redis.call('ZRANGE', KEYS[9], 0, -1, 'WITHSCORES')\n"
    "local sets = {}\n"
    "for _, tags in ipairs(redis.call('HKEYS', KEYS[10])) do\n"
    "  sets[#sets + 1] = tags\n"
    "  sets[#sets + 1] = tostring(redis.call('PFCOUNT', KEYS[10] .. ':' .. tags))\n"
    "end\n"
    "out[10] = sets\n"
    "out[11] = redis.call('EXISTS', KEYS[11], KEYS[12])\n"
    "return out\n";

/* The keys, in the script's order, and what each field of each holds. */
enum what { W_COUNTER, W_GAUGE, W_COUNT, W_SUM, W_MIN, W_MAX, W_DISTINCT };
static const struct { const char *suffix; enum what what; } KEYS[] = {
    {"counter", W_COUNTER},   {"counter" REDIS_KEY_FRAC_SUFFIX, W_COUNTER},
    {"gauge", W_GAUGE},       {"dist:count", W_COUNT},
    {"dist:count" REDIS_KEY_FRAC_SUFFIX, W_COUNT},
    {"dist:sum", W_SUM},      {"dist:sum" REDIS_KEY_FRAC_SUFFIX, W_SUM},
    {"dist:min", W_MIN},      {"dist:max", W_MAX},
    {REDIS_KEY_SET_SUFFIX, W_DISTINCT}}; /* its HyperLogLogs: this key ":" TAGS */
#define NKEYS (sizeof KEYS / sizeof KEYS[0])

struct live_read {
    const tally_config *cfg;
    redis_router *redis;
    query_pool *pool;
    size_t inflight;
};

typedef struct read_call {
    query_job job; /* first: the pool hands it back (the SQLite path) */
    live_read *l;
    struct evhttp_request *req;
    char name[EVENT_NAME_MAX + 1];
    metric_type type; /* asked with ?type= (0: the first there is) */
    read_request sqlite;
} read_call;

typedef struct entry {
    const char *tags;
    size_t tags_len;
    enum what what;
    double value;
} entry;

live_read *live_read_new(const tally_config *cfg, redis_router *redis, query_pool *pool)
{
    live_read *l = calloc(1, sizeof *l);
    if (l) {
        l->cfg = cfg;
        l->redis = redis;
        l->pool = pool;
    }
    return l;
}

void live_read_free(live_read *l)
{
    free(l);
}

size_t live_read_inflight(const live_read *l)
{
    return l->inflight;
}

static void send_json(struct evhttp_request *req, int status, struct evbuffer *b)
{
    http_reply_json(req, status, http_reason(status), b);
}

static void send_error(struct evhttp_request *req, int status, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    query_exec_native_error_body(b, msg);
    send_json(req, status, b);
    evbuffer_free(b);
}

static void call_done(read_call *c)
{
    c->l->inflight--;
    read_request_clear(&c->sqlite);
    free(c);
}

/* ---- from SQLite (a reader thread) ------------------------------------------------- */

static void on_sqlite_run(query_job *job, query_source *src)
{
    query_exec_run(&((read_call *)job)->sqlite, src);
}

static void on_sqlite_done(query_job *job)
{
    read_call *c = (read_call *)job;
    if (c->sqlite.body)
        send_json(c->req, c->sqlite.status, c->sqlite.body);
    else
        evhttp_send_error(c->req, 500, "out of memory");
    call_done(c);
}

/* The flushed totals; note != NULL: a fallback (stale, with why). */
static void read_sqlite(read_call *c, const char *note)
{
    read_request *r = &c->sqlite;
    r->kind = READ_TOTALS;
    snprintf(r->name, sizeof r->name, "%s", c->name);
    r->type = c->type;
    r->stale = note != NULL;
    snprintf(r->note, sizeof r->note, "%s", note ? note : "");
    c->job.run = on_sqlite_run;
    c->job.done = on_sqlite_done;
    if (query_pool_submit(c->l->pool, &c->job) != 0) {
        send_error(c->req, 503, "too many queries waiting (query.max_queued): retry later");
        call_done(c);
    }
}

/* ---- from Redis ----------------------------------------------------------------------- */

static int compare_entries(const void *x, const void *y)
{
    const entry *a = x, *b = y;
    size_t n = a->tags_len < b->tags_len ? a->tags_len : b->tags_len;
    int c = n ? memcmp(a->tags, b->tags, n) : 0;
    return c ? c : (a->tags_len > b->tags_len) - (a->tags_len < b->tags_len);
}

/* Appends the fields of the script's reply part i as entries (-1: malformed). */
static int add_entries(const redisReply *part, enum what what, entry *out, size_t *n)
{
    if (part->type != REDIS_REPLY_ARRAY || part->elements % 2 != 0)
        return -1;
    for (size_t i = 0; i + 1 < part->elements; i += 2) {
        const redisReply *field = part->element[i], *value = part->element[i + 1];
        char *end = NULL;
        if (!field->str || !value->str)
            return -1;
        double v = strtod(value->str, &end);
        if (end == value->str)
            return -1;
        out[(*n)++] = (entry){field->str, field->len, what, v};
    }
    return 0;
}

/* Folds the sorted entries of one type into series totals. */
static size_t fold(const entry *e, size_t n, series_total *out)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        series_total *s = count ? &out[count - 1] : NULL;
        if (!s || compare_entries(&e[i], &(entry){s->tags, s->tags_len, 0, 0}) != 0) {
            s = &out[count++];
            *s = (series_total){.tags = e[i].tags, .tags_len = e[i].tags_len};
        }
        switch (e[i].what) {
        case W_COUNTER:
        case W_GAUGE: s->value += e[i].value; break;
        case W_COUNT: s->count += e[i].value; break;
        case W_SUM: s->sum += e[i].value; break;
        case W_MIN: s->min = e[i].value, s->has_range = 1; break;
        case W_MAX: s->max = e[i].value, s->has_range = 1; break;
        case W_DISTINCT: s->value = e[i].value; break;
        }
    }
    return count;
}

/* The type whose series an entry belongs to. */
static metric_type type_of_what(enum what w)
{
    switch (w) {
    case W_COUNTER: return METRIC_COUNTER;
    case W_GAUGE: return METRIC_GAUGE;
    case W_COUNT: case W_SUM: case W_MIN: case W_MAX: return METRIC_DISTRIBUTION;
    case W_DISTINCT: return METRIC_SET;
    }
    return METRIC_COUNTER;
}

/* Keeps the entries of one type. */
static size_t select_type(entry *e, size_t n, metric_type type)
{
    size_t kept = 0;
    for (size_t i = 0; i < n; i++)
        if (type_of_what(e[i].what) == type)
            e[kept++] = e[i];
    return kept;
}

static unsigned types_of(const entry *e, size_t n)
{
    unsigned types = 0;
    for (size_t i = 0; i < n; i++)
        types |= 1u << type_of_what(e[i].what);
    return types;
}

/* The type answered without ?type=: the first the name has of counter,
 * gauge, distribution and set (a distribution when it has none). */
static metric_type first_type(unsigned types)
{
    static const metric_type order[] = {METRIC_COUNTER, METRIC_GAUGE, METRIC_DISTRIBUTION,
                                        METRIC_SET};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (types & (1u << order[i]))
            return order[i];
    return METRIC_DISTRIBUTION;
}

static void answer_live(read_call *c, entry *e, size_t n, int stale)
{
    unsigned types = types_of(e, n);
    metric_type type = c->type ? c->type : first_type(types);
    n = select_type(e, n, type);
    if (n == 0) {
        if (stale) { /* the view may have lost it: what SQLite has */
            read_sqlite(c, "live view is stale (Redis lost or missed batches) until "
                           "tally-flusher --rebuild-redis completes: flushed totals only");
            return;
        }
        char msg[EVENT_NAME_MAX + 64];
        snprintf(msg, sizeof msg, "no %s named %s", c->type ? metric_type_name(c->type) : "metric",
                 c->name);
        send_error(c->req, 404, msg);
        call_done(c);
        return;
    }
    qsort(e, n, sizeof *e, compare_entries);
    series_total *series = calloc(n, sizeof *series);
    struct evbuffer *b = evbuffer_new();
    if (!series || !b) {
        send_error(c->req, 503, "out of memory");
    } else {
        totals_answer a = {c->name, type, types, "redis", stale,
                           stale ? "live view is stale (Redis lost or missed batches) until "
                                   "tally-flusher --rebuild-redis completes"
                                 : NULL};
        totals_json_write(b, &a, series, fold(e, n, series));
        send_json(c->req, 200, b);
    }
    if (b)
        evbuffer_free(b);
    free(series);
    call_done(c);
}

static void on_live(void *opaque, const redisReply *reply, const char *reason)
{
    read_call *c = opaque;
    int ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == NKEYS + 1 &&
             reply->element[NKEYS]->type == REDIS_REPLY_INTEGER;
    size_t total = 0;
    for (size_t i = 0; ok && i < NKEYS; i++)
        total += reply->element[i]->type == REDIS_REPLY_ARRAY ? reply->element[i]->elements / 2 : 0;
    entry *e = ok ? calloc(total + 1, sizeof *e) : NULL;
    size_t n = 0;
    for (size_t i = 0; e && i < NKEYS; i++)
        if (add_entries(reply->element[i], KEYS[i].what, e, &n) != 0)
            ok = 0;
    if (!ok || !e) {
        char note[300];
        snprintf(note, sizeof note, "%s: flushed totals only",
                 !reply ? reason : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                                    : "unexpected reply from redis");
        free(e);
        read_sqlite(c, note);
        return;
    }
    answer_live(c, e, n, reply->element[NKEYS]->integer > 0);
    free(e);
}

static int read_redis(read_call *c, char *err, size_t errlen)
{
    char keys[NKEYS + 2][REDIS_KEY_MAX];
    const char *argv[3 + NKEYS + 2];
    size_t argvlen[3 + NKEYS + 2];
    char nkeys[8];
    int argc = 0;
    argv[argc] = "EVAL", argvlen[argc++] = 4;
    argv[argc] = READ_SCRIPT, argvlen[argc++] = sizeof READ_SCRIPT - 1;
    argvlen[argc] = (size_t)snprintf(nkeys, sizeof nkeys, "%zu", NKEYS + 2), argv[argc++] = nkeys;
    size_t name_len = strlen(c->name);
    unsigned shard = redis_shard_of(c->name, name_len, (unsigned)c->l->cfg->redis.shards);
    for (size_t i = 0; i < NKEYS; i++) {
        int kl = redis_key_metric(keys[i], sizeof keys[i], shard, c->name, name_len,
                                  KEYS[i].suffix);
        argv[argc] = keys[i], argvlen[argc++] = (size_t)(kl < 0 ? 0 : kl);
    }
    /* the name's shard's markers: every key of the call is in one slot */
    for (int k = 0; k < 2; k++) {
        int kl = redis_key_shard(keys[NKEYS + k], sizeof keys[NKEYS + k], shard,
                                 k == 0 ? REDIS_SHARD_STALE : REDIS_SHARD_FENCE);
        argv[argc] = keys[NKEYS + k], argvlen[argc++] = (size_t)kl;
    }
    return redis_router_command(c->l->redis, redis_shard_slot(shard), argc, argv, argvlen, on_live, c,
                                err, errlen);
}

/* ---- the route --------------------------------------------------------------------------- */

static int valid_metric_name(const char *name)
{
    return statsd_name_valid(name, strlen(name), EVENT_NAME_MAX);
}

/* Reads ?source= and ?type=; 0, or -1 with the 400 message in err. */
static int read_options(const char *query, int *sqlite, metric_type *type, char *err,
                        size_t errlen)
{
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    *sqlite = 0;
    *type = 0;
    int rc = 0;
    if (query && evhttp_parse_query_str(query, &params) == 0) {
        const char *source = evhttp_find_header(&params, "source");
        const char *t = evhttp_find_header(&params, "type");
        if (source && strcmp(source, "sqlite") != 0 && strcmp(source, "redis") != 0) {
            snprintf(err, errlen, "source must be redis or sqlite");
            rc = -1;
        }
        *sqlite = source && strcmp(source, "sqlite") == 0;
        if (t) {
            *type = metric_type_from_name(t);
            if (!*type) {
                snprintf(err, errlen, "type must be counter, gauge, distribution or set");
                rc = -1;
            }
        }
    }
    evhttp_clear_headers(&params);
    return rc;
}

void live_read_handle(live_read *l, struct evhttp_request *req, const char *raw_name,
                      const char *query)
{
    char *name = evhttp_uridecode(raw_name, 0, NULL);
    char err[256];
    int sqlite;
    metric_type type;
    if (!name) {
        send_error(req, 503, "out of memory");
        return;
    }
    if (!valid_metric_name(name)) {
        send_error(req, 400, "invalid metric name: 1-255 bytes of [A-Za-z0-9_.-] or UTF-8");
    } else if (read_options(query, &sqlite, &type, err, sizeof err) != 0) {
        send_error(req, 400, err);
    } else {
        read_call *c = calloc(1, sizeof *c);
        if (!c) {
            send_error(req, 503, "out of memory");
        } else {
            c->l = l;
            c->req = req;
            c->type = type;
            snprintf(c->name, sizeof c->name, "%s", name);
            l->inflight++;
            if (sqlite) {
                read_sqlite(c, NULL);
            } else if (read_redis(c, err, sizeof err) != 0) {
                char note[300];
                snprintf(note, sizeof note, "%s: flushed totals only", err);
                read_sqlite(c, note);
            }
        }
    }
    free(name);
}
