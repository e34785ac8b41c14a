/*
 * kafka_conf.h — what both processes do the same way with librdkafka's
 * configuration: set a property with an error message the caller can show,
 * apply the operator's security settings (kafka.client_properties), and
 * route librdkafka's own log lines into Tally's log.
 */
#ifndef TALLY_KAFKA_CONF_H
#define TALLY_KAFKA_CONF_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* Sets key=value on conf. Returns 0, or -1 with err = "kafka config KEY=VALUE: why". */
int kafka_conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err,
                   size_t errlen);

/*
 * Applies the security settings file `path` (kafka.client_properties; ""
 * applies nothing) to conf: the file must be private (secret_file.h) and
 * hold only security.protocol, sasl.* and ssl.* keys (client_properties.h).
 * Call it on every rd_kafka_conf_t Tally builds, before rd_kafka_new().
 * Returns 0, or -1 with err = "kafka.client_properties: PATH[:LINE: KEY]: why",
 * why being librdkafka's own message for a value it refuses; conf may then
 * hold some of the file's settings and is the caller's to destroy.
 */
int kafka_conf_apply_client_properties(rd_kafka_conf_t *conf, const char *path, char *err,
                                       size_t errlen);

/* A log callback (rd_kafka_conf_set_log_cb) mapping syslog levels onto
 * log.h's: 0..3 error, 4 warn, 5..6 info, 7 debug. */
void kafka_log_to_tally(const rd_kafka_t *rk, int level, const char *facility, const char *buf);

#endif
