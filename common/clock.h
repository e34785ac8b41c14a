/*
 * clock.h — the clocks Tally reads, in the units it uses. Monotonic time for
 * durations, deadlines and rates (never jumps); wall time only for stamps
 * that leave the process (event times, query times). clock_gettime with
 * these clocks cannot fail on Linux.
 */
#ifndef TALLY_CLOCK_H
#define TALLY_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t clock_mono_ms(void) { return clock_mono_ns() / 1000000; }

static inline double clock_mono_seconds(void) { return (double)clock_mono_ns() / 1e9; }

/* Unix time in milliseconds. */
static inline int64_t clock_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
