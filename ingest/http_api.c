/*
 * http_api.c — see http_api.h. Routing only: each route's work is in its
 * own module (batch_pipeline.h for POST /v1/events, live_read.h for
 * /v1/counters, prom_api.h for the query routes); here are the checks every
 * request passes first (header count, authorization) and /healthz.
 */
#include "http_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "auth.h"
#include "batch_pipeline.h"
#include "http_guard.h"
#include "http_reply.h"
#include "listen_socket.h"
#include "metrics_route.h"
#include "log.h"

struct ingest_server {
    struct event_base *base;
    struct evhttp *http;
    const tally_config *cfg;
    kafka_writer *kafka;
    redis_router *redis;
    batch_pipeline *pipeline; /* POST /v1/events (batch_pipeline.h) */
    statsd_listeners *statsd; /* borrowed, for /healthz; NULL: none */
    live_read *live;          /* GET /v1/counters/NAME (live_read.h) */
    prom_api *reads;          /* the query routes (prom_api.h) */
    auth_table *auth;         /* NULL: ingest.tokens_file is empty, no authentication */
    http_guard *guard;        /* connection limits and deadlines */
    redis_info_poller *redis_info; /* the Redis figures of /metrics */
    prom_hist scrape_seconds;      /* /metrics' own cost */
};


/* ---- GET /healthz ------------------------------------------------------------ */

static void handle_healthz(ingest_server *s, struct evhttp_request *req)
{
    const char *redis_reason = "";
    int redis_up = redis_router_is_up(s->redis, &redis_reason);
    int kafka_up = kafka_writer_is_up(s->kafka);
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    /* 503 while a batch cannot be acknowledged, so a load balancer routes
     * around this instance; Redis down alone is "degraded" when fail-open */
    int draining = batch_pipeline_draining(s->pipeline);
    int can_ack = !draining && kafka_up && (redis_up || batch_pipeline_fail_open(s->pipeline));
    evbuffer_add_printf(b, "{\"status\":\"%s\",\"kafka\":\"%s\",\"redis\":\"%s\"",
                        draining    ? "draining"
                        : !can_ack  ? "unavailable"
                        : redis_up  ? "ok"
                                    : "degraded",
                        kafka_up ? "up" : "down", redis_up ? "up" : "down");
    if (!redis_up)
        http_json_add_string(b, 0, "redis_reason", redis_reason, strlen(redis_reason));
    const char *kafka_reason = kafka_writer_topic_problem(s->kafka);
    if (!kafka_up && *kafka_reason)
        http_json_add_string(b, 0, "kafka_reason", kafka_reason, strlen(kafka_reason));
    evbuffer_add_printf(b, ",\"inflight_batches\":%zu,\"connections\":%zu",
                        batch_pipeline_inflight(s->pipeline),
                        http_guard_connections(s->guard));
    if (s->reads)
        prom_api_health(s->reads, b);
    if (s->statsd)
        statsd_listeners_health(s->statsd, b);
    evbuffer_add(b, "}\n", 2);
    http_reply_json(req, can_ack ? 200 : 503, can_ack ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

/* ---- GET /metrics (metrics_route.h) --------------------------------------------- */

static void handle_metrics(ingest_server *s, struct evhttp_request *req)
{
    metrics_sources src = {s->kafka, s->redis, s->pipeline,
                           s->reads ? prom_api_cache(s->reads) : NULL, s->statsd,
                           s->redis_info, &s->scrape_seconds, http_guard_connections(s->guard)};
    metrics_route_handle(&src, req);
}

/* ---- routing ------------------------------------------------------------------ */

/* 405 naming the method the route takes (and in Allow). */
static void reply_wrong_method(struct evhttp_request *req, const char *allow, const char *route)
{
    char msg[128];
    snprintf(msg, sizeof msg, "%s takes %s only", route, allow);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    http_reply_error(req, 405, "Method Not Allowed", msg, NULL, 0);
}

static size_t header_count(struct evhttp_request *req)
{
    size_t n = 0;
    struct evkeyval *h;
    TAILQ_FOREACH(h, evhttp_request_get_input_headers(req), next)
        n++;
    return n;
}

/* Whether the request may use a route needing `scope`: 1, with *client the
 * token's client (NULL without tokens); else answers 401 (no or unknown
 * token, RFC 6750) or 403 (a token without the scope) and returns 0. */
static int authorize(ingest_server *s, struct evhttp_request *req, unsigned scope,
                     const char *route, const auth_client **client)
{
    *client = NULL;
    if (!s->auth)
        return 1;
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || evutil_ascii_strncasecmp(h, "Bearer ", 7) != 0) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"tally\"");
        http_reply_error(req, 401, "Unauthorized",
                    "authentication required: send Authorization: Bearer TOKEN", NULL, 0);
        return 0;
    }
    const char *token = h + 7;
    while (*token == ' ')
        token++;
    *client = auth_find(s->auth, token, strlen(token));
    if (!*client) {
        evhttp_add_header(out, "WWW-Authenticate", "Bearer realm=\"tally\", error=\"invalid_token\"");
        http_reply_error(req, 401, "Unauthorized", "unknown bearer token", NULL, 0);
        return 0;
    }
    if (!((*client)->scopes & scope)) {
        char msg[192];
        snprintf(msg, sizeof msg, "client %s may not use %s: its token lacks the %s scope",
                 (*client)->name, route, scope == AUTH_SCOPE_WRITE ? "write" : "read");
        http_reply_error(req, 403, "Forbidden", msg, NULL, 0);
        return 0;
    }
    return 1;
}

static void on_request(struct evhttp_request *req, void *arg)
{
    ingest_server *s = arg;
    http_guard_request_read(s->guard, req);
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    int reading = method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD;
    static const char counters[] = "/v1/counters/";
    if (header_count(req) > (size_t)s->cfg->ingest.max_header_count) {
        char msg[128];
        snprintf(msg, sizeof msg, "more than ingest.max_header_count (%d) header lines",
                 s->cfg->ingest.max_header_count);
        http_reply_error(req, 431, "Request Header Fields Too Large", msg, NULL, 0);
    } else if (!path) {
        http_reply_error(req, 400, "Bad Request", "malformed request URI", NULL, 0);
    } else if (strcmp(path, "/v1/events") == 0) {
        const auth_client *client;
        if (method != EVHTTP_REQ_POST)
            reply_wrong_method(req, "POST", "/v1/events");
        else if (authorize(s, req, AUTH_SCOPE_WRITE, "/v1/events", &client))
            batch_pipeline_post(s->pipeline, req, client);
    } else if (strncmp(path, counters, sizeof counters - 1) == 0) {
        const auth_client *client;
        if (!reading)
            reply_wrong_method(req, "GET, HEAD", "/v1/counters/NAME");
        else if (authorize(s, req, AUTH_SCOPE_READ, "/v1/counters/NAME", &client))
            live_read_handle(s->live, req, path + sizeof counters - 1, query);
    } else if (prom_api_owns(path)) {
        const auth_client *client;
        if (authorize(s, req, AUTH_SCOPE_READ, path, &client))
            prom_api_handle(s->reads, req, path);
    } else if (strcmp(path, "/healthz") == 0) {
        if (reading)
            handle_healthz(s, req);
        else
            reply_wrong_method(req, "GET, HEAD", "/healthz");
    } else if (strcmp(path, "/metrics") == 0) {
        if (reading)
            handle_metrics(s, req);
        else
            reply_wrong_method(req, "GET, HEAD", "/metrics");
    } else {
        http_reply_error(req, 404, "Not Found", "no such route", NULL, 0);
    }
}

/* Loads ingest.tokens_file (if any) and refuses a listener others can reach
 * without one, unless ingest.allow_unauthenticated says so. */
static int load_access(ingest_server *s, const tally_config *cfg, char *err, size_t errlen)
{
    if (cfg->ingest.tokens_file[0]) {
        s->auth = auth_load(cfg->ingest.tokens_file, err, errlen);
        if (!s->auth)
            return -1;
        log_info("authentication on: %zu tokens from %s", auth_count(s->auth),
                 cfg->ingest.tokens_file);
        return 0;
    }
    if (config_is_loopback(cfg->ingest.listen_address))
        return 0;
    if (!cfg->ingest.allow_unauthenticated) {
        snprintf(err, errlen,
                 "refusing to listen on %s without authentication: anyone who can reach it "
                 "could write and read every metric. Set ingest.tokens_file, or set "
                 "ingest.allow_unauthenticated = true to accept that",
                 cfg->ingest.listen_address);
        return -1;
    }
    log_warn("listening on %s without authentication (ingest.allow_unauthenticated)",
             cfg->ingest.listen_address);
    return 0;
}

/* Opens the HTTP listener (SO_REUSEPORT with ingest.reuse_port, so several
 * tally-ingest processes share the port) and hands it to evhttp, which owns it
 * from then on. The socket is created here rather than by
 * evhttp_bind_socket_with_handle, which has no SO_REUSEPORT option. */
static int listen_http(ingest_server *s, const tally_config *cfg, char *err, size_t errlen)
{
    char why[512];
    int flags = LISTEN_NONBLOCK | (cfg->ingest.reuse_port ? LISTEN_REUSE_PORT : 0);
    int fd = listen_socket_open(cfg->ingest.listen_address, cfg->ingest.listen_port, flags, 128, why,
                                sizeof why);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s%s", why,
                 cfg->ingest.reuse_port ? " (ingest.reuse_port: every process sharing the port must set it)" : "");
        return -1;
    }
    /* LEV_OPT_CLOSE_ON_FREE: the listener (and with it evhttp) owns fd from here */
    struct evconnlistener *l = evconnlistener_new(s->base, NULL, NULL,
                                                  LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!l) {
        snprintf(err, errlen, "cannot listen on %s:%d: libevent: cannot create the listener",
                 cfg->ingest.listen_address, cfg->ingest.listen_port);
        close(fd);
        return -1;
    }
    if (!evhttp_bind_listener(s->http, l)) {
        snprintf(err, errlen, "cannot listen on %s:%d: libevent: cannot attach the listener",
                 cfg->ingest.listen_address, cfg->ingest.listen_port);
        evconnlistener_free(l);
        return -1;
    }
    return 0;
}

ingest_server *ingest_server_new(struct event_base *base, const tally_config *cfg,
                                 kafka_writer *kafka, redis_router *redis, live_read *live,
                                 prom_api *reads, char *err, size_t errlen)
{
    ingest_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->base = base;
    s->cfg = cfg;
    s->kafka = kafka;
    s->redis = redis;
    s->live = live;
    s->reads = reads;
    if (load_access(s, cfg, err, errlen) != 0)
        goto fail;
    s->pipeline = batch_pipeline_new(base, cfg, kafka, redis, err, errlen);
    if (!s->pipeline)
        goto fail;
    query_cache *cache = reads ? prom_api_cache(reads) : NULL;
    s->redis_info = redis_info_poller_new(base, redis_router_seed(redis), cache ? query_cache_redis(cache) : NULL);
    if (!s->redis_info) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->http = evhttp_new(base);
    if (!s->http) {
        snprintf(err, errlen, "libevent: cannot create the HTTP server");
        goto fail;
    }
    s->guard = http_guard_new(base, s->http, cfg, err, errlen);
    if (!s->guard)
        goto fail;
    /* every method reaches on_request, which answers 405 in JSON (libevent
     * would answer a method it was not told about with its own HTML 501) */
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                            EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(s->http, on_request, s);
    if (listen_http(s, cfg, err, errlen) != 0)
        goto fail;
    return s;
fail:
    ingest_server_free(s);
    return NULL;
}

void ingest_server_drain(ingest_server *s)
{
    batch_pipeline_drain(s->pipeline);
}

size_t ingest_server_inflight(const ingest_server *s)
{
    return batch_pipeline_inflight(s->pipeline);
}

batch_pipeline *ingest_server_pipeline(ingest_server *s)
{
    return s->pipeline;
}

void ingest_server_show_statsd(ingest_server *s, statsd_listeners *l)
{
    s->statsd = l;
}

void ingest_server_free(ingest_server *s)
{
    if (!s)
        return;
    if (s->http)
        evhttp_free(s->http);
    http_guard_free(s->guard);
    redis_info_poller_free(s->redis_info);
    auth_free(s->auth);
    batch_pipeline_free(s->pipeline);
    free(s);
}
