/*
 * fuzz_body.c — libFuzzer target for the HTTP body path of POST /v1/events:
 * body_decode() (ingest/body_decode.h) with Content-Encoding gzip, then the
 * batch parser on what it inflated. (A chunked body is reassembled by
 * libevent before this path; test_http_limits.sh covers it end to end.)
 *
 * Contract: whatever the bytes, body_decode() must not crash, must never
 * hand back more than the limit (64 KiB here), must fill err on a refusal,
 * and what it accepts must parse without crashing (the parser's own checks
 * are fuzz_statsd's). An input whose first byte is even is also decoded as
 * "identity", which must hand the input back untouched.
 * Any violated check aborts (fuzz_check.h), which libFuzzer reports as a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body_decode.h"
#include "fuzz_check.h"
#include "statsd.h"

#define MAX_OUT (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static statsd_batch batch;
    static int ready;
    if (!ready) {
        statsd_batch_init(&batch);
        ready = 1;
    }
    const statsd_limits limits = {.max_lines = 1000, .max_name_len = 200, .max_tags_len = 512,
                                  .max_errors = 100};
    const uint8_t *out;
    size_t len;
    int owned;
    char err[256] = "";
    int rc = body_decode("gzip", data, size, MAX_OUT, &out, &len, &owned, err, sizeof err);
    if (rc != BODY_OK) {
        FUZZ_CHECK(err[0] != '\0', "body_decode refused (%d) without a message", rc);
        FUZZ_CHECK(rc != BODY_UNSUPPORTED, "gzip called unsupported");
    } else {
        FUZZ_CHECK(owned && len <= MAX_OUT, "inflated %zu bytes (limit %u)", len, MAX_OUT);
        char perr[128];
        statsd_parse_batch(&batch, (const char *)out, len, &limits, 1700000000000LL, perr,
                           sizeof perr);
        free((void *)out);
    }
    if (size > 0 && data[0] % 2 == 0) {
        rc = body_decode("identity", data, size, MAX_OUT, &out, &len, &owned, err, sizeof err);
        FUZZ_CHECK(rc == BODY_OK && out == data && len == size && !owned,
                   "identity did not hand the body back");
    }
    return 0;
}
