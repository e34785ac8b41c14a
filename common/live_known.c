/*
 * live_known.c — see live_known.h.
 *
 * A direct-mapped table: the series hash picks one slot; a different series
 * landing there replaces the entry (its knowledge is simply forgotten).
 * Each entry owns a copy of name and tags, compared in full, so two series
 * never share an entry. When the copies would exceed the byte limit, the
 * whole table is emptied first: rare, and always safe.
 */
#include "live_known.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct bound_entry {
    char *key; /* name then tags, owned; NULL = empty slot */
    uint32_t hash;
    uint16_t name_len, tags_len;
    int type;
    double min, max; /* +inf / -inf: no bound known */
} bound_entry;

struct live_known {
    bound_entry *slots;
    size_t mask;
    size_t bytes, max_bytes;
    size_t count;
};

live_known *live_known_new(size_t slots, size_t max_bytes)
{
    assert(slots > 0 && (slots & (slots - 1)) == 0);
    live_known *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->slots = calloc(slots, sizeof *b->slots);
    if (!b->slots) {
        free(b);
        return NULL;
    }
    b->mask = slots - 1;
    b->max_bytes = max_bytes;
    return b;
}

static void clear_entry(live_known *b, bound_entry *e)
{
    if (!e->key)
        return;
    b->bytes -= (size_t)e->name_len + e->tags_len;
    b->count--;
    free(e->key);
    e->key = NULL;
}

void live_known_clear(live_known *b)
{
    for (size_t i = 0; i <= b->mask; i++)
        clear_entry(b, &b->slots[i]);
}

void live_known_free(live_known *b)
{
    if (!b)
        return;
    for (size_t i = 0; i <= b->mask; i++)
        free(b->slots[i].key);
    free(b->slots);
    free(b);
}

static const bound_entry *find(const live_known *b, uint32_t hash, int type, const char *name,
                               size_t name_len, const char *tags, size_t tags_len)
{
    const bound_entry *e = &b->slots[hash & b->mask];
    if (!e->key || e->hash != hash || e->type != type || e->name_len != name_len ||
        e->tags_len != tags_len ||
        memcmp(e->key, name, name_len) != 0 ||
        (tags_len && memcmp(e->key + name_len, tags, tags_len) != 0))
        return NULL;
    return e;
}

int live_known_covers_min(const live_known *b, uint32_t hash, int type, const char *name,
                          size_t name_len, const char *tags, size_t tags_len, double min)
{
    const bound_entry *e = b ? find(b, hash, type, name, name_len, tags, tags_len) : NULL;
    return e && e->min <= min;
}

int live_known_covers_max(const live_known *b, uint32_t hash, int type, const char *name,
                          size_t name_len, const char *tags, size_t tags_len, double max)
{
    const bound_entry *e = b ? find(b, hash, type, name, name_len, tags, tags_len) : NULL;
    return e && e->max >= max;
}

/* The series' entry, created (without bounds) if new; NULL when it cannot be
 * held (too long, out of memory: forgetting is always safe). */
static bound_entry *entry_for(live_known *b, uint32_t hash, int type, const char *name,
                              size_t name_len, const char *tags, size_t tags_len)
{
    bound_entry *known = (bound_entry *)find(b, hash, type, name, name_len, tags, tags_len);
    if (known)
        return known;
    size_t len = name_len + tags_len;
    if (len > b->max_bytes)
        return NULL;
    bound_entry *e = &b->slots[hash & b->mask];
    clear_entry(b, e);
    if (b->bytes + len > b->max_bytes)
        for (size_t i = 0; i <= b->mask; i++)
            clear_entry(b, &b->slots[i]);
    char *key = malloc(len ? len : 1);
    if (!key)
        return NULL;
    memcpy(key, name, name_len);
    if (tags_len)
        memcpy(key + name_len, tags, tags_len);
    *e = (bound_entry){.key = key, .hash = hash, .type = type, .name_len = (uint16_t)name_len,
                       .tags_len = (uint16_t)tags_len, .min = INFINITY, .max = -INFINITY};
    b->bytes += len;
    b->count++;
    return e;
}

void live_known_note(live_known *b, uint32_t hash, int type, const char *name, size_t name_len,
                     const char *tags, size_t tags_len, double min, double max)
{
    bound_entry *e = entry_for(b, hash, type, name, name_len, tags, tags_len);
    if (!e)
        return;
    if (min < e->min)
        e->min = min;
    if (max > e->max)
        e->max = max;
}

int live_known_admitted(const live_known *b, uint32_t hash, int type, const char *name,
                        size_t name_len, const char *tags, size_t tags_len)
{
    /* an entry exists only for a series Redis has (admitted or applied) */
    return b && find(b, hash, type, name, name_len, tags, tags_len) != NULL;
}

void live_known_note_admitted(live_known *b, uint32_t hash, int type, const char *name,
                              size_t name_len, const char *tags, size_t tags_len)
{
    (void)entry_for(b, hash, type, name, name_len, tags, tags_len);
}

size_t live_known_count(const live_known *b)
{
    return b->count;
}
