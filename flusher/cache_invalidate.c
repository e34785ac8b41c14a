/*
 * cache_invalidate.c — see cache_invalidate.h. Versions are 64 random bits
 * in hex (cache_keys.h says why never a counter).
 */
#include "cache_invalidate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache_keys.h"
#include "log.h"
#include "prom_name.h"
#include "redis_slots.h"

struct cache_invalidator {
    char host[CONFIG_STR_MAX]; /* the cache; on a cluster, the master of its slot known last */
    int port;
    int cluster;               /* cache.cluster: seed_host:seed_port is a seed */
    char seed_host[CONFIG_STR_MAX];
    int seed_port;
    int timeout_ms;
    redisContext *rc;
    int owed;            /* a commit was not invalidated: replace the generation */
    time_t last_log;
    uint64_t invalidations;
};

cache_invalidator *cache_invalidator_new(const tally_config *cfg)
{
    if (!cfg->cache.enabled)
        return NULL;
    cache_invalidator *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    snprintf(c->host, sizeof c->host, "%s", cfg->cache.host);
    c->port = cfg->cache.port;
    c->cluster = cfg->cache.cluster;
    snprintf(c->seed_host, sizeof c->seed_host, "%s", cfg->cache.host);
    c->seed_port = cfg->cache.port;
    c->timeout_ms = cfg->cache.timeout_ms;
    /* A flusher that starts has no idea what was committed before it, by
     * whom, and whether that was invalidated: start owing. */
    c->owed = 1;
    return c;
}

void cache_invalidator_free(cache_invalidator *c)
{
    if (!c)
        return;
    if (c->rc)
        redisFree(c->rc);
    free(c);
}

uint64_t cache_invalidations(const cache_invalidator *c)
{
    return c ? c->invalidations : 0;
}

static void random_version(char out[17])
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint64_t)time(NULL) * 6364136223846793005ull ^ (uint64_t)clock();
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

static void fail(cache_invalidator *c, const char *why)
{
    c->owed = 1;
    time_t now = time(NULL);
    if (now != c->last_log) {
        log_warn("cache redis %s:%d: %s; cached answers are invalidated once it is back "
                 "(until then they live at most their TTL)", c->host, c->port, why);
        c->last_log = now;
    }
    if (c->rc) {
        redisFree(c->rc);
        c->rc = NULL;
    }
}

static int connect_to(cache_invalidator *c, const char *host, int port)
{
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    if (host != c->host)
        snprintf(c->host, sizeof c->host, "%s", host);
    c->port = port;
    c->rc = redisConnectWithTimeout(c->host, c->port, tv);
    if (!c->rc || c->rc->err || redisSetTimeout(c->rc, tv) != REDIS_OK) {
        fail(c, c->rc && c->rc->err ? c->rc->errstr : "cannot connect");
        return -1;
    }
    return 0;
}

static unsigned cache_slot(void)
{
    return redis_slot(CACHE_KEY_GEN, strlen(CACHE_KEY_GEN));
}

/* On a cache cluster: asks the connected node (CLUSTER SLOTS) which master
 * serves the cache's slot, and connects there if it is another one. */
static int follow_cache_slot(cache_invalidator *c)
{
    redisReply *r = redisCommand(c->rc, "CLUSTER SLOTS");
    redis_slot_map map;
    char why[256] = "no reply to CLUSTER SLOTS";
    int owner = -1;
    redis_slot_map_init(&map);
    if (r)
        owner = redis_slot_owner_from_reply(&map, r, c->host, cache_slot(), why, sizeof why);
    if (r)
        freeReplyObject(r);
    int rc = -1;
    if (owner < 0) {
        fail(c, why);
    } else if (map.nodes[owner].port == c->port && strcmp(map.nodes[owner].host, c->host) == 0) {
        rc = 0;
    } else {
        char host[sizeof c->host];
        snprintf(host, sizeof host, "%s", map.nodes[owner].host);
        int port = map.nodes[owner].port;
        redisFree(c->rc);
        c->rc = NULL;
        rc = connect_to(c, host, port);
    }
    redis_slot_map_free(&map);
    return rc;
}

/* Connects (once per failure): one server; or, on a cluster, the master
 * known last, else the seed, then the master of the cache's slot. */
static int connect_cache(cache_invalidator *c)
{
    if (c->rc)
        return 0;
    if (!c->cluster)
        return connect_to(c, c->host, c->port);
    int at_seed = c->port == c->seed_port && strcmp(c->host, c->seed_host) == 0;
    if (connect_to(c, c->host, c->port) != 0 &&
        (at_seed || connect_to(c, c->seed_host, c->seed_port) != 0))
        return -1;
    return follow_cache_slot(c);
}

/* Appends SET KEY RANDOM EX ttl. */
static int append_bump(cache_invalidator *c, const char *key, size_t key_len)
{
    char version[17];
    random_version(version);
    char ttl[16];
    int tl = snprintf(ttl, sizeof ttl, "%d", CACHE_VERSION_TTL_SECONDS);
    const char *argv[] = {"SET", key, version, "EX", ttl};
    size_t argvlen[] = {3, key_len, 16, 2, (size_t)tl};
    return redisAppendCommandArgv(c->rc, 5, argv, argvlen) == REDIS_OK ? 0 : -1;
}

/* Appends one bump per distinct Prometheus name of `a`, in first-seen order
 * (a name repeated by consecutive series is bumped once). Returns the count. */
static long append_names(cache_invalidator *c, const aggregate *a)
{
    long sent = 0;
    char last[PROM_NAME_MAX] = "";
    for (size_t i = 0; a && i < aggregate_series_count(a); i++) {
        const agg_series *se = aggregate_series_at(a, i);
        char prom[PROM_NAME_MAX], key[PROM_NAME_MAX + 32];
        prom_name_from_statsd(prom, se->name, se->name_len);
        if (strcmp(prom, last) == 0)
            continue;
        memcpy(last, prom, sizeof last);
        int kl = snprintf(key, sizeof key, "%s{%s}", CACHE_KEY_VERSION_PREFIX, prom);
        if (append_bump(c, key, (size_t)kl) != 0)
            return -1;
        sent++;
    }
    return sent;
}

/* Sends one commit's invalidation: 0 done, -1 failed (logged, owed), 1 the
 * cache's slot moved (MOVED: c->host:port is its new master, not connected). */
static int send_invalidation(cache_invalidator *c, const aggregate *a)
{
    if (connect_cache(c) != 0)
        return -1;
    long sent = append_names(c, a);
    int owed = c->owed;
    if (sent < 0 || append_bump(c, CACHE_KEY_CATALOG, strlen(CACHE_KEY_CATALOG)) != 0 ||
        (owed && append_bump(c, CACHE_KEY_GEN, strlen(CACHE_KEY_GEN)) != 0)) {
        fail(c, "cannot send the invalidation");
        return -1;
    }
    sent += 1 + owed;
    char why[200] = "";
    redis_redirect moved = {.kind = REDIS_REDIRECT_NONE};
    for (long i = 0; i < sent; i++) { /* (every reply is read, so the connection stays in step) */
        redisReply *r = NULL;
        if (redisGetReply(c->rc, (void **)&r) != REDIS_OK || !r) {
            fail(c, c->rc->errstr[0] ? c->rc->errstr : "no reply");
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR && !why[0]) {
            snprintf(why, sizeof why, "refused the invalidation: %.150s", r->str);
            if (c->cluster)
                redis_redirect_parse(r->str, r->len, &moved);
        }
        freeReplyObject(r);
    }
    if (moved.kind == REDIS_REDIRECT_MOVED) {
        char host[sizeof c->host];
        snprintf(host, sizeof host, "%s", redis_redirect_host(&moved, c->host));
        redisFree(c->rc);
        c->rc = NULL;
        snprintf(c->host, sizeof c->host, "%s", host);
        c->port = moved.port;
        return 1;
    }
    if (why[0]) {
        fail(c, why);
        return -1;
    }
    c->owed = 0;
    c->invalidations += (uint64_t)sent;
    return 0;
}

void cache_invalidate(cache_invalidator *c, const aggregate *a)
{
    if (!c)
        return;
    /* (a move is followed at once, so the commit's answers go now) */
    if (send_invalidation(c, a) == 1 && send_invalidation(c, a) == 1)
        fail(c, "the cache's slot moved twice in a row");
}

void cache_invalidate_all(cache_invalidator *c)
{
    if (!c)
        return;
    c->owed = 1; /* replaced now, or by the next call that reaches the cache */
    cache_invalidate(c, NULL);
}
