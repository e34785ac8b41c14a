/*
 * varint.h — the byte-level primitives of Tally's sketch formats (ddsketch.h,
 * hll.h): unsigned LEB128 varints, zigzag for signed integers, and IEEE-754
 * binary64 doubles as eight little-endian bytes.
 *
 * A varint is 1 to 10 bytes, seven bits each, least significant group first,
 * the high bit of every byte but the last set. Readers accept only the
 * minimal form: a last byte of zero after the first (an overlong encoding)
 * and more than 64 bits are refused, so one value has exactly one spelling
 * and a decoder that accepts a blob can re-encode it to the same bytes.
 * Header-only and pure; every reader checks its bounds and never reads past
 * `end`.
 */
#ifndef TALLY_VARINT_H
#define TALLY_VARINT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VARINT_MAX_BYTES 10u

/* Writes v at w (which has room for VARINT_MAX_BYTES); returns the byte after it. */
static inline unsigned char *varint_put(unsigned char *w, uint64_t v)
{
    while (v >= 0x80u) {
        *w++ = (unsigned char)(v | 0x80u);
        v >>= 7;
    }
    *w++ = (unsigned char)v;
    return w;
}

/* The number of bytes varint_put() writes for v (1..10). */
static inline size_t varint_size(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80u) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Reads a minimal varint at *c, before end. Returns 0 and advances *c, or -1
 * (truncated, overlong, or more than 64 bits) with *c unspecified. */
static inline int varint_get(const unsigned char **c, const unsigned char *end, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < VARINT_MAX_BYTES; i++) {
        if (*c >= end)
            return -1;
        unsigned char b = *(*c)++;
        if (i == VARINT_MAX_BYTES - 1 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7Fu) << (7 * i);
        if (!(b & 0x80u)) {
            if (i > 0 && b == 0)
                return -1;
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ... so small magnitudes stay short. */
static inline uint64_t varint_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

static inline int64_t varint_unzigzag(uint64_t v)
{
    return (int64_t)(v >> 1) ^ -(int64_t)(v & 1u);
}

/* Writes the bit pattern of d as 8 little-endian bytes; returns the byte after. */
static inline unsigned char *varint_put_f64(unsigned char *w, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    for (int i = 0; i < 8; i++)
        *w++ = (unsigned char)(bits >> (8 * i));
    return w;
}

/* Reads 8 little-endian bytes at *c as a double. Returns 0 and advances, -1 if
 * fewer than 8 bytes remain. Any bit pattern is returned, NaN included: the
 * caller checks the value's domain. */
static inline int varint_get_f64(const unsigned char **c, const unsigned char *end, double *out)
{
    if (end - *c < 8)
        return -1;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits |= (uint64_t)(*c)[i] << (8 * i);
    *c += 8;
    memcpy(out, &bits, sizeof *out);
    return 0;
}

#endif
