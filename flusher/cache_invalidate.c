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

struct cache_invalidator {
    char host[CONFIG_STR_MAX];
    int port;
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

static int connect_cache(cache_invalidator *c)
{
    if (c->rc)
        return 0;
    struct timeval tv = {c->timeout_ms / 1000, (c->timeout_ms % 1000) * 1000};
    c->rc = redisConnectWithTimeout(c->host, c->port, tv);
    if (!c->rc || c->rc->err || redisSetTimeout(c->rc, tv) != REDIS_OK) {
        fail(c, c->rc && c->rc->err ? c->rc->errstr : "cannot connect");
        return -1;
    }
    return 0;
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

void cache_invalidate(cache_invalidator *c, const aggregate *a)
{
    if (!c || connect_cache(c) != 0)
        return;
    long sent = append_names(c, a);
    int owed = c->owed;
    if (sent < 0 || append_bump(c, CACHE_KEY_CATALOG, strlen(CACHE_KEY_CATALOG)) != 0 ||
        (owed && append_bump(c, CACHE_KEY_GEN, strlen(CACHE_KEY_GEN)) != 0)) {
        fail(c, "cannot send the invalidation");
        return;
    }
    sent += 1 + owed;
    for (long i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c->rc, (void **)&r) != REDIS_OK || !r) {
            fail(c, c->rc->errstr[0] ? c->rc->errstr : "no reply");
            return;
        }
        int refused = r->type == REDIS_REPLY_ERROR;
        if (refused) {
            char why[200];
            snprintf(why, sizeof why, "refused the invalidation: %.150s", r->str);
            freeReplyObject(r);
            fail(c, why);
            return;
        }
        freeReplyObject(r);
    }
    c->owed = 0;
    c->invalidations += (uint64_t)sent;
}

void cache_invalidate_all(cache_invalidator *c)
{
    if (!c)
        return;
    c->owed = 1; /* replaced now, or by the next call that reaches the cache */
    cache_invalidate(c, NULL);
}
