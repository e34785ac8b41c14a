/*
 * statsd_gather.h — lines from the StatsD listeners (UDP datagrams, TCP
 * streams) gathered into batches that take the acknowledged path of an HTTP
 * batch (batch_pipeline_submit: Kafka, then Redis).
 *
 * Nobody can be answered on UDP (or on StatsD's TCP), so each line is checked
 * on its own by the one StatsD parser (statsd_check_line): a bad line is
 * dropped and counted by its reason code, and the good lines around it are
 * kept. DogStatsD events and service checks are counted and not forwarded.
 * Counter lines that differ only in their value are folded into one line
 * standing for all of them (counter_fold.h; the pipeline marks its event with
 * their count), so a busy counter costs the write path one event per batch,
 * not one per line. A batch holds at most min(statsd.batch_lines,
 * ingest.max_lines) events (a packed line counts one per value), so the
 * pipeline accepts it whole. A producer (one per UDP reader thread, one for
 * all TCP connections) fills its own line_batch and hands it over when it
 * has taken statsd.batch_lines lines (folded or not), when its first line
 * is statsd.batch_ms old, or when the next line would not fit in
 * ingest.max_body_bytes. Hand-over is thread-safe: a bounded queue
 * (GATHER_QUEUE_MAX batches) and an eventfd that wakes the event loop, which
 * submits the batches while the pipeline has room for them (its in-flight
 * limits) and leaves the rest queued until it has.
 *
 * Backpressure: a producer that may wait (a UDP reader thread) waits, up to
 * GATHER_WAIT_MS, for room in a full queue; meanwhile its datagrams wait in
 * the socket's receive buffer (statsd.rcvbuf_bytes), and what overflows that
 * is the kernel's drop, counted as such. The TCP producer runs on the event
 * loop and cannot wait. A batch the queue still refuses is lost, its lines
 * counted (lost_busy), as are those of a batch the pipeline refuses
 * (lost_failed) and of a batch whose fate Kafka could not tell (lost_unknown:
 * it may be stored). At a stop (statsd_gather_stopping) nothing waits and the
 * queue takes every last batch.
 *
 * Counters are atomics, readable from any thread (statsd_gather_stats).
 */
#ifndef TALLY_STATSD_GATHER_H
#define TALLY_STATSD_GATHER_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "batch_pipeline.h"
#include "config.h"
#include "counter_fold.h"
#include "statsd.h"

#define GATHER_QUEUE_MAX 64
#define GATHER_WAIT_MS 2000  /* longest a UDP reader waits for room in the queue */
#define GATHER_RETRY_MS 1    /* a full pipeline is looked at again this soon */

typedef struct gather_counters {
    _Atomic uint64_t datagrams;        /* UDP datagrams received */
    _Atomic uint64_t truncated;        /* ... longer than the receive buffer (dropped) */
    _Atomic uint64_t tcp_connections;  /* TCP connections accepted */
    _Atomic uint64_t tcp_refused;      /* ... refused (statsd.max_tcp_connections) */
    _Atomic uint64_t lines;            /* non-empty lines received */
    _Atomic uint64_t invalid;          /* lines dropped: the parser refused them (all reasons) */
    _Atomic uint64_t dropped[STATSD_CODE_COUNT]; /* ... by reason code (statsd_reason_name) */
    _Atomic uint64_t events_ignored;   /* DogStatsD events: well-formed, counted, not stored */
    _Atomic uint64_t service_checks_ignored; /* DogStatsD service checks: likewise */
    _Atomic uint64_t folded;           /* counter lines folded into an earlier line's event */
    _Atomic uint64_t batches;          /* batches submitted */
    _Atomic uint64_t lines_stored;     /* lines of batches Kafka holds */
    _Atomic uint64_t waits;            /* hand-overs that waited for room in the queue */
    _Atomic uint64_t lost_busy;        /* lines of batches refused: queue full, in-flight limits */
    _Atomic uint64_t lost_failed;      /* lines of batches refused by Kafka or the pipeline */
    _Atomic uint64_t lost_unknown;     /* lines of batches Kafka may or may not hold */
} gather_counters;

typedef struct gather_hub gather_hub;

/* One producer's batch in the making (not shared between threads). */
typedef struct line_batch {
    gather_hub *hub;
    char *buf;            /* the lines kept as they are */
    size_t len, cap;
    size_t lines;         /* lines taken, folded or not */
    size_t events;        /* metric events the batch makes (packed values count each, a
                             fold entry once) */
    counter_fold fold;    /* its counter lines, folded (counter_fold.h) */
    int64_t first_ms;     /* monotonic ms of its first line */
    statsd_line_info check; /* statsd_check_line's answer, reused for every line */
    int may_wait;         /* a reader thread's: wait for room rather than drop (above) */
} line_batch;

/* The pipeline is borrowed; runs on `base`. NULL with err filled. */
gather_hub *statsd_gather_new(struct event_base *base, const tally_config *cfg,
                              batch_pipeline *pipeline, char *err, size_t errlen);
void statsd_gather_free(gather_hub *h);

gather_counters *statsd_gather_counters(gather_hub *h);

void line_batch_init(line_batch *b, gather_hub *h);
void line_batch_free(line_batch *b);

/* Checks and keeps the lines of data ('\n'-separated; a trailing "\r" and
 * empty lines are ignored); hands the batch over whenever it is full.
 * now_ms: clock_mono_ms() (clock.h), for this and line_batch_tick. */
void line_batch_add(line_batch *b, const char *data, size_t len, int64_t now_ms);

/* Hands the batch over when its first line is statsd.batch_ms old; returns
 * the ms until that is due (-1: the batch is empty). */
int64_t line_batch_tick(line_batch *b, int64_t now_ms);

/* Hands the batch over now (if it holds anything). */
void line_batch_flush(line_batch *b);

/* On the event loop: submits everything the queue holds now, room in the
 * pipeline or not (for a stop that must not wait for the loop). */
void statsd_gather_submit_queued(gather_hub *h);

/* From now on no producer waits and the queue takes every batch (a stop:
 * the readers' last batches); wakes the producers waiting. */
void statsd_gather_stopping(gather_hub *h);

#endif
