/*
 * sqlite_reader.c — see sqlite_reader.h. The connection is opened on first
 * use and reopened after an error, so tally-ingest can start before the
 * flusher has created the database and survives the file being replaced.
 */
#include "sqlite_reader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "schema.h"

struct sqlite_reader {
    char path[CONFIG_PATH_MAX];
    sqlite3 *db;
    sqlite3_stmt *counter_stmt;
};

sqlite_reader *sqlite_reader_new(const tally_config *cfg)
{
    sqlite_reader *r = calloc(1, sizeof *r);
    if (r)
        snprintf(r->path, sizeof r->path, "%s", cfg->sqlite.path);
    return r;
}

static void close_db(sqlite_reader *r)
{
    sqlite3_finalize(r->counter_stmt);
    r->counter_stmt = NULL;
    sqlite3_close(r->db);
    r->db = NULL;
}

static int open_db(sqlite_reader *r, char *err, size_t errlen)
{
    if (r->db)
        return 0;
    if (sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(r->db, 1000) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db, SCHEMA_COUNTER_TOTALS, -1, &r->counter_stmt, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite %s: %s", r->path,
                 r->db ? sqlite3_errmsg(r->db) : "cannot open");
        close_db(r);
        return -1;
    }
    return 0;
}

void flushed_total_free(flushed_total *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->series[i].tags);
    free(t->series);
    t->series = NULL;
    t->count = 0;
}

static int append_series(flushed_total *out, size_t *cap, const char *tags, double value)
{
    if (out->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        flushed_series *grown = realloc(out->series, ncap * sizeof *grown);
        if (!grown)
            return -1;
        out->series = grown;
        *cap = ncap;
    }
    char *copy = strdup(tags ? tags : "");
    if (!copy)
        return -1;
    out->series[out->count].tags = copy;
    out->series[out->count].value = value;
    out->count++;
    return 0;
}

int sqlite_reader_counter(sqlite_reader *r, const char *name, flushed_total *out, char *err,
                          size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (open_db(r, err, errlen) != 0)
        return -1;
    sqlite3_stmt *st = r->counter_stmt;
    size_t cap = 0;
    int rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (append_series(out, &cap, (const char *)sqlite3_column_text(st, 0),
                          sqlite3_column_double(st, 1)) != 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        rc = SQLITE_OK;
    }
    if (rc != SQLITE_DONE) {
        snprintf(err, errlen, "sqlite query: %s", rc == SQLITE_NOMEM ? "out of memory"
                                                                     : sqlite3_errmsg(r->db));
        sqlite3_reset(st);
        flushed_total_free(out);
        close_db(r);
        return -1;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return 0;
}

void sqlite_reader_free(sqlite_reader *r)
{
    if (!r)
        return;
    close_db(r);
    free(r);
}
