/*
 * kafka_conf.c — see kafka_conf.h.
 *
 * Messages about the client properties file never quote a value: the file
 * holds passwords. librdkafka's own refusal is quoted as it is; it names the
 * value only for enumerations such as security.protocol, never for the
 * free-form strings that passwords are.
 */
#include "kafka_conf.h"

#include <stdio.h>

#include "client_properties.h"
#include "log.h"
#include "secret_file.h"

/* A properties file may not be larger (PEM certificates inline are ~2 KiB each). */
#define CLIENT_PROPERTIES_MAX (1024 * 1024)

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

static int set_client_property(void *opaque, const char *key, const char *value, int line,
                               char *why, size_t whylen)
{
    (void)line;
    return rd_kafka_conf_set(opaque, key, value, why, whylen) == RD_KAFKA_CONF_OK ? 0 : -1;
}

int kafka_conf_apply_client_properties(rd_kafka_conf_t *conf, const char *path, char *err,
                                       size_t errlen)
{
    if (!path[0])
        return 0;
    char *text = NULL;
    size_t len = 0;
    char why[1024];
    if (secret_file_read(path, CLIENT_PROPERTIES_MAX, &text, &len, why, sizeof why) != 0) {
        snprintf(err, errlen, "kafka.client_properties: %s", why);
        return -1;
    }
    int n = client_properties_parse(text, len, path, set_client_property, conf, why, sizeof why);
    secret_file_wipe(text, len);
    if (n < 0) {
        snprintf(err, errlen, "kafka.client_properties: %s", why);
        return -1;
    }
    log_info("kafka: %d setting%s applied from %s", n, n == 1 ? "" : "s", path);
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
