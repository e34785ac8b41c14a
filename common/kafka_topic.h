/*
 * kafka_topic.h — make sure the Tally topic exists (both processes call it at
 * start, so whichever starts first creates it with the configured partition
 * count and the other finds it).
 *
 * The admin request goes through the caller's client `rk` (no client of its
 * own), so it reaches the brokers with that client's security settings
 * (kafka.client_properties, applied where the client's conf is built).
 */
#ifndef TALLY_KAFKA_TOPIC_H
#define TALLY_KAFKA_TOPIC_H

#include <stddef.h>

#include <librdkafka/rdkafka.h>

/*
 * Looks `topic` up in the cluster metadata; when it does not exist, creates it
 * with `partitions` (>= 1) partitions, replication factor 1 and
 * message.timestamp.type=LogAppendTime (the dedup clock, dedup.h) through the
 * admin API (TOPIC_ALREADY_EXISTS, a creation race, counts as success) and
 * waits until every partition has a leader. Uses at most about `timeout_ms`.
 * Requires a live client `rk` (producer or consumer); creates and destroys
 * only temporary handles and queues.
 * Returns the topic's actual partition count (> 0, which may differ from
 * `partitions` for an existing topic), or -1 with err filled (broker
 * unreachable or timed out, creation refused, ...). Callers that must wait
 * for the broker retry on -1.
 */
int kafka_topic_ensure(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                       char *err, size_t errlen);

#endif
