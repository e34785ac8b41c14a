#!/usr/bin/env bash
# Kafka stopped and restarted during posting. While the broker is down no
# request is acknowledged (each gets 503 + Retry-After); the clients retry
# with their Idempotency-Key after it is back, and every batch is counted
# exactly once in Redis and in SQLite, including those whose first attempt
# may have reached the broker before it died.
source "$(dirname "$0")/lib.sh"

STACK=$TALLY_SOURCE/deploy/stack
DELIVERY_TIMEOUT_MS=2000 write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
body=$(counter_lines "$P.k" 200 1)

for b in $(seq 1 10); do post_keyed "kr-$RUN_ID-$b" "$body" 120 503; done

log "kill -9 the Kafka broker"
"$STACK" kill kafka >/dev/null
posters=()
for b in $(seq 11 16); do
    (post "$body" "kr-$RUN_ID-$b"; printf '%s %s\n' "$HTTP_CODE" "$(jq -r .error <<<"$HTTP_BODY")" >"$WORK/down-$b") &
    posters+=($!)
done
wait "${posters[@]}"
for b in $(seq 11 16); do
    read -r code reason <"$WORK/down-$b"
    check_eq "batch $b while the broker is down" 503 "$code"
done
log "a 503 reason: $reason"
check_eq "redis applied nothing while Kafka was down" 2000 "$(redis_counter "$P.k")"
# healthz_code: /healthz's status, waiting up to 15 s for WANT
healthz_code() {
    local want=$1 code i
    for ((i = 0; i < 75; i++)); do
        code=$(curl -s -o "$WORK/healthz" -w '%{http_code}' "$BASE_URL/healthz") || code=000
        [[ $code == "$want" ]] && break
        sleep 0.2
    done
    echo "$code $(jq -r .status "$WORK/healthz" 2>/dev/null)"
}
check_eq "/healthz while ingest cannot acknowledge" "503 unavailable" "$(healthz_code 503)"

log "start the broker again"
"$STACK" up kafka >"$WORK/kafka-up.log" 2>&1 || fail "restarting Kafka: $(cat "$WORK/kafka-up.log")"
check_eq "/healthz once the broker is back" "200 ok" "$(healthz_code 200)"
for b in $(seq 11 26); do post_keyed "kr-$RUN_ID-$b" "$body" 120 503; done

check_eq "redis total" $((26 * 200)) "$(redis_counter "$P.k")"
wait_sqlite_counter "$P.k" $((26 * 200)) 120
check_eq "distinct batches in SQLite" 26 \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id LIKE 'kr-$RUN_ID-%'")"

stop_flusher
stop_ingest
finish
