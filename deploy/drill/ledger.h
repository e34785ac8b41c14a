/*
 * ledger.h — the drill's own record of what Tally acknowledged.
 *
 * A ledger holds, for one scenario, the exact sum of every counter over the
 * batches that got a 200, plus how many batches were acknowledged, retried,
 * answered non-200, lost to transport errors, or left unresolved. It is
 * independent of Tally: verification compares it with SQLite and Redis.
 * Each load worker fills a private ledger (no locking); the scenario's ledger
 * is their sum (ledger_merge).
 *
 * The ledger file ($TALLY_VAR/drill/ledger-<seed>.tsv) keeps the evidence of
 * a run for investigation: one "batch" row per acknowledged batch (written by
 * the workers as they go, under a mutex) and, after verification, one
 * "counter" row per name with the ledger, SQLite and Redis values.
 */
#ifndef TALLY_DRILL_LEDGER_H
#define TALLY_DRILL_LEDGER_H

#include "drill.h"

#include <pthread.h>
#include <stdio.h>

typedef struct ledger {
    char names[DRILL_COUNTERS][DRILL_NAME_MAX];
    long long sums[DRILL_COUNTERS];   /* Σ values of acknowledged batches */
    long long batches;                /* acknowledged (200) batches */
    long long events;                 /* lines in acknowledged batches */
    long long retries;                /* attempts beyond the first */
    long long non200;                 /* HTTP answers other than 200 */
    long long transport_errors;       /* connect/send/receive failures and timeouts */
    long long unresolved;             /* batches given up after the per-batch deadline */
    long long stale_acks;             /* 200 answers that said the live view is stale */
} ledger;

/* Zeroes *l and names its counters after (runid, scenario). */
void ledger_init(ledger *l, const char *runid, int scenario);

/* Records one acknowledged batch: values[k] added to counter k, `lines` events. */
void ledger_add_batch(ledger *l, const long long values[DRILL_COUNTERS], int lines);

/* Adds every count and sum of `from` to `into` (same names required). */
void ledger_merge(ledger *into, const ledger *from);

typedef struct ledger_file {
    FILE *f;
    pthread_mutex_t lock;
    char path[1024];
} ledger_file;

/* Creates (truncates) the file at path and writes its header line.
 * Returns 0, or -1 with err filled. */
int ledger_file_open(ledger_file *lf, const char *path, char *err, size_t err_len);

/* Appends "batch <scenario> <key> <attempts> <lines> <sum>"; thread-safe.
 * A write error is remembered and reported by ledger_file_close. */
void ledger_file_batch(ledger_file *lf, const char *scenario, const char *key, int attempts,
                       int lines, long long sum);

/* Appends "counter <scenario> <name> <ledger> <sqlite> <redis>" (redis may be
 * NAN when it was not read). */
void ledger_file_counter(ledger_file *lf, const char *scenario, const char *name, long long ledger_value,
                         double sqlite_value, double redis_value);

/* Flushes and closes. Returns 0, or -1 with err filled when any write failed. */
int ledger_file_close(ledger_file *lf, char *err, size_t err_len);

#endif
