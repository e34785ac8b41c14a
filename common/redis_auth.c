/*
 * redis_auth.c — see redis_auth.h.
 *
 * The password is read once, at start: a changed password takes a restart
 * (of tally-ingest; tally-flusher --rebuild-redis and tally-drill read it at
 * each run). Reading it again at every reconnect would let a rotation go
 * unnoticed until the next Redis restart and put file I/O on ingest's event
 * loop; failing at start is the clearer contract. Redis ACL passwords have
 * no length limit of their own; REDIS_AUTH_PASSWORD_MAX is ours, far above
 * what `ACL GENPASS` (64 hex digits) produces.
 */
#include "redis_auth.h"

#include <stdio.h>
#include <string.h>

#include "secret_file.h"

int redis_auth_parse_password(const char *text, size_t len, char *out, size_t outlen, char *err,
                              size_t errlen)
{
    const char *nl = memchr(text, '\n', len);
    size_t n = nl ? (size_t)(nl - text) : len;
    if (nl && n > 0 && text[n - 1] == '\r')
        n--;
    if (n == 0) {
        snprintf(err, errlen, "%s", len == 0 ? "the file is empty" : "its first line is empty");
        return -1;
    }
    if (memchr(text, '\0', n)) {
        snprintf(err, errlen, "its first line holds a NUL byte");
        return -1;
    }
    if (n >= outlen) {
        snprintf(err, errlen, "the password is longer than %zu bytes", outlen - 1);
        return -1;
    }
    memcpy(out, text, n);
    out[n] = '\0';
    return 0;
}

int redis_auth_load(redis_auth *a, const char *username, const char *password_file, char *err,
                    size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (!password_file[0]) {
        if (username[0]) {
            snprintf(err, errlen,
                     "redis.username is \"%s\" but redis.password_file is empty: AUTH needs a "
                     "password (set redis.password_file, or clear redis.username)",
                     username);
            return -1;
        }
        return 0;
    }
    if (strlen(username) >= sizeof a->username) {
        snprintf(err, errlen, "redis.username: longer than %zu bytes", sizeof a->username - 1);
        return -1;
    }
    char *text = NULL;
    size_t len = 0;
    char why[512];
    if (secret_file_read(password_file, REDIS_AUTH_FILE_MAX, &text, &len, why, sizeof why) != 0) {
        snprintf(err, errlen, "redis.password_file %s", why);
        return -1;
    }
    int rc = redis_auth_parse_password(text, len, a->password, sizeof a->password, why, sizeof why);
    secret_file_wipe(text, len);
    if (rc != 0) {
        snprintf(err, errlen, "redis.password_file %s: %s", password_file, why);
        redis_auth_clear(a);
        return -1;
    }
    snprintf(a->username, sizeof a->username, "%s", username);
    a->enabled = 1;
    return 0;
}

int redis_auth_argv(const redis_auth *a, const char *argv[3], size_t argvlen[3])
{
    if (!a->enabled)
        return 0;
    int argc = 0;
    argv[argc++] = "AUTH";
    if (a->username[0])
        argv[argc++] = a->username;
    argv[argc++] = a->password;
    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    return argc;
}

int redis_auth_send(redisContext *c, const redis_auth *a, char *err, size_t errlen)
{
    const char *argv[3];
    size_t argvlen[3];
    int argc = redis_auth_argv(a, argv, argvlen);
    if (argc == 0)
        return 0;
    redisReply *reply = redisCommandArgv(c, argc, argv, argvlen);
    if (!reply) {
        snprintf(err, errlen, "%s", c->errstr[0] ? c->errstr : "connection error");
        return -1;
    }
    int rc = 0;
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "%s", reply->str);
        rc = -1;
    } else if (reply->type != REDIS_REPLY_STATUS) {
        snprintf(err, errlen, "unexpected reply to AUTH (type %d)", reply->type);
        rc = -1;
    }
    freeReplyObject(reply);
    return rc;
}

void redis_auth_clear(redis_auth *a)
{
    explicit_bzero(a->password, sizeof a->password);
    a->enabled = 0;
}
