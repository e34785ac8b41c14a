/*
 * redis_keys.c — see redis_keys.h. Plain formatting; kept in one place so the
 * writer, the readers and the rebuild agree on every name.
 */
#include "redis_keys.h"

#include <stdio.h>

int redis_key_metric(char *buf, size_t buflen, const char *name, size_t name_len,
                     const char *suffix)
{
    int n = snprintf(buf, buflen, "tally:{%.*s}:%s", (int)name_len, name, suffix);
    return (n < 0 || (size_t)n >= buflen) ? -1 : n;
}

int redis_key_batch(char *buf, size_t buflen, const char *batch_id, size_t batch_id_len)
{
    int n = snprintf(buf, buflen, "tally:batch:{%.*s}", (int)batch_id_len, batch_id);
    return (n < 0 || (size_t)n >= buflen) ? -1 : n;
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

int redis_key_set(char *buf, size_t buflen, const char *name, size_t name_len, const char *tags,
                  size_t tags_len)
{
    int n = snprintf(buf, buflen, "tally:{%.*s}:" REDIS_KEY_SET_SUFFIX ":%.*s", (int)name_len, name,
                     (int)tags_len, tags);
    return (n < 0 || (size_t)n >= buflen) ? -1 : n;
}
