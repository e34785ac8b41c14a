#!/usr/bin/env bash
# Idempotency keys without surprises (design rule 3, dedup.h), against a real
# tally-ingest, flusher, Redis and Kafka: a key reused for another body is
# refused 409 and counted nowhere; the same body again (also gzip-encoded:
# the digest is of the decoded body) is a duplicate; a retry past the dedup
# window counts again, in the live view and in SQLite alike; the topic's
# records carry the broker's append time, the window's one clock.
source "$(dirname "$0")/lib.sh"
P=$METRIC_PREFIX
write_config "dedup = { window_seconds = 60; };"
start_ingest
start_flusher

post_as() { # BODY KEY [gzip]: sets HTTP_CODE, HTTP_BODY
    local args=(-sS -o "$WORK/resp" -w '%{http_code}' -H "Idempotency-Key: $2" "$BASE_URL/v1/events")
    if [[ ${3:-} == gzip ]]; then
        HTTP_CODE=$(printf '%s' "$1" | gzip | curl "${args[@]}" -H 'Content-Encoding: gzip' --data-binary @-)
    else
        HTTP_CODE=$(printf '%s' "$1" | curl "${args[@]}" --data-binary @-)
    fi
    HTTP_BODY=$(cat "$WORK/resp")
}
K=key-$RUN_ID
A="$P.a:1|c
$P.b:5|c"
post_as "$A" "$K"
check_eq "first body" "200 false" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
post_as "$P.a:1000|c" "$K"
check_eq "same key, another body" "409 not_stored" "$HTTP_CODE $(jq -r .outcome <<<"$HTTP_BODY")"
grep -q "used for a different body" <<<"$HTTP_BODY" || fail "409 does not say why: $HTTP_BODY"
# The two bodies of one key may touch different shards of the live view
# (redis.shards = 4 here): the key's claim in its home shard still refuses the second.
shard_of() { "$TALLY_BUILD/tally" key -c "$CONF" --shard "$1"; }
X=$P.xs
for i in $(seq 1 64); do [[ $(shard_of "$P.ys$i") != $(shard_of "$X") ]] && { Y=$P.ys$i; break; }; done
[[ -n ${Y:-} ]] || fail "no name in another shard than $X"
post_as "$X:1|c" "x$K"
check_eq "a body in shard $(shard_of "$X")" 200 "$HTTP_CODE"
post_as "$Y:1|c" "x$K"
check_eq "same key, a body only in shard $(shard_of "$Y")" "409 not_stored" "$HTTP_CODE $(jq -r .outcome <<<"$HTTP_BODY")"
check_eq "Redis holds the first body only" "1 0" "$(redis_counter "$X") $(redis_counter "$Y")"
post_as "$A" "$K" gzip
check_eq "same key, same body, gzip-encoded" "200 true" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
check_eq "Redis counted the first body once" "1 5" "$(redis_counter "$P.a") $(redis_counter "$P.b")"
wait_sqlite_counter "$P.b" 5
check_eq "SQLite counted the first body once" 1 "$(sqlite_counter "$P.a")"

# The key's time is the record's Kafka timestamp, appended by the broker.
# (with several shards the batch id's claim in its home shard holds it)
claim=$(redis-cli -p "$TALLY_REDIS_PORT" --scan --pattern "tally:{*}:claim:$K")
held=$(redis-cli -p "$TALLY_REDIS_PORT" --raw GET "$claim")
first_ms=${held#* }
[[ $held =~ ^[0-9a-f]{16}\ [0-9]{13}$ ]] || fail "claim $claim holds '$held', not 'DIGEST TIME'"
check_eq "SQLite keeps the same time and digest" "$held" \
    "$(sqlite3 "$WORK/tally.db" "SELECT digest || ' ' || log_ms FROM batches WHERE batch_id = '$K'")"
if grep -q "CreateTime" "$WORK/ingest.log"; then fail "topic created with CreateTime timestamps"; fi

# Past the window (60 s after the first record's time) the same batch counts
# again, in both places.
while (( $(date +%s%3N) <= first_ms + 61000 )); do sleep 1; done
post_as "$A" "$K"
check_eq "past the window: counted again" "200 false" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
check_eq "Redis counted it again" "2 10" "$(redis_counter "$P.a") $(redis_counter "$P.b")"
wait_sqlite_counter "$P.b" 10
check_eq "SQLite agrees" 2 "$(sqlite_counter "$P.a")"
new_ms=$(sqlite3 "$WORK/tally.db" "SELECT log_ms FROM batches WHERE batch_id = '$K'")
((new_ms > first_ms + 60000)) || fail "batches row keeps the old time: $new_ms"
post_as "$A" "$K"
check_eq "and within the new window a duplicate again" "200 true" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
stop_ingest
stop_flusher
finish
