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
 * with a logged reason), because its counters could silently vanish.
 */
#ifndef TALLY_REDIS_WRITER_H
#define TALLY_REDIS_WRITER_H

#include <stddef.h>

#include <event2/event.h>

#include "config.h"
#include "live_update.h"

typedef struct redis_writer redis_writer;

/* result: 1 = applied, 0 = duplicate batch (already applied before), -1 = error (reason). */
typedef void (*redis_apply_fn)(void *opaque, int result, const char *reason);

/* One field of a hash read: the series' canonical tags and its value. */
typedef struct redis_series {
    const char *tags;
    size_t tags_len;
    double value;
} redis_series;

/* ok = 1: `series` holds n entries (valid during the call only). */
typedef void (*redis_hash_fn)(void *opaque, int ok, const redis_series *series, size_t n,
                              const char *reason);

/* Starts connecting (does not wait). Returns NULL with err filled on failure. */
redis_writer *redis_writer_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen);

/* Sends the batch's EVAL. The writer borrows `u` until `done` runs. Returns -1
 * with err filled (and never calls `done`) when Redis is down. */
int redis_writer_apply(redis_writer *w, const live_update *u, redis_apply_fn done, void *opaque,
                       char *err, size_t errlen);

/* HGETALL of key; values parsed as doubles. Same failure rule as apply. */
int redis_writer_read_hash(redis_writer *w, const char *key, redis_hash_fn done, void *opaque,
                           char *err, size_t errlen);

/* 1 when connected and accepted (durability checked), else 0; reason says why. */
int redis_writer_is_up(const redis_writer *w, const char **reason);

/* Disconnects; pending calls are answered with an error. */
void redis_writer_free(redis_writer *w);

#endif
