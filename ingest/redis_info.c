/*
 * redis_info.c — see redis_info.h.
 */
#include "redis_info.h"

#include <stdlib.h>
#include <string.h>

typedef struct info_call {
    redis_info *info;
    redis_info_fn done;
    void *opaque;
} info_call;

/* The number after "\r\nKEY:" (or at the start) in INFO's text; 0 if absent. */
static double field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; (p = strstr(p, key)) != NULL; p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ':')
            return strtod(p + n + 1, NULL);
    return 0;
}

static void on_info(void *opaque, const redisReply *reply, const char *reason)
{
    (void)reason;
    info_call *call = opaque;
    redis_info *i = call->info;
    if (reply && reply->type == REDIS_REPLY_STRING) {
        const char *s = reply->str;
        i->up = 1;
        i->used_memory = field(s, "used_memory");
        i->maxmemory = field(s, "maxmemory");
        i->evicted_keys = field(s, "evicted_keys");
        i->connected_clients = field(s, "connected_clients");
        i->keyspace_hits = field(s, "keyspace_hits");
        i->keyspace_misses = field(s, "keyspace_misses");
    }
    call->done(call->opaque, i);
    free(call);
}

void redis_info_read(redis_writer *w, redis_info *info, redis_info_fn done, void *opaque)
{
    info->up = 0;
    info_call *call = w ? malloc(sizeof *call) : NULL;
    if (!call) {
        done(opaque, info);
        return;
    }
    *call = (info_call){info, done, opaque};
    const char *argv[] = {"INFO"};
    size_t argvlen[] = {4};
    char err[128];
    if (redis_writer_command(w, 1, argv, argvlen, on_info, call, err, sizeof err) != 0) {
        free(call);
        done(opaque, info);
    }
}

void redis_info_metrics(prom_text *t, const redis_info *const *infos, size_t n)
{
    static const struct {
        const char *name, *type, *help;
        size_t offset;
    } families[] = {
        {"tally_redis_up", "gauge", "1 when this Redis answered INFO for this scrape.", 0},
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
        for (size_t i = 0; i < n; i++) {
            if (f > 0 && !infos[i]->up)
                continue;
            const char *labels[] = {"instance", infos[i]->instance, NULL};
            double v = f == 0 ? infos[i]->up
                              : *(const double *)((const char *)infos[i] + families[f].offset);
            prom_text_sample(t, families[f].name, labels, v);
        }
    }
}
