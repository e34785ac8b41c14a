/*
 * status.c — `tally status`: one look at a running Tally.
 *
 *   tally status [-c FILE] [--watch] [--interval SECONDS]
 *
 * Reads the configuration (the addresses), then scrapes tally-ingest
 * (GET /healthz and /metrics on ingest.listen_port) and tally-flusher (GET
 * /metrics on flusher.metrics_port) twice, `interval` apart, and prints each
 * component's health, the rates between the two scrapes (events accepted and
 * committed, StatsD lines, drops), the flusher's lag per partition it owns
 * (with the epoch it claimed it at: README "Scale-out"), and,
 * while the flusher replays, a progress bar of the replay. --watch redraws
 * every interval until interrupted.
 *
 * Exit status: 0 when both processes answer and ingest can acknowledge
 * writes, 1 when something is down or unreachable (what is printed says
 * which), 2 on a usage or configuration error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../drill/http_client.h"
#include "clock.h"
#include "config.h"
#include "format.h"
#include "partitions.h"
#include "redis_key_cli.h"
#include "progress_bar.h"
#include "prom_scrape.h"

#define TIMEOUT_MS 2000

typedef struct scrape {
    int up;          /* the process answered */
    int health;      /* /healthz status code (ingest) */
    char *health_body;
    char *metrics;   /* /metrics text, NULL when it did not answer */
    double at;       /* seconds (monotonic) */
} scrape;

typedef struct target {
    const char *name;
    char host[CONFIG_STR_MAX];
    int port;
    http_client *http;
} target;

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

/* GET path; a copy of the body in *body (caller frees). Returns the status, or -1. */
static int get(target *t, const char *path, char **body)
{
    http_response r;
    char err[256];
    *body = NULL;
    if (http_client_request(t->http, "GET", path, NULL, 0, NULL, 0, &r, err, sizeof err) != 0)
        return -1;
    *body = strdup(r.body ? r.body : "");
    return *body ? r.status : -1;
}

static void scrape_free(scrape *s)
{
    free(s->health_body);
    free(s->metrics);
    memset(s, 0, sizeof *s);
}

static void scrape_take(target *t, int with_health, scrape *s)
{
    scrape_free(s);
    s->at = clock_mono_seconds();
    if (with_health)
        s->health = get(t, "/healthz", &s->health_body);
    int rc = get(t, "/metrics", &s->metrics);
    if (rc != 200) {
        free(s->metrics);
        s->metrics = NULL;
    }
    s->up = s->metrics != NULL;
}

static double value(const scrape *s, const char *name, const char *label)
{
    double v = 0;
    if (s->metrics)
        prom_scrape_value(s->metrics, name, label, &v);
    return v;
}

/* The rate of counter `name` (summed over its samples) between two scrapes. */
static double rate(const scrape *a, const scrape *b, const char *name)
{
    if (!a->metrics || !b->metrics || b->at <= a->at)
        return 0;
    double d = prom_scrape_sum(b->metrics, name) - prom_scrape_sum(a->metrics, name);
    return d > 0 ? d / (b->at - a->at) : 0;
}

static const char *thousands(char *buf, size_t len, double v)
{
    format_thousands(buf, len, (long long)(v + 0.5));
    return buf;
}

/* The "status" field of ingest's /healthz body. */
static void health_status(const scrape *s, char *out, size_t len)
{
    const char *key = "\"status\":\"";
    const char *p = s->health_body ? strstr(s->health_body, key) : NULL;
    if (!p) {
        snprintf(out, len, "%s", s->up ? "unknown" : "unreachable");
        return;
    }
    p += strlen(key);
    const char *q = strchr(p, '"');
    snprintf(out, len, "%.*s", q ? (int)(q - p) : 0, p);
}

static int show_ingest(const target *t, const scrape *a, const scrape *b)
{
    char st[32], r1[32], r2[32], r3[32];
    health_status(b, st, sizeof st);
    printf("%-15s %s:%d  %s\n", "tally-ingest", t->host, t->port, st);
    if (!b->up)
        return 1;
    printf("%-15s kafka %s, redis %s, cache %s\n", "",
           value(b, "tally_ingest_kafka_up", NULL) > 0 ? "up" : "DOWN",
           value(b, "tally_ingest_redis_up", NULL) > 0 ? "up" : "DOWN",
           value(b, "tally_reads_cache_up", NULL) > 0 ? "up" : "down (reads uncached)");
    printf("%-15s %s events/s accepted, %s lines/s rejected, %s batches in flight\n", "",
           thousands(r1, sizeof r1, rate(a, b, "tally_ingest_events_accepted_total")),
           thousands(r2, sizeof r2, rate(a, b, "tally_ingest_lines_rejected_total")),
           thousands(r3, sizeof r3, value(b, "tally_ingest_inflight_batches", NULL)));
    if (prom_scrape_each(b->metrics, "tally_statsd_lines_total", NULL, NULL) > 0)
        printf("%-15s statsd %s lines/s, %s dropped/s, %s kernel drops/s\n", "",
               thousands(r1, sizeof r1, rate(a, b, "tally_statsd_lines_total")),
               thousands(r2, sizeof r2, rate(a, b, "tally_statsd_lines_dropped_total")),
               thousands(r3, sizeof r3, rate(a, b, "tally_statsd_kernel_drops_total")));
    return b->health == 200 ? 0 : 1;
}

typedef struct lag_ctx {
    const scrape *s;
} lag_ctx;

/* One line per partition: its lag in records and seconds. */
static void show_partition(void *ctx, const char *labels, size_t len, double records)
{
    const lag_ctx *l = ctx;
    char label[96], r[32];
    snprintf(label, sizeof label, "%.*s", (int)len, labels);
    double seconds = value(l->s, "tally_flusher_lag_seconds", label); /* (same labels) */
    double epoch = value(l->s, "tally_flusher_partition_epoch", label);
    const char *p = strstr(label, "partition=\"");
    printf("  partition %-4.*s lag %s records, %.1f s (claimed at epoch %.0f)\n",
           p ? (int)strcspn(p + 11, "\"") : 1, p ? p + 11 : "?",
           thousands(r, sizeof r, records), seconds, epoch);
}

static int show_flusher(const target *t, const scrape *a, const scrape *b, progress_bar *bar,
                        double *replay_total)
{
    char r1[32], r2[32];
    int consuming = value(b, "tally_flusher_consuming", NULL) > 0;
    printf("%-15s %s:%d  %s\n", "tally-flusher", t->host, t->port,
           !b->up ? "unreachable" : consuming ? "consuming" : "not consuming");
    if (!b->up)
        return 1;
    printf("%-15s %s events/s committed in %s commits/s\n", "",
           thousands(r1, sizeof r1, rate(a, b, "tally_flusher_events_committed_total")),
           thousands(r2, sizeof r2, rate(a, b, "tally_flusher_commits_total")));
    lag_ctx l = {b};
    prom_scrape_each(b->metrics, "tally_flusher_lag_records", show_partition, &l);
    if (value(b, "tally_flusher_replaying", NULL) > 0) {
        double left = value(b, "tally_flusher_replay_remaining_records", NULL);
        double total = value(b, "tally_flusher_replay_total_records", NULL);
        if (total <= 0)
            total = *replay_total > left ? *replay_total : left; /* the most seen left */
        *replay_total = total;
        char line[160];
        progress_bar_render(line, sizeof line, "records", (int64_t)(total - left),
                            (int64_t)total, clock_mono_seconds() - bar->started);
        printf("  replaying    %s\n", line);
    }
    return consuming ? 0 : 1;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: tally status [-c FILE] [--watch] [--interval SECONDS]\n"
                 "       tally partitions [-c FILE]   (leader, replicas, ISR per partition)\n"
                 "       tally key [-c FILE] [--shard] NAME [SUFFIX]   (the Redis key of a metric)\n"
                 "  -c FILE       configuration file (default conf/tally.conf)\n"
                 "  --watch       redraw every interval until interrupted\n"
                 "  --interval S  seconds between the two scrapes (default 1)\n");
}

static void addr_of(target *t, const char *name, const char *address, int port)
{
    t->name = name;
    /* a wildcard listener is reached on loopback */
    snprintf(t->host, sizeof t->host, "%s",
             strcmp(address, "0.0.0.0") == 0 || strcmp(address, "::") == 0 ? "127.0.0.1"
                                                                            : address);
    t->port = port;
    t->http = http_client_new(t->host, port, TIMEOUT_MS);
}

int main(int argc, char **argv)
{
    const char *path = "conf/tally.conf";
    int watch = 0;
    double interval = 1;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"watch", no_argument, NULL, 'w'},
        {"interval", required_argument, NULL, 'i'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    if (argc >= 2 && strcmp(argv[1], "partitions") == 0)
        return partitions_main(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "key") == 0)
        return redis_key_main(argc, argv);
    if (argc < 2 || strcmp(argv[1], "status") != 0) {
        usage(stderr);
        return 2;
    }
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'w': watch = 1; break;
        case 'i': interval = atof(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !(interval >= 0.1 && interval <= 3600)) {
        usage(stderr);
        return 2;
    }
    static tally_config cfg;
    if (config_load_or_report(path, &cfg) != 0)
        return 2;
    target ingest, flusher;
    addr_of(&ingest, "tally-ingest", cfg.ingest.listen_address, cfg.ingest.listen_port);
    addr_of(&flusher, "tally-flusher", cfg.flusher.metrics_address, cfg.flusher.metrics_port);
    if (!ingest.http || !flusher.http) {
        fprintf(stderr, "tally status: out of memory\n");
        return 2;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    scrape ia = {0}, ib = {0}, fa = {0}, fb = {0};
    progress_bar bar;
    progress_bar_start(&bar, stdout, "records", 0);
    double replay_total = 0;
    int rc = 0;
    scrape_take(&ingest, 1, &ia);
    if (cfg.flusher.metrics_port > 0)
        scrape_take(&flusher, 0, &fa);
    do {
        usleep((useconds_t)(interval * 1e6));
        scrape_take(&ingest, 1, &ib);
        if (cfg.flusher.metrics_port > 0)
            scrape_take(&flusher, 0, &fb);
        if (watch)
            printf("\033[H\033[2J");
        printf("tally status (%s)\n", path);
        rc = show_ingest(&ingest, &ia, &ib);
        if (cfg.flusher.metrics_port > 0)
            rc |= show_flusher(&flusher, &fa, &fb, &bar, &replay_total);
        else
            printf("%-15s metrics off (flusher.metrics_port = 0)\n", "tally-flusher");
        fflush(stdout);
        scrape tmp = ia;
        ia = ib, ib = tmp;
        tmp = fa;
        fa = fb, fb = tmp;
    } while (watch && !stop);
    scrape_free(&ia), scrape_free(&ib), scrape_free(&fa), scrape_free(&fb);
    http_client_free(ingest.http);
    http_client_free(flusher.http);
    return rc;
}
