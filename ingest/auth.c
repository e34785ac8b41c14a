/*
 * auth.c — see auth.h.
 */
#include "auth.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secret_file.h"

#define TOKEN_FILE_MAX (1u << 20)

typedef struct token_entry {
    auth_client client;
    unsigned char secret[AUTH_TOKEN_MAX]; /* zero-padded */
    size_t secret_len;
} token_entry;

struct auth_table {
    token_entry *entries;
    size_t count;
};

static int valid_name(const char *s, size_t len)
{
    if (len == 0 || len > AUTH_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

static int valid_token(const char *s, size_t len)
{
    if (len < AUTH_TOKEN_MIN || len > AUTH_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return 1;
}

/* "write,read" -> bits; 0 when a scope is unknown or the list is empty. */
static unsigned parse_scopes(const char *s)
{
    unsigned bits = 0;
    char copy[64];
    if (strlen(s) >= sizeof copy)
        return 0;
    strcpy(copy, s);
    for (char *save = NULL, *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (strcmp(w, "write") == 0)
            bits |= AUTH_SCOPE_WRITE;
        else if (strcmp(w, "read") == 0)
            bits |= AUTH_SCOPE_READ;
        else
            return 0;
    }
    return bits;
}

/* "events_per_second=N" or "batches_per_second=N" into the client. */
static int parse_limit(auth_client *c, const char *field)
{
    const char *eq = strchr(field, '=');
    if (!eq)
        return -1;
    char *end;
    long long v = strtoll(eq + 1, &end, 10);
    if (eq[1] == '\0' || *end != '\0' || v < 0 || v > 1000000000000LL)
        return -1;
    size_t klen = (size_t)(eq - field);
    if (klen == 17 && strncmp(field, "events_per_second", klen) == 0)
        c->events_per_second = v;
    else if (klen == 18 && strncmp(field, "batches_per_second", klen) == 0)
        c->batches_per_second = v;
    else
        return -1;
    return 0;
}

/* Parses one non-blank line into e; returns NULL or the reason it is wrong. */
static const char *parse_line(char *line, token_entry *e)
{
    char *save = NULL;
    char *name = strtok_r(line, " \t", &save);
    char *scopes = strtok_r(NULL, " \t", &save);
    char *token = strtok_r(NULL, " \t", &save);
    if (!name || !scopes || !token)
        return "expected NAME SCOPES TOKEN [events_per_second=N] [batches_per_second=N]";
    if (!valid_name(name, strlen(name)))
        return "NAME must be 1-32 characters of [A-Za-z0-9_-]";
    if (!(e->client.scopes = parse_scopes(scopes)))
        return "SCOPES must be a comma-separated list of write, read";
    size_t tlen = strlen(token);
    if (!valid_token(token, tlen))
        return "TOKEN must be 16-256 printable ASCII characters without spaces";
    for (char *f = strtok_r(NULL, " \t", &save); f; f = strtok_r(NULL, " \t", &save))
        if (parse_limit(&e->client, f) != 0)
            return "a limit must be events_per_second=N or batches_per_second=N (N >= 0)";
    snprintf(e->client.name, sizeof e->client.name, "%s", name);
    memcpy(e->secret, token, tlen);
    e->secret_len = tlen;
    return NULL;
}

/* A problem with a line already parsed: a name or token used before. */
static const char *duplicate_of_earlier(const auth_table *t, const token_entry *e)
{
    for (size_t i = 0; i < t->count; i++) {
        if (strcmp(t->entries[i].client.name, e->client.name) == 0)
            return "NAME is used by an earlier line";
        if (t->entries[i].secret_len == e->secret_len &&
            memcmp(t->entries[i].secret, e->secret, e->secret_len) == 0)
            return "TOKEN is used by an earlier line";
    }
    return NULL;
}

static int parse_all(auth_table *t, char *text, const char *path, char *err, size_t errlen)
{
    unsigned lineno = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        line[strcspn(line, "\r")] = '\0';
        if (line[strspn(line, " \t")] == '\0')
            continue;
        token_entry *grown = realloc(t->entries, (t->count + 1) * sizeof *grown);
        if (!grown) {
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        t->entries = grown;
        token_entry *e = &t->entries[t->count];
        memset(e, 0, sizeof *e);
        const char *why = parse_line(line, e);
        if (!why)
            why = duplicate_of_earlier(t, e);
        if (why) {
            memset(e, 0, sizeof *e);
            snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
            return -1;
        }
        t->count++;
    }
    if (t->count == 0) {
        snprintf(err, errlen, "%s: no tokens (every request would be refused)", path);
        return -1;
    }
    return 0;
}

auth_table *auth_load(const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    if (secret_file_read(path, TOKEN_FILE_MAX, &text, &len, err, errlen) != 0)
        return NULL;
    auth_table *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "%s: out of memory", path);
        secret_file_wipe(text, len);
        return NULL;
    }
    int rc = parse_all(t, text, path, err, errlen);
    secret_file_wipe(text, len);
    if (rc != 0) {
        auth_free(t);
        return NULL;
    }
    return t;
}

const auth_client *auth_find(const auth_table *t, const char *token, size_t len)
{
    if (!t || len == 0 || len > AUTH_TOKEN_MAX)
        return NULL;
    unsigned char presented[AUTH_TOKEN_MAX] = {0};
    memcpy(presented, token, len);
    size_t found = SIZE_MAX;
    for (size_t i = 0; i < t->count; i++) {
        const token_entry *e = &t->entries[i];
        unsigned diff = (unsigned)(e->secret_len ^ len);
        for (size_t k = 0; k < AUTH_TOKEN_MAX; k++)
            diff |= (unsigned)(e->secret[k] ^ presented[k]);
        /* select without a branch on the comparison: mask is all ones on a match */
        size_t mask = (size_t)0 - (size_t)(diff == 0);
        found = (found & ~mask) | (i & mask);
    }
    volatile unsigned char *wipe = presented;
    for (size_t k = 0; k < len; k++)
        wipe[k] = 0;
    return found == SIZE_MAX ? NULL : &t->entries[found].client;
}

size_t auth_count(const auth_table *t)
{
    return t ? t->count : 0;
}

void auth_free(auth_table *t)
{
    if (!t)
        return;
    volatile unsigned char *p = (volatile unsigned char *)t->entries;
    for (size_t i = 0; i < t->count * sizeof *t->entries; i++)
        p[i] = 0;
    free(t->entries);
    free(t);
}
