/*
 * verify.h — comparing a scenario's ledger with SQLite and with Redis.
 *
 * Contract:
 *  - verify_sqlite() polls the SQLite file (opened read-only, every 200 ms,
 *    up to timeout_s) until the totals of the scenario's counters equal the
 *    ledger exactly, and reports the last totals it read, lost and duplicated
 *    events (counter units) and the seconds it took.
 *  - verify_redis() reads every counter's live value (sum of HVALS of
 *    tally:{S}:NAME:counter) and counts the names whose value differs from the
 *    SQLite total read by verify_sqlite(), each from the master of its slot
 *    on a Redis Cluster (redis_nodes.h: AUTH as the config says, as
 *    tally-ingest does).
 *  Neither changes anything in SQLite or Redis.
 */
#ifndef TALLY_DRILL_VERIFY_H
#define TALLY_DRILL_VERIFY_H

#include "ledger.h"
#include "config.h"

#include <stddef.h>

#define VERIFY_EXTRA_MAX 16

typedef struct verify_result {
    double sqlite[DRILL_COUNTERS];      /* SQLite totals of the ledger's names */
    double redis[DRILL_COUNTERS];       /* Redis live values (NAN until read) */
    int extra_count;                    /* names in SQLite under the scenario's prefix the ledger lacks */
    char extra_names[VERIFY_EXTRA_MAX][DRILL_NAME_MAX];
    double extra_sqlite[VERIFY_EXTRA_MAX];
    int converged;                      /* SQLite == ledger */
    double converge_s;                  /* seconds from the call to convergence (or to giving up) */
    long long lost;                     /* Σ max(0, ledger - sqlite) */
    long long duplicated;               /* Σ max(0, sqlite - ledger) */
    int redis_mismatches;               /* names where Redis != SQLite; -1 = Redis not read */
} verify_result;

/*
 * Waits for SQLite at db_path to hold exactly the ledger's totals for the names
 * "drill.<runid>.<scenario>.*". Returns 0 when it read SQLite at least once
 * (whether or not it converged: see r->converged), -1 with err when the
 * database could never be read. A database that does not exist yet counts as
 * empty while waiting.
 */
int verify_sqlite(const char *db_path, const ledger *l, const char *runid, int scenario, double timeout_s,
                  verify_result *r, char *err, size_t err_len);

/* Reads the live values from Redis (after AUTH, when auth->enabled) and fills
 * r->redis and r->redis_mismatches. Returns 0, or -1 with err
 * (r->redis_mismatches = -1) when Redis failed or refused the AUTH. */
int verify_redis(const tally_config *cfg, const ledger *l, verify_result *r, char *err, size_t err_len);

#endif
