/*
 * config.h — Tally's configuration: one libconfig file read by both binaries.
 *
 * Every key is a row of a declared table (name, type, default, range, field
 * offset, description) in config.c; loading, validation, defaults and the
 * reference printed by `--help-config` all read that one table. Unknown keys,
 * wrong types, out-of-range values and a key above the key that bounds it
 * (kafka.min_insync_replicas > kafka.replication_factor) are errors, never
 * ignored: config_load() reports every problem it finds, each as
 * "FILE:LINE: KEY: why".
 */
#ifndef TALLY_CONFIG_H
#define TALLY_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CONFIG_STR_MAX 256
#define CONFIG_PATH_MAX 1024

typedef struct tally_config {
    struct {
        char listen_address[CONFIG_STR_MAX]; /* ingest.listen_address  "127.0.0.1" */
        int listen_port;                     /* ingest.listen_port     8080, 1..65535 */
        int reuse_port;                      /* ingest.reuse_port      false (SO_REUSEPORT) */
        long long max_body_bytes;            /* ingest.max_body_bytes  8 MiB, 1 KiB..256 MiB */
        int max_lines;                       /* ingest.max_lines       50000, 1..1000000 */
        int max_name_length;                 /* ingest.max_name_length 200, 1..255 */
        int max_tags_length;                 /* ingest.max_tags_length 512, 0..1024 */
        int max_errors_reported;             /* ingest.max_errors_reported 100, 1..10000 */
        int max_inflight_batches;            /* ingest.max_inflight_batches 1024, 1..100000 */
        long long max_inflight_bytes;        /* ingest.max_inflight_bytes 32 MiB, 1 MiB..4 GiB */
        int max_connections;                 /* ingest.max_connections 512, 1..1000000 */
        int client_timeout_seconds;          /* ingest.client_timeout_seconds 10, 1..3600 */
        int keepalive_timeout_seconds;       /* ingest.keepalive_timeout_seconds 60, 1..3600 */
        long long max_header_bytes;          /* ingest.max_header_bytes 16 KiB, 1 KiB..1 MiB */
        int max_header_count;                /* ingest.max_header_count 64, 1..1000 */
        int max_series_per_batch;            /* ingest.max_series_per_batch 10000, 1..1000000 */
        int max_live_series;                 /* ingest.max_live_series 1000000, 1..100000000 */
        char tokens_file[CONFIG_PATH_MAX];   /* ingest.tokens_file     "" (no authentication) */
        int allow_unauthenticated;           /* ingest.allow_unauthenticated false */
    } ingest;
    struct {
        char brokers[CONFIG_STR_MAX];        /* kafka.brokers          "127.0.0.1:9092" */
        char topic[CONFIG_STR_MAX];          /* kafka.topic            "tally-events" */
        int partitions;                      /* kafka.partitions       1, 1..1024 (topic created with it) */
        int replication_factor;              /* kafka.replication_factor 1, 1..32 (topic created with it; ingest checks it) */
        int min_insync_replicas;             /* kafka.min_insync_replicas 1, 1..32, <= replication_factor */
        int delivery_timeout_ms;             /* kafka.delivery_timeout_ms 5000, 100..300000 */
        int linger_ms;                       /* kafka.linger_ms        0, 0..1000 */
        int max_message_bytes;               /* kafka.max_message_bytes 1000000, 1024..16000000 */
        char consumer_group[CONFIG_STR_MAX]; /* kafka.consumer_group   "" (tally-flusher-TOPIC: config_consumer_group) */
        char client_properties[CONFIG_PATH_MAX]; /* kafka.client_properties "" (security settings file) */
    } kafka;
    struct {
        char host[CONFIG_STR_MAX];           /* redis.host             "127.0.0.1" */
        int port;                            /* redis.port             6379, 1..65535 */
        int timeout_ms;                      /* redis.timeout_ms       500, 1..60000 */
        char on_unavailable[16];             /* redis.on_unavailable   "accept" (accept|reject) */
        int require_durable;                 /* redis.require_durable  true: refuse a Redis without AOF + noeviction */
        int cluster;                         /* redis.cluster          false: one server; true: a Redis Cluster seed */
        int min_replicas_acked;              /* redis.min_replicas_acked 0, 0..16: WAIT after each transaction */
        int shards;                          /* redis.shards           1, 1..1024: hash tags of the live view */
        char username[CONFIG_STR_MAX];       /* redis.username         "" (default user) */
        char password_file[CONFIG_PATH_MAX]; /* redis.password_file    "" (no AUTH) */
    } redis;
    struct {
        char path[CONFIG_PATH_MAX];          /* sqlite.path            "var/data/tally.db" */
        char synchronous[16];                /* sqlite.synchronous     "FULL" (FULL|NORMAL|EXTRA) */
    } sqlite;
    struct {
        int max_batch_events;                /* flusher.max_batch_events 1000000, 1..10000000 */
        int max_interval_ms;                 /* flusher.max_interval_ms  1000, 10..600000 */
        int bucket_seconds;                  /* flusher.bucket_seconds   10, 1..86400 */
        char metrics_address[CONFIG_STR_MAX]; /* flusher.metrics_address "127.0.0.1" */
        int metrics_port;                    /* flusher.metrics_port     8081, 0..65535 (0 = off) */
        char instance_id[CONFIG_STR_MAX];    /* flusher.instance_id      "" (the host name) */
        int session_timeout_ms;              /* flusher.session_timeout_ms 10000, 6000..300000 */
    } flusher;
    struct {
        int enabled;                         /* retention.enabled        true: roll up and delete */
        int raw_seconds;                     /* retention.raw_seconds    14 d; 0 = forever */
        int minute_seconds;                  /* retention.minute_seconds 90 d; 0 = forever */
        int hour_seconds;                    /* retention.hour_seconds   730 d; 0 = forever */
    } retention;
    struct {
        int window_seconds;                  /* dedup.window_seconds   3600, 60..2592000 */
    } dedup;
    struct {
        int threads;                         /* query.threads          2, 1..64 reader threads */
        int max_queued;                      /* query.max_queued       1024, 1..100000 */
        int lookback_seconds;                /* query.lookback_seconds 300, 1..86400 */
        int max_points;                      /* query.max_points       11000, 1..1000000 */
        long long max_samples;               /* query.max_samples      50000000, 1000..1e9 */
    } query;
    struct {
        int udp_enabled;                     /* statsd.udp_enabled     true */
        int tcp_enabled;                     /* statsd.tcp_enabled     true */
        char listen_address[CONFIG_STR_MAX]; /* statsd.listen_address  "127.0.0.1" */
        int port;                            /* statsd.port            8125, 1..65535 */
        int udp_readers;                     /* statsd.udp_readers     1, 1..16 */
        long long rcvbuf_bytes;              /* statsd.rcvbuf_bytes    8 MiB, 64 KiB..1 GiB */
        int batch_lines;                     /* statsd.batch_lines     10000, 1..1000000 */
        int batch_ms;                        /* statsd.batch_ms        50, 1..10000 */
        int fold_counters;                   /* statsd.fold_counters   true */
        int max_tcp_connections;             /* statsd.max_tcp_connections 256, 1..100000 */
        int tcp_idle_seconds;                /* statsd.tcp_idle_seconds 300, 1..86400 */
        int allow_remote;                    /* statsd.allow_remote    false */
    } statsd;
    struct {
        int enabled;                         /* cache.enabled          true */
        char host[CONFIG_STR_MAX];           /* cache.host             "127.0.0.1" */
        int port;                            /* cache.port             6380, 1..65535 */
        int cluster;                         /* cache.cluster          false: one server; true: a Redis Cluster seed */
        int timeout_ms;                      /* cache.timeout_ms       250, 1..10000 */
        int ttl_counter_seconds;             /* cache.ttl_counter_seconds 60 */
        int ttl_gauge_seconds;               /* cache.ttl_gauge_seconds 30 */
        int ttl_distribution_seconds;        /* cache.ttl_distribution_seconds 60 */
        int ttl_set_seconds;                 /* cache.ttl_set_seconds  60 */
        int ttl_labels_seconds;              /* cache.ttl_labels_seconds 300 */
        int ttl_negative_seconds;            /* cache.ttl_negative_seconds 10 */
        int ttl_jitter_percent;              /* cache.ttl_jitter_percent 10, 0..50 */
        int lock_ms;                         /* cache.lock_ms          2000, 10..60000 */
        int wait_ms;                         /* cache.wait_ms          500, 0..10000 */
        int warm_keys;                       /* cache.warm_keys        256, 0..100000 */
        int breaker_failures;                /* cache.breaker_failures 3, 1..1000 */
        int breaker_open_ms;                 /* cache.breaker_open_ms  5000, 100..600000 */
        long long local_bytes;               /* cache.local_bytes      16 MiB, 0..1 GiB (0 = off) */
    } cache;
    struct {
        char level[16];                      /* log.level              "info" (debug|info|warn|error) */
        char file[CONFIG_PATH_MAX];          /* log.file               "" (stderr) */
    } log;
} tally_config;

/* Fills every field with its default. */
void config_defaults(tally_config *cfg);

/*
 * Reads `path` over the defaults into *cfg and validates it.
 * Returns the number of problems found (0 = valid). Each problem is one line
 * "FILE:LINE: KEY: why" appended to `problems` (NUL-terminated, truncated to
 * problems_len). A file that cannot be read or parsed is one problem.
 */
int config_load(const char *path, tally_config *cfg, char *problems, size_t problems_len);

/* config_load() for a command-line tool: the problems go to stderr. Returns
 * 0, or -1 when there were any. */
int config_load_or_report(const char *path, tally_config *cfg);

/* Writes the reference of every key (name, type, default, range, description)
 * as a markdown table: README.md's configuration section is generated from it. */
void config_print_reference(FILE *out);

/* Whether a listen address is a loopback one (127.x, ::1, "localhost"):
 * only those may take traffic without credentials by default. */
int config_is_loopback(const char *addr);

/* The flushers' Kafka consumer group: kafka.consumer_group, or
 * "tally-flusher-" + kafka.topic when that is empty (a group per topic, so
 * flushers of different topics never rebalance each other). */
void config_consumer_group(const tally_config *cfg, char *out, size_t len);

#endif
