/*
 * dedup.h — the one rule that decides whether a batch is a retry, shared by
 * the live view (the guard in live_update.c), the flusher (flusher/main.c)
 * and the rebuild, so that all three always agree (design rule 3).
 *
 * A batch is known by its id (the Idempotency-Key, scoped per client) and
 * by the digest of its body. Its time is the timestamp Kafka gave its record:
 * with the topic's message.timestamp.type = LogAppendTime that is the
 * broker's clock, one clock for every ingest host (Tally creates its topic
 * so); with CreateTime it is the producing ingest's clock, and ingest warns.
 *
 * A record of id X at time t is a retry of the first applied record of X, at
 * time t0, when t - t0 <= dedup.window_seconds: it is not applied (a retry
 * with a different body is a conflict: ingest answers 409, the flusher logs
 * it). Later than that, X counts again and t becomes X's time. Because both
 * times travel in Kafka, the decision is the same for the live view, the
 * flusher and every replay, whatever the clocks of the machines that decide.
 *
 * Where the decision is kept: a Redis dedup key "tally:{S}:batch:X" in each
 * shard S the batch touches (with several shards also a claim
 * "tally:{H}:claim:X" in its home shard, redis_keys.h), holding
 * "DIGEST T0", expiring after window + DEDUP_SLACK_SECONDS (Redis' clock may
 * run apart from the broker's; a key alive too long is harmless, the time
 * inside it decides), and SQLite's batches table (batch_id, log_ms, digest),
 * pruned of rows older than the newest time committed minus window + slack.
 */
#ifndef TALLY_DEDUP_H
#define TALLY_DEDUP_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"

#define DEDUP_SLACK_SECONDS 600

/* A body digest as text: 16 hex digits, or "-" for a record from before
 * digests (it matches any body). */
#define DEDUP_DIGEST_TEXT 17
#define DEDUP_DIGEST_UNKNOWN "-"

/* Whether a record at this_ms is a retry of one applied at first_ms. */
static inline int dedup_is_retry(int64_t first_ms, int64_t this_ms, long long window_seconds)
{
    return this_ms - first_ms <= (int64_t)window_seconds * 1000;
}

/* Writes the digest of a request body (hash_digest64, 64 bits: accidental
 * collisions are 2^-64 events; it is not collision-resistant, but keys are
 * scoped per client, so a crafted collision can only hide the crafter's own
 * batch). */
static inline void dedup_body_digest(const void *body, size_t len, char out[DEDUP_DIGEST_TEXT])
{
    uint64_t h = hash_digest64(body, len);
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, h >>= 4)
        out[i] = hex[h & 0xf];
    out[16] = '\0';
}

/* Whether two digests name the same body ("-" matches any). */
static inline int dedup_same_body(const char *a, const char *b)
{
    if (a[0] == '-' || b[0] == '-')
        return 1;
    for (int i = 0; i < 16; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

#endif
