/*
 * body_decode.h — a request body as the client encoded it, made plain.
 *
 * Contract: pure (zlib, no I/O). Content-Encoding "gzip" (or "x-gzip") is
 * inflated into a new buffer of at most max_out bytes: a body that inflates
 * to more (a gzip bomb: a few KB can stand for gigabytes) is refused as soon
 * as it passes max_out, without inflating the rest. Several gzip members back
 * to back (RFC 1952 allows it) inflate to their concatenation. "identity" or
 * no header leaves the body as it is; anything else is refused as
 * unsupported. (Transfer-Encoding: chunked is undone by libevent before the
 * body reaches this module.)
 */
#ifndef TALLY_BODY_DECODE_H
#define TALLY_BODY_DECODE_H

#include <stddef.h>
#include <stdint.h>

#define BODY_OK 0
#define BODY_TOO_LARGE 1   /* inflates to more than max_out */
#define BODY_CORRUPT 2     /* not valid gzip (err says why) */
#define BODY_UNSUPPORTED 3 /* an encoding other than gzip or identity */
#define BODY_NO_MEMORY 4

/*
 * Decodes `in` (in_len bytes) as encoded by `encoding` (the Content-Encoding
 * header's value, NULL when absent). BODY_OK: *out is either `in` itself
 * (*owned = 0) or a malloc'd buffer the caller frees (*owned = 1), *out_len
 * its length. Any other result: err filled, nothing to free.
 */
int body_decode(const char *encoding, const uint8_t *in, size_t in_len, size_t max_out,
                const uint8_t **out, size_t *out_len, int *owned, char *err, size_t errlen);

#endif
