/*
 * http_reply.c — see http_reply.h.
 */
#include "http_reply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "format.h"

const char *http_reason(int status)
{
    static const struct { int code; const char *reason; } reasons[] = {
        {200, "OK"}, {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {409, "Conflict"},
        {413, "Payload Too Large"}, {422, "Unprocessable Entity"}, {429, "Too Many Requests"},
        {500, "Internal Server Error"}, {503, "Service Unavailable"}};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == status)
            return reasons[i].reason;
    return "Error";
}

void http_reply_json(struct evhttp_request *req, int code, const char *reason,
                     struct evbuffer *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, body);
}

/* Appends "key":"escaped value" (with a leading comma unless first). */
void http_json_string(struct evbuffer *b, const char *s, size_t len)
{
    char small[512], *escaped = 6 * len + 1 <= sizeof small ? small : malloc(6 * len + 1);
    if (escaped && json_escape(escaped, 6 * len + 1, s, len) >= 0)
        evbuffer_add_printf(b, "\"%s\"", escaped);
    else
        evbuffer_add(b, "\"\"", 2);
    if (escaped != small)
        free(escaped);
}

void http_json_number(struct evbuffer *b, const char *key, double v)
{
    char num[FORMAT_DOUBLE_MAX];
    evbuffer_add_printf(b, ",\"%s\":%s", key, format_double(num, sizeof num, v) < 0 ? "null" : num);
}

void http_json_add_string(struct evbuffer *b, int first, const char *key, const char *value,
                          size_t len)
{
    char escaped[6 * 512 + 1];
    if (len > 512)
        len = 512;
    if (json_escape(escaped, sizeof escaped, value, len) < 0)
        escaped[0] = '\0';
    evbuffer_add_printf(b, "%s\"%s\":\"%s\"", first ? "" : ",", key, escaped);
}

/* A 4xx/5xx with {"error": message[, "batch_id": id][, "outcome": what became
 * of the batch]} and optional Retry-After. outcome: "not_stored" (certainly
 * not taken), "unknown" (Kafka may hold it: only a retry with the same key
 * settles it), "stored" (Kafka holds it, the live view missed it). */
void http_reply_batch_error(struct evhttp_request *req, int code, const char *status,
                            const char *message, const char *batch_id, int retry_after,
                            const char *outcome)
{
    struct evbuffer *b = evbuffer_new();
    if (!b) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    evbuffer_add(b, "{", 1);
    http_json_add_string(b, 1, "error", message, strlen(message));
    if (batch_id && batch_id[0]) {
        http_json_add_string(b, 0, "batch_id", batch_id, strlen(batch_id));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Idempotency-Key", batch_id);
    }
    if (outcome)
        http_json_add_string(b, 0, "outcome", outcome, strlen(outcome));
    evbuffer_add(b, "}\n", 2);
    if (retry_after > 0) {
        char secs[16];
        snprintf(secs, sizeof secs, "%d", retry_after);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", secs);
    }
    http_reply_json(req, code, status, b);
    evbuffer_free(b);
}

void http_reply_error(struct evhttp_request *req, int code, const char *status,
                      const char *message, const char *batch_id, int retry_after)
{
    http_reply_batch_error(req, code, status, message, batch_id, retry_after, NULL);
}
