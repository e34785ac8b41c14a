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

int index_table_grow(index_table *t, index_hash_fn hash_of, const void *ctx)
{
    size_t cap = t->cap * 2;
    uint32_t *fresh = calloc(cap, sizeof *fresh);
    if (!fresh)
        return -1;
    for (size_t i = 0; i < t->count; i++)
        index_table_place(fresh, cap, hash_of(ctx, (uint32_t)i), (uint32_t)i);
    free(t->slots);
    t->slots = fresh;
    t->cap = cap;
    return 0;
}
