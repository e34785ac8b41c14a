/*
 * statsd_listeners.h — the StatsD listeners of tally-ingest as one service:
 * the UDP readers (statsd_udp.h) and the TCP listener (statsd_tcp.h), as
 * statsd.udp_enabled / statsd.tcp_enabled say, feeding the write path through
 * one gather hub (statsd_gather.h).
 *
 * Stop before the write path drains: the listeners close, every batch being
 * filled is handed over and submitted, so lines received before the stop
 * take the acknowledged path like any batch in flight.
 */
#ifndef TALLY_STATSD_LISTENERS_H
#define TALLY_STATSD_LISTENERS_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "batch_pipeline.h"
#include "config.h"
#include "prom_text.h"

typedef struct statsd_listeners statsd_listeners;

/* Binds and starts what the configuration enables (an address in use fails
 * here). NULL with err filled. The pipeline is borrowed. */
statsd_listeners *statsd_listeners_start(struct event_base *base, const tally_config *cfg,
                                         batch_pipeline *pipeline, char *err, size_t errlen);

/* Closes the listeners and submits what they had gathered. Idempotent. */
void statsd_listeners_stop(statsd_listeners *l);

/* Appends ,"statsd":{...} (the counters) to a JSON object being written. */
void statsd_listeners_health(statsd_listeners *l, struct evbuffer *out);

/* Appends the listeners' /metrics families (tally_statsd_*). */
void statsd_listeners_metrics(statsd_listeners *l, prom_text *t);

void statsd_listeners_free(statsd_listeners *l);

#endif
