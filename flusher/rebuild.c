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
#include "redis_hll.h"
#include "redis_keys.h"
#include "redis_nodes.h"
#include "redis_slots.h"
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
    REPLAY_BATCH = 256,      /* records replayed together (a few round trips) */
    REBUILD_ATTEMPTS = 3,    /* rebuilds in a row while ingest marks the view stale in step 5 */
};

typedef struct rebuilder {
    const tally_config *cfg;
    volatile sig_atomic_t *stop;
    redis_nodes *redis;      /* one server, or a cluster's masters (redis_nodes.h) */
    double fence_refreshed;  /* clock_mono_seconds() of the last renewal */
    char fence_token[128];
    char stale_mark[160];    /* what this rebuild's stale mark holds: "rebuild in progress (TOKEN)" */
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

/* Reads every pending reply. Returns 0, or -1 on a connection error or error reply. */
static int refresh_fence(rebuilder *r);

static int pipeline_drain(rebuilder *r)
{
    if (redis_nodes_drain(r->redis, r->err, r->errlen) != 0)
        return -1;
    return refresh_fence(r); /* (the pipeline is empty now) */
}

/* Queues a command on the master of its key, reading the replies once
 * PIPELINE_DEPTH are pending. */
static int pipeline_append(rebuilder *r, int argc, const char **argv, const size_t *argvlen)
{
    if (redis_nodes_append(r->redis, argc, argv, argvlen, r->err, r->errlen) != 0)
        return -1;
    if (redis_nodes_pending(r->redis) >= PIPELINE_DEPTH)
        return pipeline_drain(r);
    return 0;
}

/* The connection of a shard's master. */
static redisContext *shard_redis(const rebuilder *r, unsigned shard)
{
    return redis_nodes_for_slot(r->redis, redis_shard_slot(shard));
}

/* Renews the fence once FENCE_REFRESH_MS have passed since the last renewal;
 * a no-op while replies are pending (it reads its own reply). Fails when the
 * fence is gone (it lapsed: ingest may have written meanwhile, so this
 * rebuild cannot be trusted and stops; the stale mark stays). */
static int refresh_fence(rebuilder *r)
{
    double now = clock_mono_seconds();
    if (!r->fence_held || redis_nodes_pending(r->redis) > 0 ||
        (now - r->fence_refreshed) * 1000 < FENCE_REFRESH_MS)
        return 0;
    r->fence_refreshed = now;
    int ok = 1;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char fence[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        redisContext *c = shard_redis(r, shard);
        redisReply *reply = redisCommand(c, "EXPIRE %s %d", fence, FENCE_TTL_SECONDS);
        if (!reply)
            return redis_nodes_failed(c, NULL, "redis EXPIRE fence", r->err, r->errlen);
        ok &= reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
        freeReplyObject(reply);
    }
    return ok ? 0 : fail(r, "fence", "a shard's live:rebuilding key vanished during the rebuild");
}

/* A command with one reply on connection c, checked for errors; *out optional. */
static int redis_simple(rebuilder *r, redisContext *c, redisReply **out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *reply = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        redis_nodes_failed(c, reply, "redis", r->err, r->errlen);
        if (reply)
            freeReplyObject(reply);
        return -1;
    }
    if (out)
        *out = reply;
    else
        freeReplyObject(reply);
    return 0;
}

/* ---- step 1: the fence ----------------------------------------------------- */

/* Runs "COMMAND KEY ARG..." (a format with one %s for the key first) for
 * the key WHAT of every shard; 0, or -1 at the first failure. */
static int each_shard(rebuilder *r, const char *what, const char *fmt, const char *arg)
{
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char key[REDIS_KEY_MAX];
        redis_key_shard(key, sizeof key, shard, what);
        if (redis_simple(r, shard_redis(r, shard), NULL, fmt, key, arg) != 0)
            return -1;
    }
    return 0;
}

/* Deletes KEYS[1] if it still holds ARGV[1]: reply 1 deleted, 0 it holds another value. */
static const char compare_and_delete_script[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/* Deletes the shards' fences that are still ours. */
static void release_fence(rebuilder *r)
{
    if (!r->fence_held || !r->redis)
        return;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char fence[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        redisContext *c = shard_redis(r, shard);
        if (!c || c->err)
            continue;
        redisReply *reply =
            redisCommand(c, "EVAL %s 1 %s %s", compare_and_delete_script, fence, r->fence_token);
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
        if (redis_simple(r, shard_redis(r, shard), &reply, "SET %s %s NX EX %d", fence,
                         r->fence_token, FENCE_TTL_SECONDS) != 0) {
            release_fence(r);
            return -1;
        }
        int taken = reply->type == REDIS_REPLY_STATUS;
        freeReplyObject(reply);
        r->fence_held = 1; /* (some of them: release_fence deletes only ours) */
        if (!taken) {
            redisReply *holder = redisCommand(shard_redis(r, shard), "GET %s", fence);
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
    snprintf(r->stale_mark, sizeof r->stale_mark, "rebuild in progress (%s)", r->fence_token);
    return each_shard(r, REDIS_SHARD_STALE, "SET %s %s", r->stale_mark);
}

/* Records each shard's master's run_id where ingest checks it (one key on
 * one server, a key per shard in a cluster; redis_writer.h, redis_router.h):
 * the view about to be rebuilt is this process's, so an ingest connecting
 * from now on must not take it for one a restart left behind. */
static int record_run_ids(rebuilder *r)
{
    unsigned keys = r->cfg->redis.cluster ? r->shards : 1;
    for (unsigned shard = 0; shard < keys; shard++) {
        redisContext *c = shard_redis(r, shard);
        redisReply *info = NULL;
        if (redis_simple(r, c, &info, "INFO server") != 0)
            return -1;
        char run_id[64];
        int found = info->type == REDIS_REPLY_STRING &&
                    redis_info_run_id(info->str, run_id, sizeof run_id) == 0;
        freeReplyObject(info);
        if (!found)
            return fail(r, "redis INFO server", "no run_id in the reply");
        char key[REDIS_KEY_MAX];
        if (r->cfg->redis.cluster)
            redis_key_shard(key, sizeof key, shard, REDIS_SHARD_RUN_ID);
        else
            snprintf(key, sizeof key, "%s", REDIS_KEY_RUN_ID);
        if (redis_simple(r, c, NULL, "SET %s %s", key, run_id) != 0)
            return -1;
    }
    return 0;
}

/* Deletes the stale marks this rebuild wrote. Returns 0 when every shard's
 * was still its own, 1 when ingest marked a shard stale after the fence
 * dropped (the batch it missed may lie past the last watermark: that mark
 * stays, and its reason is in err), -1 on a Redis error. */
static int clear_stale_marks(rebuilder *r)
{
    int marked_again = 0;
    for (unsigned shard = 0; shard < r->shards; shard++) {
        char key[REDIS_KEY_MAX];
        redis_key_shard(key, sizeof key, shard, REDIS_SHARD_STALE);
        redisContext *c = shard_redis(r, shard);
        redisReply *reply = NULL;
        if (redis_simple(r, c, &reply, "EVAL %s 1 %s %s", compare_and_delete_script, key,
                         r->stale_mark) != 0)
            return -1;
        int ours = reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
        freeReplyObject(reply);
        if (ours)
            continue;
        redisReply *held = NULL;
        if (redis_simple(r, c, &held, "GET %s", key) != 0)
            return -1;
        if (held->type == REDIS_REPLY_STRING && !marked_again++)
            snprintf(r->err, r->errlen, "%s", held->str);
        freeReplyObject(held);
    }
    return marked_again > 0;
}

/* ---- step 2: delete the live state ---------------------------------------- */

/* SCAN one master for pattern, UNLINK what is the live view's. */
static int delete_matching_on(rebuilder *r, redisContext *c, const char *pattern)
{
    char cursor[32] = "0";
    do {
        redisReply *reply = NULL;
        if (redis_simple(r, c, &reply, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) != 0)
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

/* Deletes the keys matching pattern on every master. */
static int delete_matching(rebuilder *r, const char *pattern)
{
    for (size_t k = 0; k < redis_nodes_count(r->redis); k++)
        if (delete_matching_on(r, redis_nodes_at(r->redis, k), pattern) != 0)
            return -1;
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
static int apply_carry(rebuilder *r, redisContext *c, const live_update *carry)
{
    if (carry->commands == 0)
        return 0;
    if (redisAppendFormattedCommand(c, carry->resp, carry->resp_len) != REDIS_OK)
        return redis_nodes_failed(c, NULL, "redis append", r->err, r->errlen);
    for (size_t i = 0; i < carry->commands; i++) {
        redisReply *reply = NULL;
        if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply)
            return redis_nodes_failed(c, NULL, "redis", r->err, r->errlen);
        int refused = reply->type == REDIS_REPLY_ERROR;
        if (refused)
            redis_nodes_failed(c, reply, "redis carry", r->err, r->errlen);
        freeReplyObject(reply);
        if (refused)
            return -1;
    }
    return 0;
}

/* Sends one batch's transaction in one shard and reads its replies, again
 * while another client's change to a watched key aborts it. Returns
 * LIVE_APPLIED, LIVE_DUPLICATE (the part was applied before) or -1. */
static int apply_transaction(rebuilder *r, unsigned shard, const live_update *u)
{
    if (pipeline_drain(r) != 0)
        return -1;
    redisContext *c = shard_redis(r, shard);
    for (;;) {
        if (redisAppendFormattedCommand(c, u->resp, u->resp_len) != REDIS_OK)
            return redis_nodes_failed(c, NULL, "redis append", r->err, r->errlen);
        int verdict = LIVE_FAILED, outcome = LIVE_FAILED;
        size_t dups[1], ndups = 0;
        char why[256] = "no reply";
        live_update carry = {0};
        for (size_t i = 0; i < u->commands; i++) {
            redisReply *reply = NULL;
            if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply) {
                live_update_free(&carry);
                return redis_nodes_failed(c, NULL, "redis", r->err, r->errlen);
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
        int carried = apply_carry(r, c, &carry);
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

/* ---- the replay, REPLAY_BATCH records at a time ------------------------------------ */

/* One record of a replay batch. */
typedef struct replay_item {
    live_fold *fold; /* NULL: a record the flusher rejects (nothing to apply) */
    char id[RECORD_BATCH_ID_MAX + 1];
    char digest[DEDUP_DIGEST_TEXT];
    live_batch batch;
    int go;          /* its claim said go on (always, with one shard) */
    int applied;     /* some part of it was applied */
} replay_item;

/* One transaction of a replay batch: a record's part in one shard. */
typedef struct replay_part {
    replay_item *item;
    unsigned shard;
    live_update u;
    int retry;       /* aborted by another client's change: sent again alone */
} replay_part;

/* Decodes and folds a record into *it. 0, or -1 (out of memory). */
static int replay_decode(rebuilder *r, const rd_kafka_message_t *m, replay_item *it)
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
    it->fold = live_fold_new(r->events, n, r->shards, why, sizeof why);
    snprintf(it->id, sizeof it->id, "%.*s", (int)rec.batch_id_len, rec.batch_id);
    it->batch = (live_batch){it->id, rec.batch_id_len, it->digest, 0};
    consumer_batch_identity(m, it->digest, &it->batch.log_ms);
    record_close(&rec);
    return it->fold ? 0 : fail(r, "replay", why);
}

/* Reads the one reply of a command sent on c. */
static redisReply *read_reply(rebuilder *r, redisContext *c, const char *what)
{
    redisReply *reply = NULL;
    if (redisGetReply(c, (void **)&reply) != REDIS_OK || !reply) {
        redis_nodes_failed(c, NULL, what, r->err, r->errlen);
        return NULL;
    }
    return reply;
}

/* With several shards: every item's claim (live_claims_build), pipelined on
 * the masters of their home shards, and their verdicts into it->go. */
static int replay_claims(rebuilder *r, replay_item *items, size_t n)
{
    live_update *claims = calloc(n ? n : 1, sizeof *claims);
    if (!claims)
        return fail(r, "replay", "out of memory");
    int rc = 0;
    char why[256];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!items[i].fold)
            continue;
        const live_batch *b = &items[i].batch;
        redisContext *c = shard_redis(r, redis_shard_of(b->id, b->id_len, r->shards));
        if (live_claims_build(&claims[i], b, 1, r->cfg->dedup.window_seconds, LIVE_MODE_REBUILD,
                              r->shards, why, sizeof why) != 0)
            rc = fail(r, "replay", why);
        else if (redisAppendFormattedCommand(c, claims[i].resp, claims[i].resp_len) != REDIS_OK)
            rc = redis_nodes_failed(c, NULL, "redis append", r->err, r->errlen);
    }
    for (size_t i = 0; rc == 0 && i < n; i++) { /* (replies in the order sent, per master) */
        if (!items[i].fold)
            continue;
        const live_batch *b = &items[i].batch;
        redisReply *reply =
            read_reply(r, shard_redis(r, redis_shard_of(b->id, b->id_len, r->shards)), "redis claim");
        if (!reply) {
            rc = -1;
            break;
        }
        int verdict = live_claim_verdict(reply, why, sizeof why);
        freeReplyObject(reply);
        if (verdict == LIVE_FAILED)
            rc = fail(r, "redis claim", why);
        items[i].go = verdict == LIVE_APPLIED; /* (a duplicate or a conflict: skipped) */
    }
    for (size_t i = 0; i < n; i++)
        live_update_free(&claims[i]);
    free(claims);
    return rc;
}

/* Reads one part's replies: its outcome, and its carries (sent afterwards). */
static int read_part(rebuilder *r, replay_part *p, live_update *carry)
{
    redisContext *c = shard_redis(r, p->shard);
    int verdict = LIVE_FAILED, outcome = LIVE_FAILED;
    size_t dups[1], ndups = 0;
    char why[256] = "no reply";
    for (size_t k = 0; k < p->u.commands; k++) {
        redisReply *reply = read_reply(r, c, "redis");
        if (!reply)
            return -1;
        if (k == LIVE_GUARD_REPLY)
            verdict = live_guard_verdict(reply, 1, dups, &ndups, why, sizeof why);
        if (k == live_exec_reply(&p->u)) {
            outcome = live_outcome(verdict, reply, why, sizeof why);
            if (outcome == LIVE_APPLIED && live_update_carry(&p->u, reply, carry, why, sizeof why) != 0)
                outcome = LIVE_FAILED;
        }
        freeReplyObject(reply);
    }
    switch (outcome) {
    case LIVE_APPLIED: p->item->applied = 1; return 0;
    case LIVE_DUPLICATE: return 0;
    case LIVE_RETRY: p->retry = 1; return 0;
    default: return fail(r, "redis replay", why);
    }
}

/* Every go-on item's part in each shard it touches (one transaction each, so
 * a duplicate refuses only itself), pipelined on the shards' masters; then
 * the replies, the carries, and a resend of each part another client's
 * change aborted. */
static int replay_parts(rebuilder *r, replay_item *items, size_t n)
{
    size_t cap = 0, np = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        if (items[i].go)
            live_fold_shards(items[i].fold, &k);
        cap += k;
    }
    replay_part *parts = calloc(cap ? cap : 1, sizeof *parts);
    live_update *carries = calloc(cap ? cap : 1, sizeof *carries);
    if (!parts || !carries) {
        free(parts);
        free(carries);
        return fail(r, "replay", "out of memory");
    }
    int rc = 0;
    char why[256];
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t k = 0;
        const uint16_t *shards = items[i].go ? live_fold_shards(items[i].fold, &k) : NULL;
        for (size_t s = 0; rc == 0 && s < k; s++) {
            replay_part *p = &parts[np];
            *p = (replay_part){.item = &items[i], .shard = shards[s]};
            const live_fold *fold = items[i].fold;
            if (live_update_build(&p->u, &fold, &items[i].batch, 1, r->cfg->dedup.window_seconds,
                                  LIVE_MODE_REBUILD, NULL, p->shard, why, sizeof why) != 0) {
                rc = fail(r, "replay", why);
                break;
            }
            np++;
            redisContext *c = shard_redis(r, p->shard);
            if (redisAppendFormattedCommand(c, p->u.resp, p->u.resp_len) != REDIS_OK)
                rc = redis_nodes_failed(c, NULL, "redis append", r->err, r->errlen);
        }
    }
    for (size_t k = 0; rc == 0 && k < np; k++)
        rc = read_part(r, &parts[k], &carries[k]);
    for (size_t k = 0; rc == 0 && k < np; k++) {
        rc = apply_carry(r, shard_redis(r, parts[k].shard), &carries[k]);
        if (rc == 0 && parts[k].retry) {
            int outcome = apply_transaction(r, parts[k].shard, &parts[k].u);
            rc = outcome < 0 ? -1 : 0;
            parts[k].item->applied |= outcome == LIVE_APPLIED;
        }
    }
    for (size_t k = 0; k < np; k++) {
        live_update_free(&parts[k].u);
        live_update_free(&carries[k]);
    }
    free(parts);
    free(carries);
    return rc;
}

/* Replays n records (REPLAY_BATCH at most) in a few round trips: their
 * claims, then their transactions, then the series they count. */
static int replay_records(rebuilder *r, rd_kafka_message_t *const *msgs, size_t n)
{
    replay_item *items = calloc(n ? n : 1, sizeof *items);
    if (!items)
        return fail(r, "replay", "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = replay_decode(r, msgs[i], &items[i]);
        items[i].go = items[i].fold != NULL;
    }
    if (rc == 0 && r->shards > 1)
        rc = replay_claims(r, items, n);
    if (rc == 0)
        rc = replay_parts(r, items, n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (!items[i].fold)
            continue;
        if (items[i].applied)
            r->stats->batches_applied++;
        else
            r->stats->batches_skipped++;
        for (size_t k = 0; rc == 0 && k < live_fold_series(items[i].fold); k++) {
            live_series_ref sr = live_fold_series_at(items[i].fold, k);
            rc = count_series(r, sr.name, sr.name_len, redis_key_value_suffix(sr.type), sr.tags,
                              sr.tags_len);
        }
    }
    if (rc == 0)
        rc = pipeline_drain(r);
    for (size_t i = 0; i < n; i++)
        live_fold_free(items[i].fold);
    free(items);
    return rc;
}

/* Replays the records collected (and destroys them). */
static int flush_replay(rebuilder *r, rd_kafka_message_t **msgs, size_t *n)
{
    int rc = *n ? replay_records(r, msgs, *n) : 0;
    for (size_t i = 0; i < *n; i++)
        rd_kafka_message_destroy(msgs[i]);
    *n = 0;
    if (rc == 0 && redis_nodes_pending(r->redis) == 0 && refresh_fence(r) != 0)
        rc = -1;
    return rc;
}

/* Reads every partition up to target[p], replaying REPLAY_BATCH records at
 * a time (fewer when Kafka has no more at once). */
static int replay_to(rebuilder *r, const int64_t *target)
{
    rd_kafka_message_t *msgs[REPLAY_BATCH];
    size_t n = 0;
    double last_progress = clock_mono_seconds();
    for (;;) {
        int behind = 0;
        for (int p = 0; p < r->partitions; p++)
            behind |= r->position[p] < target[p];
        if (!behind)
            break;
        if (*r->stop) {
            flush_replay(r, msgs, &n);
            return fail(r, "replay", "interrupted");
        }
        rd_kafka_message_t *m = consumer_poll(r->cons, n ? 0 : POLL_MS);
        if (!m) {
            if (flush_replay(r, msgs, &n) != 0)
                return -1;
            if ((clock_mono_seconds() - last_progress) * 1000 > STALL_LIMIT_MS)
                return fail(r, "replay", "no message from Kafka for 60 s while behind");
            continue;
        }
        if (m->err) {
            int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL ||
                        m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET;
            if (fatal)
                fail(r, "kafka", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (fatal) {
                flush_replay(r, msgs, &n);
                return -1;
            }
            continue;
        }
        if (m->partition < 0 || m->partition >= r->partitions ||
            m->offset < r->position[m->partition]) {
            rd_kafka_message_destroy(m);
            continue;
        }
        last_progress = clock_mono_seconds();
        r->position[m->partition] = m->offset + 1;
        r->stats->records_replayed++;
        progress_bar_update(&r->bar, (int64_t)r->stats->records_replayed - r->bar_base);
        msgs[n++] = m;
        if (n == REPLAY_BATCH && flush_replay(r, msgs, &n) != 0)
            return -1;
    }
    if (flush_replay(r, msgs, &n) != 0)
        return -1;
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
     * the live view whole again, and (step 6) this rebuild's stale marks go. */
    if (each_shard(r, REDIS_SHARD_FENCE, "DEL %s", NULL) != 0)
        goto out;
    r->fence_held = 0;
    int64_t ahead = read_targets(r, target);
    r->bar_base = (int64_t)r->stats->records_replayed;
    progress_bar_start(&r->bar, stderr, "Kafka records replayed (after the fence)", ahead);
    if (ahead < 0 || replay_to(r, target) != 0)
        goto out;
    progress_bar_finish(&r->bar, (int64_t)r->stats->records_replayed - r->bar_base);
    rc = clear_stale_marks(r);
out:
    free(target);
    return rc;
}

/* ---- the whole rebuild -------------------------------------------------------- */

/* One rebuild: 0 done, 1 ingest marked the view stale after the fence
 * dropped (reason in err), -1 failed (err). */
static int rebuild_once(const tally_config *cfg, volatile sig_atomic_t *stop, rebuild_stats *stats,
                        char *err, size_t errlen)
{
    rebuilder r = {.cfg = cfg, .stop = stop, .stats = stats, .err = err, .errlen = errlen,
                   .shards = (unsigned)cfg->redis.shards};
    int rc = -1;
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
    if (redis_nodes_open(&r.redis, cfg, err, errlen) != 0 || take_fence(&r) != 0 ||
        record_run_ids(&r) != 0)
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
    if (consumer_assign(r.cons, r.position, err, errlen) != 0)
        goto out;
    rc = replay_tail(&r);
out:
    if (rc != 0)
        release_fence(&r); /* the stale mark stays: readers know, a rerun can start */
    if (r.redis)
        redis_nodes_close(r.redis);
    consumer_close(r.cons);
    free(r.position);
    free(r.events);
    return rc;
}

int rebuild_redis(const tally_config *cfg, volatile sig_atomic_t *stop, rebuild_stats *stats,
                  char *err, size_t errlen)
{
    double started = clock_mono_seconds();
    int rc = 1;
    for (int attempt = 1; rc == 1 && attempt <= REBUILD_ATTEMPTS; attempt++) {
        memset(stats, 0, sizeof *stats);
        stats->attempts = attempt;
        rc = rebuild_once(cfg, stop, stats, err, errlen);
        if (rc == 1 && attempt < REBUILD_ATTEMPTS)
            log_warn("rebuild: ingest marked the live view stale while the fence dropped (%s): "
                     "rebuilding again",
                     err);
    }
    if (rc == 1) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen,
                 "ingest marked the live view stale during the last step of %d rebuilds in a "
                 "row (%s); the mark stays",
                 REBUILD_ATTEMPTS, why);
        rc = -1;
    }
    stats->seconds = clock_mono_seconds() - started;
    return rc;
}
