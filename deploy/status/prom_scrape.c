/*
 * prom_scrape.c — see prom_scrape.h.
 */
#include "prom_scrape.h"

#include <stdlib.h>
#include <string.h>

/* Parses the sample line [line, end) of family `name`; 1 when it is one. */
static int parse_line(const char *line, const char *end, const char *name, const char **labels,
                      size_t *labels_len, double *value)
{
    size_t n = strlen(name);
    if ((size_t)(end - line) <= n || memcmp(line, name, n) != 0)
        return 0;
    const char *p = line + n;
    *labels = "";
    *labels_len = 0;
    if (*p == '{') {
        const char *close = memchr(p, '}', (size_t)(end - p));
        if (!close)
            return 0;
        *labels = p + 1;
        *labels_len = (size_t)(close - p - 1);
        p = close + 1;
    }
    if (p >= end || *p != ' ')
        return 0;
    char buf[64];
    size_t len = (size_t)(end - p - 1) < sizeof buf - 1 ? (size_t)(end - p - 1) : sizeof buf - 1;
    memcpy(buf, p + 1, len);
    buf[len] = '\0';
    char *stop;
    *value = strtod(buf, &stop);
    return stop != buf;
}

size_t prom_scrape_each(const char *text, const char *name,
                        void (*each)(void *ctx, const char *labels, size_t labels_len,
                                     double value),
                        void *ctx)
{
    size_t seen = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        if (!end)
            end = line + strlen(line);
        const char *labels;
        size_t labels_len;
        double v;
        if (*line != '#' && parse_line(line, end, name, &labels, &labels_len, &v)) {
            seen++;
            if (each)
                each(ctx, labels, labels_len, v);
        }
        line = *end ? end + 1 : end;
    }
    return seen;
}

typedef struct find {
    const char *label;
    int found;
    double value, sum;
} find;

static void match(void *ctx, const char *labels, size_t labels_len, double value)
{
    find *f = ctx;
    f->sum += value;
    if (f->found)
        return;
    size_t n = f->label ? strlen(f->label) : 0;
    for (size_t i = 0; f->label && i + n <= labels_len; i++)
        if (memcmp(labels + i, f->label, n) == 0) {
            f->found = 1;
            f->value = value;
            return;
        }
    if (!f->label) {
        f->found = 1;
        f->value = value;
    }
}

int prom_scrape_value(const char *text, const char *name, const char *label, double *value)
{
    find f = {label, 0, 0, 0};
    prom_scrape_each(text, name, match, &f);
    if (f.found)
        *value = f.value;
    return f.found;
}

double prom_scrape_sum(const char *text, const char *name)
{
    find f = {NULL, 0, 0, 0};
    prom_scrape_each(text, name, match, &f);
    return f.sum;
}
