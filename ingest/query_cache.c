/*
 * query_cache.c — see query_cache.h.
 *
 * Why versions and not deletes: a reader that read SQLite just before a
 * commit may write its (old) answer just after the flusher deleted the key,
 * and that answer would then be served until its TTL. With versions the
 * reader reads the version FIRST and writes its answer under that version,
 * which the flusher replaces after committing: whichever order the two take,
 * an answer older than a commit is only ever stored under a version no later
 * read asks for. Invalidation is one SET per name per commit, whatever the
 * number of cached answers, and nothing has to enumerate keys.
 *
 * Lifetimes: a `lookup` lives from the request to the Lua reply; a `flight`
 * from a miss to its answer, holding the waiters (this process' requests for
 * the same answer key) and the read that one reader thread runs.
 */
#include "query_cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cache_keys.h"
#include "clock.h"
#include "hash.h"
#include "local_answers.h"
#include "log.h"
#include "prom_name.h"
#include "redis_writer.h"

#define VERSION_KEYS_MAX 32
#define KEY_MAX (PROM_NAME_MAX + 32)
#define POLL_MS 10
#define WARM_PARALLEL 4
#define EPOCH_CHECK_MS 1000
#define HOT_DECAY_S 60
#define VALUE_HEAD 6 /* "SSS F ": HTTP status, 'n' (negative) or 'p', then the body */
/* Early refresh: a hit on a hot answer (REFRESH_HOT_HITS hits) with less
 * than REFRESH_LEFT_MS of its TTL left re-reads it in the background, so the
 * read load never finds a hot key expired. */
#define REFRESH_LEFT_MS 3000
#define REFRESH_HOT_HITS 3

/* Reads the versions in KEYS (a missing one becomes ARGV[2]..i, with TTL
 * ARGV[3]) and the answer under them: returns {answer key, answer or nil,
 * the answer's remaining TTL in ms}. */
static const char LOOKUP_SCRIPT[] =
    "local parts = {}\n"
    "for i = 1, #KEYS do\n"
    "  local v = redis.call('GET', KEYS[i])\n"
    "  if not v then\n"
    "    v = ARGV[2] .. i\n"
    "    redis.call('SET', KEYS[i], v, 'EX', ARGV[3])\n"
    "  end\n"
    "  parts[i] = v\n"
    "end\n"
    "local key = ARGV[1] .. ':' .. table.concat(parts, ':')\n"
    "return {key, redis.call('GET', key), redis.call('PTTL', key)}\n";

typedef struct waiter {
    cache_answer_fn done; /* NULL: a warming read */
    void *opaque;
    struct waiter *next;
} waiter;

typedef struct hot_entry {
    uint64_t hash;
    char *key_text;
    uint32_t count;
} hot_entry;

typedef struct flight {
    query_job job;        /* first: the pool hands this back */
    query_cache *c;
    char *answer_key;     /* NULL: uncached (no key, no populate) */
    char *key_text;
    uint64_t hash;
    read_request read;
    waiter *waiters;
    int remote_polls;     /* re-reads while another process holds the lock */
    int refresh;          /* an early refresh: nobody waits; skip it if locked */
    struct event *poll_timer;
    struct flight *next;
} flight;

typedef struct lookup {
    query_cache *c;
    read_request read;
    char *key_text;
    uint64_t hash;
    uint64_t local_stamp; /* local_answers_stamp() when the lookup was sent */
    waiter w;
} lookup;

struct query_cache {
    struct event_base *base;
    const tally_config *cfg;
    query_pool *pool;
    redis_writer *redis;       /* NULL when cache.enabled is false */
    local_answers *local;      /* the in-process copy of hot answers (with redis) */
    flight *flights;           /* misses in progress, keyed by answer key */
    size_t inflight;
    int failures;              /* consecutive cache failures */
    int64_t open_until_ms;     /* breaker open until (monotonic ms) */
    uint64_t rng;
    cache_stats stats;
    hot_entry *hot;
    size_t hot_count;
    time_t hot_decayed;
    char **warm_queue;         /* key texts still to warm */
    size_t warm_len, warm_next;
    int warming;               /* warm reads in flight */
    int closing;               /* query_cache_free: replies answer nobody */
    struct event *epoch_timer;
};

static uint64_t next_random(query_cache *c)
{
    c->rng ^= c->rng << 13;
    c->rng ^= c->rng >> 7;
    c->rng ^= c->rng << 17;
    return c->rng;
}

/* ---- the breaker ---------------------------------------------------------------- */

static int cache_usable(query_cache *c)
{
    return c->redis && clock_mono_ms() >= c->open_until_ms && redis_writer_is_up(c->redis, NULL);
}

static void cache_failed(query_cache *c, const char *why)
{
    if (++c->failures < c->cfg->cache.breaker_failures)
        return;
    if (clock_mono_ms() >= c->open_until_ms)
        log_warn("cache redis: %s; breaker open for %d ms (reads go to SQLite, uncached)",
                 why ? why : "failed", c->cfg->cache.breaker_open_ms);
    c->open_until_ms = clock_mono_ms() + c->cfg->cache.breaker_open_ms;
    c->failures = 0;
}

static void cache_succeeded(query_cache *c)
{
    c->failures = 0;
}

/* ---- answering ------------------------------------------------------------------- */

static const char UNCACHED_WARNING[] = "{\"warnings\":[\"answered from SQLite without the cache "
                                       "(cache Redis unavailable or disabled)\"],";

/* Sends one waiter its own copy of the answer. */
static void answer_waiter(const waiter *w, int status, const char *body, size_t len,
                          cache_state state)
{
    if (!w->done)
        return;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        w->done(w->opaque, 500, NULL, state);
        return;
    }
    int prometheus = len > 11 && memcmp(body, "{\"status\":\"", 11) == 0;
    if (state == CACHE_UNCACHED && prometheus) {
        evbuffer_add(b, UNCACHED_WARNING, sizeof UNCACHED_WARNING - 1);
        evbuffer_add(b, body + 1, len - 1);
    } else {
        evbuffer_add(b, body, len);
    }
    w->done(w->opaque, status, b, state);
    evbuffer_free(b);
}

static void answer_all(waiter *list, int status, const char *body, size_t len, cache_state first,
                       cache_state others)
{
    /* the list is newest first: the last one is the request that led */
    while (list) {
        waiter *next = list->next;
        answer_waiter(list, status, body, len, next ? others : first);
        free(list);
        list = next;
    }
}

/* ---- hot keys (warming) ------------------------------------------------------------ */

static void hot_touch(query_cache *c, uint64_t hash, const char *key_text)
{
    size_t cap = (size_t)c->cfg->cache.warm_keys;
    if (cap == 0 || !key_text)
        return;
    time_t now = time(NULL);
    if (now - c->hot_decayed >= HOT_DECAY_S) { /* recent popularity counts most */
        for (size_t i = 0; i < c->hot_count; i++)
            c->hot[i].count /= 2;
        c->hot_decayed = now;
    }
    size_t min = 0;
    for (size_t i = 0; i < c->hot_count; i++) {
        if (c->hot[i].hash == hash) {
            c->hot[i].count++;
            return;
        }
        if (c->hot[i].count < c->hot[min].count)
            min = i;
    }
    char *copy = strdup(key_text);
    if (!copy)
        return;
    if (c->hot_count < cap) { /* space-saving: a new key replaces the coldest */
        c->hot[c->hot_count++] = (hot_entry){hash, copy, 1};
        return;
    }
    free(c->hot[min].key_text);
    c->hot[min] = (hot_entry){hash, copy, c->hot[min].count + 1};
}

/* ---- TTL and populate --------------------------------------------------------------- */

static int count_selector(void *ctx, const promql_matcher *m, size_t n)
{
    (void)m;
    (void)n;
    ++*(size_t *)ctx;
    return 0;
}

/* An answer about nothing: an unknown name (404), or a query whose
 * selectors matched no series at all. */
static int is_negative(const read_request *r)
{
    size_t selectors = 0;
    if (r->status == 404)
        return 1;
    if (r->status != 200 || !r->empty || (r->kind != READ_QUERY && r->kind != READ_QUERY_RANGE))
        return 0;
    promql_foreach_selector(r->expr, count_selector, &selectors);
    return selectors > 0;
}

/* The TTL class of an answer, in seconds (before jitter). */
static int ttl_of(const query_cache *c, const read_request *r)
{
    const tally_config *cfg = c->cfg;
    if (is_negative(r))
        return cfg->cache.ttl_negative_seconds;
    if (r->kind == READ_SERIES || r->kind == READ_LABELS || r->kind == READ_LABEL_VALUES ||
        r->kind == READ_METADATA)
        return cfg->cache.ttl_labels_seconds;
    int ttl = 0;
    const struct { metric_type t; int s; } classes[] = {
        {METRIC_COUNTER, cfg->cache.ttl_counter_seconds},
        {METRIC_GAUGE, cfg->cache.ttl_gauge_seconds},
        {METRIC_DISTRIBUTION, cfg->cache.ttl_distribution_seconds},
        {METRIC_SET, cfg->cache.ttl_set_seconds}};
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if ((r->saw & (1u << classes[i].t)) && (ttl == 0 || classes[i].s < ttl))
            ttl = classes[i].s;
    return ttl ? ttl : cfg->cache.ttl_counter_seconds;
}

static void on_populated(void *opaque, const redisReply *reply, const char *reason)
{
    query_cache *c = opaque;
    if (c->closing)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        cache_failed(c, reply ? reply->str : reason);
}

/*
 * THE writer of answers: every answer key is written here, with the TTL of
 * its class plus jitter, in the same SET. Value: "STATUS BODY".
 */
static void cache_populate(query_cache *c, const char *key, const read_request *r,
                           const char *body, size_t len)
{
    int ttl = ttl_of(c, r);
    int jitter = ttl * c->cfg->cache.ttl_jitter_percent / 100;
    if (jitter > 0)
        ttl += (int)(next_random(c) % (uint64_t)(jitter + 1));
    char *value = malloc(len + 8);
    if (!value)
        return;
    int head = snprintf(value, 8, "%03d %c ", r->status, is_negative(r) ? 'n' : 'p');
    memcpy(value + head, body, len);
    char ttl_text[16];
    int tl = snprintf(ttl_text, sizeof ttl_text, "%d", ttl);
    const char *argv[] = {"SET", key, value, "EX", ttl_text};
    size_t argvlen[] = {3, strlen(key), (size_t)head + len, 2, (size_t)tl};
    char err[256];
    if (redis_writer_command(c->redis, 5, argv, argvlen, on_populated, c, err, sizeof err) != 0)
        cache_failed(c, err);
    else
        c->stats.populates++;
    free(value);
}

/* ---- flights ----------------------------------------------------------------------- */

static void warm_pump(query_cache *c);

static void flight_free(flight *f)
{
    query_cache *c = f->c;
    for (flight **p = &c->flights; *p; p = &(*p)->next)
        if (*p == f) {
            *p = f->next;
            break;
        }
    if (f->poll_timer)
        event_free(f->poll_timer);
    while (f->waiters) { /* (answered ones are gone already; these answer nobody) */
        waiter *next = f->waiters->next;
        free(f->waiters);
        f->waiters = next;
    }
    read_request_clear(&f->read);
    free(f->answer_key);
    free(f->key_text);
    free(f);
}

static int cacheable(const read_request *r)
{
    return r->status == 200 || r->status == 404;
}

static void unlock(query_cache *c, const flight *f)
{
    char lock[READ_KEY_MAX];
    snprintf(lock, sizeof lock, "%s%s", CACHE_KEY_LOCK_PREFIX,
             f->answer_key + strlen(CACHE_KEY_ANSWER_PREFIX));
    const char *argv[] = {"DEL", lock};
    size_t argvlen[] = {3, strlen(lock)};
    char err[256];
    redis_writer_command(c->redis, 2, argv, argvlen, on_populated, c, err, sizeof err);
}

/* A reader thread finished the flight's read (on the loop). */
static void on_flight_done(query_job *job)
{
    flight *f = (flight *)job;
    query_cache *c = f->c;
    read_request *r = &f->read;
    size_t len = r->body ? evbuffer_get_length(r->body) : 0;
    const char *body = r->body ? (const char *)evbuffer_pullup(r->body, -1) : "";
    if (!r->body)
        r->status = 500;
    if (f->answer_key) {
        /* A populated answer keeps its lock until the lock expires: a miss
         * whose lookup crossed this populate then finds the lock taken and
         * reads the answer, instead of querying again. */
        if (cacheable(r) && cache_usable(c)) {
            cache_populate(c, f->answer_key, r, body ? body : "", len);
            hot_touch(c, f->hash, f->key_text);
        } else {
            unlock(c, f);
        }
    }
    c->inflight--;
    answer_all(f->waiters, r->status, body ? body : "", len,
               f->answer_key ? CACHE_MISS : CACHE_UNCACHED,
               f->answer_key ? CACHE_HIT : CACHE_UNCACHED);
    f->waiters = NULL;
    flight_free(f);
}

static void on_flight_run(query_job *job, query_source *src)
{
    query_exec_run(&((flight *)job)->read, src);
}

/* Hands the flight's read to a reader thread (503 when the queue is full). */
static void flight_query(flight *f)
{
    query_cache *c = f->c;
    f->job.run = on_flight_run;
    f->job.done = on_flight_done;
    if (query_pool_submit(c->pool, &f->job) == 0)
        return;
    static const char busy[] = "{\"status\":\"error\",\"errorType\":\"unavailable\",\"error\":"
                               "\"too many queries waiting (query.max_queued): retry later\"}\n";
    c->inflight--;
    answer_all(f->waiters, 503, busy, sizeof busy - 1, CACHE_UNCACHED, CACHE_UNCACHED);
    f->waiters = NULL;
    flight_free(f);
}

static flight *flight_new(query_cache *c, read_request *r, char *answer_key, char *key_text,
                          uint64_t hash, waiter *w)
{
    flight *f = calloc(1, sizeof *f);
    waiter *copy = malloc(sizeof *copy);
    if (!f || !copy) {
        free(f);
        free(copy);
        return NULL;
    }
    *copy = *w;
    copy->next = NULL;
    f->c = c;
    f->read = *r;
    memset(r, 0, sizeof *r);
    f->answer_key = answer_key;
    f->key_text = key_text;
    f->hash = hash;
    f->waiters = copy;
    c->inflight++;
    f->next = c->flights; /* (every flight, so that query_cache_free finds it) */
    c->flights = f;
    return f;
}

/* The uncached flight of the same read, if one is running. */
static flight *find_uncached(query_cache *c, const char *key_text)
{
    for (flight *f = c->flights; f && key_text; f = f->next)
        if (!f->answer_key && f->key_text && strcmp(f->key_text, key_text) == 0)
            return f;
    return NULL;
}

/* Runs a read on SQLite without the cache. Concurrent identical reads still
 * share one query (single flight needs no Redis within one process). */
static void run_uncached(query_cache *c, read_request *r, waiter *w)
{
    c->stats.uncached++;
    char *key_text = malloc(READ_KEY_MAX);
    if (key_text && read_request_key(r, key_text, READ_KEY_MAX) < 0) {
        free(key_text);
        key_text = NULL;
    }
    flight *same = find_uncached(c, key_text);
    waiter *copy = same ? malloc(sizeof *copy) : NULL;
    if (copy) {
        *copy = *w;
        copy->next = same->waiters;
        same->waiters = copy;
        c->stats.waits++;
        free(key_text);
        read_request_clear(r);
        return;
    }
    flight *f = flight_new(c, r, NULL, key_text, 0, w);
    if (!f) {
        free(key_text);
        read_request_clear(r);
        if (w->done)
            w->done(w->opaque, 500, NULL, CACHE_UNCACHED);
        return;
    }
    flight_query(f);
}

/* ---- another process holds the lock: re-read until its answer is there ---- */

static void on_remote_poll(evutil_socket_t fd, short what, void *arg);

static void schedule_poll(flight *f, int now)
{
    struct timeval tv = {0, now ? 0 : POLL_MS * 1000};
    if (!f->poll_timer)
        f->poll_timer = evtimer_new(f->c->base, on_remote_poll, f);
    if (!f->poll_timer || evtimer_add(f->poll_timer, &tv) != 0)
        flight_query(f);
}

static void on_remote_answer(void *opaque, const redisReply *reply, const char *reason)
{
    flight *f = opaque;
    query_cache *c = f->c;
    if (c->closing)
        return;
    if (reply && reply->type == REDIS_REPLY_STRING && reply->len > VALUE_HEAD) {
        c->inflight--;
        answer_all(f->waiters, atoi(reply->str), reply->str + VALUE_HEAD, reply->len - VALUE_HEAD,
                   CACHE_HIT, CACHE_HIT);
        f->waiters = NULL;
        flight_free(f);
        return;
    }
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        cache_failed(c, reply ? reply->str : reason);
    if (++f->remote_polls * POLL_MS >= c->cfg->cache.wait_ms || !cache_usable(c))
        flight_query(f); /* waited long enough: query ourselves */
    else
        schedule_poll(f, 0);
}

static void on_remote_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flight *f = arg;
    const char *argv[] = {"GET", f->answer_key};
    size_t argvlen[] = {3, strlen(f->answer_key)};
    char err[256];
    if (redis_writer_command(f->c->redis, 2, argv, argvlen, on_remote_answer, f, err,
                             sizeof err) != 0)
        flight_query(f);
}

static void on_lock(void *opaque, const redisReply *reply, const char *reason)
{
    flight *f = opaque;
    if (f->c->closing)
        return;
    if (f->refresh && (!reply || reply->type != REDIS_REPLY_STATUS)) {
        f->c->inflight--; /* someone else refreshes it (or the cache failed): drop ours */
        flight_free(f);
        return;
    }
    if (reply && reply->type == REDIS_REPLY_NIL && f->c->cfg->cache.wait_ms > 0) {
        f->c->stats.waits++;
        schedule_poll(f, 1); /* another reader has it (or has just answered it) */
        return;
    }
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        cache_failed(f->c, reply ? reply->str : reason);
    flight_query(f); /* ours (or the lock is unavailable: read anyway) */
}

static void take_lock(flight *f)
{
    query_cache *c = f->c;
    char lock[READ_KEY_MAX], ms[16], token[20];
    snprintf(lock, sizeof lock, "%s%s", CACHE_KEY_LOCK_PREFIX,
             f->answer_key + strlen(CACHE_KEY_ANSWER_PREFIX));
    int ml = snprintf(ms, sizeof ms, "%d", c->cfg->cache.lock_ms);
    int tl = snprintf(token, sizeof token, "%016llx", (unsigned long long)next_random(c));
    const char *argv[] = {"SET", lock, token, "NX", "PX", ms};
    size_t argvlen[] = {3, strlen(lock), (size_t)tl, 2, 2, (size_t)ml};
    char err[256];
    if (redis_writer_command(c->redis, 6, argv, argvlen, on_lock, f, err, sizeof err) != 0)
        flight_query(f);
}

/* ---- lookup ---------------------------------------------------------------------------- */

static flight *find_flight(query_cache *c, const char *answer_key)
{
    for (flight *f = c->flights; f; f = f->next)
        if (f->answer_key && strcmp(f->answer_key, answer_key) == 0)
            return f;
    return NULL;
}

static void lookup_free(lookup *l)
{
    read_request_clear(&l->read);
    free(l->key_text);
    free(l);
}

/* The hits of a hot key (0 when it is not tracked). */
static uint32_t hot_hits(const query_cache *c, uint64_t hash)
{
    for (size_t i = 0; i < c->hot_count; i++)
        if (c->hot[i].hash == hash)
            return c->hot[i].count;
    return 0;
}

/* Starts the background re-read of a hot answer about to expire: a flight
 * without waiters under the same key, elected by the same lock. */
static void refresh_early(lookup *l, const char *answer_key)
{
    query_cache *c = l->c;
    char *key = strdup(answer_key);
    char *key_text = l->key_text ? strdup(l->key_text) : NULL;
    waiter none = {NULL, NULL, NULL};
    flight *f = key && key_text ? flight_new(c, &l->read, key, key_text, l->hash, &none) : NULL;
    if (!f) {
        free(key);
        free(key_text);
        return;
    }
    f->refresh = 1;
    c->stats.refreshes++;
    take_lock(f);
}

/* Sends a stored answer ("SSS F body", from the cache or its local copy);
 * key_text (NULL: not counted) counts a hit of a hot key. */
static void answer_hit(query_cache *c, uint64_t hash, const char *key_text, const char *value,
                       size_t len, const waiter *w)
{
    if (value[4] == 'n')
        c->stats.negative_hits++;
    else
        c->stats.hits++;
    hot_touch(c, hash, key_text);
    answer_waiter(w, atoi(value), value + VALUE_HEAD, len - VALUE_HEAD, CACHE_HIT);
}

/* A hit in the cache Redis: answered, copied locally for what is left of its
 * TTL before the early-refresh window (so that window's hits reach Redis). */
static void on_hit(lookup *l, const redisReply *value, const redisReply *pttl)
{
    query_cache *c = l->c;
    answer_hit(c, l->hash, l->key_text, value->str, value->len, &l->w);
    if (!pttl || pttl->type != REDIS_REPLY_INTEGER || pttl->integer <= REFRESH_LEFT_MS)
        return;
    int64_t ttl_ms = pttl->integer - REFRESH_LEFT_MS;
    local_answers_put(c->local, l->local_stamp, l->hash, l->key_text, value->str, value->len,
                      ttl_ms);
    const char *raw = l->read.raw_key;
    if (raw)
        local_answers_put(c->local, l->local_stamp, hash_digest64(raw, strlen(raw)), raw,
                          value->str, value->len, ttl_ms);
}

static void on_miss(lookup *l, const char *answer_key)
{
    query_cache *c = l->c;
    flight *f = find_flight(c, answer_key);
    if (f) { /* single flight in this process: wait for its answer */
        waiter *w = malloc(sizeof *w);
        if (w) {
            *w = l->w;
            w->next = f->waiters;
            f->waiters = w;
            c->stats.waits++;
            return;
        }
    }
    char *key = strdup(answer_key);
    c->stats.misses++;
    f = key ? flight_new(c, &l->read, key, l->key_text, l->hash, &l->w) : NULL;
    if (!f) {
        free(key);
        run_uncached(c, &l->read, &l->w);
        return;
    }
    l->key_text = NULL; /* the flight owns it now */
    take_lock(f);
}

static void on_lookup(void *opaque, const redisReply *reply, const char *reason)
{
    lookup *l = opaque;
    query_cache *c = l->c;
    if (c->closing) {
        lookup_free(l);
        return;
    }
    c->inflight--;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING) {
        cache_failed(c, reply && reply->type == REDIS_REPLY_ERROR ? reply->str : reason);
        run_uncached(c, &l->read, &l->w);
    } else {
        cache_succeeded(c);
        const redisReply *value = reply->element[1];
        if (value->type == REDIS_REPLY_STRING && value->len > VALUE_HEAD) {
            const redisReply *pttl = reply->elements > 2 ? reply->element[2] : NULL;
            on_hit(l, value, pttl);
            if (pttl && pttl->type == REDIS_REPLY_INTEGER && pttl->integer >= 0 &&
                pttl->integer < REFRESH_LEFT_MS && hot_hits(c, l->hash) >= REFRESH_HOT_HITS &&
                !find_flight(c, reply->element[0]->str))
                refresh_early(l, reply->element[0]->str);
        } else {
            on_miss(l, reply->element[0]->str);
        }
    }
    lookup_free(l);
}

/* The version keys a read depends on (cache_keys.h); 0 when too many. */
typedef struct version_keys {
    char keys[VERSION_KEYS_MAX][KEY_MAX];
    size_t count;
    int overflow;
} version_keys;

static void add_key(version_keys *v, const char *key)
{
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->keys[i], key) == 0)
            return;
    if (v->count == VERSION_KEYS_MAX) {
        v->overflow = 1;
        return;
    }
    snprintf(v->keys[v->count++], KEY_MAX, "%s", key);
}

static void add_name(version_keys *v, const char *prom)
{
    char key[KEY_MAX], base[PROM_NAME_MAX + 8];
    if (strlen(prom) >= PROM_NAME_MAX + 8) {
        add_key(v, CACHE_KEY_CATALOG);
        return;
    }
    snprintf(key, sizeof key, "%s{%s}", CACHE_KEY_VERSION_PREFIX, prom);
    add_key(v, key);
    if (prom_name_strip_suffix(base, prom) != 0) { /* a distribution's _count, _sum, ... */
        snprintf(key, sizeof key, "%s{%s}", CACHE_KEY_VERSION_PREFIX, base);
        add_key(v, key);
    }
}

static int add_selector(void *ctx, const promql_matcher *m, size_t n)
{
    version_keys *v = ctx;
    for (size_t i = 0; i < n; i++)
        if (m[i].op == PROMQL_MATCH_EQ && strcmp(m[i].name, "__name__") == 0) {
            add_name(v, m[i].value);
            return 0;
        }
    add_key(v, CACHE_KEY_CATALOG); /* no one name: any commit may change it */
    return 0;
}

static void collect_versions(const read_request *r, version_keys *v)
{
    v->count = 0;
    v->overflow = 0;
    add_key(v, CACHE_KEY_GEN);
    if (r->kind == READ_QUERY || r->kind == READ_QUERY_RANGE) {
        promql_foreach_selector(r->expr, add_selector, v);
    } else if (r->kind == READ_NATIVE) {
        char prom[PROM_NAME_MAX];
        prom_name_from_statsd(prom, r->name, strlen(r->name));
        add_name(v, prom);
    } else {
        add_key(v, CACHE_KEY_CATALOG);
    }
}

static int send_lookup(query_cache *c, lookup *l, const version_keys *v)
{
    const char *argv[4 + VERSION_KEYS_MAX + 3];
    size_t argvlen[4 + VERSION_KEYS_MAX + 3];
    char nkeys[8], base[64], seed[24], ttl[16];
    int argc = 0;
    argv[argc] = "EVAL", argvlen[argc++] = 4;
    argv[argc] = LOOKUP_SCRIPT, argvlen[argc++] = sizeof LOOKUP_SCRIPT - 1;
    argvlen[argc] = (size_t)snprintf(nkeys, sizeof nkeys, "%zu", v->count), argv[argc++] = nkeys;
    for (size_t i = 0; i < v->count; i++)
        argv[argc] = v->keys[i], argvlen[argc++] = strlen(v->keys[i]);
    argvlen[argc] = (size_t)snprintf(base, sizeof base, "%s%016llx%08x", CACHE_KEY_ANSWER_PREFIX,
                                     (unsigned long long)l->hash,
                                     hash_fnv1a(HASH_FNV1A_INIT, l->key_text,
                                                strlen(l->key_text)));
    argv[argc++] = base;
    argvlen[argc] = (size_t)snprintf(seed, sizeof seed, "%016llx-",
                                     (unsigned long long)next_random(c));
    argv[argc++] = seed;
    argvlen[argc] = (size_t)snprintf(ttl, sizeof ttl, "%d", CACHE_VERSION_TTL_SECONDS);
    argv[argc++] = ttl;
    char err[256];
    return redis_writer_command(c->redis, argc, argv, argvlen, on_lookup, l, err, sizeof err);
}

static void cache_read(query_cache *c, read_request *r, waiter *w)
{
    if (!cache_usable(c)) {
        run_uncached(c, r, w);
        return;
    }
    char *key_text = malloc(READ_KEY_MAX);
    if (!key_text || read_request_key(r, key_text, READ_KEY_MAX) < 0) {
        free(key_text);
        run_uncached(c, r, w);
        return;
    }
    uint64_t hash = hash_digest64(key_text, strlen(key_text));
    const char *value;
    size_t len;
    if (local_answers_get(c->local, hash, key_text, &value, &len)) {
        read_request_clear(r); /* first: `done` may free what holds *r */
        answer_hit(c, hash, key_text, value, len, w);
        free(key_text);
        return;
    }
    lookup *l = calloc(1, sizeof *l);
    version_keys *v = malloc(sizeof *v);
    if (!l || !v) {
        free(key_text);
        free(l);
        free(v);
        run_uncached(c, r, w);
        return;
    }
    collect_versions(r, v);
    if (v->overflow) {
        free(key_text);
        free(l);
        free(v);
        run_uncached(c, r, w);
        return;
    }
    l->c = c;
    l->read = *r;
    memset(r, 0, sizeof *r);
    l->key_text = key_text;
    l->hash = hash;
    l->local_stamp = local_answers_stamp(c->local);
    l->w = *w;
    int rc = send_lookup(c, l, v);
    free(v);
    if (rc != 0) {
        cache_failed(c, "cannot send the lookup");
        run_uncached(c, &l->read, &l->w);
        lookup_free(l);
        return;
    }
    c->inflight++;
}

void query_cache_read(query_cache *c, read_request *r, cache_answer_fn done, void *opaque)
{
    waiter w = {done, opaque, NULL};
    cache_read(c, r, &w);
}

int query_cache_read_raw(query_cache *c, const char *raw_key, cache_answer_fn done, void *opaque)
{
    const char *value;
    size_t len;
    if (!c->local || !cache_usable(c) ||
        !local_answers_get(c->local, hash_digest64(raw_key, strlen(raw_key)), raw_key, &value,
                           &len))
        return 0;
    /* no key text: popularity is counted by the hits that reach the cache
     * Redis (every answer's last REFRESH_LEFT_MS go there), not by these */
    waiter w = {done, opaque, NULL};
    answer_hit(c, 0, NULL, value, len, &w);
    return 1;
}

/* ---- warming -------------------------------------------------------------------------- */

static void on_warmed(void *opaque, int status, struct evbuffer *body, cache_state state)
{
    (void)status;
    (void)body;
    (void)state;
    query_cache *c = opaque;
    c->warming--;
    c->stats.warmed++;
    warm_pump(c);
}

/* Starts warm reads, WARM_PARALLEL at a time, until the queue is empty. */
static void warm_pump(query_cache *c)
{
    while (c->warming < WARM_PARALLEL && c->warm_next < c->warm_len) {
        char *key_text = c->warm_queue[c->warm_next++];
        read_request r;
        char err[256];
        int ok = read_request_from_key(key_text, &r, err, sizeof err) == 0;
        free(key_text);
        if (!ok)
            continue;
        r.limits.lookback_ms = (int64_t)c->cfg->query.lookback_seconds * 1000;
        r.limits.max_samples = (size_t)c->cfg->query.max_samples;
        c->warming++;
        waiter w = {on_warmed, c, NULL};
        cache_read(c, &r, &w);
    }
    if (c->warm_next == c->warm_len && c->warm_queue) {
        free(c->warm_queue);
        c->warm_queue = NULL;
        c->warm_len = c->warm_next = 0;
    }
}

static int hotter(const void *x, const void *y)
{
    const hot_entry *a = x, *b = y;
    return (a->count < b->count) - (a->count > b->count);
}

static void start_warming(query_cache *c)
{
    if (c->warm_queue || c->hot_count == 0)
        return;
    qsort(c->hot, c->hot_count, sizeof *c->hot, hotter);
    c->warm_queue = calloc(c->hot_count, sizeof *c->warm_queue);
    if (!c->warm_queue)
        return;
    for (size_t i = 0; i < c->hot_count; i++)
        if ((c->warm_queue[c->warm_len] = strdup(c->hot[i].key_text)) != NULL)
            c->warm_len++;
    log_info("cache redis came back empty: warming the %zu hottest answers", c->warm_len);
    warm_pump(c);
}

static void on_epoch(void *opaque, const redisReply *reply, const char *reason)
{
    query_cache *c = opaque;
    if (c->closing)
        return;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        cache_failed(c, reply ? reply->str : reason);
        return;
    }
    if (reply->type == REDIS_REPLY_STATUS) /* SET NX took: the epoch was gone */
        start_warming(c);
}

static void on_epoch_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    query_cache *c = arg;
    if (!cache_usable(c))
        return;
    char ttl[16];
    int tl = snprintf(ttl, sizeof ttl, "%d", CACHE_VERSION_TTL_SECONDS);
    const char *argv[] = {"SET", CACHE_KEY_EPOCH, "1", "NX", "EX", ttl};
    size_t argvlen[] = {3, strlen(CACHE_KEY_EPOCH), 1, 2, 2, (size_t)tl};
    char err[256];
    redis_writer_command(c->redis, 6, argv, argvlen, on_epoch, c, err, sizeof err);
}

/* ---- life ------------------------------------------------------------------------------ */

query_cache *query_cache_new(struct event_base *base, const tally_config *cfg, query_pool *pool,
                             char *err, size_t errlen)
{
    query_cache *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "query cache: out of memory");
        return NULL;
    }
    c->base = base;
    c->cfg = cfg;
    c->pool = pool;
    c->hot_decayed = time(NULL);
    if (getrandom(&c->rng, sizeof c->rng, 0) != (ssize_t)sizeof c->rng || c->rng == 0)
        c->rng = (uint64_t)time(NULL) | 1;
    if (!cfg->cache.enabled)
        return c;
    c->hot = calloc((size_t)cfg->cache.warm_keys + 1, sizeof *c->hot);
    c->redis = redis_writer_new_cache(base, cfg, err, errlen);
    c->local = c->redis ? local_answers_new(base, cfg, c->redis, err, errlen) : NULL;
    c->epoch_timer = event_new(base, -1, EV_PERSIST, on_epoch_timer, c);
    struct timeval tv = {EPOCH_CHECK_MS / 1000, (EPOCH_CHECK_MS % 1000) * 1000};
    if (!c->hot || !c->redis || !c->local || !c->epoch_timer ||
        event_add(c->epoch_timer, &tv) != 0) {
        if (c->redis && c->local)
            snprintf(err, errlen, "query cache: out of memory");
        query_cache_free(c);
        return NULL;
    }
    return c;
}

void query_cache_stats_get(const query_cache *c, cache_stats *out)
{
    *out = c->stats;
    out->sqlite_queries = query_pool_runs(c->pool);
    out->breaker_open = clock_mono_ms() < c->open_until_ms;
    out->up = c->redis && redis_writer_is_up(c->redis, NULL);
    if (c->local) {
        local_answers_stats ls;
        local_answers_stats_get(c->local, &ls);
        out->local_hits = ls.hits;
        out->local_invalidations = ls.invalidations;
        out->local_active = ls.active;
    }
}

void query_cache_metrics(const query_cache *c, prom_text *t)
{
    cache_stats st;
    query_cache_stats_get(c, &st);
    const struct {
        const char *name, *help;
        uint64_t value;
    } counters[] = {
        {"tally_reads_cache_hits_total", "Reads answered from the cache (either copy).", st.hits},
        {"tally_reads_cache_local_hits_total", "Of those, answered by the in-process copy.",
         st.local_hits},
        {"tally_reads_cache_negative_hits_total", "Reads answered by a cached \"no such metric\".",
         st.negative_hits},
        {"tally_reads_cache_misses_total", "Reads the cache did not hold.", st.misses},
        {"tally_reads_single_flight_waits_total",
         "Misses that waited for another's query instead of their own.", st.waits},
        {"tally_reads_uncached_total", "Reads answered from SQLite with the cache away.",
         st.uncached},
        {"tally_reads_cache_populates_total", "Answers written to the cache.", st.populates},
        {"tally_reads_cache_warmed_total", "Hot answers re-read after the cache came back empty.",
         st.warmed},
        {"tally_reads_cache_early_refreshes_total", "Hot answers re-read before they expired.",
         st.refreshes},
        {"tally_reads_cache_local_invalidations_total",
         "Invalidation messages that emptied the in-process copy.", st.local_invalidations},
        {"tally_reads_sqlite_queries_total", "Reads run against SQLite.", st.sqlite_queries},
    };
    for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++)
        prom_text_single(t, counters[i].name, "counter", counters[i].help,
                         (double)counters[i].value);
    prom_text_single(t, "tally_reads_cache_up", "gauge",
                     "1 while the cache Redis is connected and accepted.", st.up);
    prom_text_single(t, "tally_reads_cache_breaker_open", "gauge",
                     "1 while the cache's circuit breaker sends reads to SQLite.",
                     st.breaker_open);
}

redis_writer *query_cache_redis(const query_cache *c)
{
    return c->redis;
}

size_t query_cache_inflight(const query_cache *c)
{
    return c->inflight;
}

void query_cache_free(query_cache *c)
{
    if (!c)
        return;
    if (c->epoch_timer)
        event_free(c->epoch_timer);
    c->closing = 1;
    redis_writer_free(c->redis); /* (pending calls come back and answer nobody) */
    local_answers_free(c->local);
    while (c->flights)
        flight_free(c->flights);
    for (size_t i = 0; i < c->hot_count; i++)
        free(c->hot[i].key_text);
    free(c->hot);
    for (size_t i = c->warm_next; i < c->warm_len; i++)
        free(c->warm_queue[i]);
    free(c->warm_queue);
    free(c);
}
