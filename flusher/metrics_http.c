/*
 * metrics_http.c — see metrics_http.h.
 */
#include "metrics_http.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "listen_socket.h"
#include "log.h"

#define POLL_MS 100

struct metrics_http {
    int fd;
    pthread_t thread;
    atomic_int stop;
    metrics_render_fn render;
    void *ctx;
};

static int bind_listener(const char *address, int port, char *err, size_t errlen)
{
    char why[512];
    int fd = listen_socket_open(address, port, LISTEN_NUMERIC_HOST, 16, why, sizeof why);
    if (fd < 0)
        snprintf(err, errlen, "metrics listener on %s (flusher.metrics_port; 0 turns it off)", why);
    return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* (the client went away or timed out: nothing to do) */
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, int code, const char *reason, const char *extra, const char *body,
                   size_t len, int head_only)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason,
                     code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain",
                     len, extra);
    send_all(fd, head, (size_t)n);
    if (!head_only)
        send_all(fd, body, len);
}

/* Reads the request head into buf; returns its length, 0 when too large,
 * -1 on a timeout or a closed connection. */
static ssize_t read_head(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    while (len < cap - 1) {
        ssize_t r = recv(fd, buf + len, cap - 1 - len, 0);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return (ssize_t)len;
    }
    return 0;
}

static void serve(metrics_http *h, int fd)
{
    struct timeval tv = {METRICS_HTTP_TIMEOUT_MS / 1000, (METRICS_HTTP_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    static char head[METRICS_HTTP_HEAD_MAX + 1]; /* (one connection at a time) */
    ssize_t n = read_head(fd, head, sizeof head);
    if (n < 0) {
        const char msg[] = "request head not received in time\n";
        answer(fd, 408, "Request Timeout", "", msg, sizeof msg - 1, 0);
        return;
    }
    if (n == 0) {
        const char msg[] = "request head too large\n";
        answer(fd, 431, "Request Header Fields Too Large", "", msg, sizeof msg - 1, 0);
        return;
    }
    int get = strncmp(head, "GET ", 4) == 0, is_head = strncmp(head, "HEAD ", 5) == 0;
    const char *path = get ? head + 4 : is_head ? head + 5 : NULL;
    if (!path) {
        const char msg[] = "/metrics takes GET, HEAD\n";
        answer(fd, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", msg, sizeof msg - 1, 0);
        return;
    }
    size_t plen = strcspn(path, " ?\r\n");
    if (plen != 8 || strncmp(path, "/metrics", 8) != 0) {
        const char msg[] = "no such route (this listener serves /metrics)\n";
        answer(fd, 404, "Not Found", "", msg, sizeof msg - 1, is_head);
        return;
    }
    prom_text page;
    prom_text_init(&page);
    h->render(h->ctx, &page);
    if (prom_text_failed(&page)) {
        const char msg[] = "out of memory\n";
        answer(fd, 500, "Internal Server Error", "", msg, sizeof msg - 1, is_head);
    } else {
        answer(fd, 200, "OK", "", page.buf ? page.buf : "", page.len, is_head);
    }
    prom_text_free(&page);
}

static void *run(void *arg)
{
    metrics_http *h = arg;
    sigset_t all; /* signals (SIGTERM, SIGHUP) go to the main thread */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    while (!atomic_load(&h->stop)) {
        struct pollfd p = {h->fd, POLLIN, 0};
        int r = poll(&p, 1, POLL_MS);
        if (r <= 0)
            continue;
        int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue; /* (a client that gave up before accept) */
        serve(h, fd);
        close(fd);
    }
    return NULL;
}

metrics_http *metrics_http_start(const char *address, int port, metrics_render_fn render,
                                 void *ctx, char *err, size_t errlen)
{
    metrics_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "metrics listener: out of memory");
        return NULL;
    }
    h->render = render;
    h->ctx = ctx;
    h->fd = bind_listener(address, port, err, errlen);
    if (h->fd < 0) {
        free(h);
        return NULL;
    }
    int rc = pthread_create(&h->thread, NULL, run, h);
    if (rc != 0) {
        snprintf(err, errlen, "metrics listener: cannot start its thread: %s", strerror(rc));
        close(h->fd);
        free(h);
        return NULL;
    }
    log_info("metrics: serving /metrics on %s:%d", address, port);
    return h;
}

void metrics_http_stop(metrics_http *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, 1);
    pthread_join(h->thread, NULL);
    close(h->fd);
    free(h);
}
