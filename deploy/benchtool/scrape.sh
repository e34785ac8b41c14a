# deploy/benchtool/scrape.sh — the /metrics section of deploy/bench (sourced
# by it, after the bench stack is up; uses its helpers and variables).
#
# 1. Cost: SCRAPE_N scrapes of tally-ingest's and of tally-flusher's
#    /metrics, one at a time over a fresh connection each (curl's time_total:
#    connect, request, the whole page), p50 / p99 / max in ms, idle and under
#    the write load below.
# 2. Disturbance: SCRAPE_PAIRS alternating pairs of the same write run
#    (batch 1000, concurrency 4, SCRAPE_SECS) without and with both processes
#    scraped 10 times a second (150 times Prometheus' default 15 s interval):
#    medians of acknowledged events/s. Writes $OUT/scrape.md.

SCRAPE_N=${BENCH_SCRAPE_COUNT:-300}
SCRAPE_SECS=${BENCH_SCRAPE_SECONDS:-8}
SCRAPE_PAIRS=${BENCH_SCRAPE_PAIRS:-3}
SCRAPE_MD=$OUT/scrape.md
SCRAPER_PID=

# scrape_times URL N: N scrape durations in ms, one per line.
scrape_times() {
    local i
    for ((i = 0; i < $2; i++)); do
        curl -fsS -o /dev/null -w '%{time_total}\n' "$1" 2>>"$LOGF" | awk '{ printf "%.3f\n", $1 * 1000 }'
    done
}

# scrape_stats URL N: "p50 p99 max" in ms.
scrape_stats() {
    scrape_times "$1" "$2" | sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan nan nan"; exit }
        i50 = int(NR * 0.5); if (i50 < 1) i50 = 1; i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
        printf "%s %s %s", a[i50], a[i99], a[NR] }'
}

scrape_start_load() { # scrape both every 100 ms until stopped
    (while :; do
        curl -fsS -o /dev/null "$INGEST_METRICS" 2>/dev/null
        curl -fsS -o /dev/null "$FLUSHER_METRICS" 2>/dev/null
        sleep 0.1
    done) &
    SCRAPER_PID=$!
}

scrape_stop_load() {
    [[ -n $SCRAPER_PID ]] || return 0
    kill "$SCRAPER_PID" 2>/dev/null || true
    wait "$SCRAPER_PID" 2>/dev/null || true
    SCRAPER_PID=
}

scrape_section() {
    INGEST_METRICS=http://127.0.0.1:$INGEST_PORT/metrics
    FLUSHER_METRICS=http://127.0.0.1:$FLUSHER_METRICS_PORT/metrics
    curl -fsS -o /dev/null "$FLUSHER_METRICS" || die "the flusher's /metrics does not answer on $FLUSHER_METRICS"
    say "scrape section: $SCRAPE_N scrapes of each /metrics idle and under load; $SCRAPE_PAIRS pairs of writes without / with 10 scrapes a second"
    local ii fi il fl pair plain scraped plains="" scrapeds=""
    ii=$(scrape_stats "$INGEST_METRICS" "$SCRAPE_N")
    fi=$(scrape_stats "$FLUSHER_METRICS" "$SCRAPE_N")
    run_bench tally 1000 4 "$((SCRAPE_SECS + 6))" 1 >/dev/null &
    local load=$!
    sleep 2
    il=$(scrape_stats "$INGEST_METRICS" "$SCRAPE_N")
    fl=$(scrape_stats "$FLUSHER_METRICS" "$SCRAPE_N")
    wait "$load" || die "the write load of the scrape section failed (log: $LOGF)"
    wait_drained "$QUIESCE_MAX" || true
    for ((pair = 1; pair <= SCRAPE_PAIRS; pair++)); do
        run_bench tally 1000 4 "$SCRAPE_SECS" 1
        plain=$(field events_per_s "$RESULT")
        wait_drained "$QUIESCE_MAX" || true
        scrape_start_load
        run_bench tally 1000 4 "$SCRAPE_SECS" 1
        scraped=$(field events_per_s "$RESULT")
        scrape_stop_load
        wait_drained "$QUIESCE_MAX" || true
        plains+="$plain " scrapeds+="$scraped "
        say "  pair $pair: $plain ev/s without scrapes, $scraped with 10 scrapes/s"
    done
    local mp ms
    # shellcheck disable=SC2086
    mp=$(median $plains) ms=$(median $scrapeds)
    # what a scrape costs ingest's event loop: its own histogram of building and sending a page
    local cost
    cost=$(curl -fsS "$INGEST_METRICS" | awk '$1 == "tally_ingest_scrape_duration_seconds_sum" { s = $2 }
        $1 == "tally_ingest_scrape_duration_seconds_count" { n = $2 } END { if (n > 0) printf "%.3f ms over %d scrapes", s / n * 1000, n; else print "n/a" }')
    {
        echo
        echo "## /metrics scrapes"
        echo
        echo "curl, one scrape at a time over a new connection (time_total: connect, request, the whole page), $SCRAPE_N each."
        echo "Under load: tally-bench batch 1000, concurrency 4 running meanwhile."
        echo
        echo "| target | idle p50 / p99 / max (ms) | under load p50 / p99 / max (ms) |"
        echo "|---|---|---|"
        echo "| tally-ingest /metrics | ${ii// / / } | ${il// / / } |"
        echo "| tally-flusher /metrics | ${fi// / / } | ${fl// / / } |"
        echo
        echo "Server side, tally-ingest's loop time per scrape (tally_ingest_scrape_duration_seconds, mean): $cost."
        echo
        echo "Writes (batch 1000, c=4, ${SCRAPE_SECS} s, $SCRAPE_PAIRS pairs, medians): $mp events/s without scrapes,"
        echo "$ms with both processes scraped 10 times a second ($(awk -v a="$ms" -v b="$mp" 'BEGIN { if (b > 0) printf "%+.1f %%", (a / b - 1) * 100; else print "n/a" }'))."
        echo "Pairs without: $plains; with: $scrapeds."
    } >"$SCRAPE_MD"
    say "scrape section: ingest loop time per scrape $cost"
    say "scrape section: ingest p50/p99 ${ii% *} ms idle, ${il% *} ms loaded; flusher ${fi% *} / ${fl% *} ms; writes $mp -> $ms ev/s"
}
