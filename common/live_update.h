/*
 * live_update.h — folds accepted batches into one Redis transaction (pure,
 * plus the reading of its replies).
 *
 * Shards (redis_keys.h): every series belongs to the shard of its name, and a
 * group becomes one transaction per shard its batches touch
 * (live_update_build(), called once per shard with the batches that have
 * series there), each with the dedup keys and the fence OF THAT SHARD, so
 * each is one Redis Cluster slot. A batch's parts apply independently; its
 * dedup key in each shard makes a resend apply only the parts still
 * missing. With more than one shard, a batch id is first claimed in its home
 * shard (live_claims_build(), before the transactions): the claim holds the
 * body's digest, so an id reused for another body is a conflict even when
 * the two bodies touch different shards.
 *
 * Two steps. live_fold_new() folds ONE batch per series (name, tags, type) in
 * line order: counters sum value/rate, gauges compose their operations in
 * order (the last absolute value plus later deltas, or one delta),
 * distributions sum count and value and keep min/max, sets keep their
 * distinct member digests (event.h). live_update_build()
 * then merges the folds of a GROUP of batches, in delivery order, into one
 * pipelined sequence of commands:
 *
 *   WATCH fence dedup-keys...        (rebuild mode: the dedup keys only)
 *   EVAL guard                       a short script that reads those keys
 *   MULTI
 *   SET dedup-key 1 EX ttl           for every batch
 *   HINCRBY / HINCRBYFLOAT / HSET / ZADD LT|GT ...   one per series field
 *   PFADD set-key ELEMENT...        a set: its distinct members of the group
 *                                   (ELEMENT: the digest's 8 little-endian
 *                                   bytes, redis_hll.h), LIVE_PFADD_CHUNK at
 *                                   most per command, then HSET of its tags
 *                                   into the name's index of set series
 *   EXEC
 *
 * The guard lets EXEC apply only if (1) no rebuild holds the fence
 * (LIVE_MODE_INGEST only; the rebuild replays those batches from Kafka) and
 * (2) no batch's dedup key exists; otherwise it rewrites a watched key with
 * its own value, which aborts EXEC, and names the reason. A change by any
 * other client to a watched key between WATCH and EXEC aborts it too. So the
 * fence check, the dedup claims and the updates land together or not at all,
 * and the updates run as native commands: a Lua call per series field cost
 * about twice as much Redis time.
 *
 * Grouping is what keeps Redis off the critical path: concurrent batches
 * touching the same series cost one command per series field, not one per
 * batch. Every batch is still applied at most once within the dedup window
 * (rule 3), and ingest and a concurrent rebuild never both apply one batch.
 * Keys follow redis_keys.h.
 */
#ifndef TALLY_LIVE_UPDATE_H
#define TALLY_LIVE_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "dedup.h"
#include "event.h"

/* Outcome of a group, from live_outcome(). */
#define LIVE_FAILED (-1)  /* nothing applied: an error reply or an unexpected answer */
#define LIVE_DUPLICATE 0  /* refused: some batches are duplicates (listed), nothing applied */
#define LIVE_APPLIED 1
#define LIVE_DEFERRED 2   /* a rebuild holds the fence: it will apply the batches */
#define LIVE_RETRY 3      /* another client changed a watched key: nothing applied, send again */
#define LIVE_PARTIAL 4    /* applied, but Redis refused some updates: the live view is wrong */
#define LIVE_CONFLICTED 5 /* a claim: the id was used for another body within the window */

/* Most elements of one PFADD (a set series' members in a group take as many
 * PFADDs as needed, all in the transaction). */
#define LIVE_PFADD_CHUNK 1024

/* Sums below this magnitude that are whole numbers go through HINCRBY. */
#define LIVE_WHOLE_LIMIT 1e15

/* An integer field that HINCRBY left at this magnitude or more (2^53) is
 * carried into its ":frac" companion (live_update_carry), long before the
 * next HINCRBYs (each below LIVE_WHOLE_LIMIT) could overflow Redis' int64:
 * that takes more than 9,000 more transactions on the one field. */
#define LIVE_CARRY_THRESHOLD 9007199254740992LL

/* Whether an amount added to a sum goes to its integer hash (else to the
 * REDIS_KEY_FRAC_SUFFIX companion). Ingest and the rebuild must agree. */
static inline int live_sum_is_whole(double v)
{
    return v > -LIVE_WHOLE_LIMIT && v < LIVE_WHOLE_LIMIT && v == (double)(long long)v;
}

typedef enum live_mode {
    LIVE_MODE_INGEST,  /* tally-ingest: defer while a rebuild runs */
    LIVE_MODE_REBUILD, /* the rebuild itself: ignore the fence */
} live_mode;

/* One batch folded per series; owns copies of its names and tags. */
typedef struct live_fold live_fold;

/* Folds `count` events (strings are copied: the events' buffers may go away)
 * for a live view of `shards` shards (redis.shards). Returns NULL with err
 * filled when out of memory. */
live_fold *live_fold_new(const metric_event *events, size_t count, unsigned shards, char *err,
                         size_t errlen);

/* The shards the fold has series in, ascending, without repeats (*n of them). */
const uint16_t *live_fold_shards(const live_fold *f, size_t *n);

/* Distinct series of the batch. */
size_t live_fold_series(const live_fold *f);

/* The i-th series of the fold (i < live_fold_series(f)): its hash (of type,
 * name and tags, the one live_known.h takes) and borrowed strings. */
typedef struct live_series_ref {
    uint32_t hash;
    metric_type type;
    unsigned shard;
    const char *name, *tags;
    size_t name_len, tags_len;
} live_series_ref;
live_series_ref live_fold_series_at(const live_fold *f, size_t i);

void live_fold_free(live_fold *f);

typedef struct live_known live_known; /* live_known.h */

/* A distribution series' new bounds in a group; strings borrowed from the folds. */
typedef struct live_series_bounds {
    uint32_t hash;
    uint16_t name_len, tags_len;
    const char *name, *tags;
    double min, max;
} live_series_bounds;

/* A HINCRBY of the transaction: where its reply is in EXEC's, and its field;
 * strings borrowed from the folds. */
typedef struct live_whole_add {
    size_t exec_index;
    const char *name, *tags, *suffix;
    uint16_t name_len, tags_len;
    uint16_t shard;
} live_whole_add;

typedef struct live_update {
    char *resp;        /* every command, RESP-encoded, back to back (owned) */
    size_t resp_len;
    size_t *ends;      /* ends[i]: offset just past command i (owned) */
    size_t commands;   /* WATCH, EVAL, MULTI, ..., EXEC */
    size_t series;     /* distinct series after merging the group */
    live_series_bounds *bounds; /* (owned) one per distribution series */
    size_t nbounds;
    live_whole_add *whole_adds; /* (owned) every HINCRBY, for live_update_carry() */
    size_t nwhole;
} live_update;

/* Reply positions: the guard's answer and EXEC's are the ones that matter. */
#define LIVE_GUARD_REPLY 1
static inline size_t live_exec_reply(const live_update *u) { return u->commands - 1; }

/* A batch of a group: its id (scoped per client), the digest of its body
 * and its record's Kafka timestamp (dedup.h). */
typedef struct live_batch {
    const char *id;
    size_t id_len;
    const char *digest; /* 16 hex digits, or DEDUP_DIGEST_UNKNOWN */
    int64_t log_ms;
} live_batch;

/*
 * Builds shard `shard`'s transaction for a group of `n` >= 1 batches, each
 * with a series in that shard (live_fold_shards), folds[i] being
 * batches[i], merged in index order; series of other shards are left out. Retries within dedup_window_seconds are
 * refused by the guard (dedup.h); each dedup key expires after the window
 * plus DEDUP_SLACK_SECONDS. Returns 0, or
 * -1 with err filled (out of memory, batch id too long). On success the caller
 * owns *u and frees it with live_update_free(); on failure *u holds nothing.
 * The commands must be sent in order on one connection with nothing between
 * them. `bounds` (NULL: none) leaves out the distribution min/max updates it
 * shows the live view already holds (live_known.h).
 */
int live_update_build(live_update *u, const live_fold *const *folds, const live_batch *batches,
                      size_t n, int dedup_window_seconds, live_mode mode, const live_known *bounds,
                      unsigned shard, char *err, size_t errlen);

/*
 * Builds the claims of n >= 1 batches (redis.shards > 1), one EVAL each, to
 * be sent before their transactions: each claims the batch id in its home
 * shard for the body's digest (redis_keys.h) unless that shard's fence is up
 * (LIVE_MODE_INGEST). Returns 0 or -1 with err filled; the caller frees *u.
 */
int live_claims_build(live_update *u, const live_batch *batches, size_t n,
                      int dedup_window_seconds, live_mode mode, unsigned shards, char *err,
                      size_t errlen);

/* A claim's verdict from its reply (NULL: connection lost): LIVE_APPLIED
 * (go on: claimed now, or a retry of the same body, whose parts the shards'
 * dedup keys decide), LIVE_DUPLICATE (a retry of a batch every part of
 * which is applied: nothing to send), LIVE_CONFLICTED, LIVE_DEFERRED (the
 * fence is up: nothing claimed), or LIVE_FAILED with why filled. */
int live_claim_verdict(const redisReply *reply, char *why, size_t whylen);

/* What a claim holds: "DIGEST TIME", or "DIGEST TIME done" when every part of
 * the batch is known applied (the rebuild's flushed batches). Returns its
 * length (< LIVE_CLAIM_MAX). */
#define LIVE_CLAIM_MAX (DEDUP_DIGEST_TEXT + 32)
int live_claim_value(char *buf, const char *digest, int64_t log_ms, int done);

/*
 * The stale mark of one shard, for a batch Kafka holds that Redis missed:
 *   EVAL live_stale_mark_script 2 FENCE STALE REASON   (FENCE, STALE: that shard's)
 * Reply 1: marked. Reply 0: the shard's fence is up, so a rebuild is running;
 * it replays every record delivered before it drops its fences, the missed
 * batch among them, and its own mark stays if it fails: nothing to mark.
 * (A mark set after the fence dropped outlives that rebuild: it ends by
 * deleting only the mark it wrote itself, rebuild.h.)
 */
extern const char live_stale_mark_script[];

/* After the group was applied (LIVE_APPLIED): records its distributions'
 * bounds in b. The folds the update was built from must still exist. */
void live_update_note_bounds(const live_update *u, live_known *b);

/* Marks a position in live_guard_verdict's dups: that batch's key was
 * used within the window for a different body (a conflict, not a retry). */
#define LIVE_CONFLICT ((size_t)1 << (sizeof(size_t) * 8 - 1))

/*
 * The guard's verdict from its reply (NULL: connection lost), for a group of
 * n batches: LIVE_APPLIED (go), LIVE_DEFERRED, LIVE_DUPLICATE with the
 * 1-based positions of the duplicates in dups (room for n; a conflict's
 * position has LIVE_CONFLICT set) and their number in *ndups, or LIVE_FAILED
 * with why filled.
 */
int live_guard_verdict(const redisReply *guard, size_t n, size_t *dups, size_t *ndups, char *why,
                       size_t whylen);

/*
 * The group's outcome from the guard's verdict and EXEC's reply (NULL:
 * connection lost): the verdict when EXEC was aborted by the guard,
 * LIVE_RETRY when it was aborted by another client, LIVE_APPLIED, or
 * LIVE_FAILED / LIVE_PARTIAL with why filled.
 */
int live_outcome(int verdict, const redisReply *exec, char *why, size_t whylen);

void live_update_free(live_update *u);

/*
 * After an applied group (EXEC's reply `exec`): builds into *carry one
 * command per integer field that HINCRBY left at LIVE_CARRY_THRESHOLD or
 * more, a script that atomically moves the field's value into its ":frac"
 * companion (their sum, the series' value, is unchanged, so a carry is safe
 * at any time, during a rebuild too, and twice is harmless). carry->commands
 * is 0 when nothing needs carrying. Returns 0, or -1 with err filled (out of
 * memory). The caller frees *carry with live_update_free().
 */
int live_update_carry(const live_update *u, const redisReply *exec, live_update *carry,
                      char *err, size_t errlen);

/* How many of the n queued batch ids (in order) may form one group: at most
 * `max`, and stopping before the first id already in the group. The script
 * checks dedup keys before it sets them, so two copies of one batch in a
 * group (a client's quick retry) would both be applied; split, the second
 * copy meets the first one's dedup key. */
size_t live_group_length(const char *const *ids, size_t n, size_t max);

#endif
