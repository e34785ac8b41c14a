/*
 * listen_socket.h — a listening TCP socket on one address and port, opened
 * the same way by every Tally listener (tally-ingest's HTTP API,
 * tally-flusher's /metrics).
 *
 * The socket is close-on-exec and has SO_REUSEADDR (a restart binds again at
 * once, whatever TIME_WAIT connections the previous process left).
 * LISTEN_REUSE_PORT adds SO_REUSEPORT before the bind: several processes of
 * the same user that all ask for it share the port, and the kernel spreads
 * new connections over their sockets (a process that did not ask for it
 * still gets EADDRINUSE). The address is resolved with getaddrinfo
 * (AI_PASSIVE); the first answer is used.
 */
#ifndef TALLY_LISTEN_SOCKET_H
#define TALLY_LISTEN_SOCKET_H

#include <stddef.h>

enum {
    LISTEN_NUMERIC_HOST = 1 << 0, /* the address must be a numeric IPv4 or IPv6 address */
    LISTEN_REUSE_PORT = 1 << 1,   /* SO_REUSEPORT */
    LISTEN_NONBLOCK = 1 << 2,     /* O_NONBLOCK (for an event loop's listener) */
};

/*
 * Resolves address, opens a stream socket with the options `flags` ask for,
 * binds it to address:port and listens with `backlog`. Returns the socket
 * (the caller owns it), or -1 with err filled as "ADDRESS:PORT: why", where
 * why is the resolver's or the failed call's error (the bind's error alone,
 * e.g. "Address already in use"; other calls are named). Nothing is left
 * open on failure.
 */
int listen_socket_open(const char *address, int port, int flags, int backlog, char *err,
                       size_t errlen);

#endif
