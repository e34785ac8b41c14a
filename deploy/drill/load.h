/*
 * load.h — the drill's client load: N worker threads posting counter batches
 * to tally-ingest, each on its own keep-alive connection.
 *
 * Contract:
 *  - Every batch has a unique Idempotency-Key
 *    "drill-<seed>-<runid>-<scenario>-<worker>-<seq>" and a body drawn from the
 *    worker's seeded PRNG: `lines` lines "drill.<runid>.<scenario>.c<k>:<v>|c"
 *    with v in 1..9.
 *  - A batch is sent again, same key and same body, after any non-200 answer
 *    or transport error (Retry-After honoured up to 1 s) until it gets a 200;
 *    only then does it enter the worker's ledger. After `batch_deadline_s` it
 *    is given up and counted unresolved.
 *  - load_stop() lets every worker finish the batch it holds (so the ledger
 *    is complete), then joins them; load_abort() makes them give up at once.
 */
#ifndef TALLY_DRILL_LOAD_H
#define TALLY_DRILL_LOAD_H

#include "ledger.h"

#include <stdint.h>

typedef struct load_config {
    const char *host;        /* tally-ingest address */
    int port;
    int timeout_ms;          /* per socket operation */
    int concurrency;         /* worker threads */
    int lines;               /* lines per batch */
    uint64_t seed;
    const char *runid;
    int scenario;            /* SCENARIO_* */
    double batch_deadline_s; /* give a batch up after this long */
    ledger_file *file;       /* where acknowledged batches are logged; may be NULL */
} load_config;

typedef struct load load;

/* Progress counters, readable while the load runs. */
typedef struct load_progress {
    long long acked, retries, non200, transport_errors, unresolved;
} load_progress;

/* Starts the workers. Returns 0 and *out, or -1 with err filled (nothing left running). */
int load_start(load **out, const load_config *cfg, char *err, size_t err_len);

/* A snapshot of the counters (approximate while workers run). */
void load_get_progress(const load *l, load_progress *p);

/* Asks the workers to stop after their current batch, joins them, and fills
 * *result with the merged ledger. Call once; then load_free. */
void load_stop(load *l, ledger *result);

/* Makes workers give up the batch they are retrying (counted unresolved);
 * safe from any thread, load_stop is still needed. */
void load_abort(load *l);

void load_free(load *l);

#endif
