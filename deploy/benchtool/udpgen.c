/*
 * udpgen.c — tally-udpgen, the StatsD UDP load generator of deploy/bench:
 * the same datagrams, at the same paced rate, for any StatsD server (Tally's
 * listener, collectd's statsd plugin).
 *
 *   tally-udpgen --port P [--host 127.0.0.1] --rate LINES_PER_S --duration S
 *                [--lines-per-datagram K] [--series N] [--name PREFIX]
 *
 * Sends counter lines "PREFIX.I:1|c" (I cycling over N series), K lines per
 * datagram, with sendmmsg() every millisecond for what the rate allows by
 * then (so a slow moment is caught up, never skipped). Prints one line:
 *   RESULT lines=... datagrams=... seconds=... lines_per_s=...
 * Exit 0, or 1 with a message when a send fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BURST 64        /* datagrams per sendmmsg() */
#define DATAGRAM_MAX 8192

typedef struct options {
    const char *host, *name;
    int port, lines_per_datagram, series;
    double rate, duration;
} options;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int parse(int argc, char **argv, options *o)
{
    *o = (options){"127.0.0.1", "bench.udp", 0, 20, 100, 100000, 5};
    static const struct option opts[] = {
        {"host", required_argument, NULL, 'h'},   {"port", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},   {"duration", required_argument, NULL, 'd'},
        {"lines-per-datagram", required_argument, NULL, 'k'},
        {"series", required_argument, NULL, 's'}, {"name", required_argument, NULL, 'n'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'h': o->host = optarg; break;
        case 'p': o->port = atoi(optarg); break;
        case 'r': o->rate = atof(optarg); break;
        case 'd': o->duration = atof(optarg); break;
        case 'k': o->lines_per_datagram = atoi(optarg); break;
        case 's': o->series = atoi(optarg); break;
        case 'n': o->name = optarg; break;
        default: return -1;
        }
    }
    return o->port > 0 && o->port < 65536 && o->rate > 0 && o->duration > 0 &&
                   o->lines_per_datagram > 0 && o->lines_per_datagram <= 200 && o->series > 0
               ? 0
               : -1;
}

/* One datagram of k lines starting at series *next. */
static size_t fill(char *buf, const options *o, int *next)
{
    size_t len = 0;
    for (int i = 0; i < o->lines_per_datagram; i++) {
        int n = snprintf(buf + len, DATAGRAM_MAX - len, "%s%s.%d:1|c", i ? "\n" : "", o->name,
                         *next);
        if (n < 0 || (size_t)n >= DATAGRAM_MAX - len)
            break;
        len += (size_t)n;
        *next = (*next + 1) % o->series;
    }
    return len;
}

int main(int argc, char **argv)
{
    options o;
    if (parse(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: tally-udpgen --port P [--host H] --rate LINES_PER_S --duration S "
                        "[--lines-per-datagram K (1..200)] [--series N] [--name PREFIX]\n");
        return 2;
    }
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || inet_pton(AF_INET, o.host, &to.sin_addr) != 1 ||
        connect(fd, (struct sockaddr *)&to, sizeof to) != 0) {
        fprintf(stderr, "tally-udpgen: %s:%d: %s\n", o.host, o.port, strerror(errno));
        return 1;
    }
    static char bufs[BURST][DATAGRAM_MAX];
    struct mmsghdr msgs[BURST];
    struct iovec iov[BURST];
    memset(msgs, 0, sizeof msgs);
    int next = 0;
    unsigned long long lines = 0, datagrams = 0;
    double start = now_s(), end = start + o.duration;
    for (double t = start; t < end; t = now_s()) {
        unsigned long long due = (unsigned long long)((t - start) * o.rate);
        while (lines + (unsigned long long)o.lines_per_datagram <= due) {
            int n = 0;
            for (; n < BURST && lines + (unsigned long long)(n + 1) * o.lines_per_datagram <= due; n++) {
                iov[n] = (struct iovec){bufs[n], fill(bufs[n], &o, &next)};
                msgs[n].msg_hdr.msg_iov = &iov[n];
                msgs[n].msg_hdr.msg_iovlen = 1;
            }
            int sent = sendmmsg(fd, msgs, (unsigned)n, 0);
            if (sent < 0 && errno != ENOBUFS && errno != EAGAIN && errno != ECONNREFUSED) {
                fprintf(stderr, "tally-udpgen: sendmmsg: %s\n", strerror(errno));
                return 1;
            }
            if (sent <= 0)
                break;
            datagrams += (unsigned)sent;
            lines += (unsigned long long)sent * (unsigned)o.lines_per_datagram;
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    double secs = now_s() - start;
    printf("RESULT lines=%llu datagrams=%llu seconds=%.3f lines_per_s=%.0f\n", lines, datagrams,
           secs, lines / secs);
    return 0;
}
