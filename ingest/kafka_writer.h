/*
 * kafka_writer.h — appends encoded batch records to the Kafka topic and
 * reports each record's delivery back on the libevent loop.
 *
 * Contract: the producer is idempotent (enable.idempotence=true, so acks=all
 * and no duplicates from internal retries). A record is reported delivered
 * only when the broker acknowledged it to all in-sync replicas; a record that
 * cannot be delivered within kafka.delivery_timeout_ms is reported failed.
 * Every record handed to kafka_writer_send() gets exactly one callback, always
 * from the event loop (never from inside kafka_writer_send()). Nothing is
 * sent until the topic exists and replicates as kafka.replication_factor and
 * kafka.min_insync_replicas ask (kafka_topic.h), checked at start and every
 * 2 s until it does.
 */
#ifndef TALLY_KAFKA_WRITER_H
#define TALLY_KAFKA_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "config.h"

typedef struct kafka_writer kafka_writer;

/* What became of a record. */
typedef enum kafka_outcome {
    KAFKA_DELIVERED,    /* on all in-sync replicas */
    KAFKA_NOT_STORED,   /* certainly not in the topic (librdkafka: not persisted) */
    KAFKA_MAYBE_STORED, /* failed, but possibly persisted (a timeout after sending it):
                         * only a retry with the same batch id settles it */
    KAFKA_TOO_LARGE,    /* the broker refused the record's size: retrying cannot help */
} kafka_outcome;

/* reason names why it failed (valid during the call; NULL when delivered).
 * log_ms: the record's timestamp in the topic when delivered (the broker's
 * append time on a LogAppendTime topic, see dedup.h), else -1. */
typedef void (*kafka_delivery_fn)(void *opaque, kafka_outcome outcome, int64_t log_ms,
                                  const char *reason);

/* Creates the producer, makes sure the topic exists (creating it with
 * kafka.partitions partitions, kafka.replication_factor replicas and
 * min.insync.replicas=kafka.min_insync_replicas), checks its replication and
 * hooks delivery reports into `base`. A topic not ready yet (broker down,
 * replication short) is not a failure: the writer refuses records and tries
 * again every 2 s. Returns NULL with err filled on failure. */
kafka_writer *kafka_writer_new(struct event_base *base, const tally_config *cfg,
                               char *err, size_t errlen);

/*
 * Queues one record, with headers tally-batch-id (the key) and tally-digest
 * (the body digest, dedup.h). On success (0) ownership of `payload` (malloc'd) passes
 * to the writer and `done` will be called exactly once. On failure (-1, err
 * filled: topic not ready and why, queue full, fatal producer error) the
 * caller keeps `payload` and `done` is never called.
 */
int kafka_writer_send(kafka_writer *w, const char *key, size_t key_len, const char *digest,
                      uint8_t *payload, size_t payload_len,
                      kafka_delivery_fn done, void *opaque, char *err, size_t errlen);

/* 1 while the last thing heard from the brokers was good, 0 otherwise. */
int kafka_writer_is_up(const kafka_writer *w);

/* Why the topic is not ready (the last failure of its creation or its
 * replication check), or "" once it is. Valid until the next event-loop turn. */
const char *kafka_writer_topic_problem(const kafka_writer *w);

/* Non-zero after the idempotent producer hit a fatal error: the process must
 * restart its producer (tally-ingest exits non-zero so its supervisor does). */
int kafka_writer_fatal(const kafka_writer *w, char *reason, size_t reasonlen);

/* Waits up to timeout_ms for queued records (their callbacks run), then frees. */
void kafka_writer_free(kafka_writer *w, int timeout_ms);

#endif
