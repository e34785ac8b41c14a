/*
 * secret_file.h — reads a file that holds secrets (tokens, passwords), the
 * way ssh treats a private key: a file that group or others may read is
 * refused, with an error that says how to fix it.
 */
#ifndef TALLY_SECRET_FILE_H
#define TALLY_SECRET_FILE_H

#include <stddef.h>

/* Reads the whole of `path` (at most max_bytes) into a NUL-terminated buffer
 * *out (the caller frees it, after wiping it), its length in *len. Returns 0,
 * or -1 with err filled: cannot open or stat it, not a regular file, mode
 * allows group or others (mode & 077), larger than max_bytes, read error. */
int secret_file_read(const char *path, size_t max_bytes, char **out, size_t *len, char *err,
                     size_t errlen);

/* Overwrites and frees a buffer from secret_file_read (NULL is fine). */
void secret_file_wipe(char *buf, size_t len);

#endif
