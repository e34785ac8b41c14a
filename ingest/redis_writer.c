/*
 * redis_writer.c — see redis_writer.h.
 *
 * hiredis' async context runs on the shared libevent loop through hiredis'
 * own libevent adapter; this file only adds what hiredis 0.14 lacks:
 * reconnection with backoff, a per-call deadline (0.14 has no command
 * timeout), and the durability check on every connect.
 *
 * AUTH (redis.password_file, read once at start by redis_auth.h) is the
 * first command of every connection, and the checks are sent only once
 * Redis accepted it: pipelined behind a refused AUTH they would all fail
 * with NOAUTH and the reason logged would be theirs, not AUTH's. A refusal
 * (WRONGPASS, NOAUTH, a disabled user) is an outage like any other: Redis
 * is down with a reason naming AUTH, and reconnects back off as usual (the
 * operator may be fixing the ACL). A Redis that wants AUTH when none is
 * configured answers the first check NOAUTH, and is refused the same way.
 * The password is never logged.
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
#include <time.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "cache_keys.h"
#include "log.h"
#include "redis_auth.h"
#include "redis_keys.h"
#include "redis_replies.h"
#include "redis_slots.h"

enum { RECONNECT_MIN_MS = 100, RECONNECT_MAX_MS = 2000, FOLLOW_NODES_MAX = 16 };

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
    int stale_pending;   /* a batch was missed: SET tally:{S}:live:stale when possible */
    int stale_mark_sent; /* the SETs are on their way */
    unsigned shards;     /* redis.shards: the stale mark is set in each */
    unsigned stale_marks_due; /* marks not yet confirmed */
    unsigned stale_marks_set; /* of those confirmed, the ones set (not left to a rebuild) */
    int stale_mark_failed;
    time_t last_error_log;
    size_t errors_unlogged;
    char stale_reason[256];
    char down_reason[256];
    char host[CONFIG_STR_MAX];
    int port;
    int timeout_ms;
    int require_durable;
    char run_id[64];     /* of the Redis process connected last */
    unsigned restarts;   /* Redis restarts noticed (redis_writer_restarts) */
    unsigned accepts;    /* connections that passed the checks (redis_writer_accepts) */
    redis_auth auth;     /* AUTH sent first on every connection (if enabled) */
    int auth_refused;    /* this connection's AUTH (or lack of it) was refused */
    int cache_role;      /* the cache Redis (redis_writer_new_cache) */
    int cluster_node;    /* a master of a Redis Cluster (redis_writer_new_node) */
    /* cache.cluster: host:port is the master of the cache's slot, followed */
    int follow_slot;
    unsigned slot;       /* the cache's ({cache}) */
    redis_node tried[FOLLOW_NODES_MAX]; /* the seed, then the masters of the last map */
    size_t ntried, next_tried;
    unsigned moves;      /* times host:port changed (redis_writer_moves) */
};

typedef enum call_kind { CALL_APPLY, CALL_COMMAND } call_kind;

typedef struct redis_call {
    redis_writer *w;
    call_kind kind;
    int answered;
    struct event *deadline;
    void *opaque;
    /* CALL_APPLY: one reply per command of the group's transaction */
    size_t replies_expected, replies_seen;
    size_t group_size;
    const live_update *update; /* the caller's, valid until done is called */
    int verdict;     /* the guard's (live_guard_verdict) */
    size_t ndups;
    size_t *dups;    /* room for group_size */
    char why[256];
    union {
        redis_apply_fn apply;
        redis_reply_fn command;
    } done;
} redis_call;

static void schedule_reconnect(redis_writer *w);
static void check_done(redis_writer *w);
static void flush_stale_mark(redis_writer *w);
static void on_loading_reply(redisAsyncContext *ac, void *reply, void *privdata);
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg);
static int wants_auth(redis_writer *w, redisAsyncContext *ac, const redisReply *r);

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
        call->done.apply(call->opaque, LIVE_FAILED, NULL, 0, reason);
    else
        call->done.command(call->opaque, NULL, reason);
}

/* Logs a failed batch apply at most once a second (an outage fails many). */
static void log_apply_error(redis_writer *w, const char *reason)
{
    time_t now = time(NULL);
    if (now == w->last_error_log) {
        w->errors_unlogged++;
        return;
    }
    if (w->errors_unlogged)
        log_error("redis apply failed: %s (and %zu more failures in the last second)", reason,
                  w->errors_unlogged);
    else
        log_error("redis apply failed: %s", reason);
    w->last_error_log = now;
    w->errors_unlogged = 0;
}

static void call_free(redis_call *call)
{
    event_free(call->deadline);
    free(call->dups);
    free(call);
}

static void on_carry_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    (void)privdata;
    const redisReply *r = reply;
    if (!r || r->type == REDIS_REPLY_ERROR) /* (the field's next HINCRBY asks again) */
        log_warn("redis: carrying a large integer field failed: %s",
                 r ? r->str : "connection lost");
}

/* Moves the integer fields the group left near int64's range into their
 * ":frac" companions (live_update_carry); they go out before any later group. */
static void send_carries(redis_writer *w, const live_update *u, const redisReply *exec)
{
    live_update carry;
    char err[128];
    if (live_update_carry(u, exec, &carry, err, sizeof err) != 0) {
        log_warn("redis: %s", err);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < carry.commands; i++) {
        if (redisAsyncFormattedCommand(w->ac, on_carry_reply, NULL, carry.resp + start,
                                       carry.ends[i] - start) != REDIS_OK) {
            log_warn("redis: cannot send a carry");
            break;
        }
        start = carry.ends[i];
    }
    live_update_free(&carry);
}

/* The group's EXEC answered (or the connection went): tell the caller. */
static void answer_apply(redis_call *call, const redisReply *exec)
{
    int outcome = live_outcome(call->verdict, exec, call->why, sizeof call->why);
    if (outcome == LIVE_FAILED) {
        log_apply_error(call->w, call->why);
        answer_error(call, call->why);
        return;
    }
    if (outcome == LIVE_PARTIAL) {
        /* the dedup keys and most updates landed: the live view is now wrong
         * until a rebuild, and says so */
        log_apply_error(call->w, call->why);
        redis_writer_note_missed(call->w, call->why);
        answer_error(call, call->why);
        return;
    }
    call->answered = 1;
    if (outcome == LIVE_APPLIED)
        send_carries(call->w, call->update, exec);
    flush_stale_mark(call->w);
    call->done.apply(call->opaque, outcome, call->dups, call->ndups, NULL);
}

/* Every reply of a group's transaction comes here, in order: the guard's
 * gives the verdict, EXEC's (the last) the outcome; the rest are +OK/+QUEUED
 * (an error among them makes EXEC answer EXECABORT). */
static void on_apply_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_call *call = privdata;
    const redisReply *r = reply;
    size_t index = call->replies_seen++;
    if (index == LIVE_GUARD_REPLY)
        call->verdict = live_guard_verdict(r, call->group_size, call->dups, &call->ndups,
                                           call->why, sizeof call->why);
    if (index + 1 < call->replies_expected)
        return;
    if (!call->answered)
        answer_apply(call, r);
    call_free(call);
}

/* ---- cache.cluster: following the master of the cache's slot ----------------------- */

/* Uses host:port from the next connection on (the current one is left to
 * the caller). */
static void follow_to(redis_writer *w, const char *host, int port, const char *why)
{
    if (port == w->port && strcmp(host, w->host) == 0)
        return;
    char to[sizeof w->host]; /* (host may be w->host itself: a MOVED without one) */
    snprintf(to, sizeof to, "%s", host);
    log_info("cache redis: %s: now %s:%d (was %s:%d)", why, to, port, w->host, w->port);
    memcpy(w->host, to, sizeof w->host);
    w->port = port;
    w->moves++;
}

/* The connection failed: the next one tries the next node known (the seed,
 * then the masters of the last map), so a master that died is not waited for. */
static void follow_next_node(redis_writer *w)
{
    if (!w->follow_slot || w->ntried == 0)
        return;
    w->next_tried = (w->next_tried + 1) % w->ntried;
    follow_to(w, w->tried[w->next_tried].host, w->tried[w->next_tried].port, "connection failed");
}

/* Keeps the masters of map (after the seed) as the nodes to try next. */
static void note_masters(redis_writer *w, const redis_slot_map *map)
{
    w->ntried = 1;
    for (size_t i = 0; i < map->node_count && w->ntried < FOLLOW_NODES_MAX; i++)
        if (map->nodes[i].port != w->tried[0].port || strcmp(map->nodes[i].host, w->tried[0].host))
            w->tried[w->ntried++] = map->nodes[i];
    w->next_tried = 0;
}

/* Leaves this connection for one to host:port (down until it passed its checks). */
static void move_connection(redis_writer *w, redisAsyncContext *ac, const char *host, int port,
                            const char *why)
{
    follow_to(w, host, port, why);
    set_down(w, "moving to the master of the cache's slot (%s)", why);
    w->accepted = -1;
    w->reconnect_ms = RECONNECT_MIN_MS;
    redisAsyncDisconnect(ac); /* on_disconnect schedules the reconnect */
}

/* Reply to CLUSTER SLOTS, a check of a cache.cluster connection: this node
 * must be the master of the cache's slot, or the connection moves there. */
static void on_cache_slots_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w || wants_auth(w, ac, r))
        return;
    redis_slot_map map;
    char why[256];
    int owner = redis_slot_owner_from_reply(&map, r, w->host, w->slot, why, sizeof why);
    if (owner >= 0)
        note_masters(w, &map);
    if (owner < 0) {
        if (strcmp(w->down_reason, why) != 0)
            log_error("cache redis cluster %s:%d: %s", w->host, w->port, why);
        set_down(w, "%s", why);
        w->accepted = -1;
        redisAsyncDisconnect(ac);
    } else if (map.nodes[owner].port != w->port || strcmp(map.nodes[owner].host, w->host) != 0) {
        move_connection(w, ac, map.nodes[owner].host, map.nodes[owner].port,
                        "CLUSTER SLOTS names another master");
    } else {
        w->checks_pending--;
        check_done(w);
    }
    redis_slot_map_free(&map);
}

/* A MOVED answer on a cache.cluster connection: the slot went elsewhere for
 * good; this call failed (the read goes to SQLite), the next ones go there. */
static void follow_moved(redis_writer *w, const redisReply *r)
{
    redis_redirect rd;
    if (!w->follow_slot || r->type != REDIS_REPLY_ERROR || !w->ac ||
        redis_redirect_parse(r->str, r->len, &rd) != REDIS_REDIRECT_MOVED)
        return;
    move_connection(w, w->ac, redis_redirect_host(&rd, w->host), rd.port, "MOVED");
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redis_call *call = privdata;
    const redisReply *r = reply;
    if (!call->answered) {
        if (!r) {
            answer_error(call, "redis connection lost");
        } else {
            call->answered = 1;
            call->done.command(call->opaque, r, NULL);
        }
    }
    if (r)
        follow_moved(call->w, r);
    call_free(call);
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
    call->verdict = LIVE_FAILED;
    snprintf(call->why, sizeof call->why, "redis connection lost");
    return call;
}

static int check_usable(const redis_writer *w, char *err, size_t errlen)
{
    if (w->ac && w->connected && w->accepted == 1 && !w->shutting_down)
        return 0;
    snprintf(err, errlen, "redis unavailable: %s", w->down_reason);
    return -1;
}

static int send_call(redis_writer *w, redis_call *call, int argc, const char **argv,
                     const size_t *argvlen, char *err, size_t errlen)
{
    if (redisAsyncCommandArgv(w->ac, on_reply, call, argc, argv, argvlen) != REDIS_OK) {
        snprintf(err, errlen, "redis send failed: %s", w->ac->errstr[0] ? w->ac->errstr : "?");
        call_free(call);
        return -1;
    }
    return 0;
}

/* A new call on a usable connection, or NULL with err filled. */
static redis_call *start_call(redis_writer *w, call_kind kind, void *opaque, char *err,
                              size_t errlen)
{
    if (check_usable(w, err, errlen) != 0)
        return NULL;
    redis_call *call = call_new(w, kind, opaque);
    if (!call)
        snprintf(err, errlen, "out of memory");
    return call;
}

int redis_writer_apply(redis_writer *w, const live_update *u, size_t group_size,
                       redis_apply_fn done, void *opaque, char *err, size_t errlen)
{
    redis_call *call = start_call(w, CALL_APPLY, opaque, err, errlen);
    if (!call)
        return -1;
    call->done.apply = done;
    call->update = u;
    call->group_size = group_size;
    call->dups = calloc(group_size, sizeof *call->dups);
    if (!call->dups) {
        snprintf(err, errlen, "out of memory");
        call_free(call);
        return -1;
    }
    /* One hiredis callback per command, so hiredis matches every reply. */
    size_t start = 0;
    for (size_t i = 0; i < u->commands; i++) {
        if (redisAsyncFormattedCommand(w->ac, on_apply_reply, call, u->resp + start,
                                       u->ends[i] - start) != REDIS_OK) {
            snprintf(err, errlen, "redis send failed: %s",
                     w->ac->errstr[0] ? w->ac->errstr : "connection closing");
            if (i == 0) {
                call_free(call);
                return -1;
            }
            /* Part of the transaction is queued: the connection is unusable.
             * The callbacks already registered run (with NULL) as hiredis lets
             * go of it, and the last of them frees the call. */
            call->replies_expected = i;
            call->answered = 1;
            set_down(w, "%s", err);
            redisAsyncDisconnect(w->ac);
            return -1;
        }
        call->replies_expected = i + 1;
        start = u->ends[i];
    }
    return 0;
}

int redis_writer_command(redis_writer *w, int argc, const char **argv, const size_t *argvlen,
                         redis_reply_fn done, void *opaque, char *err, size_t errlen)
{
    redis_call *call = start_call(w, CALL_COMMAND, opaque, err, errlen);
    if (!call)
        return -1;
    call->done.command = done;
    return send_call(w, call, argc, argv, argvlen, err, errlen);
}

int redis_writer_formatted(redis_writer *w, const char *resp, size_t len, redis_reply_fn done,
                           void *opaque, char *err, size_t errlen)
{
    redis_call *call = start_call(w, CALL_COMMAND, opaque, err, errlen);
    if (!call)
        return -1;
    call->done.command = done;
    if (redisAsyncFormattedCommand(w->ac, on_reply, call, resp, len) != REDIS_OK) {
        snprintf(err, errlen, "redis send failed: %s", w->ac->errstr[0] ? w->ac->errstr : "?");
        call_free(call);
        return -1;
    }
    return 0;
}

static void on_stale_marked(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!w)
        return;
    if (!r || r->type != REDIS_REPLY_INTEGER)
        w->stale_mark_failed = 1;
    else
        w->stale_marks_set += r->integer == 1;
    if (w->stale_marks_due && --w->stale_marks_due)
        return;
    w->stale_mark_sent = 0;
    if (w->stale_mark_failed)
        return;
    w->stale_pending = 0;
    if (w->stale_marks_set)
        log_warn("live view marked stale (%s): run tally-flusher --rebuild-redis", w->stale_reason);
    else
        log_info("live view not marked stale (%s): the rebuild running now replays it",
                 w->stale_reason);
}

/* Marks every shard stale (live_stale_mark_script: not where a rebuild holds
 * the fence) if a missed batch is waiting to be recorded (retried on the next
 * apply or connection until Redis confirms it). */
static void flush_stale_mark(redis_writer *w)
{
    if (!w->stale_pending || w->stale_mark_sent || !w->ac || !w->connected || w->accepted != 1)
        return;
    w->stale_mark_failed = 0;
    w->stale_marks_due = 0;
    w->stale_marks_set = 0;
    for (unsigned shard = 0; shard < w->shards; shard++) {
        char fence[REDIS_KEY_MAX], key[REDIS_KEY_MAX];
        redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        redis_key_shard(key, sizeof key, shard, REDIS_SHARD_STALE);
        if (redisAsyncCommand(w->ac, on_stale_marked, NULL, "EVAL %s 2 %s %s %s",
                              live_stale_mark_script, fence, key, w->stale_reason) != REDIS_OK) {
            w->stale_mark_failed = 1;
            break;
        }
        w->stale_marks_due++;
    }
    w->stale_mark_sent = w->stale_marks_due > 0;
}

void redis_writer_note_missed(redis_writer *w, const char *reason)
{
    if (!w->stale_pending)
        snprintf(w->stale_reason, sizeof w->stale_reason, "%s", reason);
    w->stale_pending = 1;
    flush_stale_mark(w);
}

/* Refuses this connection because Redis refused its AUTH, or wants one:
 * Redis is down with `why` (which names AUTH) as the reason, and
 * on_disconnect reconnects with the usual backoff. Logged as an error once
 * per reason, not at every retry (on_disconnect notes each one). */
static void refuse_auth(redis_writer *w, redisAsyncContext *ac, const char *why)
{
    w->auth_refused = 1;
    w->accepted = -1;
    if (strcmp(w->down_reason, why) != 0)
        log_error("redis %s:%d: %s", w->host, w->port, why);
    set_down(w, "%s", why);
    redisAsyncDisconnect(ac);
}

/* True when a check's reply is NOAUTH (Redis wants AUTH; the connection is
 * then refused, see refuse_auth) or the connection was refused already:
 * either way the check itself has nothing to say. */
static int wants_auth(redis_writer *w, redisAsyncContext *ac, const redisReply *r)
{
    if (w->auth_refused)
        return 1;
    if (r->type != REDIS_REPLY_ERROR || strncmp(r->str, "NOAUTH", 6) != 0)
        return 0;
    char why[256];
    snprintf(why, sizeof why, "%s (%.100s)",
             w->auth.enabled ? "redis wants AUTH again after accepting it"
                             : "redis requires AUTH: set redis.password_file (and redis.username "
                               "for an ACL user)",
             r->str);
    refuse_auth(w, ac, why);
    return 1;
}

/* Reply to "CONFIG GET appendonly" / "CONFIG GET maxmemory-policy". */
static void on_config_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_writer *w = ac->data;
    const char *wanted = privdata;
    const redisReply *r = reply;
    if (!r || !w)
        return; /* connection went away; on_disconnect handles it */
    if (wants_auth(w, ac, r))
        return;
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
    } else if (w->require_durable) {
        /* (managed services often refuse CONFIG: say so instead of assuming) */
        char why[256];
        snprintf(why, sizeof why,
                 "cannot verify redis' %s (CONFIG GET refused: %s); set "
                 "redis.require_durable = false once you have checked appendonly yes and "
                 "maxmemory-policy noeviction yourself",
                 wanted[0] == 'y' ? "appendonly" : "maxmemory-policy",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        log_error("%s", why);
        set_down(w, "%s", why);
        w->accepted = -1;
    } else {
        log_warn("cannot verify redis persistence settings (CONFIG GET refused); continuing "
                 "because redis.require_durable = false");
    }
    check_done(w);
}

/* Accepts the connection once every check answered and none refused it. */
static void check_done(redis_writer *w)
{
    if (w->checks_pending == 0 && w->accepted == 0) {
        w->accepted = 1;
        w->accepts++;
        w->reconnect_ms = RECONNECT_MIN_MS;
        evtimer_del(w->connect_timer);
        log_info("redis %s:%d connected%s%.64s", w->host, w->port,
                 !w->auth.enabled ? "" : w->auth.username[0] ? ", AUTH as user " : ", AUTH",
                 w->auth.username);
        flush_stale_mark(w);
    }
}

/* Reply to "INFO persistence": a Redis still loading its AOF answers every
 * write with -LOADING, so it is not usable yet: reconnect shortly. */
static void on_loading_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w || wants_auth(w, ac, r))
        return;
    w->checks_pending--;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "LOADING", 7) == 0) {
        /* some versions refuse INFO while loading */
    } else if (r->type != REDIS_REPLY_STRING || !strstr(r->str, "loading:1")) {
        check_done(w);
        return;
    }
    set_down(w, "%s", "redis is loading its dataset");
    w->accepted = -1;
    w->reconnect_ms = RECONNECT_MIN_MS; /* (it is up, and soon usable: no backoff) */
    redisAsyncDisconnect(ac); /* on_disconnect schedules the reconnect */
}

/* Reply to "SET tally:live:run_id RUN_ID GET": the run_id of the Redis
 * process that held the live view before. Another one means Redis restarted
 * since (AOF everysec may have lost its last second of updates): the live
 * view is marked stale and the bounds cache must forget what it knew. */
static void on_run_id_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w || wants_auth(w, ac, r))
        return;
    w->checks_pending--;
    if (r->type == REDIS_REPLY_STRING && strcmp(r->str, w->run_id) != 0) {
        char why[160];
        snprintf(why, sizeof why, "redis restarted (run_id %.12s... was %.12s...): it may have "
                 "lost its last second of updates", w->run_id, r->str);
        log_warn("%s", why);
        w->restarts++;
        redis_writer_note_missed(w, why);
    } else if (r->type == REDIS_REPLY_ERROR) {
        log_warn("redis: cannot record its run_id: %s", r->str);
    }
    check_done(w);
}

/* Reply to "INFO server": takes the run_id, then records it (above). */
static void on_server_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w || wants_auth(w, ac, r))
        return;
    if (r->type != REDIS_REPLY_STRING ||
        redis_info_run_id(r->str, w->run_id, sizeof w->run_id) != 0) {
        w->checks_pending--;
        log_warn("redis: no run_id in INFO server; a restart of Redis will not be noticed");
        check_done(w);
        return;
    }
    if (w->cluster_node) { /* (the router records it, per shard) */
        w->checks_pending--;
        check_done(w);
        return;
    }
    /* (checks_pending still counts this check: the SET's reply ends it) */
    if (redisAsyncCommand(ac, on_run_id_reply, NULL, "SET %s %s GET", REDIS_KEY_RUN_ID,
                          w->run_id) != REDIS_OK) {
        w->checks_pending--;
        check_done(w);
    }
}

/* Reply to "CONFIG GET maxmemory-policy" on the cache Redis: it must evict
 * (allkeys-*), or it is not a cache (design rule 6: a state Redis with
 * noeviction must never be filled with answers). */
static void on_cache_policy_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w || wants_auth(w, ac, r))
        return;
    w->checks_pending--;
    const char *policy = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str
                             ? r->element[1]->str
                             : NULL;
    if (policy && strncmp(policy, "allkeys-", 8) == 0) {
        check_done(w);
        return;
    }
    char why[200];
    snprintf(why, sizeof why, "cache redis has maxmemory-policy %.40s; a cache needs an allkeys-* "
             "policy (allkeys-lru), so that answers are evicted, never state",
             policy ? policy : "(CONFIG GET refused)");
    if (strcmp(w->down_reason, why) != 0)
        log_error("redis %s:%d: %s", w->host, w->port, why);
    set_down(w, "%s", why);
    w->accepted = -1;
    redisAsyncDisconnect(ac);
}

/* The checks of a new connection (each reply counted in checks_pending);
 * check_done accepts the connection when the last one passed. */
static void send_checks(redis_writer *w, redisAsyncContext *ac)
{
    if (w->cache_role) {
        if (redisAsyncCommand(ac, on_cache_policy_reply, NULL, "CONFIG GET maxmemory-policy") !=
                REDIS_OK ||
            (w->follow_slot &&
             redisAsyncCommand(ac, on_cache_slots_reply, NULL, "CLUSTER SLOTS") != REDIS_OK))
            set_down(w, "%s", "cannot send the eviction policy check");
        return;
    }
    if (redisAsyncCommand(ac, on_loading_reply, NULL, "INFO persistence") != REDIS_OK ||
        redisAsyncCommand(ac, on_server_reply, NULL, "INFO server") != REDIS_OK ||
        redisAsyncCommand(ac, on_config_reply, "yes", "CONFIG GET appendonly") != REDIS_OK ||
        redisAsyncCommand(ac, on_config_reply, "noeviction", "CONFIG GET maxmemory-policy") !=
            REDIS_OK) {
        set_down(w, "%s", "cannot send the persistence check");
    }
}

/* Reply to AUTH, the first command of a connection: the checks follow only
 * once Redis accepted it. */
static void on_auth_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    redis_writer *w = ac->data;
    const redisReply *r = reply;
    if (!r || !w)
        return; /* connection went away; on_disconnect handles it */
    if (r->type == REDIS_REPLY_STATUS) {
        send_checks(w, ac);
        return;
    }
    char why[256];
    snprintf(why, sizeof why, "AUTH%s%.64s refused by redis: %.150s",
             w->auth.username[0] ? " as user " : "", w->auth.username,
             r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    refuse_auth(w, ac, why);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_writer *w = ac->data;
    if (status != REDIS_OK) {
        set_down(w, "cannot connect: %s", ac->errstr);
        log_warn("redis %s:%d: %s", w->host, w->port, ac->errstr);
        w->ac = NULL; /* hiredis frees the context after this callback */
        evtimer_del(w->connect_timer);
        follow_next_node(w);
        schedule_reconnect(w);
        return;
    }
    w->connected = 1; /* connect_timer stays armed until the check passes */
    w->accepted = 0;
    w->auth_refused = 0;
    w->checks_pending = !w->cache_role ? 4 : w->follow_slot ? 2 : 1;
    w->stale_mark_sent = 0;
    w->stale_marks_due = 0;
    redisAsyncContext *mut = (redisAsyncContext *)ac;
    const char *argv[3];
    size_t argvlen[3];
    int argc = redis_auth_argv(&w->auth, argv, argvlen);
    if (argc == 0)
        send_checks(w, mut);
    else if (redisAsyncCommandArgv(mut, on_auth_reply, NULL, argc, argv, argvlen) != REDIS_OK)
        set_down(w, "%s", "cannot send AUTH");
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
    evtimer_del(w->connect_timer);
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
    ac->c.reader->fn = &redis_lean_replies; /* (redis_replies.h) */
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

/* Connecting plus the persistence check took longer than redis.timeout_ms:
 * give up on this connection and try again later. */
static void on_connect_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_writer *w = arg;
    if (!w->ac || w->accepted == 1)
        return;
    set_down(w, "%s", w->connected ? "persistence check timed out" : "connect timed out");
    log_warn("redis %s:%d: %s", w->host, w->port, w->down_reason);
    redisAsyncContext *ac = w->ac;
    int was_connected = w->connected;
    follow_next_node(w);
    redisAsyncFree(ac); /* a connected context runs on_disconnect, which reconnects */
    if (!was_connected) {
        w->ac = NULL;
        schedule_reconnect(w);
    }
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

/* Connects to host:port: the state Redis, or the cache (cache_role). */
static redis_writer *writer_new(struct event_base *base, const tally_config *cfg, int cache_role,
                                const char *node_host, int node_port, char *err, size_t errlen)
{
    redis_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->base = base;
    w->cache_role = cache_role;
    snprintf(w->host, sizeof w->host, "%s",
             node_host ? node_host : cache_role ? cfg->cache.host : cfg->redis.host);
    w->port = node_host ? node_port : cache_role ? cfg->cache.port : cfg->redis.port;
    w->cluster_node = node_host != NULL;
    w->timeout_ms = cache_role ? cfg->cache.timeout_ms : cfg->redis.timeout_ms;
    w->require_durable = cfg->redis.require_durable;
    w->shards = w->cluster_node ? 0 : (unsigned)cfg->redis.shards; /* (a node marks none) */
    if (!cache_role &&
        redis_auth_load(&w->auth, cfg->redis.username, cfg->redis.password_file, err, errlen) !=
            0) {
        free(w);
        return NULL;
    }
    w->follow_slot = cache_role && cfg->cache.cluster;
    w->slot = redis_slot(CACHE_KEY_GEN, strlen(CACHE_KEY_GEN));
    snprintf(w->tried[0].host, sizeof w->tried[0].host, "%s", w->host);
    w->tried[0].port = w->port;
    w->ntried = 1;
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
        redis_auth_clear(&w->auth);
        free(w);
        return NULL;
    }
    connect_now(w);
    return w;
}

redis_writer *redis_writer_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen)
{
    return writer_new(base, cfg, 0, NULL, 0, err, errlen);
}

redis_writer *redis_writer_new_node(struct event_base *base, const tally_config *cfg,
                                    const char *host, int port, char *err, size_t errlen)
{
    return writer_new(base, cfg, 0, host, port, err, errlen);
}

redis_writer *redis_writer_new_cache(struct event_base *base, const tally_config *cfg, char *err,
                                     size_t errlen)
{
    return writer_new(base, cfg, 1, NULL, 0, err, errlen);
}

unsigned redis_writer_restarts(const redis_writer *w)
{
    return w->restarts;
}

unsigned redis_writer_accepts(const redis_writer *w)
{
    return w->accepts;
}

const char *redis_writer_run_id(const redis_writer *w)
{
    return w->run_id;
}

unsigned redis_writer_address(const redis_writer *w, const char **host, int *port)
{
    *host = w->host;
    *port = w->port;
    return w->moves;
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
    if (w->stale_pending)
        log_error("stopping before the live view could be marked stale (%s): it lacks batches "
                  "Kafka holds; run tally-flusher --rebuild-redis",
                  w->stale_reason);
    w->shutting_down = 1;
    if (w->ac)
        redisAsyncFree(w->ac);
    event_free(w->reconnect_timer);
    event_free(w->connect_timer);
    redis_auth_clear(&w->auth);
    free(w);
}
