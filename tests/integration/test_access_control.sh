#!/usr/bin/env bash
# Access control and the limits decided in Redis before a batch enters
# (README "Limits and security"), against a real tally-ingest, Redis, Kafka
# and flusher: bearer tokens (401 without or with an unknown token, 403
# without the route's scope, /healthz open), idempotency keys scoped per
# client, per-token rate limits (429 + Retry-After, 413 for a batch no second
# can hold) and the live-series limit (422); every refused batch is stored
# nowhere, every accepted one exactly once. Also: a tokens file others can
# read and a public listen address without tokens make ingest refuse to start.
source "$(dirname "$0")/lib.sh"
P=$METRIC_PREFIX

W1=w1-token-$RUN_ID-aaaaaaaaaaaa
W2=w2-token-$RUN_ID-bbbbbbbbbbbb
RD=rd-token-$RUN_ID-cccccccccccc
SLOW=slow-token-$RUN_ID-dddddddddd
cat >"$WORK/tokens" <<TOKENS
# name  scopes      token
writer1 write       $W1
writer2 write,read  $W2
reader  read        $RD
slow    write       $SLOW   events_per_second=100 batches_per_second=2
TOKENS
chmod 600 "$WORK/tokens"

conf_with() { # EXTRA_INGEST_KEYS
    cat >"$CONF" <<CONF
ingest = { listen_address = "127.0.0.1"; listen_port = $HTTP_PORT; $1 };
kafka = { brokers = "127.0.0.1:$TALLY_KAFKA_PORT"; topic = "$TOPIC"; partitions = 1; };
redis = { host = "127.0.0.1"; port = $TALLY_REDIS_PORT; };
sqlite = { path = "$WORK/tally.db"; };
flusher = { max_interval_ms = 200; metrics_port = $FLUSHER_METRICS_PORT; };
statsd = { udp_enabled = false; tcp_enabled = false; };
CONF
}

# apost TOKEN BODY [KEY]: POST with a bearer token (TOKEN "-": none); sets
# HTTP_CODE, HTTP_BODY and $WORK/hdr.
apost() {
    local args=(-sS -o "$WORK/resp" -D "$WORK/hdr" -w '%{http_code}' --data-binary @- "$BASE_URL/v1/events")
    [[ $1 == - ]] || args+=(-H "Authorization: Bearer $1")
    [[ -z ${3:-} ]] || args+=(-H "Idempotency-Key: $3")
    HTTP_CODE=$(printf '%s' "$2" | curl "${args[@]}") || HTTP_CODE=000
    HTTP_BODY=$(cat "$WORK/resp")
}
header() { grep -i "^$1:" "$WORK/hdr" | cut -d' ' -f2- | tr -d '\r'; }
aget() { # TOKEN PATH: prints "CODE BODY"
    local code
    code=$(curl -sS -o "$WORK/resp" -w '%{http_code}' -H "Authorization: Bearer $1" "$BASE_URL$2")
    printf '%s %s' "$code" "$(cat "$WORK/resp")"
}

# 1. Refusals at start.
chmod 644 "$WORK/tokens"
conf_with "tokens_file = \"$WORK/tokens\";"
rc=0
"$TALLY_BUILD/tally-ingest" -c "$CONF" >"$WORK/refused.log" 2>&1 || rc=$?
check_eq "tokens file readable by others: ingest refuses to start" 1 "$((rc != 0))"
grep -q "chmod 600" "$WORK/refused.log" || fail "no chmod hint: $(cat "$WORK/refused.log")"
chmod 600 "$WORK/tokens"
sed -i "s/listen_address = \"127.0.0.1\"; listen_port = $HTTP_PORT; tokens_file = \"[^\"]*\";/listen_address = \"0.0.0.0\"; listen_port = $HTTP_PORT;/" "$CONF"
rc=0
"$TALLY_BUILD/tally-ingest" -c "$CONF" >"$WORK/refused.log" 2>&1 || rc=$?
check_eq "0.0.0.0 without tokens: ingest refuses to start" 1 "$((rc != 0))"
grep -q "refusing to listen on 0.0.0.0 without authentication" "$WORK/refused.log" ||
    fail "unclear refusal: $(cat "$WORK/refused.log")"

# The live-series HyperLogLog is shared by every test of this Redis; tests
# run one at a time, so this one may start it empty.
redis-cli -p "$TALLY_REDIS_PORT" DEL "tally:{admission}:live:series" >/dev/null
conf_with "tokens_file = \"$WORK/tokens\"; max_live_series = 10;"
start_ingest
start_flusher

# 2. Tokens and scopes.
apost - "$P.a:1|c"
check_eq "no token" "401 authentication required: send Authorization: Bearer TOKEN" \
    "$HTTP_CODE $(jq -r .error <<<"$HTTP_BODY")"
check_eq "401 names the scheme" 'Bearer realm="tally"' "$(header WWW-Authenticate)"
apost "${W1}x" "$P.a:1|c"
check_eq "unknown token" "401 unknown bearer token" "$HTTP_CODE $(jq -r .error <<<"$HTTP_BODY")"
apost "$RD" "$P.a:1|c"
check_eq "read-only token posting" "403 client reader may not use /v1/events: its token lacks the write scope" \
    "$HTTP_CODE $(jq -r .error <<<"$HTTP_BODY")"
check_eq "write-only token reading" 403 "$(aget "$W1" "/v1/counters/$P.a" | cut -d' ' -f1)"
check_eq "/healthz needs no token" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/healthz")"

# 3. Keys are scoped per client: the same key from two clients is two batches.
apost "$W1" "$P.a:1|c" shared-$RUN_ID
check_eq "writer1 with key shared-$RUN_ID" "200 shared-$RUN_ID false" \
    "$HTTP_CODE $(jq -r '.batch_id + " " + (.duplicate|tostring)' <<<"$HTTP_BODY")"
apost "$W2" "$P.a:10|c" shared-$RUN_ID
check_eq "writer2 with the same key is its own batch" "200 false" \
    "$HTTP_CODE $(jq -r '.duplicate' <<<"$HTTP_BODY")"
apost "$W1" "$P.a:1|c" shared-$RUN_ID
check_eq "writer1 retrying its key" "200 true" "$HTTP_CODE $(jq -r '.duplicate' <<<"$HTTP_BODY")"
check_eq "reader sees both batches once" "200 11" \
    "$(aget "$RD" "/v1/counters/$P.a" | cut -d' ' -f1) $(aget "$RD" "/v1/counters/$P.a" | cut -d' ' -f2- | jq -r .value)"

# The longest keys (128 characters) stay whole once scoped: two that differ
# only in their last character are two batches.
long=$(printf 'L%.0s' $(seq 1 119))$RUN_ID
apost "$W1" "$P.long:1|c" "${long}a"
check_eq "a 128-character key" "200 ${long}a" "$HTTP_CODE $(jq -r .batch_id <<<"$HTTP_BODY")"
apost "$W1" "$P.long:1|c" "${long}b"
check_eq "another 128-character key, same prefix" "200 false" "$HTTP_CODE $(jq -r .duplicate <<<"$HTTP_BODY")"
apost "$W1" "$P.long:1|c" "${long}bb"
check_eq "a 129-character key" 400 "$HTTP_CODE"

# 4. Rate limits: 100 events/s, 2 batches/s (a burst of one second's worth).
apost "$SLOW" "$(counter_lines "$P.r" 101 1)"
check_eq "a batch no second can hold" "413" "$HTTP_CODE"
grep -q "events_per_second = 100" <<<"$HTTP_BODY" || fail "413 does not name the limit: $HTTP_BODY"
# Six batches at once (one connection each, in parallel): the budget holds two.
pids=()
for i in 1 2 3 4 5 6; do
    curl -sS -o "$WORK/rate.$i" -D "$WORK/rate.$i.hdr" -w '%{http_code}\n' -H "Authorization: Bearer $SLOW" \
        --data-binary "$P.r:1|c" "$BASE_URL/v1/events" >"$WORK/rate.$i.code" &
    pids+=($!)
done
wait "${pids[@]}"
ok=0 limited=0
for i in 1 2 3 4 5 6; do
    case $(cat "$WORK/rate.$i.code") in
        200) ok=$((ok + 1)) ;;
        429) limited=$((limited + 1))
             retry=$(grep -i '^Retry-After:' "$WORK/rate.$i.hdr" | tr -d '\r' | cut -d' ' -f2)
             [[ $retry =~ ^[0-9]+$ && $retry -ge 1 ]] || fail "429 without Retry-After: $(cat "$WORK/rate.$i.hdr")"
             grep -q "batches_per_second = 2" "$WORK/rate.$i" || fail "429 does not name the limit: $(cat "$WORK/rate.$i")" ;;
        *) fail "rate-limited post answered $(cat "$WORK/rate.$i.code"): $(cat "$WORK/rate.$i")" ;;
    esac
done
check_eq "six batches at once: answered 200 or 429" 6 "$((ok + limited))"
((limited >= 3)) || fail "only $limited of 6 simultaneous batches were limited (2 batches/s)"
log "ok: $ok accepted, $limited answered 429"
check_eq "only accepted batches reach Redis" "$ok" "$(redis_counter "$P.r")"
# After Retry-After the budget is back.
sleep 1.1
apost "$SLOW" "$P.r:1|c"
check_eq "after the wait" 200 "$HTTP_CODE"
ok=$((ok + 1))

# 5. The live-series limit (10; the HyperLogLog starts empty): a batch is
# admitted while the count is below the limit, then a new series is refused
# and known ones still pass. ($P.a, $P.long and $P.r are 3 series so far.)
apost "$W1" "$(for i in $(seq 1 12); do echo "$P.s$i:1|c"; done)"
check_eq "below the limit: 12 new series admitted" 200 "$HTTP_CODE"
apost "$W1" "$P.s1:1|c
$P.brand_new:1|c"
check_eq "a new series past the limit" 422 "$HTTP_CODE"
grep -q "ingest.max_live_series (10)" <<<"$HTTP_BODY" || fail "422 does not name the limit: $HTTP_BODY"
check_eq "refused batch stored nowhere (Redis)" 0 "$(redis_counter "$P.brand_new")"
apost "$W1" "$P.s1:1|c
$P.a:100|c"
check_eq "known series still pass" 200 "$HTTP_CODE"
# A new ingest (nothing known locally) checks each series exactly.
stop_ingest
start_ingest
apost "$W2" "$P.s2:1|c"
check_eq "after a restart a known series passes" 200 "$HTTP_CODE"
apost "$W2" "$P.brand_new:1|c"
check_eq "after a restart a new series is still refused" 422 "$HTTP_CODE"

# 6. SQLite holds exactly the accepted batches.
wait_sqlite_counter "$P.a" 111
wait_sqlite_counter "$P.r" "$ok"
wait_sqlite_counter "$P.s1" 2
wait_sqlite_counter "$P.s2" 2
check_eq "refused batch stored nowhere (SQLite)" 0 "$(sqlite_counter "$P.brand_new")"
scoped=$(sqlite3 "$WORK/tally.db" "SELECT batch_id FROM batches WHERE batch_id LIKE '%/shared-$RUN_ID' ORDER BY 1" | tr '\n' ' ')
check_eq "SQLite keeps the keys per client" "writer1/shared-$RUN_ID writer2/shared-$RUN_ID " "$scoped"
stop_ingest
stop_flusher
finish
