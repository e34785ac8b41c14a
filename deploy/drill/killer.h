/*
 * killer.h — running deploy/stack and tally-flusher as child processes, and
 * the killer thread that takes one component down at random moments.
 *
 * Contract:
 *  - proc_run() starts a program with posix_spawn (working directory: the
 *    repository root, environment: the drill's own), sends its stdout and
 *    stderr to the drill's log file, waits for it (bounded) and returns its
 *    exit status; nothing is run through a shell.
 *  - The killer, for `kills` times at seeded random moments spread over
 *    `duration_s`, runs `STACK kill COMPONENT` (SIGKILL; COMPONENT may be a
 *    comma-separated list, one of which is drawn per kill), waits a seeded
 *    random downtime (down_min_s..down_max_s; 0.2–2 s when both are 0), runs
 *    `STACK up UP_COMPONENT` (up_component, default the killed one; the
 *    command waits until it is ready) and, for Redis, `tally-flusher -c CONF
 *    --rebuild-redis`. STACK is deploy/stack or deploy/cluster. A cycle that
 *    was started is always completed (the component is brought back) even
 *    when a stop is requested.
 */
#ifndef TALLY_DRILL_KILLER_H
#define TALLY_DRILL_KILLER_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct drill_env {
    char repo[PATH_MAX];      /* repository root: working directory of every child */
    char stack[PATH_MAX];     /* deploy/stack */
    char flusher[PATH_MAX];   /* tally-flusher binary */
    char conf[PATH_MAX];      /* absolute config path */
    char log_path[PATH_MAX];  /* children's stdout/stderr are appended here */
} drill_env;

/*
 * Runs argv[0] (a path) with argv, waits at most timeout_s (then SIGKILLs it).
 * Returns its exit status (0..255), or -1 when it could not be started, was
 * killed by a signal or timed out; err then says which.
 * With `capture` non-NULL, stdout goes there instead (NUL-terminated,
 * truncated to capture_len) and stderr to the log.
 */
int proc_run(const drill_env *env, char *const argv[], double timeout_s, char *capture, size_t capture_len,
             char *err, size_t err_len);

/* `STACK CMD [COMPONENT]` (component may be NULL = all; STACK is env->stack). Returns 0 when
 * it exited 0; else -1 with err naming the command and how it failed. */
int stack_command(const drill_env *env, const char *cmd, const char *component, char *err, size_t err_len);

/* `tally-flusher -c CONF --rebuild-redis`: 0 when it exited 0, else -1 + err. */
int flusher_rebuild_redis(const drill_env *env, char *err, size_t err_len);

typedef struct killer {
    /* set before killer_start */
    const drill_env *env;
    const char *component;    /* what `kill` is given: redis | kafka | ... | kafka-leader | flusher1,flusher2 */
    const char *up_component; /* what `up` is given after it; NULL: the killed component */
    double down_min_s, down_max_s; /* downtime range; both 0: 0.2..2 s */
    int kills;                /* planned */
    double duration_s;        /* kills are spread over this window */
    uint64_t seed;
    int rebuild_after_up;     /* run --rebuild-redis after each restart */
    /* results, read after killer_join */
    atomic_int kills_done;    /* readable while the thread runs */
    int failures;             /* stack or rebuild commands that failed */
    double downtime_s;        /* total seconds the component was down */
    /* internal */
    pthread_t thread;
    atomic_int stop;
    atomic_int finished;
    atomic_llong last_up_ms;  /* monotonic ms when the last restart finished */
} killer;

/* Starts the thread. Returns 0, or -1 with err filled. */
int killer_start(killer *k, char *err, size_t err_len);
/* No more new kills after the current cycle. */
void killer_request_stop(killer *k);
/* 1 once the thread has done all it will do. */
int killer_finished(killer *k);
void killer_join(killer *k);

#endif
