#!/usr/bin/env bash
# StatsD sets end to end against real Redis, Kafka and SQLite: 1,000
# distinct members (with repeats, rates, tags, members holding ':', '@',
# spaces and UTF-8) over three buckets, posted in several batches. Checked:
# Redis' PFCOUNT within the HyperLogLog's error, the members themselves in
# neither Kafka nor Redis nor SQLite, SQLite's set buckets (no metrics rows, a
# catalog row, per-bucket counts exact or off by one while sparse), the
# Prometheus API (per step window within the error, metadata), the native
# read, /v1/counters from Redis and from SQLite, and `tally-flusher
# --rebuild-redis` after the set's key is lost with a Kafka tail not yet
# flushed: the rebuilt HyperLogLog has exactly the registers it had.
source "$(dirname "$0")/lib.sh"

write_config
start_ingest
start_flusher

P=$METRIC_PREFIX
N=${P}_users # the Prometheus name
KEY="$(rkey "$P.users" set:env:prod)"
R="redis-cli -p $TALLY_REDIS_PORT --raw"
T0=$(( ($(date +%s) - 3600) / 60 * 60 )) # buckets T0, T0+10, T0+20 (10 s buckets)
SECRET=tally-sets-secret                   # in every member: must never leave ingest

# member I: distinct strings of every kind a member may be
member() { printf '%s-%d@example.com:ü x' "$SECRET" "$1"; }
# lines FROM TO STAMP [EXTRA]: members FROM..TO of env:prod at STAMP
lines() {
    local i
    for ((i = $1; i <= $2; i++)); do printf '%s.users:%s|s|#env:prod|T%d%s\n' "$P" "$(member "$i")" "$3" "${4:-}"; done
}
# bucket 0: 1..400, each twice (once sampled); bucket 1: 301..700;
# bucket 2: 601..1000 and 1..50 again. Distinct: 400, 400, 450; 1,000 in all.
{
    lines 1 400 $((T0 + 1))
    lines 1 400 $((T0 + 2)) '|@0.5'
    lines 301 700 $((T0 + 11))
    lines 601 1000 $((T0 + 21))
    lines 1 50 $((T0 + 29))
} >"$WORK/prod"
check_eq "lines to post" 1650 "$(wc -l <"$WORK/prod")"
split -l 400 "$WORK/prod" "$WORK/part."
for f in "$WORK"/part.*; do
    post "$(cat "$f")"
    [[ $HTTP_CODE == 200 ]] || fail "post $f: $HTTP_CODE $HTTP_BODY"
done
post "$P.users:alice|s|T$((T0 + 1))
$P.users:bob|s|T$((T0 + 1))
$P.users:alice|s|T$((T0 + 12))
$P.users:x|s|#env:prod|@0.1|T$((T0 + 21))"
check_eq "post of the untagged series (and one more prod member)" 200 "$HTTP_CODE"
PROD=1001 # distinct members of env:prod

# 3 standard errors of a dense HyperLogLog (0.81 % each)
ERR=2.43

# 1. The live view: one HyperLogLog per series, the name's index.
check_within "Redis PFCOUNT of env:prod" "$($R PFCOUNT "$KEY")" $PROD $ERR
check_eq "Redis PFCOUNT of the untagged series" 2 "$($R PFCOUNT "$(rkey "$P.users" set:)")"
check_eq "the name's index of set series" "$(printf '\nenv:prod')" "$($R HKEYS "$(rkey "$P.users" set)" | sort)"
check_eq "the set key is a HyperLogLog" string "$($R TYPE "$KEY")"
check_eq "no member in Redis" 0 "$($R --no-raw DUMP "$KEY" | grep -c "$SECRET" || true)"

# 2. SQLite after the flusher: the catalog counts the lines; no metrics rows.
for ((i = 0; i < 300; i++)); do
    [[ $(sqlite3 "$WORK/tally.db" "SELECT total_weight FROM series WHERE name = '$P.users' AND tags = 'env:prod'" 2>/dev/null) == 1651.0 ]] && break
    sleep 0.1
done
check_eq "catalog: lines of env:prod, first and last bucket, type" "1651.0 $T0 $((T0 + 20)) set" \
    "$(sqlite3 "$WORK/tally.db" "SELECT total_weight, first_bucket, last_bucket, type FROM series WHERE name = '$P.users' AND tags = 'env:prod'" | tr '|' ' ')"
check_eq "no metrics rows for a set" 0 \
    "$(sqlite3 "$WORK/tally.db" "SELECT count(*) FROM metrics WHERE name = '$P.users'")"
check_eq "one set sketch per series and bucket" "3 2" \
    "$(sqlite3 "$WORK/tally.db" "SELECT count(*) FILTER (WHERE tags = 'env:prod'), count(*) FILTER (WHERE tags = '') FROM sketches WHERE name = '$P.users' AND type = 'set'" | tr '|' ' ')"
check_eq "no member in SQLite" 0 "$(sqlite3 "$WORK/tally.db" .dump | grep -c "$SECRET" || true)"
seg=$(ls "$TALLY_VAR"/kafka/data/"$TOPIC"-0/*.log 2>/dev/null | head -n 1)
[[ -n $seg ]] || fail "no Kafka log segment of $TOPIC under $TALLY_VAR/kafka/data"
check_eq "the records are in Kafka's log (names)" 1 "$(grep -c -a -m 1 "$P.users" "$seg" || true)"
check_eq "no member in Kafka" 0 "$(grep -c -a "$SECRET" "$seg" || true)"


# 3. The native read: per 10 s step, the bucket's distinct members (exact or
# off by one while sparse); a 30 s step holds all three buckets.
j=$(api "/v1/series/$P.users?from=$((T0 + 10))&to=$((T0 + 30))&step=10")
read -r b0 b1 b2 < <(jq -r '.series[] | select(.tags == "env:prod") | [.points[].value] | join(" ")' <<<"$j")
check_within "native read, bucket 0" "$b0" 400 0.5
check_within "native read, bucket 1" "$b1" 400 0.5
check_within "native read, bucket 2" "$b2" 451 0.5
check_eq "native read: the untagged series per step" "[2,1]" \
    "$(jq -c '[.series[] | select(.tags == "") | .points[].value]' <<<"$j")"
j=$(api "/v1/series/$P.users?from=$((T0 + 30))&to=$((T0 + 30))&step=30")
check_within "native read, one 30 s step" \
    "$(jq -r '.series[] | select(.tags == "env:prod") | .points[0].value' <<<"$j")" $PROD $ERR

# 4. The Prometheus API: NAME, the distinct members over each step's window.
j=$(api "/api/v1/query_range?query=${N}%7Benv%3D%22prod%22%7D&start=$((T0 + 10))&end=$((T0 + 30))&step=10")
read -r q0 q1 q2 < <(jq -r '[.data.result[0].values[][1]] | join(" ")' <<<"$j")
check_within "query_range step 10, window 1" "$q0" 400 $ERR
check_within "query_range step 10, window 2" "$q1" 400 $ERR
check_within "query_range step 10, window 3" "$q2" 451 $ERR
check_eq "query_range: the series' labels" "$N prod" \
    "$(jq -r '.data.result[0].metric | "\(.__name__) \(.env)"' <<<"$j")"
j=$(api "/api/v1/query_range?query=${N}%7Benv%3D%22prod%22%7D&start=$((T0 + 30))&end=$((T0 + 30))&step=20")
check_within "query_range step 20, the window of buckets 1 and 2" \
    "$(jq -r '.data.result[0].values[-1][1]' <<<"$j")" 751 $ERR
j=$(api "/api/v1/query?query=${N}%7Benv%3D%22prod%22%7D&time=$((T0 + 30))")
check_within "instant query: the lookback window holds every bucket" \
    "$(jq -r '.data.result[0].value[1]' <<<"$j")" $PROD $ERR
check_eq "metadata: a set is a gauge" gauge "$(api "/api/v1/metadata?metric=$N" | jq -r ".data.$N[0].type")"
check_eq "series" "[{\"__name__\":\"$N\"},{\"__name__\":\"$N\",\"env\":\"prod\"}]" \
    "$(api "/api/v1/series?match%5B%5D=$N" | jq -c .data)"

# 5. /v1/counters: per series, live (PFCOUNT) and flushed (the merged buckets).
j=$(api "/v1/counters/$P.users")
check_eq "GET /v1/counters: a set, from Redis, per series, no total" "set redis null 2" \
    "$(jq -r '"\(.type) \(.source) \(.value) \(.series[0].value)"' <<<"$j")"
check_eq "GET /v1/counters: PFCOUNT per series" "$($R PFCOUNT "$KEY")" \
    "$(jq -r '.series[] | select(.tags == "env:prod") | .value' <<<"$j")"
j=$(api "/v1/counters/$P.users?source=sqlite")
check_eq "GET /v1/counters?source=sqlite: the untagged series" "set sqlite 2" \
    "$(jq -r '"\(.type) \(.source) \(.series[0].value)"' <<<"$j")"
check_within "GET /v1/counters?source=sqlite: env:prod" \
    "$(jq -r '.series[] | select(.tags == "env:prod") | .value' <<<"$j")" $PROD $ERR
check_eq "GET /v1/counters?type=set" set "$(api "/v1/counters/$P.users?type=set" | jq -r .type)"

# 6. The rebuild (rule 5): with the flusher stopped, 200 more members go to
# Redis and Kafka only (the tail); then the set's key and the index are lost.
# The rebuild writes SQLite's union of the buckets and replays the tail on
# top: the same registers as before the loss, hence the same PFCOUNT.
stop_flusher
lines 1001 1200 $((T0 + 25)) >"$WORK/tail"
post "$(cat "$WORK/tail")"
check_eq "post of the tail" 200 "$HTTP_CODE"
before=$($R PFCOUNT "$KEY")
check_within "PFCOUNT with the tail, before the loss" "$before" $((PROD + 200)) $ERR
regs=$($R PFDEBUG GETREG "$KEY" | md5sum)
$R DEL "$KEY" "$(rkey "$P.users" set)" >/dev/null
check_eq "the set is lost" 0 "$($R PFCOUNT "$KEY")"
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >"$WORK/rebuild.log" 2>&1 ||
    { cat "$WORK/rebuild.log"; fail "tally-flusher --rebuild-redis failed"; }
log "$(grep 'rebuild: ok' "$WORK/rebuild.log")"
check_eq "PFCOUNT after the rebuild" "$before" "$($R PFCOUNT "$KEY")"
check_eq "every register after the rebuild" "$regs" "$($R PFDEBUG GETREG "$KEY" | md5sum)"
check_eq "the untagged series after the rebuild" 2 "$($R PFCOUNT "$(rkey "$P.users" set:)")"
check_eq "a small set is rebuilt sparse, as PFADD leaves it" sparse \
    "$($R PFDEBUG ENCODING "$(rkey "$P.users" set:)")"
check_eq "the index after the rebuild" "$(printf '\nenv:prod')" "$($R HKEYS "$(rkey "$P.users" set)" | sort)"
check_eq "GET /v1/counters after the rebuild" "$before" \
    "$(api "/v1/counters/$P.users" | jq -r '.series[] | select(.tags == "env:prod") | .value')"

# The tail reaches SQLite once the flusher is back, exactly once.
start_flusher
for ((i = 0; i < 300; i++)); do
    [[ $(sqlite3 "$WORK/tally.db" "SELECT total_weight FROM series WHERE name = '$P.users' AND tags = 'env:prod'" 2>/dev/null) == 1851.0 ]] && break
    sleep 0.1
done
check_eq "catalog lines with the tail" 1851.0 \
    "$(sqlite3 "$WORK/tally.db" "SELECT total_weight FROM series WHERE name = '$P.users' AND tags = 'env:prod'")"
check_within "GET /v1/counters?source=sqlite with the tail" \
    "$(api "/v1/counters/$P.users?source=sqlite" | jq -r '.series[] | select(.tags == "env:prod") | .value')" \
    $((PROD + 200)) $ERR

# Both stop cleanly (under ASan: without a leak).
stop_flusher
stop_ingest
finish
