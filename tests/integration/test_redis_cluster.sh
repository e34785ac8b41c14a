#!/usr/bin/env bash
# The live view on a real Redis Cluster (redis.cluster, redis_router.h): three
# masters with a replica each, started here; tally-ingest routes each shard's
# transaction to its master. Under a steady keyed load (every batch retried
# with its key until 200), a slot is migrated from one master to another
# (MIGRATING / IMPORTING, keys moved one at a time: the router follows ASK,
# TRYAGAIN and then MOVED), and a master is killed (its replica takes over:
# the router asks for the map again and sends on). Then every counter is
# exact, equal in Redis, in SQLite and to what was acknowledged: 0 lost,
# 0 duplicated. Ports: TALLY_TEST_RCLUSTER_PORT (default 27410) .. +5, their
# cluster bus ports +10 .. +15. Last, the cluster loses all its data and
# tally-flusher --rebuild-redis, talking to every master, restores it, and
# the live-series limit holds on the cluster.
source "$(dirname "$0")/lib.sh"
P=$METRIC_PREFIX
BASE=${TALLY_TEST_RCLUSTER_PORT:-27410}
PORTS=($(seq "$BASE" $((BASE + 5))))
NODE_PIDS=()
rc() { redis-cli -p "$1" "${@:2}"; }

start_node() { # PORT
    start_cluster_node "$1" "$WORK/node-$1" --appendonly yes --maxmemory-policy noeviction
    NODE_PIDS[$(($1 - BASE))]=$NODE_PID
}
stop_nodes() { for pid in "${NODE_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; }
trap 'stop_nodes; cleanup' EXIT

for p in "${PORTS[@]}"; do
    ! redis-cli -p "$p" PING >/dev/null 2>&1 || fail "port $p is taken (set TALLY_TEST_RCLUSTER_PORT)"
    start_node "$p"
done
for p in "${PORTS[@]}"; do
    for _ in $(seq 1 50); do rc "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
done
addrs=()
for p in "${PORTS[@]}"; do addrs+=("127.0.0.1:$p"); done
redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$WORK/create.log" 2>&1 ||
    { cat "$WORK/create.log"; fail "redis-cli --cluster create failed"; }
for _ in $(seq 1 100); do
    [[ $(rc "$BASE" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_state://p') == ok ]] && break
    sleep 0.1
done
# every master has its replica in sync before the load starts
for p in $(rc "$BASE" --raw CLUSTER NODES | awk '$3 ~ /master/ { split($2, a, "[:@]"); print a[2] }'); do
    for _ in $(seq 1 100); do
        rc "$p" INFO replication | tr -d '\r' | grep -q '^slave0:.*state=online' && break
        sleep 0.1
    done
done
log "redis cluster up: $(rc "$BASE" --raw CLUSTER NODES | awk '$3 ~ /master/' | wc -l) masters, each with a replica online"

REDIS_SHARDS=12 CONFIG_REDIS_PORT=$BASE REDIS_SETTINGS="cluster = true; min_replicas_acked = 1;" write_config
start_ingest
start_flusher

# master_of SLOT [ASKED]: the port of the master serving the slot, as node ASKED
# (default the first) sees it
master_of() {
    rc "${2:-$BASE}" --raw CLUSTER NODES | awk -v s="$1" '$3 ~ /master/ && $3 !~ /fail/ {
        for (i = 9; i <= NF; i++) { if ($i ~ /^\[/) continue; n = split($i, r, "-"); if (n == 1) r[2] = r[1];
            if (s + 0 >= r[1] + 0 && s + 0 <= r[2] + 0) { split($2, a, "[:@]"); print a[2] } } }'
}
masters() { rc "$BASE" --raw CLUSTER NODES | awk '$3 ~ /master/ { split($2, a, "[:@]"); print a[2] }'; }
node_id() { rc "$1" CLUSTER MYID; }

# 2,000 gauges first, so that the migrated slot holds keys to move
post "$(for k in $(seq 1 2000); do printf '%s.g%d:%d|g\n' "$P" "$k" "$k"; done)"
check_eq "2,000 gauges posted" 200 "$HTTP_CODE"

NAMES=20
load() { # WORKER: keyed batches until $WORK/stop exists, each retried until 200
    local w=$1 i=0 body code tries
    body=$(for k in $(seq 1 $NAMES); do printf '%s.c%d:1|c\n' "$P" "$k"; done)
    while [[ ! -e $WORK/stop ]]; do
        i=$((i + 1)) tries=0
        until code=$(printf '%s' "$body" | curl -sS -o /dev/null -w '%{http_code}' --max-time 30 \
            -H "Idempotency-Key: $RUN_ID-$w-$i" --data-binary @- "$BASE_URL/v1/events" 2>/dev/null) &&
            [[ $code == 200 ]]; do
            tries=$((tries + 1))
            ((tries < 200)) || { echo "batch $w-$i: no 200 after 200 tries" >>"$WORK/load.err"; return 1; }
            sleep 0.05
        done
        echo "$i" >"$WORK/acked-$w"
    done
}
rm -f "$WORK/stop"
load 1 & LOAD1=$!
load 2 & LOAD2=$!
sleep 3

# 1. Migrate shard 0's slot to another master, under load, a key at a time.
SLOT=$(rc "$BASE" CLUSTER KEYSLOT "{0}")
SRC=$(master_of "$SLOT")
for p in $(masters); do [[ $p != "$SRC" ]] && { DST=$p; break; }; done
[[ -n ${SRC:-} && -n ${DST:-} ]] || fail "no source ($SRC) or destination master for slot $SLOT"
log "migrating slot $SLOT (shard 0) from :$SRC to :$DST under load"
rc "$DST" CLUSTER SETSLOT "$SLOT" IMPORTING "$(node_id "$SRC")" >/dev/null
rc "$SRC" CLUSTER SETSLOT "$SLOT" MIGRATING "$(node_id "$DST")" >/dev/null
moved=0 # (10 keys a MIGRATE, as redis-cli --cluster reshard moves them)
while keys=$(rc "$SRC" --raw CLUSTER GETKEYSINSLOT "$SLOT" 10) && [[ -n $keys ]]; do
    mapfile -t batch <<<"$keys"
    out=$(rc "$SRC" MIGRATE 127.0.0.1 "$DST" "" 0 5000 KEYS "${batch[@]}")
    [[ $out == OK || $out == NOKEY ]] || fail "MIGRATE ${batch[*]}: $out"
    moved=$((moved + ${#batch[@]}))
done
for p in "$DST" "$SRC" "${PORTS[@]}"; do
    rc "$p" CLUSTER SETSLOT "$SLOT" NODE "$(node_id "$DST")" >/dev/null 2>&1 || true
done
check_eq "slot $SLOT is served by its new master" "$DST" "$(master_of "$SLOT")"
log "ok: $moved keys migrated"
sleep 2

# 2. Kill the master of shard 1's slot; its replica takes over.
SLOT1=$(rc "$BASE" CLUSTER KEYSLOT "{1}")
VICTIM=$(master_of "$SLOT1")
log "killing the master :$VICTIM of slot $SLOT1 (shard 1) under load"
kill -KILL "${NODE_PIDS[$((VICTIM - BASE))]}"
SURVIVOR=$DST
[[ $SURVIVOR != "$VICTIM" ]] || SURVIVOR=$SRC
for _ in $(seq 1 100); do
    m=$(master_of "$SLOT1" "$SURVIVOR")
    [[ -n $m && $m != "$VICTIM" ]] && break
    sleep 0.2
done
[[ -n $m && $m != "$VICTIM" ]] || fail "no replica took over slot $SLOT1"
log "ok: :$m serves slot $SLOT1 now"
start_node "$VICTIM" # it comes back as a replica of the new master
sleep 3

touch "$WORK/stop"
wait "$LOAD1" || fail "load 1: $(cat "$WORK/load.err" 2>/dev/null)"
wait "$LOAD2" || fail "load 2: $(cat "$WORK/load.err" 2>/dev/null)"
N=$(($(cat "$WORK/acked-1") + $(cat "$WORK/acked-2")))
((N > 50)) || fail "only $N batches acknowledged: no load to speak of"
log "load: $N batches of $NAMES lines acknowledged"

cluster_counter() { # NAME: Σ of its counter hashes, read through the cluster
    { redis-cli -c -p "$SURVIVOR" --raw HVALS "$(rkey "$1" counter)"
      redis-cli -c -p "$SURVIVOR" --raw HVALS "$(rkey "$1" counter:frac)"; } |
        awk '{s += $1} END {printf "%.17g\n", s + 0}'
}
for k in 1 7 "$NAMES"; do
    check_eq "Redis $P.c$k" "$N" "$(cluster_counter "$P.c$k")"
    check_eq "the live read of $P.c$k" "$N" "$(api_counter "$P.c$k")"
done
wrong=0
for k in $(seq 1 $NAMES); do [[ $(cluster_counter "$P.c$k") == "$N" ]] || wrong=$((wrong + 1)); done
check_eq "counters in Redis not equal to the acknowledged batches" 0 "$wrong"
for _ in $(seq 1 150); do [[ $(sqlite_counter "$P.c$NAMES") == "$N" ]] && break; sleep 0.2; done
wrong=0
for k in $(seq 1 $NAMES); do [[ $(sqlite_counter "$P.c$k") == "$N" ]] || wrong=$((wrong + 1)); done
check_eq "counters in SQLite not equal to the acknowledged batches" 0 "$wrong"
for k in $(seq 1 2000); do
    [[ $("$TALLY_BUILD/tally" key -c "$CONF" --shard "$P.g$k") == 0 ]] && break
done
G=$k # (a gauge of shard 0)
check_eq "gauge $P.g$G of the migrated shard 0" "$G" \
    "$(redis-cli -c -p "$SURVIVOR" --raw HGET "$(rkey "$P.g$G" gauge)" "")"
grep -q "redis cluster: 3 masters" "$WORK/ingest.log" || fail "ingest never logged the slot map"
# the promoted replica is another process than the master the shards were
# written to: noticed (tally:{S}:live:run_id), the live view marked stale
grep -q "the redis master of shard [0-9]* is another process than before" "$WORK/ingest.log" ||
    fail "ingest did not notice the new master of the killed one's shards"
check_eq "shard 1 marked stale after its master was replaced" 1 \
    "$(redis-cli -c -p "$SURVIVOR" EXISTS "tally:{1}:live:stale")"

# 3. The cluster loses everything (FLUSHALL on every master): the rebuild,
# talking to each master, restores every counter (rule 5) and clears the
# shards' stale marks the failover left.
for p in $(rc "$SURVIVOR" --raw CLUSTER NODES | awk '$3 ~ /master/ && $3 !~ /fail/ { split($2, a, "[:@]"); print a[2] }'); do
    rc "$p" FLUSHALL >/dev/null
done
check_eq "Redis $P.c1 after FLUSHALL" 0 "$(cluster_counter "$P.c1")"
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >"$WORK/rebuild.out" 2>&1 ||
    { cat "$WORK/rebuild.out"; fail "tally-flusher --rebuild-redis on the cluster failed"; }
wrong=0
for k in $(seq 1 $NAMES); do [[ $(cluster_counter "$P.c$k") == "$N" ]] || wrong=$((wrong + 1)); done
check_eq "counters in Redis not equal to the acknowledged batches after the rebuild" 0 "$wrong"
check_eq "gauge $P.g$G after the rebuild" "$G" \
    "$(redis-cli -c -p "$SURVIVOR" --raw HGET "$(rkey "$P.g$G" gauge)" "")"
stale=0
for s in $(seq 0 11); do
    stale=$((stale + $(redis-cli -c -p "$SURVIVOR" EXISTS "tally:{$s}:live:stale")))
done
check_eq "shards marked stale after the rebuild" 0 "$stale"

# 4. The live-series limit on a cluster: the series' hashes are in other
# slots than the admission's HyperLogLog, so at the limit ingest looks each
# series it does not know up in its own slot: a known one passes, a new one
# is refused, and the limit is never skipped. (The rebuild counted about
# 2,020 series, past the limit of 100.)
stop_ingest
sed -i 's/^ingest = { /ingest = { max_live_series = 100; /' "$CONF"
start_ingest
post "$P.c1:1|c
$P.c7:1|c
$P.g5:5|g"
check_eq "known series at the limit, looked up across slots" 200 "$HTTP_CODE"
post "$P.c1:1|c
$P.brand_new:1|c"
check_eq "a new series at the limit" 422 "$HTTP_CODE"
grep -q "ingest.max_live_series (100)" <<<"$HTTP_BODY" || fail "422 does not name the limit: $HTTP_BODY"
check_eq "the refused batch is stored nowhere (Redis)" 0 "$(cluster_counter "$P.brand_new")"
check_eq "known counter after the limited posts" $((N + 1)) "$(cluster_counter "$P.c1")"
! grep -q "limits not checked" "$WORK/ingest.log" || fail "ingest skipped the limits: $(grep "limits not checked" "$WORK/ingest.log" | head -1)"
stop_ingest
stop_flusher
log "PASS ($CHECKS checks)"
