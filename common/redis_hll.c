/*
 * redis_hll.c — see redis_hll.h. Only the header is Redis' own: the
 * registers are hll.c's packed form, which has Redis' layout.
 */
#include "redis_hll.h"

#include <string.h>

#define REDIS_HLL_DENSE 0u          /* the encoding byte of a dense HyperLogLog */
#define REDIS_HLL_CARD_INVALID 0x80u /* top bit of the cached cardinality's last byte */

void redis_hll_dense(const hll *h, unsigned char out[REDIS_HLL_DENSE_BYTES])
{
    memset(out, 0, REDIS_HLL_HEADER_BYTES);
    memcpy(out, "HYLL", 4);
    out[4] = REDIS_HLL_DENSE;
    out[15] = REDIS_HLL_CARD_INVALID;
    hll_pack_registers(h, out + REDIS_HLL_HEADER_BYTES);
}
