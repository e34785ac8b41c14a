/*
 * statsd_gather.c — see statsd_gather.h.
 */
#include "statsd_gather.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"

#define WARN_EVERY_MS 10000

typedef struct queued_batch {
    char *body;
    size_t len, lines;
    uint32_t *extra;   /* the folded lines' extra_lines: the body's last `folded` lines */
    size_t folded;
    struct queued_batch *next;
} queued_batch;

struct gather_hub {
    const tally_config *cfg;
    batch_pipeline *pipeline;
    statsd_limits limits;     /* of one line */
    size_t batch_lines;       /* min(statsd.batch_lines, ingest.max_lines): events per batch */
    size_t max_events;        /* ingest.max_lines: events a batch may hold */
    size_t max_body;          /* ingest.max_body_bytes */
    pthread_mutex_t lock;
    pthread_cond_t room;      /* signalled when the queue shrinks or a stop begins */
    queued_batch *head, *tail;
    size_t queued;
    int stopping;
    int efd;
    struct event *ready;
    struct event *retry;      /* a drain again once the pipeline has room */
    _Atomic int64_t warned_ms;
    gather_counters counters;
};

/* A warning at most every WARN_EVERY_MS (from any thread). */
static void warn_lost(gather_hub *h, size_t lines, const char *why)
{
    int64_t now = clock_mono_ms(), last = atomic_load(&h->warned_ms);
    if (now - last >= WARN_EVERY_MS && atomic_compare_exchange_strong(&h->warned_ms, &last, now))
        log_warn("statsd: a batch of %zu lines was not stored (%s); further losses are counted "
                 "in /healthz statsd",
                 lines, why);
}

/* ---- the event loop's side -------------------------------------------------------- */

typedef struct submitted {
    gather_hub *hub;
    size_t lines;
} submitted;

static void on_submitted(void *opaque, int status, const char *outcome, const char *message)
{
    submitted *s = opaque;
    gather_hub *h = s->hub;
    size_t lines = s->lines;
    free(s);
    if (status == 200) {
        atomic_fetch_add(&h->counters.lines_stored, lines);
        return;
    }
    if (strcmp(outcome, "unknown") == 0)
        atomic_fetch_add(&h->counters.lost_unknown, lines);
    else
        atomic_fetch_add(&h->counters.lost_failed, lines);
    warn_lost(h, lines, message);
}

static void submit(gather_hub *h, queued_batch *q)
{
    submitted *ctx = malloc(sizeof *ctx);
    if (!ctx) {
        atomic_fetch_add(&h->counters.lost_failed, q->lines);
        warn_lost(h, q->lines, "out of memory");
        return;
    }
    *ctx = (submitted){h, q->lines};
    atomic_fetch_add(&h->counters.batches, 1);
    batch_pipeline_submit(h->pipeline, q->body, q->len, q->extra, q->folded, on_submitted, ctx);
}

/* Takes the first queued batch if `force` or the pipeline has room for it. */
static queued_batch *take(gather_hub *h, int force, int *blocked)
{
    pthread_mutex_lock(&h->lock);
    queued_batch *q = h->head;
    *blocked = q && !force && !batch_pipeline_has_room(h->pipeline, q->len);
    if (q && !*blocked) {
        h->head = q->next;
        if (!h->head)
            h->tail = NULL;
        h->queued--;
        pthread_cond_broadcast(&h->room);
    } else {
        q = NULL;
    }
    pthread_mutex_unlock(&h->lock);
    return q;
}

static void drain(gather_hub *h, int force)
{
    queued_batch *q;
    int blocked = 0;
    while ((q = take(h, force, &blocked)) != NULL) {
        submit(h, q);
        free(q->body);
        free(q->extra);
        free(q);
    }
    if (blocked) { /* the pipeline is full: look again in a moment */
        struct timeval soon = {0, GATHER_RETRY_MS * 1000};
        event_add(h->retry, &soon);
    }
}

void statsd_gather_submit_queued(gather_hub *h)
{
    drain(h, 1);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    drain(arg, 0);
}

void statsd_gather_stopping(gather_hub *h)
{
    pthread_mutex_lock(&h->lock);
    h->stopping = 1;
    pthread_cond_broadcast(&h->room);
    pthread_mutex_unlock(&h->lock);
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t n;
    while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
        ;
    drain(arg, 0);
}

/* ---- hand-over (any thread) ----------------------------------------------------------- */

/* Waits (the lock held) until the queue has room, a stop begins or
 * GATHER_WAIT_MS pass. */
static void wait_for_room(gather_hub *h)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += GATHER_WAIT_MS / 1000;
    until.tv_nsec += (long)(GATHER_WAIT_MS % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L)
        until.tv_sec++, until.tv_nsec -= 1000000000L;
    atomic_fetch_add_explicit(&h->counters.waits, 1, memory_order_relaxed);
    while (h->queued >= GATHER_QUEUE_MAX && !h->stopping)
        if (pthread_cond_timedwait(&h->room, &h->lock, &until) == ETIMEDOUT)
            return;
}

static int enqueue(gather_hub *h, char *body, size_t len, size_t lines, uint32_t *extra,
                   size_t folded, int may_wait)
{
    queued_batch *q = malloc(sizeof *q);
    if (!q)
        return -1;
    *q = (queued_batch){body, len, lines, extra, folded, NULL};
    pthread_mutex_lock(&h->lock);
    if (h->queued >= GATHER_QUEUE_MAX && may_wait && !h->stopping)
        wait_for_room(h);
    int full = h->queued >= GATHER_QUEUE_MAX && !h->stopping;
    if (!full) {
        if (h->tail)
            h->tail->next = q;
        else
            h->head = q;
        h->tail = q;
        h->queued++;
    }
    pthread_mutex_unlock(&h->lock);
    if (full) {
        free(q);
        return -1;
    }
    uint64_t one = 1;
    while (write(h->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
    return 0;
}

static int reserve(line_batch *b, size_t need)
{
    if (b->len + need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64 * 1024;
    while (cap < b->len + need)
        cap *= 2;
    char *grown = realloc(b->buf, cap);
    if (!grown)
        return -1;
    b->buf = grown, b->cap = cap;
    return 0;
}

/* Writes the folded counter lines after the others; *extra gets their
 * extra_lines (NULL when none folded). -1 out of memory. */
static int write_folded(line_batch *b, uint32_t **extra, size_t *folded)
{
    *extra = NULL;
    *folded = counter_fold_count(&b->fold);
    if (*folded == 0)
        return 0;
    *extra = malloc(*folded * sizeof **extra);
    if (!*extra || reserve(b, counter_fold_bytes(&b->fold)) != 0) {
        free(*extra);
        *extra = NULL;
        return -1;
    }
    b->len += counter_fold_write(&b->fold, b->buf + b->len, *extra);
    return 0;
}

/* Counts the batch's lines as lost (in *counter) and warns. */
static void count_lost(line_batch *b, _Atomic uint64_t *counter, const char *why)
{
    atomic_fetch_add(counter, b->lines);
    warn_lost(b->hub, b->lines, why);
}

void line_batch_flush(line_batch *b)
{
    if (b->lines == 0)
        return;
    uint32_t *extra;
    size_t folded;
    if (write_folded(b, &extra, &folded) != 0) {
        count_lost(b, &b->hub->counters.lost_failed, "out of memory");
        free(b->buf);
    } else if (enqueue(b->hub, b->buf, b->len, b->lines, extra, folded, b->may_wait) != 0) {
        count_lost(b, &b->hub->counters.lost_busy, "the queue to the write path is full");
        free(extra);
        free(b->buf);
    }
    counter_fold_clear(&b->fold);
    b->buf = NULL; /* the queue's now, or freed */
    b->len = b->cap = b->lines = b->events = 0;
}

/* ---- one producer's batch -------------------------------------------------------------- */

void line_batch_init(line_batch *b, gather_hub *h)
{
    memset(b, 0, sizeof *b);
    b->hub = h;
    counter_fold_init(&b->fold);
}

void line_batch_free(line_batch *b)
{
    free(b->buf);
    counter_fold_free(&b->fold);
    memset(b, 0, sizeof *b);
}

/* The one StatsD parser's verdict on the line alone (b->check filled). */
static int line_check(line_batch *b, const char *line, size_t len)
{
    return statsd_check_line(line, len, &b->hub->limits, &b->check);
}

static int append_line(line_batch *b, const char *line, size_t len)
{
    if (reserve(b, len + 1) != 0)
        return -1;
    memcpy(b->buf + b->len, line, len);
    b->len += len;
    b->buf[b->len++] = '\n';
    return 0;
}

static void add_line(line_batch *b, const char *line, size_t len, int64_t now_ms)
{
    gather_counters *c = &b->hub->counters;
    atomic_fetch_add_explicit(&c->lines, 1, memory_order_relaxed);
    int code = line_check(b, line, len);
    size_t values = b->check.values;
    if (code == STATSD_OK && values > b->hub->max_events) {
        code = STATSD_TOO_MANY_LINES; /* no batch could hold it */
    }
    if (code != STATSD_OK) {
        atomic_fetch_add_explicit(&c->invalid, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&c->dropped[code], 1, memory_order_relaxed);
        return;
    }
    if (b->check.kind == STATSD_LINE_EVENT) {
        atomic_fetch_add_explicit(&c->events_ignored, 1, memory_order_relaxed);
        return;
    }
    if (b->check.kind == STATSD_LINE_SERVICE_CHECK) {
        atomic_fetch_add_explicit(&c->service_checks_ignored, 1, memory_order_relaxed);
        return;
    }
    /* a line adds at most len + 1 bytes as it is, and no more than
     * len + 1 + COUNTER_FOLD_SUM_MAX folded */
    size_t body = b->len + counter_fold_bytes(&b->fold);
    if (body + len + 1 + COUNTER_FOLD_SUM_MAX > b->hub->max_body ||
        b->events + values > b->hub->batch_lines)
        line_batch_flush(b);
    if (b->lines == 0)
        b->first_ms = now_ms;
    size_t entries = counter_fold_count(&b->fold);
    int folded = values == 1 && b->hub->cfg->statsd.fold_counters
                     ? counter_fold_add(&b->fold, line, len, &b->check.ev)
                     : 0;
    if (folded < 0 || (folded == 0 && append_line(b, line, len) != 0)) {
        atomic_fetch_add(&c->lost_failed, 1);
        warn_lost(b->hub, 1, "out of memory");
        return;
    }
    b->lines++;
    size_t added = folded ? counter_fold_count(&b->fold) - entries : values;
    if (folded && added == 0)
        atomic_fetch_add_explicit(&c->folded, 1, memory_order_relaxed);
    b->events += added;
    if (b->events >= b->hub->batch_lines || b->lines >= b->hub->batch_lines)
        line_batch_flush(b);
}

void line_batch_add(line_batch *b, const char *data, size_t len, int64_t now_ms)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        size_t used = n + (nl != NULL);
        if (n > 0 && data[n - 1] == '\r')
            n--;
        if (n > 0)
            add_line(b, data, n, now_ms);
        data += used;
        len -= used;
    }
}

int64_t line_batch_tick(line_batch *b, int64_t now_ms)
{
    if (b->lines == 0)
        return -1;
    int64_t due = b->first_ms + b->hub->cfg->statsd.batch_ms - now_ms;
    if (due > 0)
        return due;
    line_batch_flush(b);
    return -1;
}

/* ---- life ------------------------------------------------------------------------------- */

gather_hub *statsd_gather_new(struct event_base *base, const tally_config *cfg,
                              batch_pipeline *pipeline, char *err, size_t errlen)
{
    gather_hub *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "statsd: out of memory");
        return NULL;
    }
    h->cfg = cfg;
    h->pipeline = pipeline;
    h->limits.max_lines = 1;
    h->limits.max_name_len = (size_t)cfg->ingest.max_name_length;
    h->limits.max_tags_len = (size_t)cfg->ingest.max_tags_length;
    h->limits.max_errors = 1;
    h->batch_lines = (size_t)cfg->statsd.batch_lines;
    if (h->batch_lines > (size_t)cfg->ingest.max_lines)
        h->batch_lines = (size_t)cfg->ingest.max_lines;
    h->max_events = (size_t)cfg->ingest.max_lines;
    h->max_body = (size_t)cfg->ingest.max_body_bytes;
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->efd < 0 || pthread_mutex_init(&h->lock, NULL) != 0) {
        snprintf(err, errlen, "statsd: eventfd: %s", strerror(errno));
        if (h->efd >= 0)
            close(h->efd);
        free(h);
        return NULL;
    }
    if (pthread_cond_init(&h->room, NULL) != 0) {
        snprintf(err, errlen, "statsd: cannot make a condition variable");
        close(h->efd);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    h->ready = event_new(base, h->efd, EV_READ | EV_PERSIST, on_ready, h);
    h->retry = evtimer_new(base, on_retry, h);
    if (!h->ready || !h->retry || event_add(h->ready, NULL) != 0) {
        snprintf(err, errlen, "statsd: libevent: cannot watch the eventfd");
        statsd_gather_free(h);
        return NULL;
    }
    return h;
}

gather_counters *statsd_gather_counters(gather_hub *h)
{
    return &h->counters;
}

void statsd_gather_free(gather_hub *h)
{
    if (!h)
        return;
    if (h->ready)
        event_free(h->ready);
    if (h->retry)
        event_free(h->retry);
    for (queued_batch *q = h->head, *next; q; q = next) {
        next = q->next;
        free(q->body);
        free(q->extra);
        free(q);
    }
    close(h->efd);
    pthread_cond_destroy(&h->room);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
