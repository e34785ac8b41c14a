# deploy/benchtool/group.sh — the flusher-group section of deploy/bench
# (sourced by it, after the bench stack is up; uses its helpers and variables).
#
# Does a second flusher on the same SQLite file drain faster? One backlog on
# its own 2-partition topic (a second tally-ingest, GROUP_SECS of writes at
# batch 1000, c=4, no flusher running), then GROUP_PAIRS alternating drains of
# the whole backlog into a fresh database: by one flusher, and by two flushers
# of one consumer group (one partition each) sharing the file. Reports the
# medians of the drain time and of lines/s. Writes $OUT/group.md.

GROUP_SECS=${BENCH_GROUP_SECONDS:-10}
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
    awk -v a="$start" -v b="$t" 'BEGIN { printf "%.2f", b - a }'
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
    local url=$TALLY_URL expected=$EXPECTED
    TALLY_URL=http://127.0.0.1:$GROUP_INGEST_PORT/v1/events
    run_bench tally-group 1000 4 "$GROUP_SECS" 1
    TALLY_URL=$url EXPECTED=$expected # (the bench stack's flusher never sees this topic)
    local want pair one two ones="" twos=""
    want=$(field acked_total "$RESULT")
    kill -TERM "$GROUP_INGEST_PID" && wait "$GROUP_INGEST_PID" 2>/dev/null || true
    GROUP_INGEST_PID=
    for ((pair = 1; pair <= GROUP_PAIRS; pair++)); do
        one=$(group_drain 1 "$pair" "$want")
        two=$(group_drain 2 "$pair" "$want")
        ones+="$one " twos+="$two "
        say "  pair $pair: $want lines drained in $one s by 1 flusher, $two s by 2"
    done
    local m1 m2
    # shellcheck disable=SC2086
    m1=$(median $ones) m2=$(median $twos)
    {
        echo "## Flusher group: one SQLite file, 1 vs 2 flushers"
        echo
        echo "Backlog: $want lines (batch 1000, 2 partitions); drain into a fresh database, medians of $GROUP_PAIRS pairs."
        echo
        echo "| flushers | drain (s) | lines/s |"
        echo "|---:|---:|---:|"
        awk -v n=1 -v s="$m1" -v w="$want" 'BEGIN { printf "| %d | %.2f | %.0f |\n", n, s, w / s }'
        awk -v n=2 -v s="$m2" -v w="$want" 'BEGIN { printf "| %d | %.2f | %.0f |\n", n, s, w / s }'
        echo
        echo "Drains per pair (1 flusher / 2 flushers): $ones/ $twos"
    } >"$GROUP_MD"
    say "group: 1 flusher $m1 s, 2 flushers $m2 s for $want lines (median)"
}
