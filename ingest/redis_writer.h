/*
 * redis_writer.h — the Redis edge of tally-ingest (hiredis async on libevent).
 *
 * Contract: one connection, reconnected automatically with backoff after it
 * drops. Every call either answers through its callback exactly once, within
 * redis.timeout_ms, or fails at once (returns -1) when the connection is down;
 * a call that times out resets the connection (a Redis that stopped answering
 * must not make every later request wait). On every (re)connect the server's
 * persistence is checked: with redis.require_durable, a Redis without
 * appendonly=yes and maxmemory-policy=noeviction is refused (treated as down,
 * with a logged reason), because its counters could silently vanish; a Redis
 * that refuses CONFIG GET is refused too (it cannot be verified). Its run_id
 * is compared with the one recorded in tally:live:run_id by whoever connected
 * before: a restarted Redis marks the live view stale.
 *
 * Circuit breaking: a call that times out drops the connection; until a new
 * connection has passed the persistence check, every call fails at once
 * (reconnects back off from 100 ms to 2 s; every 100 ms while Redis is
 * loading its dataset, so it is used as soon as it can be), so an outage
 * costs at most one timeout per in-flight call, never one per request.
 *
 * Staleness: redis_writer_note_missed() records that an acknowledged batch
 * did not reach Redis; the writer then sets tally:{S}:live:stale (every
 * shard) as soon as it can, except in a shard whose fence a rebuild holds
 * (live_stale_mark_script: that rebuild replays the batch), so readers know
 * the live view lags until the next rebuild deletes the mark.
 */
#ifndef TALLY_REDIS_WRITER_H
#define TALLY_REDIS_WRITER_H

#include <stddef.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"
#include "live_update.h"

typedef struct redis_writer redis_writer;

/* result: LIVE_APPLIED, LIVE_DEFERRED (a rebuild will apply the group),
 * LIVE_DUPLICATE (nothing applied; dups[0..ndups) are the 1-based positions of
 * the batches already applied before), LIVE_RETRY (nothing applied: another
 * client changed a watched key; send the group again), or LIVE_FAILED
 * (reason; when Redis refused only some updates the writer has also marked
 * the live view stale). */
typedef void (*redis_apply_fn)(void *opaque, int result, const size_t *dups, size_t ndups,
                               const char *reason);

/* Starts connecting (does not wait). Returns NULL with err filled on failure. */
redis_writer *redis_writer_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen);

/* The same edge for one master of a Redis Cluster (redis_router.h): the
 * same checks, but the run_id is only read (the router records it per
 * shard), and no stale marks of its own (the router routes them). */
redis_writer *redis_writer_new_node(struct event_base *base, const tally_config *cfg,
                                    const char *host, int port, char *err, size_t errlen);

/* The same edge for the cache Redis (cache.host:cache.port, cache.timeout_ms,
 * no AUTH): instead of the durability check it requires an allkeys-*
 * maxmemory-policy (a Redis that never evicts is refused as a cache); no
 * run_id or staleness tracking. Only redis_writer_command() is for it. */
redis_writer *redis_writer_new_cache(struct event_base *base, const tally_config *cfg, char *err,
                                     size_t errlen);

/* Sends a group's transaction (live_update_build, group_size batches); u
 * (and the folds it borrows from) must stay valid until `done` is called.
 * Fields the group leaves near int64's range are carried afterwards
 * (live_update_carry). Returns -1 with err filled (and never calls `done`)
 * when Redis is down. */
int redis_writer_apply(redis_writer *w, const live_update *u, size_t group_size,
                       redis_apply_fn done, void *opaque, char *err, size_t errlen);

/* reply: the command's reply (valid during the call only; it may be an error
 * reply), or NULL with reason filled (connection lost, timed out). */
typedef void (*redis_reply_fn)(void *opaque, const redisReply *reply, const char *reason);

/* Sends one command (argv as for redisCommandArgv) and answers through done
 * exactly once. Same failure rule as apply. */
int redis_writer_command(redis_writer *w, int argc, const char **argv, const size_t *argvlen,
                         redis_reply_fn done, void *opaque, char *err, size_t errlen);

/* Sends one command already RESP-encoded (resp[0..len), e.g. one of a
 * live_update's) and answers as redis_writer_command does. */
int redis_writer_formatted(redis_writer *w, const char *resp, size_t len, redis_reply_fn done,
                           void *opaque, char *err, size_t errlen);

/* An acknowledged batch could not be applied: mark the live view stale. */
void redis_writer_note_missed(redis_writer *w, const char *reason);

/* How many times a reconnect found another Redis process than before (its
 * run_id, kept in tally:live:run_id, changed): each time the live view was
 * marked stale, and what the caller knows of Redis' contents is void. */
unsigned redis_writer_restarts(const redis_writer *w);

/* Connections that passed the checks so far, and the run_id of the server
 * the last one reached ("" until then). */
unsigned redis_writer_accepts(const redis_writer *w);
const char *redis_writer_run_id(const redis_writer *w);

/* The address this writer connects to, and how many times it changed: with
 * cache.cluster, the cache writer follows the master of the cache's slot
 * (CLUSTER SLOTS at every connection, MOVED answers, the next master known
 * when a connection fails). */
unsigned redis_writer_address(const redis_writer *w, const char **host, int *port);

/* 1 when connected and accepted (durability checked), else 0; reason says why. */
int redis_writer_is_up(const redis_writer *w, const char **reason);

/* Disconnects; pending calls are answered with an error. */
void redis_writer_free(redis_writer *w);

#endif
