/*
 * kafka_topic.h — make sure the Tally topic exists (both processes call it at
 * start, so whichever starts first creates it with the configured partition
 * count, replication factor and min.insync.replicas, and the other finds it),
 * and check that an existing topic replicates as the configuration asks
 * (tally-ingest acknowledges nothing until it does: acks=all means only as
 * much as the topic's replicas and min.insync.replicas make it mean).
 *
 * The admin requests go through the caller's client `rk` (no client of its
 * own), so they reach the brokers with that client's security settings
 * (kafka.client_properties, applied where the client's conf is built).
 */
#ifndef TALLY_KAFKA_TOPIC_H
#define TALLY_KAFKA_TOPIC_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/* What the configuration asks of the topic (kafka.partitions,
 * kafka.replication_factor, kafka.min_insync_replicas). */
typedef struct kafka_topic_spec {
    int partitions;          /* >= 1: partition count a new topic gets */
    int replication_factor;  /* >= 1: replicas of each partition */
    int min_insync_replicas; /* 1..replication_factor: the topic's min.insync.replicas */
} kafka_topic_spec;

/*
 * Looks `topic` up in the cluster metadata; when it does not exist, creates it
 * with spec->partitions partitions of spec->replication_factor replicas,
 * min.insync.replicas=spec->min_insync_replicas and
 * message.timestamp.type=LogAppendTime (the dedup clock, dedup.h) through the
 * admin API (TOPIC_ALREADY_EXISTS, a creation race, counts as success) and
 * waits until every partition has a leader. An existing topic is taken as it
 * is (kafka_topic_check_replication() judges it). Uses at most about
 * `timeout_ms`. Requires a live client `rk` (producer or consumer) and a spec
 * within the ranges above; creates and destroys only temporary handles and
 * queues.
 * Returns the topic's actual partition count (> 0, which may differ from
 * spec->partitions for an existing topic), or -1 with err filled (broker
 * unreachable or timed out, creation refused: e.g. a replication factor above
 * the broker count, ...). Callers that must wait for the broker retry on -1.
 */
int kafka_topic_ensure(rd_kafka_t *rk, const char *topic, const kafka_topic_spec *spec,
                       int timeout_ms, char *err, size_t errlen);

/*
 * Checks that the existing `topic` keeps an acks=all write where the spec
 * says: (a) every partition has at least spec->replication_factor replicas
 * (cluster metadata), (b) the topic's effective min.insync.replicas (the
 * DescribeConfigs admin API: the topic's own value or the broker default) is
 * at least spec->min_insync_replicas, and (c) it is at most the replicas of
 * every partition (else Kafka refuses every acks=all write). Uses at most
 * about `timeout_ms`; requires a live client `rk` and a spec as above.
 * Returns 0 when all hold; 1 when one does not, with err naming the topic,
 * the partition, what was found, what the configuration expects and how to
 * fix it (every failed condition, "; "-separated); -1 when the cluster could
 * not be asked (err filled: unreachable, timed out, topic unknown). Callers
 * retry on 1 and -1 alike: a topic fixed meanwhile passes the next check.
 */
int kafka_topic_check_replication(rd_kafka_t *rk, const char *topic, const kafka_topic_spec *spec,
                                  int timeout_ms, char *err, size_t errlen);

#endif
