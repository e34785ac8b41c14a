#!/usr/bin/env bash
# A restarted Redis is noticed even when no batch missed it: with AOF
# everysec it may have lost its last second, so at the reconnect tally-ingest
# compares Redis' run_id with the one recorded in tally:live:run_id and marks
# the live view stale; a restart of tally-ingest alone does not. The rebuild
# clears the mark, and records the run_id it rebuilt on, so an ingest that
# connects after it does not mark it again.
source "$(dirname "$0")/lib.sh"

STACK=$TALLY_SOURCE/deploy/stack
R="redis-cli -p $TALLY_REDIS_PORT --raw"
write_config
start_ingest
start_flusher
P=$METRIC_PREFIX

post_keyed "rr-$RUN_ID-1" "$P.c:1|c" 30
$R DEL tally:{0}:live:stale >/dev/null
check_eq "run_id recorded" "$($R INFO server | tr -d '\r' | sed -n 's/^run_id://p')" "$($R GET tally:live:run_id)"

stop_ingest
start_ingest
post_keyed "rr-$RUN_ID-2" "$P.c:1|c" 30
check_eq "an ingest restart leaves the live view fresh" "0 applied" "$($R EXISTS tally:{0}:live:stale) $(jq -r .live <<<"$HTTP_BODY")"

log "restart Redis while idle"
"$STACK" kill redis >/dev/null
"$STACK" up redis >/dev/null
for ((i = 0; i < 100; i++)); do
    [[ $($R EXISTS tally:{0}:live:stale 2>/dev/null) == 1 ]] && break
    sleep 0.2
done
check_eq "a restarted Redis marks the live view stale" 1 "$($R EXISTS tally:{0}:live:stale)"
grep -q "redis restarted (run_id" "$WORK/ingest.log" || fail "no log line names the restart"
check_eq "reads say so" true "$(curl -fsS "$BASE_URL/v1/counters/$P.c" | jq -r .stale)"

wait_sqlite_counter "$P.c" 2
rc=0
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild.log" 2>&1 || rc=$?
check_eq "rebuild" 0 "$rc"
check_eq "the rebuild clears the mark" "0 false 2" \
    "$($R EXISTS tally:{0}:live:stale) $(curl -fsS "$BASE_URL/v1/counters/$P.c" | jq -r '"\(.stale) \(.value)"')"

# The rebuild records the run_id of the Redis it rebuilt: an ingest that
# connects only afterwards finds its own Redis recorded, not a restart.
log "restart Redis while tally-ingest is stopped, rebuild, then start it"
stop_ingest
"$STACK" kill redis >/dev/null
"$STACK" up redis >/dev/null
rc=0
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild.log" 2>&1 || rc=$?
check_eq "rebuild of the restarted Redis" 0 "$rc"
check_eq "the rebuild recorded this Redis' run_id" \
    "$($R INFO server | tr -d '\r' | sed -n 's/^run_id://p')" "$($R GET tally:live:run_id)"
start_ingest
post_keyed "rr-$RUN_ID-3" "$P.c:1|c" 30
check_eq "an ingest connecting after the rebuild leaves the view fresh" "0 applied" \
    "$($R EXISTS tally:{0}:live:stale) $(jq -r .live <<<"$HTTP_BODY")"

# A batch ingest misses while a rebuild holds the fences is that rebuild's
# to replay (it replays every record delivered before its fences drop), so
# ingest leaves the view unmarked: the rebuild ends by deleting only its
# own marks. Fences set by hand stand for the running rebuild; CLIENT PAUSE
# WRITE makes ingest's call time out (redis.timeout_ms = 500).
shards=${REDIS_SHARDS:-4}
drop_fences() {
    local s
    for ((s = 0; s < shards; s++)); do
        $R EVAL "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end" 1 \
            "tally:{$s}:live:rebuilding" "test fence $RUN_ID" >/dev/null 2>&1 || true
    done
}
trap 'drop_fences; cleanup' EXIT
for ((s = 0; s < shards; s++)); do
    $R SET "tally:{$s}:live:rebuilding" "test fence $RUN_ID" EX 60 >/dev/null
done
$R CLIENT PAUSE 2000 WRITE >/dev/null
post "$P.c:1|c" "rr-$RUN_ID-4"
check_eq "a batch whose live update timed out" "200 stale" "$HTTP_CODE $(jq -r .live <<<"$HTTP_BODY")"
for ((i = 0; i < 100; i++)); do
    grep -q "live view not marked stale" "$WORK/ingest.log" && break
    sleep 0.1
done
grep -q "live view not marked stale (.*): the rebuild running now replays it" "$WORK/ingest.log" ||
    fail "ingest did not leave its missed batch to the rebuild holding the fences"
marks=$(for ((s = 0; s < shards; s++)); do $R EXISTS "tally:{$s}:live:stale"; done | sort -u)
check_eq "no shard marked stale while a rebuild holds the fences" 0 "$marks"
drop_fences

# A rebuild that dies must not freeze the live view: its fence is short-lived
# (renewed every second by a live rebuild) and lapses within 15 s. 200,000
# extra live-view keys keep the rebuild deleting (fence held) for far longer
# than the 10 ms poll, so the kill lands while the fence is up, on any machine.
JUNK=200000
JUNK_SCRIPT="for i = 1, tonumber(ARGV[1]) do redis.call(ARGV[2], 'tally:{rr-junk}:' .. i"
$R EVAL "$JUNK_SCRIPT, '1') end return 0" 0 "$JUNK" SET >/dev/null
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild2.log" 2>&1 &
rebuild=$!
seen=0
for ((i = 0; i < 1000; i++)); do
    if [[ $($R EXISTS tally:{0}:live:rebuilding) == 1 ]]; then seen=1; break; fi
    kill -0 "$rebuild" 2>/dev/null || break
    sleep 0.01
done
kill -KILL "$rebuild" 2>/dev/null || true
wait "$rebuild" 2>/dev/null || true
check_eq "the fence of a rebuild killed with -9 was up" 1 "$seen"
ttl=$($R TTL tally:{0}:live:rebuilding)
((ttl >= -2 && ttl <= 15)) || fail "fence TTL $ttl s (at most 15 s)"
$R EVAL "$JUNK_SCRIPT) end return 0" 0 "$JUNK" UNLINK >/dev/null
t0=$SECONDS
for ((i = 0; i < 120; i++)); do
    post "$P.c:1|c" "rr-$RUN_ID-f$i"
    [[ $HTTP_CODE == 200 && $(jq -r .live <<<"$HTTP_BODY") == applied ]] && break
    sleep 0.25
done
check_eq "batches reach the live view again after the dead rebuild's fence lapsed" applied \
    "$(jq -r .live <<<"$HTTP_BODY")"
log "ok: applied again after $((SECONDS - t0)) s"

stop_flusher
stop_ingest
finish
