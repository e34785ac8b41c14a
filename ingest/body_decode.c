/*
 * body_decode.c — see body_decode.h.
 *
 * The output buffer starts at four times the input (StatsD text compresses
 * well, typically 5-20x) and doubles as needed, never past max_out + 1 bytes:
 * the one byte past the limit is how "more than max_out" is detected without
 * inflating further. inflate() is told the room left, so it never writes
 * beyond the buffer whatever the input claims.
 */
#include "body_decode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

static int grow(uint8_t **buf, size_t *cap, size_t want)
{
    uint8_t *grown = realloc(*buf, want);
    if (!grown)
        return -1;
    *buf = grown;
    *cap = want;
    return 0;
}

/* Inflates the gzip members of `in` into *out (malloc'd). */
static int inflate_gzip(const uint8_t *in, size_t in_len, size_t max_out, uint8_t **out,
                        size_t *out_len, char *err, size_t errlen)
{
    size_t limit = max_out + 1, cap = in_len < limit / 4 ? in_len * 4 + 64 : limit;
    if (cap > limit)
        cap = limit;
    uint8_t *buf = malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (!buf || inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) { /* 16: gzip framing */
        free(buf);
        return BODY_NO_MEMORY;
    }
    zs.next_in = (Bytef *)in;
    zs.avail_in = 0;
    size_t fed = 0, len = 0;
    int rc = Z_OK, result = BODY_OK;
    for (;;) {
        if (zs.avail_in == 0 && fed < in_len) { /* (avail_in is a uInt) */
            size_t piece = in_len - fed > (1u << 30) ? (1u << 30) : in_len - fed;
            zs.next_in = (Bytef *)in + fed;
            zs.avail_in = (uInt)piece;
            fed += piece;
        }
        if (len == cap) {
            if (cap >= limit) {
                result = BODY_TOO_LARGE;
                break;
            }
            if (grow(&buf, &cap, cap * 2 < limit ? cap * 2 : limit) != 0) {
                result = BODY_NO_MEMORY;
                break;
            }
        }
        size_t room = cap - len > (1u << 30) ? (1u << 30) : cap - len;
        zs.next_out = buf + len;
        zs.avail_out = (uInt)room;
        uInt in_before = zs.avail_in;
        rc = inflate(&zs, Z_NO_FLUSH);
        len += room - zs.avail_out;
        int stalled = zs.avail_in == in_before && zs.avail_out == room;
        if (len > max_out) {
            result = BODY_TOO_LARGE;
            break;
        }
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0 && fed == in_len)
                break;
            if (inflateReset(&zs) != Z_OK) { /* another member follows */
                result = BODY_CORRUPT;
                snprintf(err, errlen, "body is not valid gzip: cannot start the next member");
                break;
            }
            continue;
        }
        if (rc == Z_BUF_ERROR && (stalled || (zs.avail_in == 0 && fed == in_len))) {
            result = BODY_CORRUPT;
            snprintf(err, errlen, "body is not valid gzip: it ends inside a member");
            break;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            result = rc == Z_MEM_ERROR ? BODY_NO_MEMORY : BODY_CORRUPT;
            snprintf(err, errlen, "body is not valid gzip: %s", zs.msg ? zs.msg : "corrupt data");
            break;
        }
    }
    inflateEnd(&zs);
    if (result != BODY_OK) {
        free(buf);
        if (result == BODY_TOO_LARGE)
            snprintf(err, errlen, "body inflates to more than %zu bytes", max_out);
        else if (result == BODY_NO_MEMORY)
            snprintf(err, errlen, "out of memory inflating the body");
        return result;
    }
    *out = buf;
    *out_len = len;
    return BODY_OK;
}

int body_decode(const char *encoding, const uint8_t *in, size_t in_len, size_t max_out,
                const uint8_t **out, size_t *out_len, int *owned, char *err, size_t errlen)
{
    *owned = 0;
    if (!encoding || encoding[0] == '\0' || strcasecmp(encoding, "identity") == 0) {
        *out = in;
        *out_len = in_len;
        return BODY_OK;
    }
    if (strcasecmp(encoding, "gzip") != 0 && strcasecmp(encoding, "x-gzip") != 0) {
        snprintf(err, errlen, "unsupported Content-Encoding \"%.40s\" (gzip or identity)",
                 encoding);
        return BODY_UNSUPPORTED;
    }
    uint8_t *plain = NULL;
    int rc = inflate_gzip(in, in_len, max_out, &plain, out_len, err, errlen);
    if (rc == BODY_OK) {
        *out = plain;
        *owned = 1;
    }
    return rc;
}
