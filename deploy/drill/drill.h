/*
 * drill.h — what the modules of tally-drill share: the scenarios, the counter
 * names a scenario's load writes, the clock and the seeded PRNG.
 *
 * A drill run has a run id (random per run) so that its counter names,
 * "drill.<runid>.<scenario>.c<k>", and its Idempotency-Keys never meet those
 * of an earlier run in the same SQLite file or Redis within the dedup window.
 * Everything else random (batch contents, kill moments, downtimes) comes from
 * splitmix64 streams derived from --seed, so one seed replays the same plan.
 */
#ifndef TALLY_DRILL_H
#define TALLY_DRILL_H

#include <stddef.h>
#include <stdint.h>

/* The first four run on deploy/stack; the cluster scenarios on deploy/cluster
 * (tally-drill --cluster PATH). */
enum {
    SCENARIO_FLUSHER, SCENARIO_REDIS, SCENARIO_KAFKA, SCENARIO_INGEST,
    SCENARIO_BROKER_LEADER, SCENARIO_FLUSHER_MEMBER, SCENARIO_REDIS_MASTER,
    SCENARIO_COUNT
};
#define SCENARIO_FIRST_CLUSTER SCENARIO_BROKER_LEADER

/* Counter names per scenario: c0 .. c(DRILL_COUNTERS-1). */
#define DRILL_COUNTERS 8
#define DRILL_NAME_MAX 96
#define DRILL_RUNID_LEN 8

/* "flusher", "redis", "kafka", "ingest" (also the deploy/stack component
 * killed), "broker-leader", "flusher-member". */
const char *scenario_name(int scenario);
/* 1 for a scenario that runs on deploy/cluster. */
int scenario_is_cluster(int scenario);
/* SCENARIO_* for a name, or -1. */
int scenario_parse(const char *name);

/* Writes "drill.<runid>.<scenario>.c<k>" into buf. */
void drill_counter_name(char *buf, size_t len, const char *runid, int scenario, int k);

/* Seconds on the monotonic clock. */
double drill_now(void);
/* Sleeps `seconds` (>= 0), resuming after signals. */
void drill_sleep(double seconds);

/* splitmix64: one 64-bit step of a PRNG whose whole state is *state. */
static inline uint64_t prng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static inline double prng_unit(uint64_t *state)
{
    return (double)(prng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* An independent stream for (seed, purpose, index). */
static inline uint64_t prng_stream(uint64_t seed, uint64_t purpose, uint64_t index)
{
    uint64_t s = seed ^ (purpose * UINT64_C(0xD1B54A32D192ED03)) ^ (index * UINT64_C(0x8CB92BA72F3D8DD7));
    (void)prng_next(&s);
    return s;
}

/* Progress output on stderr, one line per call, prefixed with the time since
 * the drill started. Thread-safe. */
void drill_say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
