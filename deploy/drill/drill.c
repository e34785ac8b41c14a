/*
 * drill.c — tally-drill: the failover drill. main() wires the modules.
 *
 * A drill runs scenarios (flusher, redis, kafka, ingest) one after another on
 * a running local stack (deploy/stack up), or, with --cluster, the cluster
 * scenarios on a running deploy/cluster: broker-leader (SIGKILL the broker
 * that leads partition 0, down long enough for Kafka to fence it and elect
 * new leaders, then restarted), flusher-member (SIGKILL flusher1 or
 * flusher2, down past flusher.session_timeout_ms so the other takes its
 * partitions over, then restarted) and redis-master (SIGKILL the Redis
 * Cluster master of shard 0's slot, down past the cluster's node timeout so
 * its replica takes over, then restarted as a replica). Each scenario:
 *   1. starts the load (load.c) and the killer (killer.c) together;
 *   2. keeps them running until the scenario's duration has passed, every
 *      planned kill has been done and restarted, the component has served
 *      load again for a moment, and (long form) enough batches were acked;
 *   3. stops the killer, then the load (workers finish the batch they hold,
 *      so the ledger is complete), brings every component up;
 *   4. waits for SQLite to equal the ledger, rebuilds Redis with
 *      tally-flusher --rebuild-redis (not on a Redis Cluster: there the live
 *      view must be exact as it is) and compares Redis with SQLite (verify.c).
 * At the end it prints one markdown table (stdout); progress goes to stderr.
 * Exit status: 0 every check passed; 1 a check failed (lost, duplicated,
 * unresolved, Redis mismatch, a planned kill not done, a failed step);
 * 2 bad usage or configuration, or the stack is not up.
 *
 * All children inherit the drill's environment, so deploy/stack sees the same
 * TALLY_VAR / TALLY_BUILD / ports; relative TALLY_* paths are made absolute
 * first (children run from the repository root), and TALLY_CONF defaults to
 * the drill's -c file so a restarted ingest/flusher reads the same config.
 */
#include "drill.h"
#include "http_client.h"
#include "killer.h"
#include "ledger.h"
#include "load.h"
#include "redis_auth.h"
#include "verify.h"

#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- shared helpers (drill.h) ---------------------------------------------------- */

static const char *const SCENARIOS[SCENARIO_COUNT] = {"flusher",       "redis",          "kafka",       "ingest",
                                                        "broker-leader", "flusher-member", "redis-master"};
/* What deploy/cluster status must show running (deploy/stack: the first four SCENARIOS). */
static const char *const CLUSTER_COMPONENTS[] = {"kafka1", "kafka2", "kafka3",   "redis1",   "redis2",
                                                 "redis3", "redis4", "redis5",   "redis6",   "cache",
                                                 "flusher1", "flusher2", "ingest1", "ingest2", NULL};
static double drill_start;

const char *scenario_name(int scenario)
{
    return scenario >= 0 && scenario < SCENARIO_COUNT ? SCENARIOS[scenario] : "?";
}

int scenario_is_cluster(int scenario) { return scenario >= SCENARIO_FIRST_CLUSTER && scenario < SCENARIO_COUNT; }

int scenario_parse(const char *name)
{
    for (int i = 0; i < SCENARIO_COUNT; i++)
        if (strcmp(name, SCENARIOS[i]) == 0) return i;
    return -1;
}

void drill_counter_name(char *buf, size_t len, const char *runid, int scenario, int k)
{
    snprintf(buf, len, "drill.%s.%s.c%d", runid, scenario_name(scenario), k);
}

double drill_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* cannot fail with this clock */
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void drill_sleep(double seconds)
{
    if (seconds <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)seconds, .tv_nsec = (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

void drill_say(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "[drill %6.1fs] %s\n", drill_now() - drill_start, line); /* one locked write */
}

/* ---- options ------------------------------------------------------------------------ */

typedef struct options {
    const char *conf;
    int scenarios[SCENARIO_COUNT];   /* 1 = run it */
    uint64_t seed;
    int seed_given;
    int all;                         /* --all: every scenario of the stack or cluster */
    int is_short;
    double duration_s;               /* < 0: default of the form */
    int kills;                       /* < 0: default */
    int concurrency;
    int lines;
    long long min_batches;           /* < 0: default */
    const char *stack;
    const char *cluster;             /* --cluster PATH: deploy/cluster, cluster scenarios */
    const char *flusher;
} options;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: tally-drill [-c FILE] [--scenario NAME]... | [--all] [--seed N] [--short]\n"
            "                   [--duration S] [--kills N] [--concurrency N] [--lines N] [--batches N]\n"
            "                   [--stack PATH | --cluster PATH] [--flusher PATH]\n"
            "Kills and restarts components of the running local stack (deploy/stack up) under load and\n"
            "checks that every acknowledged batch is in SQLite exactly once and Redis equals SQLite.\n"
            "  -c FILE          Tally config (default $TALLY_CONF, else conf/tally.conf; with --cluster\n"
            "                   the cluster's conf/tally.conf); becomes TALLY_CONF of the services\n"
            "                   deploy/stack restarts when that is unset\n"
            "  --scenario NAME  flusher, redis, kafka or ingest; with --cluster broker-leader or\n"
            "                   flusher-member, redis-master; repeatable or comma-separated\n"
            "  --all            every scenario of the stack in that order (the default when none is named)\n"
            "  --seed N         seed of every random choice (default: from the clock, printed)\n"
            "  --short          quick form for tests: 2 kills and ~15 s per scenario\n"
            "  --duration S     seconds of load per scenario (default 30; short 15); longer if the\n"
            "                   kills need it\n"
            "  --kills N        kills per scenario (default 5; short 2)\n"
            "  --concurrency N  client connections (default 4)\n"
            "  --lines N        lines per batch (default 20)\n"
            "  --batches N      keep the load on until N batches are acked per scenario\n"
            "                   (default 12500, so --all acks >= 50,000; short 0)\n"
            "  --stack PATH     deploy/stack (default: found next to this binary or the working dir)\n"
            "  --cluster PATH   run on deploy/cluster at PATH (its state: $TALLY_CLUSTER_VAR, default\n"
            "                   REPO/var/cluster) with the cluster scenarios\n"
            "  --flusher PATH   tally-flusher for --rebuild-redis (default: $TALLY_BUILD, this binary's\n"
            "                   directory, or REPO/build)\n"
            "Exit status: 0 all checks passed, 1 a check failed, 2 usage/config error or stack not up.\n");
}

static int parse_int(const char *s, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Returns 0, or 2 after printing why. */
static int parse_options(int argc, char **argv, options *o)
{
    enum { O_SCENARIO = 256, O_ALL, O_SEED, O_SHORT, O_DURATION, O_KILLS, O_CONC, O_LINES, O_BATCHES,
           O_STACK, O_CLUSTER, O_FLUSHER };
    static const struct option opts[] = {
        {"scenario", required_argument, NULL, O_SCENARIO}, {"all", no_argument, NULL, O_ALL},
        {"seed", required_argument, NULL, O_SEED},         {"short", no_argument, NULL, O_SHORT},
        {"duration", required_argument, NULL, O_DURATION}, {"kills", required_argument, NULL, O_KILLS},
        {"concurrency", required_argument, NULL, O_CONC},  {"lines", required_argument, NULL, O_LINES},
        {"batches", required_argument, NULL, O_BATCHES},   {"stack", required_argument, NULL, O_STACK},
        {"flusher", required_argument, NULL, O_FLUSHER},   {"cluster", required_argument, NULL, O_CLUSTER},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    memset(o, 0, sizeof *o);
    o->conf = getenv("TALLY_CONF") != NULL && getenv("TALLY_CONF")[0] != '\0' ? getenv("TALLY_CONF") : NULL;
    o->duration_s = -1;
    o->kills = -1;
    o->concurrency = 4;
    o->lines = 20;
    o->min_batches = -1;
    int any = 0, c;
    long long v;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': o->conf = optarg; break;
        case 'h': usage(stdout); return 1;
        case O_SCENARIO: {
            char buf[256];
            snprintf(buf, sizeof buf, "%s", optarg);
            char *save = NULL;
            for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
                int s = scenario_parse(t);
                if (s < 0) {
                    fprintf(stderr, "tally-drill: unknown scenario \"%s\" (flusher, redis, kafka, ingest; "
                                    "with --cluster: broker-leader, flusher-member, redis-master)\n", t);
                    return 2;
                }
                o->scenarios[s] = 1;
                any = 1;
            }
            break;
        }
        case O_ALL: o->all = 1; break;
        case O_SEED: {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(optarg, &end, 10);
            if (end == optarg || *end != '\0' || errno != 0 || optarg[0] == '-') {
                fprintf(stderr, "tally-drill: --seed wants a non-negative integer, not \"%s\"\n", optarg);
                return 2;
            }
            o->seed = s;
            o->seed_given = 1;
            break;
        }
        case O_SHORT: o->is_short = 1; break;
#define INT_OPT(name, lo, hi, field)                                                                \
    if (parse_int(optarg, lo, hi, &v) != 0) {                                                       \
        fprintf(stderr, "tally-drill: --%s wants an integer in %lld..%lld, not \"%s\"\n", name,     \
                (long long)(lo), (long long)(hi), optarg);                                          \
        return 2;                                                                                   \
    }                                                                                               \
    field = v;
        case O_DURATION: INT_OPT("duration", 1, 86400, o->duration_s) break;
        case O_KILLS: INT_OPT("kills", 0, 1000, o->kills) break;
        case O_CONC: INT_OPT("concurrency", 1, 256, o->concurrency) break;
        case O_LINES: INT_OPT("lines", 1, 10000, o->lines) break;
        case O_BATCHES: INT_OPT("batches", 0, 100000000, o->min_batches) break;
#undef INT_OPT
        case O_STACK: o->stack = optarg; break;
        case O_CLUSTER: o->cluster = optarg; break;
        case O_FLUSHER: o->flusher = optarg; break;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally-drill: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (o->stack != NULL && o->cluster != NULL) {
        fprintf(stderr, "tally-drill: --stack and --cluster exclude each other\n");
        return 2;
    }
    int cluster = o->cluster != NULL;
    for (int i = 0; i < SCENARIO_COUNT; i++) {
        if (!any || o->all) o->scenarios[i] = scenario_is_cluster(i) == cluster;
        if (o->scenarios[i] && scenario_is_cluster(i) != cluster) {
            fprintf(stderr, "tally-drill: scenario %s runs on %s\n", scenario_name(i),
                    cluster ? "deploy/stack (without --cluster)" : "deploy/cluster: give --cluster PATH");
            return 2;
        }
    }
    if (o->duration_s < 0) o->duration_s = o->is_short ? 15 : 30;
    if (o->kills < 0) o->kills = o->is_short ? 2 : 5;
    if (o->min_batches < 0) o->min_batches = o->is_short ? 0 : 12500;
    return 0;
}

/* ---- paths ------------------------------------------------------------------------ */

static int path_too_long;   /* set when fmt_path truncated a path */

/* snprintf for paths: a truncated path is remembered (resolve_paths fails). */
static void fmt_path(char *dst, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fmt_path(char *dst, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= len) path_too_long = 1;
}

static int is_file(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* Cuts the last path component of p (in place). */
static void path_up(char *p)
{
    char *s = strrchr(p, '/');
    if (s == NULL) p[0] = '\0';
    else if (s == p) p[1] = '\0';
    else *s = '\0';
}

/* Looks for deploy/stack in dir and its parents (4 levels); fills repo. */
static int find_repo_from(const char *dir, char *repo, size_t len)
{
    char d[PATH_MAX], probe[PATH_MAX + 32];
    fmt_path(d, sizeof d, "%s", dir);
    for (int i = 0; i < 5 && d[0] != '\0'; i++) {
        fmt_path(probe, sizeof probe, "%s/deploy/stack", d);
        if (is_file(probe)) {
            fmt_path(repo, len, "%s", d);
            return 0;
        }
        if (strcmp(d, "/") == 0) break;
        path_up(d);
    }
    return -1;
}

/* Makes the environment variable `name` absolute (relative to the working dir). */
static int absolutize_env(const char *name, const char *cwd)
{
    const char *v = getenv(name);
    if (v == NULL || v[0] == '\0' || v[0] == '/') return 0;
    char abs[PATH_MAX * 2];
    fmt_path(abs, sizeof abs, "%s/%s", cwd, v);
    if (setenv(name, abs, 1) != 0) {
        fprintf(stderr, "tally-drill: setenv %s: %s\n", name, strerror(errno));
        return -1;
    }
    return 0;
}

typedef struct paths {
    drill_env env;
    char var[PATH_MAX];
    char db[PATH_MAX];
    char ledger[PATH_MAX + 64];
} paths;

/* Resolves the repository, deploy/stack, tally-flusher, the config, TALLY_VAR.
 * Returns 0, or 2 after printing why. */
static int resolve_paths(const options *o, paths *p)
{
    char cwd[PATH_MAX], exe[PATH_MAX], buf[PATH_MAX];
    memset(p, 0, sizeof *p);
    if (getcwd(cwd, sizeof cwd) == NULL) {
        fprintf(stderr, "tally-drill: getcwd: %s\n", strerror(errno));
        return 2;
    }
    if (absolutize_env("TALLY_VAR", cwd) || absolutize_env("TALLY_BUILD", cwd) || absolutize_env("TALLY_CONF", cwd) ||
        absolutize_env("TALLY_CLUSTER_VAR", cwd))
        return 2;
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    path_up(exe); /* the binary's directory */

    const char *given = o->cluster != NULL ? o->cluster : o->stack;
    if (given != NULL) {
        errno = 0;
        if (realpath(given, buf) == NULL || !is_file(buf)) {
            fprintf(stderr, "tally-drill: --%s %s: %s\n", o->cluster ? "cluster" : "stack", given,
                    errno ? strerror(errno) : "not a file");
            return 2;
        }
        fmt_path(p->env.stack, sizeof p->env.stack, "%s", buf);
        fmt_path(p->env.repo, sizeof p->env.repo, "%s", buf);
        path_up(p->env.repo);
        path_up(p->env.repo);
    } else {
        if ((exe[0] == '\0' || find_repo_from(exe, p->env.repo, sizeof p->env.repo) != 0) &&
            find_repo_from(cwd, p->env.repo, sizeof p->env.repo) != 0) {
            fprintf(stderr, "tally-drill: cannot find deploy/stack near %s or %s; give --stack PATH\n", exe, cwd);
            return 2;
        }
        fmt_path(p->env.stack, sizeof p->env.stack, "%s/deploy/stack", p->env.repo);
    }

    if (o->flusher != NULL) {
        fmt_path(buf, sizeof buf, "%s", o->flusher);
    } else if (getenv("TALLY_BUILD") != NULL && getenv("TALLY_BUILD")[0] != '\0') {
        fmt_path(buf, sizeof buf, "%s/tally-flusher", getenv("TALLY_BUILD"));
    } else {
        fmt_path(buf, sizeof buf, "%s/tally-flusher", exe);
        if (!is_file(buf)) fmt_path(buf, sizeof buf, "%s/build/tally-flusher", p->env.repo);
    }
    if (buf[0] != '/') {
        char abs[PATH_MAX * 2];
        fmt_path(abs, sizeof abs, "%s/%s", cwd, buf);
        fmt_path(buf, sizeof buf, "%s", abs);
    }
    if (access(buf, X_OK) != 0) {
        fprintf(stderr, "tally-drill: tally-flusher %s: %s (build it, or give --flusher PATH)\n", buf,
                strerror(errno));
        return 2;
    }
    fmt_path(p->env.flusher, sizeof p->env.flusher, "%s", buf);

    /* the cluster's state directory, as deploy/cluster finds it */
    const char *cvar = getenv("TALLY_CLUSTER_VAR");
    char cluster_var[PATH_MAX], cluster_conf[PATH_MAX + 32];
    if (cvar != NULL && cvar[0] != '\0') fmt_path(cluster_var, sizeof cluster_var, "%s", cvar);
    else fmt_path(cluster_var, sizeof cluster_var, "%s/var/cluster", p->env.repo);
    fmt_path(cluster_conf, sizeof cluster_conf, "%s/conf/tally.conf", cluster_var);
    const char *conf = o->conf != NULL ? o->conf : o->cluster != NULL ? cluster_conf : "conf/tally.conf";
    char alt[PATH_MAX * 2];
    if (conf[0] != '/' && !is_file(conf)) { /* the default works from anywhere */
        fmt_path(alt, sizeof alt, "%s/%s", p->env.repo, conf);
        if (is_file(alt)) conf = alt;
    }
    if (realpath(conf, buf) == NULL) {
        fprintf(stderr, "tally-drill: config %s: %s%s\n", conf, strerror(errno),
                o->cluster != NULL ? " (deploy/cluster up writes it)" : "");
        return 2;
    }
    fmt_path(p->env.conf, sizeof p->env.conf, "%s", buf);
    const char *tc = getenv("TALLY_CONF");
    if (o->cluster != NULL) {
        /* deploy/cluster generates its own configs and reads no TALLY_CONF */
    } else if (tc == NULL || tc[0] == '\0') {
        if (setenv("TALLY_CONF", p->env.conf, 1) != 0) {
            fprintf(stderr, "tally-drill: setenv TALLY_CONF: %s\n", strerror(errno));
            return 2;
        }
    } else {
        char tc_real[PATH_MAX];
        if (realpath(tc, tc_real) == NULL || strcmp(tc_real, p->env.conf) != 0)
            fprintf(stderr, "tally-drill: warning: TALLY_CONF=%s (used by deploy/stack) is not -c %s\n", tc,
                    p->env.conf);
    }

    const char *var = getenv("TALLY_VAR");
    if (o->cluster != NULL) fmt_path(p->var, sizeof p->var, "%s", cluster_var);
    else if (var != NULL && var[0] != '\0') fmt_path(p->var, sizeof p->var, "%s", var);
    else fmt_path(p->var, sizeof p->var, "%s/var", p->env.repo);
    return 0;
}

static int make_dir(const char *path)
{
    char buf[PATH_MAX];
    fmt_path(buf, sizeof buf, "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* ---- the stack ------------------------------------------------------------------- */

/* 0 when STACK status shows every component running (deploy/stack: the four
 * the scenarios kill; deploy/cluster: CLUSTER_COMPONENTS) and ingest answers
 * /healthz; else -1 with what is missing. */
static int stack_is_up(const drill_env *env, int cluster, const char *host, int port, char *why, size_t why_len)
{
    char out[8192], err[512];
    char *argv[] = {(char *)env->stack, "status", NULL};
    int rc = proc_run(env, argv, 60, out, sizeof out, err, sizeof err);
    if (rc != 0) {
        snprintf(why, why_len, "%s status failed: %s", cluster ? "deploy/cluster" : "deploy/stack",
                 rc < 0 ? err : "non-zero exit");
        return -1;
    }
    why[0] = '\0';
    const char *const *names = cluster ? CLUSTER_COMPONENTS : SCENARIOS;
    int count = 0;
    while (cluster ? names[count] != NULL : count < SCENARIO_FIRST_CLUSTER) count++;
    for (int i = 0; i < count; i++) {
        int running = 0;
        for (const char *line = out; line != NULL && *line != '\0';) { /* "NAME running (pid N...)" */
            char comp[16], state[16];
            if (sscanf(line, "%15s %15s", comp, state) == 2 && strcmp(comp, names[i]) == 0)
                running = strcmp(state, "running") == 0;
            line = strchr(line, '\n');
            if (line != NULL) line++;
        }
        if (!running) {
            size_t used = strlen(why);
            snprintf(why + used, why_len - used, "%s%s is not running", used ? ", " : "", names[i]);
        }
    }
    if (why[0] != '\0') return -1;
    http_client *c = http_client_new(host, port, 3000);
    if (c == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    http_response resp;
    rc = http_client_request(c, "GET", "/healthz", NULL, 0, NULL, 0, &resp, err, sizeof err);
    if (rc != 0) snprintf(why, why_len, "tally-ingest at %s:%d does not answer: %s", host, port, err);
    else if (resp.status != 200) snprintf(why, why_len, "tally-ingest /healthz answered %d: %.200s", resp.status, resp.body);
    http_client_free(c);
    return rc == 0 && resp.status == 200 ? 0 : -1;
}

/* ---- scenarios ------------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;
static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

typedef struct scenario_result {
    int ran;
    ledger led;
    int kills_planned, kills_done;
    int step_failures;          /* killer, final stack up, rebuild */
    verify_result v;
    int verified;               /* verify_sqlite read SQLite */
    double load_s;
} scenario_result;

typedef struct run {
    const options *o;
    const paths *p;
    const tally_config *cfg;
    const char *host;
    char runid[DRILL_RUNID_LEN + 1];
    ledger_file file;
} run;

static void run_scenario(run *r, int sc, scenario_result *res)
{
    const options *o = r->o;
    const char *name = scenario_name(sc);
    char err[512];
    memset(res, 0, sizeof *res);
    res->ran = 1;
    res->kills_planned = o->kills;
    ledger_init(&res->led, r->runid, sc);
    drill_say("== scenario %s: %d kills over >= %.0f s, %d connections, %d lines/batch%s", name, o->kills,
              o->duration_s, o->concurrency, o->lines,
              sc == SCENARIO_REDIS           ? ", rebuild-redis after each restart"
              : sc == SCENARIO_BROKER_LEADER ? ", the broker leading partition 0, 5-8 s down"
              : sc == SCENARIO_FLUSHER_MEMBER ? ", flusher1 or flusher2, down past the session timeout"
              : sc == SCENARIO_REDIS_MASTER   ? ", the Redis master of shard 0, 4-6 s down (its replica takes over)"
                                              : "");

    int http_timeout = r->cfg->kafka.delivery_timeout_ms + 5000;
    if (http_timeout < 10000) http_timeout = 10000;
    load_config lc = {.host = r->host, .port = r->cfg->ingest.listen_port, .timeout_ms = http_timeout,
                      .concurrency = o->concurrency, .lines = o->lines, .seed = o->seed, .runid = r->runid,
                      /* a client retries until the batch is settled: a broker killed
                       * every few seconds can keep Kafka away for minutes, and only
                       * after the last kill does every batch get through */
                      .scenario = sc, .batch_deadline_s = 900, .file = &r->file};
    killer k = {.env = &r->p->env, .component = name, .kills = o->kills, .duration_s = o->duration_s,
                .seed = prng_stream(o->seed, 100, (uint64_t)sc), .rebuild_after_up = sc == SCENARIO_REDIS};
    if (sc == SCENARIO_BROKER_LEADER) {
        /* down past broker.session.timeout.ms (4 s in deploy/cluster): the
         * controller fences it, its partitions get new leaders, produce goes on */
        k.component = "kafka-leader";
        k.up_component = "kafka";
        k.down_min_s = 5;
        k.down_max_s = 8;
    } else if (sc == SCENARIO_REDIS_MASTER) {
        /* down past cluster-node-timeout (2 s in deploy/cluster): its replica
         * is promoted; back, it rejoins as a replica of the new master */
        k.component = "redis-master";
        k.up_component = "redis";
        k.down_min_s = 4;
        k.down_max_s = 6;
    } else if (sc == SCENARIO_FLUSHER_MEMBER) {
        /* down past the session timeout: the group gives its partitions to the other */
        double session_s = r->cfg->flusher.session_timeout_ms / 1000.0;
        k.component = "flusher1,flusher2";
        k.up_component = "flusher";
        k.down_min_s = session_s + 1;
        k.down_max_s = session_s + 3;
    }
    load *l = NULL;
    if (load_start(&l, &lc, err, sizeof err) != 0) {
        drill_say("%s: cannot start the load: %s", name, err);
        res->step_failures++;
        return;
    }
    int killer_running = killer_start(&k, err, sizeof err) == 0;
    if (!killer_running) {
        drill_say("%s: cannot start the killer: %s", name, err);
        res->step_failures++;
    }

    double t0 = drill_now(), next_report = t0 + 5, cap = t0 + 4 * o->duration_s + 120 + 15.0 * o->kills;
    long long last_acked = 0;
    double last_t = t0;
    for (;;) {
        drill_sleep(0.2);
        double now = drill_now();
        load_progress pr;
        load_get_progress(l, &pr);
        if (now >= next_report) {
            drill_say("%s: %.0f s: acked %lld (%.0f/s), retries %lld, non-200 %lld, conn errors %lld, kills %d/%d",
                      name, now - t0, pr.acked, (pr.acked - last_acked) / (now - last_t), pr.retries, pr.non200,
                      pr.transport_errors, killer_running ? atomic_load(&k.kills_done) : 0,
                      o->kills);
            last_acked = pr.acked;
            last_t = now;
            next_report = now + 5;
        }
        if (interrupted) {
            drill_say("%s: interrupted: stopping the load (batches being retried count as unresolved)", name);
            load_abort(l);
            break;
        }
        int kills_over = !killer_running || killer_finished(&k);
        double since_up = now - (killer_running ? (double)atomic_load(&k.last_up_ms) / 1000 : 0);
        if (kills_over && now - t0 >= o->duration_s && since_up >= 2.0 && pr.acked >= o->min_batches) break;
        if (now >= cap) {
            drill_say("%s: stopping the load at the time cap (%.0f s)%s", name, cap - t0,
                      kills_over ? "" : " before every kill was done");
            break;
        }
    }
    if (killer_running) {
        killer_request_stop(&k);
        killer_join(&k);
        res->kills_done = atomic_load(&k.kills_done);
        res->step_failures += k.failures;
    }
    load_stop(l, &res->led);
    load_free(l);
    double load_end = drill_now();
    res->load_s = load_end - t0;
    drill_say("%s: load stopped after %.1f s: %lld batches acked, %lld retries, %lld non-200, %lld conn errors, "
              "%lld unresolved, %lld acks with a stale live view; %d/%d kills",
              name, res->load_s, res->led.batches, res->led.retries, res->led.non200, res->led.transport_errors,
              res->led.unresolved, res->led.stale_acks, res->kills_done, o->kills);
    if (sc == SCENARIO_REDIS && res->led.non200 + res->led.transport_errors > 0)
        drill_say("redis: WARNING: %lld requests failed while only Redis was killed (expected none: fail-open)",
                  res->led.non200 + res->led.transport_errors);

    if (stack_command(&r->p->env, "up", NULL, err, sizeof err) != 0) {
        drill_say("%s: bringing the stack up failed: %s", name, err);
        res->step_failures++;
    }
    double waited = drill_now() - load_end;
    if (verify_sqlite(r->p->db, &res->led, r->runid, sc, 180, &res->v, err, sizeof err) == 0) {
        res->verified = 1;
        res->v.converge_s += waited;
        drill_say("%s: SQLite %s the ledger after %.1f s (lost %lld, duplicated %lld)", name,
                  res->v.converged ? "equals" : "does NOT equal", res->v.converge_s, res->v.lost, res->v.duplicated);
    } else {
        drill_say("%s: %s", name, err);
    }
    double t_rb = drill_now();
    if (r->cfg->redis.cluster) {
        /* (no rebuild: the live view must have come through as it is,
         * redis.min_replicas_acked keeping a failover's acknowledged updates) */
        drill_say("%s: Redis Cluster: the live view is checked as it is, without a rebuild", name);
    } else if (flusher_rebuild_redis(&r->p->env, err, sizeof err) != 0) {
        drill_say("%s: %s", name, err);
        res->step_failures++;
    } else {
        drill_say("%s: tally-flusher --rebuild-redis done in %.1f s", name, drill_now() - t_rb);
    }
    if (verify_redis(r->cfg, &res->led, &res->v, err, sizeof err) != 0)
        drill_say("%s: Redis check failed: %s", name, err);
    else
        drill_say("%s: Redis equals SQLite for %d of %d counters", name,
                  DRILL_COUNTERS + res->v.extra_count - res->v.redis_mismatches, DRILL_COUNTERS + res->v.extra_count);
    for (int i = 0; i < DRILL_COUNTERS; i++)
        ledger_file_counter(&r->file, name, res->led.names[i], res->led.sums[i], res->v.sqlite[i], res->v.redis[i]);
    for (int i = 0; i < res->v.extra_count; i++)
        ledger_file_counter(&r->file, name, res->v.extra_names[i], 0, res->v.extra_sqlite[i], NAN);
}

static int scenario_passed(const scenario_result *s)
{
    return s->verified && s->v.converged && s->v.lost == 0 && s->v.duplicated == 0 && s->led.unresolved == 0 &&
           s->v.redis_mismatches == 0 && s->kills_done >= s->kills_planned && s->step_failures == 0;
}

static void print_table(FILE *out, const scenario_result *res)
{
    fprintf(out, "| scenario | batches acked | events acked | retries | non-200 | conn errors | unresolved | kills "
                 "| lost | duplicated | redis mismatches | converge s |\n");
    fprintf(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    scenario_result tot = {0};
    int tot_mismatch_known = 1;
    double tot_conv = 0;
    for (int i = 0; i < SCENARIO_COUNT; i++) {
        const scenario_result *s = &res[i];
        if (!s->ran) continue;
        char mism[32], conv[32];
        if (s->v.redis_mismatches < 0) snprintf(mism, sizeof mism, "not checked");
        else snprintf(mism, sizeof mism, "%d", s->v.redis_mismatches);
        if (!s->verified) snprintf(conv, sizeof conv, "unread");
        else if (!s->v.converged) snprintf(conv, sizeof conv, "no (%.0f)", s->v.converge_s);
        else snprintf(conv, sizeof conv, "%.1f", s->v.converge_s);
        fprintf(out, "| %s | %lld | %lld | %lld | %lld | %lld | %lld | %d/%d | %lld | %lld | %s | %s |\n",
                scenario_name(i), s->led.batches, s->led.events, s->led.retries, s->led.non200,
                s->led.transport_errors, s->led.unresolved, s->kills_done, s->kills_planned, s->v.lost,
                s->v.duplicated, mism, conv);
        tot.led.batches += s->led.batches;
        tot.led.events += s->led.events;
        tot.led.retries += s->led.retries;
        tot.led.non200 += s->led.non200;
        tot.led.transport_errors += s->led.transport_errors;
        tot.led.unresolved += s->led.unresolved;
        tot.kills_done += s->kills_done;
        tot.kills_planned += s->kills_planned;
        tot.v.lost += s->v.lost;
        tot.v.duplicated += s->v.duplicated;
        if (s->v.redis_mismatches < 0) tot_mismatch_known = 0;
        else tot.v.redis_mismatches += s->v.redis_mismatches;
        if (s->v.converge_s > tot_conv) tot_conv = s->v.converge_s;
    }
    char mism[32];
    if (tot_mismatch_known) snprintf(mism, sizeof mism, "%d", tot.v.redis_mismatches);
    else snprintf(mism, sizeof mism, "not checked");
    fprintf(out, "| **total** | %lld | %lld | %lld | %lld | %lld | %lld | %d/%d | %lld | %lld | %s | %.1f (max) |\n",
            tot.led.batches, tot.led.events, tot.led.retries, tot.led.non200, tot.led.transport_errors,
            tot.led.unresolved, tot.kills_done, tot.kills_planned, tot.v.lost, tot.v.duplicated, mism, tot_conv);
}

int main(int argc, char **argv)
{
    drill_start = drill_now();
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc != 0) return rc == 1 ? 0 : 2;
    if (!o.seed_given) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t s = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
        o.seed = prng_next(&s) % 1000000;
    }
    paths p;
    if ((rc = resolve_paths(&o, &p)) != 0) return rc;

    tally_config cfg;
    static char problems[8192];
    if (config_load(p.env.conf, &cfg, problems, sizeof problems) != 0) {
        fprintf(stderr, "tally-drill: invalid config %s:\n%s", p.env.conf, problems);
        return 2;
    }
    if (cfg.sqlite.path[0] == '/') fmt_path(p.db, sizeof p.db, "%s", cfg.sqlite.path);
    else fmt_path(p.db, sizeof p.db, "%s/%s", p.env.repo, cfg.sqlite.path);
    /* the drill reads Redis with the config's AUTH too; a relative password
     * file resolves against the repository root, where ingest runs */
    static redis_auth auth;
    char password_file[PATH_MAX + 16];
    if (cfg.redis.password_file[0] == '/' || cfg.redis.password_file[0] == '\0')
        fmt_path(password_file, sizeof password_file, "%s", cfg.redis.password_file);
    else
        fmt_path(password_file, sizeof password_file, "%s/%s", p.env.repo, cfg.redis.password_file);
    char auth_err[1024];
    if (redis_auth_load(&auth, cfg.redis.username, password_file, auth_err, sizeof auth_err) != 0) {
        fprintf(stderr, "tally-drill: %s\n", auth_err);
        return 2;
    }
    redis_auth_clear(&auth); /* (checked early; verify.c loads it again from the resolved path) */
    fmt_path(cfg.redis.password_file, sizeof cfg.redis.password_file, "%s", password_file);
    const char *host = cfg.ingest.listen_address;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0) host = "127.0.0.1";
    else if (strcmp(host, "::") == 0) host = "::1";

    char dir[PATH_MAX + 16];
    fmt_path(dir, sizeof dir, "%s/drill", p.var);
    if (path_too_long) {
        fprintf(stderr, "tally-drill: a path is longer than %d bytes\n", PATH_MAX);
        return 2;
    }
    if (make_dir(dir) != 0) {
        fprintf(stderr, "tally-drill: cannot create %s: %s\n", dir, strerror(errno));
        return 2;
    }
    fmt_path(p.env.log_path, sizeof p.env.log_path, "%s/stack-%" PRIu64 ".log", dir, o.seed);
    fmt_path(p.ledger, sizeof p.ledger, "%s/ledger-%" PRIu64 ".tsv", dir, o.seed);

    run r = {.o = &o, .p = &p, .cfg = &cfg, .host = host};
    {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
        snprintf(r.runid, sizeof r.runid, "%08" PRIx32, (uint32_t)prng_next(&s));
    }

    char why[1024];
    if (stack_is_up(&p.env, o.cluster != NULL, host, cfg.ingest.listen_port, why, sizeof why) != 0) {
        fprintf(stderr, "tally-drill: the %s is not up (%s): run %s up first\n", o.cluster ? "cluster" : "stack", why,
                o.cluster ? "deploy/cluster" : "deploy/stack");
        return 2;
    }
    char err[512];
    if (ledger_file_open(&r.file, p.ledger, err, sizeof err) != 0) {
        fprintf(stderr, "tally-drill: %s\n", err);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
        fprintf(stderr, "tally-drill: warning: sigaction: %s\n", strerror(errno));

    if (cfg.redis.cluster && o.cluster == NULL) {
        fprintf(stderr, "tally-drill: redis.cluster = true: run the drill on deploy/cluster "
                        "(--cluster PATH); the stack scenarios rebuild one Redis server\n");
        return 2;
    }
    drill_say("seed %" PRIu64 ", run id %s, stack %s, config %s", o.seed, r.runid, p.env.stack, p.env.conf);
    drill_say("ingest %s:%d, redis %s:%d, sqlite %s", host, cfg.ingest.listen_port, cfg.redis.host, cfg.redis.port,
              p.db);
    drill_say("ledger %s, command output %s", p.ledger, p.env.log_path);

    static scenario_result res[SCENARIO_COUNT];
    for (int i = 0; i < SCENARIO_COUNT && !interrupted; i++)
        if (o.scenarios[i]) run_scenario(&r, i, &res[i]);

    int ok = !interrupted;
    long long batches = 0;
    int kills = 0;
    for (int i = 0; i < SCENARIO_COUNT; i++) {
        if (!res[i].ran) continue;
        if (!scenario_passed(&res[i])) ok = 0;
        batches += res[i].led.batches;
        kills += res[i].kills_done;
    }
    if (ledger_file_close(&r.file, err, sizeof err) != 0) {
        drill_say("%s", err);
        ok = 0;
    }
    print_table(stdout, res);
    printf("\n%s: seed %" PRIu64 ", run id %s, %d kills, %lld acknowledged batches, %.0f s; ledger %s\n",
           ok ? "PASS" : "FAIL", o.seed, r.runid, kills, batches, drill_now() - drill_start, p.ledger);
    if (fflush(stdout) != 0) return 1;
    drill_say("%s", ok ? "PASS" : "FAIL (see the table; lost, duplicated, unresolved, redis mismatches and failed "
                                  "steps must all be 0 and every planned kill done)");
    return ok ? 0 : 1;
}
