/*
 * fuzz_record.c — libFuzzer target for the record decoder (common/record.h).
 *
 * Contract: the input is one Kafka message value. record_open() on it, and on
 * a copy whose last four bytes are replaced by the right CRC-32 (so that
 * mutations reach the checks behind the CRC instead of all stopping at "crc
 * mismatch"), must never crash, and when it accepts a record:
 *   - version is 1 or 2, the batch id (<= RECORD_BATCH_ID_MAX bytes) and every
 *     name and tag lie inside the input, record_next() returns exactly
 *     `count` events and then keeps returning 0;
 *   - every event is within event.h's invariants (known type and flags,
 *     relative only on a gauge, name_len 1..EVENT_NAME_MAX, tags_len <=
 *     EVENT_TAGS_MAX, event_amount_in_domain(), folded lines only on a
 *     counter and within the domain);
 *   - the encoders accept what the decoder accepted: re-encoding the events
 *     with record_encode() reproduces a version 1 input byte for byte, and
 *     both versions decode back to the same events; except that version 1
 *     cannot carry a folded counter (version 2's extra_lines), which its
 *     encoder must refuse.
 * Any violated check aborts (fuzz_check.h), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320, as zlib's crc32()), written
 * independently of record.c's so a shared mistake cannot hide. */
static uint32_t crc32_of(const uint8_t *p, size_t n)
{
    static uint32_t table[256];
    static bool made;
    if (!made) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        made = true;
    }
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* Decodes data[0..size) and checks everything the contract above promises. */
static void check_decode(const char *label, const uint8_t *data, size_t size)
{
    record_reader r;
    char err[256] = "";
    if (record_open(&r, data, size, err, sizeof err) != 0) {
        FUZZ_CHECK(err[0] != '\0', "%s: record_open refused the record without a message", label);
        return;
    }
    FUZZ_CHECK(r.version == RECORD_VERSION || r.version == RECORD_VERSION_COMPACT,
               "%s: accepted version %u", label, r.version);
    FUZZ_CHECK(r.batch_id_len <= RECORD_BATCH_ID_MAX, "%s: batch id of %zu bytes", label,
               r.batch_id_len);
    FUZZ_CHECK(r.batch_id_len == 0 || fuzz_within(r.batch_id, r.batch_id_len, data, size),
               "%s: batch id points outside the input", label);

    metric_event *events = malloc(((size_t)r.count + 1) * sizeof *events);
    FUZZ_CHECK(events != NULL, "%s: out of memory for %u events", label, r.count);
    size_t n = 0;
    metric_event ev;
    while (n <= r.count && record_next(&r, &ev) == 1) {
        FUZZ_CHECK(n < r.count, "%s: record_next returned more than count = %u events", label,
                   r.count);
        fuzz_check_event(label, n + 1, &ev, EVENT_NAME_MAX, EVENT_TAGS_MAX, data, size, true);
        events[n++] = ev;
    }
    FUZZ_CHECK(n == r.count, "%s: record_next returned %zu of count = %u events", label, n,
               r.count);
    FUZZ_CHECK(record_next(&r, &ev) == 0, "%s: record_next did not stay at the end", label);

    /* Re-encode in both versions: the encoder's checks are the decoder's, so it
     * must take every accepted event, and the decoder must read them back;
     * version 1 cannot carry a folded counter (extra_lines) and must say so. */
    bool folded = false;
    for (size_t i = 0; i < n; i++)
        folded = folded || events[i].extra_lines != 0;
    FUZZ_CHECK(!folded || r.version == RECORD_VERSION_COMPACT,
               "%s: a version %u record decoded with folded lines", label, r.version);
    if (folded) {
        char err[256];
        uint8_t *refused = NULL;
        size_t refused_len = 0;
        FUZZ_CHECK(record_encode(r.batch_id, r.batch_id_len, r.received_ms, events, n, &refused,
                                 &refused_len, err, sizeof err) == -1 && refused == NULL,
                   "%s: the version 1 encoder took a folded counter", label);
    } else {
        uint8_t *v1 = NULL;
        size_t v1_len = 0;
        fuzz_round_trip(label, RECORD_VERSION, r.batch_id, r.batch_id_len, r.received_ms, events,
                        n, &v1, &v1_len);
        if (r.version == RECORD_VERSION)
            FUZZ_CHECK(v1_len == size && memcmp(v1, data, size) == 0,
                       "%s: a version 1 record (%zu bytes) re-encodes differently (%zu bytes)",
                       label, size, v1_len);
        free(v1);
    }
    fuzz_round_trip(label, RECORD_VERSION_COMPACT, r.batch_id, r.batch_id_len, r.received_ms,
                    events, n, NULL, NULL);
    free(events);
    record_close(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_decode("record as given", data, size);
    if (size < 6) return 0;
    /* The same bytes with a valid CRC trailer, in an exactly sized buffer so
     * AddressSanitizer sees any read past its end. */
    uint8_t *copy = malloc(size);
    FUZZ_CHECK(copy != NULL, "out of memory copying %zu bytes", size);
    memcpy(copy, data, size);
    uint32_t crc = crc32_of(copy, size - 4);
    copy[size - 4] = (uint8_t)crc;
    copy[size - 3] = (uint8_t)(crc >> 8);
    copy[size - 2] = (uint8_t)(crc >> 16);
    copy[size - 1] = (uint8_t)(crc >> 24);
    if (memcmp(copy, data, size) != 0) check_decode("record with its crc fixed", copy, size);
    free(copy);
    return 0;
}
