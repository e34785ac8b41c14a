/*
 * http_client.h — a small blocking HTTP/1.1 client over one keep-alive TCP
 * connection, for load tools (tally-drill, benchmarks).
 *
 * Contract in a few lines:
 *  - One http_client = one connection to one host:port, used by one thread at
 *    a time. It connects lazily on the first request and reconnects by itself
 *    on the next request after any transport error or "Connection: close".
 *  - http_client_request() sends one request and reads one complete response
 *    (Content-Length, chunked, or read-to-close bodies). It never retries on
 *    its own: whether a request may be sent again is the caller's decision.
 *  - Every socket operation is bounded by the client's timeout_ms.
 *  - The response (status, Retry-After, body) lives in memory owned by the
 *    client and stays valid until the next request or http_client_free().
 */
#ifndef TALLY_DRILL_HTTP_CLIENT_H
#define TALLY_DRILL_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_client http_client;

typedef struct http_response {
    int status;          /* e.g. 200, 503 */
    int retry_after_s;   /* Retry-After in seconds; -1 when absent or not a number */
    const char *body;    /* NUL-terminated (the body itself may hold NULs); owned by the client */
    size_t body_len;
} http_response;

/* One extra request header. */
typedef struct http_header {
    const char *name;
    const char *value;
} http_header;

/*
 * Creates a client for host (an IPv4/IPv6 literal or a name) and port, with a
 * timeout per socket operation (connect, each send, each receive).
 * Does not connect yet. Returns NULL only when out of memory.
 */
http_client *http_client_new(const char *host, int port, int timeout_ms);

/* Closes the connection and frees everything; NULL is allowed. */
void http_client_free(http_client *c);

/* Closes the current connection (if any); the next request opens a new one. */
void http_client_disconnect(http_client *c);

/*
 * Sends `method path` with the given headers (Host, Content-Length and
 * Connection: keep-alive are added) and body (may be NULL when body_len is 0),
 * then reads the whole response into *resp.
 * Returns 0 when a complete response was read (whatever its status), -1 on a
 * transport problem (connect refused, timeout, reset, malformed response):
 * err (err_len bytes, may be 0) then says what happened, and the connection is
 * closed so the next call reconnects.
 */
int http_client_request(http_client *c, const char *method, const char *path,
                        const http_header *headers, size_t nheaders,
                        const char *body, size_t body_len,
                        http_response *resp, char *err, size_t err_len);

#endif
