#!/usr/bin/env bash
# Exactly once into SQLite across flusher crashes: 100,000 counter events in
# batches of 1,000 are posted with curl while tally-flusher is killed with
# SIGKILL three times mid-stream and restarted. The final totals in SQLite,
# Redis and the HTTP API must all be exact: nothing lost, nothing counted twice.
source "$(dirname "$0")/lib.sh"

write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
counter_lines "$P.hits" 600 1 >"$WORK/batch"
counter_lines "$P.bytes" 400 3 >>"$WORK/batch"
sed -i "1~3s/|c\$/|c|#shard:a/" "$WORK/batch"   # a tagged series too
body=$(cat "$WORK/batch")

BATCHES=100
acked=0
for ((b = 1; b <= BATCHES; b++)); do
    post "$body"
    [[ $HTTP_CODE == 200 ]] || fail "batch $b: HTTP $HTTP_CODE $HTTP_BODY"
    acked=$((acked + 1))
    if ((b % 30 == 0)); then
        log "batch $b: kill -9 tally-flusher and restart it"
        kill9_flusher
        start_flusher
    fi
done
check_eq "acknowledged batches" $BATCHES $acked

check_eq "redis total of $P.hits" 60000 "$(redis_counter "$P.hits")"
check_eq "redis total of $P.bytes" 120000 "$(redis_counter "$P.bytes")"
wait_sqlite_counter "$P.hits" 60000 120
wait_sqlite_counter "$P.bytes" 120000 120
check_eq "API total of $P.hits (redis)" 60000 "$(api_counter "$P.hits")"
check_eq "API total of $P.hits (sqlite)" 60000 "$(api_counter "$P.hits" sqlite)"
check_eq "sqlite lines folded" 100000 \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines) FROM metrics WHERE name LIKE '$P.%'")"
check_eq "batches recorded" $BATCHES "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches")"
check_eq "stored offset = records produced" $BATCHES \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(next_offset) FROM kafka_offsets WHERE topic='$TOPIC'")"

stop_flusher
stop_ingest
finish
