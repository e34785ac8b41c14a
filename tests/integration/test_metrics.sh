#!/usr/bin/env bash
# GET /metrics of tally-ingest in Prometheus' text format: promtool finds
# nothing to complain about, the counters follow what was posted (batches by
# answer, events, the ack latency histogram, StatsD lines, reads, both Redis'
# INFO figures), and a real Prometheus server (Debian's prometheus) scrapes it
# and tally-flusher's /metrics (test_flusher_metrics) and reports both targets up.
source "$(dirname "$0")/lib.sh"
command -v prometheus >/dev/null || fail "prometheus not found: run deploy/install-deps"
command -v promtool >/dev/null || fail "promtool not found: run deploy/install-deps"

SPORT=${STATSD_PORT:-18125}
PROM_PORT=${TALLY_TEST_PROMETHEUS_PORT:-18090}
STATSD_UDP=true STATSD_TCP=false STATSD_PORT=$SPORT write_config
start_ingest
start_flusher
P=$METRIC_PREFIX
metric() { # NAME{LABELS}: its value in a fresh scrape ("" when absent)
    curl -fsS "$BASE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# Some traffic: two good batches, one invalid, a StatsD datagram, a read.
post "$P.m:1|c
$P.m:2|c"
check_eq "post" 200 "$HTTP_CODE"
post "$P.m:3|c"
post "$P.m:x|c"
check_eq "invalid post" 400 "$HTTP_CODE"
printf '%s.u:5|c\n%s.u:bad|c\n' "$P" "$P" >/dev/udp/127.0.0.1/"$SPORT"
wait_sqlite_counter "$P.u" 5
curl -fsS "$BASE_URL/api/v1/query?query=${P}_m&time=$(date +%s)" >/dev/null

curl -fsS -D "$WORK/headers" "$BASE_URL/metrics" >"$WORK/metrics.txt"
check_eq "content type" "text/plain; version=0.0.4; charset=utf-8" \
    "$(tr -d '\r' <"$WORK/headers" | awk -F': ' 'tolower($1)=="content-type"{print $2}')"
promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1 || true
check_eq "promtool check metrics finds nothing" "" "$(cat "$WORK/promtool.out")"

check_eq "batches accepted (2 HTTP + 1 StatsD)" 3 "$(metric 'tally_ingest_batches_total{result="accepted"}')"
check_eq "batches refused as invalid" 1 "$(metric 'tally_ingest_batches_total{result="invalid"}')"
check_eq "events accepted" 4 "$(metric tally_ingest_events_accepted_total)"
check_eq "ack latency observations = accepted batches" 3 "$(metric tally_ingest_ack_duration_seconds_count)"
check_eq "StatsD lines, dropped, stored" "2 1 1" \
    "$(metric tally_statsd_lines_total) $(metric 'tally_statsd_lines_dropped_total{reason="bad_value"}') $(metric tally_statsd_lines_stored_total)"
check_eq "kernel drops" 0 "$(metric tally_statsd_kernel_drops_total)"
check_eq "a read reached SQLite" 1 "$(metric tally_reads_sqlite_queries_total)"
# the Redis figures come from an INFO sent every second: the first within ~1 s of the start
for ((i = 0; i < 50; i++)); do
    [[ "$(metric 'tally_redis_up{instance="state"}') $(metric 'tally_redis_up{instance="cache"}')" == "1 1" ]] && break
    sleep 0.1
done
check_eq "state and cache Redis up" "1 1" \
    "$(metric 'tally_redis_up{instance="state"}') $(metric 'tally_redis_up{instance="cache"}')"
(( $(metric 'tally_redis_used_memory_bytes{instance="state"}') > 0 )) || fail "no used_memory for the state Redis"
(( $(metric 'tally_redis_maxmemory_bytes{instance="cache"}') > 0 )) || fail "the cache Redis has no maxmemory"
CHECKS=$((CHECKS + 2))

# A real Prometheus server scrapes tally-ingest.
mkdir -p "$WORK/prometheus"
cat >"$WORK/prometheus.yml" <<YML
global: { scrape_interval: 1s, scrape_timeout: 1s }
scrape_configs:
  - job_name: tally-ingest
    static_configs: [ { targets: ["127.0.0.1:$HTTP_PORT"] } ]
  - job_name: tally-flusher
    static_configs: [ { targets: ["127.0.0.1:$FLUSHER_METRICS_PORT"] } ]
YML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prometheus" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
prom=$!
health=""
for ((i = 0; i < 150; i++)); do
    health=$(curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/targets" 2>/dev/null |
        jq -r '[.data.activeTargets[] | "\(.labels.job)=\(.health)"] | sort | join(" ")' 2>/dev/null || true)
    [[ $health == "tally-flusher=up tally-ingest=up" ]] && break
    kill -0 "$prom" 2>/dev/null || { tail -n 20 "$WORK/prometheus.log"; fail "prometheus exited"; }
    sleep 0.2
done
check_eq "Prometheus scrapes both targets" "tally-flusher=up tally-ingest=up" "$health"
got=""
for ((i = 0; i < 50; i++)); do
    got=$(curl -fsS "http://127.0.0.1:$PROM_PORT/api/v1/query?query=tally_ingest_events_accepted_total" |
        jq -r '.data.result[0].value[1] // empty')
    [[ -n $got ]] && break
    sleep 0.2
done
check_eq "Prometheus holds a sample of ours" 4 "$got"
kill "$prom" 2>/dev/null || true
wait "$prom" 2>/dev/null || true

stop_flusher
stop_ingest
finish
