/*
 * totals_json.c — see totals_json.h.
 */
#include "totals_json.h"

#include <stdlib.h>
#include <string.h>

#include "http_reply.h"

static void add_string(struct evbuffer *b, const char *key, const char *s, size_t len)
{
    evbuffer_add_printf(b, "\"%s\":", key);
    http_json_string(b, s, len);
}

static int compare_tags(const void *x, const void *y)
{
    const series_total *a = x, *b = y;
    size_t n = a->tags_len < b->tags_len ? a->tags_len : b->tags_len;
    int c = n ? memcmp(a->tags, b->tags, n) : 0;
    return c ? c : (a->tags_len > b->tags_len) - (a->tags_len < b->tags_len);
}

static void add_types(struct evbuffer *b, unsigned types)
{
    static const metric_type all[] = {METRIC_COUNTER, METRIC_GAUGE, METRIC_DISTRIBUTION,
                                      METRIC_SET};
    evbuffer_add(b, ",\"types\":[", 10);
    for (size_t i = 0, n = 0; i < sizeof all / sizeof all[0]; i++)
        if (types & (1u << all[i]))
            evbuffer_add_printf(b, "%s\"%s\"", n++ ? "," : "", metric_type_name(all[i]));
    evbuffer_add(b, "]", 1);
}

/* The distribution's totals over its series. */
static void add_distribution_totals(struct evbuffer *b, const series_total *s, size_t n)
{
    double count = 0, sum = 0, lo = 0, hi = 0;
    int has_range = 0;
    for (size_t i = 0; i < n; i++) {
        count += s[i].count;
        sum += s[i].sum;
        if (s[i].has_range) {
            lo = has_range && lo < s[i].min ? lo : s[i].min;
            hi = has_range && hi > s[i].max ? hi : s[i].max;
            has_range = 1;
        }
    }
    http_json_number(b, "count", count);
    http_json_number(b, "sum", sum);
    if (has_range) {
        http_json_number(b, "min", lo);
        http_json_number(b, "max", hi);
    }
}

static void add_series(struct evbuffer *b, metric_type type, const series_total *s)
{
    evbuffer_add(b, "{", 1);
    add_string(b, "tags", s->tags, s->tags_len);
    if (type == METRIC_DISTRIBUTION) {
        http_json_number(b, "count", s->count);
        http_json_number(b, "sum", s->sum);
        if (s->has_range) {
            http_json_number(b, "min", s->min);
            http_json_number(b, "max", s->max);
        }
    } else {
        http_json_number(b, "value", s->value);
    }
    evbuffer_add(b, "}", 1);
}

void totals_json_write(struct evbuffer *b, const totals_answer *a, series_total *series, size_t n)
{
    if (n > 1)
        qsort(series, n, sizeof *series, compare_tags);
    evbuffer_add(b, "{", 1);
    add_string(b, "name", a->name, strlen(a->name));
    evbuffer_add(b, ",", 1);
    add_string(b, "type", metric_type_name(a->type), strlen(metric_type_name(a->type)));
    evbuffer_add(b, ",", 1);
    add_string(b, "source", a->source, strlen(a->source));
    evbuffer_add_printf(b, ",\"stale\":%s", a->stale ? "true" : "false");
    if (a->note) {
        evbuffer_add(b, ",", 1);
        add_string(b, "note", a->note, strlen(a->note));
    }
    if (a->types & ~(1u << a->type))
        add_types(b, a->types);
    if (a->type == METRIC_COUNTER) {
        double total = 0;
        for (size_t i = 0; i < n; i++)
            total += series[i].value;
        http_json_number(b, "value", total);
    } else if (a->type == METRIC_DISTRIBUTION) {
        add_distribution_totals(b, series, n);
    }
    evbuffer_add(b, ",\"series\":[", 11);
    for (size_t i = 0; i < n; i++) {
        if (i)
            evbuffer_add(b, ",", 1);
        add_series(b, a->type, &series[i]);
    }
    evbuffer_add(b, "]}\n", 3);
}
