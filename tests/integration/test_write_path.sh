#!/usr/bin/env bash
# The acknowledged write path end to end: a real HTTP client posts batches to
# tally-ingest; exact values are checked in Redis, through the HTTP API, and in
# SQLite after tally-flusher commits. Also: atomic rejection of a bad batch
# (line numbers, nothing applied), 413, idempotency keys, client timestamps,
# clean SIGTERM of both processes.
source "$(dirname "$0")/lib.sh"

write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
# Every batch answered 200 is one Kafka record (a duplicate too: the dedup is
# downstream), so at the end SQLite's stored offset must be exactly this.
records=0
batch="$P.req:1|c
$P.req:1|c
$P.req:1|c
$P.req:2|c|#env:prod
$P.req:10|c|@0.5
$P.temp:20|g
$P.temp:+5|g
$P.temp:-3|g
$P.lat:10|ms
$P.lat:30|ms
$P.lat:20|h|@0.5"
post "$batch"
check_eq "status of a valid batch" 200 "$HTTP_CODE"
records=$((records + 1))
check_eq "accepted lines" 11 "$(jq -r .accepted <<<"$HTTP_BODY")"
check_eq "duplicate flag" false "$(jq -r .duplicate <<<"$HTTP_BODY")"

R="redis-cli -p $TALLY_REDIS_PORT --raw"
check_eq "redis counter total" 25 "$(redis_counter "$P.req")"
check_eq "redis counter, untagged series" 23 "$($R HGET "$(rkey "$P.req" counter)" "")"
check_eq "redis counter, env:prod series" 2 "$($R HGET "$(rkey "$P.req" counter)" env:prod)"
check_eq "redis gauge after 20, +5, -3" 22 "$($R HGET "$(rkey "$P.temp" gauge)" "")"
check_eq "redis distribution count (1 + 1 + 1/0.5)" 4 "$($R HGET "$(rkey "$P.lat" dist:count)" "")"
check_eq "redis distribution sum" 80 "$($R HGET "$(rkey "$P.lat" dist:sum)" "")"
check_eq "redis distribution min" 10 "$($R ZSCORE "$(rkey "$P.lat" dist:min)" "")"
check_eq "redis distribution max" 30 "$($R ZSCORE "$(rkey "$P.lat" dist:max)" "")"
check_eq "GET /v1/counters (redis)" 25 "$(api_counter "$P.req")"

# Whole sums stay integers for HINCRBY; fractions go to the :frac companion.
post "$P.frac:2|c"
check_eq "status of a whole counter" 200 "$HTTP_CODE"
post "$P.frac:0.25|c
$P.frac:0.25|c"
check_eq "status of fractions" 200 "$HTTP_CODE"
records=$((records + 2))
check_eq "whole part of a counter" 2 "$($R HGET "$(rkey "$P.frac" counter)" "")"
check_eq "fractional part of a counter" 0.5 "$($R HGET "$(rkey "$P.frac" counter:frac)" "")"
check_eq "GET /v1/counters sums both parts" 2.5 "$(api_counter "$P.frac")"

wait_sqlite_counter "$P.req" 25
check_eq "GET /v1/counters?source=sqlite" 25 "$(api_counter "$P.req" sqlite)"
check_eq "the SQLite file and its WAL are private" "600 600" \
    "$(stat -c %a "$WORK/tally.db") $(stat -c %a "$WORK/tally.db-wal")"
check_eq "sqlite counter series" "|23 env:prod|2" \
    "$(sqlite3 "$WORK/tally.db" "SELECT tags || '|' || printf('%g', SUM(value)) FROM metrics WHERE name='$P.req' GROUP BY tags ORDER BY tags" | tr '\n' ' ' | sed 's/ $//')"
check_eq "sqlite current gauge" 22.0 "$(sqlite3 "$WORK/tally.db" "SELECT value FROM gauges WHERE name='$P.temp'")"
check_eq "sqlite distribution lines|weight|sum|min|max" "3|4.0|80.0|10.0|30.0" \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines), SUM(weight), SUM(value), MIN(min), MAX(max) FROM metrics WHERE name='$P.lat'")"

# An invalid batch is rejected whole, naming each bad line.
post "$P.req:1|c
$P.req:x|c
$P.req:1|c
nocolon
$P.req:1|q"
check_eq "status of an invalid batch" 400 "$HTTP_CODE"
check_eq "bad line numbers" "2 4 5" "$(jq -r '[.errors[].line] | map(tostring) | join(" ")' <<<"$HTTP_BODY")"
check_eq "errors_total" 3 "$(jq -r .errors_total <<<"$HTTP_BODY")"
jq -e '.errors[0].reason | test("not a number")' <<<"$HTTP_BODY" >/dev/null || fail "reason for line 2: $HTTP_BODY"
check_eq "reason codes of the bad lines" "bad_value bad_name unknown_type" \
    "$(jq -r '[.errors[].code] | join(" ")' <<<"$HTTP_BODY")"
check_eq "redis unchanged after the rejected batch" 25 "$(redis_counter "$P.req")"

# The DogStatsD wire format: packed values, a container id, and an event and
# a service check (counted, not stored); a body of only the latter answers
# 200 with nothing accepted and reaches neither Kafka nor Redis.
post "$P.packed:1:2:3|c|c:ci-1234:abcd|#env:prod,,|card:low
_e{5,4}:hello|text|#env:prod
_sc|$P.check|0|m:fine"
check_eq "packed values: status, accepted, ignored" "200 3 2" \
    "$HTTP_CODE $(jq -r .accepted <<<"$HTTP_BODY") $(jq -r .ignored <<<"$HTTP_BODY")"
records=$((records + 1))
check_eq "packed values in redis" 6 "$(redis_counter "$P.packed")"
post "_e{5,4}:hello|text
_sc|$P.check|2"
check_eq "only an event and a service check" "200 0 2 1 1 null" \
    "$HTTP_CODE $(jq -r '"\(.accepted) \(.ignored) \(.events_ignored) \(.service_checks_ignored) \(.batch_id)"' <<<"$HTTP_BODY")"

# UTF-8 names and tags, and tag values with '/', '?', ':' and spaces, end to end:
# Redis, the live read (the name percent-encoded in the URL), SQLite.
post "$P.caf$(printf '\xc3\xa9'):2|c|#city:S$(printf '\xc3\xa3')o Paulo,url:http://h:80/p?q=1"
check_eq "UTF-8 batch" 200 "$HTTP_CODE"
records=$((records + 1))
check_eq "UTF-8 name, live" "2 city:S$(printf '\xc3\xa3')o Paulo,url:http://h:80/p?q=1" \
    "$(curl -fsS "$BASE_URL/v1/counters/$P.caf%C3%A9" | jq -r '"\(.value) \(.series[0].tags)"')"
wait_sqlite_counter "$P.caf$(printf '\xc3\xa9')" 2
check_eq "UTF-8 through the Prometheus API: one '_' per character, label values verbatim" \
    "S$(printf '\xc3\xa3')o Paulo http://h:80/p?q=1" \
    "$(curl -fsS "$BASE_URL/api/v1/query?query=${P}_caf_&time=$(( $(date +%s) + 120 ))" | jq -r '.data.result[0].metric | "\(.city) \(.url)"')"
post "$P.quote:1|c|#q:a\"b\\c{d}"
records=$((records + 1))
check_eq "a tag holding '\"' '\\' '{': escaped in JSON, live" 'q:a"b\c{d}' \
    "$(curl -fsS "$BASE_URL/v1/counters/$P.quote" | jq -r '.series[0].tags')"
wait_sqlite_counter "$P.quote" 1
check_eq "... and as a label value" 'a"b\c{d}' \
    "$(curl -fsS "$BASE_URL/api/v1/query?query=${P}_quote&time=$(( $(date +%s) + 120 ))" | jq -r '.data.result[0].metric.q')"
check_eq "a malformed UTF-8 name is refused with its code" "400 bad_utf8" \
    "$(post "$P.caf$(printf '\xc3'):2|c"; echo "$HTTP_CODE $(jq -r '.errors[0].code' <<<"$HTTP_BODY")")"

# Idempotency: the same key twice is acknowledged twice, applied once.
key=idem-$RUN_ID
post "$P.idem:7|c" "$key"
check_eq "first post with a key" "200 false" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
post "$P.idem:7|c" "$key"
check_eq "retry with the same key" "200 true" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
records=$((records + 2))
check_eq "redis applied the keyed batch once" 7 "$(redis_counter "$P.idem")"
# The same key posted 8 times at once, queued behind a slow Redis call so
# they are sent together in one group: counted once.
awk -v p="$P" 'BEGIN { for (i = 0; i < 9000; i++) print p ".w" i ":1|c" }' >"$WORK/wide"
curl -sS -o /dev/null -w '%{http_code}' --data-binary @"$WORK/wide" "$BASE_URL/v1/events" >"$WORK/wide-code" &
wide=$!
sleep 0.05
pids=()
for i in 1 2 3 4 5 6 7 8; do
    (code=$(curl -sS -o "$WORK/par-body-$i" -w '%{http_code}' -H "Idempotency-Key: par-$RUN_ID" \
        --data-binary "$P.par:3|c" "$BASE_URL/v1/events") || code=000
     echo "$code $(jq -r .live "$WORK/par-body-$i")" >"$WORK/par-$i") &
    pids+=($!)
done
wait "${pids[@]}" "$wide"
check_eq "8 concurrent posts of one key: answers" "8 1" \
    "$(cat "$WORK"/par-* | grep -c '^200 ') $(cat "$WORK"/par-* | grep -c ' applied$')"
check_eq "8 concurrent posts of one key: redis counted it once" 3 "$(redis_counter "$P.par")"
check_eq "the wide batch" 200 "$(cat "$WORK/wide-code")"
records=$((records + 1 + 8))
post "$P.idem:1|c" "bad key with spaces"
check_eq "invalid Idempotency-Key" 400 "$HTTP_CODE"

# A client timestamp decides the bucket (rule 4).
post "$P.ts:1|c|T1700000005"
check_eq "client-stamped batch" 200 "$HTTP_CODE"
records=$((records + 1))

wait_sqlite_counter "$P.idem" 7
wait_sqlite_counter "$P.par" 3
wait_sqlite_counter "$P.ts" 1
# (the client-stamped batch is the last record: once it is in SQLite, so is
# the offset past it, committed in the same transaction)
check_eq "sqlite stored the consumed offset" "$records" \
    "$(sqlite3 "$WORK/tally.db" "SELECT next_offset FROM kafka_offsets WHERE topic='$TOPIC'")"
check_eq "bucket of a client timestamp" 1700000000 \
    "$(sqlite3 "$WORK/tally.db" "SELECT bucket FROM metrics WHERE name='$P.ts'")"
check_eq "sqlite counter unchanged by the rejected batch" 25 "$(sqlite_counter "$P.req")"
check_eq "batches recorded for dedup" 1 \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id='$key'")"

# Limits and routes.
code=$(head -c 9000000 /dev/zero | tr '\0' 'a' | curl -s -o /dev/null -w '%{http_code}' --data-binary @- "$BASE_URL/v1/events")
check_eq "body over ingest.max_body_bytes" 413 "$code"
check_eq "empty body" 400 "$(curl -s -o /dev/null -w '%{http_code}' --data-binary '' "$BASE_URL/v1/events")"
check_eq "GET on /v1/events" 405 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/v1/events")"
check_eq "unknown route" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/nope")"
check_eq "bad counter name" 400 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/v1/counters/a%7Bb")"

stop_flusher
stop_ingest
finish
