#!/usr/bin/env bash
# kafka.replication_factor and kafka.min_insync_replicas against the real
# one-broker Kafka: (a) replication_factor = 3 cannot create the topic, so
# ingest answers 503 naming why, in the answer, /healthz and its log, and the
# flusher logs it too; (b) the defaults create the topic with replication 1
# and a topic-level min.insync.replicas=1 (ingest's and the flusher's
# creation alike) and a batch is acknowledged; (c) ingest restarted with
# replication_factor = 2 on that topic answers 503 naming the partition and
# its replicas, and with min_insync_replicas = 2 also the topic's
# min.insync.replicas; nothing refused reaches Redis; (d) a topic whose
# min.insync.replicas exceeds its replicas (set with Kafka's kafka-configs)
# refuses, and fixing the topic heals ingest within the 2 s re-check,
# without a restart, so the client's keyed retry is acknowledged.
source "$(dirname "$0")/lib.sh"

P=$METRIC_PREFIX
KAFKA_LIBS=${TALLY_CACHE:-$HOME/.cache/tally}/kafka-4.1.1/libs
[[ -f $KAFKA_LIBS/kafka_2.13-4.1.1.jar ]] || fail "Kafka jars not found in $KAFKA_LIBS"

# kafka_configs TOPIC ARGS...: Kafka's own kafka-configs tool on TOPIC.
kafka_configs() {
    local topic=$1
    shift
    java -cp "$KAFKA_LIBS/*" kafka.admin.ConfigCommand \
        --bootstrap-server "127.0.0.1:$TALLY_KAFKA_PORT" --entity-type topics \
        --entity-name "$topic" "$@" 2>>"$WORK/kafka-configs.err"
}

# topic_min_insync TOPIC: the topic-level (dynamic) min.insync.replicas, or "none".
topic_min_insync() {
    kafka_configs "$1" --describe |
        awk '$1 ~ /^min\.insync\.replicas=/ { sub(/^min\.insync\.replicas=/, "", $1); v = $1 }
             END { print v == "" ? "none" : v }'
}

# wait_while_running WHAT PID COMMAND...: polls COMMAND until it succeeds;
# fails if process PID exits or 60 s pass first.
wait_while_running() {
    local what=$1 pid=$2 deadline=$((SECONDS + 60))
    shift 2
    until "$@"; do
        kill -0 "$pid" 2>/dev/null || fail "$what: the process exited"
        ((SECONDS < deadline)) || fail "$what: not within 60 s"
        sleep 0.3
    done
    CHECKS=$((CHECKS + 1))
    log "ok: $what"
}
flusher_log_has() { grep -qF -- "$1" "$WORK/flusher.log"; }
topic_min_insync_is() { [[ $(topic_min_insync "$1") == "$2" ]]; }

# start_ingest_refusing WANT: starts tally-ingest and waits (60 s) until its
# /healthz is 503 with a kafka_reason holding WANT.
start_ingest_refusing() {
    local want=$1 deadline=$((SECONDS + 60)) health code
    "$TALLY_BUILD/tally-ingest" -c "$CONF" >>"$WORK/ingest.log" 2>&1 &
    INGEST_PID=$!
    while :; do
        kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest exited during start"
        code=$(curl -sS -o "$WORK/health" -w '%{http_code}' "$BASE_URL/healthz" 2>/dev/null) || code=000
        health=$(cat "$WORK/health" 2>/dev/null || true)
        if [[ $code == 503 ]] && jq -e --arg w "$want" '.kafka_reason // "" | contains($w)' \
            <<<"$health" >/dev/null 2>&1; then
            break
        fi
        [[ $code != 200 ]] || fail "tally-ingest is healthy (it would acknowledge): $health"
        ((SECONDS < deadline)) || fail "no /healthz 503 naming '$want' within 60 s (last: $code $health)"
        sleep 0.2
    done
    CHECKS=$((CHECKS + 1))
    log "ok: /healthz 503, kafka_reason: $(jq -r .kafka_reason <<<"$health")"
}

# expect_refused WHAT WANT...: a POST is answered 503 whose error says Kafka
# is not ready and holds every WANT, so does ingest.log, and nothing reached
# the live view.
expect_refused() {
    local what=$1 want
    shift
    post "$P.refused:1|c" "kr-$RUN_ID-$what"
    check_eq "$what: POST answer" 503 "$HTTP_CODE"
    for want in "$@"; do
        jq -e --arg w "$want" '.error | startswith("kafka not ready: ") and contains($w)' \
            <<<"$HTTP_BODY" >/dev/null ||
            fail "$what: the 503 does not say '$want': $HTTP_BODY"
        grep -qF -- "$want" "$WORK/ingest.log" || fail "$what: ingest.log does not say '$want'"
    done
    check_eq "$what: refused batch in Redis" 0 "$(redis_counter "$P.refused")"
}

log "(a) replication_factor = 3 on one broker: the topic cannot be created, ingest refuses"
KAFKA_SETTINGS="replication_factor = 3; min_insync_replicas = 2;" write_config
want="kafka create topic $TOPIC: "
hint="(kafka.replication_factor is 3: at most the number of brokers)"
start_ingest_refusing "$hint"
expect_refused rf3 "$want" "$hint"
grep -qF "acknowledging nothing" "$WORK/ingest.log" && fail "a create failure is not a replication finding"
stop_ingest
"$TALLY_BUILD/tally-flusher" -c "$CONF" >>"$WORK/flusher.log" 2>&1 &
FLUSHER_PID=$!
wait_while_running "the flusher waits, naming the refused creation" "$FLUSHER_PID" \
    flusher_log_has "$hint"
kill9_flusher
check_eq "topic created by neither" none "$(topic_min_insync "$TOPIC")"

log "(b) the defaults: replication 1, topic-level min.insync.replicas=1, batches acknowledged"
write_config
start_ingest
post_keyed "kr-$RUN_ID-ok" "$P.ok:2|c" 30
check_eq "batch on a replication-1 topic" "200 2" "$HTTP_CODE $(redis_counter "$P.ok")"
check_eq "min.insync.replicas of ingest's topic" 1 "$(topic_min_insync "$TOPIC")"
stop_ingest
FLUSHER_TOPIC=$TOPIC-flusher
TOPIC=$FLUSHER_TOPIC write_config
grep -qF "topic = \"$FLUSHER_TOPIC\"" "$CONF" || fail "the flusher's config does not name $FLUSHER_TOPIC"
start_flusher
wait_while_running "the flusher creates its topic with min.insync.replicas=1" "$FLUSHER_PID" \
    topic_min_insync_is "$FLUSHER_TOPIC" 1
stop_flusher

log "(c) replication_factor = 2 on the replication-1 topic: 503 naming partition and replicas"
KAFKA_SETTINGS="replication_factor = 2;" write_config
want="kafka topic $TOPIC: partition 0 has 1 replica, kafka.replication_factor expects 2"
start_ingest_refusing "$want"
expect_refused rf2 "$want"
grep -qF "kafka-reassign-partitions" "$WORK/ingest.log" || fail "ingest.log does not say how to fix it"
stop_ingest
KAFKA_SETTINGS="replication_factor = 2; min_insync_replicas = 2;" write_config
want2="; min.insync.replicas is 1, kafka.min_insync_replicas expects at least 2"
start_ingest_refusing "$want2"
expect_refused isr2 "$want" "$want2"
stop_ingest

log "(d) min.insync.replicas=2 on a replication-1 topic: refused; fixed, ingest heals unrestarted"
kafka_configs "$TOPIC" --alter --add-config min.insync.replicas=2 >/dev/null ||
    fail "kafka-configs could not alter $TOPIC: $(tail -n 3 "$WORK/kafka-configs.err")"
check_eq "min.insync.replicas altered" 2 "$(topic_min_insync "$TOPIC")"
write_config
want="kafka topic $TOPIC: min.insync.replicas is 2 but partition 0 has 1 replica, so every acks=all write fails"
start_ingest_refusing "$want"
expect_refused isr-above "$want"
kafka_configs "$TOPIC" --alter --add-config min.insync.replicas=1 >/dev/null ||
    fail "kafka-configs could not alter $TOPIC back: $(tail -n 3 "$WORK/kafka-configs.err")"
post_keyed "kr-$RUN_ID-healed" "$P.healed:5|c" 60 503
check_eq "healed without a restart: batch counted" 5 "$(redis_counter "$P.healed")"
kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest is no longer the process that refused"
check_eq "refused batches in Redis" 0 "$(redis_counter "$P.refused")"
stop_ingest

finish
