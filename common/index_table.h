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
 *
 * The one exception is common/live_known.c: a direct-mapped cache whose
 * slot is picked by the hash alone and whose entries are evicted by the
 * next series landing there, a different structure with a different job
 * (remembering a bounded amount, not indexing every entry). ingest's
 * query cache (query_cache.c) keeps small linear lists, not a table.
 */
#ifndef TALLY_INDEX_TABLE_H
#define TALLY_INDEX_TABLE_H

#include <assert.h>
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
 * or -1 when there is none. Inline, so that a caller's `equal` (a constant
 * at every call site) is inlined into the probe loop: an out-of-line find
 * called it through a pointer on every probe, which cost a hand-written
 * table's speed. */
static inline long index_table_find(const index_table *t, uint32_t hash, index_equal_fn equal,
                                    const void *ctx)
{
    size_t mask = t->cap - 1;
    for (size_t j = hash & mask; t->slots[j]; j = (j + 1) & mask)
        if (equal(ctx, t->slots[j] - 1))
            return (long)(t->slots[j] - 1);
    return -1;
}

/* Puts `index` in the first empty slot from `hash` (there is one: load
 * <= 1/2). Internal to index_table_add() and index_table_grow(). */
static inline void index_table_place(uint32_t *slots, size_t cap, uint32_t hash, uint32_t index)
{
    size_t j = hash & (cap - 1);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = index + 1;
}

/* Doubles the capacity, re-placing every entry (re-hashed with hash_of).
 * 0, or -1 when out of memory (the table is then unchanged). Called by
 * index_table_add(); not needed elsewhere. */
int index_table_grow(index_table *t, index_hash_fn hash_of, const void *ctx);

/* Records that entry `index` (the caller's next one, == count) has `hash`;
 * the key must not be in the table yet. Grows (re-hashing every entry with
 * hash_of) first when one more entry would pass load 1/2. 0, or -1 when out
 * of memory (the table is then unchanged). Inline for the same reason as
 * index_table_find(); only the growth is out of line. */
static inline int index_table_add(index_table *t, uint32_t hash, uint32_t index,
                                  index_hash_fn hash_of, const void *ctx)
{
    assert(index == t->count);
    if (t->count >= UINT32_MAX - 1)
        return -1;
    if ((t->count + 1) * 2 > t->cap && index_table_grow(t, hash_of, ctx) != 0)
        return -1;
    index_table_place(t->slots, t->cap, hash, index);
    t->count++;
    return 0;
}

#endif
