#!/usr/bin/env bash
# The query cache on a real Redis Cluster (cache.cluster): two masters,
# started here (TALLY_TEST_CCLUSTER_PORT, default 27430, and +1; cluster
# buses +10). The cache is one slot (its keys' hash tag {cache}); the seed
# given to Tally is the master that does NOT serve it, so both tally-ingest
# and tally-flusher must find the slot's master themselves. Then: a read
# misses, the next hits, and the answer lives on that master; a commit makes
# the very next read return the new value; the slot is migrated to the other
# master (MIGRATE, SETSLOT NODE) and ingest (MOVED) and the flusher follow:
# answers stay exact, hits resume on the new master, and a commit after the
# move is seen by the next read. Last, cache.cluster against a plain Redis
# is refused with a reason (reads uncached).
source "$(dirname "$0")/lib.sh"
P=$METRIC_PREFIX
CBASE=${TALLY_TEST_CCLUSTER_PORT:-27430}
NODE_PIDS=()
rc() { redis-cli -p "$1" "${@:2}"; }

start_node() { # PORT
    start_cluster_node "$1" "$WORK/cache-$1" --maxmemory 64mb --maxmemory-policy allkeys-lru \
        --appendonly no
    NODE_PIDS+=("$NODE_PID")
}
stop_nodes() { for pid in "${NODE_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done; }
trap 'stop_nodes; cleanup' EXIT

A=$CBASE B=$((CBASE + 1))
for p in $A $B; do
    ! rc "$p" PING >/dev/null 2>&1 || fail "port $p is taken (set TALLY_TEST_CCLUSTER_PORT)"
    start_node "$p"
done
for p in $A $B; do
    for _ in $(seq 1 50); do rc "$p" PING >/dev/null 2>&1 && break; sleep 0.1; done
done
# (two masters: redis-cli --cluster create wants three, so by hand)
rc $A CLUSTER ADDSLOTSRANGE 0 8191 >/dev/null
rc $B CLUSTER ADDSLOTSRANGE 8192 16383 >/dev/null
rc $A CLUSTER MEET 127.0.0.1 $B $((B + 10)) >/dev/null
state() { rc "$1" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_state://p'; }
for _ in $(seq 1 150); do
    [[ $(state $A) == ok && $(state $B) == ok ]] && break
    sleep 0.1
done
[[ $(state $A) == ok && $(state $B) == ok ]] || fail "the cache cluster did not form: $(state $A) $(state $B)"
SLOT=$(rc $A CLUSTER KEYSLOT "{cache}")
if ((SLOT <= 8191)); then OWNER=$A OTHER=$B; else OWNER=$B OTHER=$A; fi
log "cache cluster up: slot $SLOT ({cache}) on :$OWNER; the seed is :$OTHER"

CONFIG_CACHE_PORT=$OTHER CACHE_SETTINGS="cluster = true;" write_config
start_ingest
start_flusher

# cache_header PATH: the X-Tally-Cache of a read (the body in $WORK/answer)
cache_header() {
    curl -sS -D - -o "$WORK/answer" "$BASE_URL$1" | tr -d '\r' |
        awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}'
}
answers_on() { # PORT: the cached answers that node holds
    rc "$1" --raw KEYS 'tally:{cache}:a:*' | awk NF | wc -l
}
T=$(($(date +%s) + 120)) # (one instant for every read: one answer key; past the test's posts)
q="/api/v1/query?query=${P}_hits&time=$T"
value() { jq -r '.data.result[0].value[1]' "$WORK/answer"; }

post "$P.hits:5|c"
wait_sqlite_counter "$P.hits" 5
check_eq "first read misses, the second hits" "miss hit" "$(cache_header "$q") $(cache_header "$q")"
check_eq "the hit's value" 5 "$(value)"
((  $(answers_on "$OWNER") > 0 )) || fail "no answer on :$OWNER, the master of the cache's slot"
check_eq "answers on the seed, which does not serve the slot" 0 "$(answers_on "$OTHER")"
grep -q "cache redis: CLUSTER SLOTS names another master: now 127.0.0.1:$OWNER" "$WORK/ingest.log" ||
    fail "ingest did not log finding the cache's master"

post "$P.hits:2|c"
wait_sqlite_counter "$P.hits" 7
cache_header "$q" >/dev/null
check_eq "after a commit the very next read has the new value" 7 "$(value)"

# Migrate the cache's slot from its master to the other one.
log "migrating slot $SLOT from :$OWNER to :$OTHER"
rc "$OTHER" CLUSTER SETSLOT "$SLOT" IMPORTING "$(rc "$OWNER" CLUSTER MYID)" >/dev/null
rc "$OWNER" CLUSTER SETSLOT "$SLOT" MIGRATING "$(rc "$OTHER" CLUSTER MYID)" >/dev/null
while keys=$(rc "$OWNER" --raw CLUSTER GETKEYSINSLOT "$SLOT" 100) && [[ -n $keys ]]; do
    mapfile -t batch <<<"$keys"
    out=$(rc "$OWNER" MIGRATE 127.0.0.1 "$OTHER" "" 0 5000 KEYS "${batch[@]}")
    [[ $out == OK || $out == NOKEY ]] || fail "MIGRATE: $out"
done
for p in $OTHER $OWNER; do rc "$p" CLUSTER SETSLOT "$SLOT" NODE "$(rc "$OTHER" CLUSTER MYID)" >/dev/null; done
for _ in $(seq 1 50); do
    [[ $(rc "$OWNER" CLUSTER COUNTKEYSINSLOT "$SLOT") == 0 ]] && break
    sleep 0.1
done

# Reads stay exact across the move; within a few they hit again, on the new master.
got="" h=""
for i in $(seq 1 50); do
    h=$(cache_header "$q")
    [[ $(value) == 7 ]] || fail "read $i during the move: $(cat "$WORK/answer")"
    [[ $h == hit ]] && (($(answers_on "$OTHER") > 0)) && break
    sleep 0.2
done
check_eq "hits again after the move" hit "$h"
((  $(answers_on "$OTHER") > 0 )) || fail "no answer on the new master :$OTHER"
grep -q "cache redis: MOVED: now 127.0.0.1:$OTHER" "$WORK/ingest.log" ||
    fail "ingest did not follow the MOVED"

post "$P.hits:3|c"
wait_sqlite_counter "$P.hits" 10
for _ in $(seq 1 25); do # (the commit's invalidation follows the move: the next read is new)
    cache_header "$q" >/dev/null
    [[ $(value) == 10 ]] && break
    sleep 0.2
done
check_eq "after the move a commit is seen by the next read" 10 "$(value)"
check_eq "answers left on the old master" 0 "$(answers_on "$OWNER")"
! grep -q "refused the invalidation" "$WORK/flusher.log" ||
    fail "the flusher lost an invalidation: $(grep "refused the invalidation" "$WORK/flusher.log" | head -1)"

# cache.cluster = true against a Redis that is not a cluster: reads go to
# SQLite (uncached) and the log says why.
stop_ingest
CACHE_SETTINGS="cluster = true;" write_config
start_ingest
check_eq "cache.cluster on a plain Redis: reads uncached, still exact" "uncached 10" \
    "$(cache_header "$q") $(value)"
for _ in $(seq 1 25); do grep -q "cache.cluster = true needs a Redis Cluster" "$WORK/ingest.log" && break; sleep 0.2; done
grep -q "CLUSTER SLOTS refused (.*): cache.cluster = true needs a Redis Cluster" "$WORK/ingest.log" ||
    fail "ingest did not say why the cache is down"

stop_flusher
stop_ingest
finish
