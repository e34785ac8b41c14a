/*
 * set_union.h — every set series' HyperLogLog over all its buckets, read
 * from SQLite: what the Redis rebuild writes back into the live view (DESIGN
 * rule 5: the live value of a set is the union of its flushed buckets plus
 * the Kafka tail, which the rebuild then PFADDs on top).
 *
 * A set's buckets are sketches rows of type 'set' (schema.h), each an hll
 * (hll.h) whose registers are the ones Redis' PFADD sets for the same
 * members (redis_hll.h). Their union is the register-wise max, so the union
 * handed out here has, register for register, what a Redis key PFADDed with
 * every flushed member would have.
 *
 * Reads only; not thread-safe (one connection, one caller).
 */
#ifndef TALLY_SET_UNION_H
#define TALLY_SET_UNION_H

#include <stddef.h>

#include <sqlite3.h>

#include "hll.h"

/* Called once per set series with its name and tags (NUL-terminated) and
 * its union h, all valid during the call only. A non-zero return stops the
 * walk. */
typedef int (*set_union_fn)(void *arg, const char *name, size_t name_len, const char *tags,
                            size_t tags_len, const hll *h);

/*
 * Calls fn for every set series of db, in (name, tags) order, with the union
 * of its buckets' hlls. Run it inside a read transaction to see one
 * snapshot. Returns 0; fn's non-zero return (err untouched); or -1 with err
 * filled: an SQLite error, out of memory, or a corrupt stored hll (naming
 * the series and the bucket: nothing is written for a set that cannot be
 * read whole).
 */
int set_union_each(sqlite3 *db, set_union_fn fn, void *arg, char *err, size_t errlen);

#endif
