/*
 * client_properties.h — the security settings file named by
 * kafka.client_properties, parsed without I/O.
 *
 * Format (the common subset of Java's client.properties): one `key=value`
 * per line, split at the first '='; whitespace around the key and the value
 * is trimmed; blank lines and lines whose first non-blank character is '#'
 * or '!' are comments. Not supported, and refused with the line number
 * rather than misread: a line without '=', an empty key or value, a line
 * continued with a trailing backslash, a NUL byte. There are no inline
 * comments: a '#' after the '=' is part of the value (passwords hold them).
 *
 * Only keys that configure how a client reaches the brokers securely may be
 * set — `security.protocol`, `sasl.*`, `ssl.*` — so the file can never
 * weaken what Tally's durability rests on (acks, idempotence, timeouts):
 * any other key is refused. Errors read "NAME:LINE: KEY: why" (or
 * "NAME:LINE: why" when the line has no key) and never hold a value.
 */
#ifndef TALLY_CLIENT_PROPERTIES_H
#define TALLY_CLIENT_PROPERTIES_H

#include <stddef.h>

/* Applies one allowed setting (line is 1-based). Returns 0, or -1 with why
 * filled (the parse stops and reports it at that line and key). */
typedef int (*client_property_fn)(void *opaque, const char *key, const char *value, int line,
                                  char *why, size_t whylen);

/* 1 when `key` may be set by the file (security.protocol, sasl.*, ssl.*). */
int client_property_allowed(const char *key);

/*
 * Parses text[0..len) (`name`, the file's path, is only used in messages)
 * and calls fn once per setting, in file order. The whole file is checked
 * for syntax and keys before the first call, so a bad line 7 leaves nothing
 * applied. Returns the number of settings applied (>= 0), or -1 with err.
 * Scratch copies of the text are wiped before they are freed.
 */
int client_properties_parse(const char *text, size_t len, const char *name,
                            client_property_fn fn, void *opaque, char *err, size_t errlen);

#endif
