/*
 * main.c — tally-ingest: wiring only. Loads the configuration, builds the
 * event loop, the Kafka and Redis writers, the SQLite reader and the HTTP
 * server, and runs until SIGTERM/SIGINT. On a signal it stops taking new
 * batches, lets the ones in flight finish (bounded by Kafka's delivery
 * timeout), flushes the producer and exits 0.
 *
 * The StatsD listeners (UDP, TCP) stop first on a signal, so what they
 * gathered drains with the rest.
 *
 * Usage: tally-ingest [-c FILE] [--check-config] [--help-config]
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration.
 */
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "config.h"
#include "http_api.h"
#include "kafka_writer.h"
#include "log.h"
#include "redis_router.h"
#include "service.h"
#include "statsd_listeners.h"


typedef struct ingest_process {
    struct event_base *base;
    ingest_server *server;
    statsd_listeners *statsd;
    prom_api *reads;
    live_read *live;
    kafka_writer *kafka;
    struct event *drain_timer;
    int deadline_ms;
    int exit_code;
} ingest_process;

static void usage(FILE *out)
{
    fprintf(out, "usage: tally-ingest [-c FILE] [--check-config] [--help-config]\n"
                 "  -c FILE          configuration file (default conf/tally.conf)\n"
                 "  --check-config   validate the configuration and exit (0 = valid)\n"
                 "  --help-config    print every configuration key as a markdown table\n");
}

/* Runs every 50 ms after a stop signal: leaves the loop once nothing is in
 * flight or the deadline passed; also watches for a fatal producer error. */
/* Raises the open-file limit to what ingest.max_connections needs (plus room
 * for Kafka, Redis, SQLite and logs); 0, or -1 with err filled. */
static int reserve_file_descriptors(const tally_config *cfg, char *err, size_t errlen)
{
    rlim_t need = (rlim_t)cfg->ingest.max_connections + 128;
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
        snprintf(err, errlen, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return -1;
    }
    if (lim.rlim_cur >= need)
        return 0;
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= need ? need : lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur < need) {
        snprintf(err, errlen,
                 "ingest.max_connections = %d needs %llu open files, but the limit is %llu "
                 "(ulimit -n; LimitNOFILE= under systemd): raise it or lower the setting",
                 cfg->ingest.max_connections, (unsigned long long)need,
                 (unsigned long long)lim.rlim_cur);
        return -1;
    }
    return 0;
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_process *p = arg;
    p->deadline_ms -= 50;
    size_t reads = (p->reads ? prom_api_inflight(p->reads) : 0) +
                   (p->live ? live_read_inflight(p->live) : 0);
    if ((ingest_server_inflight(p->server) == 0 && reads == 0) || p->deadline_ms <= 0) {
        if (p->deadline_ms <= 0)
            log_warn("stopping with %zu batches and %zu reads still in flight (batches get 503)",
                     ingest_server_inflight(p->server), reads);
        event_base_loopbreak(p->base);
    }
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    ingest_process *p = arg;
    service_stopping();
    statsd_listeners_stop(p->statsd); /* their last batches join those in flight */
    log_info("signal %d: draining %zu in-flight batches", (int)sig,
             ingest_server_inflight(p->server));
    ingest_server_drain(p->server);
    struct timeval every = {0, 50 * 1000};
    if (event_add(p->drain_timer, &every) != 0)
        event_base_loopbreak(p->base);
}

static void on_hangup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    log_reopen();
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_process *p = arg;
    char reason[256];
    service_watchdog_tick(); /* the loop turns */
    if (kafka_writer_fatal(p->kafka, reason, sizeof reason)) {
        log_error("fatal kafka producer error: %s; exiting so the supervisor restarts us", reason);
        p->exit_code = 1;
        event_base_loopbreak(p->base);
    }
}

/* The event loop, with epoll's changelist: the enable/disable pairs that
 * evhttp makes around every request (read off while answering, write on
 * until the answer is out) then cost one epoll_ctl per change of the
 * kernel's interest set in a loop iteration instead of one per call (4 per
 * request without it). No descriptor of ours is dup()ed, the case the
 * changelist cannot handle. */
static struct event_base *new_event_base(void)
{
    struct event_config *ec = event_config_new();
    if (!ec)
        return NULL;
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(ec);
    event_config_free(ec);
    return base;
}

int main(int argc, char **argv)
{
    const char *config_path = "conf/tally.conf";
    int check_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = 1;
        } else if (strcmp(argv[i], "--help-config") == 0) {
            config_print_reference(stdout);
            return 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    static tally_config cfg;
    static char problems[16384];
    int nproblems = config_load(config_path, &cfg, problems, sizeof problems);
    if (nproblems != 0) {
        fprintf(stderr, "%s", problems);
        fprintf(stderr, "tally-ingest: %d configuration problem%s in %s\n", nproblems,
                nproblems == 1 ? "" : "s", config_path);
        return 2;
    }
    if (check_only) {
        printf("%s: configuration OK\n", config_path);
        return 0;
    }
    log_init("tally-ingest", (log_level)log_level_parse(cfg.log.level));
    if (log_open_file(cfg.log.file) != 0) {
        fprintf(stderr, "tally-ingest: log.file %s: %s\n", cfg.log.file, strerror(errno));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);

    ingest_process p = {0};
    char err[512];
    if (reserve_file_descriptors(&cfg, err, sizeof err) != 0) {
        log_error("%s", err);
        return 1;
    }
    redis_router *redis = NULL;
    live_read *live = NULL;
    query_pool *pool = NULL;
    query_cache *cache = NULL;
    prom_api *reads = NULL;
    struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL, *watchdog = NULL;
    p.exit_code = 1;
    p.deadline_ms = cfg.kafka.delivery_timeout_ms + cfg.redis.timeout_ms + 1000;
    p.base = new_event_base();
    if (!p.base) {
        log_error("libevent: cannot create the event loop");
        return 1;
    }
    p.kafka = kafka_writer_new(p.base, &cfg, err, sizeof err);
    if (!p.kafka) {
        log_error("%s", err);
        goto out;
    }
    redis = redis_router_new(p.base, &cfg, err, sizeof err);
    if (!redis) {
        log_error("%s", err);
        goto out;
    }
    pool = query_pool_new(p.base, &cfg, err, sizeof err);
    cache = pool ? query_cache_new(p.base, &cfg, pool, err, sizeof err) : NULL;
    reads = cache ? prom_api_new(p.base, &cfg, cache, err, sizeof err) : NULL;
    p.reads = reads;
    live = reads ? live_read_new(&cfg, redis, pool) : NULL;
    p.live = live;
    if (reads && !live)
        snprintf(err, sizeof err, "out of memory");
    if (!reads || !live) {
        log_error("%s", err);
        goto out;
    }
    p.server = ingest_server_new(p.base, &cfg, p.kafka, redis, live, reads, err, sizeof err);
    if (!p.server) {
        log_error("%s", err);
        goto out;
    }
    p.statsd = statsd_listeners_start(p.base, &cfg, ingest_server_pipeline(p.server), err,
                                      sizeof err);
    if (!p.statsd) {
        log_error("%s", err);
        goto out;
    }
    ingest_server_show_statsd(p.server, p.statsd);
    sigterm = evsignal_new(p.base, SIGTERM, on_stop_signal, &p);
    sigint = evsignal_new(p.base, SIGINT, on_stop_signal, &p);
    sighup = evsignal_new(p.base, SIGHUP, on_hangup, &p);
    watchdog = event_new(p.base, -1, EV_PERSIST, on_watchdog, &p);
    p.drain_timer = event_new(p.base, -1, EV_PERSIST, on_drain_tick, &p);
    struct timeval every_second = {1, 0};
    if (!sigterm || !sigint || !sighup || !watchdog || !p.drain_timer ||
        event_add(sigterm, NULL) != 0 || event_add(sigint, NULL) != 0 ||
        event_add(sighup, NULL) != 0 || event_add(watchdog, &every_second) != 0) {
        log_error("libevent: cannot register signal handlers");
        goto out;
    }
    log_info("listening on http://%s:%d", cfg.ingest.listen_address, cfg.ingest.listen_port);
    service_ready("listening on %s:%d", cfg.ingest.listen_address, cfg.ingest.listen_port);
    p.exit_code = 0;
    if (event_base_dispatch(p.base) < 0) {
        log_error("event loop failed");
        p.exit_code = 1;
    }
    log_info("stopped");
out:
    /* Order matters: the producer's last callbacks answer requests through the
     * server, and their Redis step goes through the writer. */
    statsd_listeners_stop(p.statsd);
    kafka_writer_free(p.kafka, 2000);
    redis_router_free(redis);
    statsd_listeners_free(p.statsd); /* (its batches' answers came through the writers) */
    ingest_server_free(p.server);
    /* Reads still running when the drain deadline passed are never answered
     * (the loop has ended): the threads stop first, then what they ran for. */
    query_pool_free(pool);
    query_cache_free(cache);
    prom_api_free(reads);
    live_read_free(live);
    if (sigterm)
        event_free(sigterm);
    if (sigint)
        event_free(sigint);
    if (sighup)
        event_free(sighup);
    if (watchdog)
        event_free(watchdog);
    if (p.drain_timer)
        event_free(p.drain_timer);
    event_base_free(p.base);
    return p.exit_code;
}
