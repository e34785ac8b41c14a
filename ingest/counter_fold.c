/*
 * counter_fold.c — see counter_fold.h.
 */
#include "counter_fold.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"

#define WHOLE_LIMIT 9007199254740992.0 /* 2^53: whole sums below are exact */
#define FIRST_SLOTS 64

struct fold_entry {
    uint32_t hash;
    uint32_t extra;       /* lines folded in beyond the first */
    size_t key_off;       /* in keys: the name, then the sections */
    size_t name_len, rest_len;
    double sum, rate;
};

/* The key being looked up: a line's name and its sections. */
typedef struct fold_key {
    const counter_fold *f;
    const char *name, *rest;
    size_t name_len, rest_len;
} fold_key;

static uint32_t key_hash(const char *name, size_t name_len, const char *rest, size_t rest_len)
{
    return hash_fnv1a(hash_fnv1a(HASH_FNV1A_INIT, name, name_len), rest, rest_len);
}

static int key_equal(const void *ctx, uint32_t index)
{
    const fold_key *k = ctx;
    const fold_entry *e = &k->f->entries[index];
    const char *key = k->f->keys + e->key_off;
    return e->name_len == k->name_len && e->rest_len == k->rest_len &&
           memcmp(key, k->name, k->name_len) == 0 &&
           memcmp(key + k->name_len, k->rest, k->rest_len) == 0;
}

static uint32_t entry_hash(const void *ctx, uint32_t index)
{
    return ((const fold_key *)ctx)->f->entries[index].hash;
}

void counter_fold_init(counter_fold *f)
{
    memset(f, 0, sizeof *f);
}

void counter_fold_free(counter_fold *f)
{
    index_table_free(&f->index);
    free(f->entries);
    free(f->keys);
    memset(f, 0, sizeof *f);
}

/* Whether an entry at rate `rate` may hold `sum` over 1 + extra lines. */
static int in_domain(double sum, uint64_t extra, double rate)
{
    return extra < UINT32_MAX && fabs(sum) / rate <= EVENT_AMOUNT_MAX &&
           (1.0 + (double)extra) / rate <= EVENT_AMOUNT_MAX;
}

static int grow(void **p, size_t *cap, size_t need, size_t size, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *grown = realloc(*p, n * size);
    if (!grown)
        return -1;
    *p = grown, *cap = n;
    return 0;
}

static int add_entry(counter_fold *f, const fold_key *k, uint32_t hash, const metric_event *ev)
{
    if (!f->index.slots && index_table_init(&f->index, FIRST_SLOTS) != 0)
        return -1;
    size_t key_len = k->name_len + k->rest_len;
    if (grow((void **)&f->entries, &f->cap, f->count + 1, sizeof *f->entries, 64) != 0 ||
        grow((void **)&f->keys, &f->keys_cap, f->keys_len + key_len, 1, 4096) != 0 ||
        index_table_add(&f->index, hash, (uint32_t)f->count, entry_hash, k) != 0)
        return -1;
    memcpy(f->keys + f->keys_len, k->name, k->name_len);
    memcpy(f->keys + f->keys_len + k->name_len, k->rest, k->rest_len);
    f->entries[f->count++] = (fold_entry){.hash = hash, .key_off = f->keys_len,
                                          .name_len = k->name_len, .rest_len = k->rest_len,
                                          .sum = ev->value, .rate = ev->sample_rate};
    f->keys_len += key_len;
    f->text_bytes += key_len + 1 + COUNTER_FOLD_SUM_MAX + 1;
    return 1;
}

int counter_fold_add(counter_fold *f, const char *line, size_t len, const metric_event *ev)
{
    size_t name_len = ev->name_len;
    if (ev->type != METRIC_COUNTER || ev->extra_lines || ev->name != line ||
        name_len + 1 >= len || line[name_len] != ':')
        return 0;
    const char *value = line + name_len + 1;
    const char *bar = memchr(value, '|', len - name_len - 1);
    if (!bar || memchr(value, ':', (size_t)(bar - value)))
        return 0; /* no sections, or packed values */
    fold_key k = {f, line, bar, name_len, (size_t)(line + len - bar)};
    uint32_t hash = key_hash(k.name, k.name_len, k.rest, k.rest_len);
    long at = f->index.slots ? index_table_find(&f->index, hash, key_equal, &k) : -1;
    if (at < 0)
        return add_entry(f, &k, hash, ev);
    fold_entry *e = &f->entries[at];
    double sum = e->sum + ev->value;
    if (!in_domain(sum, (uint64_t)e->extra + 1, e->rate))
        return 0;
    e->sum = sum;
    e->extra++;
    return 1;
}

void counter_fold_clear(counter_fold *f)
{
    f->count = f->keys_len = f->text_bytes = 0;
    index_table_clear(&f->index);
}

size_t counter_fold_count(const counter_fold *f)
{
    return f->count;
}

size_t counter_fold_bytes(const counter_fold *f)
{
    return f->text_bytes;
}

/* The sum as the parser reads it back exactly: a whole number plainly,
 * anything else with 17 significant digits. */
static int format_sum(char *out, double sum)
{
    if (fabs(sum) < WHOLE_LIMIT && sum == trunc(sum))
        return snprintf(out, COUNTER_FOLD_SUM_MAX, "%.0f", sum);
    return snprintf(out, COUNTER_FOLD_SUM_MAX, "%.17g", sum);
}

size_t counter_fold_write(counter_fold *f, char *out, uint32_t *extra)
{
    char *w = out;
    for (size_t i = 0; i < f->count; i++) {
        const fold_entry *e = &f->entries[i];
        const char *key = f->keys + e->key_off;
        memcpy(w, key, e->name_len);
        w += e->name_len;
        *w++ = ':';
        w += format_sum(w, e->sum);
        memcpy(w, key + e->name_len, e->rest_len);
        w += e->rest_len;
        *w++ = '\n';
        extra[i] = e->extra;
    }
    counter_fold_clear(f);
    return (size_t)(w - out);
}
