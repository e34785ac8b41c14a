/*
 * query_exec.h — one read, described, and its answer: what the HTTP side
 * builds (prom_api.c), what the cache keys (query_cache.h) and what a reader
 * thread runs (query_exec_run) against its query_source.
 *
 * The answer is the complete JSON body and its HTTP status, in Prometheus'
 * shapes for the /api/v1 routes ({"status":"success","data":...} or
 * {"status":"error","errorType":...,"error":...}), so a cached answer is
 * sent as it is. query_exec_run() never touches the event loop.
 */
#ifndef TALLY_QUERY_EXEC_H
#define TALLY_QUERY_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "event.h"
#include "promql.h"
#include "query_source.h"

typedef enum read_kind {
    READ_QUERY,        /* /api/v1/query: expr at time_ms */
    READ_QUERY_RANGE,  /* /api/v1/query_range: expr over start..end by step */
    READ_SERIES,       /* /api/v1/series: selectors over start..end */
    READ_LABELS,       /* /api/v1/labels */
    READ_LABEL_VALUES, /* /api/v1/label/<label>/values */
    READ_METADATA,     /* /api/v1/metadata */
    READ_NATIVE,       /* /v1/series/NAME: name over start..end by step (seconds) */
    READ_TOTALS,       /* /v1/counters/NAME from SQLite: name, type (0: the first), stale, note */
} read_kind;

#define READ_LABEL_MAX 256
#define READ_SELECTORS_MAX 64

typedef struct read_request {
    read_kind kind;
    promql_expr *expr;                       /* QUERY, QUERY_RANGE (owned) */
    promql_expr *selectors[READ_SELECTORS_MAX]; /* SERIES/LABELS/VALUES match[] (owned) */
    size_t nselectors;
    char label[READ_LABEL_MAX];              /* LABEL_VALUES */
    char name[EVENT_NAME_MAX + 1];           /* NATIVE, TOTALS */
    metric_type type;                        /* TOTALS (0: the first the name has) */
    int stale;                               /* TOTALS: the answer is a fallback */
    char note[300];                          /* TOTALS: why (empty: none) */
    int64_t time_ms, start_ms, end_ms, step_ms;
    promql_limits limits;
    char *raw_key;                           /* owned, or NULL: the request's own text when
                                                it alone determines the answer (a
                                                query_range: query_cache_read_raw) */
    /* the answer, filled by query_exec_run */
    int status;                              /* HTTP status */
    struct evbuffer *body;                   /* owned; NULL until run */
    int empty;                               /* no series matched */
    unsigned saw;                            /* types read: mask of 1 << metric_type
                                                (the TTL class of the answer) */
} read_request;

/* The normalised text of a read (kind, times, label, name, the canonical
 * text of its expression or selectors, one per line): two reads that mean
 * the same have the same text. The cache keys answers by it, and warming
 * reads it back. Returns its length, or -1 when buflen is too small. */
#define READ_KEY_MAX 16384
int read_request_key(const read_request *r, char *buf, size_t buflen);

/* Rebuilds a read from read_request_key()'s text (limits left zero).
 * Returns 0, or -1 with err filled (then *r holds nothing to free). */
int read_request_from_key(const char *key, read_request *r, char *err, size_t errlen);

/* Frees what the request owns (not the request). */
void read_request_clear(read_request *r);

/* Runs the read against src (one read transaction) and fills status, body,
 * empty and saw. On a source failure the answer is 503 unavailable. */
void query_exec_run(read_request *r, query_source *src);

/* Appends a native route's error body: {"error":msg}. */
void query_exec_native_error_body(struct evbuffer *b, const char *msg);

/* Appends a Prometheus error body: {"status":"error","errorType":type,"error":msg}. */
void query_exec_error_body(struct evbuffer *b, const char *type, const char *msg);

#endif
