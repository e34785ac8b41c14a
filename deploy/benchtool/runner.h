/*
 * runner.h — the load loop of tally-bench: N threads, each with one
 * keep-alive connection, post bodies back to back for a fixed time.
 *
 * Contract in a few lines:
 *  - bench_run() starts cfg->concurrency threads, lets them run for
 *    warmup_s + duration_s seconds, joins them and fills *out. Each thread
 *    sends its next request as soon as the previous answer arrived (closed
 *    loop), so the offered load is what the server can take; with rate > 0
 *    each thread waits for its next slot (concurrency / rate apart) instead.
 *  - Only 2xx answers count: their lines are acknowledged events. A non-2xx
 *    answer or a transport error is counted as an error, never as
 *    throughput; after one the thread pauses 20 ms before its next request.
 *  - The measured window is [warmup, warmup + duration): a request counts in
 *    the rate and the latency histogram when its answer arrives inside it.
 *    acked_total counts every acknowledged event of the run, warm-up and the
 *    last answers after the window included (what the server must store).
 *  - With progress_s > 0, a line "PROGRESS elapsed_s=E acked_total=N errors=M"
 *    is printed on stdout (flushed) every progress_s seconds.
 */
#ifndef TALLY_BENCH_RUNNER_H
#define TALLY_BENCH_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"
#include "payload.h"

typedef struct bench_config {
    const char *host;      /* server address */
    int port;
    const char *path;      /* request path with its query, e.g. "/v1/events" */
    payload_format format;
    unsigned batch;        /* lines per request */
    unsigned concurrency;  /* threads = connections */
    double duration_s;     /* measured time */
    double warmup_s;       /* time before the measurement starts */
    unsigned names;        /* distinct metric names */
    type_mix mix;
    uint64_t seed;
    int timeout_ms;        /* per socket operation */
    double progress_s;     /* 0: no PROGRESS lines */
    int send_keys;         /* send an Idempotency-Key header (unique per request) */
    const char *token;     /* NULL, or sent as Authorization: Bearer TOKEN */
    double rate;           /* > 0: at most this many requests/s in all (an open-ish
                              loop: each thread paces its sends); 0: closed loop */
} bench_config;

typedef struct bench_result {
    double elapsed_s;          /* length of the measured window */
    uint64_t events;           /* acknowledged events inside the window */
    uint64_t requests;         /* acknowledged requests inside the window */
    uint64_t acked_total;      /* acknowledged events of the whole run */
    uint64_t duplicates;       /* 2xx answers that said "duplicate":true (not counted as events) */
    uint64_t non2xx;           /* non-2xx answers, whole run */
    uint64_t transport_errors; /* connect/send/receive failures, whole run */
    char first_error[256];     /* the first error seen, "" if none */
    latency_hist hist;         /* ack latency of the acknowledged requests inside the window */
} bench_result;

/*
 * Runs the benchmark described by cfg (all fields valid: batch, concurrency,
 * names >= 1; duration_s > 0). Returns 0 with *out filled, or -1 with err
 * filled when it could not run at all (out of memory, thread creation).
 */
int bench_run(const bench_config *cfg, bench_result *out, char *err, size_t err_len);

#endif
