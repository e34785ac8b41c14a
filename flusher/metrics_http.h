/*
 * metrics_http.h — tally-flusher's /metrics listener: one thread, one
 * connection at a time (Prometheus scrapes every few seconds; nothing else
 * is served).
 *
 * Bounded: a request's head must arrive whole within METRICS_HTTP_TIMEOUT_MS
 * (else 408) and fit METRICS_HTTP_HEAD_MAX bytes (else 431); GET and HEAD of
 * /metrics answer 200 with the page, any other path 404, any other method
 * 405; every answer closes the connection. The page is rendered per request
 * by the caller's function, on this thread.
 */
#ifndef TALLY_METRICS_HTTP_H
#define TALLY_METRICS_HTTP_H

#include <stddef.h>

#include "prom_text.h"

#define METRICS_HTTP_TIMEOUT_MS 2000
#define METRICS_HTTP_HEAD_MAX 8192

typedef struct metrics_http metrics_http;

typedef void (*metrics_render_fn)(void *ctx, prom_text *page);

/* Binds address:port (a numeric IPv4 or IPv6 address) and starts the thread.
 * Returns the listener, or NULL with err filled (the port is taken, ...). */
metrics_http *metrics_http_start(const char *address, int port, metrics_render_fn render,
                                 void *ctx, char *err, size_t errlen);

/* Stops the thread (within about 100 ms), closes the socket, frees. NULL: no-op. */
void metrics_http_stop(metrics_http *h);

#endif
