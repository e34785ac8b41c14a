/*
 * query_exec.c — see query_exec.h. Runs on a reader thread: evaluates, then
 * writes the JSON answer while the read transaction is still open (the
 * answer is one snapshot), then ends the transaction.
 */
#include "query_exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "http_reply.h"

void read_request_clear(read_request *r)
{
    promql_expr_free(r->expr);
    r->expr = NULL;
    for (size_t i = 0; i < r->nselectors; i++)
        promql_expr_free(r->selectors[i]);
    r->nselectors = 0;
    if (r->body)
        evbuffer_free(r->body);
    r->body = NULL;
    free(r->raw_key);
    r->raw_key = NULL;
}

int read_request_key(const read_request *r, char *buf, size_t buflen)
{
    int n = snprintf(buf, buflen, "%d\n%lld\n%lld\n%lld\n%lld\n%s\n%s", (int)r->kind,
                     (long long)r->time_ms, (long long)r->start_ms, (long long)r->end_ms,
                     (long long)r->step_ms, r->label, r->name);
    if (n < 0 || (size_t)n >= buflen)
        return -1;
    size_t used = (size_t)n;
    promql_expr *const *exprs = r->expr ? &r->expr : r->selectors;
    size_t count = r->expr ? 1 : r->nselectors;
    for (size_t i = 0; i < count; i++) {
        if (used + 2 >= buflen)
            return -1;
        buf[used++] = '\n';
        int len = promql_format(exprs[i], buf + used, buflen - used);
        if (len < 0)
            return -1;
        used += (size_t)len;
    }
    buf[used] = '\0';
    return (int)used;
}

/* Copies the next line of *p into out (at most outlen - 1 bytes). */
static int next_line(const char **p, char *out, size_t outlen)
{
    const char *nl = strchr(*p, '\n');
    size_t len = nl ? (size_t)(nl - *p) : strlen(*p);
    if (len >= outlen)
        return -1;
    memcpy(out, *p, len);
    out[len] = '\0';
    *p += len + (nl ? 1 : 0);
    return 0;
}

int read_request_from_key(const char *key, read_request *r, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    int kind;
    long long t, s, e, st;
    const char *p = key;
    char head[128];
    if (next_line(&p, head, sizeof head) != 0 || sscanf(head, "%d", &kind) != 1 ||
        next_line(&p, head, sizeof head) != 0 || sscanf(head, "%lld", &t) != 1 ||
        next_line(&p, head, sizeof head) != 0 || sscanf(head, "%lld", &s) != 1 ||
        next_line(&p, head, sizeof head) != 0 || sscanf(head, "%lld", &e) != 1 ||
        next_line(&p, head, sizeof head) != 0 || sscanf(head, "%lld", &st) != 1 ||
        next_line(&p, r->label, sizeof r->label) != 0 ||
        next_line(&p, r->name, sizeof r->name) != 0 || kind < READ_QUERY || kind > READ_NATIVE) {
        /* (READ_TOTALS is never cached: it is the live route's fallback) */
        snprintf(err, errlen, "not a read key");
        return -1;
    }
    r->kind = (read_kind)kind;
    r->time_ms = t;
    r->start_ms = s;
    r->end_ms = e;
    r->step_ms = st;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        int rc;
        if (r->kind == READ_QUERY || r->kind == READ_QUERY_RANGE)
            rc = r->expr ? -1 : promql_parse(p, len, &r->expr, err, errlen);
        else if (r->nselectors < READ_SELECTORS_MAX)
            rc = promql_parse_selector(p, len, &r->selectors[r->nselectors++], err, errlen);
        else
            rc = -1;
        if (rc != 0) {
            read_request_clear(r);
            return -1;
        }
        p += len + (nl ? 1 : 0);
    }
    return 0;
}

static void json_string(struct evbuffer *b, const char *s)
{
    http_json_string(b, s, strlen(s));
}

void query_exec_error_body(struct evbuffer *b, const char *type, const char *msg)
{
    evbuffer_add_printf(b, "{\"status\":\"error\",\"errorType\":\"%s\",\"error\":", type);
    json_string(b, msg);
    evbuffer_add(b, "}\n", 2);
}

void query_exec_native_error_body(struct evbuffer *b, const char *msg)
{
    evbuffer_add(b, "{\"error\":", 9);
    json_string(b, msg);
    evbuffer_add(b, "}\n", 2);
}

/* Seconds with up to three decimals, as Prometheus writes sample times. */
static void write_time(struct evbuffer *b, int64_t t_ms)
{
    int64_t s = t_ms / 1000, ms = t_ms % 1000;
    if (ms < 0) {
        s--;
        ms += 1000;
    }
    if (ms == 0)
        evbuffer_add_printf(b, "%lld", (long long)s);
    else if (ms % 100 == 0)
        evbuffer_add_printf(b, "%lld.%01lld", (long long)s, (long long)(ms / 100));
    else if (ms % 10 == 0)
        evbuffer_add_printf(b, "%lld.%02lld", (long long)s, (long long)(ms / 10));
    else
        evbuffer_add_printf(b, "%lld.%03lld", (long long)s, (long long)ms);
}

static void write_point(struct evbuffer *b, int64_t t_ms, double v)
{
    char num[FORMAT_PROM_VALUE_MAX];
    format_prom_value(num, sizeof num, v);
    evbuffer_add(b, "[", 1);
    write_time(b, t_ms);
    evbuffer_add_printf(b, ",\"%s\"]", num);
}

static void write_labels(struct evbuffer *b, const promql_labels *l)
{
    evbuffer_add(b, "{", 1);
    for (size_t i = 0; i < l->count; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        json_string(b, l->items[i].name);
        evbuffer_add(b, ":", 1);
        json_string(b, l->items[i].value);
    }
    evbuffer_add(b, "}", 1);
}

static void write_result(struct evbuffer *b, const promql_result *res)
{
    static const char *const names[] = {"scalar", "vector", "matrix"};
    evbuffer_add_printf(b, "{\"status\":\"success\",\"data\":{\"resultType\":\"%s\",\"result\":",
                        names[res->type]);
    if (res->type == PROMQL_SCALAR) {
        write_point(b, res->t_ms, res->scalar);
    } else {
        evbuffer_add(b, "[", 1);
        for (size_t i = 0; i < res->series.count; i++) {
            const promql_series *s = &res->series.items[i];
            evbuffer_add(b, i ? ",{\"metric\":" : "{\"metric\":", i ? 11 : 10);
            write_labels(b, &s->labels);
            if (res->type == PROMQL_VECTOR) {
                evbuffer_add(b, ",\"value\":", 9);
                write_point(b, s->samples[0].t_ms, s->samples[0].v);
            } else {
                evbuffer_add(b, ",\"values\":[", 11);
                for (size_t j = 0; j < s->count; j++) {
                    if (j)
                        evbuffer_add(b, ",", 1);
                    write_point(b, s->samples[j].t_ms, s->samples[j].v);
                }
                evbuffer_add(b, "]", 1);
            }
            evbuffer_add(b, "}", 1);
        }
        evbuffer_add(b, "]", 1);
    }
    evbuffer_add(b, "}}\n", 3);
}

static void fail(read_request *r, int rc, const char *err)
{
    static const struct { int status; const char *type; } map[] = {
        {400, "bad_data"}, {422, "execution"}, {503, "unavailable"}};
    int i = rc == PROMQL_ERR_BAD_DATA ? 0 : rc == PROMQL_ERR_EXECUTION ? 1 : 2;
    evbuffer_drain(r->body, evbuffer_get_length(r->body));
    r->status = map[i].status;
    query_exec_error_body(r->body, map[i].type, err);
}

static void run_promql(read_request *r, query_source *src)
{
    promql_source ps = query_source_promql(src);
    promql_result res;
    char err[512];
    int rc = r->kind == READ_QUERY
                 ? promql_eval_instant(r->expr, &ps, &r->limits, r->time_ms, &res, err, sizeof err)
                 : promql_eval_range(r->expr, &ps, &r->limits, r->start_ms, r->end_ms, r->step_ms,
                                     &res, err, sizeof err);
    if (rc != 0) {
        fail(r, rc, err);
        return;
    }
    write_result(r->body, &res);
    promql_result_free(&res);
}

/* ---- series, labels, label values: the catalog through the selectors ---------- */

typedef struct selected {
    promql_series_set set;
    query_source *src;
    int64_t start_ms, end_ms;
    char err[512];
    int failed;
} selected;

static int select_labels(void *ctx, const promql_matcher *m, size_t n)
{
    selected *sel = ctx;
    promql_source ps = query_source_promql(sel->src);
    if (ps.select(ps.ctx, m, n, sel->start_ms, sel->end_ms, -1, &sel->set, sel->err,
                  sizeof sel->err) != 0) {
        sel->failed = 1;
        return -1;
    }
    return 0;
}

static int compare_series_labels(const void *x, const void *y)
{
    return promql_labels_compare(&((const promql_series *)x)->labels,
                                 &((const promql_series *)y)->labels);
}

static int compare_strings(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Writes the sorted unique names (or values of r->label) of every label. */
static void write_label_strings(read_request *r, const promql_series_set *set)
{
    size_t n = 0, cap = 0;
    const char **all = NULL;
    for (size_t i = 0; i < set->count; i++) {
        const promql_labels *l = &set->items[i].labels;
        for (size_t j = 0; j < l->count; j++) {
            int wanted = r->kind == READ_LABELS || strcmp(l->items[j].name, r->label) == 0;
            if (!wanted)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                const char **grown = realloc(all, ncap * sizeof *grown);
                if (!grown) {
                    free(all);
                    fail(r, PROMQL_ERR_EXECUTION, "out of memory");
                    return;
                }
                all = grown;
                cap = ncap;
            }
            all[n++] = r->kind == READ_LABELS ? l->items[j].name : l->items[j].value;
        }
    }
    if (n > 1)
        qsort(all, n, sizeof *all, compare_strings);
    evbuffer_add(r->body, "{\"status\":\"success\",\"data\":[", 28);
    for (size_t i = 0, written = 0; i < n; i++) {
        if (i > 0 && strcmp(all[i], all[i - 1]) == 0)
            continue;
        if (written++)
            evbuffer_add(r->body, ",", 1);
        json_string(r->body, all[i]);
    }
    evbuffer_add(r->body, "]}\n", 3);
    free(all);
}

static void write_series_list(read_request *r, promql_series_set *set)
{
    if (set->count > 1)
        qsort(set->items, set->count, sizeof *set->items, compare_series_labels);
    evbuffer_add(r->body, "{\"status\":\"success\",\"data\":[", 28);
    for (size_t i = 0, written = 0; i < set->count; i++) {
        if (i > 0 && compare_series_labels(&set->items[i], &set->items[i - 1]) == 0)
            continue; /* matched by two selectors */
        if (written++)
            evbuffer_add(r->body, ",", 1);
        write_labels(r->body, &set->items[i].labels);
    }
    evbuffer_add(r->body, "]}\n", 3);
}

static void run_catalog(read_request *r, query_source *src)
{
    selected sel = {.src = src, .start_ms = r->start_ms, .end_ms = r->end_ms};
    for (size_t i = 0; i < r->nselectors && !sel.failed; i++)
        promql_foreach_selector(r->selectors[i], select_labels, &sel);
    if (sel.failed)
        fail(r, PROMQL_ERR_SOURCE, sel.err);
    else if (r->kind == READ_SERIES)
        write_series_list(r, &sel.set);
    else
        write_label_strings(r, &sel.set);
    promql_series_set_free(&sel.set);
}

static void run_metadata(read_request *r, query_source *src)
{
    char err[512];
    evbuffer_add(r->body, "{\"status\":\"success\",\"data\":", 27);
    int n = query_source_metadata(src, r->label[0] ? r->label : NULL, r->body, err, sizeof err);
    if (n < 0) {
        fail(r, PROMQL_ERR_SOURCE, err);
        return;
    }
    evbuffer_add(r->body, "}\n", 2);
}

static void run_native(read_request *r, query_source *src)
{
    char err[512];
    int found = query_source_native(src, r->name, r->start_ms / 1000, r->end_ms / 1000,
                                    r->step_ms / 1000, r->body, err, sizeof err);
    if (found < 0) {
        evbuffer_drain(r->body, evbuffer_get_length(r->body));
        r->status = 503;
        query_exec_native_error_body(r->body, err);
    } else if (found == 0) {
        char msg[EVENT_NAME_MAX + 64];
        snprintf(msg, sizeof msg, "no metric named %s has been flushed", r->name);
        r->status = 404;
        query_exec_native_error_body(r->body, msg);
    }
}

static void run_totals(read_request *r, query_source *src)
{
    char err[512];
    int found = query_source_totals(src, r->name, r->type, r->stale, r->note[0] ? r->note : NULL,
                                    r->body, err, sizeof err);
    if (found < 0) {
        evbuffer_drain(r->body, evbuffer_get_length(r->body));
        r->status = 503;
        query_exec_native_error_body(r->body, err);
    } else if (found == 0) {
        char msg[EVENT_NAME_MAX + 96];
        snprintf(msg, sizeof msg, "no %s named %s has been flushed",
                 r->type ? metric_type_name(r->type) : "metric", r->name);
        r->status = 404;
        query_exec_native_error_body(r->body, msg);
    }
}

void query_exec_run(read_request *r, query_source *src)
{
    char err[512];
    r->status = 200;
    r->body = evbuffer_new();
    if (!r->body) {
        r->status = 500;
        return;
    }
    if (query_source_begin(src, err, sizeof err) != 0) {
        if (r->kind == READ_NATIVE || r->kind == READ_TOTALS) {
            r->status = 503;
            query_exec_native_error_body(r->body, err);
        } else {
            fail(r, PROMQL_ERR_SOURCE, err);
        }
        return;
    }
    switch (r->kind) {
    case READ_QUERY:
    case READ_QUERY_RANGE: run_promql(r, src); break;
    case READ_SERIES:
    case READ_LABELS:
    case READ_LABEL_VALUES: run_catalog(r, src); break;
    case READ_METADATA: run_metadata(r, src); break;
    case READ_NATIVE: run_native(r, src); break;
    case READ_TOTALS: run_totals(r, src); break;
    }
    r->saw = query_source_types_seen(src);
    r->empty = query_source_series_seen(src) == 0;
    query_source_end(src);
}
