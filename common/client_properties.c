/*
 * client_properties.c — see client_properties.h.
 *
 * The text is copied once; lines are cut in place in the copy (key and
 * value become NUL-terminated strings inside it) and collected in a first
 * pass that checks everything, then applied in a second. Values are taken
 * literally: Java's escapes (\t, \uXXXX, "\\" for one backslash) are not
 * decoded, because librdkafka's own properties never need them and a
 * password must reach the broker byte for byte as written. A trailing
 * backslash, which Java would read as "continued on the next line", is an
 * error rather than a silently different value.
 */
#include "client_properties.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret_file.h"

struct setting {
    const char *key;
    const char *value;
    int line;
};

static int is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* Trims blanks at both ends of the NUL-terminated s, in place. */
static char *trim(char *s)
{
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int has_prefix(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(s, prefix, n) == 0 && s[n] != '\0';
}

int client_property_allowed(const char *key)
{
    return strcmp(key, "security.protocol") == 0 || has_prefix(key, "sasl.") ||
           has_prefix(key, "ssl.");
}

/* 1-based number of the line holding text[at]. */
static int line_of(const char *text, size_t at)
{
    int line = 1;
    for (size_t i = 0; i < at; i++)
        line += text[i] == '\n';
    return line;
}

/* Checks one line (NUL-terminated, in the scratch copy) and, when it is a
 * setting, cuts it into *out. Returns 1 (a setting), 0 (blank or comment)
 * or -1 with err. */
static int parse_line(char *raw, int line, const char *name, struct setting *out, char *err,
                      size_t errlen)
{
    char *s = trim(raw);
    if (*s == '\0' || *s == '#' || *s == '!')
        return 0;
    size_t n = strlen(s), backslashes = 0;
    while (backslashes < n && s[n - 1 - backslashes] == '\\')
        backslashes++;
    if (backslashes % 2 == 1) {
        snprintf(err, errlen,
                 "%s:%d: a line continued with a trailing backslash is not supported: put the "
                 "setting on one line",
                 name, line);
        return -1;
    }
    char *eq = strchr(s, '=');
    if (!eq) {
        snprintf(err, errlen, "%s:%d: expected key=value", name, line);
        return -1;
    }
    *eq = '\0';
    char *key = trim(s), *value = trim(eq + 1);
    if (*key == '\0') {
        snprintf(err, errlen, "%s:%d: no key before '='", name, line);
        return -1;
    }
    for (const char *k = key; *k; k++) {
        if (is_blank(*k)) {
            snprintf(err, errlen, "%s:%d: %.128s: a key holds no blanks", name, line, key);
            return -1;
        }
    }
    if (!client_property_allowed(key)) {
        snprintf(err, errlen,
                 "%s:%d: %.128s: not allowed here: only security.protocol, sasl.* and ssl.* may "
                 "be set in kafka.client_properties (Tally sets the other Kafka settings itself)",
                 name, line, key);
        return -1;
    }
    if (*value == '\0') {
        snprintf(err, errlen,
                 "%s:%d: %.128s: empty value (delete the line to keep librdkafka's default)", name,
                 line, key);
        return -1;
    }
    out->key = key;
    out->value = value;
    out->line = line;
    return 1;
}

int client_properties_parse(const char *text, size_t len, const char *name,
                            client_property_fn fn, void *opaque, char *err, size_t errlen)
{
    const char *nul = memchr(text, '\0', len);
    if (nul) {
        snprintf(err, errlen, "%s:%d: a NUL byte (not a text file?)", name,
                 line_of(text, (size_t)(nul - text)));
        return -1;
    }
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    char *copy = malloc(len + 1);
    struct setting *set = calloc(lines, sizeof *set);
    if (!copy || !set) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(copy);
        free(set);
        return -1;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';

    int rc = 0;
    size_t count = 0;
    char *p = copy, *stop = copy + len;
    for (int line = 1; rc == 0; line++) {
        char *end = memchr(p, '\n', (size_t)(stop - p));
        if (!end)
            end = stop;
        *end = '\0';
        int got = parse_line(p, line, name, &set[count], err, errlen);
        if (got < 0)
            rc = -1;
        count += got > 0;
        if (end == stop)
            break;
        p = end + 1;
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        char why[512];
        why[0] = '\0';
        if (fn(opaque, set[i].key, set[i].value, set[i].line, why, sizeof why) != 0) {
            snprintf(err, errlen, "%s:%d: %.128s: %s", name, set[i].line, set[i].key,
                     why[0] ? why : "refused");
            rc = -1;
        }
    }
    free(set);
    secret_file_wipe(copy, len);
    return rc == 0 ? (int)count : -1;
}
