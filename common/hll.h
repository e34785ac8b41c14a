/*
 * hll.h — HyperLogLog distinct counts for StatsD sets (|s). Pure: no I/O.
 *
 * Contract. An hll estimates how many distinct members were added. A
 * member's 64-bit hash is hash_digest64(member) (hash.h) for hll_add();
 * Tally's sets add hll_add_hash(redis_hll_hash(digest)) instead, the hash
 * Redis' PFADD computes (redis_hll.h). Dense, the sketch is 2^14 = 16384
 * six-bit registers: register `hash & 16383` keeps the highest rank offered,
 * rank = 1 + the trailing zero bits of the other 50 bits (51 when all zero),
 * which is Redis' rule too (hllPatLen: 1 + the trailing zeros of
 * (hash >> 14) | 2^50), so with Redis' hash the registers are PFADD's,
 * register for register (unit_redis_hll checks them against PFDEBUG GETREG). A small set is held sparse at precision 25
 * (register `hash & (2^25 - 1)`, rank over the other 39 bits, 1..40), only
 * its set registers, as HLL++ does, turning dense past HLL_SPARSE_MAX of
 * them. hll_count() applies Ertl's improved estimator ("New cardinality
 * estimation algorithms for HyperLogLog sketches", 2017, as Redis 5+ does)
 * to the registers' histogram:
 *   - sparse (up to ~1000 members): exact or off by one in practice (two
 *     members share one of 2^25 registers with probability ~n^2 / 2^26);
 *   - dense: standard error 1.04 / sqrt(16384) = 0.81% whatever the count,
 *     no bias switch between small and large counts (about 0.5% just after
 *     the switch to dense, where it behaves like linear counting).
 * The estimate depends only on the registers, and merge is the register-
 * wise max (a sparse entry folds into exactly the dense register its hash
 * would have set), so the merge of sketches is exactly the sketch of the
 * union of their members: the union's estimate, and byte-identical
 * encodings.
 *
 * Memory: sparse, 4 bytes per set register (at most 4 KB); dense, 16 KB (one
 * byte per register), kept until hll_clear().
 *
 * Serialised form (version 1; stored in SQLite BLOBs: a public on-disk
 * format, only ever extended under a new version byte):
 *
 *   u8  version     HLL_FORMAT_VERSION (1)
 *   u8  precision   HLL_PRECISION (14)
 *   u8  form        1 sparse, 2 dense, 3 dense list
 *   sparse (1):     a list of precision-25 registers: index < 2^25, rank 1..40
 *   dense list (3): a list of dense registers: index < 16384, rank 1..51
 *   list := varint n                            set registers, 0..2^25 / 0..16384
 *           n x varint (gap << 6 | rank)        gap = index - previous index - 1
 *                                               (previous = -1 for the first),
 *                                               so indexes strictly increase
 *   dense (2):      12288 bytes: register i (0..51) in bits 6i..6i+5 of the
 *                   bytes read as one little-endian bit string (4 registers
 *                   per 3 bytes: r0 | r1 << 6 | r2 << 12 | r3 << 18, low byte
 *                   first)
 *
 * varint: unsigned LEB128, minimal (varint.h). Nothing may follow. The
 * encoder writes a sparse sketch in form 1, a dense one in form 3 while that
 * is shorter than form 2 (up to ~18000 members), else in form 2, so the same
 * registers always give the same bytes. The decoder accepts any form for any
 * registers (a form-1 list longer than HLL_SPARSE_MAX decodes dense).
 */
#ifndef TALLY_HLL_H
#define TALLY_HLL_H

#include <stddef.h>
#include <stdint.h>

#define HLL_FORMAT_VERSION 1u
#define HLL_PRECISION 14
#define HLL_REGISTERS (1u << HLL_PRECISION)
#define HLL_RANK_MAX (64 - HLL_PRECISION + 1) /* 51 */
#define HLL_SPARSE_PRECISION 25
#define HLL_SPARSE_REGISTERS (1u << HLL_SPARSE_PRECISION)
#define HLL_SPARSE_RANK_MAX (64 - HLL_SPARSE_PRECISION + 1) /* 40 */
#define HLL_SPARSE_MAX 1024 /* set registers kept sparse in memory */
#define HLL_FORM_SPARSE 1u
#define HLL_FORM_DENSE 2u
#define HLL_FORM_DENSE_LIST 3u
#define HLL_DENSE_BYTES (HLL_REGISTERS * 6 / 8) /* 12288 */

typedef struct hll hll;

/* A new, empty sketch (sparse, nothing allocated but itself), or NULL when
 * out of memory. Freed with hll_free(). */
hll *hll_new(void);

/* Frees h; NULL is allowed. */
void hll_free(hll *h);

/* Adds a member (len bytes at member; NULL allowed when len == 0): its hash
 * is hash_digest64(member, len). Returns 1 if a register changed (a sparse
 * entry counts as a register), 0 if not (the sketch and its estimate did not
 * move: always so for a member added before), or -1 when out of memory (h
 * unchanged). */
int hll_add(hll *h, const void *member, size_t len);

/* The same as hll_add() for a member already hashed to 64 uniform bits. */
int hll_add_hash(hll *h, uint64_t hash);

/* Register-wise max of `from` into `into` (from unchanged; into == from is a
 * no-op). Returns 0, or -1 when out of memory (into unchanged). */
int hll_merge(hll *into, const hll *from);

/* The estimated number of distinct members (0 for an empty sketch). */
uint64_t hll_count(const hll *h);

/* Whether h is in its dense in-memory form (1) or sparse (0). */
int hll_is_dense(const hll *h);

/* Empties h and releases its registers (back to sparse). */
void hll_clear(hll *h);

/* The 2^14 dense registers of h into regs: a sparse sketch's entries folded
 * into the dense registers their hashes would have set (so a sketch gives the
 * same registers whichever form it is in). */
void hll_registers(const hll *h, uint8_t regs[HLL_REGISTERS]);

/* h's dense registers (hll_registers) packed as the dense form's body
 * (form 2 above: 12288 bytes, register i in bits 6i..6i+5, little-endian bit
 * order), which is also the register layout of Redis' dense HyperLogLog
 * (redis_hll.h). */
void hll_pack_registers(const hll *h, unsigned char out[HLL_DENSE_BYTES]);

/* Encodes h (format above) into a new malloc'd buffer *out of *len bytes,
 * owned by the caller: at most 3 + HLL_DENSE_BYTES. Deterministic. Returns
 * 0, or -1 when out of memory (*out and *len untouched). */
int hll_encode(const hll *h, unsigned char **out, size_t *len);

/* Decodes the len bytes at buf and MERGES them into `into` (register-wise
 * max). The whole input is validated first: returns 0, or -1 with into
 * unchanged and err (when errlen > 0) naming the problem ("truncated",
 * "unsupported hll version 3", "register 5 rank 60 out of range", ...).
 * Never reads outside buf. */
int hll_decode(hll *into, const unsigned char *buf, size_t len, char *err, size_t errlen);

#endif
