# deploy/benchtool/read.sh — the read section of deploy/bench (sourced by it,
# after the bench stack and influxd are up; uses its helpers and variables).
#
# Same data in three systems: one counter sampled every 10 s for 24 h (8,640
# buckets, ending a minute ago): posted to Tally with client stamps (and
# waited for in SQLite), written to InfluxDB 1.6 as points, imported into
# VictoriaMetrics (Debian's victoria-metrics, started here on its own port)
# as the cumulative samples Tally's Prometheus API shows. Then, each measured
# with tally-bench --format get (closed loop, medians of READ_PAIRS
# alternating runs):
#   a. a cached query_range (the last hour at 10 s, 360 points), c=16: Tally
#      /api/v1/query_range vs InfluxDB /query (the equivalent InfluxQL) vs
#      VictoriaMetrics /api/v1/query_range (the same PromQL); and Tally's
#      constant /api/v1/status/buildinfo, the floor of its HTTP server;
#   b. a miss over the 24 h at 10 s (8,640 points), c=1, with the cache Redis
#      stopped so that every request reads SQLite: p50 / p99;
#   c. writes (batch 1,000, c=16) alone, then with a read load beside them:
#      a dashboard-like one (the cached query at READ_LOAD_RATE, 100 queries/s)
#      and a saturating one (the cached query, closed loop, c=2): events/s;
#   d. warming: the cached query at c=4 while the cache Redis is flushed:
#      SQLite queries per second over the next 5 s (GET /healthz).
# Writes $OUT/read.md.

READ_PAIRS=${BENCH_READ_PAIRS:-3}
READ_LOAD_RATE=${BENCH_READ_LOAD_RATE:-100}
READ_SECS=${BENCH_READ_SECONDS:-$SECS}
VM_PORT_FIRST=${BENCH_VM_PORT:-18428}
VM_DIR=$OUT/victoria-metrics
READ_MD=$OUT/read.md
VM_PID=

read_install() {
    dpkg-query -W -f='${db:Status-Status}' victoria-metrics 2>/dev/null | grep -q '^installed$' && return
    say "installing victoria-metrics (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends victoria-metrics >>"$LOGF" 2>&1 \
        || die "apt-get install victoria-metrics failed (log: $LOGF)"
}

read_start_vm() {
    VM_PORT=$(free_port "$VM_PORT_FIRST")
    rm -rf "$VM_DIR"
    mkdir -p "$VM_DIR"
    victoria-metrics -storageDataPath="$VM_DIR/data" -httpListenAddr="127.0.0.1:$VM_PORT" \
        -retentionPeriod=1y -search.latencyOffset=0s >>"$VM_DIR/vm.log" 2>&1 &
    VM_PID=$!
    for ((i = 0; i < 300; i++)); do
        curl -fsS "http://127.0.0.1:$VM_PORT/health" >/dev/null 2>&1 && return
        kill -0 "$VM_PID" 2>/dev/null || die "victoria-metrics exited (log: $VM_DIR/vm.log)"
        sleep 0.1
    done
    die "victoria-metrics not healthy after 30 s (log: $VM_DIR/vm.log)"
}

read_stop_vm() {
    [[ -n $VM_PID ]] || return 0
    kill "$VM_PID" 2>/dev/null || true
    wait "$VM_PID" 2>/dev/null || true
    VM_PID=
}

# The data: bucket i (0..8639) at READ_T0 + 10 i holds 1 + i % 7.
read_load() {
    READ_T0=$(( ($(date +%s) - 86400 - 60) / 10 * 10 ))
    READ_END=$((READ_T0 + 86400))
    local i lines=""
    for ((i = 0; i < 8640; i++)); do
        lines+="bench.read:$((1 + i % 7))|c|T$((READ_T0 + 10 * i + 1))"$'\n'
        if (((i + 1) % 1000 == 0 || i == 8639)); then
            [[ $(printf '%s' "$lines" | curl -sS -o /dev/null -w '%{http_code}' --data-binary @- "$TALLY_URL") == 200 ]] \
                || die "posting the read data to Tally failed"
            lines=""
        fi
    done
    awk -v t0="$READ_T0" 'BEGIN { for (i = 0; i < 8640; i++) printf "bench_read value=%d %d000000000\n", 1 + i % 7, t0 + 10 * i + 10 }' \
        | curl -fsS -XPOST --data-binary @- "http://127.0.0.1:$INFLUX_PORT/write?db=bench&precision=ns" \
        || die "writing the read data to InfluxDB failed"
    # Tally's series: cumulative, stamped at each bucket's end
    awk -v t0="$READ_T0" 'BEGIN { c = 0; for (i = 0; i < 8640; i++) { c += 1 + i % 7; printf "bench_read %d %d000\n", c, t0 + 10 * i + 10 } }' \
        | curl -fsS -XPOST --data-binary @- "http://127.0.0.1:$VM_PORT/api/v1/import/prometheus" \
        || die "importing the read data into VictoriaMetrics failed"
    curl -fsS "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null 2>&1 || true
    local want=0
    for ((i = 0; i < 8640; i++)); do want=$((want + 1 + i % 7)); done
    for ((i = 0; i < 600; i++)); do
        [[ $(sqlite3 "$DB" "SELECT CAST(SUM(value) AS INTEGER) FROM metrics WHERE name = 'bench.read'" 2>/dev/null) == "$want" ]] && break
        sleep 0.1
    done
    [[ $(sqlite3 "$DB" "SELECT CAST(SUM(value) AS INTEGER) FROM metrics WHERE name = 'bench.read'") == "$want" ]] \
        || die "Tally's SQLite does not hold the read data after 60 s"
}

# read_run LABEL URL CONC SECS: one tally-bench --format get run; sets RESULT.
read_run() {
    local out
    out=$("$BENCH_BIN" --format get --url "$2" --label "$1" --concurrency "$3" --duration "$4" --warmup 1 2>>"$LOGF") \
        || { tail -n 5 "$LOGF" >&2; die "tally-bench --format get against $1 failed (log: $LOGF)"; }
    RESULT=$(grep '^RESULT ' <<<"$out" | tail -n1)
    printf '%s\n' "$RESULT" >>"$RUNS"
    [[ $(field errors "$RESULT") == 0 ]] || say "warning: $1 answered with errors: $RESULT"
}

urlq() { jq -rn --arg v "$1" '$v|@uri'; }

read_section() {
    read_install
    read_start_vm
    say "read section: loading 24 h of 10 s buckets into Tally, InfluxDB and VictoriaMetrics"
    read_load
    local s=$((READ_END - 3600)) e=$READ_END
    local base="http://127.0.0.1:$INGEST_PORT"
    local tq="$base/api/v1/query_range?query=bench_read&start=$s&end=$e&step=10"
    local vq="http://127.0.0.1:$VM_PORT/api/v1/query_range?query=bench_read&start=$s&end=$e&step=10"
    local iq="http://127.0.0.1:$INFLUX_PORT/query?db=bench&epoch=s&q=$(urlq "SELECT cumulative_sum(sum(value)) FROM bench_read WHERE time > ${s}s - 10s AND time <= ${e}s GROUP BY time(10s)")"
    curl -fsS "$tq" >/dev/null && curl -fsS "$vq" >/dev/null && curl -fsS "$iq" >/dev/null \
        || die "a read query failed before the measurement"
    local pts_t pts_v
    pts_t=$(curl -fsS "$tq" | jq '.data.result[0].values | length')
    pts_v=$(curl -fsS "$vq" | jq '.data.result[0].values | length')
    local tq_qps=() vq_qps=() iq_qps=() t_p99=() v_p99=() i_p99=() f_qps=() f_p99=() p
    for ((p = 1; p <= READ_PAIRS; p++)); do
        read_run tally-read "$tq" 16 "$READ_SECS"; tq_qps+=("$(field events_per_s "$RESULT")"); t_p99+=("$(field p99_ms "$RESULT")")
        read_run tally-floor "$base/api/v1/status/buildinfo" 16 "$READ_SECS"; f_qps+=("$(field events_per_s "$RESULT")"); f_p99+=("$(field p99_ms "$RESULT")")
        read_run influxdb-read "$iq" 16 "$READ_SECS"; iq_qps+=("$(field events_per_s "$RESULT")"); i_p99+=("$(field p99_ms "$RESULT")")
        read_run vm-read "$vq" 16 "$READ_SECS"; vq_qps+=("$(field events_per_s "$RESULT")"); v_p99+=("$(field p99_ms "$RESULT")")
    done
    local tqm iqm vqm
    tqm=$(median "${tq_qps[@]}") iqm=$(median "${iq_qps[@]}") vqm=$(median "${vq_qps[@]}")

    # b. misses: every request reads SQLite (the cache Redis is stopped)
    local miss="$base/api/v1/query_range?query=bench_read&start=$READ_T0&end=$e&step=10"
    stack down cache
    read_run tally-miss "$miss" 1 "$READ_SECS"
    local miss_p50 miss_p99 miss_qps
    miss_p50=$(field p50_ms "$RESULT") miss_p99=$(field p99_ms "$RESULT") miss_qps=$(field events_per_s "$RESULT")
    stack up cache
    sleep "$(( (5000 + 999) / 1000 + 1 ))" # the breaker closes (cache.breaker_open_ms)

    # c. writes with and without a read load beside them
    local alone=() paced=() loaded=() alone_p99=() paced_p99=() loaded_p99=() rpid
    for ((p = 1; p <= READ_PAIRS; p++)); do
        run_bench tally 1000 16 "$READ_SECS" 2
        alone+=("$(field events_per_s "$RESULT")") alone_p99+=("$(field p99_ms "$RESULT")")
        wait_drained "$QUIESCE_MAX" || true
        "$BENCH_BIN" --format get --url "$tq" --label read-load-paced --concurrency 2 --rate "$READ_LOAD_RATE" \
            --duration "$((READ_SECS + 3))" --warmup 0 >>"$LOGF" 2>&1 &
        rpid=$!
        run_bench tally 1000 16 "$READ_SECS" 2
        paced+=("$(field events_per_s "$RESULT")") paced_p99+=("$(field p99_ms "$RESULT")")
        wait "$rpid" || true
        wait_drained "$QUIESCE_MAX" || true
        "$BENCH_BIN" --format get --url "$tq" --label read-load --concurrency 2 --duration "$((READ_SECS + 3))" \
            --warmup 0 >>"$LOGF" 2>&1 &
        rpid=$!
        run_bench tally 1000 16 "$READ_SECS" 2
        loaded+=("$(field events_per_s "$RESULT")") loaded_p99+=("$(field p99_ms "$RESULT")")
        wait "$rpid" || true
        wait_drained "$QUIESCE_MAX" || true
    done
    local alone_m paced_m loaded_m
    alone_m=$(median "${alone[@]}") paced_m=$(median "${paced[@]}") loaded_m=$(median "${loaded[@]}")

    # d. warming after the cache is flushed, under a steady read load
    "$BENCH_BIN" --format get --url "$tq" --label warm-load --concurrency 4 --duration 9 --warmup 0 >>"$LOGF" 2>&1 &
    rpid=$!
    sleep 2
    local q0 q1 timeline="" t
    q0=$(curl -fsS "$base/healthz" | jq .reads.sqlite_queries)
    redis-cli -p "$CACHE_PORT" FLUSHALL >/dev/null
    for t in 1 2 3 4 5; do
        sleep 1
        q1=$(curl -fsS "$base/healthz" | jq .reads.sqlite_queries)
        timeline+="$((q1 - q0)) "
        q0=$q1
    done
    wait "$rpid" || true
    read_stop_vm

    {
        echo
        echo "## Reads: Tally vs InfluxDB vs VictoriaMetrics $(victoria-metrics -version 2>/dev/null | head -n1)"
        echo
        echo "Same data in each: one counter, 8,640 buckets of 10 s (24 h). A cached query_range of the last hour at"
        echo "10 s ($pts_t points from Tally, $pts_v from VictoriaMetrics), concurrency 16, $READ_PAIRS alternating runs of ${READ_SECS} s,"
        echo "medians; InfluxDB answers the equivalent InfluxQL (\`cumulative_sum(sum(value)) ... GROUP BY time(10s)\`)."
        echo
        echo "| system | queries/s (median) | p99 ms (median) |"
        echo "|---|---:|---:|"
        echo "| Tally (cache hit) | $tqm | $(median "${t_p99[@]}") |"
        echo "| Tally \`GET /api/v1/status/buildinfo\` (its HTTP floor: a constant 141 bytes, no cache) | $(median "${f_qps[@]}") | $(median "${f_p99[@]}") |"
        echo "| InfluxDB $(influxd version 2>/dev/null | awk '{ print $2 }') | $iqm | $(median "${i_p99[@]}") |"
        echo "| VictoriaMetrics | $vqm | $(median "${v_p99[@]}") |"
        echo
        echo "Ratios: Tally / InfluxDB $(awk -v a="$tqm" -v b="$iqm" 'BEGIN { printf "%.2f", a / b }'),"
        echo "Tally / VictoriaMetrics $(awk -v a="$tqm" -v b="$vqm" 'BEGIN { printf "%.2f", a / b }')."
        echo
        echo "A miss over the 24 h at 10 s (8,640 points; cache Redis stopped, so every request reads SQLite), concurrency 1:"
        echo "p50 $miss_p50 ms, p99 $miss_p99 ms ($miss_qps queries/s)."
        echo
        echo "Writes (batch 1,000, c=16) alone: $alone_m events/s; with a dashboard-like read load beside them (the cached"
        echo "query, $READ_LOAD_RATE queries/s): $paced_m events/s ($(awk -v a="$alone_m" -v b="$paced_m" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }') %);"
        echo "with a saturating one (closed loop, c=2): $loaded_m events/s ($(awk -v a="$alone_m" -v b="$loaded_m" 'BEGIN { printf "%+.1f", (b - a) * 100 / a }') %); medians of $READ_PAIRS runs each."
        echo "Write p99 (ms) in the same runs: alone $(median "${alone_p99[@]}"), with the dashboard-like read load $(median "${paced_p99[@]}"), with the saturating one $(median "${loaded_p99[@]}")."
        echo
        echo "Warming: the cached query at c=4, then FLUSHALL on the cache Redis: SQLite queries in each of the next 5 seconds: $timeline"
        echo "(one key: single flight and warming together keep it to about one query)."
    } >"$READ_MD"
    say "read section: Tally $tqm q/s (p99 $(median "${t_p99[@]}") ms; HTTP floor $(median "${f_qps[@]}") q/s, p99 $(median "${f_p99[@]}") ms), InfluxDB $iqm q/s, VictoriaMetrics $vqm q/s; miss p99 $miss_p99 ms;" \
        "writes $alone_m -> $paced_m ($READ_LOAD_RATE q/s) / $loaded_m (closed loop) ev/s under reads" \
        "(write p99 $(median "${alone_p99[@]}") -> $(median "${paced_p99[@]}") / $(median "${loaded_p99[@]}") ms); warming: $timeline"
}
