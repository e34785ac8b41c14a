#!/usr/bin/env bash
# Retention end to end (retention.* at its defaults: raw 14 d, 1-minute
# roll-ups 90 d, 1-hour roll-ups 730 d) against real Kafka, Redis and SQLite.
# One hour of every type is posted (client stamps, |T) 20 days ago, a counter
# hour 100 days ago and one 800 days ago, and a few lines now. The flusher
# is first armed to SIGKILL itself inside its third retention step (after the
# step's writes, before its COMMIT), then restarted. Checked afterwards: the
# 20-day hour has no raw rows and 60 one-minute and one one-hour roll-up, with
# the exact sums; the 100-day hour only its one-hour row; the 800-day hour no
# row at all; the series totals, /v1/counters from SQLite and from Redis
# count everything; PromQL reads the old hour from the roll-ups (cumulative
# counter from the 1-minute rows, at step 1 h from the 1-hour row, held for a
# lookback-spaced hour after it; the hour's p99 within the sketch's 1 %; its
# distinct members).
source "$(dirname "$0")/lib.sh"

write_config
start_ingest

P=$METRIC_PREFIX
NOW=$(date +%s)
D20=$(( (NOW - 20 * 86400) / 3600 * 3600 ))
D100=$(( (NOW - 100 * 86400) / 3600 * 3600 ))
D800=$(( (NOW - 800 * 86400) / 3600 * 3600 ))

# 360 buckets of 10 s per hour: line i at HOUR + 10 i + 5
awk -v p="$P" -v h="$D20" 'BEGIN { for (i = 0; i < 360; i++) {
    t = h + 10 * i + 5
    printf "%s.c:%d|c|T%d\n%s.g:%d|g|T%d\n%s.lat:%d|d|T%d\n%s.u:user%d|s|T%d\n", p, i + 1, t, p, i, t, p, i + 1, t, p, i % 50, t } }' >"$WORK/d20"
awk -v p="$P" -v a="$D100" -v b="$D800" 'BEGIN { for (i = 0; i < 360; i++) {
    printf "%s.c:2|c|T%d\n%s.c:3|c|T%d\n", p, a + 10 * i + 5, p, b + 10 * i + 5 } }' >"$WORK/old"
post "$(cat "$WORK/d20")"
check_eq "post of the hour 20 days ago" 200 "$HTTP_CODE"
post "$(cat "$WORK/old")"
check_eq "post of the hours 100 and 800 days ago" 200 "$HTTP_CODE"
post "$P.c:5|c"
check_eq "post of a line now" 200 "$HTTP_CODE"
TOTAL=$(( 360 * 361 / 2 + 720 + 1080 + 5 ))

db() { sqlite3 "$WORK/tally.db" "$1"; }

# 1. A crash inside a retention step: the flusher kills itself at the third.
TALLY_FLUSHER_CRASH_AT=mid_retention TALLY_FLUSHER_CRASH_COUNT=3 \
    "$TALLY_BUILD/tally-flusher" -c "$CONF" >>"$WORK/flusher.log" 2>&1 &
pid=$!
rc=0
timeout 120 tail --pid="$pid" -f /dev/null || fail "the armed flusher did not crash within 120 s"
wait "$pid" || rc=$?
check_eq "the armed flusher was killed in its third retention step" 137 "$rc"
check_eq "two retention steps committed before the crash" 2 \
    "$(grep -c 'retention: ' "$WORK/flusher.log" || true)"

# 2. Restarted, it finishes (retention runs when idle, every 10 s at most).
start_flusher
for ((i = 0; i < 300; i++)); do
    done_d800=$(db "SELECT count(*) FROM rollup_metrics WHERE bucket < $((D800 + 3600))" 2>/dev/null || echo x)
    raw20=$(db "SELECT count(*) FROM metrics WHERE bucket < $((D20 + 3600))" 2>/dev/null || echo x)
    min20=$(db "SELECT count(*) FROM rollup_metrics WHERE width = 60 AND bucket < $((D20 + 3600))" 2>/dev/null || echo x)
    [[ $done_d800 == 0 && $raw20 == 0 && $min20 == 180 ]] && break
    sleep 0.5
done
check_eq "raw rows of the hour 20 days ago (past 14 days)" 0 "$raw20"
check_eq "raw sketches of the hour 20 days ago" 0 "$(db "SELECT count(*) FROM sketches WHERE bucket < $((D20 + 3600))")"
check_eq "1-minute rows of it (counter, gauge, distribution)" 180 "$min20"
check_eq "1-minute counter sum" $((360 * 361 / 2)) \
    "$(db "SELECT sum(value) FROM rollup_metrics WHERE name = '$P.c' AND width = 60 AND bucket BETWEEN $D20 AND $((D20 + 3599))" | cut -d. -f1)"
check_eq "its 1-hour counter row" "$((360 * 361 / 2)) 360" \
    "$(db "SELECT cast(value AS INT), lines FROM rollup_metrics WHERE name = '$P.c' AND width = 3600 AND bucket = $D20" | tr '|' ' ')"
check_eq "its 1-hour gauge row: the hour's last value, min, max" "359 0 359" \
    "$(db "SELECT cast(value AS INT), cast(min AS INT), cast(max AS INT) FROM rollup_metrics WHERE name = '$P.g' AND width = 3600" | tr '|' ' ')"
check_eq "its 1-hour distribution row: count, sum, min, max" "360 64980 1 360" \
    "$(db "SELECT cast(weight AS INT), cast(value AS INT), cast(min AS INT), cast(max AS INT) FROM rollup_metrics WHERE name = '$P.lat' AND width = 3600" | tr '|' ' ')"
check_eq "the hour 100 days ago: only its 1-hour row (1 min past 90 days)" "3600 720" \
    "$(db "SELECT width, cast(value AS INT) FROM rollup_metrics WHERE name = '$P.c' AND bucket < $((D100 + 3600)) AND bucket >= $D100" | tr '|' ' ')"
check_eq "the hour 800 days ago: no row left (past 730 days)" 0 "$done_d800"
check_eq "the series total still counts every hour" $TOTAL \
    "$(db "SELECT cast(total_value AS INT) FROM series WHERE name = '$P.c'")"

# 3. Reads.
wait_total() { # SOURCE
    local got="" i
    for ((i = 0; i < 100; i++)); do
        got=$(api_counter "$P.c" "$1" 2>/dev/null || true)
        [[ $got == "$TOTAL" ]] && break
        sleep 0.2
    done
    check_eq "/v1/counters/$P.c from $1" $TOTAL "$got"
}
wait_total sqlite
check_eq "/v1/counters/$P.c live (Redis)" $TOTAL "$(api_counter "$P.c")"
N=${P}_c
before=$(( 720 + 1080 ))
got=$(api "/api/v1/query?query=$N&time=$((D20 + 3600))" | jq -r '.data.result[0].value[1]')
check_eq "instant query at the hour's end (from the 1-minute rows): cumulative" $((before + 64980)) "$got"
got=$(api "/api/v1/query?query=$N&time=$((D20 + 1800 + 7))" | jq -r '.data.result[0].value[1]')
check_eq "instant query mid-hour: the minute that ended last" \
    $((before + $(awk 'BEGIN { s = 0; for (i = 0; i < 180; i++) s += i + 1; print s }'))) "$got"
j=$(api "/api/v1/query_range?query=$N&start=$((D20 + 3600))&end=$((D20 + 7200))&step=3600")
check_eq "range query at step 1 h (the 1-hour row, held through the next hour)" \
    "$((before + 64980)) $((before + 64980))" "$(jq -r '[.data.result[0].values[][1]] | join(" ")' <<<"$j")"
q=$(api "/api/v1/query_range?query=${P}_lat%7Bquantile%3D%220.99%22%7D&start=$((D20 + 3600))&end=$((D20 + 3600))&step=3600" |
    jq -r '.data.result[0].values[0][1]')
check_within "p99 of the hour from its 1-hour sketch" "$q" 357 1.5
u=$(api "/api/v1/query_range?query=${P}_u&start=$((D20 + 3600))&end=$((D20 + 3600))&step=3600" |
    jq -r '.data.result[0].values[0][1]')
check_eq "distinct members of the hour from its 1-hour HyperLogLog" 50 "$u"
check_eq "SQLite's distinct members of the set over all time" 50 \
    "$(curl -fsS "$BASE_URL/v1/counters/$P.u?source=sqlite" | jq -r ".series[0].value")"

stop_flusher
stop_ingest
finish
