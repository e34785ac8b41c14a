/*
 * auth.h — the bearer tokens of the ingest API (ingest.tokens_file).
 *
 * The file holds one token per line (blank lines and '#' comments ignored):
 *
 *   NAME  SCOPES  TOKEN  [events_per_second=N] [batches_per_second=N]
 *
 * NAME is 1-32 characters of [A-Za-z0-9_-], unique: it names the client in
 * logs and scopes its idempotency keys. SCOPES is a comma-separated list of
 * "write" (POST /v1/events) and "read" (GET /v1/counters/...). TOKEN is
 * 16-256 printable ASCII characters without spaces, unique. The limits are
 * per token, kept in Redis (admission.h); absent or 0: unlimited. The file
 * must not be readable by group or others (secret_file.h). Any problem is an
 * error naming the line: a token file is read whole or not at all.
 *
 * auth_find() compares the presented token with every token of the table,
 * each over the full fixed width, so the time it takes does not depend on
 * which token matched or how much of one did.
 */
#ifndef TALLY_AUTH_H
#define TALLY_AUTH_H

#include <stddef.h>

#define AUTH_NAME_MAX 32
#define AUTH_TOKEN_MIN 16
#define AUTH_TOKEN_MAX 256

enum { AUTH_SCOPE_WRITE = 1, AUTH_SCOPE_READ = 2 };

typedef struct auth_client {
    char name[AUTH_NAME_MAX + 1];
    unsigned scopes;              /* AUTH_SCOPE_* bits */
    long long events_per_second;  /* 0: unlimited */
    long long batches_per_second; /* 0: unlimited */
} auth_client;

typedef struct auth_table auth_table;

/* Loads the token file. Returns NULL with err filled ("PATH:LINE: why"). */
auth_table *auth_load(const char *path, char *err, size_t errlen);

/* The client whose token is token[0..len), or NULL. */
const auth_client *auth_find(const auth_table *t, const char *token, size_t len);

size_t auth_count(const auth_table *t);

/* Wipes the tokens and frees the table (NULL is fine). */
void auth_free(auth_table *t);

#endif
