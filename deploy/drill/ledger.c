/*
 * ledger.c — per-scenario sums of acknowledged batches and the ledger file.
 *
 * Sums are kept as 64-bit integers: the drill only sends whole increments, so
 * the ledger is exact and comparing it with SQLite's doubles is exact too as
 * long as totals stay below 2^53 (they are many orders of magnitude below).
 * The file is plain TSV so that `sort`, `awk` and `sqlite3 .import` can work
 * on it after a failed run.
 */
#include "ledger.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

void ledger_init(ledger *l, const char *runid, int scenario)
{
    memset(l, 0, sizeof *l);
    for (int k = 0; k < DRILL_COUNTERS; k++) drill_counter_name(l->names[k], sizeof l->names[k], runid, scenario, k);
}

void ledger_add_batch(ledger *l, const long long values[DRILL_COUNTERS], int lines)
{
    for (int k = 0; k < DRILL_COUNTERS; k++) l->sums[k] += values[k];
    l->batches++;
    l->events += lines;
}

void ledger_merge(ledger *into, const ledger *from)
{
    for (int k = 0; k < DRILL_COUNTERS; k++) {
        assert(strcmp(into->names[k], from->names[k]) == 0);
        into->sums[k] += from->sums[k];
    }
    into->batches += from->batches;
    into->events += from->events;
    into->retries += from->retries;
    into->non200 += from->non200;
    into->transport_errors += from->transport_errors;
    into->unresolved += from->unresolved;
    into->stale_acks += from->stale_acks;
}

int ledger_file_open(ledger_file *lf, const char *path, char *err, size_t err_len)
{
    memset(lf, 0, sizeof *lf);
    snprintf(lf->path, sizeof lf->path, "%s", path);
    lf->f = fopen(path, "we"); /* close-on-exec: services started by deploy/stack must not inherit it */
    if (lf->f == NULL) {
        snprintf(err, err_len, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    int rc = pthread_mutex_init(&lf->lock, NULL);
    if (rc != 0) {
        snprintf(err, err_len, "pthread_mutex_init: %s", strerror(rc));
        fclose(lf->f);
        lf->f = NULL;
        return -1;
    }
    fprintf(lf->f, "# tally-drill ledger: batch SCENARIO KEY ATTEMPTS LINES SUM | "
                   "counter SCENARIO NAME LEDGER SQLITE REDIS\n");
    return 0;
}

void ledger_file_batch(ledger_file *lf, const char *scenario, const char *key, int attempts,
                       int lines, long long sum)
{
    if (lf->f == NULL) return;
    pthread_mutex_lock(&lf->lock);
    fprintf(lf->f, "batch\t%s\t%s\t%d\t%d\t%lld\n", scenario, key, attempts, lines, sum);
    pthread_mutex_unlock(&lf->lock);
}

void ledger_file_counter(ledger_file *lf, const char *scenario, const char *name, long long ledger_value,
                         double sqlite_value, double redis_value)
{
    if (lf->f == NULL) return;
    pthread_mutex_lock(&lf->lock);
    fprintf(lf->f, "counter\t%s\t%s\t%lld\t%.17g\t", scenario, name, ledger_value, sqlite_value);
    if (isnan(redis_value)) fprintf(lf->f, "-\n");
    else fprintf(lf->f, "%.17g\n", redis_value);
    pthread_mutex_unlock(&lf->lock);
}

int ledger_file_close(ledger_file *lf, char *err, size_t err_len)
{
    if (lf->f == NULL) return 0;
    int bad = ferror(lf->f);
    if (fclose(lf->f) != 0) bad = 1;
    lf->f = NULL;
    pthread_mutex_destroy(&lf->lock);
    if (bad) {
        snprintf(err, err_len, "writing %s failed (disk full?)", lf->path);
        return -1;
    }
    return 0;
}
