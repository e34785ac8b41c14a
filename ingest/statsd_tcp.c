/*
 * statsd_tcp.c — see statsd_tcp.h. Each connection is a bufferevent; its
 * input is cut at '\n' and the complete lines go to the one batch.
 */

#include "statsd_tcp.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "clock.h"
#include "log.h"

typedef struct connection {
    struct statsd_tcp *tcp;
    struct bufferevent *bev;
    struct connection *prev, *next;
} connection;

struct statsd_tcp {
    const tally_config *cfg;
    gather_hub *hub;
    struct evconnlistener *listener;
    struct event *timer;      /* hands the batch over after statsd.batch_ms */
    line_batch batch;
    connection *connections;
    size_t count;
};

static void close_connection(connection *c)
{
    statsd_tcp *t = c->tcp;
    if (c->prev)
        c->prev->next = c->next;
    else
        t->connections = c->next;
    if (c->next)
        c->next->prev = c->prev;
    t->count--;
    bufferevent_free(c->bev);
    free(c);
}

static void arm_timer(statsd_tcp *t)
{
    int64_t due = line_batch_tick(&t->batch, clock_mono_ms());
    if (due < 0 || evtimer_pending(t->timer, NULL))
        return;
    struct timeval tv = {due / 1000, (due % 1000) * 1000};
    evtimer_add(t->timer, &tv);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    arm_timer(arg); /* hands the batch over when due, else waits the rest */
}

/* Takes the complete lines of the connection's input (all of it at EOF). */
static void take_lines(connection *c, int at_eof)
{
    statsd_tcp *t = c->tcp;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t len = evbuffer_get_length(in);
    const char *data = len ? (const char *)evbuffer_pullup(in, -1) : NULL;
    if (!data)
        return;
    const char *last = memrchr(data, '\n', len);
    size_t complete = at_eof ? len : last ? (size_t)(last - data) + 1 : 0;
    if (complete == 0)
        return;
    line_batch_add(&t->batch, data, complete, clock_mono_ms());
    evbuffer_drain(in, complete);
    arm_timer(t);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    connection *c = arg;
    take_lines(c, 0);
    if (evbuffer_get_length(bufferevent_get_input(bev)) > STATSD_TCP_LINE_MAX) {
        gather_counters *counters = statsd_gather_counters(c->tcp->hub);
        atomic_fetch_add(&counters->invalid, 1);
        atomic_fetch_add(&counters->dropped[STATSD_LINE_TOO_LONG], 1);
        log_warn("statsd TCP: a line longer than %d bytes; closing its connection",
                 STATSD_TCP_LINE_MAX);
        close_connection(c);
    }
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    connection *c = arg;
    if (what & BEV_EVENT_EOF)
        take_lines(c, 1);
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        close_connection(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *addr,
                      int socklen, void *arg)
{
    (void)addr;
    (void)socklen;
    statsd_tcp *t = arg;
    gather_counters *counters = statsd_gather_counters(t->hub);
    connection *c = t->count < (size_t)t->cfg->statsd.max_tcp_connections ? calloc(1, sizeof *c)
                                                                           : NULL;
    struct bufferevent *bev =
        c ? bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!bev) {
        atomic_fetch_add(&counters->tcp_refused, 1);
        evutil_closesocket(fd);
        free(c);
        return;
    }
    atomic_fetch_add(&counters->tcp_connections, 1);
    *c = (connection){t, bev, NULL, t->connections};
    if (t->connections)
        t->connections->prev = c;
    t->connections = c;
    t->count++;
    struct timeval idle = {t->cfg->statsd.tcp_idle_seconds, 0};
    bufferevent_setcb(bev, on_read, NULL, on_event, c);
    bufferevent_set_timeouts(bev, &idle, NULL);
    if (bufferevent_enable(bev, EV_READ) != 0)
        close_connection(c);
}

static struct evconnlistener *listen_on(struct event_base *base, statsd_tcp *t, char *err,
                                        size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", t->cfg->statsd.port);
    int rc = getaddrinfo(t->cfg->statsd.listen_address, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "statsd.listen_address %s: %s", t->cfg->statsd.listen_address,
                 gai_strerror(rc));
        return NULL;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(base, on_accept, t,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                128, ai->ai_addr, (int)ai->ai_addrlen);
    if (!l)
        snprintf(err, errlen, "statsd TCP %s:%d: %s", t->cfg->statsd.listen_address,
                 t->cfg->statsd.port, strerror(errno));
    freeaddrinfo(ai);
    return l;
}

statsd_tcp *statsd_tcp_start(struct event_base *base, const tally_config *cfg, gather_hub *hub,
                             char *err, size_t errlen)
{
    statsd_tcp *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "statsd TCP: out of memory");
        return NULL;
    }
    t->cfg = cfg;
    t->hub = hub;
    line_batch_init(&t->batch, hub);
    t->timer = evtimer_new(base, on_timer, t);
    t->listener = t->timer ? listen_on(base, t, err, errlen) : NULL;
    if (!t->listener) {
        if (!t->timer)
            snprintf(err, errlen, "statsd TCP: cannot create a timer");
        statsd_tcp_stop(t);
        return NULL;
    }
    log_info("statsd: TCP on %s:%d", cfg->statsd.listen_address, cfg->statsd.port);
    return t;
}

/* At a stop: what a connection's socket still holds, read to its end. */
static void read_rest(connection *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    while (evbuffer_get_length(in) <= STATSD_TCP_LINE_MAX && evbuffer_read(in, fd, 65536) > 0)
        ;
    take_lines(c, 1);
}

/* At a stop: the connections still in the listen backlog (a client that
 * connected, sent and closed just before), each read to its end. */
static void accept_rest(statsd_tcp *t)
{
    evutil_socket_t lfd = evconnlistener_get_fd(t->listener);
    int fd;
    while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct sockaddr_storage none = {0};
        on_accept(t->listener, fd, (struct sockaddr *)&none, sizeof none, t);
    }
}

void statsd_tcp_stop(statsd_tcp *t)
{
    if (!t)
        return;
    if (t->listener) {
        evconnlistener_disable(t->listener);
        accept_rest(t);
        evconnlistener_free(t->listener);
    }
    while (t->connections) {
        read_rest(t->connections);
        close_connection(t->connections);
    }
    line_batch_flush(&t->batch);
    line_batch_free(&t->batch);
    if (t->timer)
        event_free(t->timer);
    free(t);
}

size_t statsd_tcp_connections(const statsd_tcp *t)
{
    return t ? t->count : 0;
}
