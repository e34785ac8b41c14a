/*
 * local_answers.c — see local_answers.h.
 *
 * The tracking connection is a plain non-blocking hiredis context driven by
 * two libevent events (not redis_writer: a subscribed connection has no
 * request/answer pairs to time out, and hiredis' async API cannot see a
 * PING's answer once subscribed). Its states:
 *
 *   DOWN        no connection; the once-a-second tick connects
 *   HELLO       connected, waiting for CLIENT ID
 *   SUBSCRIBING CLIENT TRACKING (redirected to itself) and SUBSCRIBE sent
 *   ACTIVE      subscribed: the copy answers; the tick PINGs
 *
 * Any error, an unexpected reply, or a state that outlives one tick drops
 * the connection (back to DOWN), which empties the copy.
 */
#include "local_answers.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "cache_keys.h"
#include "clock.h"
#include "index_table.h"
#include "log.h"

#define TICK_MS 1000
#define ENTRY_OVERHEAD 64 /* bytes counted per entry beyond its strings */
#define INVALIDATE_CHANNEL "__redis__:invalidate"

enum { DOWN, HELLO, SUBSCRIBING, ACTIVE };

typedef struct local_entry {
    uint64_t hash;
    char *key_text;
    char *value;
    size_t len;
    int64_t expires_ms;
} local_entry;

struct local_answers {
    const tally_config *cfg;
    const redis_writer *cache; /* its address is the one tracked (it moves: cache.cluster) */
    unsigned cache_moves;      /* the writer's moves when this connection was made */
    size_t max_bytes, bytes;
    local_entry *entries;
    size_t count, cap;
    index_table table;
    uint64_t stamp; /* bumped by every invalidation and every state change */
    int state;
    int ticks_in_state;
    int ping_outstanding;
    redisContext *ctx;
    struct event_base *base;
    struct event *readable, *writable, *tick;
    char last_problem[160];
    local_answers_stats stats;
};

/* ---- the copy ------------------------------------------------------------------- */

/* Empties the copy (the stamp stays: nothing was invalidated). */
static void empty(local_answers *l)
{
    for (size_t i = 0; i < l->count; i++) {
        free(l->entries[i].key_text);
        free(l->entries[i].value);
    }
    if (l->count)
        l->stats.clears++;
    l->count = 0;
    l->bytes = 0;
    index_table_clear(&l->table);
}

/* Empties the copy and voids every lookup in flight. */
static void invalidate(local_answers *l)
{
    empty(l);
    l->stamp++;
}

typedef struct entry_key {
    const local_answers *l;
    uint64_t hash;
    const char *key_text;
} entry_key;

static int entry_equal(const void *ctx, uint32_t index)
{
    const entry_key *k = ctx;
    const local_entry *e = &k->l->entries[index];
    return e->hash == k->hash && strcmp(e->key_text, k->key_text) == 0;
}

static uint32_t entry_hash_at(const void *ctx, uint32_t index)
{
    return (uint32_t)((const entry_key *)ctx)->l->entries[index].hash;
}

static long find(const local_answers *l, uint64_t hash, const char *key_text)
{
    entry_key k = {l, hash, key_text};
    return l->count ? index_table_find(&l->table, (uint32_t)hash, entry_equal, &k) : -1;
}

/* ---- the tracking connection ---------------------------------------------------------- */

static void on_readable(evutil_socket_t fd, short what, void *arg);
static void on_writable(evutil_socket_t fd, short what, void *arg);

static void set_state(local_answers *l, int state)
{
    l->state = state;
    l->ticks_in_state = 0;
    invalidate(l); /* nothing read before counts */
}

/* Logs a problem once (not every second while it lasts). */
static void problem(local_answers *l, const char *what, const char *detail)
{
    char text[sizeof l->last_problem];
    snprintf(text, sizeof text, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    if (strcmp(text, l->last_problem) != 0)
        log_warn("cache redis: in-process answers off (%s)", text);
    snprintf(l->last_problem, sizeof l->last_problem, "%s", text);
}

static void drop(local_answers *l, const char *what, const char *detail)
{
    problem(l, what, detail);
    if (l->readable) {
        event_free(l->readable);
        l->readable = NULL;
    }
    if (l->writable) {
        event_free(l->writable);
        l->writable = NULL;
    }
    if (l->ctx) {
        redisFree(l->ctx);
        l->ctx = NULL;
    }
    set_state(l, DOWN);
}

/* Writes what hiredis holds; the writable event finishes a partial write. */
static int flush_output(local_answers *l)
{
    int done = 0;
    if (redisBufferWrite(l->ctx, &done) != REDIS_OK) {
        drop(l, "write", l->ctx->errstr);
        return -1;
    }
    if (!done)
        event_add(l->writable, NULL);
    return 0;
}

/* On a cache cluster the tracking must be on the master the cache writer
 * uses, which it confirmed (CLUSTER SLOTS): 1 when the connection is not (or
 * no longer) that one. */
static int tracks_elsewhere(const local_answers *l)
{
    const char *host;
    int port;
    return l->cfg->cache.cluster &&
           redis_writer_address(l->cache, &host, &port) != l->cache_moves;
}

static void connect_now(local_answers *l)
{
    const char *host;
    int port;
    l->cache_moves = redis_writer_address(l->cache, &host, &port);
    if (l->cfg->cache.cluster && !redis_writer_is_up(l->cache, NULL))
        return; /* (the next tick tries, once the writer found the slot's master) */
    l->ctx = redisConnectNonBlock(host, port);
    if (!l->ctx || l->ctx->err) {
        drop(l, "connect", l->ctx ? l->ctx->errstr : "out of memory");
        return;
    }
    l->readable = event_new(l->base, l->ctx->fd, EV_READ | EV_PERSIST, on_readable, l);
    l->writable = event_new(l->base, l->ctx->fd, EV_WRITE, on_writable, l);
    if (!l->readable || !l->writable || event_add(l->readable, NULL) != 0 ||
        redisAppendCommand(l->ctx, "CLIENT ID") != REDIS_OK) {
        drop(l, "connect", "out of memory");
        return;
    }
    set_state(l, HELLO);
    event_add(l->writable, NULL); /* the connect completes when writable */
}

static int is_array_of(const redisReply *r, const char *first, size_t n)
{
    return r->type == REDIS_REPLY_ARRAY && r->elements == n &&
           r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, first) == 0;
}

static void on_hello(local_answers *l, const redisReply *r)
{
    if (r->type != REDIS_REPLY_INTEGER) {
        drop(l, "CLIENT ID", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return;
    }
    if (redisAppendCommand(l->ctx,
                           "CLIENT TRACKING on REDIRECT %lld BCAST PREFIX %s PREFIX %s PREFIX %s",
                           r->integer, CACHE_KEY_VERSION_PREFIX, CACHE_KEY_GEN,
                           CACHE_KEY_CATALOG) != REDIS_OK ||
        redisAppendCommand(l->ctx, "SUBSCRIBE %s", INVALIDATE_CHANNEL) != REDIS_OK) {
        drop(l, "CLIENT TRACKING", "out of memory");
        return;
    }
    set_state(l, SUBSCRIBING);
    flush_output(l);
}

static void on_subscribing(local_answers *l, const redisReply *r)
{
    if (r->type == REDIS_REPLY_STATUS) /* CLIENT TRACKING's +OK */
        return;
    if (!is_array_of(r, "subscribe", 3)) {
        drop(l, "CLIENT TRACKING", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        return;
    }
    set_state(l, ACTIVE);
    l->last_problem[0] = '\0';
    log_info("cache redis: in-process answers on (invalidated by CLIENT TRACKING)");
}

static void on_active(local_answers *l, const redisReply *r)
{
    if (is_array_of(r, "pong", 2)) {
        l->ping_outstanding = 0;
    } else if (is_array_of(r, "message", 3)) {
        l->stats.invalidations++;
        invalidate(l);
    } else {
        drop(l, "tracking", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
}

/* Reads what the socket holds and handles every complete reply. */
static void drain(local_answers *l)
{
    if (redisBufferRead(l->ctx) != REDIS_OK) {
        drop(l, "read", l->ctx->errstr);
        return;
    }
    while (l->ctx) {
        void *reply = NULL;
        if (redisGetReply(l->ctx, &reply) != REDIS_OK) {
            drop(l, "protocol", l->ctx->errstr);
            return;
        }
        if (!reply)
            return;
        if (l->state == HELLO)
            on_hello(l, reply);
        else if (l->state == SUBSCRIBING)
            on_subscribing(l, reply);
        else if (l->state == ACTIVE)
            on_active(l, reply);
        freeReplyObject(reply);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drain(arg);
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    local_answers *l = arg;
    int error = 0;
    socklen_t len = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
        drop(l, "connect", strerror(error ? error : errno));
        return;
    }
    flush_output(l);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    local_answers *l = arg;
    if (l->state == DOWN) {
        connect_now(l);
    } else if (tracks_elsewhere(l)) {
        drop(l, "tracking", "the cache's slot moved to another master");
    } else if (l->state != ACTIVE) {
        if (++l->ticks_in_state > 1)
            drop(l, "handshake", "no answer within a second");
    } else if (l->ping_outstanding) {
        drop(l, "PING", "no answer within a second");
    } else if (redisAppendCommand(l->ctx, "PING") != REDIS_OK) {
        drop(l, "PING", "out of memory");
    } else if (flush_output(l) == 0) {
        l->ping_outstanding = 1;
    }
}

/* ---- the interface ----------------------------------------------------------------------- */

local_answers *local_answers_new(struct event_base *base, const tally_config *cfg,
                                 const redis_writer *cache, char *err, size_t errlen)
{
    local_answers *l = calloc(1, sizeof *l);
    if (!l || index_table_init(&l->table, 64) != 0) {
        free(l);
        snprintf(err, errlen, "in-process answers: out of memory");
        return NULL;
    }
    l->cfg = cfg;
    l->cache = cache;
    l->base = base;
    l->max_bytes = (size_t)cfg->cache.local_bytes;
    l->state = DOWN;
    if (l->max_bytes == 0)
        return l;
    struct timeval every = {TICK_MS / 1000, (TICK_MS % 1000) * 1000};
    l->tick = event_new(base, -1, EV_PERSIST, on_tick, l);
    if (!l->tick || event_add(l->tick, &every) != 0) {
        local_answers_free(l);
        snprintf(err, errlen, "in-process answers: cannot start the timer");
        return NULL;
    }
    connect_now(l);
    return l;
}

uint64_t local_answers_stamp(const local_answers *l)
{
    return l->stamp;
}

int local_answers_get(local_answers *l, uint64_t hash, const char *key_text, const char **value,
                      size_t *len)
{
    if (l->state != ACTIVE || l->count == 0)
        return 0;
    if (tracks_elsewhere(l)) {
        drop(l, "tracking", "the cache's slot moved to another master");
        return 0;
    }
    drain(l); /* an invalidation already sent must win over the copy */
    long at = l->state == ACTIVE ? find(l, hash, key_text) : -1;
    if (at < 0 || l->entries[at].expires_ms <= clock_mono_ms())
        return 0;
    *value = l->entries[at].value;
    *len = l->entries[at].len;
    l->stats.hits++;
    return 1;
}

static int store_entry(local_answers *l, long at, uint64_t hash, const char *key_text,
                       char *value, size_t len, int64_t expires_ms)
{
    if (at >= 0) { /* an expired copy of the same answer: replace it */
        local_entry *e = &l->entries[at];
        l->bytes -= e->len;
        free(e->value);
        e->value = value, e->len = len, e->expires_ms = expires_ms;
        l->bytes += len;
        return 0;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        local_entry *grown = realloc(l->entries, cap * sizeof *grown);
        if (!grown)
            return -1;
        l->entries = grown, l->cap = cap;
    }
    char *key_copy = strdup(key_text);
    entry_key k = {l, hash, key_text};
    if (!key_copy ||
        index_table_add(&l->table, (uint32_t)hash, (uint32_t)l->count, entry_hash_at, &k) != 0) {
        free(key_copy);
        return -1;
    }
    l->entries[l->count++] = (local_entry){hash, key_copy, value, len, expires_ms};
    l->bytes += len + strlen(key_text) + ENTRY_OVERHEAD;
    return 0;
}

void local_answers_put(local_answers *l, uint64_t stamp, uint64_t hash, const char *key_text,
                       const char *value, size_t len, int64_t ttl_ms)
{
    size_t size = len + strlen(key_text) + ENTRY_OVERHEAD;
    if (l->state != ACTIVE || stamp != l->stamp || ttl_ms <= 0 || size > l->max_bytes / 4)
        return;
    long at = find(l, hash, key_text);
    if (at < 0 && l->bytes + size > l->max_bytes)
        empty(l);
    char *copy = malloc(len);
    if (!copy)
        return;
    memcpy(copy, value, len);
    if (store_entry(l, at, hash, key_text, copy, len, clock_mono_ms() + ttl_ms) != 0)
        free(copy);
}

void local_answers_stats_get(const local_answers *l, local_answers_stats *out)
{
    *out = l->stats;
    out->entries = l->count;
    out->bytes = l->bytes;
    out->active = l->state == ACTIVE;
}

void local_answers_free(local_answers *l)
{
    if (!l)
        return;
    if (l->readable)
        event_free(l->readable);
    if (l->writable)
        event_free(l->writable);
    if (l->tick)
        event_free(l->tick);
    if (l->ctx)
        redisFree(l->ctx);
    empty(l);
    index_table_free(&l->table);
    free(l->entries);
    free(l);
}
