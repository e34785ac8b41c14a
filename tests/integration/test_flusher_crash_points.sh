#!/usr/bin/env bash
# Replay after a flusher crash at every step of a flush. For each injected
# crash point (after_consume, mid_aggregate, before_commit, after_commit; see
# flusher/main.c) batches are posted through tally-ingest, the flusher is run
# with TALLY_FLUSHER_CRASH_AT until it dies by SIGKILL, and later a normal
# flusher drains the rest. SQLite must end exactly equal to what was
# acknowledged: counters, distributions and the final gauge value (checked
# against Redis, which applied the same batches in the same order).
source "$(dirname "$0")/lib.sh"

write_config
start_ingest

P=$METRIC_PREFIX
posted=0
post_batches() { # COUNT
    local i b body
    for ((i = 0; i < $1; i++)); do
        b=$((posted + 1))
        body="$P.g:$b|g
$(counter_lines "$P.c" 300 1)
$(awk -v p="$P" -v b="$b" 'BEGIN { for (i = 1; i <= 50; i++) { print p ".d:" (i + b) "|ms"; print p ".g:+1|g" } }')"
        post "$body"
        [[ $HTTP_CODE == 200 ]] || fail "batch $b: HTTP $HTTP_CODE $HTTP_BODY"
        posted=$b
    done
}

# run_crashing POINT COUNT: run the flusher while batches keep coming, until
# the injected crash kills it (SIGKILL: status 137).
run_crashing() {
    local rc=0 pid deadline=$((SECONDS + 60))
    TALLY_FLUSHER_CRASH_AT=$1 TALLY_FLUSHER_CRASH_COUNT=$2 \
        "$TALLY_BUILD/tally-flusher" -c "$CONF" >>"$WORK/flusher.log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        post_batches 1
        sleep 0.1
    done
    if kill -KILL "$pid" 2>/dev/null; then
        wait "$pid" || true
        fail "crash point $1 (pass $2) not reached within 60 s"
    fi
    wait "$pid" || rc=$?
    check_eq "flusher killed at $1 (pass $2)" 137 "$rc"
}

for point in after_consume mid_aggregate before_commit after_commit; do
    for n in 1 3; do
        post_batches 2
        run_crashing "$point" "$n"
    done
done
start_flusher
wait_sqlite_counter "$P.c" $((posted * 300)) 120
check_eq "records consumed = batches posted" "$posted" \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(next_offset) FROM kafka_offsets WHERE topic='$TOPIC'")"
check_eq "distinct batches" "$posted" "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches")"
check_eq "counter lines" $((posted * 300)) \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines) FROM metrics WHERE name='$P.c'")"
# distribution: batch b holds values b+1 .. b+50
want_sum=$(awk -v n="$posted" 'BEGIN { s = 0; for (b = 1; b <= n; b++) for (i = 1; i <= 50; i++) s += i + b; print s }')
check_eq "distribution count|sum|min|max" "$((posted * 50))|$want_sum|2|$((posted + 50))" \
    "$(sqlite3 "$WORK/tally.db" "SELECT printf('%d|%d|%d|%d', SUM(weight), SUM(value), MIN(min), MAX(max)) FROM metrics WHERE name='$P.d'")"
# gauge: each batch sets b then adds 50
check_eq "final gauge in SQLite" $((posted + 50)) \
    "$(sqlite3 "$WORK/tally.db" "SELECT printf('%d', value) FROM gauges WHERE name='$P.g'")"
check_eq "final gauge in Redis" $((posted + 50)) \
    "$(redis-cli -p "$TALLY_REDIS_PORT" --raw HGET "$(rkey "$P.g" gauge)" "")"

stop_flusher
stop_ingest
finish
