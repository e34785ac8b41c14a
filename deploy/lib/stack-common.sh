# deploy/lib/stack-common.sh — what deploy/stack (one node of each) and
# deploy/cluster (three Kafka brokers, two ingests, two flushers) share:
# process and pid-file helpers, waiting for ports, starting and stopping a
# component, the state and cache Redis, and a Kafka KRaft node from the jars
# that deploy/install-deps caches. Sourced, never run.
#
# The sourcing script sets, before calling anything here:
#   STACK_NAME     prefix of every message ("stack", "cluster")
#   STACK_CMD      how the operator runs it ("deploy/stack"), named in hints
#   REPO VAR RUN LOG BUILD KAFKA_VERSION KAFKA_LIBS (the cached jars)
#   STOP_TIMEOUT REDIS_TIMEOUT KAFKA_TIMEOUT INGEST_TIMEOUT (seconds)
# and defines kind_pattern COMPONENT: what the command line of that
# component's process contains (running_pid checks it, so a recycled pid is
# never taken for the component).
# Pid files are RUN/COMPONENT.pid, logs LOG/COMPONENT.log.

say() { printf '%s: %s\n' "$STACK_NAME" "$*"; }
die() { printf '%s: error: %s\n' "$STACK_NAME" "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit "${1:-0}"
}

abspath() { if [[ $1 == /* ]]; then printf '%s\n' "$1"; else printf '%s\n' "$PWD/$1"; fi; }

check_port_number() {
    if ! [[ $2 =~ ^[0-9]+$ ]] || (($2 < 1 || $2 > 65535)); then
        die "$1=$2 is not a port number (1..65535)"
    fi
}

# ---- process helpers ---------------------------------------------------------

# alive PID: the process exists and is not a zombie.
alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat%% *} != Z ]]
}

# gone PID: the process has fully exited (a killed multi-threaded process can
# show as a zombie while its other threads still hold its sockets).
# A zombie whose threads are all gone counts as exited (its parent may be slow
# to reap it, or never do so).
gone() {
    [[ -e /proc/$1 ]] || return 0
    alive "$1" && return 1
    local tasks=("/proc/$1/task/"*)
    ((${#tasks[@]} <= 1))
}

# wait_gone PID SECONDS
wait_gone() {
    local deadline=$((SECONDS + $2))
    while ! gone "$1" && ((SECONDS < deadline)); do sleep 0.05; done
    gone "$1"
}

# running_pid COMPONENT: print the pid if the pid file names a live process of
# the right kind; fail otherwise.
running_pid() {
    local pidfile=$RUN/$1.pid pid cmdline
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    alive "$pid" || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$(kind_pattern "$1")"* ]] || return 1
    echo "$pid"
}

# pid_listens PID PORT: the process holds a listening TCP socket on PORT
# (with SO_REUSEPORT several processes do, and any of them may answer a
# request: a health check alone does not say that this one is up).
pid_listens() {
    local fd link inodes=()
    for fd in "/proc/$1/fd/"*; do
        link=$(readlink "$fd" 2>/dev/null) || continue
        [[ $link == socket:\[*\] ]] && inodes+=("${link//[^0-9]/}")
    done
    ((${#inodes[@]})) || return 1
    # /proc/net/tcp{,6}: local_address is ADDR:PORT in hex, st 0A is LISTEN, field 10 the inode
    awk -v port="$(printf '%04X' "$2")" -v inodes="${inodes[*]}" '
        BEGIN { n = split(inodes, a, " "); for (i = 1; i <= n; i++) mine[a[i]] = 1 }
        FNR > 1 && $4 == "0A" { split($2, local, ":"); if (local[2] == port && ($10 in mine)) found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# require_port_free COMPONENT PORT VARIABLE: waits up to 5 s for the port to be
# free (a process just stopped may still hold it), then dies naming VARIABLE.
require_port_free() {
    local i
    for ((i = 0; i < 50; i++)); do
        port_open "$2" || return 0
        sleep 0.1
    done
    if port_open "$2"; then
        die "$1: port $2 is already in use by a process this $STACK_NAME did not start (TALLY_VAR=$VAR); stop it or choose another port ($3)"
    fi
}

log_tail() {
    local f=$LOG/$1.log
    printf '%s: ---- last 20 lines of %s ----\n' "$STACK_NAME" "$f" >&2
    if [[ -s $f ]]; then tail -n 20 "$f" >&2; else printf '(log is empty)\n' >&2; fi
    printf '%s: ----\n' "$STACK_NAME" >&2
}

fail_start() { # COMPONENT MESSAGE
    local pid
    # A process that is gone leaves no pid file behind; one still running keeps it
    # so that `down` can stop it.
    if [[ -s $RUN/$1.pid ]]; then
        pid=$(<"$RUN/$1.pid")
        alive "$pid" || rm -f "$RUN/$1.pid"
    fi
    log_tail "$1"
    die "$1: $2"
}

# spawn COMPONENT CMD...: start CMD detached (own session, stdin from /dev/null,
# stdout+stderr appended to the component's log), write its pid file.
spawn() {
    local comp=$1 pidfile=$RUN/$1.pid
    shift
    rm -f "$pidfile"
    # The inner shell writes its own pid, then execs the command, so the pid is
    # the command's whatever setsid does. fd 9 (our lock) is not inherited.
    # shellcheck disable=SC2016  # $$ and "$@" are for the inner shell
    nohup setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' spawn "$pidfile" "$@" \
        </dev/null >>"$LOG/$comp.log" 2>&1 9>&- &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s $pidfile ]] && return 0
        sleep 0.1
    done
    fail_start "$comp" "did not start (no pid file $pidfile after 5 s)"
}

# ---- redis: state (AOF, noeviction) and cache (allkeys-lru, no persistence) ---

# redis_start COMPONENT PORT READY_TEST DESCRIPTION: runs redis-server on the
# config already written to VAR/COMPONENT/redis.conf and waits until it answers
# PING, READY_TEST (a function, given the port) holds and the pid file names it.
redis_start() {
    local comp=$1 port=$2 ready=$3 what=$4
    rm -f "$RUN/$comp.pid"
    redis-server "$VAR/$comp/redis.conf" 9>&- || fail_start "$comp" "redis-server $VAR/$comp/redis.conf failed"
    local deadline=$((SECONDS + REDIS_TIMEOUT))
    while ((SECONDS < deadline)); do
        if [[ $(redis-cli -p "$port" ping 2>/dev/null || true) == PONG ]] && "$ready" "$port" &&
            running_pid "$comp" >/dev/null; then
            say "$comp: ready on 127.0.0.1:$port (pid $(running_pid "$comp"), $what)"
            return
        fi
        sleep 0.1
    done
    fail_start "$comp" "not ready (no PONG$([[ $ready == redis_loaded ]] && echo ", or still loading its AOF,") on port $port) after $REDIS_TIMEOUT s"
}

# ready = has finished loading its AOF (a long AOF takes seconds to replay,
# and Redis refuses most commands meanwhile)
redis_loaded() { redis-cli -p "$1" info persistence 2>/dev/null | grep -q '^loading:0'; }
redis_answers() { :; }

# redis_conf_common COMPONENT PORT: the lines both Redis configs have (loopback,
# no RDB snapshots, daemonized with its pid file and log where running_pid and
# log_tail look).
redis_conf_common() {
    cat <<CONF
# Generated by $STACK_CMD at every start; edit $STACK_CMD, not this file.
bind 127.0.0.1
port $2
protected-mode yes
dir $VAR/$1
save ""
daemonize yes
pidfile $RUN/$1.pid
logfile $LOG/$1.log
CONF
}

# redis_state_up COMPONENT PORT APPENDFSYNC MAXMEMORY VARIABLE [EXTRA]: the state Redis
# (VARIABLE: the port's environment variable, named when the port is taken;
# EXTRA: more lines of configuration, e.g. a Redis Cluster node's).
redis_state_up() {
    local comp=$1 port=$2 appendfsync=$3 maxmemory=$4
    command -v redis-server >/dev/null 2>&1 || die "$comp: redis-server not found: run deploy/install-deps"
    require_port_free "$comp" "$port" "$5"
    mkdir -p "$VAR/$comp"
    {
        redis_conf_common "$comp" "$port"
        cat <<CONF
appendonly yes
appendfsync $appendfsync
# Under load the live view's AOF grows by tens of MB/s. At Redis' 64 MB
# default it was rewritten (a fork that dumps the whole dataset) every few
# seconds, a fifth of Redis' CPU. Rewrite once it passes 512 MB and has
# doubled since the last rewrite: about 1 GB on disk at most, and a restart
# replays at most that (seconds; $STACK_CMD waits for it). Durability is
# unchanged (appendfsync above).
auto-aof-rewrite-min-size 512mb
# State must never be evicted: past maxmemory Redis refuses writes (OOM), and
# tally-ingest answers as for any Redis failure (the batch is in Kafka).
maxmemory $maxmemory
maxmemory-policy noeviction
${6:-}
CONF
    } >"$VAR/$comp/redis.conf"
    redis_start "$comp" "$port" redis_loaded "appendfsync $appendfsync"
}

# redis_cache_up COMPONENT PORT MAXMEMORY VARIABLE: the cache Redis (query answers only).
redis_cache_up() {
    local comp=$1 port=$2 maxmemory=$3
    command -v redis-server >/dev/null 2>&1 || die "$comp: redis-server not found: run deploy/install-deps"
    require_port_free "$comp" "$port" "$4"
    mkdir -p "$VAR/$comp"
    {
        redis_conf_common "$comp" "$port"
        cat <<CONF
# The cache Redis: derived answers only, every key with a TTL. Past maxmemory
# the least recently used keys are evicted; nothing is persisted (a restart
# starts empty and tally-ingest warms the hottest answers again).
appendonly no
maxmemory $maxmemory
maxmemory-policy allkeys-lru
CONF
    } >"$VAR/$comp/redis.conf"
    redis_start "$comp" "$port" redis_answers "allkeys-lru, maxmemory $maxmemory"
}

# ---- kafka (KRaft, from the cached jars) ---------------------------------------

# kafka_jars COMPONENT: make sure the jars are cached (fetch them on first use).
kafka_jars() {
    command -v java >/dev/null 2>&1 || die "$1: java not found: run deploy/install-deps"
    if [[ ! -f $KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]]; then
        say "$1: jars not cached in $KAFKA_LIBS, running deploy/install-deps --kafka-only"
        "$REPO/deploy/install-deps" --kafka-only 9>&- || die "$1: fetching the jars failed"
    fi
}

# kafka_log4j DIR: Kafka's log4j2 config, INFO to stdout (the component's log).
kafka_log4j() {
    cat >"$1/log4j2.properties" <<CONF
# Generated by $STACK_CMD. INFO to stdout, which $STACK_CMD appends to the component's log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
CONF
}

# kafka_random_uuid COMPONENT: a new cluster id (StorageTool random-uuid).
kafka_random_uuid() {
    local uuid
    uuid=$(java -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool random-uuid 2>>"$LOG/$1.log" | tail -n1) \
        || fail_start "$1" "kafka.tools.StorageTool random-uuid failed"
    [[ $uuid =~ ^[A-Za-z0-9_-]{22}$ ]] || fail_start "$1" "kafka.tools.StorageTool random-uuid printed \"$uuid\", not a cluster id"
    echo "$uuid"
}

# kafka_format COMPONENT DIR UUID [FORMAT_ARGS...]: format DIR/data once (first start).
kafka_format() {
    local comp=$1 dir=$2 uuid=$3
    shift 3
    [[ -f $dir/data/meta.properties ]] && return 0
    say "$comp: formatting storage in $dir/data (first start)"
    java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" kafka.tools.StorageTool format \
            -t "$uuid" -c "$dir/server.properties" "$@" >>"$LOG/$comp.log" 2>&1 9>&- \
        || fail_start "$comp" "kafka.tools.StorageTool format failed"
}

# kafka_spawn COMPONENT DIR HEAP: start the node on DIR/server.properties; prints
# the log's size before the start (kafka_wait looks only past it).
kafka_spawn() {
    local comp=$1 dir=$2 offset heap
    offset=$(stat -c %s "$LOG/$comp.log" 2>/dev/null || echo 0)
    read -r -a heap <<<"$3"
    (cd "$dir" && spawn "$comp" java "${heap[@]}" -Dlog4j2.configurationFile="$dir/log4j2.properties" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties")
    echo "$offset"
}

# kafka_wait COMPONENT PORT OFFSET START DETAIL: waits for "Kafka Server started"
# (past OFFSET of its log) and the client port; START is $SECONDS at the spawn.
kafka_wait() {
    local comp=$1 port=$2 offset=$3 start=$4 detail=$5 pid deadline=$((SECONDS + KAFKA_TIMEOUT))
    pid=$(<"$RUN/$comp.pid")
    while ((SECONDS < deadline)); do
        alive "$pid" || fail_start "$comp" "process $pid exited during startup"
        if tail -c "+$((offset + 1))" "$LOG/$comp.log" | grep -q "Kafka Server started" && port_open "$port"; then
            say "$comp: ready on 127.0.0.1:$port ($detail, pid $pid, $((SECONDS - start)) s)"
            return
        fi
        sleep 0.2
    done
    fail_start "$comp" "not ready (no \"Kafka Server started\" / port $port closed) after $KAFKA_TIMEOUT s; still running as pid $pid, stop it with: $STACK_CMD down $comp"
}

# ---- tally-ingest / tally-flusher ----------------------------------------------

# conf_value FILE KEY DEFAULT: first `KEY = value` in a config file (libconfig syntax).
conf_value() {
    local v
    # the key anywhere on a line (after a start, "{", ";" or a blank), comments stripped
    v=$(sed -E 's/#.*//' "$1" 2>/dev/null |
        sed -nE "s/(^|.*[{;[:space:]])$2[[:space:]]*[=:][[:space:]]*\"?([^\";[:space:]]+)\"?.*/\2/p" | head -n1)
    echo "${v:-$3}"
}

# make_sqlite_dir FILE: create the directory of FILE's sqlite.path (relative to the repo root).
make_sqlite_dir() {
    local db
    db=$(conf_value "$1" path var/data/tally.db)
    [[ $db == /* ]] || db=$REPO/$db
    # (a new directory is private: the database holds every client's data)
    [[ -d $(dirname "$db") ]] || mkdir -p -m 700 "$(dirname "$db")" ||
        die "cannot create the directory of sqlite.path $db"
}

# tally_binary NAME CONF -> path of BUILD/tally-NAME (NAME: ingest, flusher)
tally_binary() {
    local bin=$BUILD/tally-$1
    if [[ ! -x $bin ]]; then
        local shown=$bin
        [[ $bin == "$REPO/"* ]] && shown=${bin#"$REPO/"}
        die "$shown not found: run cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build -j2 (or set TALLY_BUILD)"
    fi
    [[ -f $2 ]] || die "$1: config $2 not found (set TALLY_CONF)"
    echo "$bin"
}

# flusher_start COMPONENT CONF: tally-flusher, alive after 1 s.
flusher_start() {
    local comp=$1 conf=$2 bin pid
    bin=$(tally_binary flusher "$conf")
    make_sqlite_dir "$conf"
    (cd "$REPO" && spawn "$comp" "$bin" -c "$conf")
    pid=$(<"$RUN/$comp.pid")
    sleep 1
    alive "$pid" || fail_start "$comp" "process $pid exited within 1 s"
    say "$comp: running (pid $pid, config $conf)"
}

# ingest_start COMPONENT CONF: tally-ingest, until GET /healthz answers 2xx
# (with SO_REUSEPORT another ingest may answer it: the pid must stay alive too).
ingest_start() {
    local comp=$1 conf=$2 bin pid addr port url
    bin=$(tally_binary ingest "$conf")
    make_sqlite_dir "$conf"
    addr=$(conf_value "$conf" listen_address 127.0.0.1)
    port=$(conf_value "$conf" listen_port 8080)
    [[ $addr == 0.0.0.0 || $addr == '*' ]] && addr=127.0.0.1
    url="http://$addr:$port/healthz"
    (cd "$REPO" && spawn "$comp" "$bin" -c "$conf")
    pid=$(<"$RUN/$comp.pid")
    local deadline=$((SECONDS + INGEST_TIMEOUT))
    while ((SECONDS < deadline)); do
        alive "$pid" || fail_start "$comp" "process $pid exited during startup"
        if pid_listens "$pid" "$port" && curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null; then
            say "$comp: ready on $addr:$port (pid $pid, config $conf)"
            return
        fi
        sleep 0.2
    done
    fail_start "$comp" "not ready ($url failed) after $INGEST_TIMEOUT s; still running as pid $pid"
}

# ---- generic up/down/kill --------------------------------------------------------

# up_one COMPONENT: runs COMPONENT_up (a function of the sourcing script;
# "-" in the name becomes "_") unless it is running.
up_one() {
    local pid
    if pid=$(running_pid "$1"); then
        say "$1: already running (pid $pid)"
        return
    fi
    rm -f "$RUN/$1.pid"
    "${1//-/_}_up"
}

# down_one COMPONENT: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL.
down_one() {
    local comp=$1 pid
    if ! pid=$(running_pid "$comp"); then
        if [[ -e $RUN/$comp.pid ]]; then
            say "$comp: not running (removing stale pid file)"
        else
            say "$comp: not running"
        fi
        rm -f "$RUN/$comp.pid"
        return
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local start=$SECONDS deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
        say "$comp: still running $STOP_TIMEOUT s after SIGTERM, sending SIGKILL (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
        wait_gone "$pid" 10 || die "$comp: pid $pid still present 10 s after SIGKILL"
    else
        wait_gone "$pid" 10 || true
        say "$comp: stopped (pid $pid, $((SECONDS - start)) s)"
    fi
    rm -f "$RUN/$comp.pid"
}

kill_one() {
    local comp=$1 pid
    if ! pid=$(running_pid "$comp"); then
        say "$comp: not running"
        rm -f "$RUN/$comp.pid"
        return
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "$comp: pid $pid still present 10 s after SIGKILL"
    rm -f "$RUN/$comp.pid"
    say "$comp: killed (SIGKILL, pid $pid)"
}

# take_lock: one command at a time per TALLY_VAR (fd 9, never inherited).
take_lock() {
    mkdir -p "$RUN" "$LOG" "$VAR/data" || die "cannot create $VAR"
    exec 9>"$RUN/stack.lock"
    flock -w 180 9 || die "another $STACK_CMD is running on $VAR (lock $RUN/stack.lock)"
}
