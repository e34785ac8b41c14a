#!/usr/bin/env bash
# The cluster drills, short form, on a deploy/cluster of its own (three Kafka
# brokers with RF 3 / min ISR 2, a Redis Cluster of three masters with a
# replica each, two tally-ingest behind one port with ingest.reuse_port, two
# tally-flushers in one group on one SQLite file):
#   - deploy/cluster status shows every component and each partition's
#     leader with three replicas in sync; both ingests hold the one port;
#   - tally-drill --cluster --scenario broker-leader --short: the broker that
#     leads partition 0 is killed twice under keyed load (down 5-8 s: fenced,
#     new leaders elected), restarted;
#   - tally-drill --cluster --scenario flusher-member --short: flusher1 or
#     flusher2 is killed twice, down past the session timeout; the other
#     flusher claims every partition meanwhile;
#   - tally-drill --cluster --scenario redis-master --short: the Redis master
#     of shard 0's slot is killed twice (down 4-6 s: its replica takes over),
#     restarted as a replica;
#   each with 0 lost, 0 duplicated, 0 unresolved, Redis equal to SQLite (on
#   the Redis Cluster without a rebuild: the live view must be exact as it is).
# The cluster runs on its own ports (below) and state directory, never the
# ones of deploy/test's servers, and is brought down at the end.
# About 1 min 45 s on a 2-core machine: it runs in the plain build's suite; in
# the sanitizer build's (TALLY_SANITIZED=ON, set by CMake) only with
# TALLY_CLUSTER_TEST=1, since there it would add the same again and more (the
# code it adds, the SO_REUSEPORT listener, also runs under the sanitizers in
# every other ingest test). Skipped: exit 77, which ctest reports as skipped.
if [[ ${TALLY_SANITIZED:-OFF} == ON && ${TALLY_CLUSTER_TEST:-0} != 1 ]]; then
    echo "test_cluster: skipped in the sanitizer build (TALLY_CLUSTER_TEST=1 runs it)"
    exit 77
fi
source "$(dirname "$0")/lib.sh"

CLUSTER=$TALLY_SOURCE/deploy/cluster
SEED=${TALLY_DRILL_SEED:-20261202}
export TALLY_BUILD
export TALLY_CLUSTER_VAR=$WORK/cluster
export TALLY_CLUSTER_KAFKA1_PORT=29591 TALLY_CLUSTER_KAFKA2_PORT=29592 TALLY_CLUSTER_KAFKA3_PORT=29593
export TALLY_CLUSTER_CONTROLLER1_PORT=29691 TALLY_CLUSTER_CONTROLLER2_PORT=29692 TALLY_CLUSTER_CONTROLLER3_PORT=29693
export TALLY_CLUSTER_REDIS_PORT=27881 TALLY_CLUSTER_CACHE_PORT=27880 # (Redis nodes 27881-27886, buses +10)
export TALLY_CLUSTER_INGEST_PORT=28580 TALLY_CLUSTER_STATSD_PORT=28625
export TALLY_CLUSTER_FLUSHER1_METRICS_PORT=28581 TALLY_CLUSTER_FLUSHER2_METRICS_PORT=28582
export TALLY_CLUSTER_TOPIC=it-cluster-$RUN_ID
LOGS=$TALLY_CLUSTER_VAR/log

cluster_cleanup() {
    local rc=$?
    "$CLUSTER" down >>"$WORK/cluster.log" 2>&1 || log "warning: deploy/cluster down failed (see $WORK/cluster.log)"
    (exit "$rc")
    cleanup
}
trap cluster_cleanup EXIT

cluster_fail() {
    log "FAIL: $*"
    echo "---- deploy/cluster output (last 20 lines) ----"
    tail -n 20 "$WORK/cluster.log" 2>/dev/null || true
    for f in "$WORK"/drill-*.err; do
        [[ -s $f ]] || continue
        echo "---- $(basename "$f") (last 30 lines) ----"
        tail -n 30 "$f"
    done
    for f in ingest1 ingest2 flusher1 flusher2; do
        echo "---- last lines of $LOGS/$f.log ----"
        tail -n 10 "$LOGS/$f.log" 2>/dev/null || true
    done
    exit 1
}

log "deploy/cluster up (own ports, $TALLY_CLUSTER_VAR)"
start=$SECONDS
"$CLUSTER" up >>"$WORK/cluster.log" 2>&1 || cluster_fail "deploy/cluster up"
log "cluster up in $((SECONDS - start)) s"

"$CLUSTER" status >"$WORK/status.out" 2>&1 || cluster_fail "deploy/cluster status: $(cat "$WORK/status.out")"
cat "$WORK/status.out"
for c in kafka1 kafka2 kafka3 redis1 redis2 redis3 redis4 redis5 redis6 cache flusher1 flusher2 ingest1 ingest2; do
    check_eq "status of $c" running "$(awk -v c="$c" '$1 == c { print $2 }' "$WORK/status.out")"
done
check_eq "Redis Cluster roles" "3 masters 3 replicas" \
    "$(grep -c '^redis[1-6] .*, master)' "$WORK/status.out") masters $(grep -c '^redis[1-6] .*, replica)' "$WORK/status.out") replicas"
check_eq "ingest1 and ingest2 share one port" "$TALLY_CLUSTER_INGEST_PORT $TALLY_CLUSTER_INGEST_PORT" \
    "$(awk '$1 ~ /^ingest/ { sub(/\)/, "", $NF); printf "%s%s", sep, $NF; sep = " " }' "$WORK/status.out")"
# every partition: a leader, three replicas (the topic was created with
# kafka.replication_factor 3), and, on a fresh cluster, the three in sync
check_eq "partitions listed" 4 "$(grep -c '^  partition ' "$WORK/status.out")"
check_eq "partitions with three replicas in sync" 4 \
    "$(awk '$1 == "partition" && $4 ~ /^kafka[123]$/ && split($6, r, ",") == 3 && split($8, i, ",") == 3' "$WORK/status.out" | wc -l)"
if command -v ss >/dev/null 2>&1; then
    check_eq "processes listening on the ingest port" 2 \
        "$(ss -Hltnp "sport = :$TALLY_CLUSTER_INGEST_PORT" | grep -o 'pid=[0-9]*' | sort -u | wc -l)"
fi

# column VALUE of the drill table row whose first cell is ROW
cell() { # FILE ROW COLUMN
    awk -F'|' -v row="$2" -v col="$3" '
        NR == 1 { for (i = 2; i < NF; i++) { h = $i; gsub(/^ +| +$/, "", h); idx[h] = i } next }
        { r = $2; gsub(/^ +| +$|\*/, "", r); if (r == row) { v = $idx[col]; gsub(/^ +| +$/, "", v); print v } }
    ' "$1"
}

# run_drill SCENARIO: tally-drill --cluster on it, short form, and its verdict
run_drill() {
    local sc=$1 out=$WORK/drill-$1.out rc=0
    log "tally-drill --cluster --scenario $sc --short --seed $SEED"
    start=$SECONDS
    "$TALLY_BUILD/tally-drill" --cluster "$CLUSTER" --scenario "$sc" --short --seed "$SEED" \
        >"$out" 2>"$WORK/drill-$sc.err" || rc=$?
    cat "$out"
    log "$sc drill: $((SECONDS - start)) s"
    [[ $rc == 0 ]] || cluster_fail "tally-drill --scenario $sc exited with $rc"
    check_eq "$sc: lost events" 0 "$(cell "$out" total lost)"
    check_eq "$sc: duplicated events" 0 "$(cell "$out" total duplicated)"
    check_eq "$sc: unresolved batches" 0 "$(cell "$out" total unresolved)"
    check_eq "$sc: redis mismatches" 0 "$(cell "$out" total 'redis mismatches')"
    check_eq "$sc: kills" 2/2 "$(cell "$out" total kills)"
    local acked
    acked=$(cell "$out" "$sc" 'batches acked')
    ((${acked:-0} > 0)) || cluster_fail "scenario $sc acknowledged no batch"
    log "ok: $sc acknowledged $acked batches"
}

run_drill broker-leader

# Where the flushers' logs stand before the flusher drill: a takeover shows
# after it as one flusher claiming every partition (the two share them while
# both run).
declare -A before
for f in flusher1 flusher2; do before[$f]=$(stat -c %s "$LOGS/$f.log"); done
run_drill flusher-member
took_all=""
for f in flusher1 flusher2; do
    claimed=$(tail -c "+$((before[$f] + 1))" "$LOGS/$f.log" |
        sed -nE 's/.*partition ([0-9]+): claimed at epoch.*/\1/p' | sort -u | tr '\n' ' ')
    log "$f claimed partitions during the flusher drill: ${claimed:-none}"
    [[ $claimed == "0 1 2 3 " ]] && took_all+="$f "
done
[[ -n $took_all ]] || cluster_fail "no flusher took over every partition while the other was down"
CHECKS=$((CHECKS + 1))
log "ok: took over every partition: $took_all"

run_drill redis-master

start=$SECONDS
"$CLUSTER" down >>"$WORK/cluster.log" 2>&1 || cluster_fail "deploy/cluster down"
log "cluster down in $((SECONDS - start)) s"
"$CLUSTER" status >"$WORK/status.out" 2>&1 || true
check_eq "components running after down" 0 "$(grep -c ' running ' "$WORK/status.out")"
finish
