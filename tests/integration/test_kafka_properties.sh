#!/usr/bin/env bash
# kafka.client_properties against the real broker (PLAINTEXT: the test
# stack has no TLS or SASL listener): a private file with
# security.protocol=PLAINTEXT is applied to the producer and the consumer
# (a batch is acknowledged and reaches SQLite); a file setting anything but
# security.protocol, sasl.* or ssl.* (acks=0), a value librdkafka refuses
# (security.protocol=bogus), or a file readable by group or others make
# tally-ingest and tally-flusher refuse to start, naming file, line and key.
source "$(dirname "$0")/lib.sh"

P=$METRIC_PREFIX
umask 077

# props NAME TEXT: writes $WORK/NAME.properties (0600) and points the config at it.
props() {
    printf '%s' "$2" >"$WORK/$1.properties"
    KAFKA_SETTINGS="client_properties = \"$WORK/$1.properties\";" write_config
}

log "security.protocol=PLAINTEXT: applied, batches acknowledged and flushed"
props plain $'# the test broker has a PLAINTEXT listener only\n\n  security.protocol = PLAINTEXT  \n'
start_ingest
start_flusher
post_keyed "kp-$RUN_ID-1" "$P.c:3|c" 30
check_eq "batch answered" "200 applied" "$HTTP_CODE $(jq -r .live <<<"$HTTP_BODY")"
wait_sqlite_counter "$P.c" 3
for f in ingest flusher; do
    grep -q "kafka: 1 setting applied from $WORK/plain.properties" "$WORK/$f.log" ||
        fail "$f.log does not say the properties were applied"
done
check_eq "both clients applied the file" 2 \
    "$(cat "$WORK/ingest.log" "$WORK/flusher.log" | grep -c "setting applied from")"
stop_flusher
stop_ingest

log "acks=0 is not a security setting: refused at start, naming the line and key"
props acks $'security.protocol=PLAINTEXT\n# durability is not the file\'s to change\nacks=0\n'
want="kafka.client_properties: $WORK/acks.properties:3: acks: not allowed here"
expect_refusal "tally-ingest with acks=0" "$want" "$TALLY_BUILD/tally-ingest" -c "$CONF"
expect_refusal "tally-flusher with acks=0" "$want" "$TALLY_BUILD/tally-flusher" -c "$CONF"
expect_refusal "tally-flusher --rebuild-redis with acks=0" "$want" \
    "$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis
props idem $'enable.idempotence=false\n'
expect_refusal "tally-ingest with enable.idempotence=false" \
    "idem.properties:1: enable.idempotence: not allowed here" "$TALLY_BUILD/tally-ingest" -c "$CONF"

log "security.protocol=bogus: librdkafka's own message, non-zero exit"
props bogus $'sasl.username=tally\nsecurity.protocol=bogus\n'
want="bogus.properties:2: security.protocol: Invalid value \"bogus\" for configuration property \"security.protocol\""
expect_refusal "tally-ingest with security.protocol=bogus" "$want" "$TALLY_BUILD/tally-ingest" -c "$CONF"
expect_refusal "tally-flusher with security.protocol=bogus" "$want" "$TALLY_BUILD/tally-flusher" -c "$CONF"

log "a properties file readable by group or others is refused"
props open $'security.protocol=PLAINTEXT\n'
chmod 0644 "$WORK/open.properties"
expect_refusal "tally-ingest with a 0644 properties file" \
    "kafka.client_properties: $WORK/open.properties holds secrets but its mode 644 lets group or others read it" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
chmod 0604 "$WORK/open.properties"
expect_refusal "tally-flusher with a 0604 properties file" "its mode 604 lets group or others read it" \
    "$TALLY_BUILD/tally-flusher" -c "$CONF"
KAFKA_SETTINGS="client_properties = \"$WORK/absent.properties\";" write_config
expect_refusal "tally-ingest with a missing properties file" \
    "absent.properties: No such file or directory" "$TALLY_BUILD/tally-ingest" -c "$CONF"

finish
