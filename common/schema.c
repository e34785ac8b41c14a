/*
 * schema.c — see schema.h. The DDL, the upgrades from every earlier
 * version, and the text of every statement. Statements are prepared by
 * their users (each on its own connection and thread).
 */
#include "schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddsketch.h"
#include "hll.h"
#include "prom_name.h"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS metrics("
    " name TEXT NOT NULL, tags TEXT NOT NULL,"
    " type TEXT NOT NULL CHECK(type IN ('counter','gauge','distribution')),"
    " bucket INTEGER NOT NULL, lines INTEGER NOT NULL, value REAL NOT NULL,"
    " weight REAL NOT NULL, min REAL, max REAL,"
    " PRIMARY KEY(name, tags, type, bucket)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS gauges("
    " name TEXT NOT NULL, tags TEXT NOT NULL, value REAL NOT NULL,"
    " PRIMARY KEY(name, tags)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS series("
    " name TEXT NOT NULL, tags TEXT NOT NULL, type TEXT NOT NULL, prom_name TEXT NOT NULL,"
    " first_bucket INTEGER NOT NULL, last_bucket INTEGER NOT NULL,"
    " total_value REAL NOT NULL, total_weight REAL NOT NULL, min REAL, max REAL,"
    " PRIMARY KEY(name, tags, type)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS sketches("
    " name TEXT NOT NULL, tags TEXT NOT NULL,"
    " type TEXT NOT NULL CHECK(type IN ('distribution','set')),"
    " bucket INTEGER NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(name, tags, type, bucket)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS kafka_offsets("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL,"
    " PRIMARY KEY(topic, partition));"
    "CREATE TABLE IF NOT EXISTS batches("
    " batch_id TEXT PRIMARY KEY, log_ms INTEGER NOT NULL, digest TEXT NOT NULL DEFAULT '-',"
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, offset INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rejected_records("
    " topic TEXT, partition INTEGER, offset INTEGER, reason TEXT, payload BLOB,"
    " PRIMARY KEY(topic, partition, offset));"
    "CREATE TABLE IF NOT EXISTS quarantined_rows("
    " tbl TEXT NOT NULL, name TEXT, tags TEXT, type TEXT, bucket INTEGER, reason TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS rollup_metrics("
    " name TEXT NOT NULL, tags TEXT NOT NULL, type TEXT NOT NULL, width INTEGER NOT NULL,"
    " bucket INTEGER NOT NULL, last_bucket INTEGER NOT NULL, lines INTEGER NOT NULL,"
    " value REAL NOT NULL, weight REAL NOT NULL, min REAL, max REAL,"
    " PRIMARY KEY(name, tags, type, width, bucket)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS rollup_sketches("
    " name TEXT NOT NULL, tags TEXT NOT NULL, type TEXT NOT NULL, width INTEGER NOT NULL,"
    " bucket INTEGER NOT NULL, data BLOB NOT NULL,"
    " PRIMARY KEY(name, tags, type, width, bucket)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS rollup_state("
    " width INTEGER PRIMARY KEY, rolled_until INTEGER NOT NULL, kept_from INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS partition_claims("
    " topic TEXT NOT NULL, partition INTEGER NOT NULL, epoch INTEGER NOT NULL,"
    " owner TEXT NOT NULL, claimed_ms INTEGER NOT NULL, PRIMARY KEY(topic, partition));";

/* Version 1 -> 2: rows holding infinity (SQLite keeps it as a REAL; NaN became
 * NULL) move to quarantined_rows. */
#define NOT_FINITE(col) "NOT (abs(" col ") <= 1.7976931348623157e308)"
static const char UPGRADE_1_TO_2[] =
    "INSERT INTO quarantined_rows SELECT 'metrics', name, tags, type, bucket,"
    " 'value ' || value || ', weight ' || weight || ', min ' || ifnull(min, 'NULL') ||"
    " ', max ' || ifnull(max, 'NULL') || ' not finite' FROM metrics WHERE "
    NOT_FINITE("value") " OR " NOT_FINITE("weight") " OR " NOT_FINITE("ifnull(min, 0)") " OR "
    NOT_FINITE("ifnull(max, 0)") ";"
    "DELETE FROM metrics WHERE " NOT_FINITE("value") " OR " NOT_FINITE("weight") " OR "
    NOT_FINITE("ifnull(min, 0)") " OR " NOT_FINITE("ifnull(max, 0)") ";"
    "INSERT INTO quarantined_rows SELECT 'gauges', name, tags, 'gauge', NULL,"
    " 'value ' || value || ' not finite' FROM gauges WHERE " NOT_FINITE("value") ";"
    "DELETE FROM gauges WHERE " NOT_FINITE("value") ";"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

/* Version 2 -> 3: the dedup window is timed by Kafka timestamps (dedup.h)
 * and a batch keeps its body digest. Rows from before keep their ingest
 * receive time as their time (the best there is) and an unknown digest. */
static const char UPGRADE_2_TO_3[] =
    "ALTER TABLE batches RENAME COLUMN received_ms TO log_ms;"
    "ALTER TABLE batches ADD COLUMN digest TEXT NOT NULL DEFAULT '-';"
    "DROP INDEX IF EXISTS batches_received_ms;"
    "UPDATE meta SET value = '3' WHERE key = 'schema_version';";

/* Version 3 -> 4: the series catalog, built from the rows (SCHEMA created
 * the empty table), and the sketches table (created empty by SCHEMA too):
 * rows from before it have no sketch, so their buckets have no quantiles. */
static const char UPGRADE_3_TO_4[] =
    "INSERT INTO series(name, tags, type, prom_name, first_bucket, last_bucket,"
    " total_value, total_weight, min, max)"
    " SELECT name, tags, type, tally_prom_name(name), MIN(bucket), MAX(bucket),"
    " CASE WHEN type = 'gauge' THEN 0 ELSE SUM(value) END, SUM(weight),"
    " CASE WHEN type = 'distribution' THEN MIN(min) END,"
    " CASE WHEN type = 'distribution' THEN MAX(max) END"
    " FROM metrics GROUP BY name, tags, type;"
    "UPDATE meta SET value = '4' WHERE key = 'schema_version';";

/* Version 4 -> 5: the roll-up tables (created empty by SCHEMA): nothing is
 * rolled up or deleted yet. */
static const char UPGRADE_4_TO_5[] = "UPDATE meta SET value = '5' WHERE key = 'schema_version';";

/* Version 5 -> 6: partition_claims (created empty by SCHEMA): the first
 * flusher to start claims its partitions at epoch 1. */
static const char UPGRADE_5_TO_6[] = "UPDATE meta SET value = '6' WHERE key = 'schema_version';";

/* After any upgrade: what the current schema has on top of its tables. */
static const char SCHEMA_INDEXES[] =
    "CREATE INDEX IF NOT EXISTS batches_log_ms ON batches(log_ms);"
    "CREATE INDEX IF NOT EXISTS series_prom_name ON series(prom_name);";

/* NULL-ignoring min/max: min(coalesce(a,b), coalesce(b,a)) is NULL only when both are. */
const char SCHEMA_METRIC_UPSERT[] =
    "INSERT INTO metrics(name, tags, type, bucket, lines, value, weight, min, max)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
    " ON CONFLICT(name, tags, type, bucket) DO UPDATE SET"
    "  lines = lines + excluded.lines,"
    "  value = CASE WHEN excluded.type = 'gauge' THEN excluded.value ELSE value + excluded.value END,"
    "  weight = weight + excluded.weight,"
    "  min = min(coalesce(min, excluded.min), coalesce(excluded.min, min)),"
    "  max = max(coalesce(max, excluded.max), coalesce(excluded.max, max))";

const char SCHEMA_SERIES_UPSERT[] =
    "INSERT INTO series(name, tags, type, prom_name, first_bucket, last_bucket,"
    " total_value, total_weight, min, max) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    " ON CONFLICT(name, tags, type) DO UPDATE SET"
    "  first_bucket = min(first_bucket, excluded.first_bucket),"
    "  last_bucket = max(last_bucket, excluded.last_bucket),"
    "  total_value = total_value + excluded.total_value,"
    "  total_weight = total_weight + excluded.total_weight,"
    "  min = min(coalesce(min, excluded.min), coalesce(excluded.min, min)),"
    "  max = max(coalesce(max, excluded.max), coalesce(excluded.max, max))";

/* The stored sketch and this flush's are merged by the upsert itself
 * (tally_sketch_merge, below): no read-modify-write in C, and a corrupt stored
 * blob fails the statement, hence the whole commit, instead of being replaced. */
const char SCHEMA_SKETCH_UPSERT[] =
    "INSERT INTO sketches(name, tags, type, bucket, data) VALUES(?1, ?2, ?3, ?4, ?5)"
    " ON CONFLICT(name, tags, type, bucket) DO UPDATE SET"
    "  data = tally_sketch_merge(type, data, excluded.data)";

const char SCHEMA_GAUGE_GET[] = "SELECT value FROM gauges WHERE name = ?1 AND tags = ?2";
const char SCHEMA_GAUGE_PUT[] =
    "INSERT INTO gauges(name, tags, value) VALUES(?1, ?2, ?3)"
    " ON CONFLICT(name, tags) DO UPDATE SET value = excluded.value";
const char SCHEMA_BATCH_INSERT[] =
    "INSERT INTO batches(batch_id, log_ms, digest, topic, partition, offset)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(batch_id) DO UPDATE SET"
    " log_ms = excluded.log_ms, digest = excluded.digest, topic = excluded.topic,"
    " partition = excluded.partition, offset = excluded.offset";
const char SCHEMA_BATCH_GET[] = "SELECT log_ms, digest FROM batches WHERE batch_id = ?1";
/* The same record at the same offset is the same record: a replay that
 * re-reads it (offsets reset by hand) keeps the first copy. */
const char SCHEMA_REJECT_INSERT[] =
    "INSERT INTO rejected_records(topic, partition, offset, reason, payload)"
    " VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING";
const char SCHEMA_OFFSET_PUT[] =
    "INSERT INTO kafka_offsets(topic, partition, next_offset) VALUES(?1, ?2, ?3)"
    " ON CONFLICT(topic, partition) DO UPDATE SET next_offset = excluded.next_offset";
const char SCHEMA_CLAIM_PUT[] =
    "INSERT INTO partition_claims(topic, partition, epoch, owner, claimed_ms)"
    " VALUES(?1, ?2, 1, ?3, ?4) ON CONFLICT(topic, partition) DO UPDATE SET"
    " epoch = epoch + 1, owner = excluded.owner, claimed_ms = excluded.claimed_ms"
    " RETURNING epoch";
const char SCHEMA_CLAIM_GET[] =
    "SELECT epoch, owner FROM partition_claims WHERE topic = ?1 AND partition = ?2";
const char SCHEMA_OFFSETS_GET[] =
    "SELECT partition, next_offset FROM kafka_offsets WHERE topic = ?1";
const char SCHEMA_BATCH_PRUNE[] = "DELETE FROM batches WHERE log_ms < ?1";

/* From the catalog: its totals include the rows retention deleted. */
const char SCHEMA_REBUILD_COUNTERS[] =
    "SELECT name, tags, total_value FROM series WHERE type = 'counter'";
const char SCHEMA_REBUILD_DISTRIBUTIONS[] =
    "SELECT name, tags, total_weight, total_value, min, max FROM series WHERE type = 'distribution'";
const char SCHEMA_REBUILD_GAUGES[] = "SELECT name, tags, value FROM gauges";
/* Every resolution: a union of HyperLogLogs is idempotent, so the buckets a
 * roll-up also holds count once. */
const char SCHEMA_REBUILD_SETS[] =
    "SELECT name, tags, bucket, data FROM sketches WHERE type = 'set'"
    " UNION ALL SELECT name, tags, bucket, data FROM rollup_sketches WHERE type = 'set'"
    " ORDER BY name, tags, bucket";
const char SCHEMA_REBUILD_BATCHES[] = "SELECT batch_id, log_ms, digest FROM batches";

const char SCHEMA_COUNTER_TOTALS_LIKE[] =
    "SELECT name, SUM(total_value) FROM series WHERE type = 'counter' AND name LIKE ?1 "
    "GROUP BY name";

const char SCHEMA_SERIES_BY_PROM_NAME[] =
    "SELECT prom_name, name, tags, type, total_value, total_weight FROM series"
    " WHERE prom_name IN (?1, ?2) ORDER BY name, tags, type";
const char SCHEMA_SERIES_ALL[] =
    "SELECT prom_name, name, tags, type, total_value, total_weight FROM series"
    " ORDER BY name, tags, type";
const char SCHEMA_SERIES_BY_NAME[] =
    "SELECT tags, type, total_value, total_weight FROM series WHERE name = ?1 ORDER BY tags, type";
const char SCHEMA_TOTALS_BY_NAME[] =
    "SELECT s.tags, s.type, s.total_value, s.total_weight, s.min, s.max, g.value FROM series s"
    " LEFT JOIN gauges g ON s.type = 'gauge' AND g.name = s.name AND g.tags = s.tags"
    " WHERE s.name = ?1 ORDER BY s.type, s.tags";
const char SCHEMA_ROWS_FROM[] =
    "SELECT bucket, value, weight, min, max FROM metrics"
    " WHERE name = ?1 AND tags = ?2 AND type = ?3 AND bucket >= ?4 ORDER BY bucket";

const char SCHEMA_SKETCHES_FROM[] =
    "SELECT bucket, data FROM sketches"
    " WHERE name = ?1 AND tags = ?2 AND type = ?3 AND bucket >= ?4 ORDER BY bucket";

/* One resolution's part of a spans read: rows ending at or after ?4 whose
 * bucket lies in the span [LO, HI). */
#define SPAN_PART(TABLE, COLS, WIDTH, WIDTH_FILTER, LO, HI)                                  \
    "SELECT bucket + " WIDTH ", " COLS ", " WIDTH " FROM " TABLE                            \
    " WHERE name = ?1 AND tags = ?2 AND type = ?3" WIDTH_FILTER " AND bucket >= ?4 - " WIDTH \
    " AND bucket >= " LO " AND bucket < " HI
#define SPANS(RAW, ROLLUP, COLS)                                                            \
    SPAN_PART(RAW, COLS, "?5", "", "?6", "?7")                                              \
    " UNION ALL " SPAN_PART(ROLLUP, COLS, "width", " AND width = ?8", "?9", "?10")          \
    " UNION ALL " SPAN_PART(ROLLUP, COLS, "width", " AND width = ?11", "?12", "?13")        \
    " ORDER BY 1"
const char SCHEMA_ROWS_SPANS[] = SPANS("metrics", "rollup_metrics", "value, weight, min, max");
const char SCHEMA_SKETCHES_SPANS[] = SPANS("sketches", "rollup_sketches", "data");
const char SCHEMA_SET_SKETCHES_ALL[] =
    "SELECT data FROM sketches WHERE name = ?1 AND tags = ?2 AND type = 'set'"
    " UNION ALL SELECT data FROM rollup_sketches WHERE name = ?1 AND tags = ?2 AND type = 'set'";

/* ---- retention (rollup.h) ---- */

const char SCHEMA_ROLLUP_STATE_GET[] = "SELECT width, rolled_until, kept_from FROM rollup_state";
const char SCHEMA_ROLLUP_STATE_PUT[] =
    "INSERT INTO rollup_state(width, rolled_until, kept_from) VALUES(?1, ?2, ?3)"
    " ON CONFLICT(width) DO UPDATE SET rolled_until = excluded.rolled_until,"
    " kept_from = excluded.kept_from";
/* The first bucket >= ?1 of any series in SRC: one seek per series. */
#define FIRST_OF(SRC, WIDTH_FILTER, TYPES)                                                   \
    "SELECT (SELECT m.bucket FROM " SRC " m WHERE m.name = s.name AND m.tags = s.tags"       \
    " AND m.type = s.type" WIDTH_FILTER " AND m.bucket >= ?1 ORDER BY m.bucket LIMIT 1) AS b" \
    " FROM series s WHERE s.type " TYPES " AND s.last_bucket >= ?1"
#define FIRST_BUCKET(ROWS, SKETCHES, WIDTH_FILTER)                                            \
    "SELECT min(b) FROM (" FIRST_OF(ROWS, WIDTH_FILTER, "<> 'set'") " UNION ALL "              \
    FIRST_OF(SKETCHES, WIDTH_FILTER, "= 'set'") ")"
const char SCHEMA_FIRST_RAW_BUCKET[] = FIRST_BUCKET("metrics", "sketches", "");
const char SCHEMA_FIRST_ROLLUP_BUCKET[] =
    FIRST_BUCKET("rollup_metrics", "rollup_sketches", " AND m.width = ?2");

/* The series overlapping [?2, ?3) joined to their rows there in SRC (the
 * catalog first: each series is one seek into SRC's primary key). */
#define OVERLAP(SRC, SRC_FILTER, TYPES)                                                      \
    " FROM series s CROSS JOIN " SRC " m ON m.name = s.name AND m.tags = s.tags"            \
    " AND m.type = s.type" SRC_FILTER " AND m.bucket >= ?2 AND m.bucket < ?3"               \
    " WHERE s.type IN " TYPES " AND s.last_bucket >= ?2 AND s.first_bucket < ?3"
/* Rolls the rows of [?2, ?3) up to width ?1: sums add, min/max combine, a
 * gauge takes the value of its window's last row. */
#define ROLLUP_ROWS(SRC, SRC_FILTER, LAST)                                                   \
    "INSERT INTO rollup_metrics(name, tags, type, width, bucket, last_bucket, lines, value,"  \
    " weight, min, max) SELECT name, tags, type, ?1, b, MAX(last), SUM(lines),"               \
    " CASE WHEN type = 'gauge' THEN MAX(CASE WHEN rn = 1 THEN value END) ELSE SUM(value) END," \
    " SUM(weight), MIN(min), MAX(max) FROM (SELECT m.name AS name, m.tags AS tags,"           \
    " m.type AS type, m.bucket - m.bucket % ?1 AS b, " LAST " AS last, m.lines AS lines,"     \
    " m.value AS value, m.weight AS weight, m.min AS min, m.max AS max, row_number() OVER"    \
    " (PARTITION BY m.name, m.tags, m.type, m.bucket - m.bucket % ?1 ORDER BY m.bucket DESC)" \
    " AS rn" OVERLAP(SRC, SRC_FILTER, "('counter', 'gauge', 'distribution')")               \
    ") GROUP BY name, tags, type, b"
#define ROLLUP_SKETCHES(SRC, SRC_FILTER)                                                     \
    "INSERT INTO rollup_sketches(name, tags, type, width, bucket, data)"                     \
    " SELECT m.name, m.tags, m.type, ?1, m.bucket - m.bucket % ?1,"                          \
    " tally_sketch_union(m.type, m.data)" OVERLAP(SRC, SRC_FILTER, "('distribution', 'set')") \
    " GROUP BY m.name, m.tags, m.type, m.bucket - m.bucket % ?1"
const char SCHEMA_ROLLUP_RAW_ROWS[] = ROLLUP_ROWS("metrics", "", "m.bucket");
const char SCHEMA_ROLLUP_RAW_SKETCHES[] = ROLLUP_SKETCHES("sketches", "");
const char SCHEMA_ROLLUP_ROWS[] =
    ROLLUP_ROWS("rollup_metrics", " AND m.width = ?4", "m.last_bucket");
const char SCHEMA_ROLLUP_SKETCHES[] = ROLLUP_SKETCHES("rollup_sketches", " AND m.width = ?4");

/* A late row (its bucket below rolled_until of width ?4) added to its roll-up. */
const char SCHEMA_ROLLUP_ROW_UPSERT[] =
    "INSERT INTO rollup_metrics(name, tags, type, width, bucket, last_bucket, lines, value,"
    " weight, min, max) VALUES(?1, ?2, ?3, ?4, ?5 - ?5 % ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    " ON CONFLICT(name, tags, type, width, bucket) DO UPDATE SET"
    "  lines = lines + excluded.lines,"
    "  value = CASE WHEN excluded.type <> 'gauge' THEN value + excluded.value"
    "   WHEN excluded.last_bucket >= last_bucket THEN excluded.value ELSE value END,"
    "  last_bucket = max(last_bucket, excluded.last_bucket),"
    "  weight = weight + excluded.weight,"
    "  min = min(coalesce(min, excluded.min), coalesce(excluded.min, min)),"
    "  max = max(coalesce(max, excluded.max), coalesce(excluded.max, max))";
const char SCHEMA_ROLLUP_SKETCH_UPSERT[] =
    "INSERT INTO rollup_sketches(name, tags, type, width, bucket, data)"
    " VALUES(?1, ?2, ?3, ?4, ?5 - ?5 % ?4, ?6)"
    " ON CONFLICT(name, tags, type, width, bucket) DO UPDATE SET"
    "  data = tally_sketch_merge(type, data, excluded.data)";

/* Deletes the rows of [?2, ?3) (?4: the width, of a roll-up table). */
#define EXPIRE(TABLE, WIDTH_FILTER)                                                          \
    "DELETE FROM " TABLE " WHERE (name, tags, type) IN (SELECT name, tags, type FROM series" \
    " WHERE last_bucket >= ?2 AND first_bucket < ?3)" WIDTH_FILTER                          \
    " AND bucket >= ?2 AND bucket < ?3"
const char SCHEMA_EXPIRE_RAW_ROWS[] = EXPIRE("metrics", "");
const char SCHEMA_EXPIRE_RAW_SKETCHES[] = EXPIRE("sketches", "");
const char SCHEMA_EXPIRE_ROWS[] = EXPIRE("rollup_metrics", " AND width = ?4 ");
const char SCHEMA_EXPIRE_SKETCHES[] = EXPIRE("rollup_sketches", " AND width = ?4 ");
/* Before the coarsest rows of a set go: their registers join the set's
 * all-time row (width 0, bucket 0), so its distinct count over all time stays. */
#define FOLD_SETS(SRC, SRC_FILTER)                                                           \
    "INSERT INTO rollup_sketches(name, tags, type, width, bucket, data)"                     \
    " SELECT m.name, m.tags, 'set', 0, 0, tally_sketch_union('set', m.data)"                 \
    OVERLAP(SRC, SRC_FILTER " ", "('set')") " GROUP BY m.name, m.tags"            \
    " ON CONFLICT(name, tags, type, width, bucket) DO UPDATE SET"                            \
    "  data = tally_sketch_merge('set', data, excluded.data)"
const char SCHEMA_FOLD_RAW_SETS[] = FOLD_SETS("sketches", "");
const char SCHEMA_FOLD_SETS[] = FOLD_SETS("rollup_sketches", " AND m.width = ?4");

/* tally_prom_name(name): prom_name_from_statsd() in SQL (the 3 -> 4 upgrade). */
static void sql_prom_name(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *name = sqlite3_value_text(argv[0]);
    int len = sqlite3_value_bytes(argv[0]);
    if (!name || len > 255) {
        sqlite3_result_error(ctx, "tally_prom_name: not a metric name", -1);
        return;
    }
    char out[PROM_NAME_MAX];
    size_t n = prom_name_from_statsd(out, (const char *)name, (size_t)len);
    sqlite3_result_text(ctx, out, (int)n, SQLITE_TRANSIENT);
}

/* A type's mergeable sketch, as tally_sketch_merge handles it: each decode
 * MERGES into its target (ddsketch.h, hll.h), so decoding both blobs into one
 * new sketch merges them. */
typedef struct sketch_kind {
    const char *type; /* metric_type_name() */
    void *(*make)(void);
    int (*decode)(void *into, const unsigned char *buf, size_t len, char *err, size_t errlen);
    int (*encode)(const void *s, unsigned char **out, size_t *len);
    void (*release)(void *s);
} sketch_kind;

static void *dd_make(void) { return ddsketch_new(); }
static int dd_decode(void *into, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    return ddsketch_decode(into, buf, len, err, errlen);
}
static int dd_encode(const void *s, unsigned char **out, size_t *len)
{
    return ddsketch_encode(s, out, len);
}
static void dd_release(void *s) { ddsketch_free(s); }
static void *hll_make(void) { return hll_new(); }
static int hll_decode_into(void *into, const unsigned char *buf, size_t len, char *err,
                           size_t errlen)
{
    return hll_decode(into, buf, len, err, errlen);
}
static int hll_encode_of(const void *s, unsigned char **out, size_t *len)
{
    return hll_encode(s, out, len);
}
static void hll_release(void *s) { hll_free(s); }

static const sketch_kind SKETCH_KINDS[] = {
    {"distribution", dd_make, dd_decode, dd_encode, dd_release}, /* DDSketch */
    {"set", hll_make, hll_decode_into, hll_encode_of, hll_release}, /* HyperLogLog */
};

static const sketch_kind *sketch_kind_of(const unsigned char *type)
{
    for (size_t i = 0; type && i < sizeof SKETCH_KINDS / sizeof SKETCH_KINDS[0]; i++)
        if (strcmp((const char *)type, SKETCH_KINDS[i].type) == 0)
            return &SKETCH_KINDS[i];
    return NULL;
}

/* Decodes argument `arg` (a sketch blob of kind k) into `into`; on a corrupt
 * or missing blob sets the SQL error, naming the function, and returns -1. */
static int sketch_arg(sqlite3_context *ctx, sqlite3_value **argv, int arg, const sketch_kind *k,
                      void *into)
{
    if (sqlite3_value_type(argv[arg]) != SQLITE_BLOB) {
        char msg[96];
        snprintf(msg, sizeof msg, "tally_sketch_merge: argument %d is not a blob", arg + 1);
        sqlite3_result_error(ctx, msg, -1);
        return -1;
    }
    const unsigned char *buf = sqlite3_value_blob(argv[arg]);
    int len = sqlite3_value_bytes(argv[arg]);
    char why[128] = "", msg[256];
    if (k->decode(into, buf ? buf : (const unsigned char *)"", (size_t)len, why, sizeof why) == 0)
        return 0;
    snprintf(msg, sizeof msg, "tally_sketch_merge: argument %d: corrupt %s sketch"
             " (%d bytes): %s", arg + 1, k->type, len, why);
    sqlite3_result_error(ctx, msg, -1);
    return -1;
}

/* tally_sketch_merge(type, a, b): the encoding of the merge of sketches a and
 * b of a series of `type`: 'distribution' (DDSketches, ddsketch.h) or 'set'
 * (HyperLogLogs, hll.h: the register-wise max). Any other type, a corrupt
 * blob or a NULL is an SQL error, never a silent drop. */
static void sql_sketch_merge(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *type = sqlite3_value_text(argv[0]);
    const sketch_kind *k = sketch_kind_of(type);
    if (!k) {
        char msg[128];
        snprintf(msg, sizeof msg, "tally_sketch_merge: no sketch merge for type '%.40s'",
                 type ? (const char *)type : "NULL");
        sqlite3_result_error(ctx, msg, -1);
        return;
    }
    void *s = k->make();
    if (!s) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    unsigned char *out = NULL;
    size_t len = 0;
    if (sketch_arg(ctx, argv, 1, k, s) == 0 && sketch_arg(ctx, argv, 2, k, s) == 0) {
        if (k->encode(s, &out, &len) == 0)
            sqlite3_result_blob64(ctx, out, len, free);
        else
            sqlite3_result_error_nomem(ctx);
    }
    k->release(s);
}

/* tally_sketch_union(type, data): the aggregate form of tally_sketch_merge,
 * the encoding of the merge of every sketch of the group (all of one type). */
typedef struct sketch_union {
    const sketch_kind *kind;
    void *sketch;
    int failed;
} sketch_union;

static void sql_sketch_union_step(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    sketch_union *u = sqlite3_aggregate_context(ctx, sizeof *u);
    if (!u) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    if (u->failed)
        return;
    if (!u->kind) {
        const unsigned char *type = sqlite3_value_text(argv[0]);
        u->kind = sketch_kind_of(type);
        if (!u->kind) {
            sqlite3_result_error(ctx, "tally_sketch_union: no sketch merge for this type", -1);
            u->failed = 1;
            return;
        }
        u->sketch = u->kind->make();
        if (!u->sketch) {
            sqlite3_result_error_nomem(ctx);
            u->failed = 1;
            return;
        }
    }
    if (sketch_arg(ctx, argv, 1, u->kind, u->sketch) != 0)
        u->failed = 1;
}

static void sql_sketch_union_final(sqlite3_context *ctx)
{
    sketch_union *u = sqlite3_aggregate_context(ctx, 0);
    if (!u || !u->sketch) {
        if (!u || !u->failed)
            sqlite3_result_null(ctx);
        return;
    }
    unsigned char *out = NULL;
    size_t len = 0;
    if (u->failed) {
        sqlite3_result_error(ctx, "tally_sketch_union: a corrupt sketch", -1);
    } else if (u->kind->encode(u->sketch, &out, &len) == 0) {
        sqlite3_result_blob64(ctx, out, len, free);
    } else {
        sqlite3_result_error_nomem(ctx);
    }
    u->kind->release(u->sketch);
}

static int exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: %s: %s", what, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Reads meta[key] into buf; returns 1 found, 0 missing, -1 error. */
static int meta_get(sqlite3 *db, const char *key, char *buf, size_t buflen, char *err,
                    size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int found = -1;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: read meta: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        snprintf(buf, buflen, "%s", v ? (const char *)v : "");
        found = 1;
    } else if (rc == SQLITE_DONE) {
        found = 0;
    } else {
        snprintf(err, errlen, "sqlite: read meta: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return found;
}

/* Runs the upgrades from `version` on; leaves version at the one reached. */
static int upgrade(sqlite3 *db, char *version, size_t len, char *err, size_t errlen)
{
    static const char *const steps[] = {NULL, UPGRADE_1_TO_2, UPGRADE_2_TO_3, UPGRADE_3_TO_4,
                                        UPGRADE_4_TO_5, UPGRADE_5_TO_6};
    for (int v = atoi(version); v >= 1 && v < SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "upgrade to schema version %d", v + 1);
        if (exec(db, steps[v], what, err, errlen) < 0)
            return -1;
        snprintf(version, len, "%d", v + 1);
    }
    return 0;
}

static int check_bucket_seconds(const char *path, const char *bucket, int bucket_seconds,
                                char *err, size_t errlen)
{
    char *end;
    long b = strtol(bucket, &end, 10);
    if (*end == '\0' && b == bucket_seconds)
        return 0;
    snprintf(err, errlen,
             "%s was created with flusher.bucket_seconds = %s but the configuration says %d;"
             " buckets of different sizes cannot be mixed: set flusher.bucket_seconds = %s"
             " or use a new sqlite.path",
             path, bucket, bucket_seconds, bucket);
    return -1;
}

int schema_init_writer(sqlite3 *db, const char *path, int bucket_seconds, char *err,
                       size_t errlen)
{
    if (sqlite3_create_function(db, "tally_prom_name", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                NULL, sql_prom_name, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: register tally_prom_name: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (sqlite3_create_function(db, "tally_sketch_merge", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                NULL, sql_sketch_merge, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: register tally_sketch_merge: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (sqlite3_create_function(db, "tally_sketch_union", 2, SQLITE_UTF8 | SQLITE_DETERMINISTIC,
                                NULL, NULL, sql_sketch_union_step,
                                sql_sketch_union_final) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite: register tally_sketch_union: %s", sqlite3_errmsg(db));
        return -1;
    }
    if (exec(db, "BEGIN IMMEDIATE", "begin schema transaction", err, errlen) < 0)
        return -1;
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT OR IGNORE INTO meta(key, value) VALUES('schema_version', '%d'),"
             " ('bucket_seconds', '%d')", SCHEMA_VERSION, bucket_seconds);
    char version[64], bucket[64];
    int ok = exec(db, SCHEMA, "create schema", err, errlen) == 0 &&
             exec(db, sql, "initialise meta", err, errlen) == 0 &&
             meta_get(db, "schema_version", version, sizeof version, err, errlen) == 1 &&
             meta_get(db, "bucket_seconds", bucket, sizeof bucket, err, errlen) == 1 &&
             upgrade(db, version, sizeof version, err, errlen) == 0 &&
             exec(db, SCHEMA_INDEXES, "create indexes", err, errlen) == 0;
    if (ok && atoi(version) != SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema_version is '%s', this tally-flusher writes version %d",
                 path, version, SCHEMA_VERSION);
        ok = 0;
    }
    ok = ok && check_bucket_seconds(path, bucket, bucket_seconds, err, errlen) == 0;
    if (!ok) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return exec(db, "COMMIT", "commit schema", err, errlen);
}
