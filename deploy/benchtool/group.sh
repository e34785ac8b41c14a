# deploy/benchtool/group.sh — the flusher-group section of deploy/bench
# (sourced by it, after the bench stack is up; uses its helpers and variables).
#
# Does a second flusher on the same SQLite file drain faster? One backlog on
# its own 2-partition topic (a second tally-ingest, GROUP_SECS of writes at
# batch 1000, c=4, no flusher running), then GROUP_PAIRS alternating drains of
# the whole backlog into a fresh database: by one flusher, and by two flushers
# of one consumer group (one partition each) sharing the file. Reports the
# medians of the drain time (from start: the group's join and first rebalance
# included, as a failover pays them), of lines/s, and of the time SQLite
# transactions took (the sum of the commits' duration_ms: the one-writer part
# that a second flusher cannot share). Writes $OUT/group.md.

GROUP_SECS=${BENCH_GROUP_SECONDS:-10}
GROUP_NAMES=${BENCH_GROUP_NAMES:-100000} # many series: SQLite rows, not decoding, dominate
GROUP_PAIRS=${BENCH_GROUP_PAIRS:-3}
GROUP_MD=$OUT/group.md
GROUP_DIR=$OUT/group
GROUP_INGEST_PID=
GROUP_FLUSHER_PIDS=()

# group_conf FILE DB ID GROUP: the bench config on topic bench-group (2
# partitions), ingest on GROUP_INGEST_PORT without StatsD, flusher metrics off.
group_conf() {
    sed -E -e "s/^([[:space:]]*listen_port[[:space:]]*=[[:space:]]*)[0-9]+/\1$GROUP_INGEST_PORT/" \
        -e "s/^([[:space:]]*topic[[:space:]]*=[[:space:]]*)\"[^\"]*\"/\1\"bench-group\"/" \
        -e "s/^([[:space:]]*partitions[[:space:]]*=[[:space:]]*)[0-9]+/\12/" \
        -e "s/^([[:space:]]*(udp|tcp)_enabled[[:space:]]*=[[:space:]]*)true/\1false/" \
        -e "s/^([[:space:]]*metrics_port[[:space:]]*=[[:space:]]*)[0-9]+/\10/" \
        -e "s|^([[:space:]]*path[[:space:]]*=[[:space:]]*)\"[^\"]*\"|\1\"$2\"|" \
        -e "s/^([[:space:]]*instance_id[[:space:]]*=[[:space:]]*)\"[^\"]*\"/\1\"$3\"/" \
        -e "s/^([[:space:]]*consumer_group[[:space:]]*=[[:space:]]*)\"[^\"]*\"/\1\"$4\"/" \
        "$CONF" >"$1"
    grep -qF 'topic = "bench-group"' "$1" && grep -qF "instance_id = \"$3\"" "$1" ||
        die "could not write $1 (conf/tally.conf changed shape?)"
}

group_lines() { # DB: lines committed
    local n
    n=$(sqlite3 -cmd '.timeout 10000' "$1" "SELECT COALESCE(SUM(lines), 0) FROM metrics" 2>/dev/null) || n=0
    [[ $n =~ ^[0-9]+$ ]] || n=0
    echo "$n"
}

group_stop() {
    local pid
    for pid in "${GROUP_FLUSHER_PIDS[@]}" $GROUP_INGEST_PID; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    GROUP_FLUSHER_PIDS=() GROUP_INGEST_PID=
}

# group_drain N PAIR WANT: N flushers drain the backlog (WANT lines) into a
# fresh database; prints the seconds it took.
group_drain() {
    local n=$1 pair=$2 want=$3 db=$GROUP_DIR/drain-$2-$1.db i start t
    for ((i = 1; i <= n; i++)); do
        group_conf "$GROUP_DIR/flusher-$pair-$n-$i.conf" "$db" "bench-g$i" "bench-group-$pair-$n"
    done
    start=$(now)
    for ((i = 1; i <= n; i++)); do
        "$BUILD/tally-flusher" -c "$GROUP_DIR/flusher-$pair-$n-$i.conf" >>"$GROUP_DIR/flusher-$pair-$n-$i.log" 2>&1 &
        GROUP_FLUSHER_PIDS+=("$!")
    done
    while (($(group_lines "$db") < want)); do
        t=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }')
        ((t < QUIESCE_MAX)) || die "group: $n flusher(s) still short of $want lines after $t s (logs: $GROUP_DIR)"
        sleep 0.1
    done
    t=$(now)
    group_stop
    local commit_s
    commit_s=$(cat "$GROUP_DIR"/flusher-"$pair"-"$n"-*.log |
        sed -nE 's/.* commit: .*duration_ms=([0-9.]+).*/\1/p' | awk '{ s += $1 } END { printf "%.2f", s / 1000 }')
    awk -v a="$start" -v b="$t" -v c="$commit_s" 'BEGIN { printf "%.2f %s", b - a, c }'
}

group_section() {
    rm -rf "$GROUP_DIR"
    mkdir -p "$GROUP_DIR"
    GROUP_INGEST_PORT=$(free_port $((INGEST_PORT + 10)))
    group_conf "$GROUP_DIR/ingest.conf" "$GROUP_DIR/unused.db" "bench-ingest" "bench-group-ingest"
    "$BUILD/tally-ingest" -c "$GROUP_DIR/ingest.conf" >>"$GROUP_DIR/ingest.log" 2>&1 &
    GROUP_INGEST_PID=$!
    local i
    for ((i = 0; i < 150; i++)); do
        curl -fsS "http://127.0.0.1:$GROUP_INGEST_PORT/healthz" 2>/dev/null | grep -q '"status":"ok"' && break
        ((i < 149)) || die "group: the second tally-ingest is not healthy (log: $GROUP_DIR/ingest.log)"
        sleep 0.2
    done
    say "group section: a ${GROUP_SECS}s backlog on a 2-partition topic, drained by 1 flusher and by 2 sharing one SQLite file, $GROUP_PAIRS pairs"
    local url=$TALLY_URL expected=$EXPECTED names=$NAMES
    TALLY_URL=http://127.0.0.1:$GROUP_INGEST_PORT/v1/events NAMES=$GROUP_NAMES
    run_bench tally-group 1000 4 "$GROUP_SECS" 1
    TALLY_URL=$url EXPECTED=$expected NAMES=$names # (the bench stack's flusher never sees this topic)
    local want pair one two ones="" twos="" c1s="" c2s="" rows
    want=$(field acked_total "$RESULT")
    kill -TERM "$GROUP_INGEST_PID" && wait "$GROUP_INGEST_PID" 2>/dev/null || true
    GROUP_INGEST_PID=
    for ((pair = 1; pair <= GROUP_PAIRS; pair++)); do
        read -r one c1 <<<"$(group_drain 1 "$pair" "$want")"
        read -r two c2 <<<"$(group_drain 2 "$pair" "$want")"
        ones+="$one " twos+="$two " c1s+="$c1 " c2s+="$c2 "
        say "  pair $pair: $want lines drained in $one s by 1 flusher (SQLite commits $c1 s), $two s by 2 ($c2 s)"
    done
    rows=$(sqlite3 "$GROUP_DIR/drain-1-1.db" "SELECT count(*) FROM metrics")
    local m1 m2 mc1 mc2
    # shellcheck disable=SC2086
    m1=$(median $ones) m2=$(median $twos) mc1=$(median $c1s) mc2=$(median $c2s)
    {
        echo "## Flusher group: one SQLite file, 1 vs 2 flushers"
        echo
        echo "Backlog: $want lines over $GROUP_NAMES names (batch 1000, 2 partitions; $rows SQLite rows);"
        echo "drain into a fresh database from the start of the flushers (group join included), medians of $GROUP_PAIRS pairs."
        echo
        echo "| flushers | drain (s) | lines/s | SQLite commit time (s) |"
        echo "|---:|---:|---:|---:|"
        awk -v n=1 -v s="$m1" -v w="$want" -v c="$mc1" 'BEGIN { printf "| %d | %.2f | %.0f | %.2f |\n", n, s, w / s, c }'
        awk -v n=2 -v s="$m2" -v w="$want" -v c="$mc2" 'BEGIN { printf "| %d | %.2f | %.0f | %.2f |\n", n, s, w / s, c }'
        echo
        echo "Drains per pair (1 flusher / 2 flushers): $ones/ $twos; commit seconds: $c1s/ $c2s"
    } >"$GROUP_MD"
    say "group: 1 flusher $m1 s, 2 flushers $m2 s for $want lines (median)"
}
