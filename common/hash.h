/*
 * hash.h — FNV-1a, the one hash behind Tally's small open-addressing tables
 * (the flusher's aggregate and pending batch ids, the record encoder's string
 * table, the live-update fold). Not collision-resistant: the keys are metric
 * names, tags and batch ids, and a flood of collisions can only slow a table
 * down, never change its result. Its 64-bit form digests request bodies.
 */
#ifndef TALLY_HASH_H
#define TALLY_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV1A_INIT 2166136261u

/* Continues an FNV-1a hash `h` over `len` bytes of `data` (NULL allowed when len == 0). */
static inline uint32_t hash_fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

/* Mixes a 64-bit integer into an FNV-1a hash. */
static inline uint32_t hash_fnv1a_u64(uint32_t h, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint32_t)(v & 0xffu);
        h *= 16777619u;
        v >>= 8;
    }
    return h;
}

/* The 64-bit FNV-1a of `len` bytes: the body digest kept with an
 * idempotency key (dedup.h). */
static inline uint64_t hash_fnv1a64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

#endif
