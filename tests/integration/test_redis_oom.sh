#!/usr/bin/env bash
# Redis full (maxmemory reached, noeviction): it refuses the live update, and
# since Kafka already holds the batch, tally-ingest answers 200
# "live":"stale" (redis.on_unavailable = accept) and the batch still reaches
# SQLite exactly once; with memory back, the rebuild makes Redis equal SQLite.
# Nothing acknowledged is lost, nothing is evicted.
source "$(dirname "$0")/lib.sh"

R="redis-cli -p $TALLY_REDIS_PORT --raw"
saved=$($R CONFIG GET maxmemory | sed -n 2p)
restore_memory() { $R CONFIG SET maxmemory "$saved" >/dev/null 2>&1 || true; }
trap 'restore_memory; cleanup' EXIT

write_config
start_ingest
start_flusher
P=$METRIC_PREFIX

post_keyed "oom-$RUN_ID-0" "$P.ok:1|c" 30
check_eq "before: applied" applied "$(jq -r .live <<<"$HTTP_BODY")"

used=$($R INFO memory | tr -d '\r' | sed -n 's/^used_memory:\([0-9]*\)$/\1/p')
$R CONFIG SET maxmemory $((used / 2)) >/dev/null
log "maxmemory set to $((used / 2)) bytes (used: $used)"
awk -v p="$P" 'BEGIN { for (i = 0; i < 2000; i++) print p ".full" i ":3|c" }' >"$WORK/wide"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' -H "Idempotency-Key: oom-$RUN_ID-1" \
    --data-binary @"$WORK/wide" "$BASE_URL/v1/events")
check_eq "a batch while Redis is full" "200 stale" "$code $(jq -r .live "$WORK/r")"
check_eq "Redis holds none of it" "" "$($R HGET "$(rkey "$P.full7" counter)" "")"
grep -q "OOM\|EXECABORT" "$WORK/ingest.log" || fail "ingest did not log Redis' refusal"
kill -0 "$INGEST_PID" || fail "tally-ingest died"

restore_memory
# (the stale mark could not be written while Redis was full either; the next
# applied batch writes it)
post_keyed "oom-$RUN_ID-2" "$P.ok:1|c" 30
check_eq "after: applied" applied "$(jq -r .live <<<"$HTTP_BODY")"
wait_sqlite_counter "$P.full7" 3
check_eq "SQLite has the whole batch" 6000 \
    "$(sqlite3 "$WORK/tally.db" "SELECT CAST(SUM(value) AS INTEGER) FROM metrics WHERE name LIKE '$P.full%'")"
check_eq "the live view says it is stale" 1 "$($R EXISTS tally:{0}:live:stale)"
rc=0
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild.log" 2>&1 || rc=$?
check_eq "rebuild once memory is back" 0 "$rc"
check_eq "Redis equals SQLite after the rebuild" 3 "$(redis_counter "$P.full7")"
check_eq "stale mark cleared" 0 "$($R EXISTS tally:{0}:live:stale)"

stop_flusher
stop_ingest
finish
