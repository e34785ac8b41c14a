/*
 * http_guard.c — see http_guard.h.
 *
 * Every connection evhttp accepts gets its bufferevent from guard_bevcb(): a
 * filter bufferevent over a socket bufferevent. The filter's input callback
 * moves bytes through untouched (evbuffer_remove_buffer moves chains, it does
 * not copy) and starts the request clock when bytes arrive on an idle
 * connection; the request handler stops it (http_guard_request_read). The
 * filter's context is freed with the bufferevent, which is how the guard
 * learns that a connection ended, and so counts connections exactly.
 *
 * Refusing and timing out. A connection the guard gives up on (over the
 * connection limit, or its request late) stops feeding evhttp: its input is
 * discarded from then on, so no request on it can ever run. The guard writes a
 * short JSON answer straight to the socket (evhttp has nothing queued on a
 * connection whose request is incomplete), shuts down its sending side, and
 * lets the client read the answer and close; a client that does not close
 * within LINGER_MS has its socket shut down entirely, which evhttp sees as the
 * end of the connection. Reading and dropping what the client still sends
 * (rather than closing at once) is what lets the client see the answer: a
 * socket closed with unread input resets the connection, and the answer with it.
 *
 * A filter moves output only while writing is enabled on it, and evhttp
 * queues a reply before it enables writing (for a reply sent after the
 * handler returned, writing was disabled meanwhile), and enabling a filter
 * does not move what is queued. So whenever output is queued, the guard
 * activates a per-connection event that flushes the filter on the next turn
 * of the loop, when evhttp has enabled it.
 *
 * Closing. A filter reports its output written as soon as it has moved it to
 * the socket's bufferevent, and evhttp shuts a connection it closes (an error
 * page, "Connection: close") down right after that report, so an answer
 * still in the socket's bufferevent would be lost. The output callback
 * therefore writes what it moves to the socket at once; only what the kernel
 * does not take then (an answer larger than the socket's send buffer) waits
 * in the bufferevent, and on a closing connection that rest can be lost.
 *
 * libevent's own answers. evhttp writes an HTML error page itself for a
 * request it cannot parse (400) or whose headers or body exceed its limits
 * (413). Tally's own answers are all application/json, so a response whose
 * header block says text/html is libevent's: the output callback holds it
 * until it is whole, then sends the same status line and headers with a JSON
 * body naming the limits instead.
 */
#include "http_guard.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "log.h"

#define LINGER_MS 2000
#define HEADER_BLOCK_MAX 16384 /* longest response header block the guard inspects */

typedef enum out_state { OUT_START, OUT_PASS } out_state;

typedef struct guarded_conn {
    http_guard *g;
    struct bufferevent *bev; /* the filter evhttp reads and writes */
    struct bufferevent *sock; /* the socket's, under it */
    struct event *deadline;  /* the request clock, then the linger */
    struct event *kick;      /* moves output the filter was not asked to move */
    int reading;             /* a request has started and is not read whole yet */
    int discarding;          /* given up on: input dropped, answer sent */
    out_state out;
    size_t out_left;         /* OUT_PASS: bytes of the current response still to pass */
    evutil_socket_t fd;      /* -1 until registered in g->by_fd */
} guarded_conn;

struct http_guard {
    struct event_base *base;
    size_t open;
    size_t max_connections;
    struct timeval client_timeout;
    long long max_header_bytes, max_body_bytes;
    guarded_conn **by_fd; /* by socket, for http_guard_request_read */
    size_t by_fd_cap;
    int released;         /* http_guard_free ran: the last conn_forget frees it */
};

static void guard_destroy(http_guard *g)
{
    free(g->by_fd);
    free(g);
}

static void conn_register(struct guarded_conn *c);

/* ---- giving up on a connection ----------------------------------------------- */

static int conn_in_use(const guarded_conn *c);

static void on_linger_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guarded_conn *c = arg;
    evutil_socket_t s = conn_in_use(c) ? bufferevent_getfd(c->bev) : -1;
    if (s >= 0)
        shutdown(s, SHUT_RDWR); /* evhttp reads the end and frees the connection */
}

/* Answers `status` with {"error": message}, stops reading requests from the
 * connection, and lets it close (see the file comment). */
static void give_up(guarded_conn *c, const char *status, const char *message)
{
    if (!conn_in_use(c))
        return; /* (evhttp let go of it already; its socket may be another's now) */
    c->discarding = 1;
    c->reading = 0;
    evutil_socket_t s = bufferevent_getfd(c->bev);
    struct bufferevent *under = bufferevent_get_underlying(c->bev);
    int nothing_queued = evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
                         (!under || evbuffer_get_length(bufferevent_get_output(under)) == 0);
    if (s >= 0 && nothing_queued) {
        char answer[768];
        int body_len = (int)strlen(message) + 13;
        int n = snprintf(answer, sizeof answer,
                         "HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         "Connection: close\r\n\r\n{\"error\":\"%s\"}\n",
                         status, body_len, message);
        if (n > 0 && (size_t)n < sizeof answer && send(s, answer, (size_t)n, MSG_NOSIGNAL) < 0 &&
            errno != EAGAIN)
            log_debug("http: answering %s: %s", status, strerror(errno));
        shutdown(s, SHUT_WR);
    }
    struct timeval linger = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
    event_free(c->deadline);
    c->deadline = evtimer_new(c->g->base, on_linger_over, c);
    if (!c->deadline || evtimer_add(c->deadline, &linger) != 0)
        on_linger_over(-1, 0, c);
}

static void on_request_late(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guarded_conn *c = arg;
    char message[160];
    snprintf(message, sizeof message,
             "request not received whole within ingest.client_timeout_seconds (%ld s)",
             (long)c->g->client_timeout.tv_sec);
    give_up(c, "408 Request Timeout", message);
}

static void on_over_limit(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guarded_conn *c = arg;
    char message[160];
    snprintf(message, sizeof message, "too many connections (ingest.max_connections = %zu)",
             c->g->max_connections);
    give_up(c, "503 Service Unavailable", message);
}

/* ---- the filter ------------------------------------------------------------------ */

static size_t move_limit(struct evbuffer *src, ev_ssize_t limit)
{
    size_t have = evbuffer_get_length(src);
    return limit >= 0 && (size_t)limit < have ? (size_t)limit : have;
}

static enum bufferevent_filter_result guard_input(struct evbuffer *src, struct evbuffer *dst,
                                                  ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                  void *ctx)
{
    (void)mode;
    guarded_conn *c = ctx;
    if (c->discarding) {
        evbuffer_drain(src, evbuffer_get_length(src));
        return BEV_OK;
    }
    if (!c->reading && evbuffer_get_length(src) > 0) {
        c->reading = 1;
        evtimer_add(c->deadline, &c->g->client_timeout);
        if (c->fd < 0)
            conn_register(c);
    }
    evbuffer_remove_buffer(src, dst, move_limit(src, limit));
    return BEV_OK;
}

/* The value of header `name` in the header block [h, h+len), or NULL. */
static const char *header_value(const char *h, size_t len, const char *name, size_t *value_len)
{
    size_t nlen = strlen(name);
    for (const char *line = h, *end = h + len; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (v < eol && *v == ' ')
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *value_len = (size_t)(ve - v);
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

/* What libevent's error page for `status` means, for the JSON that replaces it. */
static void page_message(const http_guard *g, int status, char *out, size_t outlen)
{
    switch (status) {
    case 400:
        snprintf(out, outlen,
                 "malformed HTTP request (or request line and headers over "
                 "ingest.max_header_bytes = %lld)",
                 g->max_header_bytes);
        break;
    case 501: snprintf(out, outlen, "unknown HTTP method"); break;
    case 413:
        snprintf(out, outlen,
                 "request too large: headers over ingest.max_header_bytes (%lld) or body over "
                 "ingest.max_body_bytes (%lld)",
                 g->max_header_bytes, g->max_body_bytes);
        break;
    default: snprintf(out, outlen, "HTTP error %d", status); break;
    }
}

/* Rewrites libevent's HTML page (header block `head` of head_len bytes, then
 * body_len bytes of body, all in src) into dst with a JSON body. */
static void rewrite_page(const http_guard *g, struct evbuffer *src, struct evbuffer *dst,
                         const char *head, size_t head_len, size_t body_len)
{
    int status = head_len > 12 ? atoi(head + 9) : 500;
    char message[256];
    page_message(g, status, message, sizeof message);
    const char *end = head + head_len;
    for (const char *line = head; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        eol = eol ? eol + 1 : end;
        size_t n = (size_t)(eol - line);
        int drop = (n > 13 && strncasecmp(line, "Content-Type:", 13) == 0) ||
                   (n > 15 && strncasecmp(line, "Content-Length:", 15) == 0) || n <= 2;
        if (!drop)
            evbuffer_add(dst, line, n);
        line = eol;
    }
    evbuffer_add_printf(dst, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n"
                             "{\"error\":\"%s\"}\n",
                        strlen(message) + 13, message);
    evbuffer_drain(src, head_len + body_len);
}

/* Moves the output to dst (see guard_output) and writes it to the socket. */
static enum bufferevent_filter_result shape_output(guarded_conn *c, struct evbuffer *src,
                                                   struct evbuffer *dst)
{
    while (evbuffer_get_length(src) > 0) {
        if (c->out == OUT_PASS) {
            size_t n = move_limit(src, (ev_ssize_t)c->out_left);
            evbuffer_remove_buffer(src, dst, n);
            c->out_left -= n;
            if (c->out_left == 0)
                c->out = OUT_START;
            continue;
        }
        /* the start of a response: find its header block */
        struct evbuffer_ptr at = evbuffer_search(src, "\r\n\r\n", 4, NULL);
        if (at.pos < 0) {
            if (evbuffer_get_length(src) < HEADER_BLOCK_MAX)
                return BEV_NEED_MORE; /* (evhttp writes a header block whole) */
            evbuffer_remove_buffer(src, dst, evbuffer_get_length(src)); /* not ours to inspect */
            return BEV_OK;
        }
        size_t head_len = (size_t)at.pos + 4;
        const char *head = (const char *)evbuffer_pullup(src, (ev_ssize_t)head_len);
        if (!head)
            return BEV_ERROR;
        size_t vlen = 0, body_len = SIZE_MAX - head_len; /* no length: it runs to the close */
        const char *v = header_value(head, head_len, "Content-Length", &vlen);
        if (v)
            body_len = (size_t)strtoull(v, NULL, 10);
        const char *type = header_value(head, head_len, "Content-Type", &vlen);
        int html = type && vlen >= 9 && strncasecmp(type, "text/html", 9) == 0;
        if (html && v) {
            if (evbuffer_get_length(src) < head_len + body_len)
                return BEV_NEED_MORE;
            rewrite_page(c->g, src, dst, head, head_len, body_len);
            continue;
        }
        c->out = OUT_PASS;
        c->out_left = head_len + body_len;
    }
    return BEV_OK;
}

static enum bufferevent_filter_result guard_output(struct evbuffer *src, struct evbuffer *dst,
                                                   ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                   void *ctx)
{
    (void)limit;
    (void)mode;
    guarded_conn *c = ctx;
    enum bufferevent_filter_result res = shape_output(c, src, dst);
    evutil_socket_t s = conn_in_use(c) ? bufferevent_getfd(c->sock) : -1;
    if (s >= 0 && evbuffer_get_length(dst) > 0)
        evbuffer_write(dst, s); /* (see "Closing" above; what is left, the bufferevent writes) */
    return res;
}

/* ---- connections ------------------------------------------------------------------ */

/* Whether evhttp still uses the connection: bufferevent_free() clears the
 * callbacks at once, while the filter (and this context) are finalized on a
 * later turn of the loop; in between, the socket may already be closed. */
static int conn_in_use(const guarded_conn *c)
{
    bufferevent_event_cb on_event = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &on_event, NULL);
    return on_event != NULL;
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    guarded_conn *c = arg;
    if (conn_in_use(c) && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
        bufferevent_flush(c->bev, EV_WRITE, BEV_NORMAL);
}

static void on_output_queued(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    guarded_conn *c = arg;
    if (info->n_added)
        event_active(c->kick, EV_TIMEOUT, 1);
}

static void conn_forget(void *ctx)
{
    guarded_conn *c = ctx;
    if (c->kick)
        event_free(c->kick);
    if (c->fd >= 0 && (size_t)c->fd < c->g->by_fd_cap && c->g->by_fd[c->fd] == c)
        c->g->by_fd[c->fd] = NULL;
    if (c->deadline)
        event_free(c->deadline);
    http_guard *g = c->g;
    free(c);
    /* A connection's free callback is deferred (BEV_OPT_DEFER_CALLBACKS): at
     * exit it may run after evhttp_free and http_guard_free, from inside
     * event_base_free. */
    if (--g->open == 0 && g->released)
        guard_destroy(g);
}

/* Makes room in by_fd for socket s; 0 or -1 (out of memory). */
static int by_fd_reserve(http_guard *g, evutil_socket_t s)
{
    if (s < 0)
        return -1;
    if ((size_t)s < g->by_fd_cap)
        return 0;
    size_t cap = g->by_fd_cap ? g->by_fd_cap : 256;
    while (cap <= (size_t)s)
        cap *= 2;
    guarded_conn **grown = realloc(g->by_fd, cap * sizeof *grown);
    if (!grown)
        return -1;
    memset(grown + g->by_fd_cap, 0, (cap - g->by_fd_cap) * sizeof *grown);
    g->by_fd = grown;
    g->by_fd_cap = cap;
    return 0;
}

/* Files the connection under its socket (known once bytes arrive). */
static void conn_register(guarded_conn *c)
{
    evutil_socket_t s = bufferevent_getfd(c->bev);
    if (by_fd_reserve(c->g, s) != 0)
        return; /* (unregistered: its clock then runs to the deadline) */
    c->g->by_fd[s] = c;
    c->fd = s;
}

/* The connection of a request's bufferevent, found by its socket. */
static guarded_conn *conn_of(http_guard *g, struct bufferevent *bev)
{
    evutil_socket_t s = bev ? bufferevent_getfd(bev) : -1;
    if (s < 0 || (size_t)s >= g->by_fd_cap)
        return NULL;
    guarded_conn *c = g->by_fd[s];
    return c && c->bev == bev ? c : NULL;
}

static struct bufferevent *guard_bevcb(struct event_base *base, void *arg)
{
    http_guard *g = arg;
    guarded_conn *c = calloc(1, sizeof *c);
    struct bufferevent *sock = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct bufferevent *bev = NULL;
    if (c && sock)
        bev = bufferevent_filter_new(sock, guard_input, guard_output,
                                     BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS,
                                     conn_forget, c);
    if (!bev) {
        log_error("http: out of memory guarding a connection");
        if (sock)
            bufferevent_free(sock);
        free(c);
        return NULL; /* (evhttp makes a plain one) */
    }
    c->g = g;
    c->bev = bev;
    c->sock = sock;
    c->fd = -1;
    g->open++;
    int over = g->open > g->max_connections;
    c->deadline = evtimer_new(base, over ? on_over_limit : on_request_late, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    if (!c->deadline || !c->kick ||
        !evbuffer_add_cb(bufferevent_get_output(bev), on_output_queued, c)) {
        bufferevent_free(bev); /* frees c through conn_forget */
        return NULL;
    }
    if (over) {
        c->discarding = 1;
        struct timeval now = {0, 0}; /* once evhttp has given it its socket */
        evtimer_add(c->deadline, &now);
    }
    return bev;
}

/* ---- the interface ---------------------------------------------------------------- */

http_guard *http_guard_new(struct event_base *base, struct evhttp *http, const tally_config *cfg,
                           char *err, size_t errlen)
{
    http_guard *g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    g->base = base;
    g->max_connections = (size_t)cfg->ingest.max_connections;
    g->client_timeout.tv_sec = cfg->ingest.client_timeout_seconds;
    g->max_header_bytes = cfg->ingest.max_header_bytes;
    g->max_body_bytes = cfg->ingest.max_body_bytes;
    evhttp_set_bevcb(http, guard_bevcb, g);
    evhttp_set_max_headers_size(http, (ev_ssize_t)cfg->ingest.max_header_bytes);
    evhttp_set_max_body_size(http, (ev_ssize_t)cfg->ingest.max_body_bytes);
    evhttp_set_timeout(http, cfg->ingest.keepalive_timeout_seconds);
    /* a body over the limit is read to its end, so the client sees the 413 */
    evhttp_set_flags(http, EVHTTP_SERVER_LINGERING_CLOSE);
    return g;
}

void http_guard_request_read(http_guard *g, struct evhttp_request *req)
{
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    guarded_conn *c = evcon ? conn_of(g, evhttp_connection_get_bufferevent(evcon)) : NULL;
    if (!c)
        return;
    c->reading = 0;
    if (!c->discarding)
        evtimer_del(c->deadline);
}

size_t http_guard_connections(const http_guard *g)
{
    return g->open;
}

void http_guard_free(http_guard *g)
{
    if (!g)
        return;
    g->released = 1;
    if (g->open == 0)
        guard_destroy(g);
}
