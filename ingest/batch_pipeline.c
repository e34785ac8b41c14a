/*
 * batch_pipeline.c — see batch_pipeline.h.
 *
 * A POST walks one chain of callbacks, all on the event loop:
 *
 *   batch_pipeline_post -> parse + validate (atomic) -> fold -> stamp -> encode -> Kafka send
 *     -> on_kafka_delivered -> (failed: 503) Redis queue -> pump_redis -> one
 *        transaction per group -> on_group_applied -> finish_redis -> 200 / 503
 *
 * Kafka comes first, Redis second, on purpose: Redis is only touched for a
 * batch that Kafka already holds, so the live view never contains a value
 * the flusher will not also bring to SQLite (rule 5), and delivery order
 * equals the order the updates reach Redis (gauges agree). Batches that Kafka
 * confirms while a group is in Redis form the next group (group commit).
 * A batch whose record is in Kafka but whose Redis update failed is answered
 * 200 "live":"stale" (redis.on_unavailable = accept, the view is marked stale
 * for the rebuild) or 503 with its batch id (reject): the client retries with
 * that Idempotency-Key and the dedup key makes the retry count once (rule 3).
 *
 * Each accepted POST owns a batch_request until its last callback; evhttp keeps
 * the evhttp_request alive until we reply even if the client went away.
 */
#include "batch_pipeline.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "admission.h"
#include "body_decode.h"
#include "clock.h"
#include "dedup.h"
#include "format.h"
#include "http_reply.h"
#include "live_known.h"
#include "live_update.h"
#include "log.h"
#include "prom_text.h"
#include "record.h"
#include "redis_keys.h"
#include "redis_slots.h"
#include "statsd.h"

/* The answers a batch can get, as /metrics labels them (by HTTP status). */
enum { ANSWER_ACCEPTED, ANSWER_INVALID, ANSWER_KEY_CONFLICT, ANSWER_TOO_LARGE,
       ANSWER_UNSUPPORTED_ENCODING, ANSWER_LIVE_SERIES_LIMIT, ANSWER_RATE_LIMITED,
       ANSWER_UNAVAILABLE, ANSWER_INTERNAL, ANSWER_KINDS };
static const char *const answer_names[ANSWER_KINDS] = {
    "accepted", "invalid", "key_conflict", "too_large", "unsupported_encoding",
    "live_series_limit", "rate_limited", "unavailable", "internal"};

static int answer_kind(int status)
{
    switch (status) {
    case 200: return ANSWER_ACCEPTED;
    case 400: return ANSWER_INVALID;
    case 409: return ANSWER_KEY_CONFLICT;
    case 413: return ANSWER_TOO_LARGE;
    case 415: return ANSWER_UNSUPPORTED_ENCODING;
    case 422: return ANSWER_LIVE_SERIES_LIMIT;
    case 429: return ANSWER_RATE_LIMITED;
    case 503: return ANSWER_UNAVAILABLE;
    default: return ANSWER_INTERNAL;
    }
}

struct batch_pipeline {
    struct event_base *base;
    const tally_config *cfg;
    kafka_writer *kafka;
    redis_router *redis;
    statsd_batch batch;  /* reused: parsing is synchronous */
    statsd_limits limits;
    size_t inflight;
    size_t inflight_bytes;
    int fail_open;  /* redis.on_unavailable = accept */
    int draining;
    /* Batches Kafka holds, waiting for their Redis update, in delivery order.
     * One group is in flight at a time; whatever arrives meanwhile forms the
     * next group (group commit), so Redis work grows with distinct series,
     * not with request rate. */
    struct batch_request *redis_head, *redis_tail;
    int redis_busy;
    int pumping;  /* pump_redis is running */
    live_known *known;  /* series admitted, distribution min/max the live view holds */
    time_t admission_skip_logged;
    unsigned redis_restarts; /* redis_router_restarts() when bounds was last valid */
    /* for /metrics (batch_pipeline_metrics) */
    uint64_t answers[ANSWER_KINDS];  /* batches by answer (answer_kind) */
    uint64_t events_accepted, lines_rejected, redis_failures;
    uint64_t kafka_failures[3];      /* not_stored, unknown, too_large */
    prom_hist ack;                   /* accepted to 200 */
};

/* What the live view is known to hold (live_known.h): entries and bytes of
 * names and tags (a bound on memory). */
#define KNOWN_SLOTS 262144
#define KNOWN_MAX_BYTES (32u << 20)

/* The longest Idempotency-Key a client may send (scoped with its token name
 * it still fits a record's batch id). */
#define IDEMPOTENCY_KEY_MAX 128
_Static_assert(AUTH_NAME_MAX + 1 + IDEMPOTENCY_KEY_MAX <= RECORD_BATCH_ID_MAX,
               "a scoped key must fit a batch id");

/* Where a batch's answer goes: the HTTP request that brought it, or (req
 * NULL) the callback of batch_pipeline_submit(). */
typedef struct batch_sink {
    struct evhttp_request *req;
    batch_done_fn done;
    void *opaque;
    batch_pipeline *pipeline; /* counts the answer */
} batch_sink;

typedef struct batch_request {
    batch_pipeline *srv;
    batch_sink sink;
    char batch_id[RECORD_BATCH_ID_MAX + 1]; /* "CLIENT/KEY" with tokens, else "KEY" */
    size_t key_offset;  /* where the client's key starts in batch_id */
    const auth_client *client; /* NULL without tokens */
    char digest[DEDUP_DIGEST_TEXT]; /* of the body (dedup.h) */
    int64_t log_ms;     /* its record's Kafka timestamp, once delivered */
    int64_t started_ns; /* monotonic, when it was accepted (the ack latency) */
    size_t events;
    size_t ignored; /* DogStatsD events and service checks in the body (not stored) */
    size_t bytes; /* counted in inflight_bytes */
    int answered; /* the client has its answer (the deadline may come first) */
    int applied_some; /* some part of it reached Redis in an earlier round (a resend) */
    struct event *deadline;
    live_fold *fold;              /* the batch folded per series, for Redis */
    uint8_t *record;              /* encoded, until handed to Kafka (owned) */
    size_t record_len;
    admission admit;              /* the admission call in flight, if any */
    struct batch_request *next;   /* in the Redis queue or a group */
} batch_request;

/* What one round in Redis made of a member of a group (see settle_group). */
typedef struct member_state {
    int settled;  /* answered by its claim: in no transaction */
    int failed, conflict, resend, deferred, applied;
} member_state;

typedef struct redis_group redis_group;

/* One shard's transaction of a group (live_update_build), or one claim. */
typedef struct group_part {
    redis_group *group;
    live_update update; /* kept until answered, for its bounds */
    size_t *members;    /* positions in the group of its batches, in order */
    size_t count;
} group_part;

/* Batches sent to Redis together: with several shards their claims first
 * (one call each), then one transaction per shard they touch. */
struct redis_group {
    batch_pipeline *srv;
    size_t count;
    size_t due;            /* calls not yet answered */
    member_state *state;
    group_part *parts;     /* claims: count of them (one member each); then transactions */
    size_t nparts;
    char why[256];         /* the first failure */
    batch_request *members[];
};

#define REDIS_GROUP_MAX 256

/* A refusal: with an outcome ("not_stored", "stored", "unknown") in the
 * batch error shape, without one in the plain error shape (the batch never
 * got as far as a batch id). */
static void sink_error(const batch_sink *k, int code, const char *status, const char *msg,
                       const char *key, int retry_after, const char *outcome)
{
    k->pipeline->answers[answer_kind(code)]++;
    if (!k->req)
        k->done(k->opaque, code, outcome ? outcome : "not_stored", msg);
    else if (outcome)
        http_reply_batch_error(k->req, code, status, msg, key, retry_after, outcome);
    else
        http_reply_error(k->req, code, status, msg, key, retry_after);
}

static void reply_invalid_batch(const batch_sink *k, const statsd_batch *batch)
{
    k->pipeline->answers[ANSWER_INVALID]++;
    k->pipeline->lines_rejected += batch->error_total;
    if (!k->req) {
        k->done(k->opaque, 400, "not_stored",
                batch->error_count ? batch->errors[0].reason : "invalid batch");
        return;
    }
    struct evhttp_request *req = k->req;
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(b, "{\"error\":\"invalid batch: %zu bad line%s, nothing was applied\","
                           "\"accepted\":0,\"errors_total\":%zu,\"errors\":[",
                        batch->error_total, batch->error_total == 1 ? "" : "s",
                        batch->error_total);
    for (size_t i = 0; i < batch->error_count; i++) {
        const statsd_error *e = &batch->errors[i];
        evbuffer_add_printf(b, "%s{\"line\":%u", i ? "," : "", e->line);
        http_json_add_string(b, 0, "code", statsd_reason_name(e->code),
                             strlen(statsd_reason_name(e->code)));
        http_json_add_string(b, 0, "reason", e->reason, strlen(e->reason));
        evbuffer_add(b, "}", 1);
    }
    evbuffer_add(b, "]}\n", 3);
    http_reply_json(req, 400, "Bad Request", b);
    evbuffer_free(b);
}

/* 200 for a body of only DogStatsD events and service checks: nothing to
 * store, so it goes neither to Kafka nor to Redis and has no batch id. */
static void reply_only_ignored(const batch_sink *k, const statsd_batch *batch)
{
    k->pipeline->answers[ANSWER_ACCEPTED]++;
    if (!k->req) {
        k->done(k->opaque, 200, "stored", "ignored");
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(k->req, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(b,
                        "{\"accepted\":0,\"ignored\":%zu,\"events_ignored\":%zu,"
                        "\"service_checks_ignored\":%zu}\n",
                        batch->events_ignored + batch->service_checks_ignored,
                        batch->events_ignored, batch->service_checks_ignored);
    http_reply_json(k->req, 200, "OK", b);
    evbuffer_free(b);
}

/* ---- POST /v1/events -------------------------------------------------------- */

static int valid_batch_id(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len > IDEMPOTENCY_KEY_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '-' || c == '_' || c == '.' || c == ':';
        if (!ok)
            return 0;
    }
    return 1;
}

/* Writes 32 random hex digits; -1 when the kernel gives no randomness. */
static int generate_batch_id(char *out, size_t outlen)
{
    unsigned char raw[16];
    if (outlen < 33 || getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw)
        return -1;
    for (size_t i = 0; i < sizeof raw; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    return 0;
}

/* The idempotency key as the client knows it (batch_id without the scope). */
static const char *client_key(const batch_request *br)
{
    return br->batch_id + br->key_offset;
}

static void batch_request_finish(batch_request *br)
{
    if (br->deadline)
        event_free(br->deadline);
    free(br->record);
    admission_free(&br->admit);
    br->srv->inflight--;
    br->srv->inflight_bytes -= br->bytes;
    live_fold_free(br->fold);
    free(br);
}

/* Answers a batch that is stored nowhere (unless the deadline answered it
 * already) and finishes it. */
static void refuse_batch(batch_request *br, int code, const char *status, const char *msg,
                         int retry_after)
{
    if (!br->answered) {
        br->answered = 1;
        sink_error(&br->sink, code, status, msg, client_key(br), retry_after, "not_stored");
    }
    batch_request_finish(br);
}

/* 200 for a batch Kafka holds. live: "applied", "duplicate" (applied before),
 * or "stale" (Redis did not apply it: fail-open, or a rebuild will). */
static void reply_accepted(batch_request *br, const char *live)
{
    br->answered = 1;
    batch_pipeline *s = br->srv;
    s->answers[ANSWER_ACCEPTED]++;
    s->events_accepted += br->events;
    prom_hist_observe(&s->ack, (double)(clock_mono_ns() - br->started_ns) / 1e9);
    if (!br->sink.req) {
        br->sink.done(br->sink.opaque, 200, "stored", live);
        return;
    }
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(br->sink.req, 500, "out of memory");
        return;
    }
    evbuffer_add_printf(b, "{\"accepted\":%zu,\"ignored\":%zu", br->events, br->ignored);
    http_json_add_string(b, 0, "batch_id", client_key(br), strlen(client_key(br)));
    evbuffer_add_printf(b, ",\"duplicate\":%s,\"live\":\"%s\"}\n",
                        strcmp(live, "duplicate") == 0 ? "true"
                        : strcmp(live, "stale") == 0   ? "null"
                                                       : "false",
                        live);
    evhttp_add_header(evhttp_request_get_output_headers(br->sink.req), "Idempotency-Key",
                      client_key(br));
    http_reply_json(br->sink.req, 200, "OK", b);
    evbuffer_free(b);
}

/* The end of one batch's Redis step: answers the client (unless the deadline
 * already did) and frees the batch. */
static void finish_redis(batch_request *br, int result, const char *reason)
{
    if (result < 0)
        br->srv->redis_failures++;
    if (br->answered) {
        /* The client got a 503 at the deadline and retries with the key; the
         * batch is in Kafka all the same, so Redis should have it too. */
        if (result < 0)
            redis_router_note_missed(br->srv->redis, reason);
    } else if (result == LIVE_DEFERRED) {
        reply_accepted(br, "stale"); /* the running rebuild replays it from Kafka */
    } else if (result < 0 && br->srv->fail_open) {
        redis_router_note_missed(br->srv->redis, reason);
        reply_accepted(br, "stale");
    } else if (result < 0) {
        char msg[384];
        snprintf(msg, sizeof msg,
                 "batch is stored in Kafka but the live view was not updated (%s); "
                 "retry with the same Idempotency-Key",
                 reason);
        sink_error(&br->sink, 503, "Service Unavailable", msg, client_key(br), 1, "stored");
    } else {
        reply_accepted(br, result == LIVE_DUPLICATE ? "duplicate" : "applied");
    }
    batch_request_finish(br);
}

static void pump_redis(batch_pipeline *s);

/* A batch whose key was used within the dedup window for another body: the
 * first body counts, this one never will (the flusher and any rebuild skip
 * it, dedup.h), so it is refused like a payment API refuses a reused key. */
static void finish_conflict(batch_request *br)
{
    char msg[384];
    snprintf(msg, sizeof msg,
             "Idempotency-Key %s was used for a different body within the dedup window "
             "(dedup.window_seconds = %d); this body is not counted: send it with a new key",
             client_key(br), br->srv->cfg->dedup.window_seconds);
    refuse_batch(br, 409, "Conflict", msg, 0);
}

static void group_free(redis_group *g)
{
    for (size_t k = 0; k < g->nparts; k++) {
        live_update_free(&g->parts[k].update);
        free(g->parts[k].members);
    }
    free(g->parts);
    free(g->state);
    free(g);
}

static void note_failure(redis_group *g, member_state *m, const char *reason)
{
    if (!g->why[0])
        snprintf(g->why, sizeof g->why, "%s", reason ? reason : "redis failed");
    m->failed = 1;
}

/* Puts the batches in front of the queue, in their order. */
static void requeue_front(batch_pipeline *s, batch_request *head, batch_request *last)
{
    last->next = s->redis_head;
    if (!s->redis_head)
        s->redis_tail = last;
    s->redis_head = head;
}

/* Every call of the group answered: each member's parts decide its answer. A
 * failed part fails the batch (the rest may be applied: the client retries
 * with its key, or the view is marked stale); a conflict refuses it; a part
 * aborted (another client's change, or a duplicate beside it in its
 * transaction) resends the whole batch, whose applied parts then meet their
 * dedup keys; then a fence defers it; else it is applied, or a duplicate when
 * no part of it was new. Then the next group. */
static void settle_group(redis_group *g)
{
    batch_pipeline *s = g->srv;
    s->redis_busy = 0;
    batch_request *again_head = NULL, *again_last = NULL;
    for (size_t i = 0; i < g->count; i++) {
        member_state *m = &g->state[i];
        batch_request *b = g->members[i];
        if (m->settled)
            continue; /* (answered, and freed) */
        b->applied_some |= m->applied;
        if (m->failed) {
            finish_redis(b, -1, g->why);
        } else if (m->conflict) {
            finish_conflict(b);
        } else if (m->resend) {
            b->next = NULL;
            if (again_last)
                again_last->next = b;
            else
                again_head = b;
            again_last = b;
        } else if (m->deferred) {
            finish_redis(b, LIVE_DEFERRED, NULL);
        } else {
            finish_redis(b, b->applied_some ? LIVE_APPLIED : LIVE_DUPLICATE, NULL);
        }
    }
    if (again_head)
        requeue_front(s, again_head, again_last);
    group_free(g);
    pump_redis(s);
}

static void part_done(redis_group *g)
{
    if (--g->due == 0)
        settle_group(g);
}

/* A shard's transaction answered: what it means for each of its batches. */
static void on_part_applied(void *opaque, int result, const size_t *dups, size_t ndups,
                            const char *reason)
{
    group_part *p = opaque;
    redis_group *g = p->group;
    if (result == LIVE_APPLIED) /* (the members' folds are still alive) */
        live_update_note_bounds(&p->update, g->srv->known);
    for (size_t k = 0; k < p->count; k++) {
        member_state *m = &g->state[p->members[k]];
        size_t dup = 0;
        for (size_t d = 0; d < ndups; d++)
            if ((dups[d] & ~LIVE_CONFLICT) == k + 1)
                dup = dups[d];
        switch (result) {
        case LIVE_APPLIED: m->applied = 1; break;
        case LIVE_DEFERRED: m->deferred = 1; break;
        case LIVE_RETRY: m->resend = 1; break;
        case LIVE_DUPLICATE: /* (this part of a listed batch was applied before) */
            if (dup & LIVE_CONFLICT)
                m->conflict = 1;
            else if (!dup)
                m->resend = 1;
            break;
        default: note_failure(g, m, reason); break;
        }
    }
    part_done(g);
}

static void send_part(redis_group *g, group_part *p, unsigned shard)
{
    batch_pipeline *s = g->srv;
    const live_fold **folds = malloc(p->count * sizeof *folds);
    live_batch *batches = malloc(p->count * sizeof *batches);
    char why[256] = "out of memory";
    int sent = 0;
    if (folds && batches) {
        for (size_t k = 0; k < p->count; k++) {
            batch_request *b = g->members[p->members[k]];
            folds[k] = b->fold;
            batches[k] = (live_batch){b->batch_id, strlen(b->batch_id), b->digest, b->log_ms};
        }
        sent = live_update_build(&p->update, folds, batches, p->count,
                                 s->cfg->dedup.window_seconds, LIVE_MODE_INGEST, s->known, shard,
                                 why, sizeof why) == 0 &&
               redis_router_apply(s->redis, redis_shard_slot(shard), &p->update, p->count,
                                  on_part_applied, p, why, sizeof why) == 0;
    }
    free(folds);
    free(batches);
    if (!sent) {
        for (size_t k = 0; k < p->count; k++)
            note_failure(g, &g->state[p->members[k]], why);
        part_done(g);
    }
}

/* The group's transactions: one per shard its unsettled members touch, each
 * with those members in group order. */
static void send_transactions(redis_group *g)
{
    unsigned shards = (unsigned)g->srv->cfg->redis.shards;
    int *part_of = malloc(shards * sizeof *part_of);
    unsigned *shard_of = malloc(shards * sizeof *shard_of);
    group_part *parts = calloc(shards, sizeof *parts);
    size_t nparts = 0;
    int oom = !part_of || !shard_of || !parts;
    for (unsigned k = 0; !oom && k < shards; k++)
        part_of[k] = -1;
    for (size_t i = 0; !oom && i < g->count; i++) {
        if (g->state[i].settled)
            continue;
        size_t n;
        const uint16_t *list = live_fold_shards(g->members[i]->fold, &n);
        for (size_t k = 0; !oom && k < n; k++) {
            if (part_of[list[k]] < 0) {
                shard_of[nparts] = list[k];
                parts[nparts] = (group_part){.group = g, .members = malloc(g->count * sizeof(size_t))};
                oom = !parts[nparts].members;
                part_of[list[k]] = (int)nparts++;
            }
            group_part *p = &parts[part_of[list[k]]];
            if (!oom)
                p->members[p->count++] = i;
        }
    }
    free(part_of);
    for (size_t k = 0; oom && parts && k < nparts; k++)
        free(parts[k].members);
    if (oom) {
        free(parts);
        free(shard_of);
        for (size_t i = 0; i < g->count; i++)
            note_failure(g, &g->state[i], "out of memory");
        g->due = 1;
        part_done(g);
        return;
    }
    for (size_t k = 0; k < g->nparts; k++) { /* the claims are answered */
        live_update_free(&g->parts[k].update);
        free(g->parts[k].members);
    }
    free(g->parts);
    g->parts = parts;
    g->nparts = nparts;
    g->due = nparts + 1; /* (+1: held until every part is sent) */
    for (size_t k = 0; k < nparts; k++)
        send_part(g, &parts[k], shard_of[k]);
    free(shard_of);
    part_done(g);
}

/* A claim answered (redis.shards > 1): a duplicate of a batch applied
 * whole, a conflict, a fence or a failure settles its batch now. */
static void on_claimed(void *opaque, const redisReply *reply, const char *reason)
{
    group_part *p = opaque;
    redis_group *g = p->group;
    size_t i = p->members[0];
    member_state *m = &g->state[i];
    char why[256];
    int verdict = reply ? live_claim_verdict(reply, why, sizeof why) : LIVE_FAILED;
    switch (verdict) {
    case LIVE_APPLIED: break;
    case LIVE_DUPLICATE: m->settled = 1; finish_redis(g->members[i], LIVE_DUPLICATE, NULL); break;
    case LIVE_DEFERRED: m->settled = 1; finish_redis(g->members[i], LIVE_DEFERRED, NULL); break;
    case LIVE_CONFLICTED: m->settled = 1; finish_conflict(g->members[i]); break;
    default: m->settled = 1; finish_redis(g->members[i], -1, reply ? why : reason); break;
    }
    if (--g->due == 0)
        send_transactions(g);
}

/* Sends each member's claim (one call each, so each answer is its own). */
static void send_claims(redis_group *g)
{
    batch_pipeline *s = g->srv;
    g->parts = calloc(g->count, sizeof *g->parts);
    g->due = g->count + 1; /* (+1: held until every claim is sent) */
    for (size_t i = 0; i < g->count; i++) {
        group_part *p = g->parts ? &g->parts[g->nparts++] : NULL;
        batch_request *b = g->members[i];
        live_batch batch = {b->batch_id, strlen(b->batch_id), b->digest, b->log_ms};
        char why[256] = "out of memory";
        int sent = 0;
        if (p && (p->members = malloc(sizeof *p->members)) &&
            live_claims_build(&p->update, &batch, 1, s->cfg->dedup.window_seconds,
                              LIVE_MODE_INGEST, (unsigned)s->cfg->redis.shards, why,
                              sizeof why) == 0) {
            p->group = g;
            p->members[0] = i;
            p->count = 1;
            unsigned home = redis_shard_of(b->batch_id, strlen(b->batch_id),
                                           (unsigned)s->cfg->redis.shards);
            sent = redis_router_formatted(s->redis, redis_shard_slot(home), p->update.resp,
                                          p->update.resp_len, on_claimed, p, why, sizeof why) == 0;
        }
        if (!sent) {
            g->state[i].settled = 1;
            finish_redis(b, -1, why);
            g->due--;
        }
    }
    if (--g->due == 0)
        send_transactions(g);
}

/* How many queued batches form the next group (see live_group_length). */
static size_t group_length(const batch_request *head)
{
    const char *ids[REDIS_GROUP_MAX];
    size_t n = 0;
    for (const batch_request *b = head; b && n < REDIS_GROUP_MAX; b = b->next)
        ids[n++] = b->batch_id;
    return live_group_length(ids, n, REDIS_GROUP_MAX);
}

/* Takes the next group from the queue and sends it. */
static void start_group(batch_pipeline *s)
{
    size_t n = group_length(s->redis_head);
    redis_group *g = calloc(1, sizeof *g + n * sizeof g->members[0]);
    member_state *state = calloc(n, sizeof *state);
    if (!g || !state) {
        /* out of memory: fail the head batch so the queue still drains */
        free(g);
        free(state);
        batch_request *b = s->redis_head;
        s->redis_head = b->next;
        if (!s->redis_head)
            s->redis_tail = NULL;
        finish_redis(b, -1, "out of memory");
        return;
    }
    g->srv = s;
    g->count = n;
    g->state = state;
    for (size_t i = 0; i < n; i++) {
        batch_request *b = s->redis_head;
        s->redis_head = b->next;
        b->next = NULL;
        g->members[i] = b;
    }
    if (!s->redis_head)
        s->redis_tail = NULL;
    s->redis_busy = 1;
    if (s->cfg->redis.shards > 1)
        send_claims(g);
    else
        send_transactions(g);
}

/* Sends the queued batches as one group unless a group is in flight; a group
 * that cannot be sent (Redis down) is settled at once, and so on (a loop:
 * settle_group's own call returns at once while this one runs). */
static void pump_redis(batch_pipeline *s)
{
    if (s->pumping)
        return;
    s->pumping = 1;
    unsigned restarts = redis_router_restarts(s->redis);
    if (restarts != s->redis_restarts) { /* Redis may have lost bounds it had */
        live_known_clear(s->known);
        s->redis_restarts = restarts;
    }
    while (!s->redis_busy && s->redis_head)
        start_group(s);
    s->pumping = 0;
}

static void on_kafka_delivered(void *opaque, kafka_outcome outcome, int64_t log_ms,
                               const char *reason)
{
    batch_request *br = opaque;
    br->log_ms = log_ms;
    char err[384];
    if (outcome != KAFKA_DELIVERED) {
        if (br->answered) {
            /* (the deadline answered "unknown"; the client's retry settles it) */
        } else if (outcome == KAFKA_TOO_LARGE) {
            br->srv->kafka_failures[2]++;
            snprintf(err, sizeof err,
                     "kafka refused the batch's record as too large (%s): the broker's "
                     "message.max.bytes is below kafka.max_message_bytes (%d); send smaller "
                     "batches",
                     reason, br->srv->cfg->kafka.max_message_bytes);
            sink_error(&br->sink, 413, "Payload Too Large", err, client_key(br), 0,
                              "not_stored");
        } else if (outcome == KAFKA_MAYBE_STORED) {
            br->srv->kafka_failures[1]++;
            snprintf(err, sizeof err,
                     "kafka did not confirm the batch (%s) but may hold it: retry with the same "
                     "Idempotency-Key, which counts it once",
                     reason);
            sink_error(&br->sink, 503, "Service Unavailable", err, client_key(br), 1,
                              "unknown");
        } else {
            br->srv->kafka_failures[0]++;
            snprintf(err, sizeof err, "kafka did not take the batch: %s; nothing was acknowledged",
                     reason);
            sink_error(&br->sink, 503, "Service Unavailable", err, client_key(br), 1,
                              "not_stored");
        }
        batch_request_finish(br);
        return;
    }
    batch_pipeline *s = br->srv;
    br->next = NULL;
    if (s->redis_tail)
        s->redis_tail->next = br;
    else
        s->redis_head = br;
    s->redis_tail = br;
    pump_redis(s);
}

/* Kafka has not confirmed the batch in time (librdkafka may hold a record that
 * was in flight when a broker died for longer than message.timeout.ms): answer
 * 503 now; the request stays until its delivery report arrives. */
static void on_batch_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batch_request *br = arg;
    if (br->answered)
        return;
    br->answered = 1;
    sink_error(&br->sink, 503, "Service Unavailable",
                      "kafka did not confirm the batch in time; it may still be stored: retry "
                      "with the same Idempotency-Key, which counts it once",
                      client_key(br), 1, "unknown");
}

/* An answer to a POST refused before it became a batch (counted). */
static void refuse_post(batch_pipeline *s, struct evhttp_request *req, int code, const char *status,
                        const char *msg, const char *key, int retry_after)
{
    s->answers[answer_kind(code)]++;
    http_reply_error(req, code, status, msg, key, retry_after);
}

/* The answer to a body body_decode() refused. */
static void reply_undecodable(batch_pipeline *s, struct evhttp_request *req, int decoded,
                              const char *err)
{
    char msg[384];
    switch (decoded) {
    case BODY_TOO_LARGE:
        snprintf(msg, sizeof msg, "%s (ingest.max_body_bytes)", err);
        refuse_post(s, req, 413, "Payload Too Large", msg, NULL, 0);
        break;
    case BODY_UNSUPPORTED:
        refuse_post(s, req, 415, "Unsupported Media Type", err, NULL, 0);
        break;
    case BODY_CORRUPT:
        refuse_post(s, req, 400, "Bad Request", err, NULL, 0);
        break;
    default:
        refuse_post(s, req, 500, "Internal Server Error", err, NULL, 0);
        break;
    }
}

/* Hands the batch's record to Kafka (on_kafka_delivered continues). */
static void send_to_kafka(batch_request *br)
{
    batch_pipeline *s = br->srv;
    char err[1280]; /* (a topic not ready names its every problem) */
    uint8_t *record = br->record;
    br->record = NULL; /* Kafka owns it once sent */
    if (kafka_writer_send(s->kafka, br->batch_id, strlen(br->batch_id), br->digest, record,
                          br->record_len,
                          on_kafka_delivered, br, err, sizeof err) != 0) {
        free(record);
        char msg[sizeof err + 32];
        snprintf(msg, sizeof msg, "%s; nothing was acknowledged", err);
        refuse_batch(br, 503, "Service Unavailable", msg, 1);
    }
}

/* Admission could not be asked (Redis down or confused): the limits fail
 * open, as the live view does; logged at most once a minute. */
static void admit_without_check(batch_request *br, const char *why)
{
    time_t now = time(NULL);
    if (now - br->srv->admission_skip_logged >= 60) {
        log_warn("limits not checked (rate limits, ingest.max_live_series): %s; accepting "
                 "batches without them while Redis cannot answer",
                 why);
        br->srv->admission_skip_logged = now;
    }
    send_to_kafka(br);
}

static void ask_admission(batch_request *br, const live_fold *fold);

static void refuse_too_many_series(batch_request *br, long long count)
{
    char msg[384];
    snprintf(msg, sizeof msg,
             "the batch brings new series but the live view holds about %lld series, the "
             "limit ingest.max_live_series (%d); nothing was stored",
             count, br->srv->cfg->ingest.max_live_series);
    refuse_batch(br, 422, "Unprocessable Entity", msg, 0);
}

/* ADMIT_LOOK_UP (a Redis Cluster at the limit): one lookup per candidate
 * series, each in its own slot; the batch goes on when all are answered. */
typedef struct series_lookup {
    batch_request *br;
    long long count;  /* the live view's series, as admission estimated them */
    size_t due;       /* lookups not answered yet */
    size_t missing;   /* series not in the live view: new ones */
    char why[256];    /* the first failure, "" none */
} series_lookup;

static void lookup_settle(series_lookup *l)
{
    batch_request *br = l->br;
    if (l->why[0]) {
        admission_free(&br->admit);
        admit_without_check(br, l->why);
    } else if (l->missing) {
        admission_free(&br->admit);
        refuse_too_many_series(br, l->count);
    } else {
        admission_note(&br->admit, br->fold, br->srv->known);
        admission_free(&br->admit);
        ask_admission(br, NULL); /* (the rate limits, if any: the series are settled) */
    }
    free(l);
}

static void on_series_looked_up(void *opaque, const redisReply *reply, const char *reason)
{
    series_lookup *l = opaque;
    if (!reply || reply->type != REDIS_REPLY_INTEGER) {
        if (!l->why[0])
            snprintf(l->why, sizeof l->why, "series lookup: %s",
                     !reply                            ? reason
                     : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                        : "unexpected reply");
    } else if (reply->integer == 0) {
        l->missing++;
    }
    if (--l->due == 0)
        lookup_settle(l);
}

static void look_up_series(batch_request *br, long long count)
{
    series_lookup *l = calloc(1, sizeof *l);
    if (!l) {
        admission_free(&br->admit);
        admit_without_check(br, "out of memory looking series up");
        return;
    }
    *l = (series_lookup){.br = br, .count = count, .due = 1}; /* (1: held while sending) */
    for (size_t k = 0; k < br->admit.ncandidates && !l->why[0]; k++) {
        const char *argv[6];
        size_t argvlen[6];
        char frac[REDIS_KEY_MAX], err[200];
        if (admission_lookup_args(&br->admit, k, argv, argvlen, frac, sizeof frac) != 0) {
            snprintf(l->why, sizeof l->why, "series lookup: key too long");
        } else if (redis_router_command(br->srv->redis, redis_slot(argv[3], argvlen[3]), 6, argv,
                                        argvlen, on_series_looked_up, l, err, sizeof err) != 0) {
            snprintf(l->why, sizeof l->why, "series lookup: %s", err);
        } else {
            l->due++;
        }
    }
    if (--l->due == 0)
        lookup_settle(l);
}

static void on_admitted(void *opaque, const redisReply *reply, const char *reason)
{
    batch_request *br = opaque;
    char why[256], msg[384];
    long long number;
    const char *which;
    if (!reply) {
        admit_without_check(br, reason);
        return;
    }
    switch (admission_verdict(reply, &number, &which, why, sizeof why)) {
    case ADMIT_OK:
        admission_note(&br->admit, br->fold, br->srv->known);
        admission_free(&br->admit);
        send_to_kafka(br);
        break;
    case ADMIT_RATE_LIMITED: {
        const auth_client *c = br->client; /* (only a limited client's call answers "rate") */
        long long limit = !c                                          ? 0
                          : strcmp(which, "events_per_second") == 0 ? c->events_per_second
                                                                      : c->batches_per_second;
        long long wait_s = (number + 999) / 1000; /* number: ms until the batch would fit */
        snprintf(msg, sizeof msg, "rate limit of client %s exceeded (%s = %lld in the token file)",
                 c ? c->name : "?", which, limit);
        refuse_batch(br, 429, "Too Many Requests", msg, (int)(wait_s > 0 ? wait_s : 1));
        break;
    }
    case ADMIT_TOO_MANY_SERIES:
        refuse_too_many_series(br, number);
        break;
    case ADMIT_LOOK_UP:
        look_up_series(br, number);
        break;
    case ADMIT_UNANSWERED:
        admit_without_check(br, why);
        break;
    }
}

/* Asks Redis whether the batch may enter (admission.h), unless nothing needs
 * asking; then sends it to Kafka. */
static void admit_batch(batch_request *br)
{
    if (br->client && br->client->events_per_second > 0 &&
        (long long)br->events > br->client->events_per_second) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the batch holds %zu events, more than client %s may send in a second "
                 "(events_per_second = %lld): split it",
                 br->events, br->client->name, br->client->events_per_second);
        refuse_batch(br, 413, "Payload Too Large", msg, 0);
        return;
    }
    ask_admission(br, br->fold);
}

/* The admission call for the batch's series in `fold` (NULL: none, the rate
 * limits alone), or straight to Kafka when there is nothing to ask. */
static void ask_admission(batch_request *br, const live_fold *fold)
{
    batch_pipeline *s = br->srv;
    char err[256];
    int need = admission_build(&br->admit, fold, br->events, s->known, br->client,
                               s->cfg->ingest.max_live_series, !s->cfg->redis.cluster, err,
                               sizeof err);
    if (need < 0) {
        refuse_batch(br, 500, "Internal Server Error", err, 0);
    } else if (need == 0) {
        send_to_kafka(br);
    } else if (redis_router_command(s->redis,
                                    redis_slot(REDIS_KEY_LIVE_SERIES, strlen(REDIS_KEY_LIVE_SERIES)),
                                    br->admit.argc, br->admit.argv, br->admit.argvlen, on_admitted,
                                    br, err, sizeof err) != 0) {
        admission_free(&br->admit);
        admit_without_check(br, err);
    }
}

static void accept_batch(batch_pipeline *s, const batch_sink *sink, const auth_client *client,
                         const char *batch_id, const char *body, size_t len,
                         const uint32_t *extra, size_t folded);

/* 413 (and 1) for a batch over ingest.max_series_per_batch or whose record
 * Kafka would not take (kafka.max_message_bytes); else 0. */
static int refuse_oversized(batch_pipeline *s, const batch_sink *sink, const batch_request *br,
                            size_t record_len)
{
    char msg[256];
    size_t series = live_fold_series(br->fold);
    /* (the record travels with its key and a header holding the batch id) */
    size_t message_len = record_len + 2 * strlen(br->batch_id) + 64;
    if (series > (size_t)s->cfg->ingest.max_series_per_batch)
        snprintf(msg, sizeof msg,
                 "the batch holds %zu distinct series, more than ingest.max_series_per_batch "
                 "(%d): split it",
                 series, s->cfg->ingest.max_series_per_batch);
    else if (message_len > (size_t)s->cfg->kafka.max_message_bytes)
        snprintf(msg, sizeof msg,
                 "the batch's Kafka record would be %zu bytes, more than kafka.max_message_bytes "
                 "(%d): split it",
                 message_len, s->cfg->kafka.max_message_bytes);
    else
        return 0;
    sink_error(sink, 413, "Payload Too Large", msg, client_key(br), 0, "not_stored");
    return 1;
}

/* Why a new batch of `len` bytes must wait (a 503), or NULL. A batch holds
 * its body and about as much again (record, Redis update). */
static const char *busy_reason(const batch_pipeline *s, size_t len)
{
    if (s->draining)
        return "tally-ingest is shutting down";
    if (s->inflight >= (size_t)s->cfg->ingest.max_inflight_batches)
        return "too many batches in flight (ingest.max_inflight_batches)";
    if (s->inflight_bytes + 2 * len > (size_t)s->cfg->ingest.max_inflight_bytes && s->inflight > 0)
        return "too many bytes in flight (ingest.max_inflight_bytes)";
    return NULL;
}

static void handle_post_events(batch_pipeline *s, struct evhttp_request *req,
                               const auth_client *client)
{
    struct evbuffer *input = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(input);
    const char *busy = busy_reason(s, len);
    if (busy) {
        refuse_post(s, req, 503, "Service Unavailable", busy, NULL, 1);
        return;
    }
    char batch_id[IDEMPOTENCY_KEY_MAX + 1];
    const char *given = evhttp_find_header(evhttp_request_get_input_headers(req), "Idempotency-Key");
    if (given) {
        if (!valid_batch_id(given)) {
            refuse_post(s, req, 400, "Bad Request",
                        "invalid Idempotency-Key header: 1-128 characters of [A-Za-z0-9._:-]",
                        NULL, 0);
            return;
        }
        snprintf(batch_id, sizeof batch_id, "%s", given);
    } else if (generate_batch_id(batch_id, sizeof batch_id) != 0) {
        refuse_post(s, req, 500, "Internal Server Error", "no randomness for a batch id", NULL, 0);
        return;
    }

    const uint8_t *raw = len ? evbuffer_pullup(input, -1) : (const uint8_t *)"";
    if (!raw) {
        refuse_post(s, req, 500, "Internal Server Error", "out of memory reading the body", NULL, 0);
        return;
    }
    const uint8_t *plain;
    int owned = 0;
    char err[256];
    int decoded = body_decode(evhttp_find_header(evhttp_request_get_input_headers(req),
                                                 "Content-Encoding"),
                              raw, len, (size_t)s->cfg->ingest.max_body_bytes, &plain, &len,
                              &owned, err, sizeof err);
    if (decoded != BODY_OK) {
        reply_undecodable(s, req, decoded, err);
        return;
    }
    batch_sink sink = {req, NULL, NULL, s};
    accept_batch(s, &sink, client, batch_id, (const char *)plain, len, NULL, 0);
    if (owned)
        free((void *)plain);
}

/* Marks the batch's last `folded` events as folded counters (extra[i] lines
 * each beyond the first); the lines they came from were all counters of one
 * value each. Returns the lines the batch stands for, or 0 when the events do
 * not match (a defect of the gathering: the batch is refused with 500). */
static size_t mark_folded(statsd_batch *b, const uint32_t *extra, size_t folded)
{
    if (folded > b->count)
        return 0;
    size_t lines = b->count;
    metric_event *ev = b->events + (b->count - folded);
    for (size_t i = 0; i < folded; i++) {
        if (ev[i].type != METRIC_COUNTER || !event_amount_in_domain(ev[i].value, ev[i].sample_rate))
            return 0;
        ev[i].extra_lines = extra[i];
        lines += extra[i];
    }
    return lines;
}

/* Parses, folds and encodes a plain body and sends it to Kafka (the batch's
 * strings are copied: the body may go once this returns). The StatsD
 * listeners' folded counter lines are the body's last `folded` lines, with
 * their extra_lines in extra (HTTP: none). */
static void accept_batch(batch_pipeline *s, const batch_sink *sink, const auth_client *client,
                         const char *batch_id, const char *body, size_t len,
                         const uint32_t *extra, size_t folded)
{
    char err[256];
    int64_t received = clock_wall_ms();
    int rc = statsd_parse_batch(&s->batch, body, len, &s->limits, received, err, sizeof err);
    if (rc == STATSD_INVALID) {
        reply_invalid_batch(sink, &s->batch);
        return;
    }
    if (rc != 0) {
        sink_error(sink, 500, "Internal Server Error", err, NULL, 0, NULL);
        return;
    }
    size_t ignored = s->batch.events_ignored + s->batch.service_checks_ignored;
    if (s->batch.count == 0 && ignored > 0) {
        reply_only_ignored(sink, &s->batch);
        return;
    }
    if (s->batch.count == 0) {
        sink_error(sink, 400, "Bad Request", "empty batch: the body has no StatsD lines", NULL, 0, NULL);
        return;
    }

    size_t lines = folded ? mark_folded(&s->batch, extra, folded) : s->batch.count;
    if (lines == 0) {
        sink_error(sink, 500, "Internal Server Error",
                   "the folded counter lines do not match the batch's events", NULL, 0, NULL);
        return;
    }
    batch_request *br = calloc(1, sizeof *br);
    if (!br) {
        sink_error(sink, 500, "Internal Server Error", "out of memory", NULL, 0, NULL);
        return;
    }
    br->srv = s;
    br->sink = *sink;
    br->started_ns = clock_mono_ns();
    br->client = client;
    br->events = lines;
    br->ignored = ignored;
    /* keys are scoped per client: one client cannot claim another's key */
    int id_len = client ? snprintf(br->batch_id, sizeof br->batch_id, "%s/%s", client->name, batch_id)
                        : snprintf(br->batch_id, sizeof br->batch_id, "%s", batch_id);
    br->key_offset = client ? strlen(client->name) + 1 : 0;
    dedup_body_digest(body, len, br->digest);
    br->fold = live_fold_new(s->batch.events, s->batch.count, (unsigned)s->cfg->redis.shards, err,
                             sizeof err);
    if (!br->fold ||
        record_encode_compact(br->batch_id, (size_t)id_len, received, s->batch.events,
                              s->batch.count, &br->record, &br->record_len, err, sizeof err) != 0) {
        free(br->record);
        live_fold_free(br->fold);
        free(br);
        sink_error(sink, 500, "Internal Server Error", err, batch_id, 0, NULL);
        return;
    }
    if (refuse_oversized(s, sink, br, br->record_len)) {
        free(br->record);
        live_fold_free(br->fold);
        free(br);
        return;
    }
    br->bytes = len + br->record_len;
    s->inflight++;
    s->inflight_bytes += br->bytes;
    int wait_ms = s->cfg->kafka.delivery_timeout_ms + 1000;
    struct timeval wait = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    br->deadline = evtimer_new(s->base, on_batch_deadline, br);
    if (!br->deadline || evtimer_add(br->deadline, &wait) != 0) {
        sink_error(sink, 500, "Internal Server Error", "libevent: cannot arm a timer", batch_id, 0, NULL);
        batch_request_finish(br);
        return;
    }
    admit_batch(br);
}

void batch_pipeline_post(batch_pipeline *p, struct evhttp_request *req, const auth_client *client)
{
    handle_post_events(p, req, client);
}

int batch_pipeline_has_room(const batch_pipeline *p, size_t len)
{
    return p->draining || busy_reason(p, len) == NULL; /* (draining: submit answers why not) */
}

void batch_pipeline_submit(batch_pipeline *p, const char *body, size_t len,
                           const uint32_t *extra, size_t folded, batch_done_fn done, void *opaque)
{
    batch_sink sink = {NULL, done, opaque, p};
    char batch_id[IDEMPOTENCY_KEY_MAX + 1];
    const char *busy = busy_reason(p, len);
    if (busy)
        sink_error(&sink, 503, NULL, busy, NULL, 1, NULL);
    else if (generate_batch_id(batch_id, sizeof batch_id) != 0)
        sink_error(&sink, 500, NULL, "no randomness for a batch id", NULL, 0, NULL);
    else
        accept_batch(p, &sink, NULL, batch_id, body, len, extra, folded);
}

batch_pipeline *batch_pipeline_new(struct event_base *base, const tally_config *cfg,
                                   kafka_writer *kafka, redis_router *redis, char *err,
                                   size_t errlen)
{
    batch_pipeline *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->base = base;
    p->cfg = cfg;
    p->kafka = kafka;
    p->redis = redis;
    p->fail_open = strcmp(cfg->redis.on_unavailable, "accept") == 0;
    statsd_batch_init(&p->batch);
    p->limits.max_lines = (size_t)cfg->ingest.max_lines;
    p->limits.max_name_len = (size_t)cfg->ingest.max_name_length;
    p->limits.max_tags_len = (size_t)cfg->ingest.max_tags_length;
    p->limits.max_errors = (size_t)cfg->ingest.max_errors_reported;
    p->known = live_known_new(KNOWN_SLOTS, KNOWN_MAX_BYTES);
    if (!p->known) {
        snprintf(err, errlen, "out of memory");
        batch_pipeline_free(p);
        return NULL;
    }
    return p;
}

void batch_pipeline_drain(batch_pipeline *p)
{
    p->draining = 1;
}

int batch_pipeline_draining(const batch_pipeline *p)
{
    return p->draining;
}

int batch_pipeline_fail_open(const batch_pipeline *p)
{
    return p->fail_open;
}

void batch_pipeline_metrics(const batch_pipeline *p, prom_text *t)
{
    prom_text_family(t, "tally_ingest_batches_total", "counter",
                     "Batches answered (HTTP and the StatsD listeners), by answer.");
    for (int i = 0; i < ANSWER_KINDS; i++) {
        const char *labels[] = {"result", answer_names[i], NULL};
        prom_text_sample(t, "tally_ingest_batches_total", labels, (double)p->answers[i]);
    }
    prom_text_single(t, "tally_ingest_events_accepted_total", "counter",
                     "Events in batches acknowledged (Kafka holds them; a folded counter counts "
                     "its lines).",
                     (double)p->events_accepted);
    prom_text_single(t, "tally_ingest_lines_rejected_total", "counter",
                     "Bad lines in batches refused as invalid.", (double)p->lines_rejected);
    prom_text_histogram(t, "tally_ingest_ack_duration_seconds",
                        "From a batch's arrival to its 200 (Kafka and Redis hold it).", &p->ack);
    static const char *const kafka_outcomes[] = {"not_stored", "unknown", "too_large"};
    prom_text_family(t, "tally_ingest_kafka_delivery_failures_total", "counter",
                     "Batches Kafka did not confirm, by outcome.");
    for (int i = 0; i < 3; i++) {
        const char *labels[] = {"outcome", kafka_outcomes[i], NULL};
        prom_text_sample(t, "tally_ingest_kafka_delivery_failures_total", labels,
                         (double)p->kafka_failures[i]);
    }
    prom_text_single(t, "tally_ingest_redis_apply_failures_total", "counter",
                     "Batches in Kafka whose live-view update failed (marked stale or 503).",
                     (double)p->redis_failures);
    prom_text_single(t, "tally_ingest_inflight_batches", "gauge",
                     "Batches accepted and not answered yet.", (double)p->inflight);
    prom_text_single(t, "tally_ingest_inflight_bytes", "gauge",
                     "Bytes held for batches not answered yet.", (double)p->inflight_bytes);
}

size_t batch_pipeline_inflight(const batch_pipeline *p)
{
    return p->inflight;
}

void batch_pipeline_free(batch_pipeline *p)
{
    if (!p)
        return;
    statsd_batch_free(&p->batch);
    live_known_free(p->known);
    free(p);
}
