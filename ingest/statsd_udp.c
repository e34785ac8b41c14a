/*
 * statsd_udp.c — see statsd_udp.h.
 */
#include "statsd_udp.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define VLEN 32               /* datagrams per recvmmsg() */
#define DATAGRAM_MAX 65536    /* the largest UDP payload fits */
#define IDLE_POLL_MS 200      /* how often an idle reader looks at the stop flag */
#define ROUNDS_MAX 64         /* recvmmsg() calls before the reader looks at its timers */

typedef struct reader {
    struct statsd_udp *udp;
    int fd;
    pthread_t thread;
    int started;
    _Atomic uint64_t drops;   /* the socket's SO_RXQ_OVFL count, last seen */
} reader;

struct statsd_udp {
    const tally_config *cfg;
    gather_hub *hub;
    int stop_fd;              /* eventfd: readable once stopping */
    long rcvbuf;
    int count;
    reader readers[];
};

static int open_socket(const tally_config *cfg, long *rcvbuf, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[8];
    snprintf(port, sizeof port, "%d", cfg->statsd.port);
    int rc = getaddrinfo(cfg->statsd.listen_address, port, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "statsd.listen_address %s: %s", cfg->statsd.listen_address,
                 gai_strerror(rc));
        return -1;
    }
    int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int one = 1, size = (int)cfg->statsd.rcvbuf_bytes;
    socklen_t len = sizeof size;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one) != 0 ||
        (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0 &&
         setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size) != 0) ||
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, &len) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(err, errlen, "statsd UDP %s:%d: %s", cfg->statsd.listen_address,
                 cfg->statsd.port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return -1;
    }
    freeaddrinfo(ai);
    *rcvbuf = size;
    return fd;
}

/* The SO_RXQ_OVFL count a datagram carries, if it carries one. */
static void note_drops(reader *r, struct msghdr *m)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t dropped;
            memcpy(&dropped, CMSG_DATA(c), sizeof dropped);
            atomic_store_explicit(&r->drops, dropped, memory_order_relaxed);
        }
}

typedef struct receive_buffers {
    struct mmsghdr msgs[VLEN];
    struct iovec iov[VLEN];
    char control[VLEN][CMSG_SPACE(sizeof(uint32_t))];
    char data[VLEN][DATAGRAM_MAX];
} receive_buffers;

static void prepare(receive_buffers *rb)
{
    memset(rb->msgs, 0, sizeof rb->msgs);
    for (int i = 0; i < VLEN; i++) {
        rb->iov[i] = (struct iovec){rb->data[i], DATAGRAM_MAX};
        rb->msgs[i].msg_hdr.msg_iov = &rb->iov[i];
        rb->msgs[i].msg_hdr.msg_iovlen = 1;
        rb->msgs[i].msg_hdr.msg_control = rb->control[i];
        rb->msgs[i].msg_hdr.msg_controllen = sizeof rb->control[i];
    }
}

/* Takes what the socket holds (up to VLEN datagrams a call, ROUNDS_MAX
 * calls) into the batch. */
static void receive(reader *r, receive_buffers *rb, line_batch *b)
{
    gather_counters *c = statsd_gather_counters(r->udp->hub);
    for (int round = 0; round < ROUNDS_MAX; round++) {
        for (int i = 0; i < VLEN; i++)
            rb->msgs[i].msg_hdr.msg_controllen = sizeof rb->control[i];
        int n = recvmmsg(r->fd, rb->msgs, VLEN, MSG_DONTWAIT, NULL);
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                log_warn("statsd UDP: recvmmsg: %s", strerror(errno));
            return;
        }
        int64_t now = clock_mono_ms();
        atomic_fetch_add_explicit(&c->datagrams, (uint64_t)n, memory_order_relaxed);
        for (int i = 0; i < n; i++) {
            struct msghdr *m = &rb->msgs[i].msg_hdr;
            note_drops(r, m);
            if (m->msg_flags & MSG_TRUNC)
                atomic_fetch_add_explicit(&c->truncated, 1, memory_order_relaxed);
            else
                line_batch_add(b, rb->data[i], rb->msgs[i].msg_len, now);
        }
        if (n < VLEN)
            return;
    }
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    receive_buffers *rb = malloc(sizeof *rb);
    if (!rb) {
        log_error("statsd UDP: out of memory for the receive buffers; this reader stops");
        return NULL;
    }
    prepare(rb);
    line_batch b;
    line_batch_init(&b, r->udp->hub);
    b.may_wait = 1; /* backpressure into the socket buffer (statsd_gather.h) */
    struct pollfd fds[2] = {{r->fd, POLLIN, 0}, {r->udp->stop_fd, POLLIN, 0}};
    for (;;) {
        int64_t due = line_batch_tick(&b, clock_mono_ms());
        int rc = poll(fds, 2, due < 0 ? IDLE_POLL_MS : (int)due);
        if (rc < 0 && errno != EINTR) {
            log_error("statsd UDP: poll: %s; this reader stops", strerror(errno));
            break;
        }
        if (fds[1].revents)
            break;
        if (rc > 0 && fds[0].revents)
            receive(r, rb, &b);
    }
    receive(r, rb, &b); /* what arrived before the stop */
    line_batch_flush(&b);
    line_batch_free(&b);
    free(rb);
    return NULL;
}

statsd_udp *statsd_udp_start(const tally_config *cfg, gather_hub *hub, char *err, size_t errlen)
{
    int count = cfg->statsd.udp_readers;
    statsd_udp *u = calloc(1, sizeof *u + (size_t)count * sizeof(reader));
    if (!u) {
        snprintf(err, errlen, "statsd UDP: out of memory");
        return NULL;
    }
    u->cfg = cfg;
    u->hub = hub;
    u->stop_fd = eventfd(0, EFD_CLOEXEC);
    for (int i = 0; i < count; i++)
        u->readers[i].fd = -1;
    if (u->stop_fd < 0) {
        snprintf(err, errlen, "statsd UDP: eventfd: %s", strerror(errno));
        statsd_udp_stop(u);
        return NULL;
    }
    for (int i = 0; i < count; i++) {
        reader *r = &u->readers[u->count++];
        r->udp = u;
        r->fd = open_socket(cfg, &u->rcvbuf, err, errlen);
        int rc = r->fd < 0 ? -1 : pthread_create(&r->thread, NULL, reader_main, r);
        if (rc != 0) {
            if (rc > 0)
                snprintf(err, errlen, "statsd UDP: pthread_create: %s", strerror(rc));
            statsd_udp_stop(u);
            return NULL;
        }
        r->started = 1;
    }
    log_info("statsd: UDP on %s:%d (%d reader%s, receive buffer %ld bytes each)",
             cfg->statsd.listen_address, cfg->statsd.port, count, count == 1 ? "" : "s",
             u->rcvbuf);
    return u;
}

void statsd_udp_stop(statsd_udp *u)
{
    if (!u)
        return;
    uint64_t one = 1;
    if (u->stop_fd >= 0)
        while (write(u->stop_fd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    for (int i = 0; i < u->count; i++) {
        if (u->readers[i].started)
            pthread_join(u->readers[i].thread, NULL);
        if (u->readers[i].fd >= 0)
            close(u->readers[i].fd);
    }
    if (u->stop_fd >= 0)
        close(u->stop_fd);
    free(u);
}

uint64_t statsd_udp_kernel_drops(const statsd_udp *u)
{
    uint64_t sum = 0;
    for (int i = 0; u && i < u->count; i++)
        sum += atomic_load_explicit(&u->readers[i].drops, memory_order_relaxed);
    return sum;
}

long statsd_udp_rcvbuf(const statsd_udp *u)
{
    return u ? u->rcvbuf : 0;
}
