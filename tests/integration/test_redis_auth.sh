#!/usr/bin/env bash
# Redis AUTH (redis.username, redis.password_file) against a real Redis with
# ACLs: this test starts its own redis-server (port TALLY_REDIS_PORT + 7,
# the default user off, user "tally" with a random password; AOF and
# noeviction, so redis.require_durable passes) and checks that
#  - tally-ingest authenticates: a batch is applied to that Redis, /healthz
#    says redis up, and the password appears in no log;
#  - tally-flusher --rebuild-redis authenticates, and fails "redis auth: ..."
#    with a wrong password;
#  - a wrong password, or none when Redis wants one, makes ingest report
#    Redis down with a reason naming AUTH, keep running (fail-open: batches
#    still acknowledged) and keep retrying;
#  - a password file readable by group or others, a missing or empty one, or
#    a username without a password file, make tally-ingest refuse to start.
source "$(dirname "$0")/lib.sh"

AUTH_PORT=$((TALLY_REDIS_PORT + 7))
AUTH_DIR=$WORK/redis-auth
AUTH_PID=""
SECRET=pw-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
WRONG=wrong-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
RA=(redis-cli -p "$AUTH_PORT" --user tally --pass "$SECRET" --no-auth-warning --raw)
P=$METRIC_PREFIX

stop_auth_redis() {
    [[ -n $AUTH_PID ]] || return 0
    kill -TERM "$AUTH_PID" 2>/dev/null || true
    wait "$AUTH_PID" 2>/dev/null || true
    AUTH_PID=""
}
auth_cleanup() {
    local rc=$?
    for pid in $INGEST_PID $FLUSHER_PID; do kill -KILL "$pid" 2>/dev/null || true; done
    stop_auth_redis
    (exit "$rc")
    cleanup
}
trap auth_cleanup EXIT

# ---- our own Redis, with ACLs -------------------------------------------------

if redis-cli -p "$AUTH_PORT" ping >/dev/null 2>&1; then
    fail "port $AUTH_PORT (TALLY_REDIS_PORT + 7) is taken; this test starts its own Redis there"
fi
mkdir -p "$AUTH_DIR"
redis-server --port "$AUTH_PORT" --bind 127.0.0.1 --dir "$AUTH_DIR" --daemonize no \
    --appendonly yes --maxmemory-policy noeviction --save "" \
    --logfile "$AUTH_DIR/redis.log" \
    --user default off --user tally on ">$SECRET" '~*' '&*' '+@all' &
AUTH_PID=$!
deadline=$((SECONDS + 30))
until [[ $("${RA[@]}" ping 2>/dev/null || true) == PONG ]]; do
    kill -0 "$AUTH_PID" 2>/dev/null || { cat "$AUTH_DIR/redis.log"; fail "redis-server exited"; }
    ((SECONDS < deadline)) || fail "redis-server on port $AUTH_PORT not ready after 30 s"
    sleep 0.1
done
check_eq "our Redis refuses the default user" "NOAUTH" \
    "$(redis-cli -p "$AUTH_PORT" --raw ping 2>&1 | awk '{print $1}')"

umask 077
printf '%s\n' "$SECRET" >"$WORK/redis.password"
printf '%s\r\n' "$WRONG" >"$WORK/wrong.password"

CONFIG_REDIS_PORT=$AUTH_PORT

# healthz_field JQ: the field of ingest's /healthz answer (200 or 503 alike).
healthz_field() { curl -sS "$BASE_URL/healthz" 2>/dev/null | jq -r "$1" 2>/dev/null || true; }

# wait_redis_reason WANT: until /healthz says redis down for a reason
# holding WANT (30 s at most); ingest must stay alive meanwhile.
wait_redis_reason() {
    local want=$1 deadline=$((SECONDS + 30)) reason=""
    while :; do
        kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest exited (it must keep running)"
        reason=$(healthz_field 'select(.redis == "down") | .redis_reason')
        [[ $reason == *"$want"* ]] && break
        ((SECONDS < deadline)) || fail "/healthz: no redis down reason with '$want' after 30 s (last: '$reason')"
        sleep 0.1
    done
    CHECKS=$((CHECKS + 1))
    log "ok: /healthz redis down: $reason"
}

# wait_log_count PATTERN N: until ingest.log holds PATTERN N times (30 s at most).
wait_log_count() {
    local deadline=$((SECONDS + 30)) n=0
    while :; do
        n=$(grep -cF -- "$1" "$WORK/ingest.log" || true)
        ((n >= $2)) && break
        kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest exited (it must keep running)"
        ((SECONDS < deadline)) || fail "ingest.log: '$1' $n times after 30 s, expected $2"
        sleep 0.1
    done
}

# start_ingest_bg: start tally-ingest without waiting for it to be healthy.
start_ingest_bg() {
    "$TALLY_BUILD/tally-ingest" -c "$CONF" >>"$WORK/ingest.log" 2>&1 &
    INGEST_PID=$!
}

no_secret_in_logs() {
    local f
    for f in "$WORK"/*.log "$WORK/refusal.out"; do
        [[ -f $f ]] || continue
        if grep -qF -e "$SECRET" -e "$WRONG" "$f"; then fail "a password appears in $(basename "$f")"; fi
    done
    CHECKS=$((CHECKS + 1))
    log "ok: no password in any log"
}

# ---- 1. the right password ---------------------------------------------------------

log "AUTH as user tally with a 0600 password file"
REDIS_SETTINGS="username = \"tally\"; password_file = \"$WORK/redis.password\";" write_config
start_ingest
check_eq "healthz redis" up "$(healthz_field .redis)"
post_keyed "ra-$RUN_ID-1" "$P.c:5|c" 30
check_eq "batch answered" "200 applied" "$HTTP_CODE $(jq -r .live <<<"$HTTP_BODY")"
check_eq "value in the AUTH Redis" 5 "$("${RA[@]}" HVALS "$(rkey "$P.c" counter)" | awk '{s += $1} END {print s + 0}')"
grep -q "redis 127.0.0.1:$AUTH_PORT connected, AUTH as user tally" "$WORK/ingest.log" ||
    fail "no log line says ingest authenticated"

log "tally-flusher --rebuild-redis authenticates too"
start_flusher
wait_sqlite_counter "$P.c" 5
rc=0
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild.log" 2>&1 || rc=$?
check_eq "rebuild with AUTH" 0 "$rc"
check_eq "value rebuilt in the AUTH Redis" 5 "$("${RA[@]}" HVALS "$(rkey "$P.c" counter)" | awk '{s += $1} END {print s + 0}')"
stop_flusher
stop_ingest

# ---- 2. a wrong password, and none at all ------------------------------------------

log "a wrong password: Redis down for AUTH, ingest keeps running and retrying"
REDIS_SETTINGS="username = \"tally\"; password_file = \"$WORK/wrong.password\";" write_config
expect_refusal "rebuild with a wrong password" "redis auth: WRONGPASS" \
    "$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis
: >"$WORK/ingest.log"
start_ingest_bg
wait_redis_reason "AUTH as user tally refused by redis: WRONGPASS"
check_eq "healthz while Redis refuses AUTH (fail-open)" degraded "$(healthz_field .status)"
wait_log_count "disconnected: AUTH as user tally refused" 3 # retried, with backoff
post "$P.c:1|c" "ra-$RUN_ID-2"
check_eq "a batch is still acknowledged (live view marked behind)" "200 stale" \
    "$HTTP_CODE $(jq -r .live <<<"$HTTP_BODY")"
kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest exited"
n_error=$(grep -c "error: redis 127.0.0.1:$AUTH_PORT: AUTH" "$WORK/ingest.log" || true)
check_eq "the refusal is logged as an error once, not at every retry" 1 "$n_error"
stop_ingest

log "no password for a Redis that wants one: NOAUTH names AUTH"
REDIS_SETTINGS="" write_config
start_ingest_bg
wait_redis_reason "redis requires AUTH: set redis.password_file"
stop_ingest

log "the right password again: Redis up"
REDIS_SETTINGS="username = \"tally\"; password_file = \"$WORK/redis.password\";" write_config
start_ingest
check_eq "healthz redis with the right password" up "$(healthz_field .redis)"
stop_ingest

# ---- 3. password files and settings refused at start -------------------------------

chmod 0644 "$WORK/redis.password"
expect_refusal "a 0644 password file" \
    "redis.password_file $WORK/redis.password holds secrets but its mode 644 lets group or others read it" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
grep -q "chmod 600" "$WORK/refusal.out" || fail "the refusal does not say how to fix it"
chmod 0640 "$WORK/redis.password"
expect_refusal "a 0640 password file" "its mode 640 lets group or others read it" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
chmod 0600 "$WORK/redis.password"

: >"$WORK/empty.password"
REDIS_SETTINGS="password_file = \"$WORK/empty.password\";" write_config
expect_refusal "an empty password file" "empty.password: the file is empty" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
REDIS_SETTINGS="password_file = \"$WORK/absent.password\";" write_config
expect_refusal "a missing password file" "absent.password: No such file or directory" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
REDIS_SETTINGS="username = \"tally\";" write_config
expect_refusal "a username without a password file" \
    "redis.username is \"tally\" but redis.password_file is empty" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"

no_secret_in_logs
stop_auth_redis
finish
