#!/usr/bin/env bash
# The read path against real Redis (state and cache), Kafka and SQLite, with
# real clients (promtool, curl): posted data with client stamps comes back
# with its exact values through /api/v1/query, query_range (GET and POST
# form), series, labels, label values, metadata and /v1/series/NAME; then the
# cache: hit after miss, 500 concurrent requests for one cold key cost one
# SQLite query, the next read after a flusher commit sees the new bucket,
# every cache key has a TTL, an unknown name costs one SQLite query per
# negative TTL, and with the cache Redis stopped reads give the same answers.
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || fail "promtool not found: run deploy/install-deps"

CACHE_SETTINGS="ttl_negative_seconds = 2; ttl_counter_seconds = 5; ttl_gauge_seconds = 60; ttl_jitter_percent = 0;"
# The data is stamped an hour ago: retention would roll it up in the middle of
# the cache checks, and each step replaces the cache generation (a miss the
# checks below do not expect). test_retention covers reads across roll-ups.
write_config "retention = { enabled = false; };"
start_ingest
start_flusher

P=$METRIC_PREFIX
N=${P}_req # the Prometheus names (a '.' becomes '_')
T0=$(( ($(date +%s) - 3600) / 60 * 60 ))  # buckets T0, T0+10, T0+20 (10 s buckets)
post "$P.req:1|c|#env:prod|T$((T0 + 1))
$P.req:2|c|#env:prod|T$((T0 + 11))
$P.req:3|c|#env:prod|T$((T0 + 21))
$P.req:7|c|#env:dev|T$((T0 + 11))
$P.temp:20|g|T$((T0 + 1))
$P.temp:25|g|T$((T0 + 12))
$P.lat:10|ms|T$((T0 + 2))
$P.lat:30|ms|T$((T0 + 3))
$P.lat:20|ms|T$((T0 + 4))
$P.lat:40|ms|T$((T0 + 13))"
check_eq "post of the known data" 200 "$HTTP_CODE"
wait_sqlite_counter "$P.req" 13
# 1,000 known latencies 1..1000 in one bucket (T0+40, ends T0+50), and a
# set-free check of the quantiles against the exact ones below.
awk -v p="$P" -v t="$((T0 + 41))" 'BEGIN { for (i = 1; i <= 1000; i++) print p ".big:" i "|ms|T" t }' >"$WORK/big"
post "$(cat "$WORK/big")"
check_eq "post of 1,000 latencies" 200 "$HTTP_CODE"
for ((i = 0; i < 300; i++)); do
    [[ $(sqlite3 "$WORK/tally.db" "SELECT weight FROM metrics WHERE name = '$P.big'" 2>/dev/null) == 1000.0 ]] && break
    sleep 0.1
done

R_CACHE="redis-cli -p $TALLY_CACHE_PORT --raw"
sqlite_queries() { curl -fsS "$BASE_URL/healthz" | jq -r .reads.sqlite_queries; }
value_of() { jq -r "$1" ; }

# 1. promtool, a real client of the API: instant and range queries.
out=$(promtool query instant --time="$((T0 + 30))" "$BASE_URL" "$N") || fail "promtool query instant failed: $out"
check_eq "promtool query instant (cumulative counter at the end of bucket 3)" \
    "$N{env=\"dev\"} => 7 @[$((T0 + 30))]
$N{env=\"prod\"} => 6 @[$((T0 + 30))]" "$out"
out=$(promtool query range --start="$((T0 + 10))" --end="$((T0 + 30))" --step=10s "$BASE_URL" \
    "sum($N)") || fail "promtool query range failed: $out"
check_eq "promtool query range (sum of the series, stamped at bucket ends)" \
    "{} =>
1 @[$((T0 + 10))]
10 @[$((T0 + 20))]
13 @[$((T0 + 30))]" "$out"
out=$(promtool query instant --time="$((T0 + 30))" "$BASE_URL" "1+1")
check_eq "promtool: Grafana's test query" "scalar: 2 @[$((T0 + 30))]" "$out"

# 2. The response shapes, GET and POST form.
j=$(api "/api/v1/query?query=${N}%7Benv%3D%22prod%22%7D&time=$((T0 + 15))")
check_eq "instant vector shape" "success vector $N prod [$((T0 + 15)),\"1\"]" \
    "$(jq -rc '[.status, .data.resultType, .data.result[0].metric.__name__, .data.result[0].metric.env, (.data.result[0].value|tostring)] | join(" ")' <<<"$j")"
j=$(curl -sS --data-urlencode "query=$N{env=\"prod\"}" --data "start=$((T0 + 10))&end=$((T0 + 30))&step=10" \
    "$BASE_URL/api/v1/query_range")
check_eq "query_range by POST form: matrix values as strings" '["1","3","6"]' \
    "$(jq -c '[.data.result[0].values[][1]]' <<<"$j")"
j=$(api "/api/v1/query_range?query=${P}_lat_count&start=$((T0 + 10))&end=$((T0 + 20))&step=10")
check_eq "distribution _count (cumulative)" '["3","4"]' "$(jq -c '[.data.result[0].values[][1]]' <<<"$j")"
j=$(api "/api/v1/query_range?query=${P}_lat_sum&start=$((T0 + 10))&end=$((T0 + 20))&step=10")
check_eq "distribution _sum (cumulative)" '["60","100"]' "$(jq -c '[.data.result[0].values[][1]]' <<<"$j")"
j=$(api "/api/v1/query_range?query=${P}_lat_max&start=$((T0 + 10))&end=$((T0 + 20))&step=10")
check_eq "distribution _max per step window" '["30","40"]' "$(jq -c '[.data.result[0].values[][1]]' <<<"$j")"
j=$(api "/api/v1/query_range?query=${P}_lat_min&start=$((T0 + 20))&end=$((T0 + 20))&step=20")
check_eq "distribution _min over a 20 s step window" '["10"]' "$(jq -c '[.data.result[0].values[][1]]' <<<"$j")"
j=$(api "/api/v1/query?query=${P}_temp&time=$((T0 + 25))")
check_eq "gauge: the last value" '"25"' "$(jq -c '.data.result[0].value[1]' <<<"$j")"
j=$(api "/api/v1/query?query=rate(${N}%5B30s%5D)")
check_eq "rate() is accepted" success "$(jq -r .status <<<"$j")"
j=$(api "/api/v1/query?query=topk(1,$N)")
check_eq "unsupported: bad_data naming it" "400 bad_data" \
    "$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/api/v1/query?query=topk(1,$N)") $(jq -r .errorType <<<"$j")"
j=$(api "/api/v1/series?match%5B%5D=$N")
check_eq "series" "[{\"__name__\":\"$N\",\"env\":\"dev\"},{\"__name__\":\"$N\",\"env\":\"prod\"}]" \
    "$(jq -c .data <<<"$j")"
check_eq "series without match[]" "400 bad_data" \
    "$(curl -sS -o "$WORK/o" -w '%{http_code}' "$BASE_URL/api/v1/series") $(jq -r .errorType "$WORK/o")"
check_eq "labels" '["__name__","env"]' "$(api "/api/v1/labels?match%5B%5D=$N" | jq -c .data)"
check_eq "label values" '["dev","prod"]' "$(api "/api/v1/label/env/values?match%5B%5D=$N" | jq -c .data)"
check_eq "metadata" "summary" "$(api "/api/v1/metadata?metric=${P}_lat" | jq -r ".data.${P}_lat[0].type")"
check_eq "buildinfo" success "$(api /api/v1/status/buildinfo | jq -r .status)"

# 3. The native range read, and the 404 of an unknown name.
j=$(api "/v1/series/$P.req?from=$((T0 + 10))&to=$((T0 + 30))&step=10")
check_eq "native read: per-step sums per series" '{"dev":[[20,7]],"prod":[[10,1],[20,2],[30,3]]}' \
    "$(jq -c --argjson t0 "$T0" '[.series[] | {(.tags|sub("env:";"")): [.points[] | [.t - $t0, .value]]}] | add' <<<"$j")"
check_eq "native read of an unknown name" 404 \
    "$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/v1/series/$P.nosuch")"

# Quantiles: the merged DDSketch of each step window, within its 1 % of the
# exact value (DDSketch rank q * (n - 1) over the sorted values).
j=$(api "/api/v1/query_range?query=${P}_lat%7Bquantile%3D%220.5%22%7D&start=$((T0 + 10))&end=$((T0 + 20))&step=10")
read -r q1 q2 < <(jq -r '[.data.result[0].values[][1]] | join(" ")' <<<"$j")
within "$q1" 20 1 && within "$q2" 40 1 || fail "median per 10 s window: got $q1 $q2, want 20 (of 10, 20, 30) and 40 (of 40) within 1 %"
log "ok: median per 10 s window = $q1 $q2 (exact 20, 40)"
for q in 0.5 0.9 0.99 0.999; do
    got=$(api "/api/v1/query?query=${P}_big%7Bquantile%3D%22$q%22%7D&time=$((T0 + 50))" | jq -r '.data.result[0].value[1]')
    want=$(awk -v q="$q" 'BEGIN { r = q * 999; lo = int(r); print lo + 1 + (r - lo) }') # 1..1000 at rank q*(n-1)
    within "$got" "$want" 1 || fail "quantile $q of 1..1000: got $got, exact $want, beyond 1 %"
    log "ok: quantile $q of 1..1000 = $got (exact $want)"
    CHECKS=$((CHECKS + 1))
done
check_eq "without a quantile matcher: 0.5, 0.9, 0.99" '["0.5","0.9","0.99"]' \
    "$(api "/api/v1/query?query=${P}_big&time=$((T0 + 50))" | jq -c '[.data.result[].metric.quantile]')"

# The live totals route: the shape of each type, 404 for an unknown name,
# the same from SQLite.
check_eq "GET /v1/counters: counter" "counter 13 2" \
    "$(api "/v1/counters/$P.req" | jq -r '"\(.type) \(.value) \(.series|length)"')"
check_eq "GET /v1/counters: gauge (per series, no total)" "gauge 25 null" \
    "$(api "/v1/counters/$P.temp" | jq -r '"\(.type) \(.series[0].value) \(.value)"')"
check_eq "GET /v1/counters: distribution" "distribution 4 100 10 40" \
    "$(api "/v1/counters/$P.lat" | jq -r '"\(.type) \(.count) \(.sum) \(.min) \(.max)"')"
check_eq "GET /v1/counters: distribution from SQLite" "distribution sqlite 4 100 10 40" \
    "$(api "/v1/counters/$P.lat?source=sqlite" | jq -r '"\(.type) \(.source) \(.count) \(.sum) \(.min) \(.max)"')"
check_eq "GET /v1/counters: gauge from SQLite" "gauge 25" \
    "$(api "/v1/counters/$P.temp?source=sqlite" | jq -r '"\(.type) \(.series[0].value)"')"
check_eq "GET /v1/counters of an unknown name (Redis, SQLite)" "404 404" \
    "$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/v1/counters/$P.nosuch") $(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/v1/counters/$P.nosuch?source=sqlite")"

# 4. Cache: a miss, then a hit with the same answer.
q="/api/v1/query_range?query=sum($N)&start=$((T0 + 5))&end=$((T0 + 30))&step=10"
h1=$(curl -sS -D - -o "$WORK/a1" "$BASE_URL$q" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}')
h2=$(curl -sS -D - -o "$WORK/a2" "$BASE_URL$q" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}')
check_eq "first read misses, the second hits" "miss hit" "$h1 $h2"
check_eq "the hit's answer is the miss' answer" "$(cat "$WORK/a1")" "$(cat "$WORK/a2")"

# 5. 500 concurrent requests for one cold key: exactly one SQLite query.
cold="$BASE_URL/api/v1/query_range?query=${N}%7Benv%3D%22prod%22%7D&start=$((T0 + 10))&end=$((T0 + 30))&step=5"
for ((i = 0; i < 500; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$cold"; done >"$WORK/urls"
before=$(sqlite_queries)
curl -sS --no-progress-meter --parallel --parallel-max 500 -K "$WORK/urls" -w '%{http_code}\n' >"$WORK/codes"
check_eq "500 concurrent cold requests answered 200" 500 "$(grep -c '^200$' "$WORK/codes")"
check_eq "SQLite queries for 500 concurrent cold requests" 1 "$(( $(sqlite_queries) - before ))"

# 6. After a flusher commit, the very next read returns the new bucket. The
# commit is over when the flusher logs it (after SQLite's COMMIT and the
# invalidation): this topic's third record is offset 2, so "offsets=0:3".
q6="/api/v1/query_range?query=sum($N)&start=$((T0 + 10))&end=$((T0 + 40))&step=10"
check_eq "a range read before the new bucket (the last value carried by the lookback)" '["1","10","13","13"]' "$(api "$q6" | jq -c '[.data.result[0].values[][1]]')"
check_eq "... and cached" hit \
    "$(curl -sS -D - -o /dev/null "$BASE_URL$q6" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}')"
post "$P.req:5|c|#env:prod|T$((T0 + 31))"
check_eq "post of a new bucket" 200 "$HTTP_CODE"
for ((i = 0; i < 300; i++)); do grep -q 'offsets=0:3 ' "$WORK/flusher.log" && break; sleep 0.1; done
grep -q 'offsets=0:3 ' "$WORK/flusher.log" || fail "the flusher did not commit the new bucket within 30 s"
check_eq "the very next read of the cached range after the commit" '["1","10","13","18"]' \
    "$(api "$q6" | jq -c '[.data.result[0].values[][1]]')"

# 6b. Early refresh: a hot answer (3 hits) read with under 3 s of its 5 s TTL
# left is re-read in the background, so it never expires under a read load.
qe="/api/v1/query_range?query=sum($N)&start=$((T0 + 7))&end=$((T0 + 40))&step=10"
for i in 1 2 3 4; do api "$qe" >/dev/null; done # a miss and three hits: hot
refreshes() { curl -fsS "$BASE_URL/healthz" | jq -r .reads.early_refreshes; }
r0=$(refreshes)
sleep 2.5
api "$qe" >/dev/null # 2.5 s left: a hit that refreshes it
for ((i = 0; i < 50; i++)); do (( $(refreshes) > r0 )) && break; sleep 0.1; done
check_eq "early refreshes after a hit on a hot answer near its expiry" 1 "$(( $(refreshes) - r0 ))"
sleep 3 # past the first TTL
check_eq "the hot answer is still a hit after its first TTL" hit \
    "$(curl -sS -D - -o /dev/null "$BASE_URL$qe" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}')"

# 6c. The in-process copy (cache.local_bytes): a hit in the cache Redis is
# copied into ingest and later hits are served from it, until the flusher's
# version update reaches ingest as a CLIENT TRACKING invalidation: the very
# next read after the commit (this topic's fourth record: "offsets=0:4")
# is new. Gauge answers live 60 s here, so the copy cannot expire first.
reads() { curl -fsS "$BASE_URL/healthz" | jq -r ".reads.$1"; }
qg="/api/v1/query_range?query=${P}_temp&start=$((T0 + 10))&end=$((T0 + 30))&step=10"
check_eq "a gauge range read (a miss, then a hit in the cache Redis)" '["20","25","25"] ["20","25","25"]' \
    "$(api "$qg" | jq -c '[.data.result[0].values[][1]]') $(api "$qg" | jq -c '[.data.result[0].values[][1]]')"
l0=$(reads local_hits)
check_eq "the third read is served by the in-process copy" "hit 1" \
    "$(curl -sS -D - -o /dev/null "$BASE_URL$qg" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}') $(( $(reads local_hits) - l0 ))"
i0=$(reads local_invalidations)
post "$P.temp:30|g|T$((T0 + 21))"
check_eq "post of a new gauge bucket" 200 "$HTTP_CODE"
for ((i = 0; i < 300; i++)); do grep -q 'offsets=0:4 ' "$WORK/flusher.log" && break; sleep 0.1; done
grep -q 'offsets=0:4 ' "$WORK/flusher.log" || fail "the flusher did not commit the new gauge bucket within 30 s"
l1=$(reads local_hits)
check_eq "the very next read after the commit (not from the emptied copy)" '["20","25","30"] 0' \
    "$(api "$qg" | jq -c '[.data.result[0].values[][1]]') $(( $(reads local_hits) - l1 ))"
(( $(reads local_invalidations) > i0 )) || fail "no invalidation reached the in-process copy"
CHECKS=$((CHECKS + 1))
# Grafana's form POST of the same range: served from the copy by its raw
# text once the cache Redis has had a hit; the same body under another
# content type is still refused, never answered from the copy.
form="query=${P}_temp&start=$((T0 + 10))&end=$((T0 + 30))&step=10"
postq() { curl -sS -H "Content-Type: $1" --data "$form" "$BASE_URL/api/v1/query_range"; }
postq application/x-www-form-urlencoded >/dev/null
postq application/x-www-form-urlencoded >/dev/null
l2=$(reads local_hits)
check_eq "a form POST from the copy: the GET's answer" "$(api "$qg" | jq -c .data) 2" \
    "$(postq application/x-www-form-urlencoded | jq -c .data) $(( $(reads local_hits) - l2 ))"
check_eq "the same body as text/plain" "400 bad_data" \
    "$(curl -sS -o "$WORK/plain" -w '%{http_code}' -H 'Content-Type: text/plain' --data "$form" "$BASE_URL/api/v1/query_range") $(jq -r .errorType "$WORK/plain")"

# 7. Every key in the cache Redis has a TTL.
keys=$($R_CACHE DBSIZE)
no_ttl=$($R_CACHE EVAL "local n, cursor = 0, '0'
  repeat
    local r = redis.call('SCAN', cursor, 'COUNT', 1000)
    cursor = r[1]
    for _, k in ipairs(r[2]) do if redis.call('TTL', k) == -1 then n = n + 1 end end
  until cursor == '0'
  return n" 0)
((keys > 0)) || fail "no keys in the cache Redis"
check_eq "cache keys without a TTL (of $keys)" 0 "$no_ttl"

# 8. An unknown name costs one SQLite query per negative TTL (2 s here).
before=$(sqlite_queries)
start=$SECONDS
while ((SECONDS - start < 5)); do api "/api/v1/query?query=${P}_unknown&time=$T0" >/dev/null; sleep 0.05; done
spent=$(( $(sqlite_queries) - before ))
((spent >= 2 && spent <= 4)) || fail "an unknown name queried SQLite $spent times in 5 s (negative TTL 2 s: 2..4 expected)"
log "ok: an unknown name over 5 s cost $spent SQLite queries (negative TTL 2 s)"
CHECKS=$((CHECKS + 1))

# 9. With the cache Redis stopped, the same answers, marked uncached.
want=$(api "$q" | jq -c .data)
"$TALLY_SOURCE/deploy/stack" down cache >/dev/null
j=$(curl -sS -D "$WORK/h" "$BASE_URL$q")
check_eq "answer with the cache Redis stopped" "$want" "$(jq -c .data <<<"$j")"
check_eq "marked uncached" "uncached 1" \
    "$(tr -d '\r' <"$WORK/h" | awk -F': ' 'tolower($1)=="x-tally-cache"{print $2}') $(jq '.warnings | length' <<<"$j")"
"$TALLY_SOURCE/deploy/stack" up cache >/dev/null
# (the breaker closes again once cache.breaker_open_ms has passed)

stop_ingest
stop_flusher
finish
