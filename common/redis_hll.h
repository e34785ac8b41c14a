/*
 * redis_hll.h — a Tally set as a Redis HyperLogLog (pure: no I/O).
 *
 * The live view keeps each set series in a Redis HyperLogLog (redis_keys.h)
 * and SQLite keeps each set bucket in an hll (hll.h). For the two to hold the
 * same registers for the same members, which is what lets the Redis rebuild
 * write SQLite's registers back into Redis (rule 5) and lets a replay PFADD
 * on top of them, both start from the same element and the same hash:
 *
 *   element   the 8 little-endian bytes of the member's digest (event.h:
 *             member), what tally-ingest PFADDs;
 *   hash      MurmurHash64A(element, 8, seed 0xadc83b19) (hash.h), what
 *             Redis' PFADD computes of it, and what the flusher gives
 *             hll_add_hash();
 *   register  hash & 16383, rank 1 + the trailing zeros of
 *             (hash >> 14) | 2^50: the same rule in Redis and in hll.c.
 *
 * Redis' dense string, what redis_hll_dense() writes (and what
 * `PFDEBUG TODENSE` then `GET` show of a key):
 *
 *   "HYLL"  u8 encoding 0 (dense)  3 bytes 0  8 bytes cached cardinality,
 *   little-endian, its top bit set = not valid (so Redis computes it at
 *   the next PFCOUNT), then 12288 bytes: the 16384 6-bit registers, register
 *   i in bits 6i..6i+5 read as one little-endian bit string (hll.h's form 2).
 *
 * Redis accepts such a string from SET as a HyperLogLog (PFADD, PFCOUNT,
 * PFMERGE work on it), 12304 bytes whatever the set's size.
 *
 * Redis' sparse string, what redis_hll_sparse() writes (and what Redis keeps
 * for a small set): the same header with encoding 1, then the 16384 registers
 * run-length coded in order: ZERO 00xxxxxx (xxxxxx + 1 registers at 0,
 * 1..64), XZERO 01xxxxxx yyyyyyyy (the 14-bit xxxxxxyyyyyyyy + 1 registers at
 * 0, 1..16384), VAL 1vvvvvxx (xx + 1 registers, 1..4, at vvvvv + 1, 1..32).
 * A register above 32 cannot be written sparse. A set of a few members takes
 * tens of bytes so: the rebuild writes a set sparse when that fits in Redis'
 * default hll-sparse-max-bytes (3000) and dense otherwise, as PFADD would have
 * left it, rather than 12 KB for every set (a million small sets would
 * otherwise grow by 12 GB at a rebuild, past any maxmemory).
 */
#ifndef TALLY_REDIS_HLL_H
#define TALLY_REDIS_HLL_H

#include <stddef.h>
#include <stdint.h>

#include "hash.h"
#include "hll.h"

#define REDIS_HLL_SEED 0xadc83b19ull
#define REDIS_HLL_ELEMENT_BYTES 8
#define REDIS_HLL_HEADER_BYTES 16
#define REDIS_HLL_DENSE_BYTES (REDIS_HLL_HEADER_BYTES + HLL_DENSE_BYTES) /* 12304 */

/* The PFADD element of a member digest: its 8 bytes, little-endian. */
static inline void redis_hll_element(uint64_t member, unsigned char out[REDIS_HLL_ELEMENT_BYTES])
{
    for (int i = 0; i < REDIS_HLL_ELEMENT_BYTES; i++)
        out[i] = (unsigned char)(member >> (8 * i));
}

/* The hash Redis' PFADD computes of that element: hll_add_hash() of it sets
 * the register PFADD sets. */
static inline uint64_t redis_hll_hash(uint64_t member)
{
    unsigned char element[REDIS_HLL_ELEMENT_BYTES];
    redis_hll_element(member, element);
    return hash_murmur64a(element, sizeof element, REDIS_HLL_SEED);
}

/* Redis' default hll-sparse-max-bytes: a sparse string past it is made dense. */
#define REDIS_HLL_SPARSE_MAX_BYTES 3000

/* Writes h's registers as a Redis dense HyperLogLog string (format above,
 * cached cardinality marked not valid) into out. */
void redis_hll_dense(const hll *h, unsigned char out[REDIS_HLL_DENSE_BYTES]);

/* Writes h's registers as a Redis sparse HyperLogLog string (format above,
 * cached cardinality marked not valid) into out, at most cap bytes. Returns
 * its length, or 0 when it cannot be (a register above 32, or more than cap
 * bytes; out then holds nothing useful). */
size_t redis_hll_sparse(const hll *h, unsigned char *out, size_t cap);

/* Writes h as Redis would hold its registers: sparse when that takes at most
 * REDIS_HLL_SPARSE_MAX_BYTES, else dense. Returns the string's length. */
size_t redis_hll_string(const hll *h, unsigned char out[REDIS_HLL_DENSE_BYTES]);

#endif
