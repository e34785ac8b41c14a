/*
 * pending.c — the pending flush's batch ids, rejected records and offsets
 * (see pending.h).
 *
 * Batch ids are appended to one growable byte buffer and referred to by
 * offset, so growing it never invalidates an entry; the index table
 * (index_table.h) answers "already in this flush?". Offsets are a flat array indexed by partition (-1 = none):
 * partitions are few (kafka.partitions <= 1024). Rejected records are rare
 * and each owns a malloc'd copy of its payload, freed at clear.
 */
#include "pending.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "index_table.h"

#define PENDING_INITIAL_SLOTS 64u

struct pending {
    int partitions;
    int64_t *next_offsets;
    size_t messages;
    size_t skipped;

    pending_batch *batches;
    size_t nbatches, batches_cap;
    char *ids;
    size_t ids_len, ids_cap;
    index_table index;       /* batch id -> its entry in batches */
    int64_t max_log_ms;

    pending_reject *rejects;
    size_t nrejects, rejects_cap;
    size_t reject_bytes;
};

pending *pending_new(int partitions)
{
    assert(partitions >= 1);
    pending *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->partitions = partitions;
    p->next_offsets = malloc((size_t)partitions * sizeof *p->next_offsets);
    p->ids = malloc(4096);
    if (!p->next_offsets || !p->ids || index_table_init(&p->index, PENDING_INITIAL_SLOTS) != 0) {
        pending_free(p);
        return NULL;
    }
    p->ids_cap = 4096;
    pending_clear(p);
    return p;
}

void pending_free(pending *p)
{
    if (!p)
        return;
    pending_clear(p);
    free(p->next_offsets);
    free(p->batches);
    free(p->ids);
    index_table_free(&p->index);
    free(p->rejects);
    free(p);
}

void pending_clear(pending *p)
{
    for (int i = 0; i < p->partitions; i++)
        p->next_offsets[i] = -1;
    p->messages = 0;
    p->skipped = 0;
    p->nbatches = 0;
    p->ids_len = 0;
    index_table_clear(&p->index);
    p->max_log_ms = INT64_MIN;
    for (size_t i = 0; i < p->nrejects; i++)
        free(p->rejects[i].payload);
    p->nrejects = 0;
    p->reject_bytes = 0;
}

void pending_note_offset(pending *p, int32_t partition, int64_t offset)
{
    assert(partition >= 0 && partition < p->partitions && offset >= 0);
    assert(offset + 1 > p->next_offsets[partition]);
    p->next_offsets[partition] = offset + 1;
    p->messages++;
}

void pending_note_skipped(pending *p) { p->skipped++; }

static uint32_t id_hash(const char *id, size_t len) { return hash_fnv1a(HASH_FNV1A_INIT, id, len); }

/* The key being looked up, for the index table's callbacks. */
typedef struct id_key {
    const pending *p;
    const char *id;
    size_t len;
} id_key;

static int id_equal(const void *ctx, uint32_t index)
{
    const id_key *k = ctx;
    const pending_batch *b = &k->p->batches[index];
    return b->id_len == k->len && memcmp(k->p->ids + b->id_off, k->id, k->len) == 0;
}

static uint32_t id_hash_at(const void *ctx, uint32_t index)
{
    const pending *p = ((const id_key *)ctx)->p;
    return id_hash(p->ids + p->batches[index].id_off, p->batches[index].id_len);
}

const pending_batch *pending_find_batch(const pending *p, const char *id, size_t id_len)
{
    id_key k = {p, id, id_len};
    long at = index_table_find(&p->index, id_hash(id, id_len), id_equal, &k);
    return at >= 0 ? &p->batches[at] : NULL;
}

void pending_renew_batch(pending *p, const pending_batch *b, int64_t log_ms, const char *digest,
                         int32_t partition, int64_t offset)
{
    assert(b >= p->batches && b < p->batches + p->nbatches);
    pending_batch *mine = &p->batches[b - p->batches];
    mine->log_ms = log_ms;
    snprintf(mine->digest, DEDUP_DIGEST_TEXT, "%s", digest);
    mine->partition = partition;
    mine->offset = offset;
    if (log_ms > p->max_log_ms)
        p->max_log_ms = log_ms;
}

int pending_add_batch(pending *p, const char *id, size_t id_len, int64_t log_ms,
                      const char *digest, int32_t partition, int64_t offset, char *err,
                      size_t errlen)
{
    assert(!pending_find_batch(p, id, id_len));
    if (p->nbatches >= UINT32_MAX - 1)
        goto oom;
    if (p->nbatches == p->batches_cap) {
        size_t cap = p->batches_cap ? p->batches_cap * 2 : 256;
        pending_batch *b = realloc(p->batches, cap * sizeof *b);
        if (!b)
            goto oom;
        p->batches = b;
        p->batches_cap = cap;
    }
    if (p->ids_cap - p->ids_len < id_len) {
        size_t cap = p->ids_cap;
        while (cap - p->ids_len < id_len)
            cap *= 2;
        char *ids = realloc(p->ids, cap);
        if (!ids)
            goto oom;
        p->ids = ids;
        p->ids_cap = cap;
    }
    id_key k = {p, id, id_len};
    if (index_table_add(&p->index, id_hash(id, id_len), (uint32_t)p->nbatches, id_hash_at, &k) != 0)
        goto oom;
    if (id_len)
        memcpy(p->ids + p->ids_len, id, id_len);
    p->batches[p->nbatches] = (pending_batch){
        .id_off = p->ids_len, .id_len = id_len, .log_ms = log_ms,
        .partition = partition, .offset = offset,
    };
    snprintf(p->batches[p->nbatches].digest, DEDUP_DIGEST_TEXT, "%s", digest);
    p->ids_len += id_len;
    p->nbatches++;
    if (log_ms > p->max_log_ms)
        p->max_log_ms = log_ms;
    return 0;
oom:
    snprintf(err, errlen, "pending: out of memory (%zu batches)", p->nbatches);
    return -1;
}

int pending_add_reject(pending *p, int32_t partition, int64_t offset, const char *reason,
                       const void *payload, size_t len, char *err, size_t errlen)
{
    if (p->nrejects == p->rejects_cap) {
        size_t cap = p->rejects_cap ? p->rejects_cap * 2 : 16;
        pending_reject *r = realloc(p->rejects, cap * sizeof *r);
        if (!r) {
            snprintf(err, errlen, "pending: out of memory (%zu rejected records)", p->nrejects);
            return -1;
        }
        p->rejects = r;
        p->rejects_cap = cap;
    }
    pending_reject *r = &p->rejects[p->nrejects];
    *r = (pending_reject){.partition = partition, .offset = offset, .len = len};
    snprintf(r->reason, sizeof r->reason, "%s", reason);
    if (len) {
        r->payload = malloc(len);
        if (!r->payload) {
            snprintf(err, errlen, "pending: out of memory (rejected payload of %zu bytes)", len);
            return -1;
        }
        memcpy(r->payload, payload, len);
    }
    p->nrejects++;
    p->reject_bytes += len;
    return 0;
}

int pending_partitions(const pending *p) { return p->partitions; }
size_t pending_messages(const pending *p) { return p->messages; }
size_t pending_skipped(const pending *p) { return p->skipped; }
size_t pending_batch_count(const pending *p) { return p->nbatches; }
size_t pending_reject_count(const pending *p) { return p->nrejects; }
size_t pending_reject_bytes(const pending *p) { return p->reject_bytes; }

const pending_batch *pending_batch_at(const pending *p, size_t i)
{
    assert(i < p->nbatches);
    return &p->batches[i];
}

const char *pending_batch_id(const pending *p, const pending_batch *b)
{
    assert(b->id_off + b->id_len <= p->ids_len);
    return p->ids + b->id_off;
}

const pending_reject *pending_reject_at(const pending *p, size_t i)
{
    assert(i < p->nrejects);
    return &p->rejects[i];
}

int64_t pending_next_offset(const pending *p, int32_t partition)
{
    assert(partition >= 0 && partition < p->partitions);
    return p->next_offsets[partition];
}

int64_t pending_max_log_ms(const pending *p)
{
    assert(p->nbatches > 0);
    return p->max_log_ms;
}
