/*
 * kafka_conf.c — see kafka_conf.h.
 */
#include "kafka_conf.h"

#include <stdio.h>

#include "log.h"

int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                   size_t errlen)
{
    char why[512];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "kafka config %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

void kafka_log_to_tally(const rd_kafka_t *rk, int level, const char *facility, const char *buf)
{
    (void)rk;
    log_level lv = level <= 3   ? LOG_LEVEL_ERROR
                   : level == 4 ? LOG_LEVEL_WARN
                   : level <= 6 ? LOG_LEVEL_INFO
                                : LOG_LEVEL_DEBUG;
    log_msg(lv, "librdkafka %s: %s", facility, buf);
}
