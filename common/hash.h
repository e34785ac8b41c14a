/*
 * hash.h — FNV-1a, the one hash behind Tally's small open-addressing tables
 * (the flusher's aggregate and pending batch ids, the record encoder's string
 * table, the live-update fold). Not collision-resistant: the keys are metric
 * names, tags and batch ids, and a flood of collisions can only slow a table
 * down, never change its result. (Request bodies and set members are
 * digested by hash_digest64 below, which reads eight bytes at a time; a set
 * member's registers are chosen by hash_murmur64a, Redis' HyperLogLog hash.)
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

/* Reads 8 bytes as a little-endian integer (one load on x86; the same digest
 * on every architecture). */
static inline uint64_t hash_load_le64(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

/* A 64-bit digest of `len` bytes, eight at a time: each word is mixed in by
 * xor, an odd multiply and a xor-shift (each step a bijection of the state),
 * then the state is avalanched. The body digest kept with an idempotency key
 * (dedup.h); several times faster than FNV-1a on request bodies, which it
 * reads whole once per batch. Also a set member's digest (event.h: member),
 * the only form in which a member leaves tally-ingest: changing this function
 * changes every set's registers (a member digested twice differently counts
 * twice). */
static inline uint64_t hash_digest64(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)len;
    for (; len >= 8; p += 8, len -= 8) {
        h = (h ^ hash_load_le64(p)) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t tail = 0;
    for (size_t i = 0; i < len; i++)
        tail |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tail) * 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

/* MurmurHash64A (Austin Appleby's, public domain) of `len` bytes with
 * `seed`, exactly as Redis computes it (hyperloglog.c, MurmurHash64A) on a
 * little-endian machine: eight bytes at a time read little-endian, the tail
 * mixed in as the switch in the original does. Redis' PFADD hashes each
 * element with seed 0xadc83b19 (redis_hll.h); the function is here, and not
 * there, because it is a hash like the others. Pinned by unit_redis_hll,
 * whose vectors are checked against a real redis-server's registers. */
static inline uint64_t hash_murmur64a(const void *data, size_t len, uint64_t seed)
{
    const uint64_t m = 0xc6a4a7935bd1e995ull;
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)len * m);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t k = hash_load_le64(p) * m;
        k ^= k >> 47;
        h = (h ^ (k * m)) * m;
    }
    if (len > 0) {
        for (size_t i = len; i-- > 0;)
            h ^= (uint64_t)p[i] << (8 * i);
        h *= m;
    }
    h ^= h >> 47;
    h *= m;
    h ^= h >> 47;
    return h;
}

#endif
