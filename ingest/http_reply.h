/*
 * http_reply.h — JSON answers of tally-ingest's HTTP routes (libevent
 * evhttp). Every answer is application/json; an error is {"error": message}
 * (with the batch id and outcome of a batch where there is one).
 */
#ifndef TALLY_HTTP_REPLY_H
#define TALLY_HTTP_REPLY_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/http.h>

/* The reason phrase of an HTTP status ("Error" for one not listed). */
const char *http_reason(int status);

/* Sends `body` with status `code` and Content-Type application/json. */
void http_reply_json(struct evhttp_request *req, int code, const char *reason,
                     struct evbuffer *body);

/* Appends "key":"escaped value" (the first 512 bytes of it), with a leading
 * comma unless first. */
void http_json_add_string(struct evbuffer *b, int first, const char *key, const char *value,
                          size_t len);

/* Appends `s` (len bytes) as a JSON string, quoted and escaped, whole. */
void http_json_string(struct evbuffer *b, const char *s, size_t len);

/* Appends ,"key":NUMBER (the shortest exact digits; null when not finite). */
void http_json_number(struct evbuffer *b, const char *key, double v);

/* A 4xx/5xx with {"error": message[, "batch_id": id][, "outcome": what became
 * of the batch]} (the id also as Idempotency-Key) and, when retry_after > 0,
 * Retry-After. outcome: "not_stored" (certainly not taken), "unknown" (Kafka
 * may hold it: only a retry with the same key settles it), "stored" (Kafka
 * holds it, the live view missed it). */
void http_reply_batch_error(struct evhttp_request *req, int code, const char *status,
                            const char *message, const char *batch_id, int retry_after,
                            const char *outcome);

/* The same without an outcome. */
void http_reply_error(struct evhttp_request *req, int code, const char *status,
                      const char *message, const char *batch_id, int retry_after);

#endif
