/*
 * batch_pipeline.h — POST /v1/events: the acknowledged write path of
 * tally-ingest (design rule 1). A batch is parsed and validated whole
 * (statsd.h), admitted (admission.h), encoded and sent to Kafka, and once
 * delivered folded into the next group commit to Redis (live_update.h); the
 * client gets 200 only when both hold it:
 *
 *   200 {"accepted":N,"ignored":M,"batch_id":..,"duplicate":bool} only after the batch's
 *       record is delivered to Kafka (acks=all) AND applied to Redis; Kafka has
 *       it but Redis cannot apply it: 200 "live":"stale" (redis.on_unavailable =
 *       accept) or 503 (reject);
 *   200 {"accepted":0,"ignored":M,...} at once for a body of only DogStatsD
 *       events and service checks (nothing to store: neither Kafka nor Redis);
 *   400 invalid batch (every bad line: number + reason code + reason; nothing applied);
 *   409 a reused Idempotency-Key with another body; 413 body, series or Kafka
 *   record over its limit; 422 ingest.max_live_series; 429 a token's rate
 *   limit; 503 + Retry-After when Kafka cannot take it ("outcome" says
 *   whether it may be stored: retry with the same key).
 *
 * All callbacks run on the event loop given; the caller has checked the
 * write scope (client: the token's client, NULL without tokens).
 */
#ifndef TALLY_BATCH_PIPELINE_H
#define TALLY_BATCH_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/http.h>

#include "auth.h"
#include "config.h"
#include "kafka_writer.h"
#include "prom_text.h"
#include "redis_router.h"

typedef struct batch_pipeline batch_pipeline;

/* The writers are borrowed. Returns NULL with err filled. */
batch_pipeline *batch_pipeline_new(struct event_base *base, const tally_config *cfg,
                                   kafka_writer *kafka, redis_router *redis, char *err,
                                   size_t errlen);

/* Takes a POST /v1/events (answers it now or later). */
void batch_pipeline_post(batch_pipeline *p, struct evhttp_request *req, const auth_client *client);

/* The answer to a batch given by batch_pipeline_submit(), exactly once:
 * status as POST /v1/events would answer it (200: Kafka holds the batch),
 * outcome "stored" / "not_stored" / "unknown" (Kafka may hold it), and
 * message: on 200 the live view's state ("applied", "duplicate", "stale",
 * or "ignored": the body held only events and service checks), else the
 * reason. */
typedef void (*batch_done_fn)(void *opaque, int status, const char *outcome,
                              const char *message);

/* Takes a plain body of StatsD lines from inside tally-ingest (the StatsD
 * listeners) down the same path as a POST without a token or key: parsed
 * whole, Kafka, then Redis. Its last `folded` lines are folded counters
 * (counter_fold.h), each standing for 1 + extra[i] lines (event.h:
 * extra_lines); folded may be 0 (extra NULL). The body and extra are copied
 * or done with when this returns; `done` answers now or later. */
void batch_pipeline_submit(batch_pipeline *p, const char *body, size_t len,
                           const uint32_t *extra, size_t folded, batch_done_fn done,
                           void *opaque);

/* From now on new batches get 503 ("shutting down"). */
/* Whether a batch of `len` bytes submitted now would be taken, not refused
 * for the in-flight limits (ingest.max_inflight_batches, _bytes): 1 or 0. */
int batch_pipeline_has_room(const batch_pipeline *p, size_t len);

void batch_pipeline_drain(batch_pipeline *p);
int batch_pipeline_draining(const batch_pipeline *p);

/* redis.on_unavailable = accept. */
int batch_pipeline_fail_open(const batch_pipeline *p);

/* Batches accepted for processing and not yet answered. */
size_t batch_pipeline_inflight(const batch_pipeline *p);

/* Appends the write path's /metrics families (answers by kind, events, the
 * ack latency histogram, Kafka and Redis failures, in flight). */
void batch_pipeline_metrics(const batch_pipeline *p, prom_text *t);

/* Call only when inflight is 0. NULL is a no-op. */
void batch_pipeline_free(batch_pipeline *p);

#endif
