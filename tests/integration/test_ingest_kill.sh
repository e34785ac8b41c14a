#!/usr/bin/env bash
# Retries after an ingest crash are safe: tally-ingest is killed with SIGKILL
# while a request is in flight (after Kafka may already hold the batch, before
# Redis applied it, or before the client got its answer), restarted, and the
# client retries the same batch with its Idempotency-Key. Every batch must be
# counted exactly once in Redis and in SQLite.
source "$(dirname "$0")/lib.sh"

write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
body=$(counter_lines "$P.i" 500 1)
kills=0
for b in $(seq 1 40); do
    if ((b % 8 == 0)); then
        # Kill mid-request: the answer is lost, the batch may or may not be in Kafka.
        (post "$body" "ik-$RUN_ID-$b") &
        poster=$!
        sleep "0.0$((RANDOM % 9 + 1))"
        kill -KILL "$INGEST_PID"
        wait "$INGEST_PID" 2>/dev/null || true
        wait "$poster" || true
        kills=$((kills + 1))
        start_ingest
    fi
    post_keyed "ik-$RUN_ID-$b" "$body"
done
check_eq "ingest kills" 5 "$kills"

check_eq "redis total" $((40 * 500)) "$(redis_counter "$P.i")"
wait_sqlite_counter "$P.i" $((40 * 500))
check_eq "distinct batches in SQLite" 40 \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id LIKE 'ik-$RUN_ID-%'")"

stop_flusher
stop_ingest
finish
