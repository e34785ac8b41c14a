/*
 * runner.c — worker threads, timing and accounting of tally-bench.
 *
 * Every worker owns a connection (http_client from deploy/drill), a pool of
 * POOL pre-built bodies it cycles through, and its own latency histogram, so
 * the hot loop shares nothing but a few relaxed atomic counters (read by the
 * progress printer) and, for InfluxDB, one atomic timestamp counter that
 * hands every line a distinct nanosecond. Times come from CLOCK_MONOTONIC;
 * all threads compare against the same window bounds fixed before they start,
 * so no signalling is needed to start or stop the measurement. The histograms
 * and counters are merged after the join.
 */
#include "runner.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../drill/http_client.h"

#define POOL 4            /* distinct bodies per worker */
#define ERROR_PAUSE_NS 20000000LL

typedef struct shared_state {
    const bench_config *cfg;
    int64_t window_start_ns, window_end_ns; /* CLOCK_MONOTONIC */
    char run_id[32];                        /* makes Idempotency-Keys unique across runs */
    _Atomic int64_t next_ts_ns;             /* InfluxDB timestamps, wall clock based */
    _Atomic uint64_t acked_total;
    _Atomic uint64_t errors;
    pthread_mutex_t err_lock;
    char first_error[256];
} shared_state;

typedef struct worker {
    pthread_t thread;
    unsigned id;
    shared_state *sh;
    uint64_t events, requests, duplicates, non2xx, transport_errors;
    latency_hist hist;
    char err[256]; /* setup failure of this worker */
    int failed;
} worker;

static int64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts); /* cannot fail for these clocks */
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
    struct timespec ts = {.tv_sec = ns / 1000000000LL, .tv_nsec = ns % 1000000000LL};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static void note_error(shared_state *sh, const char *fmt_what, int status, const char *detail)
{
    atomic_fetch_add_explicit(&sh->errors, 1, memory_order_relaxed);
    if (pthread_mutex_lock(&sh->err_lock) != 0) return;
    if (sh->first_error[0] == '\0') {
        if (status > 0)
            snprintf(sh->first_error, sizeof sh->first_error, "%s %d: %.200s", fmt_what, status, detail);
        else
            snprintf(sh->first_error, sizeof sh->first_error, "%s: %.200s", fmt_what, detail);
        /* One line: answers may hold newlines. */
        for (char *c = sh->first_error; *c; c++)
            if (*c == '\n' || *c == '\r') *c = ' ';
    }
    pthread_mutex_unlock(&sh->err_lock);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    shared_state *sh = w->sh;
    const bench_config *cfg = sh->cfg;
    payload *pool[POOL] = {0};
    http_client *client = http_client_new(cfg->host, cfg->port, cfg->timeout_ms);
    if (client == NULL) {
        snprintf(w->err, sizeof w->err, "worker %u: out of memory for the HTTP client", w->id);
        w->failed = 1;
        return NULL;
    }
    uint64_t rng = cfg->seed ^ (0x632be59bd9b4e019ULL * (w->id + 1));
    int reading = cfg->format == PAYLOAD_GET;
    unsigned per_request = reading ? 1 : cfg->batch;
    for (int i = 0; i < POOL && !reading; i++) {
        pool[i] = payload_new(cfg->format, cfg->batch, cfg->names, &cfg->mix, &rng, w->err, sizeof w->err);
        if (pool[i] == NULL) {
            w->failed = 1;
            goto out;
        }
    }

    char bearer[300];
    snprintf(bearer, sizeof bearer, "Bearer %s", cfg->token ? cfg->token : "");
    http_header headers[3];
    size_t nheaders = 0;
    if (!reading)
        headers[nheaders++] = (http_header){"Content-Type", "text/plain"};
    if (cfg->token)
        headers[nheaders++] = (http_header){"Authorization", bearer};
    size_t key_header = nheaders;
    if (cfg->send_keys)
        headers[nheaders++] = (http_header){"Idempotency-Key", NULL};
    char key[96];
    char err[256];
    int64_t pace_ns = cfg->rate > 0 ? (int64_t)(1e9 * cfg->concurrency / cfg->rate) : 0;
    int64_t next_slot = now_ns(CLOCK_MONOTONIC);
    for (uint64_t seq = 0;; seq++) {
        if (pace_ns > 0) {
            int64_t wait = next_slot - now_ns(CLOCK_MONOTONIC);
            if (wait > 0)
                sleep_ns(wait);
            next_slot += pace_ns;
        }
        int64_t start = now_ns(CLOCK_MONOTONIC);
        if (start >= sh->window_end_ns) break;
        payload *p = pool[seq % POOL];
        if (!reading && cfg->format == PAYLOAD_INFLUX)
            payload_stamp(p, atomic_fetch_add_explicit(&sh->next_ts_ns, (int64_t)cfg->batch, memory_order_relaxed));
        if (cfg->send_keys && !reading) {
            snprintf(key, sizeof key, "bench-%s-%u-%llu", sh->run_id, w->id, (unsigned long long)seq);
            headers[key_header].value = key;
        }
        size_t len = 0;
        const char *body = reading ? NULL : payload_body(p, &len);
        http_response resp;
        int rc = http_client_request(client, reading ? "GET" : "POST", cfg->path, headers,
                                     nheaders, body, len, &resp, err, sizeof err);
        int64_t done = now_ns(CLOCK_MONOTONIC);
        int in_window = done >= sh->window_start_ns && done < sh->window_end_ns;
        if (rc != 0) {
            w->transport_errors++;
            note_error(sh, "transport error", 0, err);
            sleep_ns(ERROR_PAUSE_NS);
            continue;
        }
        if (resp.status < 200 || resp.status > 299) {
            w->non2xx++;
            note_error(sh, "HTTP", resp.status, resp.body);
            sleep_ns(ERROR_PAUSE_NS);
            continue;
        }
        if (resp.body_len > 0 && strstr(resp.body, "\"duplicate\":true") != NULL) {
            w->duplicates++;
            continue;
        }
        atomic_fetch_add_explicit(&sh->acked_total, per_request, memory_order_relaxed);
        if (in_window) {
            w->events += per_request;
            w->requests++;
            hist_record(&w->hist, (uint64_t)((done - start) / 1000));
        }
    }
out:
    for (int i = 0; i < POOL; i++) payload_free(pool[i]);
    http_client_free(client);
    return NULL;
}

int bench_run(const bench_config *cfg, bench_result *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    hist_init(&out->hist);
    shared_state *sh = calloc(1, sizeof *sh);
    worker *workers = calloc(cfg->concurrency, sizeof *workers);
    if (sh == NULL || workers == NULL) {
        free(sh);
        free(workers);
        snprintf(err, err_len, "out of memory for %u workers", cfg->concurrency);
        return -1;
    }
    int rc = pthread_mutex_init(&sh->err_lock, NULL);
    if (rc != 0) {
        free(sh);
        free(workers);
        snprintf(err, err_len, "pthread_mutex_init: %s", strerror(rc));
        return -1;
    }
    sh->cfg = cfg;
    int64_t t0 = now_ns(CLOCK_MONOTONIC);
    sh->window_start_ns = t0 + (int64_t)(cfg->warmup_s * 1e9);
    sh->window_end_ns = sh->window_start_ns + (int64_t)(cfg->duration_s * 1e9);
    int64_t wall = now_ns(CLOCK_REALTIME);
    atomic_init(&sh->next_ts_ns, wall);
    snprintf(sh->run_id, sizeof sh->run_id, "%llx", (unsigned long long)(wall / 1000) ^ (unsigned long long)cfg->seed);

    unsigned started = 0;
    for (; started < cfg->concurrency; started++) {
        worker *w = &workers[started];
        w->id = started;
        w->sh = sh;
        hist_init(&w->hist);
        rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, err_len, "pthread_create (worker %u): %s", started, strerror(rc));
            break;
        }
    }
    if (started == cfg->concurrency && cfg->progress_s > 0) {
        int64_t step = (int64_t)(cfg->progress_s * 1e9), next = t0 + step;
        while (next < sh->window_end_ns) {
            int64_t wait = next - now_ns(CLOCK_MONOTONIC);
            if (wait > 0) sleep_ns(wait);
            printf("PROGRESS elapsed_s=%.1f acked_total=%llu errors=%llu\n", (double)(next - t0) / 1e9,
                   (unsigned long long)atomic_load_explicit(&sh->acked_total, memory_order_relaxed),
                   (unsigned long long)atomic_load_explicit(&sh->errors, memory_order_relaxed));
            fflush(stdout);
            next += step;
        }
    }
    int result = started == cfg->concurrency ? 0 : -1;
    for (unsigned i = 0; i < started; i++) {
        worker *w = &workers[i];
        pthread_join(w->thread, NULL); /* joinable threads of ours: cannot fail */
        if (w->failed && result == 0) {
            snprintf(err, err_len, "%s", w->err);
            result = -1;
        }
        out->events += w->events;
        out->requests += w->requests;
        out->duplicates += w->duplicates;
        out->non2xx += w->non2xx;
        out->transport_errors += w->transport_errors;
        hist_merge(&out->hist, &w->hist);
    }
    out->elapsed_s = cfg->duration_s;
    out->acked_total = atomic_load(&sh->acked_total);
    snprintf(out->first_error, sizeof out->first_error, "%s", sh->first_error);
    pthread_mutex_destroy(&sh->err_lock);
    free(sh);
    free(workers);
    return result;
}
