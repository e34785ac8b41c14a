/*
 * statsd_udp.h — the StatsD UDP listener: statsd.udp_readers threads, each
 * with its own socket bound to statsd.listen_address:statsd.port with
 * SO_REUSEPORT (the kernel spreads datagrams over them), a receive buffer of
 * statsd.rcvbuf_bytes, and recvmmsg() taking up to 32 datagrams per call.
 * Every datagram's lines go to the thread's line_batch (statsd_gather.h).
 *
 * The kernel's drops (datagrams that found a socket's buffer full) are read
 * per socket with SO_RXQ_OVFL and summed in statsd_udp_kernel_drops().
 * A datagram longer than 65,535 bytes cannot exist; one cut short by the
 * receive buffer (MSG_TRUNC) is dropped and counted (gather_counters.truncated).
 */
#ifndef TALLY_STATSD_UDP_H
#define TALLY_STATSD_UDP_H

#include <stdint.h>

#include "config.h"
#include "statsd_gather.h"

typedef struct statsd_udp statsd_udp;

/* Binds the sockets (so an address in use fails here, with err filled) and
 * starts the threads. NULL on failure. */
statsd_udp *statsd_udp_start(const tally_config *cfg, gather_hub *hub, char *err, size_t errlen);

/* Stops the threads; each hands over the batch it was filling first. */
void statsd_udp_stop(statsd_udp *u);

/* Datagrams the kernel dropped on these sockets since they were opened. */
uint64_t statsd_udp_kernel_drops(const statsd_udp *u);

/* The receive buffer each socket got (what the kernel reports). */
long statsd_udp_rcvbuf(const statsd_udp *u);

#endif
