/*
 * redis_keys.c — see redis_keys.h. Plain formatting; kept in one place so the
 * writer, the readers and the rebuild agree on every name.
 */
#include "redis_keys.h"

#include <stdio.h>

#include "redis_slots.h"

static int written(int n, size_t buflen)
{
    return (n < 0 || (size_t)n >= buflen) ? -1 : n;
}

unsigned redis_shard_of(const char *text, size_t len, unsigned shards)
{
    return shards > 1 ? redis_crc16(text, len) % shards : 0;
}

unsigned redis_shard_slot(unsigned shard)
{
    char tag[16];
    int n = snprintf(tag, sizeof tag, "%u", shard);
    return redis_crc16(tag, (size_t)n) % REDIS_SLOTS;
}

int redis_key_metric(char *buf, size_t buflen, unsigned shard, const char *name,
                     size_t name_len, const char *suffix)
{
    return written(snprintf(buf, buflen, "tally:{%u}:%.*s:%s", shard, (int)name_len, name, suffix),
                   buflen);
}

int redis_key_batch(char *buf, size_t buflen, unsigned shard, const char *batch_id,
                    size_t batch_id_len)
{
    return written(snprintf(buf, buflen, "tally:{%u}:batch:%.*s", shard, (int)batch_id_len, batch_id),
                   buflen);
}

int redis_key_claim(char *buf, size_t buflen, unsigned shards, const char *batch_id,
                    size_t batch_id_len)
{
    return written(snprintf(buf, buflen, "tally:{%u}:claim:%.*s",
                            redis_shard_of(batch_id, batch_id_len, shards), (int)batch_id_len,
                            batch_id),
                   buflen);
}

int redis_key_shard(char *buf, size_t buflen, unsigned shard, const char *what)
{
    return written(snprintf(buf, buflen, "tally:{%u}:%s", shard, what), buflen);
}

const char *redis_key_value_suffix(metric_type type)
{
    switch (type) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_DISTRIBUTION: return "dist:count";
    case METRIC_SET: return REDIS_KEY_SET_SUFFIX;
    }
    return "counter";
}

int redis_key_set(char *buf, size_t buflen, unsigned shard, const char *name, size_t name_len,
                  const char *tags, size_t tags_len)
{
    return written(snprintf(buf, buflen, "tally:{%u}:%.*s:" REDIS_KEY_SET_SUFFIX ":%.*s", shard,
                            (int)name_len, name, (int)tags_len, tags),
                   buflen);
}
