#!/usr/bin/env bash
# test_flusher_group: flushers share a topic as a Kafka consumer group, and
# SQLite fencing keeps a second flusher on the same database from counting
# anything twice. Under a steady load over a 4-partition topic:
#   1. flusher A takes all partitions;
#   2. flusher B joins the group: a rebalance splits the partitions, A commits
#      before it gives them back (no fencing in a normal rebalance);
#   3. A is SIGKILLed: after the session timeout B holds all four;
#   4. flusher C starts on the same database in another consumer group (an
#      operator's manual run): it claims every partition, so B's next commit
#      (batches keep coming until B is gone) is fenced and B exits, naming C;
#      C consumes from the stored offsets.
# Then SQLite and Redis hold exactly what was acknowledged.
source "$(dirname "$0")/lib.sh"

KAFKA_PARTITIONS=4
BATCHES=300
LINES=50
NAME=${METRIC_PREFIX}_group

# flusher_config FILE ID METRICS_PORT [GROUP]
flusher_config() {
    local group=${4:+consumer_group = \"$4\";}
    (CONF=$1 FLUSHER_SETTINGS="instance_id = \"$2\"; session_timeout_ms = 6000;" \
        FLUSHER_METRICS_PORT=$3 KAFKA_SETTINGS="$group" write_config)
}
flusher_config "$CONF" "flusher-a" "$FLUSHER_METRICS_PORT"
flusher_config "$WORK/b.conf" "flusher-b" 0
flusher_config "$WORK/c.conf" "flusher-c" 0 "$TOPIC-manual"

# start_named ID CONF: a flusher with its own log; sets PID_<ID>
start_named() {
    "$TALLY_BUILD/tally-flusher" -c "$2" >>"$WORK/flusher-$1.log" 2>&1 &
    printf -v "PID_$1" '%s' "$!"
}
# wait_log ID PATTERN COUNT [TIMEOUT_S]: flusher-ID.log holds PATTERN COUNT times
wait_log() {
    local deadline=$((SECONDS + ${4:-60})) n
    while :; do
        n=$(grep -c -- "$2" "$WORK/flusher-$1.log" 2>/dev/null || true)
        ((${n:-0} >= $3)) && return 0
        ((SECONDS < deadline)) || { tail -n 30 "$WORK/flusher-$1.log"; fail "flusher $1: '$2' seen ${n:-0} times, not $3"; }
        sleep 0.2
    done
}
claimed() { grep -c "claimed at epoch" "$WORK/flusher-$1.log" 2>/dev/null || true; }

# (lib.sh's cleanup stops INGEST_PID and FLUSHER_PID; these too)
trap 'rc=$?; kill -KILL ${PID_a:-} ${PID_b:-} ${PID_c:-} ${LOAD_PID:-} 2>/dev/null || true; (exit $rc); cleanup' EXIT
start_ingest

# The load: BATCHES acknowledged batches of LINES lines, ~15 per second,
# each retried with its key until 200 (the documented client).
load() {
    local body i
    body=$(counter_lines "$NAME" "$LINES" 1)
    for ((i = 0; i < BATCHES; i++)); do
        post_keyed "group-$RUN_ID-$i" "$body" 60
        sleep 0.05
    done
}
load >"$WORK/load.log" 2>&1 &
LOAD_PID=$!

start_named a "$CONF"
wait_log a "claimed at epoch" 4
log "A holds all 4 partitions"

start_named b "$WORK/b.conf"
wait_log b "claimed at epoch" 1
wait_log a "revoked (rebalance)" 1
# settled: A's 4 first claims, then the 4 partitions split between A and B
deadline=$((SECONDS + 60))
until (($(claimed a) + $(claimed b) >= 8)); do
    ((SECONDS < deadline)) || fail "the group did not settle: A claimed $(claimed a), B $(claimed b)"
    sleep 0.2
done
before_kill=$(claimed b)
log "B joined: A gave its partitions back, B holds $before_kill"
((before_kill >= 1 && before_kill <= 3)) || fail "B should hold part of the 4 partitions, holds $before_kill"
CHECKS=$((CHECKS + 1))
a_owns=$(curl -fsS "$FLUSHER_URL/metrics" | grep -c '^tally_flusher_partition_epoch{' || true)
check_eq "A's /metrics shows the partitions B does not hold" "$((4 - before_kill))" "$a_owns"
sleep 2 # both commit under load

kill -KILL "$PID_a"
wait "$PID_a" 2>/dev/null || true
grep -q "fenced" "$WORK/flusher-a.log" && fail "A was fenced in a normal rebalance"
CHECKS=$((CHECKS + 1))
wait_log b "claimed at epoch" $((before_kill + 4)) 90
log "A killed: after the session timeout B holds all 4"

start_named c "$WORK/c.conf"
wait_log c "claimed at epoch" 4
# B is fenced at its next commit: keep batches coming until then (the main
# load may be over already on a slow machine)
deadline=$((SECONDS + 90)) EXTRA=0
extra_body=$(counter_lines "$NAME" "$LINES" 1)
while kill -0 "$PID_b" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "B still running 90 s after C claimed its partitions"
    post_keyed "group-$RUN_ID-extra-$EXTRA" "$extra_body" 60
    EXTRA=$((EXTRA + 1))
    sleep 0.2
done
rc=0
wait "$PID_b" || rc=$?
check_eq "B exits non-zero once fenced" 1 "$((rc != 0))"
grep -q "fenced: partition [0-3] of $TOPIC is claimed by flusher-c" "$WORK/flusher-b.log" ||
    fail "B's log does not say C fenced it"
CHECKS=$((CHECKS + 1))

wait "$LOAD_PID" || fail "the load failed: $(tail -n 3 "$WORK/load.log")"
expected=$(((BATCHES + EXTRA) * LINES))
wait_sqlite_counter "$NAME" "$expected" 90
check_eq "SQLite total after two rebalances and a fenced flusher" "$expected" "$(sqlite_counter "$NAME")"
check_eq "Redis total" "$expected" "$(redis_counter "$NAME")"
check_eq "every batch once in SQLite" "$((BATCHES + EXTRA))" \
    "$(sqlite3 "$WORK/tally.db" "SELECT count(*) FROM batches WHERE batch_id LIKE '%group-$RUN_ID-%'")"
check_eq "C owns every partition" "4" \
    "$(sqlite3 "$WORK/tally.db" "SELECT count(*) FROM partition_claims WHERE topic = '$TOPIC' AND owner = 'flusher-c'")"
min_epoch=$(sqlite3 "$WORK/tally.db" "SELECT min(epoch) FROM partition_claims WHERE topic = '$TOPIC'")
((min_epoch >= 3)) || fail "each partition was claimed by A, B and C: min epoch $min_epoch < 3"
CHECKS=$((CHECKS + 1))
for p in 0 1 2 3; do
    high=$(sqlite3 "$WORK/tally.db" "SELECT next_offset FROM kafka_offsets WHERE topic = '$TOPIC' AND partition = $p")
    [[ -n $high ]] || fail "partition $p has no stored offset (the load should reach every partition)"
done
CHECKS=$((CHECKS + 1))

kill -TERM "$PID_c"
wait "$PID_c" || fail "C exited with $? after SIGTERM"
stop_ingest
finish
