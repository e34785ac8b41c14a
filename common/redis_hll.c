/*
 * redis_hll.c — see redis_hll.h. The header is Redis' own; the dense
 * registers are hll.c's packed form, which has Redis' layout; the sparse
 * form is Redis' run-length opcodes over the same registers.
 */
#include "redis_hll.h"

#include <string.h>

#define REDIS_HLL_DENSE 0u           /* the encoding byte of a dense HyperLogLog */
#define REDIS_HLL_SPARSE 1u          /* ... of a sparse one */
#define REDIS_HLL_CARD_INVALID 0x80u /* top bit of the cached cardinality's last byte */
#define SPARSE_VAL_BIT 0x80u         /* 1vvvvvxx */
#define SPARSE_XZERO_BIT 0x40u       /* 01xxxxxx yyyyyyyy */
#define SPARSE_VAL_MAX_VALUE 32
#define SPARSE_VAL_MAX_LEN 4
#define SPARSE_ZERO_MAX_LEN 64

static void put_header(unsigned char *out, unsigned encoding)
{
    memset(out, 0, REDIS_HLL_HEADER_BYTES);
    memcpy(out, "HYLL", 4);
    out[4] = (unsigned char)encoding;
    out[15] = REDIS_HLL_CARD_INVALID;
}

void redis_hll_dense(const hll *h, unsigned char out[REDIS_HLL_DENSE_BYTES])
{
    put_header(out, REDIS_HLL_DENSE);
    hll_pack_registers(h, out + REDIS_HLL_HEADER_BYTES);
}

/* The length of the run of registers equal to regs[i] from i on, at most max. */
static size_t run_at(const uint8_t *regs, size_t i, size_t max)
{
    size_t n = 1;
    while (i + n < HLL_REGISTERS && n < max && regs[i + n] == regs[i])
        n++;
    return n;
}

size_t redis_hll_sparse(const hll *h, unsigned char *out, size_t cap)
{
    uint8_t regs[HLL_REGISTERS];
    hll_registers(h, regs);
    if (cap < REDIS_HLL_HEADER_BYTES)
        return 0;
    put_header(out, REDIS_HLL_SPARSE);
    size_t w = REDIS_HLL_HEADER_BYTES;
    for (size_t i = 0; i < HLL_REGISTERS;) {
        uint8_t v = regs[i];
        size_t n = run_at(regs, i, v ? SPARSE_VAL_MAX_LEN : HLL_REGISTERS);
        size_t bytes = v || n <= SPARSE_ZERO_MAX_LEN ? 1 : 2;
        if (v > SPARSE_VAL_MAX_VALUE || w + bytes > cap)
            return 0;
        if (v)
            out[w] = (unsigned char)(SPARSE_VAL_BIT | (v - 1) << 2 | (n - 1));
        else if (bytes == 1)
            out[w] = (unsigned char)(n - 1);
        else {
            out[w] = (unsigned char)(SPARSE_XZERO_BIT | (n - 1) >> 8);
            out[w + 1] = (unsigned char)((n - 1) & 0xffu);
        }
        w += bytes;
        i += n;
    }
    return w;
}

size_t redis_hll_string(const hll *h, unsigned char out[REDIS_HLL_DENSE_BYTES])
{
    size_t n = redis_hll_sparse(h, out, REDIS_HLL_SPARSE_MAX_BYTES);
    if (n)
        return n;
    redis_hll_dense(h, out);
    return REDIS_HLL_DENSE_BYTES;
}
