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
 * type is metric_type (event.h): 1 counter, 2 gauge, 3 distribution, 4 set.
 * A set event (type 4) has no value: its 8 value bytes hold the member's
 * 64-bit digest (event.h: member), as a u64 copied bit for bit, and its
 * sample_rate is 1.0.
 *
 * Version 2 (what tally-ingest writes) carries the same events compactly,
 * since a batch repeats a few names and tags many times and most values are
 * small integers stamped at the batch's receive time:
 *
 *   u8  magic 'T'  u8 version 2  u16 batch_id_len  bytes batch_id
 *   i64 received_ms  u32 string_count  u32 event_count
 *   string_count x { u16 len, bytes }          (names and tags, each once)
 *   event_count x {
 *     u8 head: bits 0-1 type (1 counter, 2 gauge, 3 distribution, 0 set),
 *              bit 2 gauge relative, bit 3 client stamp,
 *              bit 4 has rate, bit 5 value is f64, bit 6 has stamp delta,
 *              bit 7 a folded counter (event.h: extra_lines; a decoder from
 *              before it refuses the record naming the unknown flag)
 *     varint name index   varint tags index + 1 (0 = no tags)
 *     value: f64, or zigzag varint when it is an integer below 2^53;
 *            a set: its member's digest as an unsigned varint (bits 4 and 5
 *            clear: a set has rate 1 and no value)
 *     [f64 sample_rate]   [zigzag varint stamp_ms - received_ms]
 *     [varint extra_lines, >= 1: bit 7, a counter only]
 *   }
 *   u32 crc32 (IEEE, of every byte before it)
 *
 * Decoding accepts both versions and validates the whole record (magic,
 * version, every length and index, types, values and rates in the numeric
 * domain of event.h, a set's rate 1 and no flag but the client stamp's, a
 * folded event a counter whose (1 + extra_lines) / rate is in the domain, crc)
 * before returning any event, so a corrupt record is rejected as a whole and
 * never half-applied. Pure: no I/O.
 */
#ifndef TALLY_RECORD_H
#define TALLY_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "event.h"

#define RECORD_MAGIC 0x54u
#define RECORD_VERSION 1u         /* the fixed-width layout above */
#define RECORD_VERSION_COMPACT 2u /* string table + varints */
/* A batch id: a client's Idempotency-Key (at most 128 bytes), scoped with
 * its client's token name ("NAME/KEY", auth.h) when tokens are on. */
#define RECORD_BATCH_ID_MAX 192

/*
 * Encodes a batch into a newly malloc'd buffer (*out, *out_len); the caller
 * owns it (it can be handed to librdkafka with RD_KAFKA_MSG_F_FREE).
 * Returns 0, or -1 with err filled (invalid argument, out of memory).
 */
int record_encode(const char *batch_id, size_t batch_id_len, int64_t received_ms,
                  const metric_event *events, size_t count,
                  uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* The same as record_encode() in the compact version 2 layout (typically 5 to
 * 10 times smaller). At most UINT32_MAX distinct strings. */
int record_encode_compact(const char *batch_id, size_t batch_id_len, int64_t received_ms,
                          const metric_event *events, size_t count,
                          uint8_t **out, size_t *out_len, char *err, size_t errlen);

/* A validated record; events are read with record_next(). Strings point into
 * the buffer given to record_open(), which must outlive the reader. */
typedef struct record_reader {
    const char *batch_id;   /* not NUL-terminated */
    size_t batch_id_len;
    int64_t received_ms;
    uint32_t count;         /* number of events */
    uint8_t version;
    /* private */
    const uint8_t *cursor;
    const uint8_t *end;
    uint32_t next_index;
    struct record_string *strings; /* version 2: the string table (malloc'd) */
    metric_event *events;          /* version 2: the events, decoded once (malloc'd) */
    uint32_t string_count;
} record_reader;

/* Validates `data` completely and positions the reader before the first event.
 * Returns 0, or -1 with err naming what is wrong (e.g. "unsupported record
 * version 7", "crc mismatch", "truncated event 3"). After 0 the caller must
 * call record_close(); after -1 there is nothing to close. */
int record_open(record_reader *r, const void *data, size_t len, char *err, size_t errlen);

/* Frees what record_open() allocated; the reader must not be used afterwards. */
void record_close(record_reader *r);

/* Fills *ev with the next event; returns 1, or 0 after the last one. */
int record_next(record_reader *r, metric_event *ev);

#endif
