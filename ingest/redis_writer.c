/*
 * redis_writer.c — see redis_writer.h.
 *
 * hiredis' async context runs on the shared libevent loop through hiredis'
 * own libevent adapter; this file only adds what hiredis 0.14 lacks:
 * reconnection with backoff, a per-call deadline (0.14 has no command
 * timeout), and the durability check on every connect.
 *
 * Call lifetime: each call gets a `redis_call` that hiredis hands back to
 * on_reply exactly once (with a NULL reply when the connection is freed).
 * A deadline timer may answer the caller first; the call then stays allocated,
 * marked answered, until hiredis returns it, so no callback ever sees freed
 * memory. A deadline also frees the connection: every pending call is then
 * answered with an error and the writer reconnects.
 */
#include "redis_writer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "log.h"

enum { RECONNECT_MIN_MS = 100, RECONNECT_MAX_MS = 2000 };

struct redis_writer {
    struct event_base *base;
    redisAsyncContext *ac;
    struct event *reconnect_timer;
    struct event *connect_timer; /* hiredis 0.14 has no connect timeout */
    int reconnect_ms;
    int connected;       /* TCP connection established */
    int accepted;        /* durability check passed (or not required) */
    int checks_pending;  /* CONFIG GET replies still expected */
    int shutting_down;
    char down_reason[256];
    char host[CONFIG_STR_MAX];
    int port;
    int timeout_ms;
    int require_durable;
};

typedef enum call_kind { CALL_APPLY, CALL_READ_HASH } call_kind;

typedef struct redis_call {
    redis_writer *w;
    call_kind kind;
    int answered;
    struct event *deadline;
    void *opaque;
    union {
        redis_apply_fn apply;
        redis_hash_fn read_hash;
    } done;
} redis_call;

static void schedule_reconnect(redis_writer *w);
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg);

static void set_down(redis_writer *w, const char *fmt, const char *detail)
{
    snprintf(w->down_reason, sizeof w->down_reason, fmt, detail ? detail : "");
}

static void answer_error(redis_call *call, const char *reason)
{
    if (call->answered)
        return;
    call->answered = 1;
    if (call->kind == CALL_APPLY)
        call->done.apply(call->opaque, -1, reason);
    else
        call->done.read_hash(call->opaque, 0, NULL, 0, reason);
}

static void answer_apply(redis_call *call, const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER && (r->integer == 0 || r->integer == 1)) {
        call->answered = 1;
        call->done.apply(call->opaque, (int)r->integer, NULL);
    } else if (r->type == REDIS_REPLY_ERROR) {
        log_error("redis apply failed: %s", r->str);
        answer_error(call, r->str);
    } else {
        answer_error(call, "unexpected reply to the batch script");
    }
}

static void answer_hash(redis_call *call, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        answer_error(call, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply to HGETALL");
        return;
    }
    size_t n = r->elements / 2;
    redis_series *series = calloc(n ? n : 1, sizeof *series);
    if (!series) {
        answer_error(call, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const redisReply *field = r->element[2 * i], *value = r->element[2 * i + 1];
        char *end = NULL;
        series[i].tags = field->str;
        series[i].tags_len = field->len;
        series[i].value = value->str ? strtod(value->str, &end) : 0;
        if (!value->str || end == value->str) {
            free(series);
            answer_error(call, "non-numeric value in a Tally hash");
            return;
        }
    }
    call->answered = 1;
    call->done.read_hash(call->opaque, 1, series, n, NULL);
    free(series);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_call *call = privdata;
    const redisReply *r = reply;
    if (!call->answered) {
        if (!r)
            answer_error(call, "redis connection lost");
        else if (call->kind == CALL_APPLY)
            answer_apply(call, r);
        else
            answer_hash(call, r);
    }
    event_free(call->deadline);
    free(call);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_call *call = arg;
    redis_writer *w = call->w;
    char reason[64];
    snprintf(reason, sizeof reason, "redis did not answer within %d ms", w->timeout_ms);
    log_warn("%s; resetting the connection", reason);
    answer_error(call, reason);
    redisAsyncContext *ac = w->ac;
    if (ac) {
        set_down(w, "%s", reason);
        redisAsyncFree(ac); /* answers every pending call (this one included) */
        if (w->ac == ac) {  /* on_disconnect did not run: not fully connected yet */
            w->ac = NULL;
            w->connected = 0;
            w->accepted = 0;
            schedule_reconnect(w);
        }
    }
}

static redis_call *call_new(redis_writer *w, call_kind kind, void *opaque)
{
    redis_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->w = w;
    call->kind = kind;
    call->opaque = opaque;
    call->deadline = evtimer_new(w->base, on_deadline, call);
    struct timeval tv = {w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000};
    if (!call->deadline || evtimer_add(call->deadline, &tv) != 0) {
        if (call->deadline)
            event_free(call->deadline);
        free(call);
        return NULL;
    }
    return call;
}

static int check_usable(const redis_writer *w, char *err, size_t errlen)
{
    if (w->ac && w->connected && w->accepted == 1)
        return 0;
    snprintf(err, errlen, "redis unavailable: %s", w->down_reason);
    return -1;
}

static int send_call(redis_writer *w, redis_call *call, int argc, const char **argv,
                     const size_t *argvlen, char *err, size_t errlen)
{
    if (redisAsyncCommandArgv(w->ac, on_reply, call, argc, argv, argvlen) != REDIS_OK) {
        snprintf(err, errlen, "redis send failed: %s", w->ac->errstr[0] ? w->ac->errstr : "?");
        event_free(call->deadline);
        free(call);
        return -1;
    }
    return 0;
}

int redis_writer_apply(redis_writer *w, const live_update *u, redis_apply_fn done, void *opaque,
                       char *err, size_t errlen)
{
    if (check_usable(w, err, errlen) != 0)
        return -1;
    redis_call *call = call_new(w, CALL_APPLY, opaque);
    if (!call) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    call->done.apply = done;
    return send_call(w, call, u->argc, (const char **)u->argv, u->argvlen, err, errlen);
}

int redis_writer_read_hash(redis_writer *w, const char *key, redis_hash_fn done, void *opaque,
                           char *err, size_t errlen)
{
    if (check_usable(w, err, errlen) != 0)
        return -1;
    redis_call *call = call_new(w, CALL_READ_HASH, opaque);
    if (!call) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    call->done.read_hash = done;
    const char *argv[] = {"HGETALL", key};
    size_t argvlen[] = {7, strlen(key)};
    return send_call(w, call, 2, argv, argvlen, err, errlen);
}

/* Reply to "CONFIG GET appendonly" / "CONFIG GET maxmemory-policy". */
static void on_config_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_writer *w = ac->data;
    const char *wanted = privdata;
    const redisReply *r = reply;
    if (!r || !w)
        return; /* connection went away; on_disconnect handles it */
    w->checks_pending--;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str) {
        const char *key = r->element[0]->str, *value = r->element[1]->str;
        if (strcmp(value, wanted) != 0) {
            char why[160];
            snprintf(why, sizeof why, "redis has %s=%s, Tally needs %s=%s", key, value, key, wanted);
            if (w->require_durable) {
                log_error("%s (redis.require_durable = true): refusing to use it", why);
                set_down(w, "%s", why);
                w->accepted = -1;
            } else {
                log_warn("%s; continuing because redis.require_durable = false", why);
            }
        }
    } else {
        log_warn("cannot verify redis persistence settings (CONFIG GET refused); continuing");
    }
    if (w->checks_pending == 0 && w->accepted == 0) {
        w->accepted = 1;
        w->reconnect_ms = RECONNECT_MIN_MS;
        log_info("redis %s:%d connected", w->host, w->port);
    }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_writer *w = ac->data;
    if (status != REDIS_OK) {
        set_down(w, "cannot connect: %s", ac->errstr);
        log_warn("redis %s:%d: %s", w->host, w->port, ac->errstr);
        w->ac = NULL; /* hiredis frees the context after this callback */
        evtimer_del(w->connect_timer);
        schedule_reconnect(w);
        return;
    }
    evtimer_del(w->connect_timer);
    w->connected = 1;
    w->accepted = 0;
    w->checks_pending = 2;
    redisAsyncContext *mut = (redisAsyncContext *)ac;
    if (redisAsyncCommand(mut, on_config_reply, "yes", "CONFIG GET appendonly") != REDIS_OK ||
        redisAsyncCommand(mut, on_config_reply, "noeviction", "CONFIG GET maxmemory-policy") !=
            REDIS_OK) {
        set_down(w, "%s", "cannot send the persistence check");
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_writer *w = ac->data;
    if (status != REDIS_OK)
        set_down(w, "connection lost: %s", ac->errstr);
    if (w->connected)
        log_warn("redis %s:%d disconnected: %s", w->host, w->port, w->down_reason);
    w->ac = NULL;
    w->connected = 0;
    w->accepted = 0;
    if (!w->shutting_down)
        schedule_reconnect(w);
}

static void connect_now(redis_writer *w)
{
    redisAsyncContext *ac = redisAsyncConnect(w->host, w->port);
    if (!ac || ac->err) {
        set_down(w, "cannot connect: %s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_reconnect(w);
        return;
    }
    ac->data = w;
    if (redisLibeventAttach(ac, w->base) != REDIS_OK) {
        set_down(w, "%s", "cannot attach redis to the event loop");
        redisAsyncFree(ac);
        schedule_reconnect(w);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    w->ac = ac;
    struct timeval tv = {w->timeout_ms / 1000, (w->timeout_ms % 1000) * 1000};
    if (evtimer_add(w->connect_timer, &tv) != 0)
        log_error("cannot arm the redis connect timeout");
}

/* The TCP connect did not finish within redis.timeout_ms: give up on it. */
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_writer *w = arg;
    if (!w->ac || w->connected)
        return;
    set_down(w, "connect timed out after %s ms", "redis.timeout_ms");
    log_warn("redis %s:%d: connect timed out", w->host, w->port);
    redisAsyncContext *ac = w->ac;
    w->ac = NULL;
    redisAsyncFree(ac); /* not connected: no disconnect callback runs */
    schedule_reconnect(w);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

static void schedule_reconnect(redis_writer *w)
{
    struct timeval tv = {w->reconnect_ms / 1000, (w->reconnect_ms % 1000) * 1000};
    if (evtimer_add(w->reconnect_timer, &tv) != 0)
        log_error("cannot schedule the redis reconnect");
    w->reconnect_ms = w->reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : w->reconnect_ms * 2;
}

redis_writer *redis_writer_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen)
{
    redis_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->base = base;
    snprintf(w->host, sizeof w->host, "%s", cfg->redis.host);
    w->port = cfg->redis.port;
    w->timeout_ms = cfg->redis.timeout_ms;
    w->require_durable = cfg->redis.require_durable;
    w->reconnect_ms = RECONNECT_MIN_MS;
    set_down(w, "%s", "not connected yet");
    w->reconnect_timer = evtimer_new(base, on_reconnect_timer, w);
    w->connect_timer = evtimer_new(base, on_connect_timeout, w);
    if (!w->reconnect_timer || !w->connect_timer) {
        snprintf(err, errlen, "libevent: cannot create a timer");
        if (w->reconnect_timer)
            event_free(w->reconnect_timer);
        if (w->connect_timer)
            event_free(w->connect_timer);
        free(w);
        return NULL;
    }
    connect_now(w);
    return w;
}

int redis_writer_is_up(const redis_writer *w, const char **reason)
{
    int up = w->ac && w->connected && w->accepted == 1;
    if (reason)
        *reason = up ? "" : w->down_reason;
    return up;
}

void redis_writer_free(redis_writer *w)
{
    if (!w)
        return;
    w->shutting_down = 1;
    if (w->ac)
        redisAsyncFree(w->ac);
    event_free(w->reconnect_timer);
    event_free(w->connect_timer);
    free(w);
}
