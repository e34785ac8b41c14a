/*
 * redis_router.c — see redis_router.h.
 *
 * A call in a cluster is a router_call: what to send (a live_update, or one
 * RESP-encoded command copied at the first send) and whom to answer. Each
 * attempt goes to the writer of the slot's master; its answer either ends
 * the call (the caller's callback, exactly once) or, when the call was
 * refused for where it went, sends it again now (MOVED) or after a pause.
 * Paused calls are on a list so that redis_router_free() can answer them.
 */
#include "redis_router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "clock.h"
#include "log.h"
#include "redis_keys.h"
#include "redis_slots.h"

enum {
    NODES_MAX = 64,  /* masters (and former masters) a router keeps writers for */
    TICK_MS = 200,   /* how often a wanted slot map is asked for */
    PAUSE_MS = 25,   /* before sending a refused call again */
};

typedef struct router_node {
    char host[REDIS_HOST_MAX];
    int port;
    redis_writer *w;
    double short_until; /* fewer replicas than wanted answered WAIT: none asked till then */
} router_node;

typedef struct router_call router_call;

struct redis_router {
    struct event_base *base;
    const tally_config *cfg;
    int cluster;
    router_node nodes[NODES_MAX]; /* nodes[0]: the seed, redis.host:port */
    size_t nnodes;
    redis_slot_map map;
    int have_map;
    int want_map;  /* ask for CLUSTER SLOTS at the next tick */
    int asking;    /* a CLUSTER SLOTS is on its way */
    size_t asked;  /* to nodes[asked] */
    int closing;
    struct event *tick;
    char reason[640];
    router_call *paused; /* calls waiting for their pause to end */
    char (*run_ids)[64];  /* per shard: the run_id of its master recorded last ("" none) */
    unsigned char *asking_run_id; /* per shard: its record is on its way */
    unsigned restarts;    /* shards whose master was another process than before */
    /* stale marks (redis_router_note_missed): per shard, retried every tick
     * until its master confirms it */
    struct stale_mark {
        redis_router *r;
        unsigned shard;
        unsigned char due, sent;
    } *stale;
    size_t stale_due;     /* shards whose mark is due */
    char stale_reason[256];
};

struct router_call {
    redis_router *r;
    unsigned slot;
    int is_apply;
    const live_update *u; /* apply: the caller's */
    size_t group_size;
    redis_apply_fn apply_done;
    char *resp;           /* command: owned */
    size_t resp_len;
    redis_reply_fn reply_done;
    void *opaque;
    double first_ms;
    struct event *pause;
    router_call *prev, *next; /* in r->paused */
    /* the current attempt of an apply */
    int due;              /* answers still to come: the transaction's, WAIT's */
    router_node *node;    /* where it went */
    int result;
    size_t *dups, ndups;
    char why[256];
    long long replicas;   /* WAIT's answer, -1 none */
};

/* ---- nodes and the slot map -------------------------------------------------------- */

static router_node *node_at(redis_router *r, const char *host, int port)
{
    for (size_t i = 0; i < r->nnodes; i++)
        if (r->nodes[i].port == port && strcmp(r->nodes[i].host, host) == 0)
            return &r->nodes[i];
    if (r->nnodes == NODES_MAX)
        return NULL;
    char err[256];
    redis_writer *w = redis_writer_new_node(r->base, r->cfg, host, port, err, sizeof err);
    if (!w) {
        log_error("redis cluster node %s:%d: %s", host, port, err);
        return NULL;
    }
    router_node *n = &r->nodes[r->nnodes++];
    snprintf(n->host, sizeof n->host, "%s", host);
    n->port = port;
    n->w = w;
    return n;
}

/* The slot's master, or NULL (no map, a hole). */
static router_node *slot_node(redis_router *r, unsigned slot)
{
    if (!r->cluster)
        return &r->nodes[0];
    int idx = r->have_map ? redis_slot_map_node(&r->map, slot) : -1;
    return idx < 0 ? NULL : node_at(r, r->map.nodes[idx].host, r->map.nodes[idx].port);
}

/* CLUSTER SLOTS answered: the new map replaces the old one. */
static void on_slots(void *opaque, const redisReply *reply, const char *reason)
{
    redis_router *r = opaque;
    r->asking = 0;
    if (r->closing)
        return;
    char err[256];
    redis_slot_map fresh;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        snprintf(r->reason, sizeof r->reason, "CLUSTER SLOTS to %s:%d failed: %s",
                 r->nodes[r->asked].host, r->nodes[r->asked].port, reply ? reply->str : reason);
        r->asked = (r->asked + 1) % r->nnodes; /* ask another node next time */
        return;
    }
    if (redis_slot_map_from_reply(&fresh, reply, r->nodes[r->asked].host, err, sizeof err) != 0) {
        snprintf(r->reason, sizeof r->reason, "CLUSTER SLOTS of %s:%d: %s",
                 r->nodes[r->asked].host, r->nodes[r->asked].port, err);
        redis_slot_map_free(&fresh);
        return;
    }
    char holes[128];
    size_t unserved = redis_slot_map_holes(&fresh, holes, sizeof holes);
    if (!r->have_map || unserved)
        log_info("redis cluster: %zu masters%s%s", fresh.node_count,
                 unserved ? ", slots without a master: " : "", unserved ? holes : "");
    redis_slot_map_free(&r->map);
    r->map = fresh;
    r->have_map = 1;
    r->want_map = unserved > 0;
    for (size_t i = 0; i < r->map.node_count; i++) /* (writers connect ahead of the calls) */
        node_at(r, r->map.nodes[i].host, r->map.nodes[i].port);
}

/* Asks a node that is up (the one after the last that failed) for the map. */
static void ask_map(redis_router *r)
{
    if (r->asking || r->closing)
        return;
    for (size_t k = 0; k < r->nnodes; k++) {
        size_t i = (r->asked + k) % r->nnodes;
        if (!redis_writer_is_up(r->nodes[i].w, NULL))
            continue;
        const char *argv[] = {"CLUSTER", "SLOTS"};
        size_t argvlen[] = {7, 5};
        char err[256];
        r->asked = i;
        if (redis_writer_command(r->nodes[i].w, 2, argv, argvlen, on_slots, r, err, sizeof err) ==
            0) {
            r->asking = 1;
            r->want_map = 0;
            return;
        }
    }
    snprintf(r->reason, sizeof r->reason, "no redis cluster node is up to ask for the slot map");
}

/* ---- restarts: each shard's master's run_id ------------------------------------------ */

typedef struct run_id_check {
    redis_router *r;
    unsigned shard;
    char run_id[64];
} run_id_check;

/* Reply to "SET tally:{S}:live:run_id RUN_ID GET": another run_id before means
 * the shard's master is another process than the one the live view was
 * written to (a restart, which may have lost its last second of AOF, or a
 * failover): the live view is marked stale, as redis_writer does for one
 * server. */
static void on_run_id_recorded(void *opaque, const redisReply *reply, const char *reason)
{
    (void)reason;
    run_id_check *k = opaque;
    redis_router *r = k->r;
    r->asking_run_id[k->shard] = 0;
    if (reply && reply->type != REDIS_REPLY_ERROR && !r->closing) {
        if (reply->type == REDIS_REPLY_STRING && strcmp(reply->str, k->run_id) != 0) {
            char why[200];
            snprintf(why, sizeof why, "the redis master of shard %u is another process than "
                     "before (run_id %.12s... was %.12s...): it may lack recent updates",
                     k->shard, k->run_id, reply->str);
            r->restarts++;
            redis_router_note_missed(r, why);
        }
        snprintf(r->run_ids[k->shard], sizeof r->run_ids[k->shard], "%s", k->run_id);
    }
    free(k);
}

/* Records, for every shard whose master's run_id is not the one recorded
 * last, the new one (asked of that master, where the key lives). */
static void check_run_ids(redis_router *r)
{
    for (unsigned shard = 0; shard < (unsigned)r->cfg->redis.shards; shard++) {
        router_node *n = slot_node(r, redis_shard_slot(shard));
        if (!n || r->asking_run_id[shard] || !redis_writer_is_up(n->w, NULL))
            continue;
        const char *id = redis_writer_run_id(n->w);
        if (!id[0] || strcmp(id, r->run_ids[shard]) == 0)
            continue;
        run_id_check *k = malloc(sizeof *k);
        if (!k)
            return;
        *k = (run_id_check){.r = r, .shard = shard};
        snprintf(k->run_id, sizeof k->run_id, "%s", id);
        char key[REDIS_KEY_MAX], err[256];
        int kl = redis_key_shard(key, sizeof key, shard, REDIS_SHARD_RUN_ID);
        const char *argv[] = {"SET", key, k->run_id, "GET"};
        size_t argvlen[] = {3, (size_t)kl, strlen(k->run_id), 3};
        if (redis_writer_command(n->w, 4, argv, argvlen, on_run_id_recorded, k, err, sizeof err) != 0)
            free(k);
        else
            r->asking_run_id[shard] = 1;
    }
}

static void send_stale_marks(redis_router *r);

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_router *r = arg;
    if (r->want_map || !r->have_map)
        ask_map(r);
    if (r->have_map)
        check_run_ids(r);
    if (r->stale_due)
        send_stale_marks(r);
}

/* ---- calls ------------------------------------------------------------------------ */

static void call_unpause(router_call *c)
{
    redis_router *r = c->r;
    if (c->prev)
        c->prev->next = c->next;
    else if (r->paused == c)
        r->paused = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void call_free(router_call *c)
{
    call_unpause(c);
    if (c->pause)
        event_free(c->pause);
    free(c->resp);
    free(c->dups);
    free(c);
}

/* Answers the caller with a failure and frees the call. */
static void call_fail(router_call *c, const char *why)
{
    if (c->is_apply)
        c->apply_done(c->opaque, LIVE_FAILED, NULL, 0, why);
    else
        c->reply_done(c->opaque, NULL, why);
    call_free(c);
}

/* Whether an answer says the call went to the wrong place, or to a master
 * that is gone: nothing of it was applied (or a resend meets its own dedup
 * keys), so it is sent again. */
static int refused_for_routing(const char *why)
{
    static const char *const prefixes[] = {"MOVED ", "ASK ", "TRYAGAIN", "CLUSTERDOWN",
                                           "redis connection lost", "redis did not answer",
                                           "LOADING", "READONLY", "MASTERDOWN"};
    for (size_t i = 0; why && i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(why, prefixes[i], strlen(prefixes[i])) == 0)
            return 1;
    return 0;
}

static int call_send(router_call *c, char *err, size_t errlen);

static void on_pause_end(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    router_call *c = arg;
    call_unpause(c);
    char err[256];
    if (call_send(c, err, sizeof err) != 0)
        call_fail(c, err);
}

/* The call was refused for where it went (why): a MOVED corrects the map
 * and sends it on at once; anything else waits a pause (and a fresh map).
 * Past ROUTER_RETRY_MS the refusal is the caller's answer. */
static void call_retry(router_call *c, const char *why)
{
    redis_router *r = c->r;
    if (r->closing || !r->cluster || clock_mono_seconds() * 1000 - c->first_ms > ROUTER_RETRY_MS) {
        call_fail(c, why);
        return;
    }
    redis_redirect rd;
    char err[256];
    if (redis_redirect_parse(why, strlen(why), &rd) == REDIS_REDIRECT_MOVED) {
        int idx = redis_slot_map_node(&r->map, rd.slot);
        const char *from = idx >= 0 ? r->map.nodes[idx].host : r->cfg->redis.host;
        if (redis_slot_map_apply_moved(&r->map, &rd, from, err, sizeof err) == 0) {
            if (call_send(c, err, sizeof err) != 0)
                call_fail(c, err);
            return;
        }
    }
    if (strncmp(why, "ASK ", 4) != 0 && strncmp(why, "TRYAGAIN", 8) != 0)
        r->want_map = 1; /* a failover or a dead master: who serves the slot now? */
    if (!c->pause)
        c->pause = evtimer_new(r->base, on_pause_end, c);
    struct timeval tv = {0, PAUSE_MS * 1000};
    if (!c->pause || evtimer_add(c->pause, &tv) != 0) {
        call_fail(c, "libevent: cannot schedule a resend");
        return;
    }
    c->next = r->paused;
    if (r->paused)
        r->paused->prev = c;
    r->paused = c;
}

/* The attempt's answers are all in: the caller's answer, or a resend. */
static void apply_attempt_done(router_call *c)
{
    if (c->result == LIVE_FAILED && refused_for_routing(c->why)) {
        call_retry(c, c->why);
        return;
    }
    int wanted = c->r->cfg->redis.min_replicas_acked;
    if (c->result == LIVE_APPLIED && wanted > 0 && c->replicas < wanted) {
        /* the master is short of replicas: no WAIT there for a second (each
         * would hold its connection), and the view is marked stale */
        if (c->replicas >= 0)
            c->node->short_until = clock_mono_seconds() + 1;
        char why[160];
        snprintf(why, sizeof why, "only %lld of redis.min_replicas_acked = %d replicas "
                 "acknowledged a transaction", c->replicas < 0 ? 0 : c->replicas, wanted);
        redis_router_note_missed(c->r, why);
    }
    c->apply_done(c->opaque, c->result, c->dups, c->ndups, c->why[0] ? c->why : NULL);
    call_free(c);
}

static void on_applied(void *opaque, int result, const size_t *dups, size_t ndups,
                       const char *reason)
{
    router_call *c = opaque;
    c->result = result;
    c->ndups = ndups <= c->group_size ? ndups : c->group_size;
    if (c->ndups)
        memcpy(c->dups, dups, c->ndups * sizeof *dups);
    snprintf(c->why, sizeof c->why, "%s", reason ? reason : "");
    if (--c->due == 0)
        apply_attempt_done(c);
}

static void on_waited(void *opaque, const redisReply *reply, const char *reason)
{
    (void)reason;
    router_call *c = opaque;
    c->replicas = reply && reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    if (--c->due == 0)
        apply_attempt_done(c);
}

static void on_command_answer(void *opaque, const redisReply *reply, const char *reason)
{
    router_call *c = opaque;
    const char *why = !reply ? reason : reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (why && refused_for_routing(why)) {
        call_retry(c, why);
        return;
    }
    c->reply_done(c->opaque, reply, reason);
    call_free(c);
}

/* WAIT's own timeout: half the call's, so that a replica that does not
 * answer costs a stale mark, never the connection (redis_writer's deadline). */
static int wait_ms(const redis_router *r)
{
    int ms = r->cfg->redis.timeout_ms / 2;
    return ms > 0 ? ms : 1;
}

/* One attempt: 0 (sent, or paused for a resend), or -1 with err. */
static int call_send(router_call *c, char *err, size_t errlen)
{
    redis_router *r = c->r;
    router_node *node = slot_node(r, c->slot);
    redis_writer *w = node ? node->w : NULL;
    c->node = node;
    if (!w || !redis_writer_is_up(w, NULL)) {
        if (!r->cluster) {
            const char *down = "redis is down";
            redis_writer_is_up(w, &down);
            snprintf(err, errlen, "%s", down);
            return -1;
        }
        r->want_map = 1;
        call_retry(c, "CLUSTERDOWN no master up for the slot");
        return 0;
    }
    if (!c->is_apply) {
        if (redis_writer_formatted(w, c->resp, c->resp_len, on_command_answer, c, err, errlen) != 0)
            call_retry(c, "redis connection lost");
        return 0;
    }
    int wait = r->cfg->redis.min_replicas_acked;
    if (wait > 0 && clock_mono_seconds() < node->short_until)
        wait = 0; /* (still short: counted as not replicated below) */
    c->due = 1 + (wait > 0);
    c->replicas = -1;
    c->why[0] = '\0';
    if (redis_writer_apply(w, c->u, c->group_size, on_applied, c, err, errlen) != 0) {
        call_retry(c, "redis connection lost");
        return 0;
    }
    if (wait > 0) {
        char n[16], ms[16];
        const char *argv[] = {"WAIT", n, ms};
        size_t argvlen[] = {4, (size_t)snprintf(n, sizeof n, "%d", wait),
                            (size_t)snprintf(ms, sizeof ms, "%d", wait_ms(r))};
        if (redis_writer_command(w, 3, argv, argvlen, on_waited, c, err, errlen) != 0)
            c->due--; /* (the transaction's answer, the connection's loss, decides) */
    }
    return 0;
}

static router_call *call_new(redis_router *r, unsigned slot, void *opaque)
{
    router_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->r = r;
    c->slot = slot;
    c->opaque = opaque;
    c->first_ms = clock_mono_seconds() * 1000;
    return c;
}

/* A cluster call can be taken once there is a map (until then: -1). */
static int cluster_ready(redis_router *r, char *err, size_t errlen)
{
    if (r->have_map)
        return 0;
    snprintf(err, errlen, "redis cluster: no slot map yet (%s)", r->reason);
    return -1;
}

int redis_router_apply(redis_router *r, unsigned slot, const live_update *u, size_t group_size,
                       redis_apply_fn done, void *opaque, char *err, size_t errlen)
{
    if (!r->cluster && r->cfg->redis.min_replicas_acked == 0)
        return redis_writer_apply(r->nodes[0].w, u, group_size, done, opaque, err, errlen);
    if (r->cluster && cluster_ready(r, err, errlen) != 0)
        return -1;
    router_call *c = call_new(r, slot, opaque);
    if (c)
        c->dups = malloc((group_size ? group_size : 1) * sizeof *c->dups);
    if (!c || !c->dups) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    c->is_apply = 1;
    c->u = u;
    c->group_size = group_size;
    c->apply_done = done;
    if (call_send(c, err, errlen) != 0) {
        call_free(c);
        return -1;
    }
    return 0;
}

int redis_router_formatted(redis_router *r, unsigned slot, const char *resp, size_t len,
                           redis_reply_fn done, void *opaque, char *err, size_t errlen)
{
    if (!r->cluster)
        return redis_writer_formatted(r->nodes[0].w, resp, len, done, opaque, err, errlen);
    if (cluster_ready(r, err, errlen) != 0)
        return -1;
    router_call *c = call_new(r, slot, opaque);
    if (c)
        c->resp = malloc(len ? len : 1);
    if (!c || !c->resp) {
        free(c);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(c->resp, resp, len);
    c->resp_len = len;
    c->reply_done = done;
    if (call_send(c, err, errlen) != 0) {
        call_free(c);
        return -1;
    }
    return 0;
}

int redis_router_command(redis_router *r, unsigned slot, int argc, const char **argv,
                         const size_t *argvlen, redis_reply_fn done, void *opaque, char *err,
                         size_t errlen)
{
    if (!r->cluster)
        return redis_writer_command(r->nodes[0].w, argc, argv, argvlen, done, opaque, err, errlen);
    char *resp = NULL;
    long long len = redisFormatCommandArgv(&resp, argc, argv, argvlen);
    if (len < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = redis_router_formatted(r, slot, resp, (size_t)len, done, opaque, err, errlen);
    redisFreeCommand(resp);
    return rc;
}

/* ---- the rest of the edge ------------------------------------------------------------- */

/* A shard's mark answered: 1 set, 0 left to the rebuild holding its fence
 * (live_stale_mark_script); anything else leaves it due for the next tick. */
static void on_stale_marked(void *opaque, const redisReply *reply, const char *reason)
{
    struct stale_mark *m = opaque;
    redis_router *r = m->r;
    m->sent = 0;
    if (r->closing)
        return;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        log_error("redis cluster: cannot mark shard %u stale yet (retried): %s", m->shard,
                  !reply ? reason : reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        return;
    }
    m->due = 0;
    if (--r->stale_due == 0) {
        log_warn("live view marked stale (%s), where no rebuild replays it: run tally-flusher "
                 "--rebuild-redis",
                 r->stale_reason);
        r->stale_reason[0] = '\0';
    }
}

/* Sends every due mark that is not on its way (a shard without a usable
 * master waits for the next tick). */
static void send_stale_marks(redis_router *r)
{
    for (unsigned shard = 0; shard < (unsigned)r->cfg->redis.shards; shard++) {
        struct stale_mark *m = &r->stale[shard];
        if (!m->due || m->sent)
            continue;
        char fence[REDIS_KEY_MAX], key[REDIS_KEY_MAX], err[256];
        int fl = redis_key_shard(fence, sizeof fence, shard, REDIS_SHARD_FENCE);
        int kl = redis_key_shard(key, sizeof key, shard, REDIS_SHARD_STALE);
        const char *argv[] = {"EVAL", live_stale_mark_script, "2", fence, key, r->stale_reason};
        size_t argvlen[] = {4, strlen(live_stale_mark_script), 1, (size_t)fl, (size_t)kl,
                            strlen(r->stale_reason)};
        if (redis_router_command(r, redis_shard_slot(shard), 6, argv, argvlen, on_stale_marked, m,
                                 err, sizeof err) == 0)
            m->sent = 1;
    }
}

void redis_router_note_missed(redis_router *r, const char *reason)
{
    if (!r->cluster) {
        redis_writer_note_missed(r->nodes[0].w, reason);
        return;
    }
    if (!r->stale_reason[0])
        snprintf(r->stale_reason, sizeof r->stale_reason, "%s", reason);
    for (unsigned shard = 0; shard < (unsigned)r->cfg->redis.shards; shard++) {
        if (!r->stale[shard].due)
            r->stale_due++;
        r->stale[shard].due = 1;
    }
    send_stale_marks(r);
}

unsigned redis_router_restarts(const redis_router *r)
{
    return r->cluster ? r->restarts : redis_writer_restarts(r->nodes[0].w);
}

int redis_router_is_up(const redis_router *r, const char **reason)
{
    if (!r->cluster)
        return redis_writer_is_up(r->nodes[0].w, reason);
    static char why[800];
    char holes[64];
    if (!r->have_map) {
        snprintf(why, sizeof why, "redis cluster: no slot map yet (%s)", r->reason);
    } else if (redis_slot_map_holes(&r->map, holes, sizeof holes) > 0) {
        snprintf(why, sizeof why, "redis cluster: slots without a master: %s", holes);
    } else {
        for (size_t i = 0; i < r->map.node_count; i++) {
            const redis_node *n = &r->map.nodes[i];
            for (size_t k = 0; k < r->nnodes; k++) {
                const char *down = NULL;
                if (r->nodes[k].port == n->port && strcmp(r->nodes[k].host, n->host) == 0 &&
                    !redis_writer_is_up(r->nodes[k].w, &down)) {
                    snprintf(why, sizeof why, "redis cluster master %s:%d: %s", n->host, n->port,
                             down);
                    if (reason)
                        *reason = why;
                    return 0;
                }
            }
        }
        return 1;
    }
    if (reason)
        *reason = why;
    return 0;
}

redis_writer *redis_router_seed(const redis_router *r)
{
    return r->nodes[0].w;
}

redis_router *redis_router_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen)
{
    redis_router *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->base = base;
    r->cfg = cfg;
    r->cluster = cfg->redis.cluster;
    redis_slot_map_init(&r->map);
    snprintf(r->reason, sizeof r->reason, "not asked yet");
    r->nodes[0].w = r->cluster ? redis_writer_new_node(base, cfg, cfg->redis.host, cfg->redis.port,
                                                       err, errlen)
                               : redis_writer_new(base, cfg, err, errlen);
    if (!r->nodes[0].w) {
        free(r);
        return NULL;
    }
    snprintf(r->nodes[0].host, sizeof r->nodes[0].host, "%s", cfg->redis.host);
    r->nodes[0].port = cfg->redis.port;
    r->nnodes = 1;
    if (r->cluster) {
        size_t shards = (size_t)cfg->redis.shards;
        r->run_ids = calloc(shards, sizeof *r->run_ids);
        r->asking_run_id = calloc(shards, 1);
        r->stale = calloc(shards, sizeof *r->stale);
        for (size_t shard = 0; r->stale && shard < shards; shard++)
            r->stale[shard] = (struct stale_mark){.r = r, .shard = (unsigned)shard};
        struct timeval tv = {0, TICK_MS * 1000};
        r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
        if (!r->run_ids || !r->asking_run_id || !r->stale || !r->tick ||
            event_add(r->tick, &tv) != 0) {
            snprintf(err, errlen, "libevent: cannot create the router's timer");
            redis_router_free(r);
            return NULL;
        }
    }
    return r;
}

void redis_router_free(redis_router *r)
{
    if (!r)
        return;
    r->closing = 1;
    if (r->stale_due)
        log_error("stopping before %zu shards could be marked stale (%s): the live view lacks "
                  "batches Kafka holds; run tally-flusher --rebuild-redis",
                  r->stale_due, r->stale_reason);
    while (r->paused)
        call_fail(r->paused, "tally-ingest is shutting down");
    if (r->tick)
        event_free(r->tick);
    for (size_t i = 0; i < r->nnodes; i++)
        redis_writer_free(r->nodes[i].w); /* (answers its calls: closing, they fail) */
    redis_slot_map_free(&r->map);
    free(r->run_ids);
    free(r->asking_run_id);
    free(r->stale);
    free(r);
}
