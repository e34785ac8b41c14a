/*
 * http_client.c — blocking HTTP/1.1 over one keep-alive connection.
 *
 * The socket is non-blocking and every wait goes through poll() with the
 * client's timeout, so no call can hang longer than timeout_ms per socket
 * operation (connect, each send, each receive), whatever the server does.
 * Received bytes land in one growable input buffer; the parser works on it in
 * place: find the end of the head ("\r\n\r\n"), read the status and the few
 * headers that matter for framing (Content-Length, Transfer-Encoding,
 * Connection) plus Retry-After, then read the body by its framing into a
 * second buffer that the caller borrows until the next request.
 *
 * On any transport problem the connection is closed and the error returned;
 * the client never resends by itself, because only the caller knows whether a
 * request is safe to repeat (tally's POST /v1/events is, with its
 * Idempotency-Key; a generic POST is not).
 */
#include "http_client.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEAD_MAX (64 * 1024)          /* largest response head accepted */
#define BODY_MAX (64u * 1024 * 1024)  /* largest response body accepted */

struct http_client {
    char *host;
    char port[8];
    int timeout_ms;
    int fd;               /* -1 when not connected */
    char *in;             /* received bytes: [in_pos, in_len) not yet parsed */
    size_t in_pos, in_len, in_cap;
    char *body;           /* the last response's body, NUL-terminated */
    size_t body_len, body_cap;
    char *req;            /* the request head being sent */
    size_t req_cap;
};

static void set_err(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

http_client *http_client_new(const char *host, int port, int timeout_ms)
{
    http_client *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->host = strdup(host);
    if (c->host == NULL) {
        free(c);
        return NULL;
    }
    snprintf(c->port, sizeof c->port, "%d", port);
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    c->fd = -1;
    return c;
}

void http_client_disconnect(http_client *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->in_pos = c->in_len = 0;
}

void http_client_free(http_client *c)
{
    if (c == NULL) return;
    http_client_disconnect(c);
    free(c->host);
    free(c->in);
    free(c->body);
    free(c->req);
    free(c);
}

/* Waits until fd is ready for `events`; 0 = ready, -1 = timeout or error. */
static int wait_fd(http_client *c, short events, char *err, size_t err_len, const char *what)
{
    struct pollfd p = {.fd = c->fd, .events = events};
    for (;;) {
        int n = poll(&p, 1, c->timeout_ms);
        if (n > 0) return 0;
        if (n == 0) {
            set_err(err, err_len, "%s: timed out after %d ms", what, c->timeout_ms);
            return -1;
        }
        if (errno != EINTR) {
            set_err(err, err_len, "%s: poll: %s", what, strerror(errno));
            return -1;
        }
    }
}

static int connect_to_server(http_client *c, char *err, size_t err_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(c->host, c->port, &hints, &res);
    if (rc != 0) {
        set_err(err, err_len, "resolve %s: %s", c->host, gai_strerror(rc));
        return -1;
    }
    set_err(err, err_len, "connect %s:%s: no address", c->host, c->port);
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (c->fd < 0) {
            set_err(err, err_len, "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* latency only */
        if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        if (errno == EINPROGRESS) {
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (wait_fd(c, POLLOUT, err, err_len, "connect") == 0 &&
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                break;
            if (soerr != 0) set_err(err, err_len, "connect %s:%s: %s", c->host, c->port, strerror(soerr));
        } else {
            set_err(err, err_len, "connect %s:%s: %s", c->host, c->port, strerror(errno));
        }
        close(c->fd);
        c->fd = -1;
    }
    freeaddrinfo(res);
    if (c->fd < 0) return -1;
    c->in_pos = c->in_len = 0;
    return 0;
}

/* Sends every byte of the iovecs. */
static int send_all(http_client *c, struct iovec *iov, int iovcnt, char *err, size_t err_len)
{
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (wait_fd(c, POLLOUT, err, err_len, "send") != 0) return -1;
                continue;
            }
            set_err(err, err_len, "send: %s", strerror(errno));
            return -1;
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* Receives more bytes into the input buffer. Returns the number received,
 * 0 at end of stream, -1 on error or timeout. */
static ssize_t fill(http_client *c, char *err, size_t err_len)
{
    if (c->in_pos > 0 && c->in_pos == c->in_len) c->in_pos = c->in_len = 0;
    if (c->in_cap - c->in_len < 4096) {
        if (c->in_pos > 0) { /* compact first */
            memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
            c->in_len -= c->in_pos;
            c->in_pos = 0;
        }
        if (c->in_cap - c->in_len < 4096) {
            size_t cap = c->in_cap ? c->in_cap * 2 : 16384;
            char *p = realloc(c->in, cap);
            if (p == NULL) {
                set_err(err, err_len, "out of memory");
                return -1;
            }
            c->in = p;
            c->in_cap = cap;
        }
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            return n;
        }
        if (n == 0) return 0;
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(c, POLLIN, err, err_len, "receive") != 0) return -1;
            continue;
        }
        set_err(err, err_len, "receive: %s", strerror(errno));
        return -1;
    }
}

static int body_append(http_client *c, const char *p, size_t n, char *err, size_t err_len)
{
    if (c->body_len + n + 1 > BODY_MAX) {
        set_err(err, err_len, "response body larger than %u bytes", BODY_MAX);
        return -1;
    }
    if (c->body_len + n + 1 > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 4096;
        while (cap < c->body_len + n + 1) cap *= 2;
        char *b = realloc(c->body, cap);
        if (b == NULL) {
            set_err(err, err_len, "out of memory");
            return -1;
        }
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + c->body_len, p, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return 0;
}

/* Moves exactly n bytes of the stream into the body. */
static int read_exact(http_client *c, size_t n, char *err, size_t err_len)
{
    while (n > 0) {
        if (c->in_pos == c->in_len) {
            ssize_t r = fill(c, err, err_len);
            if (r == 0) set_err(err, err_len, "connection closed in the middle of the body");
            if (r <= 0) return -1;
        }
        size_t take = c->in_len - c->in_pos;
        if (take > n) take = n;
        if (body_append(c, c->in + c->in_pos, take, err, err_len) != 0) return -1;
        c->in_pos += take;
        n -= take;
    }
    return 0;
}

/* Reads one CRLF-terminated line of the stream; *line points into the input
 * buffer (valid until the next fill) and has its CR LF replaced by NULs. */
static int read_line(http_client *c, char **line, char *err, size_t err_len)
{
    for (;;) {
        char *start = c->in + c->in_pos;
        char *nl = c->in_len > c->in_pos ? memchr(start, '\n', c->in_len - c->in_pos) : NULL;
        if (nl != NULL) {
            *nl = '\0';
            if (nl > start && nl[-1] == '\r') nl[-1] = '\0';
            c->in_pos = (size_t)(nl - c->in) + 1;
            *line = start;
            return 0;
        }
        if (c->in_len - c->in_pos > HEAD_MAX) {
            set_err(err, err_len, "line longer than %d bytes in the response", HEAD_MAX);
            return -1;
        }
        ssize_t r = fill(c, err, err_len);
        if (r == 0) set_err(err, err_len, "connection closed in the middle of a chunked body");
        if (r <= 0) return -1;
    }
}

static int read_chunked(http_client *c, char *err, size_t err_len)
{
    for (;;) {
        char *line, *end;
        if (read_line(c, &line, err, err_len) != 0) return -1;
        errno = 0;
        unsigned long long size = strtoull(line, &end, 16);
        if (end == line || errno != 0 || size > BODY_MAX) {
            set_err(err, err_len, "bad chunk size \"%.40s\"", line);
            return -1;
        }
        if (size == 0) { /* trailers up to an empty line */
            do {
                if (read_line(c, &line, err, err_len) != 0) return -1;
            } while (line[0] != '\0');
            return 0;
        }
        if (read_exact(c, (size_t)size, err, err_len) != 0) return -1;
        if (read_line(c, &line, err, err_len) != 0) return -1;
        if (line[0] != '\0') {
            set_err(err, err_len, "chunk not followed by CRLF");
            return -1;
        }
    }
}

static int read_to_close(http_client *c, char *err, size_t err_len)
{
    for (;;) {
        if (c->in_pos < c->in_len) {
            if (body_append(c, c->in + c->in_pos, c->in_len - c->in_pos, err, err_len) != 0) return -1;
            c->in_pos = c->in_len;
        }
        ssize_t r = fill(c, err, err_len);
        if (r == 0) return 0;
        if (r < 0) return -1;
    }
}

/* Value of a header line "Name: value" when its name is `name`, else NULL. */
static const char *header_value(const char *line, const char *name)
{
    size_t n = strlen(name);
    if (strncasecmp(line, name, n) != 0 || line[n] != ':') return NULL;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t') v++;
    return v;
}

/* Reads and parses one response. Sets *close_after when the connection must
 * not be reused. */
static int read_response(http_client *c, const char *method, http_response *resp, int *close_after,
                         char *err, size_t err_len)
{
    /* The head: up to the empty line. */
    char *head_end;
    for (;;) {
        head_end = c->in_len > c->in_pos ? memmem(c->in + c->in_pos, c->in_len - c->in_pos, "\r\n\r\n", 4) : NULL;
        if (head_end != NULL) break;
        if (c->in_len - c->in_pos > HEAD_MAX) {
            set_err(err, err_len, "response head larger than %d bytes", HEAD_MAX);
            return -1;
        }
        ssize_t r = fill(c, err, err_len);
        if (r == 0) set_err(err, err_len, "connection closed before a response");
        if (r <= 0) return -1;
    }
    char *head = c->in + c->in_pos;
    head_end[2] = '\0'; /* the head is now "line\r\nline\r\n" */
    c->in_pos = (size_t)(head_end - c->in) + 4;

    int minor = 0, status = 0;
    if (sscanf(head, "HTTP/1.%d %d", &minor, &status) != 2 || status < 100 || status > 999) {
        set_err(err, err_len, "not an HTTP/1.x status line: \"%.60s\"", head);
        return -1;
    }
    long long content_length = -1;
    int chunked = 0;
    *close_after = minor == 0;
    resp->status = status;
    resp->retry_after_s = -1;
    for (char *line = strstr(head, "\r\n"); line != NULL && line[2] != '\0';) {
        line += 2;
        char *eol = strstr(line, "\r\n");
        if (eol == NULL) break;
        *eol = '\0';
        const char *v;
        if ((v = header_value(line, "Content-Length")) != NULL) {
            char *end;
            errno = 0;
            content_length = strtoll(v, &end, 10);
            if (end == v || errno != 0 || content_length < 0 || content_length > (long long)BODY_MAX) {
                set_err(err, err_len, "bad Content-Length \"%.40s\"", v);
                return -1;
            }
        } else if ((v = header_value(line, "Transfer-Encoding")) != NULL) {
            chunked = strcasestr(v, "chunked") != NULL;
        } else if ((v = header_value(line, "Connection")) != NULL) {
            if (strcasestr(v, "close") != NULL) *close_after = 1;
            else if (strcasestr(v, "keep-alive") != NULL) *close_after = 0;
        } else if ((v = header_value(line, "Retry-After")) != NULL) {
            char *end;
            long s = strtol(v, &end, 10);
            if (end != v && s >= 0 && s < 1000000) resp->retry_after_s = (int)s;
        }
        *eol = '\r';
        line = eol;
    }

    c->body_len = 0;
    if (body_append(c, "", 0, err, err_len) != 0) return -1;
    if (strcmp(method, "HEAD") == 0 || status < 200 || status == 204 || status == 304) return 0;
    if (chunked) return read_chunked(c, err, err_len);
    if (content_length >= 0) return read_exact(c, (size_t)content_length, err, err_len);
    *close_after = 1;
    return read_to_close(c, err, err_len);
}

int http_client_request(http_client *c, const char *method, const char *path,
                        const http_header *headers, size_t nheaders,
                        const char *body, size_t body_len,
                        http_response *resp, char *err, size_t err_len)
{
    /* The head, formatted twice at most: once to measure, once to write. */
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0, cap = pass == 0 ? 0 : c->req_cap;
        char *out = pass == 0 ? NULL : c->req;
#define PUT(...)                                                                                  \
    do {                                                                                          \
        int n_ = snprintf(out ? out + off : NULL, out ? cap - off : 0, __VA_ARGS__);              \
        if (n_ < 0) {                                                                             \
            set_err(err, err_len, "cannot format the request");                                   \
            return -1;                                                                            \
        }                                                                                         \
        off += (size_t)n_;                                                                        \
    } while (0)
        PUT("%s %s HTTP/1.1\r\nHost: %s:%s\r\nContent-Length: %zu\r\nConnection: keep-alive\r\n",
            method, path, c->host, c->port, body_len);
        for (size_t i = 0; i < nheaders; i++) PUT("%s: %s\r\n", headers[i].name, headers[i].value);
        PUT("\r\n");
#undef PUT
        if (pass == 0 && off + 1 > c->req_cap) {
            char *p = realloc(c->req, off + 1);
            if (p == NULL) {
                set_err(err, err_len, "out of memory");
                return -1;
            }
            c->req = p;
            c->req_cap = off + 1;
        }
        if (pass == 1) {
            if (c->fd < 0 && connect_to_server(c, err, err_len) != 0) return -1;
            struct iovec iov[2] = {{.iov_base = c->req, .iov_len = off},
                                   {.iov_base = (void *)body, .iov_len = body_len}};
            int close_after = 0;
            if (send_all(c, iov, body_len > 0 ? 2 : 1, err, err_len) != 0 ||
                read_response(c, method, resp, &close_after, err, err_len) != 0) {
                http_client_disconnect(c);
                return -1;
            }
            resp->body = c->body;
            resp->body_len = c->body_len;
            if (close_after) http_client_disconnect(c);
        }
    }
    return 0;
}
