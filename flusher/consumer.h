/*
 * consumer.h — the flusher's Kafka consumer, positioned by SQLite, not Kafka.
 *
 * Offsets are never committed to Kafka (enable.auto.commit = false, no offset
 * store): the flusher stores them in SQLite in the same transaction as the
 * data (DESIGN.md rule 2). Two ways to be given partitions:
 *   - consumer_subscribe(): the flusher is a member of a Kafka consumer group
 *     (config_consumer_group), so several flushers share the topic's
 *     partitions and a survivor takes over a dead one's. At each rebalance
 *     every member gives all its partitions back first (events.on_revoke:
 *     commit what is pending) and is then given its new ones
 *     (events.on_assign: claim them in SQLite, return their stored offsets),
 *     both called from inside consumer_poll();
 *   - consumer_assign(): every partition, by hand, no group (the rebuild).
 * auto.offset.reset = error: a stored offset Kafka no longer has (retention
 * deleted it) is a loud error delivered through consumer_poll(), never a
 * silent skip.
 */
#ifndef TALLY_CONSUMER_H
#define TALLY_CONSUMER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "dedup.h"

#include "config.h"

typedef struct consumer consumer;

/* What a group member does at a rebalance (see above). */
typedef struct consumer_events {
    /* Kafka gives parts[0..count-1]: fill next[p] for each (the offset to
     * start at, -1 = the beginning; next has consumer_partitions() entries).
     * Return 0, or -1 to consume nothing (the callee records why). */
    int (*on_assign)(void *ctx, const int *parts, int count, int64_t *next);
    /* Kafka takes parts[0..count-1] (count 0: all, the assignment was lost). */
    void (*on_revoke)(void *ctx, const int *parts, int count);
    void *ctx;
} consumer_events;

/*
 * Creates the consumer from cfg->kafka (brokers, topic, partitions,
 * consumer_group) and, when `events` is not NULL, cfg->flusher's group
 * membership (instance_id, session_timeout_ms) with those callbacks (copied),
 * and makes sure the topic exists (creating it with
 * kafka.partitions partitions). While the broker is unreachable it logs and
 * retries every few seconds until it answers or *stop becomes nonzero.
 * Returns 0 and *out (caller owns: consumer_close), or -1 with err filled.
 */
int consumer_open(consumer **out, const tally_config *cfg, const consumer_events *events,
                  volatile sig_atomic_t *stop, char *err, size_t errlen);

/* Joins the group (consumer_open with events) and subscribes to the topic;
 * partitions come through events.on_assign. Returns 0, or -1 with err. */
int consumer_subscribe(consumer *c, char *err, size_t errlen);

/* This flusher's static group member id: flusher.instance_id, or the host
 * name. Returns 0, or -1 with err filled. */
int consumer_instance_id(const tally_config *cfg, char *out, size_t len, char *err,
                         size_t errlen);

/* The topic's actual partition count (>= 1). */
int consumer_partitions(const consumer *c);

/*
 * Assigns every partition p of the topic at next[p] (the offset stored in
 * SQLite), or at the beginning of the partition when next[p] < 0.
 * `next` has consumer_partitions() entries. Returns 0, or -1 with err filled.
 */
int consumer_assign(consumer *c, const int64_t *next, char *err, size_t errlen);

/*
 * Waits up to timeout_ms for the next message or error event. Returns NULL
 * on timeout; otherwise a message the caller must rd_kafka_message_destroy().
 * A message with err != 0 is an event (see rd_kafka_consumer_poll): transport
 * errors are retried by librdkafka, RD_KAFKA_RESP_ERR__FATAL and
 * RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET are not recoverable.
 */
rd_kafka_message_t *consumer_poll(consumer *c, int timeout_ms);

/* The first offset still held in `partition` (*low) and the offset after its
 * last message (*high), asked of the broker now. Returns 0, or -1 with err. */
int consumer_watermarks(consumer *c, int partition, int64_t *low, int64_t *high, int timeout_ms,
                        char *err, size_t errlen);

/* The high watermark of `partition` as the last fetch response told it
 * (no request: cheap enough for every loop). Returns 0 and *high, or -1 when
 * not known yet. */
int consumer_cached_high(consumer *c, int partition, int64_t *high);

/* Closes and frees the consumer; NULL is a no-op. Commits nothing to Kafka. */
void consumer_close(consumer *c);

/* What a consumed record says about its batch for deduplication (dedup.h):
 * the body digest from its tally-digest header (DEDUP_DIGEST_UNKNOWN when it
 * has none: written before digests) and its Kafka timestamp. */
void consumer_batch_identity(const rd_kafka_message_t *m, char digest[DEDUP_DIGEST_TEXT],
                             int64_t *log_ms);

#endif
