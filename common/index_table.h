/*
 * index_table.h — the one hash table of Tally's in-memory indexes: an
 * open-addressing table (linear probing, load at most 1/2, capacity a power
 * of two) whose slots hold an index into the caller's dense array, plus one
 * (0 = empty). The caller keeps its entries (and their keys) in that array,
 * in insertion order, which is also the iteration order; the table only
 * answers "where is the entry with this key" in O(1). Keys are compared and
 * re-hashed through the caller's callbacks, so entries of any shape work:
 * batch ids (flusher/pending.c), series and rows (flusher/aggregate.c),
 * record strings (common/record.c), fold entries (common/live_update.c).
 *
 * Entries are never removed one by one; index_table_clear() empties the
 * table (keeping its memory) when the caller empties its array.
 */
#ifndef TALLY_INDEX_TABLE_H
#define TALLY_INDEX_TABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct index_table {
    uint32_t *slots;  /* entry index + 1, 0 = empty */
    size_t cap;       /* power of two */
    size_t count;     /* entries */
} index_table;

/* equal(ctx, index): whether entry `index` has the key being looked up.
 * hash_of(ctx, index): the hash of entry `index`'s key (for growing). */
typedef int (*index_equal_fn)(const void *ctx, uint32_t index);
typedef uint32_t (*index_hash_fn)(const void *ctx, uint32_t index);

/* An empty table of `cap` slots (a power of two >= 2). 0, or -1 out of memory. */
int index_table_init(index_table *t, size_t cap);

/* Frees the slots; the table may be initialised again. */
void index_table_free(index_table *t);

/* Empties the table, keeping its capacity. */
void index_table_clear(index_table *t);

/* The index of the entry whose key `equal` accepts, probing from `hash`,
 * or -1 when there is none. */
long index_table_find(const index_table *t, uint32_t hash, index_equal_fn equal, const void *ctx);

/* Records that entry `index` (the caller's next one, == count) has `hash`;
 * the key must not be in the table yet. Grows (re-hashing every entry with
 * hash_of) first when one more entry would pass load 1/2. 0, or -1 when out
 * of memory (the table is then unchanged). */
int index_table_add(index_table *t, uint32_t hash, uint32_t index, index_hash_fn hash_of,
                    const void *ctx);

#endif
