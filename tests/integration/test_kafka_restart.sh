#!/usr/bin/env bash
# Kafka restarted during posting: the broker is killed with SIGKILL while a
# client posts keyed batches, and started again. The client behaves as
# documented: on any non-200 it retries the same batch with the same
# Idempotency-Key. Every acknowledged batch must reach SQLite exactly once,
# and nothing is acknowledged while the broker is down.
source "$(dirname "$0")/lib.sh"

STACK=$TALLY_SOURCE/deploy/stack
DELIVERY_TIMEOUT_MS=2000 write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
body=$(counter_lines "$P.k" 200 1)
BATCHES=60
retries=0
unavailable=0
restarter=""
for ((b = 1; b <= BATCHES; b++)); do
    if ((b == 20)); then
        log "kill -9 the Kafka broker, restart it in 3 s"
        "$STACK" kill kafka >/dev/null
        (sleep 3 && "$STACK" up kafka >"$WORK/kafka-restart.log" 2>&1) &
        restarter=$!
    fi
    deadline=$((SECONDS + 120))
    while :; do
        post "$body" "batch-$RUN_ID-$b"
        [[ $HTTP_CODE == 200 ]] && break
        [[ $HTTP_CODE == 503 ]] || fail "batch $b: unexpected HTTP $HTTP_CODE $HTTP_BODY"
        unavailable=$((unavailable + 1))
        ((SECONDS < deadline)) || fail "batch $b not accepted within 120 s"
        retries=$((retries + 1))
        sleep 0.5
    done
done
wait "$restarter" || fail "restarting Kafka failed: $(cat "$WORK/kafka-restart.log")"
log "503 answers while the broker was down: $unavailable (each retried with its key)"
((unavailable > 0)) || fail "the broker outage produced no 503: the test did not exercise it"

check_eq "redis total" $((BATCHES * 200)) "$(redis_counter "$P.k")"
wait_sqlite_counter "$P.k" $((BATCHES * 200)) 120
check_eq "distinct batches in SQLite" $BATCHES \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id LIKE 'batch-$RUN_ID-%'")"

stop_flusher
stop_ingest
finish
