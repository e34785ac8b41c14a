/*
 * redis_nodes.h — the rebuild's Redis (blocking hiredis): one server, or the
 * masters of a Redis Cluster (redis.cluster), each command sent to the
 * master of its slot.
 *
 * Contract: redis_nodes_open() connects to redis.host:port (timeout, AUTH as
 * redis_auth.h says); in a cluster it reads the slot map there (CLUSTER
 * SLOTS, redis_slots.h), requires every slot to have a master and connects
 * to each master the same way. The map is not followed afterwards: a command
 * answered MOVED or ASK (the cluster's slots moved during the rebuild) is an
 * error naming that, and the rebuild, which is safe to run again, stops.
 * With one server every slot is that server.
 *
 * Pipelining: redis_nodes_append() queues a command on its master's
 * connection without reading; redis_nodes_drain() reads every queued reply
 * of every master, failing at the first error reply or lost connection.
 */
#ifndef TALLY_REDIS_NODES_H
#define TALLY_REDIS_NODES_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "config.h"

typedef struct redis_nodes redis_nodes;

/* Returns 0 with *out set, or -1 with err filled (*out NULL). */
int redis_nodes_open(redis_nodes **out, const tally_config *cfg, char *err, size_t errlen);

/* Closes every connection. NULL is a no-op. */
void redis_nodes_close(redis_nodes *n);

/* The masters (1 for one server), and the connection of master i. */
size_t redis_nodes_count(const redis_nodes *n);
redisContext *redis_nodes_at(const redis_nodes *n, size_t i);

/* The connection of the master serving slot (< REDIS_SLOTS). */
redisContext *redis_nodes_for_slot(const redis_nodes *n, unsigned slot);

/* The slot a command's key is in: argv[3] of an EVAL, else argv[1]. */
unsigned redis_nodes_command_slot(int argc, const char **argv, const size_t *argvlen);

/* Queues a command on the master of its key (redis_nodes_command_slot).
 * Returns 0, or -1 with err filled. */
int redis_nodes_append(redis_nodes *n, int argc, const char **argv, const size_t *argvlen,
                       char *err, size_t errlen);

/* Replies queued and not yet read, on every master. */
size_t redis_nodes_pending(const redis_nodes *n);

/* Reads every queued reply. Returns 0, or -1 with err filled. */
int redis_nodes_drain(redis_nodes *n, char *err, size_t errlen);

/* Fills err with "WHAT: REASON" for a failed call on c (its error text, or
 * a redirection explained); returns -1. */
int redis_nodes_failed(const redisContext *c, const redisReply *reply, const char *what, char *err,
                       size_t errlen);

#endif
