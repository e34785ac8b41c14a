/*
 * prom_api.c — see prom_api.h. Each route turns its parameters into a
 * read_request (query_exec.h), validated here so that a reader thread only
 * ever gets a well-formed read; the thread's answer (status and complete
 * body) is sent as it is.
 */
#include "prom_api.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "clock.h"
#include "http_reply.h"
#include "query_cache.h"
#include "version.h"
#include "query_exec.h"

/* Prometheus' own bounds of an open time range. */
#define TIME_MIN_MS (-9223372036854LL * 1000 / 2)
#define TIME_MAX_MS (9223372036854LL * 1000 / 2)

struct prom_api {
    struct event_base *base;
    const tally_config *cfg;
    query_cache *cache;
    size_t inflight;
};

/* A read on its way through the cache and maybe a reader thread. */
typedef struct read_call {
    prom_api *api;
    struct evhttp_request *req;
    read_request read;
} read_call;

prom_api *prom_api_new(struct event_base *base, const tally_config *cfg, query_cache *cache,
                       char *err, size_t errlen)
{
    prom_api *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "prom_api: out of memory");
        return NULL;
    }
    a->base = base;
    a->cfg = cfg;
    a->cache = cache;
    return a;
}

void prom_api_free(prom_api *a)
{
    free(a);
}

size_t prom_api_inflight(const prom_api *a)
{
    return a->inflight;
}

query_cache *prom_api_cache(const prom_api *a)
{
    return a->cache;
}

void prom_api_health(const prom_api *a, struct evbuffer *out)
{
    cache_stats st;
    query_cache_stats_get(a->cache, &st);
    evbuffer_add_printf(
        out,
        ",\"cache\":\"%s\",\"reads\":{\"hits\":%llu,\"negative_hits\":%llu,\"misses\":%llu,"
        "\"single_flight_waits\":%llu,\"uncached\":%llu,\"populates\":%llu,\"warmed\":%llu,"
        "\"early_refreshes\":%llu,\"local_hits\":%llu,\"local_invalidations\":%llu,"
        "\"local\":%s,\"sqlite_queries\":%llu,\"inflight\":%zu}",
        !a->cfg->cache.enabled ? "disabled" : st.breaker_open ? "breaker_open" : st.up ? "up" : "down",
        (unsigned long long)st.hits, (unsigned long long)st.negative_hits,
        (unsigned long long)st.misses, (unsigned long long)st.waits,
        (unsigned long long)st.uncached, (unsigned long long)st.populates,
        (unsigned long long)st.warmed, (unsigned long long)st.refreshes,
        (unsigned long long)st.local_hits, (unsigned long long)st.local_invalidations,
        st.local_active ? "true" : "false", (unsigned long long)st.sqlite_queries, a->inflight);
}

int prom_api_owns(const char *path)
{
    return strncmp(path, "/api/v1/", 8) == 0 || strncmp(path, "/v1/series/", 11) == 0;
}

/* ---- answers ------------------------------------------------------------------ */

static void send_body(struct evhttp_request *req, int status, struct evbuffer *body)
{
    http_reply_json(req, status, http_reason(status), body);
}

/* An error answer in Prometheus' shape. */
static void send_error(struct evhttp_request *req, int status, const char *type, const char *msg)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    query_exec_error_body(b, type, msg);
    send_body(req, status, b);
    evbuffer_free(b);
}

static void send_text(struct evhttp_request *req, const char *json)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(b, json, strlen(json));
    send_body(req, 200, b);
    evbuffer_free(b);
}

/* ---- parameters ----------------------------------------------------------------- */

/* libevent decodes the values of a query string, not its keys: "match%5B%5D"
 * (what Grafana and promtool send) becomes "match[]" here. */
static int decode_keys(struct evkeyvalq *params)
{
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, params, next) {
        if (!strchr(kv->key, '%') && !strchr(kv->key, '+'))
            continue;
        char *decoded = evhttp_uridecode(kv->key, 1, NULL);
        if (!decoded)
            return -1;
        free(kv->key);
        kv->key = decoded;
    }
    return 0;
}

/* The URI's query string and, for a POST, the form body, as one list. */
static int read_params(struct evhttp_request *req, struct evkeyvalq *params, char *err,
                       size_t errlen)
{
    TAILQ_INIT(params);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    if (query && (evhttp_parse_query_str(query, params) != 0 || decode_keys(params) != 0)) {
        snprintf(err, errlen, "malformed query string");
        return -1;
    }
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
        return 0;
    const char *type = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    if (len == 0)
        return 0;
    if (!type || strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0) {
        snprintf(err, errlen, "a POST takes an application/x-www-form-urlencoded body");
        return -1;
    }
    char *body = malloc(len + 1);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    evbuffer_copyout(in, body, len);
    body[len] = '\0';
    int rc = evhttp_parse_query_str(body, params) != 0 || decode_keys(params) != 0 ? -1 : 0;
    free(body);
    if (rc != 0)
        snprintf(err, errlen, "malformed form body");
    return rc;
}

/* Unix seconds (decimals allowed) or RFC 3339 ("2026-12-01T10:00:00.5Z",
 * "...+01:00"), to milliseconds. */
static int parse_time(const char *s, int64_t *ms)
{
    char *end;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0' && isfinite(secs) && fabs(secs) < 9.2e15) {
        *ms = (int64_t)llround(secs * 1000);
        return 0;
    }
    struct tm tm = {0};
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest)
        return -1;
    int64_t frac_ms = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; isdigit((unsigned char)*rest); rest++, digits++)
            if (digits < 3)
                frac_ms = frac_ms * 10 + (*rest - '0');
        for (; digits < 3; digits++)
            frac_ms *= 10;
    }
    int64_t offset_s = 0;
    if (*rest == 'Z' || *rest == 'z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int hh, mm;
        if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2)
            return -1;
        offset_s = (int64_t)(hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
        rest += 6;
    } else {
        return -1;
    }
    if (*rest != '\0')
        return -1;
    *ms = ((int64_t)timegm(&tm) - offset_s) * 1000 + frac_ms;
    return 0;
}

/* Seconds (decimals allowed) or a PromQL duration, to milliseconds (> 0). */
static int parse_step(const char *s, int64_t *ms)
{
    char *end;
    double secs = strtod(s, &end);
    if (end != s && *end == '\0') {
        if (!(secs > 0) || secs > 1e12)
            return -1;
        *ms = (int64_t)llround(secs * 1000);
        return *ms > 0 ? 0 : -1;
    }
    char why[128];
    return promql_parse_duration(s, strlen(s), ms, why, sizeof why) == 0 && *ms > 0 ? 0 : -1;
}

/* Reads a time parameter (def when absent). Returns 0, or -1 with err. */
static int time_param(struct evkeyvalq *params, const char *key, int64_t def, int64_t *ms,
                      char *err, size_t errlen)
{
    const char *v = evhttp_find_header(params, key);
    *ms = def;
    if (v && parse_time(v, ms) != 0) {
        snprintf(err, errlen, "invalid parameter \"%s\": cannot parse \"%.64s\" to a valid timestamp",
                 key, v);
        return -1;
    }
    return 0;
}

/* ---- routes ---------------------------------------------------------------------- */

static void on_answer(void *opaque, int status, struct evbuffer *body, cache_state state)
{
    static const char *const states[] = {"hit", "miss", "uncached"};
    read_call *call = opaque;
    call->api->inflight--;
    if (!body) {
        evhttp_send_error(call->req, 500, "out of memory");
    } else {
        evhttp_add_header(evhttp_request_get_output_headers(call->req), "X-Tally-Cache",
                          states[state]);
        send_body(call->req, status, body);
    }
    free(call);
}

/* Hands a validated read to the cache (owns `call` from now on). */
static void dispatch(prom_api *a, read_call *call)
{
    call->api = a;
    call->read.limits.lookback_ms = (int64_t)a->cfg->query.lookback_seconds * 1000;
    call->read.limits.max_samples = (size_t)a->cfg->query.max_samples;
    a->inflight++;
    query_cache_read(a->cache, &call->read, on_answer, call);
}

static int parse_expr(read_call *call, struct evkeyvalq *params, char *err, size_t errlen)
{
    const char *q = evhttp_find_header(params, "query");
    if (!q) {
        snprintf(err, errlen, "invalid parameter \"query\": missing");
        return -1;
    }
    return promql_parse(q, strlen(q), &call->read.expr, err, errlen) == 0 ? 0 : -1;
}

static int route_query(prom_api *a, read_call *call, struct evkeyvalq *params, char *err,
                       size_t errlen)
{
    (void)a;
    call->read.kind = READ_QUERY;
    return parse_expr(call, params, err, errlen) != 0 ||
                   time_param(params, "time", clock_wall_ms(), &call->read.time_ms, err, errlen) != 0
               ? -1
               : 0;
}

static int route_query_range(prom_api *a, read_call *call, struct evkeyvalq *params, char *err,
                             size_t errlen)
{
    read_request *r = &call->read;
    r->kind = READ_QUERY_RANGE;
    const char *step = evhttp_find_header(params, "step");
    if (parse_expr(call, params, err, errlen) != 0)
        return -1;
    if (!evhttp_find_header(params, "start") || !evhttp_find_header(params, "end") || !step) {
        snprintf(err, errlen, "query_range needs the parameters start, end and step");
        return -1;
    }
    if (time_param(params, "start", 0, &r->start_ms, err, errlen) != 0 ||
        time_param(params, "end", 0, &r->end_ms, err, errlen) != 0)
        return -1;
    if (r->end_ms < r->start_ms) {
        snprintf(err, errlen, "invalid parameter \"end\": end timestamp must not be before start time");
        return -1;
    }
    if (parse_step(step, &r->step_ms) != 0) {
        snprintf(err, errlen, "invalid parameter \"step\": zero or negative query resolution step "
                              "widths are not accepted. Try a positive integer");
        return -1;
    }
    if ((r->end_ms - r->start_ms) / r->step_ms >= a->cfg->query.max_points) {
        snprintf(err, errlen, "exceeded maximum resolution of %d points per timeseries. Try "
                              "decreasing the query resolution (?step=XX)", a->cfg->query.max_points);
        return -1;
    }
    return 0;
}

/* match[] selectors (required for /series), start and end. */
static int route_catalog(read_call *call, struct evkeyvalq *params, int need_match, char *err,
                         size_t errlen)
{
    read_request *r = &call->read;
    struct evkeyval *kv;
    TAILQ_FOREACH(kv, params, next) {
        if (strcmp(kv->key, "match[]") != 0)
            continue;
        if (r->nselectors == READ_SELECTORS_MAX) {
            snprintf(err, errlen, "more than %d match[] parameters", READ_SELECTORS_MAX);
            return -1;
        }
        if (promql_parse_selector(kv->value, strlen(kv->value), &r->selectors[r->nselectors],
                                  err, errlen) != 0)
            return -1;
        r->nselectors++;
    }
    if (r->nselectors == 0 && need_match) {
        snprintf(err, errlen, "no match[] parameter provided");
        return -1;
    }
    if (r->nselectors == 0) {
        static const char every[] = "{__name__=~\".+\"}";
        if (promql_parse_selector(every, sizeof every - 1, &r->selectors[0], err, errlen) != 0)
            return -1;
        r->nselectors = 1;
    }
    return time_param(params, "start", TIME_MIN_MS, &r->start_ms, err, errlen) != 0 ||
                   time_param(params, "end", TIME_MAX_MS, &r->end_ms, err, errlen) != 0
               ? -1
               : 0;
}

static int valid_label_name(const char *s)
{
    if (!*s || isdigit((unsigned char)*s))
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

static int route_native(prom_api *a, read_call *call, const char *name, struct evkeyvalq *params,
                        char *err, size_t errlen)
{
    read_request *r = &call->read;
    r->kind = READ_NATIVE;
    size_t len = strlen(name);
    if (len == 0 || len > EVENT_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJK"
                                                        "LMNOPQRSTUVWXYZ0123456789_.-") != len) {
        snprintf(err, errlen, "invalid metric name: 1-255 characters of [A-Za-z0-9_.-]");
        return -1;
    }
    memcpy(r->name, name, len + 1);
    int64_t bucket_ms = (int64_t)a->cfg->flusher.bucket_seconds * 1000;
    const char *step = evhttp_find_header(params, "step");
    r->step_ms = bucket_ms;
    if (time_param(params, "to", clock_wall_ms(), &r->end_ms, err, errlen) != 0 ||
        time_param(params, "from", r->end_ms - 3600 * 1000, &r->start_ms, err, errlen) != 0)
        return -1;
    if (step && (parse_step(step, &r->step_ms) != 0 || r->step_ms % 1000 != 0)) {
        snprintf(err, errlen, "step must be a whole number of seconds > 0");
        return -1;
    }
    if (r->end_ms < r->start_ms) {
        snprintf(err, errlen, "to must not be before from");
        return -1;
    }
    if ((r->end_ms - r->start_ms) / r->step_ms >= a->cfg->query.max_points) {
        snprintf(err, errlen, "more than query.max_points (%d) points: use a larger step",
                 a->cfg->query.max_points);
        return -1;
    }
    return 0;
}

static int route_values(read_call *call, const char *path, struct evkeyvalq *params, char *err,
                        size_t errlen)
{
    static const char prefix[] = "/api/v1/label/", suffix[] = "/values";
    size_t len = strlen(path), pl = sizeof prefix - 1, sl = sizeof suffix - 1;
    read_request *r = &call->read;
    r->kind = READ_LABEL_VALUES;
    if (len <= pl + sl || strcmp(path + len - sl, suffix) != 0 || len - pl - sl >= READ_LABEL_MAX) {
        snprintf(err, errlen, "unknown route %.200s", path);
        return -1;
    }
    char *decoded = evhttp_uridecode(path + pl, 0, NULL);
    if (!decoded) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    decoded[strlen(decoded) - sl] = '\0';
    snprintf(r->label, sizeof r->label, "%s", decoded);
    free(decoded);
    if (!valid_label_name(r->label)) {
        snprintf(err, errlen, "invalid label name: \"%.200s\"", r->label);
        return -1;
    }
    return route_catalog(call, params, 0, err, errlen);
}

static const char BUILDINFO[] =
    "{\"status\":\"success\",\"data\":{\"version\":\"" TALLY_VERSION "\",\"revision\":\"\","
    "\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\","
    "\"application\":\"tally\"}}\n";

/* Parses the route's parameters into call->read; 0, 1 (answered here), or
 * -1 with err (400 bad_data). */
static int route(prom_api *a, read_call *call, const char *path, struct evkeyvalq *params,
                 char *err, size_t errlen)
{
    read_request *r = &call->read;
    if (strcmp(path, "/api/v1/query") == 0)
        return route_query(a, call, params, err, errlen);
    if (strcmp(path, "/api/v1/query_range") == 0)
        return route_query_range(a, call, params, err, errlen);
    if (strcmp(path, "/api/v1/series") == 0) {
        r->kind = READ_SERIES;
        return route_catalog(call, params, 1, err, errlen);
    }
    if (strcmp(path, "/api/v1/labels") == 0) {
        r->kind = READ_LABELS;
        return route_catalog(call, params, 0, err, errlen);
    }
    if (strncmp(path, "/api/v1/label/", 14) == 0)
        return route_values(call, path, params, err, errlen);
    if (strcmp(path, "/api/v1/metadata") == 0) {
        const char *metric = evhttp_find_header(params, "metric");
        r->kind = READ_METADATA;
        snprintf(r->label, sizeof r->label, "%s", metric ? metric : "");
        return 0;
    }
    if (strcmp(path, "/api/v1/status/buildinfo") == 0) {
        send_text(call->req, BUILDINFO);
        return 1;
    }
    if (strncmp(path, "/v1/series/", 11) == 0) {
        char *name = evhttp_uridecode(path + 11, 0, NULL);
        int rc = name ? route_native(a, call, name, params, err, errlen) : -1;
        if (!name)
            snprintf(err, errlen, "out of memory");
        free(name);
        return rc;
    }
    send_error(call->req, 404, "not_found", "unknown route");
    return 1;
}

static int allowed_method(const char *path, enum evhttp_cmd_type m)
{
    int post_too = strcmp(path, "/api/v1/query") == 0 || strcmp(path, "/api/v1/query_range") == 0 ||
                   strcmp(path, "/api/v1/series") == 0 || strcmp(path, "/api/v1/labels") == 0;
    return m == EVHTTP_REQ_GET || (post_too && m == EVHTTP_REQ_POST);
}

/* The raw text of a query_range request (its query string, and the body of
 * a form POST), which alone determines its answer (start, end and step are
 * required; nothing in it means "now"): the key of query_cache_read_raw().
 * NULL for any other request, or when it is long. */
static char *raw_key_of(struct evhttp_request *req, const char *path)
{
    if (strcmp(path, "/api/v1/query_range") != 0)
        return NULL;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t body_len = evbuffer_get_length(in), query_len = query ? strlen(query) : 0;
    int post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
    if (post) {
        const char *type =
            evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
        if (!type || strncasecmp(type, "application/x-www-form-urlencoded", 33) != 0)
            return NULL;
    }
    size_t len = sizeof "raw POST range?\n" + query_len + body_len;
    char *key = len <= READ_KEY_MAX ? malloc(len) : NULL;
    if (!key)
        return NULL;
    int n = snprintf(key, len, "raw %s range?%s\n", post ? "POST" : "GET", query ? query : "");
    evbuffer_copyout(in, key + n, body_len);
    key[n + body_len] = '\0';
    return key;
}

void prom_api_handle(prom_api *a, struct evhttp_request *req, const char *path)
{
    if (!allowed_method(path, evhttp_request_get_command(req))) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
                          strncmp(path, "/api/v1/query", 13) == 0 ||
                                  strcmp(path, "/api/v1/series") == 0 ||
                                  strcmp(path, "/api/v1/labels") == 0
                              ? "GET, POST"
                              : "GET");
        send_error(req, 405, "bad_data", "method not allowed on this route");
        return;
    }
    read_call *call = calloc(1, sizeof *call);
    if (!call) {
        send_error(req, 500, "internal", "out of memory");
        return;
    }
    call->req = req;
    call->api = a;
    char *raw_key = raw_key_of(req, path);
    if (raw_key) {
        a->inflight++;
        if (query_cache_read_raw(a->cache, raw_key, on_answer, call)) { /* frees call */
            free(raw_key);
            return;
        }
        a->inflight--;
    }
    struct evkeyvalq params;
    char err[512] = "";
    int rc = read_params(req, &params, err, sizeof err);
    if (rc == 0)
        rc = route(a, call, path, &params, err, sizeof err);
    evhttp_clear_headers(&params);
    int native = strncmp(path, "/v1/", 4) == 0;
    if (rc == 0) {
        call->read.raw_key = raw_key;
        dispatch(a, call);
        return;
    }
    free(raw_key);
    if (rc < 0 && native) {
        struct evbuffer *b = evbuffer_new();
        if (b) {
            query_exec_native_error_body(b, err);
            send_body(req, 400, b);
            evbuffer_free(b);
        }
    } else if (rc < 0) {
        send_error(req, 400, "bad_data", err);
    }
    read_request_clear(&call->read);
    free(call);
}
