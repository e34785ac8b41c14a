/*
 * format.c — see format.h. Doubles are printed with the fewest significant
 * digits (15, 16 or 17) that parse back to the same bits, so 0.1 prints as
 * "0.1" and totals survive a text round trip through Redis or JSON exactly.
 */
#include "format.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int format_integer(char *buf, size_t buflen, long long x)
{
    char digits[24];
    int n = 0;
    unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    int len = 0;
    assert(buflen > (size_t)n + 1);
    if (x < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = digits[--n];
    buf[len] = '\0';
    return len;
}

/* Values with at most 6 decimals below 1e9 in magnitude (most measurements):
 * the digits of v * 10^k for the first k that makes it a whole number, with
 * a decimal point put back, kept only if they parse back to v. Returns the
 * length, or 0 when v is not such a value. */
static int format_short_decimal(char *buf, size_t buflen, double v)
{
    static const double scale[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    if (!(v > -1e9 && v < 1e9) || v == 0)
        return 0; /* (whole numbers, -0 included, are not short decimals) */
    for (int k = 1; k <= 6; k++) {
        double scaled = v * scale[k];
        long long whole = (long long)scaled;
        if ((double)whole != scaled)
            continue;
        char digits[24];
        int n = format_integer(digits, sizeof digits, whole < 0 ? -whole : whole);
        int len = 0;
        if (v < 0)
            buf[len++] = '-';
        if (n <= k) { /* 0.00ddd */
            buf[len++] = '0';
            buf[len++] = '.';
            for (int z = n; z < k; z++)
                buf[len++] = '0';
            memcpy(buf + len, digits, (size_t)n);
            len += n;
        } else {
            memcpy(buf + len, digits, (size_t)(n - k));
            len += n - k;
            buf[len++] = '.';
            memcpy(buf + len, digits + n - k, (size_t)k);
            len += k;
        }
        assert((size_t)len < buflen);
        buf[len] = '\0';
        return strtod(buf, NULL) == v ? len : 0;
    }
    return 0;
}

int format_double(char *buf, size_t buflen, double v)
{
    assert(buflen >= FORMAT_DOUBLE_MAX);
    if (!isfinite(v)) {
        buf[0] = '\0';
        return -1;
    }
    /* Fast path: whole numbers below 1e15 print as their integer digits, which
     * is exactly what %.15g prints for them (counters are mostly whole). */
    if (v > -1e15 && v < 1e15 && v == (double)(long long)v && !(v == 0 && signbit(v)))
        return format_integer(buf, buflen, (long long)v);
    int n = format_short_decimal(buf, buflen, v);
    if (n > 0)
        return n;
    for (int digits = 15; digits <= 17; digits++) {
        n = snprintf(buf, buflen, "%.*g", digits, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return n;
}

int json_escape(char *dst, size_t dstlen, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        char esc = 0;
        switch (c) {
        case '"': esc = '"'; break;
        case '\\': esc = '\\'; break;
        case '\n': esc = 'n'; break;
        case '\r': esc = 'r'; break;
        case '\t': esc = 't'; break;
        default: break;
        }
        if (esc) {
            if (o + 2 >= dstlen)
                return -1;
            dst[o++] = '\\';
            dst[o++] = esc;
        } else if (c < 0x20) {
            if (o + 6 >= dstlen)
                return -1;
            dst[o++] = '\\';
            dst[o++] = 'u';
            dst[o++] = '0';
            dst[o++] = '0';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        } else {
            if (o + 1 >= dstlen)
                return -1;
            dst[o++] = (char)c;
        }
    }
    dst[o] = '\0';
    return (int)o;
}

/* Rewrites the "%g"-style text of a finite double (sign, digits, optional
 * '.', optional exponent) in positional notation. */
static int expand_exponent(char *buf, size_t buflen, const char *g)
{
    const char *p = g;
    int len = 0;
    if (*p == '-')
        buf[len++] = *p++;
    char digits[FORMAT_DOUBLE_MAX];
    int n = 0, point = -1;
    for (; *p && *p != 'e'; p++) {
        if (*p == '.')
            point = n;
        else
            digits[n++] = *p;
    }
    int exponent = *p == 'e' ? atoi(p + 1) : 0;
    int before = (point < 0 ? n : point) + exponent; /* digits before the point */
    if ((size_t)(len + abs(before) + n + 3) >= buflen)
        return -1;
    if (before <= 0) {
        buf[len++] = '0';
        buf[len++] = '.';
        for (int i = 0; i < -before; i++)
            buf[len++] = '0';
        memcpy(buf + len, digits, (size_t)n);
        len += n;
    } else {
        for (int i = 0; i < before; i++)
            buf[len++] = i < n ? digits[i] : '0';
        if (before < n) {
            buf[len++] = '.';
            memcpy(buf + len, digits + before, (size_t)(n - before));
            len += n - before;
        }
    }
    buf[len] = '\0';
    return len;
}

int format_prom_value(char *buf, size_t buflen, double v)
{
    assert(buflen >= FORMAT_PROM_VALUE_MAX);
    if (isnan(v))
        return snprintf(buf, buflen, "NaN");
    if (isinf(v))
        return snprintf(buf, buflen, v > 0 ? "+Inf" : "-Inf");
    char g[FORMAT_DOUBLE_MAX];
    int n = format_double(g, sizeof g, v);
    if (!strchr(g, 'e')) {
        memcpy(buf, g, (size_t)n + 1);
        return n;
    }
    return expand_exponent(buf, buflen, g);
}

int format_thousands(char *buf, size_t buflen, long long n)
{
    char digits[24];
    unsigned long long u = n < 0 ? 0ULL - (unsigned long long)n : (unsigned long long)n;
    int nd = snprintf(digits, sizeof digits, "%llu", u), w = 0;
    char out[32];
    if (n < 0)
        out[w++] = '-';
    for (int i = 0; i < nd; i++) {
        if (i > 0 && (nd - i) % 3 == 0)
            out[w++] = ',';
        out[w++] = digits[i];
    }
    out[w] = '\0';
    return snprintf(buf, buflen, "%s", out);
}
