/*
 * secret_file.h — reading a small file that holds a secret (the Redis
 * password, a Kafka client.properties with SASL or TLS key passwords).
 *
 * Contract: the file must be a regular file that neither its group nor
 * others have any access to (mode & 077 == 0), the rule ssh applies to
 * private keys; any other file is refused, not used, so a secret that other
 * users could read is noticed at the first start instead of staying exposed.
 * The file is opened once and checked through that descriptor (no window
 * between the check and the read). Error messages name the file and the
 * reason, never any of its content.
 */
#ifndef TALLY_SECRET_FILE_H
#define TALLY_SECRET_FILE_H

#include <stddef.h>

/*
 * Reads the whole of `path` (at most max_bytes) into a new NUL-terminated
 * buffer: *out (the caller frees it with secret_file_free) and *out_len
 * (bytes before the NUL; the content may itself hold NUL bytes).
 * Returns 0, or -1 with *out = NULL and err = "PATH: why" (cannot open,
 * not a regular file, too open, larger than max_bytes, read error).
 */
int secret_file_read(const char *path, size_t max_bytes, char **out, size_t *out_len, char *err,
                     size_t errlen);

/* Overwrites buf[0..len] (len bytes plus the NUL) with zeros and frees it; NULL is a no-op. */
void secret_file_free(char *buf, size_t len);

#endif
