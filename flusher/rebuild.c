/*
 * rebuild.c — see rebuild.h for the protocol and why it is exact.
 *
 * Redis is spoken to synchronously here (hiredis' blocking context) with
 * pipelining: commands are appended and their replies read back in chunks of
 * PIPELINE_DEPTH, so a rebuild of a million series costs a few thousand round
 * trips. SQLite is read in one read transaction, which gives totals and
 * offsets of the same instant even while tally-flusher keeps committing. The
 * Kafka tail is read with the flusher's own consumer module, positioned at
 * the snapshot's offsets.
 */
#include "rebuild.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <sqlite3.h>

#include "clock.h"
#include "consumer.h"
#include "dedup.h"
#include "format.h"
#include "live_update.h"
#include "log.h"
#include "progress_bar.h"
#include "record.h"
#include "redis_auth.h"
#include "redis_hll.h"
#include "redis_keys.h"
#include "schema.h"
#include "set_union.h"

enum {
    PIPELINE_DEPTH = 512,
    FENCE_TTL_SECONDS = 15,  /* a dead rebuild's fence lapses this soon */
    FENCE_REFRESH_MS = 1000, /* a live one renews it this often, in every phase */
    POLL_MS = 200,
    STALL_LIMIT_MS = 60000,  /* no message for this long while behind: give up */
    SETTLE_RECORDS = 1000,   /* step 4 repeats until fewer new records than this remain */
    SETTLE_ROUNDS = 5,
};

typedef struct rebuilder {
    const tally_config *cfg;
    volatile sig_atomic_t *stop;
    redisContext *redis;
    size_t pending;          /* replies not yet read */
    double fence_refreshed;  /* clock_mono_seconds() of the last renewal */
    char fence_token[128];
    int fence_held;
    unsigned shards;         /* redis.shards: a fence and a stale mark in each */
    rebuild_stats *stats;
    consumer *cons;
    int partitions;
    int64_t *position;       /* next offset to read, per partition */
    metric_event *events;    /* scratch for one record */
    size_t events_cap;
    char *err;
    size_t errlen;
    progress_bar bar;       /* the replay's, on stderr */
    int64_t bar_base;       /* records replayed before the current round */
} rebuilder;

static int fail(rebuilder *r, const char *what, const char *detail)
{
    snprintf(r->err, r->errlen, "%s: %s", what, detail ? detail : "unknown error");
    return -1;
}

/* ---- Redis pipeline --------------------------------------------------------- */

static int redis_failed(rebuilder *r, const char *what)
{
    return fail(r, what, r->redis->errstr[0] ? r->redis->errstr : "connection error");
}

/* Reads every pending reply. Returns 0, or -1 on a connection error or error reply. */
static int refresh_fence(rebuilder *r);

static int pipeline_drain(rebuilder *r)
{
    while (r->pending > 0) {
        redisReply *reply = NULL;
        if (redisGetReply(r->redis, (void **)&reply) != REDIS_OK || !reply)
            return redis_failed(r, "redis");
        r->pending--;
        if (reply->type == REDIS_REPLY_ERROR) {
            fail(r, "redis error reply", reply->str);
            freeReplyObject(reply);
            return -1;
        }
        freeReplyObject(reply);
    }
    return refresh_fence(r); /* (the pipeline is empty now) */
}

static int pipeline_append(rebuilder *r, int argc, const char **argv, const size_t *argvlen)
{
    if (redisAppendCommandArgv(r->redis, argc, argv, argvlen) != REDIS_OK)
        return redis_failed(r, "redis append");
    r->pending++;
    if (r->pending >= PIPELINE_DEPTH)
        return pipeline_drain(r);
    return 0;
}

/* Renews the fence once FENCE_REFRESH_MS have passed since the last renewal;
 * a no-op while replies are pending (it reads its own reply). Fails when the
 * fence is gone (it lapsed: ingest may have written meanwhile, so this
 * rebuild cannot be trusted and stops; the stale mark stays). */
static int refresh_fence(rebuilder *r)
{
    double now = clock_mono_seconds();
    if (!r->fence_held || r->pending > 0 || (now - r->fence_refreshed) * 1000 < FENCE_REFRESH_MS)
        return 0;
    r->fence_refreshed = now;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char fence[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        if (redisAppendCommand(r->redis, "EXPIRE %s %d", fence, FENCE_TTL_SECONDS) != REDIS_OK)
            return redis_failed(r, "redis EXPIRE fence");
    }
    int ok = 1;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        redisReply *reply = NULL;
        if (redisGetReply(r->redis, (void **)&reply) != REDIS_OK || !reply)
            return redis_failed(r, "redis EXPIRE fence");
        ok &= reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
        freeReplyObject(reply);
    }
    return ok ? 0 : fail(r, "fence", "a shard's live:rebuilding key vanished during the rebuild");
}

/* A command with one reply, checked for errors; *out_reply optional. */
static int redis_simple(rebuilder *r, redisReply **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(r->redis, fmt, ap);
    va_end(ap);
    if (!reply)
        return redis_failed(r, "redis");
    if (reply->type == REDIS_REPLY_ERROR) {
        fail(r, "redis error reply", reply->str);
        freeReplyObject(reply);
        return -1;
    }
    if (out)
        *out = reply;
    else
        freeReplyObject(reply);
    return 0;
}

static int connect_redis(rebuilder *r)
{
    int ms = r->cfg->redis.timeout_ms < 5000 ? 5000 : r->cfg->redis.timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    r->redis = redisConnectWithTimeout(r->cfg->redis.host, r->cfg->redis.port, tv);
    if (!r->redis)
        return fail(r, "redis", "out of memory");
    if (r->redis->err)
        return fail(r, "redis connect", r->redis->errstr);
    if (redisSetTimeout(r->redis, tv) != REDIS_OK)
        return redis_failed(r, "redis timeout");
    /* AUTH first (redis.password_file); the password is wiped at once:
     * this is the connection's only AUTH */
    redis_auth auth;
    char why[512];
    int rc = redis_auth_load(&auth, r->cfg->redis.username, r->cfg->redis.password_file, why,
                             sizeof why);
    if (rc == 0)
        rc = redis_auth_send(r->redis, &auth, why, sizeof why);
    redis_auth_clear(&auth);
    return rc == 0 ? 0 : fail(r, "redis auth", why);
}

/* ---- step 1: the fence ----------------------------------------------------- */

/* Runs "COMMAND KEY ARG..." (a format with one %s for the key first) for
 * the key WHAT of every shard; 0, or -1 at the first failure. */
static int each_shard(rebuilder *r, const char *what, const char *fmt, const char *arg)
{
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char key[REDIS_KEY_MAX];
        redis_key_shard(key, sizeof key, shard, what);
        if (redis_simple(r, NULL, fmt, key, arg) != 0)
            return -1;
    }
    return 0;
}

/* Deletes the shards' fences that are still ours (a Lua compare-and-delete). */
static void release_fence(rebuilder *r)
{
    if (!r->fence_held || !r->redis || r->redis->err)
        return;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char fence[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        redisReply *reply = redisCommand(
            r->redis, "EVAL %s 1 %s %s",
            "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
            fence, r->fence_token);
        if (reply)
            freeReplyObject(reply);
    }
    r->fence_held = 0;
}

/* Takes the fence of every shard, or none (another rebuild holds one). */
static int take_fence(rebuilder *r)
{
    char host[64] = "?";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    snprintf(r->fence_token, sizeof r->fence_token, "pid %ld on %s at %ld", (long)getpid(), host,
             (long)time(NULL));
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char fence[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        redisReply *reply = NULL;
        if (redis_simple(r, &reply, "SET %s %s NX EX %d", fence, r->fence_token,
                         FENCE_TTL_SECONDS) != 0) {
            release_fence(r);
            return -1;
        }
        int taken = reply->type == REDIS_REPLY_STATUS;
        freeReplyObject(reply);
        r->fence_held = 1; /* (some of them: release_fence deletes only ours) */
        if (!taken) {
            redisReply *holder = redisCommand(r->redis, "GET %s", fence);
            char detail[640];
            snprintf(detail, sizeof detail,
                     "another rebuild holds %s (%s); wait for it, or for the key's TTL if it died",
                     fence, holder && holder->type == REDIS_REPLY_STRING ? holder->str : "?");
            if (holder)
                freeReplyObject(holder);
            release_fence(r);
            return fail(r, "rebuild", detail);
        }
    }
    r->fence_refreshed = clock_mono_seconds();
    return each_shard(r, REDIS_SHARD_STALE, "SET %s %s", "rebuild in progress");
}

/* ---- step 2: delete the live state ---------------------------------------- */

static int delete_matching(rebuilder *r, const char *pattern)
{
    char cursor[32] = "0";
    do {
        redisReply *reply = NULL;
        if (redis_simple(r, &reply, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) != 0)
            return -1;
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(reply);
            return fail(r, "redis SCAN", "unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", reply->element[0]->str);
        redisReply *keys = reply->element[1];
        for (size_t i = 0; i < keys->elements; i++) {
            if (strstr(keys->element[i]->str, "}:live:") ||
                strncmp(keys->element[i]->str, "tally:{admission}:", 18) == 0)
                continue; /* a fence, a stale mark, admission's state: not the live view's data */
            const char *argv[] = {"UNLINK", keys->element[i]->str};
            size_t argvlen[] = {6, keys->element[i]->len};
            if (pipeline_append(r, 2, argv, argvlen) != 0) {
                freeReplyObject(reply);
                return -1;
            }
            r->stats->keys_deleted++;
        }
        freeReplyObject(reply);
        if (pipeline_drain(r) != 0)
            return -1;
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* ---- step 3: SQLite snapshot ------------------------------------------------ */

/* How a SQLite column becomes live state (the layout ingest's updates keep,
 * see live_update.c): a SUM whole and below LIVE_WHOLE_LIMIT goes to the
 * integer hash, any other to its ":frac" companion; a VALUE is HSET; a SCORE
 * is the series' score in a sorted set. */
typedef enum live_kind { LIVE_SUM, LIVE_VALUE, LIVE_SCORE } live_kind;

typedef struct live_column {
    const char *suffix;
    live_kind kind;
} live_column;

static int write_live(rebuilder *r, const char *name, size_t name_len, const live_column *col,
                      const char *tags, size_t tags_len, double value)
{
    char key[REDIS_KEY_MAX], suffix[32], num[FORMAT_DOUBLE_MAX];
    int whole = live_sum_is_whole(value);
    snprintf(suffix, sizeof suffix, "%s%s", col->suffix,
             col->kind == LIVE_SUM && !whole ? REDIS_KEY_FRAC_SUFFIX : "");
    int kl = redis_key_metric(key, sizeof key, redis_shard_of(name, name_len, r->shards), name,
                              name_len, suffix);
    if (kl < 0)
        return fail(r, "sqlite", "metric name too long for a Redis key");
    int nl = format_double(num, sizeof num, value == 0 ? 0.0 : value);
    if (nl < 0) /* (store.c quarantines such rows when it opens the database) */
        return fail(r, "sqlite", "a stored value is not finite (a database from before schema "
                                 "version 2: run tally-flusher once to upgrade it)");
    r->stats->series_written++;
    if (col->kind == LIVE_SCORE) {
        const char *argv[] = {"ZADD", key, num, tags};
        size_t argvlen[] = {4, (size_t)kl, (size_t)nl, tags_len};
        return pipeline_append(r, 4, argv, argvlen);
    }
    const char *argv[] = {"HSET", key, tags, num};
    size_t argvlen[] = {4, (size_t)kl, tags_len, (size_t)nl};
    return pipeline_append(r, 4, argv, argvlen);
}

static int sqlite_failed(rebuilder *r, sqlite3 *db, const char *what)
{
    return fail(r, what, db ? sqlite3_errmsg(db) : "cannot open");
}

/* Runs `sql` (with `param`, when not NULL, bound to ?1) and calls row() for each row. */
static int each_row(rebuilder *r, sqlite3 *db, const char *sql, const char *param,
                    int (*row)(rebuilder *r, sqlite3_stmt *st, const void *arg), const void *arg)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK ||
        (param && sqlite3_bind_text(st, 1, param, -1, SQLITE_STATIC) != SQLITE_OK)) {
        sqlite3_finalize(st);
        return sqlite_failed(r, db, "sqlite prepare");
    }
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (row(r, st, arg) != 0) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sqlite_failed(r, db, "sqlite read");
    return pipeline_drain(r);
}

#define COL_TEXT(st, i) ((const char *)sqlite3_column_text((st), (i)))
#define COL_LEN(st, i) ((size_t)sqlite3_column_bytes((st), (i)))

/* Live keys a series row fills: column 2 + i goes to tally:{name}:COLUMNS[i]. */
static const live_column counter_columns[] = {{"counter", LIVE_SUM}, {NULL, LIVE_SUM}};
static const live_column gauge_columns[] = {{"gauge", LIVE_VALUE}, {NULL, LIVE_SUM}};
static const live_column distribution_columns[] = {
    {"dist:count", LIVE_SUM}, {"dist:sum", LIVE_SUM}, {"dist:min", LIVE_SCORE},
    {"dist:max", LIVE_SCORE}, {NULL, LIVE_SUM}};

/* Adds the series to tally:{admission}:live:series, the count behind ingest.max_live_series
 * (as ingest's admission does: "KEY\nTAGS", KEY its first hash). */
static int count_series(rebuilder *r, const char *name, size_t name_len, const char *suffix,
                        const char *tags, size_t tags_len)
{
    char element[REDIS_KEY_MAX + EVENT_TAGS_MAX + 2];
    int kl = redis_key_metric(element, REDIS_KEY_MAX, redis_shard_of(name, name_len, r->shards),
                              name, name_len, suffix);
    if (kl < 0 || (size_t)kl + 1 + tags_len > sizeof element)
        return fail(r, "sqlite", "series name or tags too long for a Redis key");
    element[kl] = '\n';
    memcpy(element + kl + 1, tags, tags_len);
    const char *argv[] = {"PFADD", REDIS_KEY_LIVE_SERIES, element};
    size_t argvlen[] = {5, sizeof REDIS_KEY_LIVE_SERIES - 1, (size_t)kl + 1 + tags_len};
    return pipeline_append(r, 3, argv, argvlen);
}

/* A row (name, tags, value...) written to the live hashes named by `arg`. */
static int series_row(rebuilder *r, sqlite3_stmt *st, const void *arg)
{
    const live_column *columns = arg;
    const char *name = COL_TEXT(st, 0), *tags = COL_TEXT(st, 1);
    if (!name || !tags)
        return fail(r, "sqlite", "NULL name or tags");
    for (int i = 0; columns[i].suffix; i++)
        if (write_live(r, name, COL_LEN(st, 0), &columns[i], tags, COL_LEN(st, 1),
                       sqlite3_column_double(st, 2 + i)) != 0)
            return -1;
    return count_series(r, name, COL_LEN(st, 0), columns[0].suffix, tags, COL_LEN(st, 1));
}

/* A set series' union of its flushed buckets becomes its HyperLogLog, as
 * the Redis string PFADD of its members would have left (redis_hll.h: the
 * same registers, sparse while small, else dense), then its tags join the
 * name's set index, and the series is counted as admitted, as ingest's
 * updates and admission leave it. */
static int write_set(void *arg, const char *name, size_t name_len, const char *tags,
                     size_t tags_len, const hll *h)
{
    rebuilder *r = arg;
    unsigned char string[REDIS_HLL_DENSE_BYTES];
    char key[REDIS_KEY_SET_MAX], index[REDIS_KEY_MAX];
    unsigned shard = redis_shard_of(name, name_len, r->shards);
    int kl = redis_key_set(key, sizeof key, shard, name, name_len, tags, tags_len);
    int il = redis_key_metric(index, sizeof index, shard, name, name_len, REDIS_KEY_SET_SUFFIX);
    if (kl < 0 || il < 0)
        return fail(r, "sqlite", "set name or tags too long for a Redis key");
    size_t len = redis_hll_string(h, string);
    const char *set_argv[] = {"SET", key, (const char *)string};
    size_t set_len[] = {3, (size_t)kl, len};
    const char *index_argv[] = {"HSET", index, tags, "1"};
    size_t index_len[] = {4, (size_t)il, tags_len, 1};
    r->stats->series_written++;
    if (pipeline_append(r, 3, set_argv, set_len) != 0 ||
        pipeline_append(r, 4, index_argv, index_len) != 0)
        return -1;
    return count_series(r, name, name_len, REDIS_KEY_SET_SUFFIX, tags, tags_len);
}

/* A batches row becomes what ingest's updates would have left (dedup.h):
 * with one shard its dedup key ("DIGEST TIME"), with several its claim
 * marked done ("DIGEST TIME done": every part of it is in the totals), which
 * refuses a retry without the shards' dedup keys. Rows are kept only within
 * the window, so each key gets the full window plus slack: the time inside
 * decides. */
static int batch_row(rebuilder *r, sqlite3_stmt *st, const void *arg)
{
    (void)arg;
    const char *id = COL_TEXT(st, 0), *digest = COL_TEXT(st, 2);
    if (!id)
        return fail(r, "sqlite", "NULL batch_id in batches");
    char key[REDIS_KEY_MAX], claim[LIVE_CLAIM_MAX], ttl_text[24];
    int kl = r->shards > 1 ? redis_key_claim(key, sizeof key, r->shards, id, COL_LEN(st, 0))
                           : redis_key_batch(key, sizeof key, 0, id, COL_LEN(st, 0));
    if (kl < 0)
        return fail(r, "sqlite", "batch id too long for a Redis key");
    int cl = live_claim_value(claim, digest ? digest : DEDUP_DIGEST_UNKNOWN,
                              sqlite3_column_int64(st, 1), r->shards > 1);
    int tl = snprintf(ttl_text, sizeof ttl_text, "%d",
                      r->cfg->dedup.window_seconds + DEDUP_SLACK_SECONDS);
    const char *argv[] = {"SET", key, claim, "EX", ttl_text};
    size_t argvlen[] = {3, (size_t)kl, (size_t)cl, 2, (size_t)tl};
    r->stats->markers_written++;
    return pipeline_append(r, 5, argv, argvlen);
}

static int offset_row(rebuilder *r, sqlite3_stmt *st, const void *arg)
{
    (void)arg;
    int p = sqlite3_column_int(st, 0);
    if (p < 0 || p >= r->partitions)
        return fail(r, "sqlite", "kafka_offsets names a partition the topic does not have");
    r->position[p] = sqlite3_column_int64(st, 1);
    return 0;
}

static int renew_during_query(void *arg)
{
    return refresh_fence(arg) != 0; /* (non-zero interrupts the query) */
}

/* Writes SQLite's totals, gauges, sets and dedup keys, and reads the
 * offsets they correspond to, all from one read transaction. */
static int load_snapshot(rebuilder *r)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(r->cfg->sqlite.path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        sqlite_failed(r, db, "sqlite open");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 5000);
    /* a long query (the totals of a large database) renews the fence too */
    sqlite3_progress_handler(db, 100000, renew_during_query, r);
    int rc = -1;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        sqlite_failed(r, db, "sqlite BEGIN");
    } else if (each_row(r, db, SCHEMA_OFFSETS_GET, r->cfg->kafka.topic, offset_row, NULL) == 0 &&
               each_row(r, db, SCHEMA_REBUILD_COUNTERS, NULL, series_row, counter_columns) == 0 &&
               each_row(r, db, SCHEMA_REBUILD_DISTRIBUTIONS, NULL, series_row,
                        distribution_columns) == 0 &&
               each_row(r, db, SCHEMA_REBUILD_GAUGES, NULL, series_row, gauge_columns) == 0 &&
               set_union_each(db, write_set, r, r->err, r->errlen) == 0 && pipeline_drain(r) == 0 &&
               each_row(r, db, SCHEMA_REBUILD_BATCHES, NULL, batch_row, NULL) == 0) {
        rc = 0;
    }
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    return rc;
}

/* ---- steps 4 and 5: Kafka replay ------------------------------------------- */

/* Sends the carries an applied transaction needs (live_update_carry) and
 * reads their replies. */
static int apply_carry(rebuilder *r, const live_update *carry)
{
    if (carry->commands == 0)
        return 0;
    if (redisAppendFormattedCommand(r->redis, carry->resp, carry->resp_len) != REDIS_OK)
        return redis_failed(r, "redis append");
    for (size_t i = 0; i < carry->commands; i++) {
        redisReply *reply = NULL;
        if (redisGetReply(r->redis, (void **)&reply) != REDIS_OK || !reply)
            return redis_failed(r, "redis");
        int refused = reply->type == REDIS_REPLY_ERROR;
        if (refused)
            fail(r, "redis carry", reply->str);
        freeReplyObject(reply);
        if (refused)
            return -1;
    }
    return 0;
}

/* Sends one batch's transaction in one shard and reads its replies, again
 * while another client's change to a watched key aborts it. Returns
 * LIVE_APPLIED, LIVE_DUPLICATE (the part was applied before) or -1. */
static int apply_transaction(rebuilder *r, const live_update *u)
{
    if (pipeline_drain(r) != 0)
        return -1;
    for (;;) {
        if (redisAppendFormattedCommand(r->redis, u->resp, u->resp_len) != REDIS_OK)
            return redis_failed(r, "redis append");
        int verdict = LIVE_FAILED, outcome = LIVE_FAILED;
        size_t dups[1], ndups = 0;
        char why[256] = "no reply";
        live_update carry = {0};
        for (size_t i = 0; i < u->commands; i++) {
            redisReply *reply = NULL;
            if (redisGetReply(r->redis, (void **)&reply) != REDIS_OK || !reply) {
                live_update_free(&carry);
                return redis_failed(r, "redis");
            }
            if (i == LIVE_GUARD_REPLY)
                verdict = live_guard_verdict(reply, 1, dups, &ndups, why, sizeof why);
            if (i == live_exec_reply(u)) {
                outcome = live_outcome(verdict, reply, why, sizeof why);
                if (outcome == LIVE_APPLIED &&
                    live_update_carry(u, reply, &carry, why, sizeof why) != 0)
                    outcome = LIVE_FAILED;
            }
            freeReplyObject(reply);
        }
        int carried = apply_carry(r, &carry);
        live_update_free(&carry);
        if (carried != 0)
            return -1;
        switch (outcome) {
        case LIVE_APPLIED:
        case LIVE_DUPLICATE: return outcome;
        case LIVE_RETRY: continue;
        default: return fail(r, "redis replay", why);
        }
    }
}

/* With several shards, the batch's claim first (live_claims_build): its
 * verdict (LIVE_APPLIED: go on), or -1. */
static int claim_batch(rebuilder *r, const live_batch *batch)
{
    live_update u;
    char why[256];
    if (live_claims_build(&u, batch, 1, r->cfg->dedup.window_seconds, LIVE_MODE_REBUILD,
                          r->shards, why, sizeof why) != 0)
        return fail(r, "replay", why);
    redisReply *reply = NULL;
    int sent = redisAppendFormattedCommand(r->redis, u.resp, u.resp_len) == REDIS_OK &&
               redisGetReply(r->redis, (void **)&reply) == REDIS_OK && reply;
    live_update_free(&u);
    if (!sent)
        return redis_failed(r, "redis claim");
    int verdict = live_claim_verdict(reply, why, sizeof why);
    freeReplyObject(reply);
    return verdict == LIVE_FAILED ? fail(r, "redis claim", why) : verdict;
}

/* Applies the batch's part in each shard it touches (one transaction each,
 * so a duplicate refuses only itself): 1 when some part was applied, 0 when
 * none was (a retry), -1 on failure. */
static int apply_parts(rebuilder *r, const live_fold *fold, const live_batch *batch)
{
    int applied = 0;
    size_t nshards;
    const uint16_t *shards = live_fold_shards(fold, &nshards);
    for (size_t k = 0; k < nshards; k++) {
        unsigned shard = shards[k];
        live_update u;
        char why[256];
        if (live_update_build(&u, &fold, batch, 1, r->cfg->dedup.window_seconds,
                              LIVE_MODE_REBUILD, NULL, shard, why, sizeof why) != 0)
            return fail(r, "replay", why);
        int outcome = apply_transaction(r, &u); /* (u borrows the fold's strings) */
        live_update_free(&u);
        if (outcome < 0)
            return -1;
        applied |= outcome == LIVE_APPLIED;
    }
    return applied;
}

static int replay_record(rebuilder *r, const rd_kafka_message_t *m)
{
    record_reader rec;
    char why[256];
    if (!m->payload || record_open(&rec, m->payload, m->len, why, sizeof why) != 0) {
        r->stats->records_rejected++;
        return 0; /* the flusher keeps it in rejected_records; nothing to apply */
    }
    if (rec.count > r->events_cap) {
        metric_event *grown = realloc(r->events, rec.count * sizeof *grown);
        if (!grown) {
            record_close(&rec);
            return fail(r, "replay", "out of memory");
        }
        r->events = grown;
        r->events_cap = rec.count;
    }
    size_t n = 0;
    while (record_next(&rec, &r->events[n]))
        n++;
    live_fold *fold = live_fold_new(r->events, n, r->shards, why, sizeof why);
    char digest[DEDUP_DIGEST_TEXT];
    char id[RECORD_BATCH_ID_MAX + 1];
    snprintf(id, sizeof id, "%.*s", (int)rec.batch_id_len, rec.batch_id);
    live_batch batch = {id, rec.batch_id_len, digest, 0};
    consumer_batch_identity(m, digest, &batch.log_ms);
    record_close(&rec);
    if (!fold)
        return fail(r, "replay", why);
    int verdict = r->shards > 1 ? claim_batch(r, &batch) : LIVE_APPLIED;
    int applied = verdict == LIVE_APPLIED ? apply_parts(r, fold, &batch) : 0;
    int rc = verdict < 0 || applied < 0 ? -1 : 0;
    if (rc == 0) {
        if (applied)
            r->stats->batches_applied++;
        else
            r->stats->batches_skipped++;
    }
    for (size_t i = 0; rc == 0 && i < live_fold_series(fold); i++) {
        live_series_ref sr = live_fold_series_at(fold, i);
        rc = count_series(r, sr.name, sr.name_len, redis_key_value_suffix(sr.type), sr.tags,
                          sr.tags_len);
    }
    if (rc == 0)
        rc = pipeline_drain(r);
    live_fold_free(fold);
    return rc;
}

/* Reads every partition up to target[p]. */
static int replay_to(rebuilder *r, const int64_t *target)
{
    double last_progress = clock_mono_seconds();
    for (;;) {
        int behind = 0;
        for (int p = 0; p < r->partitions; p++)
            behind |= r->position[p] < target[p];
        if (!behind)
            break;
        if (*r->stop)
            return fail(r, "replay", "interrupted");
        rd_kafka_message_t *m = consumer_poll(r->cons, POLL_MS);
        if (!m) {
            if ((clock_mono_seconds() - last_progress) * 1000 > STALL_LIMIT_MS)
                return fail(r, "replay", "no message from Kafka for 60 s while behind");
            continue;
        }
        int rc = 0;
        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL ||
                m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
                rc = fail(r, "kafka", rd_kafka_message_errstr(m));
        } else if (m->partition >= 0 && m->partition < r->partitions &&
                   m->offset >= r->position[m->partition]) {
            last_progress = clock_mono_seconds();
            r->position[m->partition] = m->offset + 1;
            r->stats->records_replayed++;
            progress_bar_update(&r->bar, (int64_t)r->stats->records_replayed - r->bar_base);
            rc = replay_record(r, m);
        }
        rd_kafka_message_destroy(m);
        if (rc != 0)
            return -1;
        if (r->pending == 0 && refresh_fence(r) != 0)
            return -1;
    }
    return pipeline_drain(r);
}

/* target[p] = the partition's high watermark now; returns the records between
 * the positions and the targets. */
static int64_t read_targets(rebuilder *r, int64_t *target)
{
    int64_t ahead = 0;
    for (int p = 0; p < r->partitions; p++) {
        int64_t low = 0, high = 0;
        if (consumer_watermarks(r->cons, p, &low, &high, 10000, r->err, r->errlen) != 0)
            return -1;
        if (r->position[p] < low)
            r->position[p] = low; /* nothing before low is left (or nothing stored yet) */
        target[p] = high;
        ahead += high > r->position[p] ? high - r->position[p] : 0;
    }
    return ahead;
}

static int replay_tail(rebuilder *r)
{
    int64_t *target = calloc((size_t)r->partitions, sizeof *target);
    if (!target)
        return fail(r, "replay", "out of memory");
    int rc = -1;
    /* Step 4: catch up while the fence holds ingest's updates back. */
    for (int round = 0; round < SETTLE_ROUNDS; round++) {
        int64_t ahead = read_targets(r, target);
        if (ahead < 0)
            goto out;
        r->bar_base = (int64_t)r->stats->records_replayed;
        progress_bar_start(&r->bar, stderr, "Kafka records replayed", ahead);
        if (replay_to(r, target) != 0)
            goto out;
        progress_bar_finish(&r->bar, (int64_t)r->stats->records_replayed - r->bar_base);
        if (ahead < SETTLE_RECORDS)
            break;
    }
    /* Step 5: drop the fence, take the watermark, replay to it; only then is
     * the live view whole again, and the stale mark goes. */
    if (each_shard(r, REDIS_SHARD_FENCE, "DEL %s", NULL) != 0)
        goto out;
    r->fence_held = 0;
    int64_t ahead = read_targets(r, target);
    r->bar_base = (int64_t)r->stats->records_replayed;
    progress_bar_start(&r->bar, stderr, "Kafka records replayed (after the fence)", ahead);
    if (ahead < 0 || replay_to(r, target) != 0 ||
        each_shard(r, REDIS_SHARD_STALE, "DEL %s", NULL) != 0)
        goto out;
    progress_bar_finish(&r->bar, (int64_t)r->stats->records_replayed - r->bar_base);
    rc = 0;
out:
    free(target);
    return rc;
}

/* ---- the whole rebuild -------------------------------------------------------- */

int rebuild_redis(const tally_config *cfg, volatile sig_atomic_t *stop, rebuild_stats *stats,
                  char *err, size_t errlen)
{
    memset(stats, 0, sizeof *stats);
    rebuilder r = {.cfg = cfg, .stop = stop, .stats = stats, .err = err, .errlen = errlen,
                   .shards = (unsigned)cfg->redis.shards};
    double started = clock_mono_seconds();
    int rc = -1;
    if (cfg->redis.cluster) /* (it speaks to one server: redis.host:port) */
        return fail(&r, "rebuild", "redis.cluster = true is not supported by --rebuild-redis "
                                   "yet: it writes to one Redis server");
    if (consumer_open(&r.cons, cfg, NULL, stop, err, errlen) != 0)
        goto out;
    r.partitions = consumer_partitions(r.cons);
    r.position = malloc((size_t)r.partitions * sizeof *r.position);
    if (!r.position) {
        fail(&r, "rebuild", "out of memory");
        goto out;
    }
    for (int p = 0; p < r.partitions; p++)
        r.position[p] = -1;
    if (connect_redis(&r) != 0 || take_fence(&r) != 0)
        goto out;
    log_info("rebuild: fence taken; deleting the live view");
    if (delete_matching(&r, "tally:{*") != 0 || delete_matching(&r, "tally:batch:*") != 0)
        goto out;
    log_info("rebuild: %zu keys deleted; loading the SQLite snapshot", stats->keys_deleted);
    if (load_snapshot(&r) != 0)
        goto out;
    int64_t *start = r.position;
    for (int p = 0; p < r.partitions; p++)
        log_info("rebuild: partition %d: replaying the tail from %s%" PRId64, p,
                 start[p] < 0 ? "the beginning " : "offset ", start[p] < 0 ? 0 : start[p]);
    if (consumer_assign(r.cons, r.position, err, errlen) != 0 || replay_tail(&r) != 0)
        goto out;
    rc = 0;
out:
    if (rc != 0)
        release_fence(&r); /* the stale mark stays: readers know, a rerun can start */
    if (r.redis)
        redisFree(r.redis);
    consumer_close(r.cons);
    free(r.position);
    free(r.events);
    stats->seconds = clock_mono_seconds() - started;
    return rc;
}
