/*
 * load.c — worker threads that post keyed counter batches and retry them
 * until Tally acknowledges them.
 *
 * Each worker owns everything it touches while it runs: its HTTP connection,
 * its PRNG stream (derived from the seed, the scenario and the worker index,
 * so a seed replays the same bodies), its batch buffer and a private ledger.
 * The only shared state is a few atomic progress counters and the stop/abort
 * flags, so workers never wait on each other. The scenario's ledger is the
 * sum of the private ledgers, made after the workers are joined.
 *
 * The retry loop is the documented client behaviour of README "Retries are
 * safe": same key, same body, on any non-200 or transport error. A 200 with
 * "duplicate":true is a normal acknowledgement of a batch whose earlier
 * attempt Tally applied without the client hearing the answer.
 */
#include "load.h"

#include "http_client.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX 160
#define REPORTED_ERRORS_PER_WORKER 3

typedef struct worker {
    struct load *load;
    int index;
    pthread_t thread;
    int started;
    ledger led;
} worker;

struct load {
    load_config cfg;
    worker *workers;
    atomic_int stop, abort_now;
    atomic_llong acked, retries, non200, transport_errors, unresolved;
};

/* Builds the body of one batch from the worker's PRNG; fills values[]. */
static size_t make_batch(char *buf, size_t cap, const ledger *led, int lines, uint64_t *rng,
                         long long values[DRILL_COUNTERS])
{
    size_t off = 0;
    memset(values, 0, sizeof(long long) * DRILL_COUNTERS);
    for (int i = 0; i < lines; i++) {
        uint64_t r = prng_next(rng);
        int k = (int)(r % DRILL_COUNTERS);
        int v = 1 + (int)((r >> 32) % 9);
        int n = snprintf(buf + off, cap - off, "%s:%d|c\n", led->names[k], v);
        if (n < 0 || (size_t)n >= cap - off) break; /* cap is sized for `lines`: never */
        off += (size_t)n;
        values[k] += v;
    }
    return off;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    struct load *l = w->load;
    const load_config *cfg = &l->cfg;
    uint64_t rng = prng_stream(cfg->seed, 1 + (uint64_t)cfg->scenario, (uint64_t)w->index);
    size_t cap = (size_t)cfg->lines * (DRILL_NAME_MAX + 16) + 1;
    char *body = malloc(cap);
    http_client *http = http_client_new(cfg->host, cfg->port, cfg->timeout_ms);
    if (body == NULL || http == NULL) {
        drill_say("%s worker %d: out of memory; this worker sends nothing", scenario_name(cfg->scenario), w->index);
        free(body);
        http_client_free(http);
        return NULL;
    }
    int reported = 0;
    for (uint64_t seq = 1; !atomic_load(&l->stop); seq++) {
        long long values[DRILL_COUNTERS];
        size_t body_len = make_batch(body, cap, &w->led, cfg->lines, &rng, values);
        char key[KEY_MAX];
        snprintf(key, sizeof key, "drill-%" PRIu64 "-%s-%s-%d-%" PRIu64, cfg->seed, cfg->runid,
                 scenario_name(cfg->scenario), w->index, seq);
        http_header hdr[] = {{"Idempotency-Key", key}, {"Content-Type", "text/plain"}};
        double deadline = drill_now() + cfg->batch_deadline_s;
        for (int attempt = 1;; attempt++) {
            http_response resp;
            char err[256] = "";
            int rc = http_client_request(http, "POST", "/v1/events", hdr, 2, body, body_len, &resp, err, sizeof err);
            if (rc == 0 && resp.status == 200) {
                ledger_add_batch(&w->led, values, cfg->lines);
                if (strstr(resp.body, "\"stale\"") != NULL) w->led.stale_acks++;
                atomic_fetch_add(&l->acked, 1);
                if (cfg->file != NULL) {
                    long long sum = 0;
                    for (int k = 0; k < DRILL_COUNTERS; k++) sum += values[k];
                    ledger_file_batch(cfg->file, scenario_name(cfg->scenario), key, attempt, cfg->lines, sum);
                }
                break;
            }
            double delay = 0.1;
            if (rc == 0) {
                w->led.non200++;
                atomic_fetch_add(&l->non200, 1);
                if (resp.retry_after_s >= 0) delay = resp.retry_after_s >= 1 ? 1.0 : 0.1;
                if (resp.status != 503 && reported++ < REPORTED_ERRORS_PER_WORKER)
                    drill_say("%s worker %d: batch %s: HTTP %d %.200s (retrying)", scenario_name(cfg->scenario),
                              w->index, key, resp.status, resp.body);
            } else {
                w->led.transport_errors++;
                atomic_fetch_add(&l->transport_errors, 1);
                (void)err; /* expected while a component is down; the count is reported */
            }
            if (atomic_load(&l->abort_now) || drill_now() + delay > deadline) {
                w->led.unresolved++;
                atomic_fetch_add(&l->unresolved, 1);
                drill_say("%s worker %d: batch %s UNRESOLVED after %d attempts (last: %s)",
                          scenario_name(cfg->scenario), w->index, key, attempt,
                          rc == 0 ? "non-200 answer" : err);
                break;
            }
            w->led.retries++;
            atomic_fetch_add(&l->retries, 1);
            drill_sleep(delay);
        }
        if (atomic_load(&l->abort_now)) break;
    }
    free(body);
    http_client_free(http);
    return NULL;
}

int load_start(load **out, const load_config *cfg, char *err, size_t err_len)
{
    struct load *l = calloc(1, sizeof *l);
    if (l == NULL || cfg->concurrency < 1 || cfg->lines < 1) {
        snprintf(err, err_len, l == NULL ? "out of memory" : "concurrency and lines must be >= 1");
        free(l);
        return -1;
    }
    l->cfg = *cfg;
    l->workers = calloc((size_t)cfg->concurrency, sizeof *l->workers);
    if (l->workers == NULL) {
        snprintf(err, err_len, "out of memory");
        free(l);
        return -1;
    }
    for (int i = 0; i < cfg->concurrency; i++) {
        worker *w = &l->workers[i];
        w->load = l;
        w->index = i;
        ledger_init(&w->led, cfg->runid, cfg->scenario);
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc != 0) {
            snprintf(err, err_len, "pthread_create: %s", strerror(rc));
            load_abort(l);
            ledger dummy;
            load_stop(l, &dummy);
            load_free(l);
            return -1;
        }
        w->started = 1;
    }
    *out = l;
    return 0;
}

void load_get_progress(const load *l, load_progress *p)
{
    struct load *m = (struct load *)l; /* atomic loads of a const object */
    p->acked = atomic_load(&m->acked);
    p->retries = atomic_load(&m->retries);
    p->non200 = atomic_load(&m->non200);
    p->transport_errors = atomic_load(&m->transport_errors);
    p->unresolved = atomic_load(&m->unresolved);
}

void load_abort(load *l)
{
    atomic_store(&l->abort_now, 1);
    atomic_store(&l->stop, 1);
}

void load_stop(load *l, ledger *result)
{
    atomic_store(&l->stop, 1);
    ledger_init(result, l->cfg.runid, l->cfg.scenario);
    for (int i = 0; i < l->cfg.concurrency; i++) {
        worker *w = &l->workers[i];
        if (!w->started) continue;
        int rc = pthread_join(w->thread, NULL);
        if (rc != 0) drill_say("pthread_join: %s", strerror(rc));
        w->started = 0;
        ledger_merge(result, &w->led);
    }
}

void load_free(load *l)
{
    if (l == NULL) return;
    free(l->workers);
    free(l);
}
