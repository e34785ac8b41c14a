# tests/integration/lib.sh — shared helpers for the integration tests.
#
# Each test runs real processes against the real Redis and Kafka started by
# deploy/test (ports from TALLY_REDIS_PORT / TALLY_KAFKA_PORT) and its own
# SQLite file. A test gets a private work directory, a private Kafka topic and
# metric names prefixed with its own id, so tests never see each other's data.
#
# Environment: TALLY_BUILD (binaries), TALLY_SOURCE (repo), TALLY_VAR,
# TALLY_REDIS_PORT, TALLY_CACHE_PORT, TALLY_KAFKA_PORT, TALLY_TEST_HTTP_PORT
# (default 18080), FLUSHER_METRICS_PORT (default 18081).
set -euo pipefail

: "${TALLY_SOURCE:?set by ctest}"
: "${TALLY_BUILD:?set by ctest}"
TALLY_VAR=${TALLY_VAR:-$TALLY_SOURCE/var/test}
TALLY_REDIS_PORT=${TALLY_REDIS_PORT:-16379}
TALLY_CACHE_PORT=${TALLY_CACHE_PORT:-16380}
TALLY_KAFKA_PORT=${TALLY_KAFKA_PORT:-19092}
HTTP_PORT=${TALLY_TEST_HTTP_PORT:-18080}
BASE_URL=http://127.0.0.1:$HTTP_PORT
FLUSHER_METRICS_PORT=${FLUSHER_METRICS_PORT:-18081} # the flusher's /metrics
FLUSHER_URL=http://127.0.0.1:$FLUSHER_METRICS_PORT
export TALLY_VAR

TEST_NAME=$(basename "$0" .sh)
RUN_ID=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
WORK=$TALLY_VAR/it/$TEST_NAME-$RUN_ID
TOPIC=it-$TEST_NAME-$RUN_ID
METRIC_PREFIX=it_${RUN_ID}
CONF=$WORK/tally.conf
INGEST_PID=""
FLUSHER_PID=""
CHECKS=0

mkdir -p "$WORK"

log() { printf '[%s %s] %s\n' "$(date +%H:%M:%S)" "$TEST_NAME" "$*"; }
fail() {
    log "FAIL: $*"
    for f in ingest flusher; do
        if [[ -s $WORK/$f.log ]]; then
            echo "---- last lines of $f.log ----"
            tail -n 25 "$WORK/$f.log"
        fi
    done
    exit 1
}
check_eq() { # WHAT EXPECTED ACTUAL
    CHECKS=$((CHECKS + 1))
    [[ $2 == "$3" ]] || fail "$1: expected '$2', got '$3'"
    log "ok: $1 = $3"
}

# write_config [extra libconfig text]: the test's config file
# (MAX_BODY_BYTES and DELIVERY_TIMEOUT_MS override those keys, CONFIG_REDIS_PORT
# redis.port, KAFKA_PARTITIONS kafka.partitions; KAFKA_SETTINGS, REDIS_SETTINGS and
# FLUSHER_SETTINGS are added to those groups; the
# StatsD listeners are off unless STATSD_UDP / STATSD_TCP say true, on
# STATSD_PORT, 18125, plus STATSD_SETTINGS).
write_config() {
    cat >"$CONF" <<CONF
ingest = { listen_address = "127.0.0.1"; listen_port = $HTTP_PORT;
           max_body_bytes = ${MAX_BODY_BYTES:-8388608}L; };
kafka = { brokers = "127.0.0.1:$TALLY_KAFKA_PORT"; topic = "$TOPIC"; partitions = ${KAFKA_PARTITIONS:-1};
          delivery_timeout_ms = ${DELIVERY_TIMEOUT_MS:-10000}; ${KAFKA_SETTINGS:-} };
redis = { host = "127.0.0.1"; port = ${CONFIG_REDIS_PORT:-$TALLY_REDIS_PORT}; shards = ${REDIS_SHARDS:-4}; ${REDIS_SETTINGS:-} };
cache = { port = ${CONFIG_CACHE_PORT:-$TALLY_CACHE_PORT}; ${CACHE_SETTINGS:-} };
sqlite = { path = "$WORK/tally.db"; };
flusher = { max_interval_ms = 200; max_batch_events = 50000; bucket_seconds = 10;
            metrics_port = $FLUSHER_METRICS_PORT; ${FLUSHER_SETTINGS:-} };
statsd = { udp_enabled = ${STATSD_UDP:-false}; tcp_enabled = ${STATSD_TCP:-false};
           port = ${STATSD_PORT:-18125}; ${STATSD_SETTINGS:-} };
${1:-}
CONF
}

start_ingest() {
    "$TALLY_BUILD/tally-ingest" -c "$CONF" >>"$WORK/ingest.log" 2>&1 &
    INGEST_PID=$!
    local i
    for i in $(seq 1 150); do
        if curl -fsS "$BASE_URL/healthz" 2>/dev/null | grep -q '"status":"ok"'; then return 0; fi
        kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest exited during start"
        sleep 0.2
    done
    fail "tally-ingest not healthy after 30 s"
}

# wait_ingest_redis_up: until tally-ingest's /healthz says its Redis is up
# (connected and checked), for at most 30 s.
wait_ingest_redis_up() {
    local i
    for ((i = 0; i < 150; i++)); do
        curl -sS "$BASE_URL/healthz" 2>/dev/null | grep -q '"redis":"up"' && return 0
        sleep 0.2
    done
    fail "tally-ingest's Redis not up after 30 s: $(curl -sS "$BASE_URL/healthz" 2>&1)"
}

# start_cluster_node PORT DIR [REDIS-SERVER ARGS...]: a Redis Cluster node on
# 127.0.0.1:PORT (its cluster bus on PORT + 10), in the background, its files
# in DIR; its pid in NODE_PID.
start_cluster_node() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --cluster-port $((port + 10)) --bind 127.0.0.1 --dir "$dir" \
        --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
        --save "" --daemonize no --logfile "$dir/redis.log" "$@" &
    NODE_PID=$!
}

start_flusher() {
    "$TALLY_BUILD/tally-flusher" -c "$CONF" >>"$WORK/flusher.log" 2>&1 &
    FLUSHER_PID=$!
    sleep 0.3
    kill -0 "$FLUSHER_PID" 2>/dev/null || fail "tally-flusher exited during start"
}

# expect_refusal WHAT WANT COMMAND...: COMMAND (a tally binary that must
# refuse to start) exits non-zero within 60 s and its output holds WANT.
expect_refusal() {
    local what=$1 want=$2 rc=0
    shift 2
    timeout 60 "$@" >"$WORK/refusal.out" 2>&1 || rc=$?
    [[ $rc != 0 ]] || fail "$what: exited 0 (expected a refusal)"
    [[ $rc != 124 ]] || fail "$what: still running after 60 s (expected a refusal)"
    if ! grep -qF -- "$want" "$WORK/refusal.out"; then
        cat "$WORK/refusal.out"
        fail "$what: its output lacks '$want'"
    fi
    CHECKS=$((CHECKS + 1))
    log "ok: $what (exit $rc): $(grep -F -- "$want" "$WORK/refusal.out" | head -n 1)"
}

# stop_process PID NAME: SIGTERM, expect a clean exit 0 within 30 s.
stop_process() {
    local pid=$1 name=$2 rc=0
    [[ -n $pid ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    wait "$pid" || rc=$?
    [[ $rc == 0 ]] || fail "$name exited with $rc after SIGTERM"
}
stop_ingest() { stop_process "$INGEST_PID" tally-ingest; INGEST_PID=""; }
stop_flusher() { stop_process "$FLUSHER_PID" tally-flusher; FLUSHER_PID=""; }
kill9_flusher() {
    kill -KILL "$FLUSHER_PID" 2>/dev/null || true
    wait "$FLUSHER_PID" 2>/dev/null || true
    FLUSHER_PID=""
}

cleanup() {
    local rc=$?
    for pid in $INGEST_PID $FLUSHER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ $rc == 0 ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

# post BODY [IDEMPOTENCY_KEY]: sets HTTP_CODE and HTTP_BODY.
post() {
    local body=$1 key=${2:-} out
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' --data-binary @- "$BASE_URL/v1/events")
    [[ -z $key ]] || args+=(-H "Idempotency-Key: $key")
    out=$(printf '%s' "$body" | curl "${args[@]}") || out=000
    HTTP_CODE=$out
    HTTP_BODY=$(cat "$WORK/resp" 2>/dev/null || true)
}

# post_keyed KEY BODY [DEADLINE_S] [ONLY]: what a documented client does:
# retry the same body with the same Idempotency-Key until it gets 200. With
# ONLY=503, any other non-200 answer fails the test.
post_keyed() {
    local key=$1 body=$2 deadline=$((SECONDS + ${3:-60})) only=${4:-}
    while :; do
        post "$body" "$key"
        [[ $HTTP_CODE == 200 ]] && return 0
        [[ -z $only || $HTTP_CODE == "$only" ]] || fail "batch $key: unexpected HTTP $HTTP_CODE $HTTP_BODY"
        ((SECONDS < deadline)) || fail "batch $key not accepted within ${3:-60} s: $HTTP_CODE $HTTP_BODY"
        sleep 0.2
    done
}

# The Redis key of metric NAME's SUFFIX in the live view of $CONF (its shard
# is in the key: tally:{S}:NAME:SUFFIX, redis_keys.h).
rkey() { # NAME SUFFIX
    "$TALLY_BUILD/tally" key -c "$CONF" "$1" "$2"
}

# Sum of a counter's series in Redis (whole parts in tally:{S}:NAME:counter,
# fractions in tally:{S}:NAME:counter:frac) / SQLite (integers printed without ".0").
redis_counter() {
    { redis-cli -p "$TALLY_REDIS_PORT" --raw HVALS "$(rkey "$1" counter)" &&
        redis-cli -p "$TALLY_REDIS_PORT" --raw HVALS "$(rkey "$1" counter:frac)"; } |
        awk '{s += $1} END {printf "%.17g\n", s + 0}'
}
sqlite_counter() {
    sqlite3 "$WORK/tally.db" "SELECT printf('%.17g', COALESCE(SUM(value), 0)) FROM metrics WHERE name = '$1' AND type = 'counter'" 2>/dev/null || echo "?"
}
api_counter() { # NAME [source]
    curl -fsS "$BASE_URL/v1/counters/$1${2:+?source=$2}" | jq -r '.value'
}

# wait_sqlite_counter NAME EXPECTED [TIMEOUT_S]: waits for the flusher.
wait_sqlite_counter() {
    local name=$1 want=$2 timeout=${3:-60} got="" i
    for ((i = 0; i < timeout * 5; i++)); do
        got=$(sqlite_counter "$name")
        [[ $got == "$want" ]] && return 0
        sleep 0.2
    done
    fail "SQLite total of $name: expected $want, still $got after ${timeout}s"
}

# counter_lines NAME COUNT VALUE: COUNT lines "NAME:VALUE|c"
counter_lines() { awk -v n="$1" -v c="$2" -v v="$3" 'BEGIN { for (i = 0; i < c; i++) print n ":" v "|c" }'; }

api() { curl -sS "$BASE_URL$1"; } # PATH: GET, the body on stdout

within() { # GOT WANT PERCENT: |GOT - WANT| <= PERCENT % of WANT
    awk -v g="$1" -v w="$2" -v p="$3" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(g != "" && d <= p / 100 * w) }'
}
check_within() { # WHAT GOT WANT PERCENT
    CHECKS=$((CHECKS + 1))
    within "$2" "$3" "$4" || fail "$1: got $2, want $3 within $4 %"
    log "ok: $1 = $2 (exact $3, within $4 %)"
}

finish() { log "PASS ($CHECKS checks)"; }
