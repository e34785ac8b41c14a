/*
 * killer.c — child processes (deploy/stack or deploy/cluster, tally-flusher --rebuild-redis)
 * and the thread that kills and restarts one component on a seeded schedule.
 *
 * Children are started with posix_spawn, never through a shell, from the
 * repository root (deploy/stack, deploy/cluster and the relative sqlite.path expect it) with
 * the drill's environment, so TALLY_VAR, TALLY_BUILD, TALLY_CONF and the port
 * variables reach deploy/stack unchanged. Their output goes to one log file
 * so that the drill's own stderr stays readable; a failing command is named
 * with its exit status and the log path.
 *
 * Schedule: the scenario's window is cut into `kills` equal slots and kill i
 * happens at a random point of the first 60% of slot i, but never sooner
 * than one second after the previous restart finished: Kafka takes ~6 s to
 * come back, so a slow restart pushes the following kills later instead of
 * overlapping them. Every wait checks the stop flag; a kill that happened is
 * always followed by its restart.
 */
#include "killer.h"

#include "drill.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int proc_run(const drill_env *env, char *const argv[], double timeout_s, char *capture, size_t capture_len,
             char *err, size_t err_len)
{
    posix_spawn_file_actions_t fa;
    int pipefd[2] = {-1, -1};
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) {
        snprintf(err, err_len, "posix_spawn_file_actions_init: %s", strerror(rc));
        return -1;
    }
    if (capture != NULL && pipe2(pipefd, O_CLOEXEC) != 0) {
        snprintf(err, err_len, "pipe: %s", strerror(errno));
        posix_spawn_file_actions_destroy(&fa);
        return -1;
    }
    if ((rc = posix_spawn_file_actions_addchdir_np(&fa, env->repo)) != 0 ||
        (rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)) != 0 ||
        (rc = posix_spawn_file_actions_addopen(&fa, 2, env->log_path, O_WRONLY | O_APPEND | O_CREAT, 0644)) != 0 ||
        (rc = capture != NULL ? posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1)
                              : posix_spawn_file_actions_adddup2(&fa, 2, 1)) != 0) {
        snprintf(err, err_len, "posix_spawn_file_actions: %s", strerror(rc));
        posix_spawn_file_actions_destroy(&fa);
        if (pipefd[0] >= 0) {
            close(pipefd[0]);
            close(pipefd[1]);
        }
        return -1;
    }
    pid_t pid;
    rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (pipefd[1] >= 0) close(pipefd[1]);
    if (rc != 0) {
        snprintf(err, err_len, "cannot run %s: %s", argv[0], strerror(rc));
        if (pipefd[0] >= 0) close(pipefd[0]);
        return -1;
    }

    size_t got = 0;
    if (capture != NULL && capture_len > 0) capture[0] = '\0';
    double deadline = drill_now() + timeout_s;
    int status = 0, timed_out = 0;
    for (;;) {
        if (pipefd[0] >= 0) { /* drain the child's stdout so it never blocks on a full pipe */
            struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
            if (poll(&p, 1, 20) > 0) {
                char buf[4096];
                ssize_t n = read(pipefd[0], buf, sizeof buf);
                if (n > 0) {
                    size_t take = (size_t)n;
                    if (capture_len > 0 && take > capture_len - 1 - got) take = capture_len - 1 - got;
                    memcpy(capture + got, buf, take);
                    got += take;
                    capture[got] = '\0';
                } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                    close(pipefd[0]);
                    pipefd[0] = -1;
                }
            }
        }
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) break;
        if (w < 0 && errno != EINTR) {
            snprintf(err, err_len, "waitpid %s: %s", argv[0], strerror(errno));
            if (pipefd[0] >= 0) close(pipefd[0]);
            return -1;
        }
        if (!timed_out && drill_now() > deadline) {
            timed_out = 1;
            if (kill(pid, SIGKILL) != 0 && errno != ESRCH) drill_say("kill %d: %s", (int)pid, strerror(errno));
        }
        if (pipefd[0] < 0) drill_sleep(0.02);
    }
    if (pipefd[0] >= 0) close(pipefd[0]);
    if (timed_out) {
        snprintf(err, err_len, "%s did not finish within %.0f s (killed)", argv[0], timeout_s);
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(err, err_len, "%s died of signal %d", argv[0], WTERMSIG(status));
        return -1;
    }
    return WEXITSTATUS(status);
}

/* "stack" or "cluster": the last component of env->stack. */
static const char *stack_base(const drill_env *env)
{
    const char *slash = strrchr(env->stack, '/');
    return slash != NULL ? slash + 1 : env->stack;
}

int stack_command(const drill_env *env, const char *cmd, const char *component, char *err, size_t err_len)
{
    char *argv[] = {(char *)env->stack, (char *)cmd, (char *)component, NULL};
    int rc = proc_run(env, argv, 300, NULL, 0, err, err_len);
    if (rc == 0) return 0;
    if (rc > 0)
        snprintf(err, err_len, "deploy/%s %s %s exited with %d (see %s)", stack_base(env), cmd, component ? component : "",
                 rc, env->log_path);
    return -1;
}

int flusher_rebuild_redis(const drill_env *env, char *err, size_t err_len)
{
    char *argv[] = {(char *)env->flusher, "-c", (char *)env->conf, "--rebuild-redis", NULL};
    int rc = proc_run(env, argv, 300, NULL, 0, err, err_len);
    if (rc == 0) return 0;
    if (rc > 0) snprintf(err, err_len, "tally-flusher --rebuild-redis exited with %d (see %s)", rc, env->log_path);
    return -1;
}

/* Sleeps until monotonic time `until` unless a stop is requested; 1 = stopped. */
static int wait_until(killer *k, double until)
{
    for (;;) {
        if (atomic_load(&k->stop)) return 1;
        double left = until - drill_now();
        if (left <= 0) return 0;
        drill_sleep(left < 0.05 ? left : 0.05);
    }
}

/* `STACK up COMPONENT`, tried a second time after a failure. */
static int bring_up(killer *k, const char *component)
{
    char err[512];
    for (int attempt = 1; attempt <= 2; attempt++) {
        if (stack_command(k->env, "up", component, err, sizeof err) == 0) return 0;
        drill_say("%s: restart attempt %d failed: %s", component, attempt, err);
        k->failures++;
        drill_sleep(2);
    }
    return -1;
}

/* The component to kill this time: `list` itself, or one of its
 * comma-separated names drawn from rng (a single name draws nothing, so the
 * single-node scenarios keep their seeded plans). */
static void pick_target(const char *list, uint64_t *rng, char *out, size_t len)
{
    int n = 1;
    for (const char *c = list; *c; c++) n += *c == ',';
    int want = n > 1 ? (int)(prng_next(rng) % (uint64_t)n) : 0;
    const char *start = list;
    for (int i = 0; i < want; i++) start = strchr(start, ',') + 1;
    size_t l = strcspn(start, ",");
    snprintf(out, len, "%.*s", (int)l, start);
}

static void *killer_main(void *arg)
{
    killer *k = arg;
    uint64_t rng = k->seed;
    double t0 = drill_now(), slot = k->duration_s / (k->kills > 0 ? k->kills : 1), ready = t0;
    for (int i = 0; i < k->kills; i++) {
        double at = t0 + slot * i + slot * (0.1 + 0.5 * prng_unit(&rng));
        if (at < ready + 1.0) at = ready + 1.0;
        double lo = k->down_min_s, hi = k->down_max_s;
        if (lo <= 0 && hi <= 0) lo = 0.2, hi = 2.0;
        double down = lo + (hi - lo) * prng_unit(&rng);
        char target[64];
        pick_target(k->component, &rng, target, sizeof target);
        const char *up = k->up_component != NULL ? k->up_component : target;
        if (wait_until(k, at)) break;

        char out[4096], err[512];
        char *argv[] = {(char *)k->env->stack, "kill", target, NULL};
        int rc = proc_run(k->env, argv, 60, out, sizeof out, err, sizeof err);
        double killed_at = drill_now();
        if (rc != 0) {
            if (rc > 0) snprintf(err, sizeof err, "deploy/%.16s kill %s exited with %d: %.300s", stack_base(k->env), target, rc, out);
            drill_say("%s: kill %d/%d FAILED: %s", target, i + 1, k->kills, err);
            k->failures++;
        } else if (strstr(out, "killed") == NULL) {
            drill_say("%s: kill %d/%d found nothing to kill: %s", target, i + 1, k->kills, out);
        } else {
            atomic_fetch_add(&k->kills_done, 1);
            /* the line that says what was killed: "cluster: kafka2: killed (SIGKILL, pid N)" */
            char *line = strstr(out, "killed");
            while (line > out && line[-1] != '\n') line--;
            line[strcspn(line, "\n")] = '\0';
            if (strchr(line, ':') != NULL) line = strchr(line, ':') + 1 + (strchr(line, ':')[1] == ' ');
            drill_say("%s: kill %d/%d (%s); restarting in %.1f s", target, i + 1, k->kills, line, down);
        }
        drill_sleep(down);
        double up_start = drill_now();
        if (bring_up(k, up) != 0) {
            drill_say("%s: could not be restarted; no more kills in this scenario", up);
            break;
        }
        double up_done = drill_now();
        k->downtime_s += up_done - killed_at;
        char extra[600] = "";
        if (k->rebuild_after_up) {
            if (flusher_rebuild_redis(k->env, err, sizeof err) == 0) {
                snprintf(extra, sizeof extra, ", rebuild-redis %.1f s", drill_now() - up_done);
            } else {
                k->failures++;
                snprintf(extra, sizeof extra, ", rebuild-redis FAILED: %s", err);
            }
        }
        ready = drill_now();
        atomic_store(&k->last_up_ms, (long long)(ready * 1000));
        drill_say("%s: back after %.1f s down (restart took %.1f s%s)", target, up_done - killed_at,
                  up_done - up_start, extra);
    }
    atomic_store(&k->finished, 1);
    return NULL;
}

int killer_start(killer *k, char *err, size_t err_len)
{
    atomic_store(&k->kills_done, 0);
    k->failures = 0;
    k->downtime_s = 0;
    atomic_store(&k->stop, 0);
    atomic_store(&k->finished, 0);
    atomic_store(&k->last_up_ms, 0);
    int rc = pthread_create(&k->thread, NULL, killer_main, k);
    if (rc != 0) {
        snprintf(err, err_len, "pthread_create: %s", strerror(rc));
        return -1;
    }
    return 0;
}

void killer_request_stop(killer *k) { atomic_store(&k->stop, 1); }

int killer_finished(killer *k) { return atomic_load(&k->finished); }

void killer_join(killer *k)
{
    int rc = pthread_join(k->thread, NULL);
    if (rc != 0) drill_say("pthread_join (killer): %s", strerror(rc));
}
