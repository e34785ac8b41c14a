/*
 * verify.c — the drill's end-of-scenario checks against SQLite and Redis.
 *
 * SQLite is the source of truth, so it is compared with the ledger first and
 * exactly: every counter value the drill sends is a whole number, so sums in
 * SQLite's doubles are exact and "equal" means bit-equal. The flusher commits
 * asynchronously, hence the polling; the database is opened read-only with a
 * busy timeout so the drill never blocks or disturbs the flusher's commits.
 * Names under the scenario's prefix that the ledger does not know can only be
 * writes the drill never had acknowledged; they count as duplicated.
 *
 * Redis is compared with SQLite (not with the ledger) because Redis' contract
 * is "SQLite totals + the unflushed Kafka tail", and after the load stopped
 * and SQLite converged that tail is empty.
 */
#include "verify.h"

#include "redis_keys.h"
#include "redis_nodes.h"
#include "redis_slots.h"
#include "schema.h"

#include <hiredis/hiredis.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* One read of the scenario's totals. Returns 0, or -1 with err (try again later). */
static int read_totals(const char *db_path, const char *pattern, const ledger *l, verify_result *r, char *err,
                       size_t err_len)
{
    for (int k = 0; k < DRILL_COUNTERS; k++) r->sqlite[k] = 0;
    r->extra_count = 0;
    struct stat st;
    if (stat(db_path, &st) != 0) return 0; /* the flusher has not created it yet: empty */

    sqlite3 *db = NULL;
    sqlite3_stmt *st_totals = NULL;
    int rc = sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, err_len, "open %s: %s", db_path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 2000);
    rc = sqlite3_prepare_v2(db, SCHEMA_COUNTER_TOTALS_LIKE, -1, &st_totals, NULL);
    if (rc != SQLITE_OK) {
        int missing = strstr(sqlite3_errmsg(db), "no such table") != NULL;
        snprintf(err, err_len, "query %s: %s", db_path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return missing ? 0 : -1; /* no metrics table yet: empty */
    }
    if (sqlite3_bind_text(st_totals, 1, pattern, -1, SQLITE_STATIC) != SQLITE_OK) {
        snprintf(err, err_len, "bind: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st_totals);
        sqlite3_close(db);
        return -1;
    }
    while ((rc = sqlite3_step(st_totals)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st_totals, 0);
        double v = sqlite3_column_double(st_totals, 1);
        if (name == NULL) continue;
        int found = 0;
        for (int k = 0; k < DRILL_COUNTERS && !found; k++) {
            if (strcmp(name, l->names[k]) == 0) {
                r->sqlite[k] = v;
                found = 1;
            }
        }
        if (!found && r->extra_count < VERIFY_EXTRA_MAX) {
            snprintf(r->extra_names[r->extra_count], DRILL_NAME_MAX, "%s", name);
            r->extra_sqlite[r->extra_count++] = v;
        }
    }
    int ok = rc == SQLITE_DONE;
    if (!ok) snprintf(err, err_len, "query %s: %s", db_path, sqlite3_errmsg(db));
    sqlite3_finalize(st_totals);
    sqlite3_close(db);
    return ok ? 0 : -1;
}

static int totals_equal(const ledger *l, const verify_result *r)
{
    if (r->extra_count > 0) return 0;
    for (int k = 0; k < DRILL_COUNTERS; k++)
        if (r->sqlite[k] != (double)l->sums[k]) return 0;
    return 1;
}

int verify_sqlite(const char *db_path, const ledger *l, const char *runid, int scenario, double timeout_s,
                  verify_result *r, char *err, size_t err_len)
{
    char pattern[DRILL_NAME_MAX];
    snprintf(pattern, sizeof pattern, "drill.%s.%s.%%", runid, scenario_name(scenario));
    for (int k = 0; k < DRILL_COUNTERS; k++) r->redis[k] = NAN;
    r->redis_mismatches = -1;
    r->converged = 0;
    int read_once = 0;
    char last_err[512] = "";
    double start = drill_now(), next_note = start + 15;
    for (;;) {
        if (read_totals(db_path, pattern, l, r, last_err, sizeof last_err) == 0) {
            read_once = 1;
            if (totals_equal(l, r)) {
                r->converged = 1;
                break;
            }
        }
        double now = drill_now();
        if (now - start >= timeout_s) break;
        if (now >= next_note) {
            drill_say("%s: SQLite not equal to the ledger yet after %.0f s%s%s", scenario_name(scenario),
                      now - start, last_err[0] ? ": " : "", last_err);
            next_note = now + 15;
        }
        drill_sleep(0.2);
    }
    r->converge_s = drill_now() - start;
    r->lost = r->duplicated = 0;
    for (int k = 0; k < DRILL_COUNTERS; k++) {
        long long got = llround(r->sqlite[k]);
        if (got < l->sums[k]) r->lost += l->sums[k] - got;
        else r->duplicated += got - l->sums[k];
    }
    for (int i = 0; i < r->extra_count; i++) r->duplicated += llround(fabs(r->extra_sqlite[i]));
    if (!read_once) {
        snprintf(err, err_len, "SQLite could not be read for %.0f s: %s", timeout_s, last_err);
        return -1;
    }
    return 0;
}

/* Σ HVALS of one hash into *sum, asked of the master of its slot. Returns
 * 0, or -1 with err. */
static int add_hash_values(redis_nodes *n, const char *key, double *sum, char *err, size_t err_len)
{
    redisContext *rc = redis_nodes_for_slot(n, redis_slot(key, strlen(key)));
    redisReply *reply = rc ? redisCommand(rc, "HVALS %s", key) : NULL;
    if (reply == NULL) {
        snprintf(err, err_len, "HVALS %s: %s", key, rc ? rc->errstr : "no Redis master for its slot");
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_len, "HVALS %s: %s", key,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "not an array");
        freeReplyObject(reply);
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *e = reply->element[i];
        char *end;
        double v = e->type == REDIS_REPLY_STRING ? strtod(e->str, &end) : 0;
        if (e->type != REDIS_REPLY_STRING || end == e->str) {
            snprintf(err, err_len, "HVALS %s: field %zu is not a number", key, i);
            freeReplyObject(reply);
            return -1;
        }
        *sum += v;
    }
    freeReplyObject(reply);
    return 0;
}

/* A counter's live total into *out: Σ tally:{S}:name:counter (whole parts) +
 * Σ tally:{S}:name:counter:frac (fractions). Returns 0, or -1 with err. */
static int redis_counter(redis_nodes *rc, unsigned shards, const char *name, double *out, char *err,
                         size_t err_len)
{
    char key[REDIS_KEY_MAX], frac_key[REDIS_KEY_MAX];
    unsigned shard = redis_shard_of(name, strlen(name), shards);
    if (redis_key_metric(key, sizeof key, shard, name, strlen(name), "counter") < 0 ||
        redis_key_metric(frac_key, sizeof frac_key, shard, name, strlen(name),
                         "counter" REDIS_KEY_FRAC_SUFFIX) < 0) {
        snprintf(err, err_len, "name too long for a Redis key: %s", name);
        return -1;
    }
    double sum = 0;
    if (add_hash_values(rc, key, &sum, err, err_len) != 0 ||
        add_hash_values(rc, frac_key, &sum, err, err_len) != 0)
        return -1;
    *out = sum;
    return 0;
}

int verify_redis(const tally_config *cfg, const ledger *l, verify_result *r, char *err, size_t err_len)
{
    r->redis_mismatches = -1;
    redis_nodes *nodes = NULL;
    if (redis_nodes_open(&nodes, cfg, err, err_len) != 0) return -1;
    unsigned shards = (unsigned)cfg->redis.shards;
    int mismatches = 0, rc = 0;
    for (int k = 0; rc == 0 && k < DRILL_COUNTERS; k++) {
        rc = redis_counter(nodes, shards, l->names[k], &r->redis[k], err, err_len);
        if (rc == 0 && r->redis[k] != r->sqlite[k]) mismatches++;
    }
    for (int i = 0; rc == 0 && i < r->extra_count; i++) {
        double v;
        rc = redis_counter(nodes, shards, r->extra_names[i], &v, err, err_len);
        if (rc == 0 && v != r->extra_sqlite[i]) mismatches++;
    }
    redis_nodes_close(nodes);
    if (rc == 0) r->redis_mismatches = mismatches;
    return rc;
}
