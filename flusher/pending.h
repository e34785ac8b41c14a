/*
 * pending.h — everything the next commit writes besides the aggregates:
 * the batch ids applied in this flush (with an in-memory set, so a batch
 * repeated inside one flush is applied once), the rejected records, and the
 * next offset of every partition a message was consumed from.
 *
 * Pure: no I/O. Like the aggregate it is cleared after each commit and keeps
 * its memory. Rejected payloads are copied (the Kafka message is freed after
 * it is handled); their size is tracked so the caller can flush early.
 */
#ifndef TALLY_PENDING_H
#define TALLY_PENDING_H

#include <stddef.h>
#include <stdint.h>

#include "dedup.h"

typedef struct pending_batch {
    size_t id_off;          /* private: offset of the id in the id buffer */
    size_t id_len;
    int64_t log_ms;         /* its record's Kafka timestamp (dedup.h) */
    char digest[DEDUP_DIGEST_TEXT];
    int32_t partition;
    int64_t offset;
} pending_batch;

typedef struct pending_reject {
    int32_t partition;
    int64_t offset;
    char reason[256];
    uint8_t *payload;       /* owned by the pending set; NULL when len == 0 */
    size_t len;
} pending_reject;

typedef struct pending pending;

/* Creates an empty pending set for partitions 0..partitions-1 (>= 1).
 * Returns NULL when out of memory. The caller owns it (pending_free). */
pending *pending_new(int partitions);
void pending_free(pending *p);

/* Empties the set after a commit; keeps the memory of the tables. */
void pending_clear(pending *p);

/* Records that the message at (partition, offset) was handled: the stored
 * next offset of the partition becomes offset + 1. Requires offsets of one
 * partition to be noted in increasing order and 0 <= partition < partitions. */
void pending_note_offset(pending *p, int32_t partition, int64_t offset);

/* The batch of this flush with that id, or NULL. */
const pending_batch *pending_find_batch(const pending *p, const char *id, size_t id_len);

/* The batch `b` of this flush is counted again (past the dedup window,
 * dedup.h): it now stands for the record at (partition, offset). */
void pending_renew_batch(pending *p, const pending_batch *b, int64_t log_ms, const char *digest,
                         int32_t partition, int64_t offset);

/* Adds a batch id (copied). Requires !pending_find_batch(). Returns 0, or -1
 * with err filled (out of memory). */
int pending_add_batch(pending *p, const char *id, size_t id_len, int64_t log_ms,
                      const char *digest, int32_t partition, int64_t offset, char *err,
                      size_t errlen);

/* Adds a rejected record; the payload is copied. Returns 0, or -1 with err filled. */
int pending_add_reject(pending *p, int32_t partition, int64_t offset, const char *reason,
                       const void *payload, size_t len, char *err, size_t errlen);

/* Counts a batch skipped as a duplicate (for the commit log only). */
void pending_note_skipped(pending *p);

/* Accessors. Pointers are valid until the next add/clear. */
int pending_partitions(const pending *p);
size_t pending_messages(const pending *p);     /* messages noted since the last clear */
size_t pending_skipped(const pending *p);
size_t pending_batch_count(const pending *p);
const pending_batch *pending_batch_at(const pending *p, size_t i);
const char *pending_batch_id(const pending *p, const pending_batch *b); /* not NUL-terminated */
size_t pending_reject_count(const pending *p);
const pending_reject *pending_reject_at(const pending *p, size_t i);
size_t pending_reject_bytes(const pending *p);
/* The next offset to store for `partition`, or -1 when nothing was consumed from it. */
int64_t pending_next_offset(const pending *p, int32_t partition);
/* The largest log_ms of the batches in this flush; requires a batch. */
int64_t pending_max_log_ms(const pending *p);

#endif
