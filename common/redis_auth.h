/*
 * redis_auth.h — the AUTH every Tally connection to Redis sends first,
 * from redis.username and redis.password_file.
 *
 * Contract: redis_auth_load() is called once at start and reports every
 * misconfiguration there (a username without a password file; a password
 * file that is missing, open to group or others (secret_file.h), empty or
 * not a password); afterwards the struct holds the arguments of AUTH, or says
 * that no AUTH is to be sent. The password never appears in an error
 * message; redis_auth_clear() wipes it. The password is the file's first
 * line without its line end ("\n" or "\r\n"); the rest of the file is
 * ignored, and every other byte (spaces included) is part of the password.
 */
#ifndef TALLY_REDIS_AUTH_H
#define TALLY_REDIS_AUTH_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#define REDIS_AUTH_USERNAME_MAX 256
#define REDIS_AUTH_PASSWORD_MAX 1024 /* bytes of the password, NUL included */
#define REDIS_AUTH_FILE_MAX 65536    /* a password file may not be larger */

typedef struct redis_auth {
    int enabled;                               /* 0: send no AUTH */
    char username[REDIS_AUTH_USERNAME_MAX];    /* "": AUTH password (the default user) */
    char password[REDIS_AUTH_PASSWORD_MAX];
} redis_auth;

/*
 * The password in `text` (len bytes, the content of a password file): its
 * first line, without "\n" or "\r\n". Returns 0 with out NUL-terminated, or
 * -1 with err = why (empty first line, a NUL byte, longer than outlen - 1).
 */
int redis_auth_parse_password(const char *text, size_t len, char *out, size_t outlen, char *err,
                              size_t errlen);

/*
 * Fills *a from the config values: both empty means no AUTH (enabled = 0);
 * a password file means AUTH [username] password; a username without a
 * password file is an error. Returns 0, or -1 with err naming the config key
 * and the file (a start must stop on it).
 */
int redis_auth_load(redis_auth *a, const char *username, const char *password_file, char *err,
                    size_t errlen);

/* The AUTH command's arguments: returns argc (0 when !a->enabled, 2 for
 * AUTH password, 3 for AUTH username password); argv and argvlen point into
 * *a and stay valid while it does. */
int redis_auth_argv(const redis_auth *a, const char *argv[3], size_t argvlen[3]);

/* Sends AUTH on a blocking context (nothing when !a->enabled). Returns 0, or
 * -1 with err = Redis' refusal ("WRONGPASS ...") or the connection error. */
int redis_auth_send(redisContext *c, const redis_auth *a, char *err, size_t errlen);

/* Wipes the password (a stays usable as "no AUTH"). */
void redis_auth_clear(redis_auth *a);

#endif
