/*
 * redis_info.c — see redis_info.h.
 */
#include "redis_info.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define INSTANCES 2 /* state, cache */

/* One INFO in flight; poller = NULL once the poller is gone. */
typedef struct info_call {
    redis_info_poller *poller;
    size_t index;
} info_call;

struct redis_info_poller {
    struct event *timer;
    redis_writer *writers[INSTANCES];
    redis_info last[INSTANCES];      /* what scrapes read */
    info_call *pending[INSTANCES];
    size_t n;
};

/* The number after "\r\nKEY:" (or at the start) in INFO's text; 0 if absent. */
static double field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; (p = strstr(p, key)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ':')
            return strtod(p + n + 1, NULL);
    return 0;
}

static void fill(redis_info *i, const redisReply *reply)
{
    i->up = reply && reply->type == REDIS_REPLY_STRING;
    if (!i->up)
        return;
    const char *s = reply->str;
    i->used_memory = field(s, "used_memory");
    i->maxmemory = field(s, "maxmemory");
    i->evicted_keys = field(s, "evicted_keys");
    i->connected_clients = field(s, "connected_clients");
    i->keyspace_hits = field(s, "keyspace_hits");
    i->keyspace_misses = field(s, "keyspace_misses");
}

static void on_info(void *opaque, const redisReply *reply, const char *reason)
{
    (void)reason;
    info_call *call = opaque;
    redis_info_poller *p = call->poller;
    if (p) {
        fill(&p->last[call->index], reply);
        p->pending[call->index] = NULL;
    }
    free(call);
}

static void poll_one(redis_info_poller *p, size_t i)
{
    if (p->pending[i])
        return; /* the last INFO is still queued: its answer comes first */
    info_call *call = malloc(sizeof *call);
    if (!call) {
        p->last[i].up = 0;
        return;
    }
    *call = (info_call){p, i};
    p->pending[i] = call;
    const char *argv[] = {"INFO"};
    size_t argvlen[] = {4};
    char err[128];
    if (redis_writer_command(p->writers[i], 1, argv, argvlen, on_info, call, err, sizeof err) != 0) {
        p->pending[i] = NULL;
        p->last[i].up = 0;
        free(call);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_info_poller *p = arg;
    for (size_t i = 0; i < p->n; i++)
        poll_one(p, i);
}

redis_info_poller *redis_info_poller_new(struct event_base *base, redis_writer *state,
                                         redis_writer *cache)
{
    redis_info_poller *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->writers[0] = state;
    p->last[0].instance = "state";
    p->writers[1] = cache;
    p->last[1].instance = "cache";
    p->n = cache ? 2 : 1;
    struct timeval every_second = {1, 0};
    p->timer = event_new(base, -1, EV_PERSIST, on_tick, p);
    if (!p->timer || event_add(p->timer, &every_second) != 0) {
        redis_info_poller_free(p);
        return NULL;
    }
    on_tick(-1, 0, p);
    return p;
}

void redis_info_poller_free(redis_info_poller *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < INSTANCES; i++)
        if (p->pending[i])
            p->pending[i]->poller = NULL; /* (freed by its callback) */
    if (p->timer)
        event_free(p->timer);
    free(p);
}

void redis_info_metrics(const redis_info_poller *p, prom_text *t)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } families[] = {
        {"tally_redis_up", "gauge", "1 when this Redis answered the last INFO (sent every second).", 0},
        {"tally_redis_used_memory_bytes", "gauge", "Redis used_memory.",
         offsetof(redis_info, used_memory)},
        {"tally_redis_maxmemory_bytes", "gauge", "Redis maxmemory (0: no limit).",
         offsetof(redis_info, maxmemory)},
        {"tally_redis_evicted_keys_total", "counter", "Keys Redis evicted (the cache only, by design).",
         offsetof(redis_info, evicted_keys)},
        {"tally_redis_connected_clients", "gauge", "Clients connected to Redis.",
         offsetof(redis_info, connected_clients)},
        {"tally_redis_keyspace_hits_total", "counter", "Redis keyspace hits.",
         offsetof(redis_info, keyspace_hits)},
        {"tally_redis_keyspace_misses_total", "counter", "Redis keyspace misses.",
         offsetof(redis_info, keyspace_misses)},
    };
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        prom_text_family(t, families[f].name, families[f].type, families[f].help);
        for (size_t i = 0; i < p->n; i++) {
            const redis_info *info = &p->last[i];
            if (f > 0 && !info->up)
                continue;
            const char *labels[] = {"instance", info->instance, NULL};
            double v = f == 0 ? info->up
                              : *(const double *)((const char *)info + families[f].offset);
            prom_text_sample(t, families[f].name, labels, v);
        }
    }
}
