/*
 * set_union.c — see set_union.h. One pass over the set sketches in key
 * order: the rows of one series are adjacent, so a single scratch hll
 * collects a series (each decode merges into it) and is handed out when the
 * next series starts.
 */
#include "set_union.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema.h"

/* The series being collected: a copy of its name and tags. */
typedef struct series_key {
    char *bytes; /* name, NUL, tags, NUL */
    size_t cap, name_len, tags_len;
    int set;     /* a series is being collected */
} series_key;

static int key_is(const series_key *k, const unsigned char *name, size_t name_len,
                  const unsigned char *tags, size_t tags_len)
{
    return k->set && k->name_len == name_len && k->tags_len == tags_len &&
           memcmp(k->bytes, name, name_len) == 0 &&
           memcmp(k->bytes + name_len + 1, tags, tags_len) == 0;
}

static int key_take(series_key *k, const unsigned char *name, size_t name_len,
                    const unsigned char *tags, size_t tags_len)
{
    size_t need = name_len + tags_len + 2;
    if (need > k->cap) {
        char *grown = realloc(k->bytes, need);
        if (!grown)
            return -1;
        k->bytes = grown;
        k->cap = need;
    }
    memcpy(k->bytes, name, name_len);
    k->bytes[name_len] = '\0';
    memcpy(k->bytes + name_len + 1, tags, tags_len);
    k->bytes[name_len + 1 + tags_len] = '\0';
    k->name_len = name_len;
    k->tags_len = tags_len;
    k->set = 1;
    return 0;
}

static int hand_out(const series_key *k, set_union_fn fn, void *arg, const hll *h)
{
    return fn(arg, k->bytes, k->name_len, k->bytes + k->name_len + 1, k->tags_len, h);
}

/* Folds one row (name, tags, bucket, data) into the walk: hands the previous
 * series out when this row starts another. Returns 0, fn's non-zero
 * return, or -1 with err filled. */
static int fold_row(sqlite3_stmt *st, series_key *k, hll *h, set_union_fn fn, void *arg,
                    char *err, size_t errlen)
{
    const unsigned char *name = sqlite3_column_text(st, 0), *tags = sqlite3_column_text(st, 1);
    size_t name_len = (size_t)sqlite3_column_bytes(st, 0), tags_len = (size_t)sqlite3_column_bytes(st, 1);
    if (!name || !tags) {
        snprintf(err, errlen, "sqlite: a set sketch with a NULL name or tags");
        return -1;
    }
    if (!key_is(k, name, name_len, tags, tags_len)) {
        int rc = k->set ? hand_out(k, fn, arg, h) : 0;
        if (rc != 0)
            return rc;
        hll_clear(h);
        if (key_take(k, name, name_len, tags, tags_len) != 0) {
            snprintf(err, errlen, "set union: out of memory");
            return -1;
        }
    }
    char why[128] = "";
    if (hll_decode(h, sqlite3_column_blob(st, 3), (size_t)sqlite3_column_bytes(st, 3), why,
                   sizeof why) != 0) {
        snprintf(err, errlen, "corrupt set sketch (name %s, tags '%s', bucket %" PRId64 "): %s",
                 k->bytes, k->bytes + k->name_len + 1, (int64_t)sqlite3_column_int64(st, 2), why);
        return -1;
    }
    return 0;
}

int set_union_each(sqlite3 *db, set_union_fn fn, void *arg, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    hll *h = hll_new();
    series_key k = {0};
    int rc = -1;
    if (!h) {
        snprintf(err, errlen, "set union: out of memory");
        return -1;
    }
    if (sqlite3_prepare_v2(db, SCHEMA_REBUILD_SETS, -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "sqlite prepare: %s", sqlite3_errmsg(db));
        goto out;
    }
    int step;
    rc = 0;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW)
        rc = fold_row(st, &k, h, fn, arg, err, errlen);
    if (rc == 0 && step != SQLITE_DONE) {
        snprintf(err, errlen, "sqlite read: %s", sqlite3_errmsg(db));
        rc = -1;
    }
    if (rc == 0 && k.set)
        rc = hand_out(&k, fn, arg, h);
out:
    sqlite3_finalize(st);
    hll_free(h);
    free(k.bytes);
    return rc;
}
