/*
 * prom_text.c — see prom_text.h.
 */
#include "prom_text.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double prom_hist_bounds[PROM_HIST_BOUNDS] = {0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                   0.025,  0.05,  0.1,    0.25,  0.5,
                                                   1,      2.5,   5,      10};

void prom_text_init(prom_text *t)
{
    memset(t, 0, sizeof *t);
}

void prom_text_free(prom_text *t)
{
    free(t->buf);
    memset(t, 0, sizeof *t);
}

int prom_text_failed(const prom_text *t)
{
    return t->failed;
}

static int reserve(prom_text *t, size_t more)
{
    if (t->failed)
        return -1;
    if (t->len + more + 1 <= t->cap)
        return 0;
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + more + 1)
        cap *= 2;
    char *grown = realloc(t->buf, cap);
    if (!grown) {
        t->failed = 1;
        return -1;
    }
    t->buf = grown, t->cap = cap;
    return 0;
}

static void put(prom_text *t, const char *s, size_t n)
{
    if (reserve(t, n) != 0)
        return;
    memcpy(t->buf + t->len, s, n);
    t->len += n;
    t->buf[t->len] = '\0';
}

static void putf(prom_text *t, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        put(t, small, (size_t)n);
        return;
    }
    if (reserve(t, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* A label value or HELP text, escaped (HELP escapes '\\' and '\n' only). */
static void put_escaped(prom_text *t, const char *s, int quotes)
{
    for (; *s; s++) {
        if (*s == '\\')
            put(t, "\\\\", 2);
        else if (*s == '\n')
            put(t, "\\n", 2);
        else if (*s == '"' && quotes)
            put(t, "\\\"", 2);
        else
            put(t, s, 1);
    }
}

static void put_value(prom_text *t, double v)
{
    if (isnan(v))
        put(t, "NaN", 3);
    else if (isinf(v))
        put(t, v > 0 ? "+Inf" : "-Inf", 4);
    else
        putf(t, "%.17g", v);
}

void prom_text_family(prom_text *t, const char *name, const char *type, const char *help)
{
    putf(t, "# HELP %s ", name);
    put_escaped(t, help, 0);
    putf(t, "\n# TYPE %s %s\n", name, type);
}

void prom_text_sample(prom_text *t, const char *name, const char *const *labels, double value)
{
    put(t, name, strlen(name));
    if (labels && labels[0]) {
        put(t, "{", 1);
        for (size_t i = 0; labels[i] && labels[i + 1]; i += 2) {
            putf(t, "%s%s=\"", i ? "," : "", labels[i]);
            put_escaped(t, labels[i + 1], 1);
            put(t, "\"", 1);
        }
        put(t, "}", 1);
    }
    put(t, " ", 1);
    put_value(t, value);
    put(t, "\n", 1);
}

void prom_text_single(prom_text *t, const char *name, const char *type, const char *help,
                      double value)
{
    prom_text_family(t, name, type, help);
    prom_text_sample(t, name, NULL, value);
}

void prom_hist_observe(prom_hist *h, double seconds)
{
    size_t i = 0;
    while (i < PROM_HIST_BOUNDS && seconds > prom_hist_bounds[i])
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    double ns = seconds > 0 ? seconds * 1e9 : 0;
    atomic_fetch_add_explicit(&h->sum_ns, ns < 1.8e19 ? (uint64_t)ns : 0, memory_order_relaxed);
}

void prom_text_histogram(prom_text *t, const char *name, const char *help, const prom_hist *h)
{
    char metric[160], le[32];
    prom_text_family(t, name, "histogram", help);
    snprintf(metric, sizeof metric, "%s_bucket", name);
    uint64_t cumulative = 0;
    for (size_t i = 0; i <= PROM_HIST_BOUNDS; i++) {
        cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        if (i < PROM_HIST_BOUNDS)
            snprintf(le, sizeof le, "%g", prom_hist_bounds[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        const char *labels[] = {"le", le, NULL};
        prom_text_sample(t, metric, labels, (double)cumulative);
    }
    snprintf(metric, sizeof metric, "%s_sum", name);
    prom_text_sample(t, metric, NULL,
                     (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9);
    snprintf(metric, sizeof metric, "%s_count", name);
    /* the buckets' total, so that _count equals the +Inf bucket in every scrape */
    prom_text_sample(t, metric, NULL, (double)cumulative);
}
