#!/usr/bin/env bash
# GET /metrics of tally-flusher (flusher.metrics_port): promtool finds nothing
# to complain about; commits, events committed and records consumed follow
# what was posted; the lag per partition is 0 once caught up; batches posted
# while the flusher is stopped are its replay when it starts again
# (tally_flusher_replay_total_records) and end at lag 0; a retried batch
# counts as a duplicate; other paths answer 404, other methods 405, an
# oversized head 431; a second flusher on a taken port refuses to start; and
# `tally status` shows both processes with the lag.
source "$(dirname "$0")/lib.sh"
command -v promtool >/dev/null || fail "promtool not found: run deploy/install-deps"

write_config
start_ingest
start_flusher
P=$METRIC_PREFIX
fmetric() { # NAME{LABELS}: its value in a fresh scrape of the flusher ("" when absent)
    curl -fsS "$FLUSHER_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
wait_fmetric() { # NAME WANT
    local got="" i
    for ((i = 0; i < 150; i++)); do
        got=$(fmetric "$1" 2>/dev/null || true)
        [[ $got == "$2" ]] && break
        sleep 0.2
    done
    check_eq "flusher $1" "$2" "$got"
}

post_keyed "$P-a" "$P.m:1|c
$P.m:2|c"
post_keyed "$P-b" "$P.m:3|c"
post_keyed "$P-b" "$P.m:3|c" # a retry: ingest and the flusher count it once
wait_sqlite_counter "$P.m" 6
wait_fmetric tally_flusher_events_committed_total 3
check_eq "records consumed (the retry is a record too)" 3 "$(fmetric tally_flusher_records_consumed_total)"
check_eq "the retried batch was a duplicate" 1 "$(fmetric tally_flusher_batches_duplicate_total)"
(( $(fmetric tally_flusher_commits_total) >= 1 )) || fail "no commit counted"
CHECKS=$((CHECKS + 1))
check_eq "commit histogram count = commits" "$(fmetric tally_flusher_commits_total)" \
    "$(fmetric tally_flusher_commit_duration_seconds_count)"
wait_fmetric 'tally_flusher_lag_records{partition="0"}' 0
check_eq "lag seconds when caught up" 0 "$(fmetric 'tally_flusher_lag_seconds{partition="0"}')"
check_eq "consuming" 1 "$(fmetric tally_flusher_consuming)"
check_eq "not replaying" 0 "$(fmetric tally_flusher_replaying)"

curl -fsS -D "$WORK/headers" "$FLUSHER_URL/metrics" >"$WORK/metrics.txt"
check_eq "content type" "text/plain; version=0.0.4; charset=utf-8" \
    "$(tr -d '\r' <"$WORK/headers" | awk -F': ' 'tolower($1)=="content-type"{print $2}')"
promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1 || true
check_eq "promtool check metrics finds nothing" "" "$(cat "$WORK/promtool.out")"
check_eq "another path" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$FLUSHER_URL/healthz")"
check_eq "another method" 405 "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$FLUSHER_URL/metrics")"
check_eq "HEAD" 200 "$(curl -s -o /dev/null -w '%{http_code}' -I "$FLUSHER_URL/metrics")"
big=$(head -c 9000 /dev/zero | tr '\0' a)
check_eq "an oversized head" 431 "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Big: $big" "$FLUSHER_URL/metrics")"

out=$("$TALLY_BUILD/tally" status -c "$CONF" --interval 0.5) || fail "tally status exited non-zero: $out"
grep -q "tally-ingest .* ok" <<<"$out" || fail "tally status: no healthy ingest: $out"
grep -q "tally-flusher .* consuming" <<<"$out" || fail "tally status: no consuming flusher: $out"
grep -q "partition 0 .* lag 0 records, .* (claimed at epoch 1)" <<<"$out" || fail "tally status: no lag line with its epoch: $out"
CHECKS=$((CHECKS + 3))
log "ok: tally status: $(tr '\n' '|' <<<"$out")"

expect_refusal "a second flusher on the taken metrics port" "Address already in use" \
    "$TALLY_BUILD/tally-flusher" -c "$CONF"

# Stopped, the flusher misses 5 batches; started again it replays them.
stop_flusher
for i in 1 2 3 4 5; do post_keyed "$P-r$i" "$P.m:10|c"; done
start_flusher
wait_sqlite_counter "$P.m" 56
check_eq "the replay the flusher found at its start" 5 "$(fmetric tally_flusher_replay_total_records)"
wait_fmetric tally_flusher_replaying 0
wait_fmetric tally_flusher_replay_remaining_records 0
wait_fmetric 'tally_flusher_lag_records{partition="0"}' 0
check_eq "events committed since this start" 5 "$(fmetric tally_flusher_events_committed_total)"

stop_flusher
out=$("$TALLY_BUILD/tally" status -c "$CONF" --interval 0.2) && fail "tally status exited 0 with the flusher stopped: $out"
grep -q "tally-flusher .* unreachable" <<<"$out" || fail "tally status: the stopped flusher is not unreachable: $out"
CHECKS=$((CHECKS + 1))
log "ok: tally status with the flusher stopped exits 1 and says unreachable"
stop_ingest
finish
