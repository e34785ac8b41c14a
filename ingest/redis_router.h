/*
 * redis_router.h — tally-ingest's state Redis: one server, or the masters of
 * a Redis Cluster (redis.cluster = true; redis.host:port is a seed node).
 *
 * Every call names the slot its keys are in (redis_shard_slot() for a
 * shard's transaction or a claim, the admission keys' slot, ...) and goes to
 * the master serving that slot, over a redis_writer of its own per master
 * (connection, checks, reconnects, circuit breaker: redis_writer.h). With one
 * server the slot is ignored and every call goes to its one writer, exactly
 * as redis_writer.h describes.
 *
 * Routing in a cluster (hiredis 0.14 has none): the slot map comes from
 * CLUSTER SLOTS (redis_slots.h), asked of a master that is up, at start and
 * again whenever a call cannot be placed (a slot without an owner, a master
 * down or refusing because of where the call went). A refused call is sent
 * again, within ROUTER_RETRY_MS of its first send:
 *   MOVED        the slot moved for good: the map takes it at once and the
 *                call goes to the new owner;
 *   ASK, TRYAGAIN  the slot is being migrated: sent again after a short pause
 *                until the migration ends (and MOVED points on); writes to
 *                that shard wait so long;
 *   CLUSTERDOWN, a lost connection, no answer in time: a failover or a dead
 *                master: the map is asked again and the call goes to whoever
 *                serves the slot then.
 * Nothing of a refused call was applied (Redis discards a transaction any
 * command of which was refused, EXECABORT), and a transaction sent again
 * after a lost connection meets its own dedup keys if it did apply (the
 * guard, live_update.h), so sending again never applies anything twice.
 * Any other answer is the caller's. Until the first map, calls fail at once.
 *
 * Replication: with redis.min_replicas_acked = N > 0, each applied
 * transaction is followed by WAIT N (redis.timeout_ms / 2) on its connection and
 * answered once WAIT has; fewer replicas than N marks the live view stale
 * (a failover could lose it), the group is answered as applied all the same
 * (Kafka holds it).
 *
 * Restarts: every shard's master's run_id is recorded in the shard
 * (tally:{S}:live:run_id, checked at start, after every reconnect and after
 * the map changes); another one there means another process now serves the
 * shard (a restart, which may have lost its last second of AOF, or a
 * failover): the live view is marked stale and redis_router_restarts() counts it.
 */
#ifndef TALLY_REDIS_ROUTER_H
#define TALLY_REDIS_ROUTER_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "live_update.h"
#include "redis_writer.h"

/* How long a call may be sent again after its first send. */
#define ROUTER_RETRY_MS 10000

typedef struct redis_router redis_router;

/* Starts connecting (does not wait). Returns NULL with err filled. */
redis_router *redis_router_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen);

/* As redis_writer_apply(), to the master of `slot`. */
int redis_router_apply(redis_router *r, unsigned slot, const live_update *u, size_t group_size,
                       redis_apply_fn done, void *opaque, char *err, size_t errlen);

/* As redis_writer_formatted() / redis_writer_command(), to the master of `slot`. */
int redis_router_formatted(redis_router *r, unsigned slot, const char *resp, size_t len,
                           redis_reply_fn done, void *opaque, char *err, size_t errlen);
int redis_router_command(redis_router *r, unsigned slot, int argc, const char **argv,
                         const size_t *argvlen, redis_reply_fn done, void *opaque, char *err,
                         size_t errlen);

/* As redis_writer_note_missed(): every shard's stale mark. */
void redis_router_note_missed(redis_router *r, const char *reason);

/* As redis_writer_restarts(); in a cluster, the shards whose master was found
 * to be another process than before. */
unsigned redis_router_restarts(const redis_router *r);

/* 1 when every slot has a master and every master is up; else 0, reason why. */
int redis_router_is_up(const redis_router *r, const char **reason);

/* The writer of redis.host:port (for INFO). */
redis_writer *redis_router_seed(const redis_router *r);

void redis_router_free(redis_router *r);

#endif
