/*
 * payload.c — generation of benchmark bodies.
 *
 * The load generator must spend as little CPU as possible, since it shares
 * the machine with the systems it measures: bodies are built once per worker
 * (a small pool of them) and re-sent. The values are random but plausible for
 * their type: counters 1..10, gauges 0..999, distributions 0.0..999.9 with
 * one decimal. For InfluxDB every line is
 *     bench.mK,type=T value=V TTTTTTTTTTTTTTTTTTT
 * (measurement = metric name, the StatsD type as a tag, one float field) and
 * the offsets of the 19 timestamp digits are kept so that re-stamping a body
 * is one 19-byte write per line.
 */
#include "payload.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS_DIGITS 19

static const char *const type_name[MIX_TYPES] = {"c", "g", "ms", "h", "d"};

struct payload {
    payload_format format;
    unsigned lines;
    char *body;
    size_t len;
    size_t *ts_off; /* InfluxDB: offset of each line's timestamp digits */
};

int mix_parse(const char *text, type_mix *mix, char *err, size_t err_len)
{
    memset(mix, 0, sizeof *mix);
    int seen[MIX_TYPES] = {0};
    unsigned total = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *eq = strchr(p, '=');
        const char *comma = strchr(p, ',');
        if (comma == NULL) comma = p + strlen(p);
        if (eq == NULL || eq > comma) {
            snprintf(err, err_len, "mix \"%s\": expected TYPE=PERCENT at \"%.*s\"", text, (int)(comma - p), p);
            return -1;
        }
        int t = -1;
        for (int i = 0; i < MIX_TYPES; i++)
            if ((size_t)(eq - p) == strlen(type_name[i]) && strncmp(p, type_name[i], (size_t)(eq - p)) == 0) t = i;
        if (t < 0) {
            snprintf(err, err_len, "mix \"%s\": unknown type \"%.*s\" (types: c, g, ms, h, d)", text, (int)(eq - p), p);
            return -1;
        }
        if (seen[t]++) {
            snprintf(err, err_len, "mix \"%s\": type %s given twice", text, type_name[t]);
            return -1;
        }
        char *end;
        errno = 0;
        unsigned long w = strtoul(eq + 1, &end, 10);
        if (end == eq + 1 || end != comma || errno != 0 || w > 100) {
            snprintf(err, err_len, "mix \"%s\": weight of %s is not a number 0..100", text, type_name[t]);
            return -1;
        }
        mix->weight[t] = (unsigned)w;
        total += (unsigned)w;
        p = *comma == ',' ? comma + 1 : comma;
    }
    if (total == 0) {
        snprintf(err, err_len, "mix \"%s\": the weights add up to 0", text);
        return -1;
    }
    return 0;
}

uint64_t bench_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int pick_type(const type_mix *mix, uint64_t *rng)
{
    unsigned total = 0;
    for (int i = 0; i < MIX_TYPES; i++) total += mix->weight[i];
    assert(total > 0);
    unsigned r = (unsigned)(bench_rand(rng) % total);
    for (int i = 0; i < MIX_TYPES; i++) {
        if (r < mix->weight[i]) return i;
        r -= mix->weight[i];
    }
    return MIX_C; /* not reached */
}

/* Writes a plausible value for type t into buf. */
static void format_value(int t, uint64_t *rng, char *buf, size_t len)
{
    uint64_t r = bench_rand(rng);
    switch (t) {
    case MIX_C: snprintf(buf, len, "%u", (unsigned)(r % 10 + 1)); break;
    case MIX_G: snprintf(buf, len, "%u", (unsigned)(r % 1000)); break;
    default: snprintf(buf, len, "%u.%u", (unsigned)(r % 1000), (unsigned)(r / 1000 % 10)); break;
    }
}

payload *payload_new(payload_format format, unsigned lines, unsigned names, const type_mix *mix,
                     uint64_t *rng, char *err, size_t err_len)
{
    assert(lines >= 1 && names >= 1);
    payload *p = calloc(1, sizeof *p);
    /* Longest line: "bench.m" + 10 digits + ",type=ms value=" + 5 + " " + 19 + "\n" < 80. */
    size_t cap = (size_t)lines * 80 + 1;
    if (p != NULL) p->body = malloc(cap);
    if (p != NULL && p->body != NULL && format == PAYLOAD_INFLUX) p->ts_off = calloc(lines, sizeof *p->ts_off);
    if (p == NULL || p->body == NULL || (format == PAYLOAD_INFLUX && p->ts_off == NULL)) {
        payload_free(p);
        snprintf(err, err_len, "out of memory for a body of %u lines", lines);
        return NULL;
    }
    p->format = format;
    p->lines = lines;
    size_t off = 0;
    for (unsigned i = 0; i < lines; i++) {
        unsigned name = (unsigned)(bench_rand(rng) % names);
        int t = pick_type(mix, rng);
        char value[32];
        format_value(t, rng, value, sizeof value);
        int n;
        if (format == PAYLOAD_STATSD) {
            n = snprintf(p->body + off, cap - off, "bench.m%u:%s|%s\n", name, value, type_name[t]);
        } else {
            n = snprintf(p->body + off, cap - off, "bench.m%u,type=%s value=%s ", name, type_name[t], value);
            assert(n > 0 && (size_t)n < cap - off);
            p->ts_off[i] = off + (size_t)n;
            off += (size_t)n;
            n = snprintf(p->body + off, cap - off, "%0*d\n", TS_DIGITS, 0);
        }
        assert(n > 0 && (size_t)n < cap - off);
        off += (size_t)n;
    }
    p->len = off;
    payload_stamp(p, 1000000000000000000LL);
    return p;
}

void payload_free(payload *p)
{
    if (p == NULL) return;
    free(p->body);
    free(p->ts_off);
    free(p);
}

const char *payload_body(const payload *p, size_t *len)
{
    *len = p->len;
    return p->body;
}

unsigned payload_lines(const payload *p) { return p->lines; }

void payload_stamp(payload *p, int64_t first_ns)
{
    if (p->format != PAYLOAD_INFLUX) return;
    assert(first_ns >= 1000000000000000000LL && first_ns <= 9223372036854775807LL - (int64_t)p->lines);
    for (unsigned i = 0; i < p->lines; i++) {
        uint64_t v = (uint64_t)first_ns + i;
        char *d = p->body + p->ts_off[i] + TS_DIGITS;
        for (int k = 0; k < TS_DIGITS; k++) {
            *--d = (char)('0' + v % 10);
            v /= 10;
        }
    }
}
