#!/usr/bin/env bash
# Hostile numbers (design rule 8, event.h's numeric domain): the requests that
# used to abort tally-ingest are refused with a 400 naming the line; integer
# fields near int64's range are carried into their :frac companion, so the
# live view stays exact and Redis never refuses an update; a database written
# before the domain existed has its non-finite rows quarantined, so reads and
# the Redis rebuild work; Redis and SQLite never hold infinity or NaN.
source "$(dirname "$0")/lib.sh"

write_config
start_ingest
start_flusher
P=$METRIC_PREFIX
R="redis-cli -p $TALLY_REDIS_PORT --raw"
alive() { kill -0 "$INGEST_PID" 2>/dev/null || fail "tally-ingest died: $1"; }

# 1. x:1e308|c twice, then a read of x: refused, and ingest lives on.
for i in 1 2; do
    post "$P.x:1e308|c"
    check_eq "x:1e308|c (post $i)" "400 1" "$HTTP_CODE $(jq -r '.errors[0].line' <<<"$HTTP_BODY")"
done
jq -e '.errors[0].reason | test("may be at most 1e\\+15")' <<<"$HTTP_BODY" >/dev/null ||
    fail "reason of the refused line: $HTTP_BODY"
check_eq "GET /v1/counters of the refused name (never stored: unknown)" 404 \
    "$(curl -sS -o /dev/null -w '%{http_code}' "$BASE_URL/v1/counters/$P.x")"
alive "after reading x"

# 2. A batch whose gauge would overflow: both lines named, nothing applied.
post "$P.g:1e308|g
$P.g:+1e308|g"
check_eq "g:1e308|g then g:+1e308|g" "400 1 2" \
    "$HTTP_CODE $(jq -r '[.errors[].line] | map(tostring) | join(" ")' <<<"$HTTP_BODY")"
alive "after the gauge batch"
check_eq "redis holds no gauge for the refused batch" "" "$($R HGET "$(rkey "$P.g" gauge)" "")"

# 3. The bound itself is accepted; a sample rate may not inflate past it.
post "$P.edge:1e15|c
$P.edge:5e14|c|@0.5"
check_eq "lines at the bound" 200 "$HTTP_CODE"
post "$P.edge:6e14|c|@0.5"
check_eq "value/rate over the bound" 400 "$HTTP_CODE"

# 4. Twelve batches of 999999999999998 (each a HINCRBY): the whole field passes
# 2^53 after ten and is carried; every batch is applied and the value stays
# exact (every partial sum is even, and doubles between 2^53 and 2^54 hold
# exactly the even integers, so SQLite's REAL sums are exact too).
n=12
for ((i = 0; i < n; i++)); do
    post "$P.big:999999999999998|c"
    [[ $HTTP_CODE == 200 && $(jq -r .live <<<"$HTTP_BODY") == applied ]] ||
        fail "batch $i of big values: $HTTP_CODE $HTTP_BODY"
done
want=11999999999999976
check_eq "redis total after the carries" "$want" "$(redis_counter "$P.big")"
whole=$($R HGET "$(rkey "$P.big" counter)" "")
((${whole:-0} < 9007199254740992)) || fail "whole field was not carried: $whole"
log "ok: whole field ${whole:-absent}, :frac $($R HGET "$(rkey "$P.big" counter:frac)" "")"
check_eq "GET /v1/counters after the carries" "$want" "$(api_counter "$P.big")"
# (SQLite's printf keeps 16 digits, so wait_sqlite_counter cannot show this one)
sqlite_big() { sqlite3 "$WORK/tally.db" "SELECT CAST(SUM(value) AS INTEGER) FROM metrics WHERE name = '$P.big'"; }
for ((i = 0; i < 300; i++)); do [[ $(sqlite_big) == "$want" ]] && break; sleep 0.2; done
check_eq "sqlite total of the large counter" "$want" "$(sqlite_big)"
alive "after the carries"

# 5. A database from before the domain (schema 1) holding infinity: the
# flusher quarantines the rows when it opens it; the rebuild then works.
stop_flusher
DB=$WORK/tally.db
# (made a faithful version 1 file: its batches table as it was then)
sqlite3 "$DB" "UPDATE meta SET value = '1' WHERE key = 'schema_version';
  DROP TABLE series; DROP INDEX batches_log_ms; ALTER TABLE batches DROP COLUMN digest;
  ALTER TABLE batches RENAME COLUMN log_ms TO received_ms;
  CREATE INDEX batches_received_ms ON batches(received_ms);
  INSERT INTO metrics VALUES('$P.inf', '', 'counter', 0, 1, 9e999, 1, NULL, NULL);
  INSERT INTO gauges VALUES('$P.infg', '', -9e999);"
start_flusher
for ((i = 0; i < 50; i++)); do
    [[ $(sqlite3 "$DB" "SELECT value FROM meta WHERE key = 'schema_version'") == 6 ]] && break
    sleep 0.2
done
check_eq "schema upgraded (1 -> 2 -> 3 -> 4 -> 5 -> 6)" 6 "$(sqlite3 "$DB" "SELECT value FROM meta WHERE key = 'schema_version'")"
check_eq "batches kept their rows, with time and digest columns" \
    "$(sqlite3 "$DB" "SELECT COUNT(*) FROM batches") -" \
    "$(sqlite3 "$DB" "SELECT COUNT(*) FROM batches WHERE log_ms > 0") $(sqlite3 "$DB" "SELECT DISTINCT digest FROM batches")"
check_eq "quarantined rows" "metrics $P.inf|gauges $P.infg" \
    "$(sqlite3 "$DB" "SELECT tbl || ' ' || name FROM quarantined_rows ORDER BY tbl DESC" | paste -sd'|')"
check_eq "non-finite rows left in metrics and gauges" 0 \
    "$(sqlite3 "$DB" "SELECT (SELECT COUNT(*) FROM metrics WHERE NOT abs(value) <= 1.7976931348623157e308)
                           + (SELECT COUNT(*) FROM gauges WHERE NOT abs(value) <= 1.7976931348623157e308)")"
check_eq "the series catalog built from the rows (totals equal)" \
    "$(sqlite3 "$DB" "SELECT name, tags, type, SUM(value), SUM(weight) FROM metrics
                      WHERE type != 'gauge' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")" \
    "$(sqlite3 "$DB" "SELECT name, tags, type, total_value, total_weight FROM series
                      WHERE type != 'gauge' ORDER BY 1, 2, 3")"
check_eq "prom names of the catalog" "${P//./_}_big" \
    "$(sqlite3 "$DB" "SELECT prom_name FROM series WHERE name = '$P.big'")"
rc=0
"$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis >>"$WORK/rebuild.log" 2>&1 || rc=$?
check_eq "rebuild over the upgraded database" 0 "$rc"
check_eq "live total after the rebuild" "$want" "$(redis_counter "$P.big")"

# 6. Nothing non-finite anywhere in this test's Redis keys.
bad=0
while read -r key; do
    [[ -n $key ]] || continue
    case $($R TYPE "$key") in
        hash) vals=$($R HVALS "$key") ;;
        zset) vals=$($R ZRANGE "$key" 0 -1 WITHSCORES) ;;
        *) continue ;;
    esac
    if grep -qiE '^-?(inf|nan)' <<<"$vals"; then bad=$((bad + 1)); log "non-finite in $key"; fi
done < <($R --scan --pattern "tally:{*}:$P.*")
check_eq "redis keys holding infinity or NaN" 0 "$bad"
alive "at the end"

stop_flusher
stop_ingest
finish
