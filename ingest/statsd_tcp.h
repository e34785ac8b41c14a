/*
 * statsd_tcp.h — the StatsD TCP listener on the event loop: lines ending in
 * '\n' on any number of connections (up to statsd.max_tcp_connections; more
 * are closed at once and counted), gathered into one line_batch
 * (statsd_gather.h) handed over by size or after statsd.batch_ms. StatsD's
 * TCP has no answers: a bad line is dropped and counted like on UDP.
 *
 * Bounds (design rule 8): a line longer than STATSD_TCP_LINE_MAX bytes
 * closes its connection (counted as invalid); a connection silent for
 * statsd.tcp_idle_seconds is closed. A last line without '\n' before the
 * client closes is taken.
 */
#ifndef TALLY_STATSD_TCP_H
#define TALLY_STATSD_TCP_H

#include <event2/event.h>

#include "config.h"
#include "statsd_gather.h"

#define STATSD_TCP_LINE_MAX 65536

typedef struct statsd_tcp statsd_tcp;

/* Binds and listens (an address in use fails here, err filled). NULL on failure. */
statsd_tcp *statsd_tcp_start(struct event_base *base, const tally_config *cfg, gather_hub *hub,
                             char *err, size_t errlen);

/* Closes the listener and every connection, handing over the batch first. */
void statsd_tcp_stop(statsd_tcp *t);

/* Connections open now. */
size_t statsd_tcp_connections(const statsd_tcp *t);

#endif
