/*
 * index_table.c — see index_table.h.
 */
#include "index_table.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int index_table_init(index_table *t, size_t cap)
{
    assert(cap >= 2 && (cap & (cap - 1)) == 0);
    t->slots = calloc(cap, sizeof *t->slots);
    t->cap = t->slots ? cap : 0;
    t->count = 0;
    return t->slots ? 0 : -1;
}

void index_table_free(index_table *t)
{
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
}

void index_table_clear(index_table *t)
{
    if (t->slots)
        memset(t->slots, 0, t->cap * sizeof *t->slots);
    t->count = 0;
}

long index_table_find(const index_table *t, uint32_t hash, index_equal_fn equal, const void *ctx)
{
    size_t mask = t->cap - 1;
    for (size_t j = hash & mask; t->slots[j]; j = (j + 1) & mask)
        if (equal(ctx, t->slots[j] - 1))
            return (long)(t->slots[j] - 1);
    return -1;
}

static void place(uint32_t *slots, size_t cap, uint32_t hash, uint32_t index)
{
    size_t j = hash & (cap - 1);
    while (slots[j])
        j = (j + 1) & (cap - 1);
    slots[j] = index + 1;
}

/* Doubles the capacity, re-placing every entry. */
static int grow(index_table *t, index_hash_fn hash_of, const void *ctx)
{
    size_t cap = t->cap * 2;
    uint32_t *fresh = calloc(cap, sizeof *fresh);
    if (!fresh)
        return -1;
    for (size_t i = 0; i < t->count; i++)
        place(fresh, cap, hash_of(ctx, (uint32_t)i), (uint32_t)i);
    free(t->slots);
    t->slots = fresh;
    t->cap = cap;
    return 0;
}

int index_table_add(index_table *t, uint32_t hash, uint32_t index, index_hash_fn hash_of,
                    const void *ctx)
{
    assert(index == t->count);
    if (t->count >= UINT32_MAX - 1)
        return -1;
    if ((t->count + 1) * 2 > t->cap && grow(t, hash_of, ctx) != 0)
        return -1;
    place(t->slots, t->cap, hash, index);
    t->count++;
    return 0;
}
