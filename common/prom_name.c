/*
 * prom_name.c — see prom_name.h.
 */
#include "prom_name.h"

#include <string.h>

const char *const prom_dist_suffixes[PROM_DIST_SUFFIXES] = {"", "_count", "_sum", "_min",
                                                            "_max"};

int prom_name_strip_suffix(char *base, const char *name)
{
    size_t len = strlen(name);
    memcpy(base, name, len + 1);
    for (int k = 1; k < PROM_DIST_SUFFIXES; k++) {
        size_t sl = strlen(prom_dist_suffixes[k]);
        if (len > sl && strcmp(base + len - sl, prom_dist_suffixes[k]) == 0) {
            base[len - sl] = '\0';
            return k;
        }
    }
    return 0;
}

static int is_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == ':';
}

size_t prom_name_from_statsd(char *out, const char *name, size_t len)
{
    size_t n = 0;
    if (len > 0 && name[0] >= '0' && name[0] <= '9')
        out[n++] = '_';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (is_name_char(c))
            out[n++] = (char)c;
        else if ((c & 0xc0) != 0x80) /* ASCII, or the first byte of a UTF-8 character */
            out[n++] = '_';
        /* else a UTF-8 continuation byte: its character already became one '_' */
    }
    out[n] = '\0';
    return n;
}

/* A label name allows no ':' (only metric names do). */
static size_t label_name(char *out, const char *key, size_t len)
{
    if (len == 0) { /* a tag ":v" */
        out[0] = '_';
        out[1] = '\0';
        return 1;
    }
    size_t n = prom_name_from_statsd(out, key, len);
    for (size_t i = 0; i < n; i++)
        if (out[i] == ':')
            out[i] = '_';
    return n;
}

int prom_labels_from_tags(const char *tags, size_t len,
                          int (*fn)(void *ctx, const char *label, const char *value,
                                    size_t value_len),
                          void *ctx)
{
    size_t pos = 0;
    while (pos < len) {
        const char *tag = tags + pos;
        const char *comma = memchr(tag, ',', len - pos);
        size_t tag_len = comma ? (size_t)(comma - tag) : len - pos;
        pos += tag_len + 1;
        if (tag_len == 0)
            continue;
        const char *colon = memchr(tag, ':', tag_len);
        size_t key_len = colon ? (size_t)(colon - tag) : tag_len;
        char key[PROM_NAME_MAX + 1024];
        if (key_len + 2 > sizeof key)
            key_len = sizeof key - 2;
        label_name(key, tag, key_len);
        int rc = colon ? fn(ctx, key, colon + 1, tag_len - key_len - 1) : fn(ctx, key, "true", 4);
        if (rc)
            return rc;
    }
    return 0;
}
