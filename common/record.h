/*
 * record.h — the versioned binary record that carries one batch through Kafka.
 *
 * One Kafka message value = one record = one accepted HTTP batch. Layout
 * (all integers little-endian, doubles as IEEE-754 binary64 bit patterns):
 *
 *   u8  magic 'T' (0x54)        u8  version (RECORD_VERSION)
 *   u16 batch_id_len            bytes batch_id
 *   i64 received_ms             u32 event_count
 *   event_count x {
 *     u8 type  u8 flags  u16 name_len  u16 tags_len
 *     f64 value  f64 sample_rate  i64 stamp_ms
 *     bytes name  bytes tags
 *   }
 *   u32 crc32 (IEEE, of every byte before it)
 *
 * Decoding validates the whole record (magic, version, every length, types,
 * finite values, rate in (0,1], crc) before returning any event, so a corrupt
 * record is rejected as a whole and never half-applied. Pure: no I/O.
 */
#ifndef TALLY_RECORD_H
#define TALLY_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define RECORD_MAGIC 0x54u
#define RECORD_VERSION 1u
#define RECORD_BATCH_ID_MAX 128

/*
 * Encodes a batch into a newly malloc'd buffer (*out, *out_len); the caller
 * owns it (it can be handed to librdkafka with RD_KAFKA_MSG_F_FREE).
 * Returns 0, or -1 with err filled (invalid argument, out of memory).
 */
int record_encode(const char *batch_id, size_t batch_id_len, int64_t received_ms,
                  const metric_event *events, size_t count,
                  uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* A validated record; events are read with record_next(). Strings point into
 * the buffer given to record_open(), which must outlive the reader. */
typedef struct record_reader {
    const char *batch_id;   /* not NUL-terminated */
    size_t batch_id_len;
    int64_t received_ms;
    uint32_t count;         /* number of events */
    /* private */
    const uint8_t *cursor;
    const uint8_t *end;
    uint32_t next_index;
} record_reader;

/* Validates `data` completely and positions the reader before the first event.
 * Returns 0, or -1 with err naming what is wrong (e.g. "unsupported record
 * version 7", "crc mismatch", "truncated event 3"). */
int record_open(record_reader *r, const void *data, size_t len, char *err, size_t errlen);

/* Fills *ev with the next event; returns 1, or 0 after the last one. */
int record_next(record_reader *r, metric_event *ev);

#endif
