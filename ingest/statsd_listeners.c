/*
 * statsd_listeners.c — see statsd_listeners.h.
 */
#include "statsd_listeners.h"

#include <stdio.h>
#include <stdlib.h>

#include "statsd_gather.h"
#include "statsd_tcp.h"
#include "statsd_udp.h"

struct statsd_listeners {
    const tally_config *cfg;
    gather_hub *hub;
    statsd_udp *udp;
    statsd_tcp *tcp;
    int stopped;
};

statsd_listeners *statsd_listeners_start(struct event_base *base, const tally_config *cfg,
                                         batch_pipeline *pipeline, char *err, size_t errlen)
{
    statsd_listeners *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "statsd: out of memory");
        return NULL;
    }
    l->cfg = cfg;
    if ((cfg->statsd.udp_enabled || cfg->statsd.tcp_enabled) &&
        !config_is_loopback(cfg->statsd.listen_address) && !cfg->statsd.allow_remote) {
        snprintf(err, errlen,
                 "refusing to open the StatsD listeners on %s: StatsD has no credentials, so "
                 "anyone who can reach it could write metrics. Firewall the port to the hosts "
                 "that send and set statsd.allow_remote = true, or listen on loopback",
                 cfg->statsd.listen_address);
        free(l);
        return NULL;
    }
    l->hub = statsd_gather_new(base, cfg, pipeline, err, errlen);
    if (!l->hub)
        goto fail;
    /* TCP first: its bind has no SO_REUSEPORT, so a second tally-ingest on the
     * same port fails here instead of sharing the UDP datagrams */
    if (cfg->statsd.tcp_enabled && !(l->tcp = statsd_tcp_start(base, cfg, l->hub, err, errlen)))
        goto fail;
    if (cfg->statsd.udp_enabled && !(l->udp = statsd_udp_start(cfg, l->hub, err, errlen)))
        goto fail;
    return l;
fail:
    statsd_listeners_free(l);
    return NULL;
}

void statsd_listeners_stop(statsd_listeners *l)
{
    if (!l || l->stopped)
        return;
    l->stopped = 1;
    statsd_gather_stopping(l->hub); /* (the readers' last batches must not wait for this loop) */
    statsd_udp_stop(l->udp);
    l->udp = NULL;
    statsd_tcp_stop(l->tcp);
    l->tcp = NULL;
    statsd_gather_submit_queued(l->hub);
}

static unsigned long long get(_Atomic uint64_t *v)
{
    return (unsigned long long)atomic_load_explicit(v, memory_order_relaxed);
}

void statsd_listeners_health(statsd_listeners *l, struct evbuffer *out)
{
    gather_counters *c = statsd_gather_counters(l->hub);
    evbuffer_add_printf(
        out,
        ",\"statsd\":{\"udp\":%s,\"tcp\":%s,\"datagrams\":%llu,\"truncated\":%llu,"
        "\"kernel_drops\":%llu,\"tcp_connections\":%zu,\"tcp_accepted\":%llu,"
        "\"tcp_refused\":%llu,\"lines\":%llu,\"invalid\":%llu,\"events_ignored\":%llu,"
        "\"service_checks_ignored\":%llu,\"folded\":%llu,\"batches\":%llu,"
        "\"lines_stored\":%llu,\"lost_busy\":%llu,\"lost_failed\":%llu,\"lost_unknown\":%llu}",
        l->udp ? "true" : "false", l->tcp ? "true" : "false", get(&c->datagrams),
        get(&c->truncated), (unsigned long long)statsd_udp_kernel_drops(l->udp),
        statsd_tcp_connections(l->tcp), get(&c->tcp_connections), get(&c->tcp_refused),
        get(&c->lines), get(&c->invalid), get(&c->events_ignored),
        get(&c->service_checks_ignored), get(&c->folded), get(&c->batches), get(&c->lines_stored),
        get(&c->lost_busy), get(&c->lost_failed), get(&c->lost_unknown));
}

static void counter(prom_text *t, const char *name, const char *help, _Atomic uint64_t *v)
{
    prom_text_single(t, name, "counter", help, (double)get(v));
}

void statsd_listeners_metrics(statsd_listeners *l, prom_text *t)
{
    gather_counters *c = statsd_gather_counters(l->hub);
    counter(t, "tally_statsd_datagrams_total", "UDP datagrams received.", &c->datagrams);
    counter(t, "tally_statsd_datagrams_truncated_total",
            "UDP datagrams longer than the receive buffer (dropped).", &c->truncated);
    prom_text_single(t, "tally_statsd_kernel_drops_total", "counter",
                     "UDP datagrams the kernel dropped, a socket's buffer being full "
                     "(SO_RXQ_OVFL; since the sockets were opened).",
                     (double)statsd_udp_kernel_drops(l->udp));
    prom_text_single(t, "tally_statsd_tcp_connections", "gauge", "StatsD TCP connections open.",
                     (double)statsd_tcp_connections(l->tcp));
    counter(t, "tally_statsd_tcp_connections_accepted_total", "StatsD TCP connections accepted.",
            &c->tcp_connections);
    counter(t, "tally_statsd_tcp_connections_refused_total",
            "StatsD TCP connections closed at once (statsd.max_tcp_connections).",
            &c->tcp_refused);
    counter(t, "tally_statsd_lines_total", "Non-empty StatsD lines received (UDP and TCP).",
            &c->lines);
    prom_text_family(t, "tally_statsd_lines_dropped_total", "counter",
                     "StatsD lines the parser refused, by reason code (one sample per code).");
    for (int code = STATSD_OK + 1; code < STATSD_CODE_COUNT; code++) {
        const char *labels[] = {"reason", statsd_reason_name(code), NULL};
        prom_text_sample(t, "tally_statsd_lines_dropped_total", labels,
                         (double)get(&c->dropped[code]));
    }
    counter(t, "tally_statsd_backpressure_waits_total",
            "Hand-overs of a UDP reader's batch that waited for room in the queue to the write "
            "path (its datagrams meanwhile wait in the socket buffer).", &c->waits);
    counter(t, "tally_statsd_events_ignored_total",
            "DogStatsD events received (well-formed; counted, not stored).", &c->events_ignored);
    counter(t, "tally_statsd_service_checks_ignored_total",
            "DogStatsD service checks received (well-formed; counted, not stored).",
            &c->service_checks_ignored);
    counter(t, "tally_statsd_lines_folded_total",
            "Counter lines folded into an earlier line of their batch differing only in value "
            "(one event stands for them all).", &c->folded);
    counter(t, "tally_statsd_batches_total", "Batches of StatsD lines submitted to the write path.",
            &c->batches);
    counter(t, "tally_statsd_lines_stored_total", "StatsD lines in batches Kafka holds.",
            &c->lines_stored);
    prom_text_family(t, "tally_statsd_lines_lost_total", "counter",
                     "StatsD lines in batches that were not stored, by reason (unknown: Kafka "
                     "may hold them).");
    static const char *const why[] = {"busy", "failed", "unknown"};
    _Atomic uint64_t *lost[] = {&c->lost_busy, &c->lost_failed, &c->lost_unknown};
    for (int i = 0; i < 3; i++) {
        const char *labels[] = {"reason", why[i], NULL};
        prom_text_sample(t, "tally_statsd_lines_lost_total", labels, (double)get(lost[i]));
    }
}

void statsd_listeners_free(statsd_listeners *l)
{
    if (!l)
        return;
    statsd_listeners_stop(l);
    statsd_gather_free(l->hub);
    free(l);
}
