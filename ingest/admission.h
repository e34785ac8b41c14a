/*
 * admission.h — whether a batch may enter, decided in Redis before it goes to
 * Kafka, so that a refused batch is stored nowhere: the client's rate limits
 * (auth.h) and the live view's cardinality limit (ingest.max_live_series),
 * in one script call. Building the call and reading its answer are pure.
 *
 * Rate limits: one GCRA (a token bucket) per limit, kept in the hash
 * tally:{admission}:rate:NAME and timed by the Redis server's clock (TIME), so every
 * ingest shares one budget per client and no ingest host's clock matters.
 * The burst is one second's worth: a batch of more events than
 * events_per_second can never pass (the caller answers it 413 first).
 *
 * Cardinality: tally:{admission}:live:series is a HyperLogLog of every series admitted.
 * The call carries the batch's series this writer does not already know to
 * be admitted (live_known.h). While the estimate is below the limit they are
 * added; at or past it, each one is looked up in its hash: an existing
 * series passes, a new one refuses the batch. On one server the script looks
 * them up itself; on a Redis Cluster their hashes live in other slots, so it
 * answers ADMIT_LOOK_UP and the caller sends one lookup per series to its
 * own slot (admission_lookup_args), then, when every one exists, asks again
 * for the rate limits alone. So the limit holds to the HyperLogLog's error
 * (0.81 %), plus at most one batch per admission that runs concurrently with
 * the one that reaches it.
 *
 * A batch needing neither (no limits, every series known) needs no call.
 */
#ifndef TALLY_ADMISSION_H
#define TALLY_ADMISSION_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "auth.h"
#include "live_known.h"
#include "live_update.h"

typedef struct admission {
    int argc;
    const char **argv;   /* EVAL script numkeys keys... args... (into `strings`) */
    size_t *argvlen;
    char *strings;       /* owned */
    size_t *candidates;  /* positions in the fold of the series sent */
    size_t ncandidates;
} admission;

/* Builds the call for a batch of `events` events folded in `fold` (NULL: its
 * series are settled, only the rate limits are asked). `client`
 * (NULL: none) brings its rate limits; series_here: 1 on one server, 0 on a
 * Redis Cluster. Returns 1 (a call to send: *a filled), 0 (nothing to ask:
 * *a empty) or -1 (out of memory, err filled). */
int admission_build(admission *a, const live_fold *fold, size_t events, const live_known *known,
                    const auth_client *client, long long max_live_series, int series_here,
                    char *err, size_t errlen);

typedef enum admit_verdict {
    ADMIT_OK,
    ADMIT_RATE_LIMITED,   /* *number: ms until it would pass; `which` names the limit */
    ADMIT_TOO_MANY_SERIES, /* *number: the live view's series (estimate) */
    ADMIT_LOOK_UP,        /* at the limit on a cluster: look each series up (*number: as above) */
    ADMIT_UNANSWERED,     /* an error or unexpected reply: why filled */
} admit_verdict;

admit_verdict admission_verdict(const redisReply *reply, long long *number, const char **which,
                                char *why, size_t whylen);

/* The lookup of candidate k < a->ncandidates after ADMIT_LOOK_UP: one EVAL
 * on the slot of argv[3], its series' hash (frac: room for the ":frac" key,
 * REDIS_KEY_MAX). Its reply is an integer, > 0 when the series exists.
 * Returns 0, or -1 when the key does not fit in frac. */
int admission_lookup_args(const admission *a, size_t k, const char *argv[6], size_t argvlen[6],
                          char *frac, size_t fraclen);

/* After ADMIT_OK (or every lookup found its series): records the series sent as admitted. */
void admission_note(const admission *a, const live_fold *fold, live_known *known);

void admission_free(admission *a);

#endif
