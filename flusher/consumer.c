/*
 * consumer.c — librdkafka consumer, in a group or assigned by hand (see
 * consumer.h).
 *
 * In a group (consumer_subscribe) the assignor is eager ("range"): at every
 * rebalance each member first gives back all its partitions (the revoke
 * callback, where the flusher commits) before any member is given new ones
 * (the assign callback, where it claims them in SQLite and reads their
 * offsets). So in a normal rebalance a partition's old owner has committed
 * before its new owner reads where to start. Static membership
 * (group.instance.id) lets a restarted flusher take its partitions back at
 * once instead of waiting out the session timeout of its dead self. The
 * rebuild assigns by hand (consumer_assign) and never joins the group. The
 * main queue is forwarded to the consumer queue
 * (rd_kafka_poll_set_consumer), so client errors come out of consumer_poll()
 * as error messages where the caller decides what is fatal, and librdkafka's
 * own log lines go through Tally's logger.
 */
#include "consumer.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

#include "kafka_conf.h"
#include "kafka_topic.h"
#include "log.h"

#define CONSUMER_METADATA_TIMEOUT_MS 5000
#define CONSUMER_RETRY_MS 1000

struct consumer {
    rd_kafka_t *rk;
    char topic[CONFIG_STR_MAX];
    int partitions;
    consumer_events events; /* (group mode) */
};

/* The partition numbers of `list` into parts[] (size c->partitions); a
 * partition outside the topic as first seen is dropped with a log line. */
static int list_partitions(const consumer *c, const rd_kafka_topic_partition_list_t *list,
                           int *parts)
{
    int n = 0;
    for (int i = 0; i < list->cnt; i++) {
        int p = list->elems[i].partition;
        if (p >= 0 && p < c->partitions && n < c->partitions)
            parts[n++] = p;
        else
            log_error("kafka: partition %d of %s is beyond the %d the flusher started with:"
                      " restart it to consume the new partitions", p, c->topic, c->partitions);
    }
    return n;
}

/* Called from inside consumer_poll() by librdkafka at each rebalance. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t why,
                         rd_kafka_topic_partition_list_t *list, void *opaque)
{
    consumer *c = opaque;
    int *parts = malloc((size_t)c->partitions * sizeof *parts);
    int64_t *next = malloc((size_t)c->partitions * sizeof *next);
    int n = parts && next ? list_partitions(c, list, parts) : 0;
    if (!parts || !next) {
        log_error("kafka: out of memory in a rebalance: taking no partitions");
        c->events.on_revoke(c->events.ctx, NULL, 0);
        rd_kafka_assign(rk, NULL);
    } else if (why == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS &&
               c->events.on_assign(c->events.ctx, parts, n, next) == 0) {
        for (int i = 0; i < list->cnt; i++) {
            int p = list->elems[i].partition;
            list->elems[i].offset = p >= 0 && p < c->partitions && next[p] >= 0
                                        ? next[p] : RD_KAFKA_OFFSET_BEGINNING;
        }
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, list);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_error("kafka: assign %s: %s", c->topic, rd_kafka_err2str(e));
    } else {
        /* a revoke, a lost assignment, or a claim that failed (the flusher
         * stops on it): nothing may be consumed until the next assignment */
        if (why != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
            c->events.on_revoke(c->events.ctx, parts, n);
        rd_kafka_assign(rk, NULL);
    }
    free(parts);
    free(next);
}

int consumer_instance_id(const tally_config *cfg, char *out, size_t len, char *err,
                         size_t errlen)
{
    if (cfg->flusher.instance_id[0]) {
        snprintf(out, len, "%s", cfg->flusher.instance_id);
        return 0;
    }
    if (gethostname(out, len) != 0) {
        snprintf(err, errlen, "flusher.instance_id is empty and the host name is unknown (%s):"
                 " set flusher.instance_id", strerror(errno));
        return -1;
    }
    out[len - 1] = '\0';
    return 0;
}

/* Group membership: the rebalance callback, an eager assignor, static
 * membership and the session timeout. */
static int group_conf(consumer *c, rd_kafka_conf_t *conf, const tally_config *cfg,
                      const consumer_events *events, char *err, size_t errlen)
{
    char session[32], instance[CONFIG_STR_MAX];
    snprintf(session, sizeof session, "%d", cfg->flusher.session_timeout_ms);
    if (consumer_instance_id(cfg, instance, sizeof instance, err, errlen) < 0 ||
        kafka_conf_set(conf, "partition.assignment.strategy", "range", err, errlen) < 0 ||
        kafka_conf_set(conf, "session.timeout.ms", session, err, errlen) < 0 ||
        kafka_conf_set(conf, "group.instance.id", instance, err, errlen) < 0)
        return -1;
    c->events = *events;
    rd_kafka_conf_set_opaque(conf, c);
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    return 0;
}

int consumer_open(consumer **out, const tally_config *cfg, const consumer_events *events,
                  volatile sig_atomic_t *stop, char *err, size_t errlen)
{
    assert(out && cfg && stop);
    *out = NULL;
    consumer *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!c || !conf) {
        snprintf(err, errlen, "kafka: out of memory");
        free(c);
        if (conf)
            rd_kafka_conf_destroy(conf);
        return -1;
    }
    snprintf(c->topic, sizeof c->topic, "%s", cfg->kafka.topic);
    char group[CONFIG_STR_MAX + 32];
    config_consumer_group(cfg, group, sizeof group);
    if (kafka_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers, err, errlen) < 0 ||
        kafka_conf_set(conf, "group.id", group, err, errlen) < 0 ||
        kafka_conf_set(conf, "client.id", "tally-flusher", err, errlen) < 0 ||
        kafka_conf_set(conf, "enable.auto.commit", "false", err, errlen) < 0 ||
        kafka_conf_set(conf, "enable.auto.offset.store", "false", err, errlen) < 0 ||
        kafka_conf_set(conf, "auto.offset.reset", "error", err, errlen) < 0 ||
        kafka_conf_set(conf, "enable.partition.eof", "false", err, errlen) < 0 ||
        kafka_conf_set(conf, "allow.auto.create.topics", "false", err, errlen) < 0 ||
        /* the prefetch queue, stated rather than implied: it is most of the
         * flusher's memory (the rest is bounded by flusher.max_batch_events).
         * Smaller makes replays stall: librdkafka 2.0 resumes a paused fetch
         * only on its next broker-thread wake-up, up to a second later. */
        kafka_conf_set(conf, "queued.max.messages.kbytes", "65536", err, errlen) < 0 ||
        /* fetch in larger pieces: under load an answer per produced batch
         * cost the broker a third of its CPU; this adds at most 100 ms
         * before a quiet topic's new batch reaches SQLite */
        kafka_conf_set(conf, "fetch.min.bytes", "262144", err, errlen) < 0 ||
        kafka_conf_set(conf, "fetch.wait.max.ms", "100", err, errlen) < 0 ||
        /* ... and in larger pieces when replaying: at the 1 MiB default one
         * partition's fetches could not keep up with decoding (the queue ran
         * dry for ~0.2 s at a time) */
        kafka_conf_set(conf, "max.partition.fetch.bytes", "16777216", err, errlen) < 0 ||
        kafka_conf_set(conf, "fetch.error.backoff.ms", "20", err, errlen) < 0 ||
        /* the operator's security settings (they cannot touch the above) */
        kafka_conf_apply_client_properties(conf, cfg->kafka.client_properties, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return -1;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_to_tally);
    if (events && group_conf(c, conf, cfg, events, err, errlen) < 0) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return -1;
    }

    char errstr[512];
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!c->rk) {
        snprintf(err, errlen, "kafka: cannot create consumer: %s", errstr);
        rd_kafka_conf_destroy(conf); /* not taken over on failure */
        free(c);
        return -1;
    }
    rd_kafka_resp_err_t e = rd_kafka_poll_set_consumer(c->rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: poll_set_consumer: %s", rd_kafka_err2str(e));
        consumer_close(c);
        return -1;
    }

    for (;;) {
        char why[512];
        int n = kafka_topic_ensure(c->rk, c->topic,
                                   &(kafka_topic_spec){
                                       .partitions = cfg->kafka.partitions,
                                       .replication_factor = cfg->kafka.replication_factor,
                                       .min_insync_replicas = cfg->kafka.min_insync_replicas},
                                   CONSUMER_METADATA_TIMEOUT_MS, why, sizeof why);
        if (n > 0) {
            c->partitions = n;
            break;
        }
        if (*stop) {
            snprintf(err, errlen, "interrupted while waiting for Kafka: %s", why);
            consumer_close(c);
            return -1;
        }
        log_warn("waiting for Kafka at %s: %s; retrying in %d ms", cfg->kafka.brokers, why,
                 CONSUMER_RETRY_MS);
        struct timespec ts = {CONSUMER_RETRY_MS / 1000, (CONSUMER_RETRY_MS % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short: *stop is checked next round */
        if (*stop) {
            snprintf(err, errlen, "interrupted while waiting for Kafka: %s", why);
            consumer_close(c);
            return -1;
        }
    }
    if (c->partitions != cfg->kafka.partitions)
        log_warn("topic %s has %d partitions, kafka.partitions says %d: consuming all %d",
                 c->topic, c->partitions, cfg->kafka.partitions, c->partitions);
    *out = c;
    return 0;
}

int consumer_partitions(const consumer *c) { return c->partitions; }

int consumer_assign(consumer *c, const int64_t *next, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(c->partitions);
    if (!parts) {
        snprintf(err, errlen, "kafka: out of memory");
        return -1;
    }
    for (int p = 0; p < c->partitions; p++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(parts, c->topic, p);
        tp->offset = next[p] >= 0 ? next[p] : RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(c->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: assign %s: %s", c->topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int consumer_subscribe(consumer *c, char *err, size_t errlen)
{
    assert(c->events.on_assign && c->events.on_revoke);
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    if (!topics) {
        snprintf(err, errlen, "kafka: out of memory");
        return -1;
    }
    rd_kafka_topic_partition_list_add(topics, c->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: subscribe to %s: %s", c->topic, rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

rd_kafka_message_t *consumer_poll(consumer *c, int timeout_ms)
{
    return rd_kafka_consumer_poll(c->rk, timeout_ms);
}

void consumer_close(consumer *c)
{
    if (!c)
        return;
    if (c->rk) {
        rd_kafka_resp_err_t e = rd_kafka_consumer_close(c->rk);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn("kafka: consumer close: %s", rd_kafka_err2str(e));
        rd_kafka_destroy(c->rk);
    }
    free(c);
}

int consumer_watermarks(consumer *c, int partition, int64_t *low, int64_t *high, int timeout_ms,
                        char *err, size_t errlen)
{
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(c->rk, c->topic, partition, low, high, timeout_ms);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka: watermarks of %s[%d]: %s", c->topic, partition,
                 rd_kafka_err2str(e));
        return -1;
    }
    return 0;
}

int consumer_cached_high(consumer *c, int partition, int64_t *high)
{
    int64_t low;
    if (rd_kafka_get_watermark_offsets(c->rk, c->topic, partition, &low, high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        *high < 0)
        return -1;
    return 0;
}

void consumer_batch_identity(const rd_kafka_message_t *m, char digest[DEDUP_DIGEST_TEXT],
                             int64_t *log_ms)
{
    *log_ms = rd_kafka_message_timestamp(m, NULL);
    snprintf(digest, DEDUP_DIGEST_TEXT, "%s", DEDUP_DIGEST_UNKNOWN);
    rd_kafka_headers_t *headers = NULL;
    const void *value = NULL;
    size_t size = 0;
    if (rd_kafka_message_headers(m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(headers, "tally-digest", &value, &size) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        !value || size != DEDUP_DIGEST_TEXT - 1)
        return;
    for (size_t i = 0; i < size; i++) {
        char c = ((const char *)value)[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return; /* not a digest: treated as unknown */
    }
    memcpy(digest, value, size);
    digest[size] = '\0';
}
