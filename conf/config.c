/*
 * config.c — the configuration table and the code that reads it.
 *
 * Every key Tally understands is one row of `config_keys` below: its dotted
 * name, its type, its default, its range (or allowed values), where it lives
 * in `tally_config` and one line of description. Nothing else in this file
 * knows about any particular key: config_defaults() copies the defaults out of
 * the table, config_load() walks the parsed libconfig tree and looks each
 * setting up in the table, and config_print_reference() prints the table as
 * the markdown that README.md carries. Adding a key is adding a field to
 * config.h and a row here; the docs, the defaults and the checks follow.
 * A key that may not exceed another (kafka.min_insync_replicas <=
 * kafka.replication_factor) is a row of the small `config_bounds` table,
 * checked after the whole file is read, since either key may come first.
 *
 * A row's name is the stringified member path (`ingest.listen_port` is both
 * the key and the C member designator), so a key cannot drift from its field,
 * and each row macro checks the member's C type with _Generic, so an INT row
 * pointing at a `long long` field does not compile.
 *
 * Trade-offs. Validation is strict: an unknown key, a known key in the wrong
 * place, a float where an integer is expected or a value out of range is an
 * error, never a warning — a typo in a durability setting must stop the
 * process, not be silently replaced by its default. We report every problem
 * in one pass (walking the tree in file order) rather than stopping at the
 * first, so an operator fixes a file in one edit. libconfig itself stops at
 * the first syntax error, so a file that does not parse is exactly one
 * problem. Strings are stored in fixed arrays (no allocation, a config can be
 * copied by value); a string that does not fit is an error, not truncated.
 * Enum keys are kept as the strings the operator wrote (case-sensitive), so
 * the module using them maps them once; only membership is checked here.
 * Keys missing from the file keep their defaults.
 */
#include "config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key_type { KEY_INT, KEY_INT64, KEY_BOOL, KEY_STRING, KEY_ENUM };

struct key_row {
    const char *key;             /* dotted path, also the member designator */
    enum key_type type;
    size_t offset;               /* offsetof(tally_config, <key>) */
    size_t size;                 /* sizeof the field (string capacity incl. NUL) */
    long long def_num;           /* default of INT, INT64, BOOL */
    const char *def_str;         /* default of STRING, ENUM */
    long long min, max;          /* inclusive range of INT, INT64 */
    const char *const *allowed;  /* ENUM: NULL-terminated allowed values */
    int empty_ok;                /* STRING: "" allowed (an optional path or name) */
    const char *description;
};

#define MEMBER(m) (((tally_config *)0)->m)

/* _Generic has no default association: a row whose field has another C type
 * is a compile error. The controlling expression is not evaluated. */
#define INT_ROW(m, def, lo, hi, desc)                                          \
    { .key = #m, .type = KEY_INT, .offset = offsetof(tally_config, m),         \
      .size = _Generic(MEMBER(m), int: sizeof(int)),                           \
      .def_num = (def), .min = (lo), .max = (hi), .description = (desc) }
#define INT64_ROW(m, def, lo, hi, desc)                                        \
    { .key = #m, .type = KEY_INT64, .offset = offsetof(tally_config, m),       \
      .size = _Generic(MEMBER(m), long long: sizeof(long long)),               \
      .def_num = (def), .min = (lo), .max = (hi), .description = (desc) }
#define BOOL_ROW(m, def, desc)                                                 \
    { .key = #m, .type = KEY_BOOL, .offset = offsetof(tally_config, m),        \
      .size = _Generic(MEMBER(m), int: sizeof(int)),                           \
      .def_num = (def), .min = 0, .max = 1, .description = (desc) }
#define STRING_ROW(m, def, desc)                                               \
    { .key = #m, .type = KEY_STRING, .offset = offsetof(tally_config, m),      \
      .size = _Generic(MEMBER(m), char *: sizeof(MEMBER(m))),                  \
      .def_str = (def), .description = (desc) }
#define OPTIONAL_STRING_ROW(m, desc)                                            \
    { .key = #m, .type = KEY_STRING, .offset = offsetof(tally_config, m),      \
      .size = _Generic(MEMBER(m), char *: sizeof(MEMBER(m))),                  \
      .def_str = "", .empty_ok = 1, .description = (desc) }
#define ENUM_ROW(m, def, values, desc)                                         \
    { .key = #m, .type = KEY_ENUM, .offset = offsetof(tally_config, m),        \
      .size = _Generic(MEMBER(m), char *: sizeof(MEMBER(m))),                  \
      .def_str = (def), .allowed = (values), .description = (desc) }

#define KIB 1024LL
#define MIB (1024LL * 1024LL)

static const char *const synchronous_values[] = { "FULL", "NORMAL", "EXTRA", NULL };
static const char *const log_level_values[] = { "debug", "info", "warn", "error", NULL };
static const char *const on_unavailable_values[] = { "accept", "reject", NULL };

static const struct key_row config_keys[] = {
    STRING_ROW(ingest.listen_address, "127.0.0.1",
               "Address the HTTP listener binds to."),
    INT_ROW(ingest.listen_port, 8080, 1, 65535,
            "TCP port of the HTTP listener."),
    BOOL_ROW(ingest.reuse_port, 0,
             "Open the HTTP listener with SO_REUSEPORT, so several tally-ingest processes share listen_port and the kernel spreads connections over them."),
    INT64_ROW(ingest.max_body_bytes, 8 * MIB, 1 * KIB, 256 * MIB,
              "Largest accepted request body, in bytes."),
    INT_ROW(ingest.max_lines, 50000, 1, 1000000,
            "Most StatsD lines accepted in one batch."),
    INT_ROW(ingest.max_name_length, 200, 1, 255,
            "Longest metric name, in bytes."),
    INT_ROW(ingest.max_tags_length, 512, 0, 1024,
            "Longest tag list of one line, in bytes."),
    INT_ROW(ingest.max_errors_reported, 100, 1, 10000,
            "Most line errors listed in the response to a rejected batch."),
    INT_ROW(ingest.max_inflight_batches, 1024, 1, 100000,
            "Most batches waiting for Kafka delivery and Redis apply at once."),
    INT64_ROW(ingest.max_inflight_bytes, 32 * MIB, 1 * MIB, 4096 * MIB,
              "Most request bytes (bodies and their records) held for unanswered batches."),
    INT_ROW(ingest.max_connections, 512, 1, 1000000,
            "Most HTTP connections open at once; one more is answered 503 and closed."),
    INT_ROW(ingest.client_timeout_seconds, 10, 1, 3600,
            "Time a client has to send a request whole (headers and body) from its first byte; then 408 and closed."),
    INT_ROW(ingest.keepalive_timeout_seconds, 60, 1, 3600,
            "Time an idle keep-alive connection (or one whose client stopped sending) is kept open."),
    INT64_ROW(ingest.max_header_bytes, 16 * KIB, 1 * KIB, 1 * MIB,
              "Largest request line and header block, in bytes; more is answered 413."),
    INT_ROW(ingest.max_header_count, 64, 1, 1000,
            "Most request header lines; more is answered 431."),
    INT_ROW(ingest.max_series_per_batch, 10000, 1, 1000000,
            "Most distinct series (name, tags, type) in one batch; more is answered 413."),
    INT_ROW(ingest.max_live_series, 1000000, 1, 100000000,
            "Most series the live view holds (about: counted with a HyperLogLog); a batch bringing a new series past it is answered 422."),
    OPTIONAL_STRING_ROW(ingest.tokens_file,
                        "File of bearer tokens (name, scopes, token, rate limits); empty: no authentication."),
    BOOL_ROW(ingest.allow_unauthenticated, 0,
             "Allow listening on a non-loopback address without tokens_file."),

    STRING_ROW(kafka.brokers, "127.0.0.1:9092",
               "Bootstrap brokers, a comma-separated host:port list."),
    STRING_ROW(kafka.topic, "tally-events",
               "Topic that carries event batches from ingest to the flusher."),
    INT_ROW(kafka.partitions, 1, 1, 1024,
            "Partition count the topic is created with."),
    INT_ROW(kafka.replication_factor, 1, 1, 32,
            "Replicas of each partition the topic is created with; tally-ingest acknowledges nothing while a partition has fewer."),
    INT_ROW(kafka.min_insync_replicas, 1, 1, 32,
            "Topic min.insync.replicas set at creation (at most kafka.replication_factor); tally-ingest acknowledges nothing while the topic's is lower."),
    INT_ROW(kafka.delivery_timeout_ms, 5000, 100, 300000,
            "How long a batch may wait for Kafka delivery before it is refused."),
    INT_ROW(kafka.linger_ms, 0, 0, 1000,
            "Producer linger.ms; it is the floor of ack latency."),
    INT_ROW(kafka.max_message_bytes, 1000000, 1024, 16000000,
            "Largest batch record sent to Kafka (at most the broker's message.max.bytes); a larger batch is answered 413."),
    OPTIONAL_STRING_ROW(kafka.consumer_group,
                        "Consumer group of the flushers that share one SQLite file (offsets live in SQLite); empty: tally-flusher-TOPIC."),
    OPTIONAL_STRING_ROW(kafka.client_properties,
                        "File of librdkafka security settings (security.protocol, sasl.*, ssl.*), one key=value per line; empty: none."),

    STRING_ROW(redis.host, "127.0.0.1",
               "Redis server host."),
    INT_ROW(redis.port, 6379, 1, 65535,
            "Redis server port."),
    INT_ROW(redis.timeout_ms, 500, 1, 60000,
            "Redis connect and command timeout, in milliseconds."),
    ENUM_ROW(redis.on_unavailable, "accept", on_unavailable_values,
             "When Redis cannot apply a batch Kafka holds: accept (200, live view stale) or reject (503)."),
    BOOL_ROW(redis.require_durable, 1,
             "Refuse a Redis without AOF and maxmemory-policy noeviction."),
    BOOL_ROW(redis.cluster, 0,
             "redis.host:port is a seed of a Redis Cluster: calls go to the master of their slot (MOVED, ASK, failover followed)."),
    INT_ROW(redis.min_replicas_acked, 0, 0, 16,
            "After each applied transaction, WAIT for this many replicas (redis.timeout_ms); fewer marks the live view stale."),
    INT_ROW(redis.shards, 1, 1, 1024,
            "Shards of the live view (each one Redis Cluster slot, one transaction per shard): several per cluster master; changing it needs tally-flusher --rebuild-redis."),
    OPTIONAL_STRING_ROW(redis.username,
                        "Redis ACL user for AUTH (empty: the default user)."),
    OPTIONAL_STRING_ROW(redis.password_file,
                        "File holding the Redis password (first line); empty: no AUTH."),

    STRING_ROW(sqlite.path, "var/data/tally.db",
               "SQLite database file (relative paths: from the working directory)."),
    ENUM_ROW(sqlite.synchronous, "FULL", synchronous_values,
             "SQLite PRAGMA synchronous of the store."),

    INT_ROW(flusher.max_batch_events, 1000000, 1, 10000000,
            "Most events aggregated into one SQLite transaction."),
    INT_ROW(flusher.max_interval_ms, 1000, 10, 600000,
            "Longest time between two flusher commits, in milliseconds."),
    INT_ROW(flusher.bucket_seconds, 10, 1, 86400,
            "Width of a time bucket, in seconds."),
    STRING_ROW(flusher.metrics_address, "127.0.0.1",
               "Address the flusher's /metrics listener binds to (a numeric IPv4 or IPv6 address)."),
    INT_ROW(flusher.metrics_port, 8081, 0, 65535,
            "TCP port of the flusher's /metrics listener; 0 turns it off."),
    OPTIONAL_STRING_ROW(flusher.instance_id,
                        "Kafka static group member id (group.instance.id) of this flusher, unique in its group; empty: the host name."),
    INT_ROW(flusher.session_timeout_ms, 10000, 6000, 300000,
            "Kafka group session timeout: how long a flusher that stopped answering keeps its partitions."),

    BOOL_ROW(retention.enabled, 1,
             "Roll buckets up to 1 min and 1 h rows and delete each resolution past its age."),
    INT_ROW(retention.raw_seconds, 1209600, 0, 1000000000,
            "Age (bucket end) past which raw buckets are deleted, once rolled up; 0 = kept forever."),
    INT_ROW(retention.minute_seconds, 7776000, 0, 1000000000,
            "Age past which 1-minute roll-ups are deleted, once rolled up to 1 h; 0 = kept forever."),
    INT_ROW(retention.hour_seconds, 63072000, 0, 1000000000,
            "Age past which 1-hour roll-ups are deleted (series totals stay); 0 = kept forever."),

    INT_ROW(dedup.window_seconds, 3600, 60, 2592000,
            "How long a batch idempotency key is remembered, in seconds."),

    INT_ROW(query.threads, 2, 1, 64,
            "Reader threads that run queries against SQLite (off the event loop)."),
    INT_ROW(query.max_queued, 1024, 1, 100000,
            "Queries waiting for a reader thread before new ones get 503."),
    INT_ROW(query.lookback_seconds, 300, 1, 86400,
            "PromQL lookback: how far back an instant selector finds a sample."),
    INT_ROW(query.max_points, 11000, 1, 1000000,
            "Most points per series a range query may ask for ((end - start) / step)."),
    INT64_ROW(query.max_samples, 50000000, 1000, 1000000000,
              "Most samples one query may hold in memory."),

    BOOL_ROW(statsd.udp_enabled, 1,
             "Listen for StatsD datagrams on UDP."),
    BOOL_ROW(statsd.tcp_enabled, 1,
             "Listen for StatsD lines on TCP."),
    STRING_ROW(statsd.listen_address, "127.0.0.1",
               "Address the StatsD listeners bind to."),
    INT_ROW(statsd.port, 8125, 1, 65535,
            "UDP and TCP port of the StatsD listeners."),
    INT_ROW(statsd.udp_readers, 1, 1, 16,
            "UDP reader threads, each with its own socket (SO_REUSEPORT)."),
    INT64_ROW(statsd.rcvbuf_bytes, 8 * MIB, 64 * KIB, 1024 * MIB,
              "Receive buffer of each UDP socket (SO_RCVBUFFORCE, else SO_RCVBUF up to net.core.rmem_max)."),
    INT_ROW(statsd.batch_lines, 10000, 1, 1000000,
            "Lines gathered into one batch before it goes to Kafka (at most ingest.max_lines)."),
    INT_ROW(statsd.batch_ms, 50, 1, 10000,
            "Longest a line waits for its batch to fill, in ms."),
    BOOL_ROW(statsd.fold_counters, 1,
             "Fold a batch's counter lines that differ only in their value into one event (false: for flushers older than the fold)."),
    INT_ROW(statsd.max_tcp_connections, 256, 1, 100000,
            "Most StatsD TCP connections at once; more are closed at once."),
    INT_ROW(statsd.tcp_idle_seconds, 300, 1, 86400,
            "A StatsD TCP connection silent this long is closed."),
    BOOL_ROW(statsd.allow_remote, 0,
             "Let the StatsD listeners bind a non-loopback address (StatsD has no credentials)."),

    BOOL_ROW(cache.enabled, 1,
             "Cache query answers in the cache Redis (cache-aside)."),
    STRING_ROW(cache.host, "127.0.0.1",
               "Cache Redis host: its own instance (allkeys-lru), never the state Redis."),
    INT_ROW(cache.port, 6380, 1, 65535,
            "Cache Redis port."),
    BOOL_ROW(cache.cluster, 0,
             "cache.host:port is a seed of a Redis Cluster: the cache (one slot, {cache}) is used on that slot's master, followed when it moves."),
    INT_ROW(cache.timeout_ms, 250, 1, 10000,
            "Longest wait for a cache Redis reply before the read goes to SQLite."),
    INT_ROW(cache.ttl_counter_seconds, 60, 1, 86400,
            "TTL of a cached answer over counters, in seconds."),
    INT_ROW(cache.ttl_gauge_seconds, 30, 1, 86400,
            "TTL of a cached answer over gauges."),
    INT_ROW(cache.ttl_distribution_seconds, 60, 1, 86400,
            "TTL of a cached answer over distributions."),
    INT_ROW(cache.ttl_set_seconds, 60, 1, 86400,
            "TTL of a cached answer over sets."),
    INT_ROW(cache.ttl_labels_seconds, 300, 1, 86400,
            "TTL of cached label lists, label values, series and metadata."),
    INT_ROW(cache.ttl_negative_seconds, 10, 1, 86400,
            "TTL of a cached \"no such metric\" answer."),
    INT_ROW(cache.ttl_jitter_percent, 10, 0, 50,
            "Random extra TTL, up to this percentage, so keys do not expire together."),
    INT_ROW(cache.lock_ms, 2000, 10, 60000,
            "Expiry of the single-flight lock a miss takes while it queries SQLite."),
    INT_ROW(cache.wait_ms, 500, 0, 10000,
            "How long a miss waits for another's single-flight query before its own."),
    INT_ROW(cache.warm_keys, 256, 0, 100000,
            "Hottest answers tracked and re-populated when the cache comes back empty."),
    INT_ROW(cache.breaker_failures, 3, 1, 1000,
            "Consecutive cache failures that open the circuit breaker."),
    INT_ROW(cache.breaker_open_ms, 5000, 100, 600000,
            "How long an open breaker sends reads straight to SQLite."),
    INT64_ROW(cache.local_bytes, 16 * MIB, 0, 1024 * MIB,
              "In-process copy of hot answers, invalidated by the cache Redis' tracking; 0 = off."),

    ENUM_ROW(log.level, "info", log_level_values,
             "Lowest level that is logged."),
    OPTIONAL_STRING_ROW(log.file,
                        "Log file, appended to and opened again on SIGHUP; empty: stderr (the journal under systemd)."),
};

#define CONFIG_KEY_COUNT (sizeof config_keys / sizeof config_keys[0])

/*
 * Numeric keys bounded by another key: `lesser` may not exceed `greater`.
 * Checked once the whole file is read (either key may come first, or be
 * absent and keep its default), and only when both values were valid: a
 * refused value already has its own problem line. `why` ends the message.
 */
struct key_bound {
    const char *lesser, *greater;
    const char *why;
};

static const struct key_bound config_bounds[] = {
    { "kafka.min_insync_replicas", "kafka.replication_factor",
      "no write could reach more in-sync replicas than a partition has; lower it or raise "
      "kafka.replication_factor" },
};

#define CONFIG_BOUND_COUNT (sizeof config_bounds / sizeof config_bounds[0])

/* ---- table helpers ------------------------------------------------------ */

static void *field_of(tally_config *cfg, const struct key_row *row)
{
    return (char *)cfg + row->offset;
}

static bool enum_allows(const struct key_row *row, const char *value)
{
    for (const char *const *v = row->allowed; *v; v++)
        if (strcmp(*v, value) == 0)
            return true;
    return false;
}

/* Writes "A|B|C" for an enum row into buf (always NUL-terminated). */
static void format_allowed(const struct key_row *row, const char *sep, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const char *const *v = row->allowed; *v; v++) {
        int n = snprintf(buf + used, len - used, "%s%s", v == row->allowed ? "" : sep, *v);
        if (n < 0 || (size_t)n >= len - used)
            return; /* truncated; buf stays terminated */
        used += (size_t)n;
    }
}

static const struct key_row *find_row(const char *key)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
        if (strcmp(config_keys[i].key, key) == 0)
            return &config_keys[i];
    return NULL;
}

/* True if `path` names a section: some key starts with "path.". */
static bool is_section(const char *path)
{
    size_t n = strlen(path);
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++)
        if (strncmp(config_keys[i].key, path, n) == 0 && config_keys[i].key[n] == '.')
            return true;
    return false;
}

/* A key whose last segment is `name`, to suggest for a misplaced key. */
static const struct key_row *find_by_leaf(const char *name)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const char *dot = strrchr(config_keys[i].key, '.');
        const char *leaf = dot ? dot + 1 : config_keys[i].key;
        if (strcmp(leaf, name) == 0)
            return &config_keys[i];
    }
    return NULL;
}

/* Writes the top-level section names, "a, b, c", into buf. */
static void format_sections(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const char *key = config_keys[i].key;
        const char *dot = strchr(key, '.');
        if (!dot)
            continue;
        int seg = (int)(dot - key);
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strncmp(config_keys[j].key, key, (size_t)seg + 1) == 0;
        if (seen)
            continue;
        int n = snprintf(buf + used, len - used, "%s%.*s", used ? ", " : "", seg, key);
        if (n < 0 || (size_t)n >= len - used)
            return;
        used += (size_t)n;
    }
}

/* Checks the table's own invariants (debug builds). */
static void check_table(void)
{
#ifndef NDEBUG
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const struct key_row *r = &config_keys[i];
        assert(r->key && r->description && strchr(r->key, '.'));
        assert(find_row(r->key) == r); /* no duplicate keys */
        switch (r->type) {
        case KEY_INT:
        case KEY_INT64:
        case KEY_BOOL:
            assert(r->min <= r->def_num && r->def_num <= r->max);
            break;
        case KEY_STRING:
            assert(r->def_str && (r->def_str[0] || r->empty_ok) && strlen(r->def_str) < r->size);
            break;
        case KEY_ENUM:
            assert(r->def_str && r->allowed && enum_allows(r, r->def_str));
            for (const char *const *v = r->allowed; *v; v++)
                assert(strlen(*v) < r->size);
            break;
        }
    }
    for (size_t i = 0; i < CONFIG_BOUND_COUNT; i++) {
        const struct key_row *lesser = find_row(config_bounds[i].lesser);
        const struct key_row *greater = find_row(config_bounds[i].greater);
        assert(lesser && greater && config_bounds[i].why);
        assert(lesser->type == KEY_INT || lesser->type == KEY_INT64);
        assert(greater->type == KEY_INT || greater->type == KEY_INT64);
        assert(lesser->def_num <= greater->def_num);
    }
#endif
}

/* ---- defaults ----------------------------------------------------------- */

/* Stores a validated string (len < row->size) into its field, zero-filled. */
static void store_string(tally_config *cfg, const struct key_row *row, const char *s, size_t len)
{
    char *dst = field_of(cfg, row);
    assert(len < row->size);
    memset(dst, 0, row->size);
    memcpy(dst, s, len);
}

/*
 * Requires cfg != NULL. Guarantees every field holds its table default and all
 * padding and unused string bytes are zero (so two default configs compare
 * equal with memcmp).
 */
void config_defaults(tally_config *cfg)
{
    assert(cfg);
    check_table();
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const struct key_row *row = &config_keys[i];
        switch (row->type) {
        case KEY_INT:
        case KEY_BOOL:
            *(int *)field_of(cfg, row) = (int)row->def_num;
            break;
        case KEY_INT64:
            *(long long *)field_of(cfg, row) = row->def_num;
            break;
        case KEY_STRING:
        case KEY_ENUM:
            store_string(cfg, row, row->def_str, strlen(row->def_str));
            break;
        }
    }
}

/* ---- loading ------------------------------------------------------------ */

struct load_ctx {
    const char *path;    /* file name used when libconfig gives none */
    tally_config *cfg;
    char *out;           /* problems buffer, may be NULL when out_len == 0 */
    size_t out_len;
    size_t used;         /* bytes written to out, excluding the NUL */
    int count;
    bool refused[CONFIG_KEY_COUNT]; /* a row whose value in the file was refused */
};

__attribute__((format(printf, 5, 6)))
static void report(struct load_ctx *ctx, const char *file, int line, const char *key,
                   const char *fmt, ...)
{
    ctx->count++;
    if (ctx->out_len == 0 || ctx->used + 1 >= ctx->out_len)
        return; /* buffer full: still counted */
    char *p = ctx->out + ctx->used;
    size_t room = ctx->out_len - ctx->used;
    int n = snprintf(p, room, "%s:%d: %s: ", file ? file : ctx->path, line, key);
    if (n >= 0 && (size_t)n < room) {
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(p + n, room - (size_t)n, fmt, ap);
        va_end(ap);
        if (m >= 0 && (size_t)(n + m) < room) {
            n += m;
            if ((size_t)n + 1 < room) {
                p[n++] = '\n';
                p[n] = '\0';
            }
        } else {
            n = (int)room - 1; /* truncated */
        }
    } else {
        n = (int)room - 1;
    }
    ctx->used += (size_t)n;
    ctx->out[ctx->used] = '\0';
}

static const char *type_name(int type)
{
    switch (type) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: return "an integer";
    case CONFIG_TYPE_INT64: return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "an unknown type";
    }
}

/*
 * libconfig 1.5 reads a plain integer literal that does not fit in 32 bits as
 * an int holding only its low 32 bits (5000000000 reads as 705032704, and
 * 4294967396 as 100, which is in range for several keys). To never accept a
 * wrapped value, re-read the literal `name = <literal>` from the setting's
 * source line; if it does not fit an int and wraps to `got`, copy its text
 * into `literal` and return true. If the file or the literal cannot be found
 * (e.g. the value is on the next line), returns false: nothing to add.
 */
static bool literal_wrapped(const char *file, int line, const char *name, int got,
                            char *literal, size_t literal_len)
{
    if (!file || !name || line <= 0)
        return false;
    FILE *f = fopen(file, "r");
    if (!f)
        return false;
    char *buf = NULL;
    size_t cap = 0;
    bool wrapped = false;
    int n = 0;
    while (getline(&buf, &cap, f) >= 0) {
        if (++n < line)
            continue;
        size_t name_len = strlen(name);
        for (const char *p = buf; !wrapped && (p = strstr(p, name)) != NULL; p += name_len) {
            if (p > buf && (isalnum((unsigned char)p[-1]) || strchr("_-*", p[-1])))
                continue; /* the name is the tail of a longer one */
            const char *q = p + name_len;
            while (isspace((unsigned char)*q))
                q++;
            if (*q != '=' && *q != ':')
                continue;
            q++;
            while (isspace((unsigned char)*q))
                q++;
            char *end;
            errno = 0;
            long long v = strtoll(q, &end, 0);
            if (end == q)
                continue;
            bool too_big = errno == ERANGE || v < INT_MIN || v > INT_MAX;
            if (too_big && (errno == ERANGE || (int)(unsigned int)(unsigned long long)v == got)) {
                snprintf(literal, literal_len, "%.*s", (int)(end - q), q);
                wrapped = true;
            }
        }
        break;
    }
    free(buf);
    (void)fclose(f); /* read-only stream: nothing to lose on close */
    return wrapped;
}

/* Validates setting `s` against `row`; stores it into ctx->cfg only if valid. */
static void apply_row(struct load_ctx *ctx, const struct key_row *row, const config_setting_t *s)
{
    const char *file = config_setting_source_file(s);
    int line = (int)config_setting_source_line(s);
    int type = config_setting_type(s);

    switch (row->type) {
    case KEY_INT:
    case KEY_INT64: {
        if (type != CONFIG_TYPE_INT && type != CONFIG_TYPE_INT64) {
            report(ctx, file, line, row->key, "expected an integer, got %s", type_name(type));
            return;
        }
        long long v = type == CONFIG_TYPE_INT ? (long long)config_setting_get_int(s)
                                              : config_setting_get_int64(s);
        char literal[64];
        if (type == CONFIG_TYPE_INT &&
            literal_wrapped(file ? file : ctx->path, line, config_setting_name(s), (int)v,
                            literal, sizeof literal)) {
            report(ctx, file, line, row->key, "%s is out of range %lld..%lld", literal, row->min,
                   row->max);
            return;
        }
        if (v < row->min || v > row->max) {
            report(ctx, file, line, row->key, "%lld is out of range %lld..%lld", v, row->min,
                   row->max);
            return;
        }
        if (row->type == KEY_INT)
            *(int *)field_of(ctx->cfg, row) = (int)v;
        else
            *(long long *)field_of(ctx->cfg, row) = v;
        return;
    }
    case KEY_BOOL:
        if (type != CONFIG_TYPE_BOOL) {
            report(ctx, file, line, row->key, "expected true or false, got %s", type_name(type));
            return;
        }
        *(int *)field_of(ctx->cfg, row) = config_setting_get_bool(s) ? 1 : 0;
        return;
    case KEY_STRING:
    case KEY_ENUM: {
        const char *v = type == CONFIG_TYPE_STRING ? config_setting_get_string(s) : NULL;
        if (!v) {
            report(ctx, file, line, row->key, "expected a string, got %s", type_name(type));
            return;
        }
        size_t len = strlen(v);
        if (row->type == KEY_ENUM) {
            if (!enum_allows(row, v)) {
                char allowed[128];
                format_allowed(row, "|", allowed, sizeof allowed);
                report(ctx, file, line, row->key, "\"%.64s%s\" is not one of %s", v,
                       len > 64 ? "..." : "", allowed);
                return;
            }
        } else if (len == 0 && !row->empty_ok) {
            report(ctx, file, line, row->key, "must not be empty");
            return;
        } else if (len >= row->size) {
            report(ctx, file, line, row->key, "too long: %zu bytes, at most %zu", len,
                   row->size - 1);
            return;
        }
        store_string(ctx->cfg, row, v, len);
        return;
    }
    }
}

static long long number_of(tally_config *cfg, const struct key_row *row)
{
    return row->type == KEY_INT64 ? *(long long *)field_of(cfg, row)
                                  : (long long)*(int *)field_of(cfg, row);
}

/* Reports every bound of config_bounds the loaded values break, at the line
 * of the lesser key (or of the greater when the lesser is not in the file). */
static void check_bounds(struct load_ctx *ctx, const config_t *lc)
{
    for (size_t i = 0; i < CONFIG_BOUND_COUNT; i++) {
        const struct key_bound *b = &config_bounds[i];
        const struct key_row *lesser = find_row(b->lesser), *greater = find_row(b->greater);
        if (ctx->refused[lesser - config_keys] || ctx->refused[greater - config_keys])
            continue;
        long long lo = number_of(ctx->cfg, lesser), hi = number_of(ctx->cfg, greater);
        if (lo <= hi)
            continue;
        const config_setting_t *at = config_lookup(lc, b->lesser);
        if (!at)
            at = config_lookup(lc, b->greater);
        report(ctx, at ? config_setting_source_file(at) : NULL,
               at ? (int)config_setting_source_line(at) : 0, b->lesser,
               "%lld is more than %s (%lld): %s", lo, b->greater, hi, b->why);
    }
}

/* Visits every child of `group` (whose path is `prefix`, NULL for the root)
 * in file order: table keys are applied, known sections descended into,
 * everything else reported. Unknown groups are reported and still descended
 * into, so each setting in them is reported by its full path too. */
static void walk(struct load_ctx *ctx, const config_setting_t *group, const char *prefix)
{
    int n = config_setting_length(group);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned int)i);
        if (!s)
            continue;
        const char *name = config_setting_name(s);
        const char *file = config_setting_source_file(s);
        int line = (int)config_setting_source_line(s);
        char path[512];
        int w = prefix ? snprintf(path, sizeof path, "%s.%s", prefix, name ? name : "?")
                       : snprintf(path, sizeof path, "%s", name ? name : "?");
        if (w < 0)
            path[0] = '\0'; /* cannot happen with %s; keep the path defined */
        /* A path truncated at 511 bytes is longer than any key: no false match. */

        const struct key_row *row = find_row(path);
        if (row) {
            int before = ctx->count;
            apply_row(ctx, row, s);
            if (ctx->count != before)
                ctx->refused[row - config_keys] = true;
        } else if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
            if (!is_section(path)) {
                char sections[256];
                format_sections(sections, sizeof sections);
                report(ctx, file, line, path, "unknown section (known sections: %s)", sections);
            }
            walk(ctx, s, path);
        } else if (is_section(path)) {
            report(ctx, file, line, path, "expected a group { ... }, got %s",
                   type_name(config_setting_type(s)));
        } else {
            const struct key_row *hint = name ? find_by_leaf(name) : NULL;
            if (hint)
                report(ctx, file, line, path, "unknown key (did you mean %s?)", hint->key);
            else
                report(ctx, file, line, path, "unknown key");
        }
    }
}

/*
 * Requires path and cfg non-NULL; problems may be NULL only if problems_len
 * is 0. Sets *cfg to the defaults, then overlays every valid value of the
 * file; an invalid value is never stored, so on a non-zero return *cfg holds
 * defaults plus the values that were valid (callers should not run with it).
 * Returns the number of problems; the problems text is always NUL-terminated
 * when problems_len > 0, one "FILE:LINE: KEY: why\n" line per problem, cut
 * short when the buffer is full (the count still counts them all).
 */
int config_load(const char *path, tally_config *cfg, char *problems, size_t problems_len)
{
    assert(path && cfg);
    assert(problems || problems_len == 0);
    struct load_ctx ctx = { .path = path, .cfg = cfg, .out = problems, .out_len = problems_len };
    if (problems_len > 0)
        problems[0] = '\0';
    config_defaults(cfg);

    config_t lc;
    config_init(&lc);
    errno = 0;
    if (config_read_file(&lc, path) != CONFIG_TRUE) {
        int saved = errno;
        const char *file = config_error_file(&lc);
        const char *text = config_error_text(&lc);
        if (config_error_type(&lc) == CONFIG_ERR_FILE_IO) {
            if (saved)
                report(&ctx, file, 0, "-", "cannot read file: %s", strerror(saved));
            else
                report(&ctx, file, 0, "-", "cannot read file: %s", text ? text : "I/O error");
        } else {
            report(&ctx, file, config_error_line(&lc), "-", "syntax error: %s",
                   text ? text : "unknown error");
        }
        config_destroy(&lc);
        return ctx.count;
    }
    const config_setting_t *root = config_root_setting(&lc);
    if (root)
        walk(&ctx, root, NULL);
    check_bounds(&ctx, &lc);
    config_destroy(&lc);
    return ctx.count;
}

/* ---- reference ---------------------------------------------------------- */

static const char *key_type_name(enum key_type t)
{
    switch (t) {
    case KEY_INT: return "int";
    case KEY_INT64: return "int64";
    case KEY_BOOL: return "bool";
    case KEY_STRING: return "string";
    case KEY_ENUM: return "enum";
    }
    return "?";
}

/*
 * Requires out != NULL. Writes one markdown table, a header and one row per
 * key in table order. Returns nothing: the caller checks ferror(out).
 */
int config_is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strcmp(addr, "localhost") == 0;
}

void config_print_reference(FILE *out)
{
    assert(out);
    fputs("| key | type | default | range | description |\n"
          "|-----|------|---------|-------|-------------|\n", out);
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        const struct key_row *r = &config_keys[i];
        char def[CONFIG_STR_MAX + 8];
        char range[160];
        switch (r->type) {
        case KEY_INT:
        case KEY_INT64:
            snprintf(def, sizeof def, "`%lld`", r->def_num);
            snprintf(range, sizeof range, "%lld..%lld", r->min, r->max);
            break;
        case KEY_BOOL:
            snprintf(def, sizeof def, "`%s`", r->def_num ? "true" : "false");
            snprintf(range, sizeof range, "true, false");
            break;
        case KEY_STRING:
            snprintf(def, sizeof def, "`\"%s\"`", r->def_str);
            snprintf(range, sizeof range, "%d..%zu bytes", r->empty_ok ? 0 : 1, r->size - 1);
            break;
        case KEY_ENUM: {
            char allowed[128];
            snprintf(def, sizeof def, "`\"%s\"`", r->def_str);
            format_allowed(r, ", ", allowed, sizeof allowed);
            snprintf(range, sizeof range, "%s", allowed);
            break;
        }
        }
        fprintf(out, "| `%s` | %s | %s | %s | %s |\n", r->key, key_type_name(r->type), def,
                range, r->description);
    }
}

void config_consumer_group(const tally_config *cfg, char *out, size_t len)
{
    if (cfg->kafka.consumer_group[0])
        snprintf(out, len, "%s", cfg->kafka.consumer_group);
    else
        snprintf(out, len, "tally-flusher-%s", cfg->kafka.topic);
}

int config_load_or_report(const char *path, tally_config *cfg)
{
    static char problems[16384];
    if (config_load(path, cfg, problems, sizeof problems) == 0)
        return 0;
    fputs(problems, stderr);
    return -1;
}
