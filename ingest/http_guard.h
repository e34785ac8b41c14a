/*
 * http_guard.h — the connection edge of tally-ingest's HTTP server: how many
 * connections a client may hold, for how long, and what it hears when it
 * crosses a limit.
 *
 * evhttp reads and parses requests; the guard gives every connection's
 * bufferevent (evhttp_set_bevcb) a pass-through filter over the socket's,
 * whose callbacks see each byte arrive and leave and the connection end:
 *   - a connection past ingest.max_connections is answered 503 (JSON,
 *     naming the limit) and closed at once;
 *   - a request has ingest.client_timeout_seconds from its first byte to its
 *     last (headers and body together: evhttp's own timeout only bounds the
 *     gap between two reads, which a client sending a byte every few seconds
 *     never trips); one that is not complete by then is answered 408 (JSON)
 *     and closed;
 *   - the error pages libevent writes itself (a malformed request, headers or
 *     body over ingest.max_header_bytes / ingest.max_body_bytes) leave as
 *     JSON like every other answer, with libevent's status and headers.
 * All on the event loop it was created with; no threads.
 */
#ifndef TALLY_HTTP_GUARD_H
#define TALLY_HTTP_GUARD_H

#include <stddef.h>

#include <event2/event.h>
#include <event2/http.h>

#include "config.h"

typedef struct http_guard http_guard;

/* Installs the guard on `http` (before it accepts anything). Returns NULL
 * with err filled when out of memory. */
http_guard *http_guard_new(struct event_base *base, struct evhttp *http, const tally_config *cfg,
                           char *err, size_t errlen);

/* The request has been read whole: its connection's clock stops. Call at the
 * start of every request handler. */
void http_guard_request_read(http_guard *g, struct evhttp_request *req);

/* Connections open now. */
size_t http_guard_connections(const http_guard *g);

/* Call after evhttp_free(). A connection whose free callback libevent still
 * defers (it may run inside event_base_free) frees the guard when it runs. */
void http_guard_free(http_guard *g);

#endif
