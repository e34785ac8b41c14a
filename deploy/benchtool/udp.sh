# deploy/benchtool/udp.sh — the UDP section of deploy/bench (sourced by it,
# after the bench stack is up; uses its helpers and variables).
#
# The same generator (tally-udpgen: counter lines, UDP_LINES per datagram,
# paced) against Tally's StatsD listener and against collectd's statsd plugin
# (Debian's collectd-core, started here on its own port), each over a ladder of
# rates (UDP_RATES lines/s, UDP_SECS each), UDP_ROUNDS rounds of Tally, collectd
# and collectd given Tally's receive buffer: the lines/s the generator really
# sent at the highest rate at which the kernel dropped nothing (/proc/net/snmp
# Udp RcvbufErrors, global, unchanged over the run and the 2 s after it), the
# CPU the receiver used there, and the median over the rounds. For Tally,
# every line it received must then reach SQLite (the flusher's sum over the
# bench's names equals the listener's lines_stored, and nothing was lost).
# Writes $OUT/udp.md.

UDP_SECS=${BENCH_UDP_SECONDS:-5}
UDP_LINES=${BENCH_UDP_LINES_PER_DATAGRAM:-20}
UDP_RATES=${BENCH_UDP_RATES:-"100000 200000 400000 800000 1200000 1600000 2000000 2400000 3200000 4000000 4800000"}
UDP_ROUNDS=${BENCH_UDP_ROUNDS:-3}
COLLECTD_PORT=$(free_port "${BENCH_COLLECTD_PORT:-18226}")
COLLECTD_DIR=$OUT/collectd
UDP_MD=$OUT/udp.md
UDPGEN=$BUILD/tally-udpgen
COLLECTD_PID=

udp_install() {
    dpkg-query -W -f='${db:Status-Status}' collectd-core 2>/dev/null | grep -q '^installed$' && return
    say "installing collectd-core (Debian)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends collectd-core >>"$LOGF" 2>&1 \
        || die "apt-get install collectd-core failed (log: $LOGF)"
}

udp_start_collectd() {
    rm -rf "$COLLECTD_DIR"
    mkdir -p "$COLLECTD_DIR"
    cat >"$COLLECTD_DIR/collectd.conf" <<CONF
Hostname "bench"
FQDNLookup false
BaseDir "$COLLECTD_DIR"
PIDFile "$COLLECTD_DIR/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
Interval 10
LoadPlugin statsd
<Plugin statsd>
  Host "127.0.0.1"
  Port "$COLLECTD_PORT"
</Plugin>
CONF
    collectd -f -C "$COLLECTD_DIR/collectd.conf" >>"$COLLECTD_DIR/collectd.log" 2>&1 &
    COLLECTD_PID=$!
    for ((i = 0; i < 50; i++)); do
        ss -lun 2>/dev/null | grep -q ":$COLLECTD_PORT " && return
        kill -0 "$COLLECTD_PID" 2>/dev/null || die "collectd exited (log: $COLLECTD_DIR/collectd.log)"
        sleep 0.1
    done
    die "collectd does not listen on UDP $COLLECTD_PORT (log: $COLLECTD_DIR/collectd.log)"
}

udp_stop_collectd() {
    [[ -n $COLLECTD_PID ]] || return 0
    kill "$COLLECTD_PID" 2>/dev/null || true
    wait "$COLLECTD_PID" 2>/dev/null || true
    COLLECTD_PID=
}

rcvbuf_errors() { awk '/^Udp:/ { if (++n == 2) print $6 }' /proc/net/snmp; }
no_loss() { echo 0; }
# Lines Tally received but did not store (its hand-over queue full, a batch refused, ...).
tally_lost() {
    curl -fsS "http://127.0.0.1:$INGEST_PORT/healthz" |
        jq '.statsd.lost_busy + .statsd.lost_failed + .statsd.lost_unknown + .statsd.invalid'
}
# CPU ticks (user + system, 1/100 s) used so far by the processes given.
cpu_ticks() {
    local p t=0 n
    for p in "$@"; do
        n=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null) || n=0
        t=$((t + ${n:-0}))
    done
    echo "$t"
}
# What serves Tally's StatsD lines: ingest, the flusher, Kafka, Redis.
tally_pids() { local c; for c in ingest flusher kafka redis; do cat "$STACK_VAR/run/$c.pid"; done; }

# udp_ladder LABEL PORT NAME LOSS_FN PIDS...: sets LADDER ("rate:drops[/lost]@sent
# ..."), BEST (the most lines/s the generator really sent in a run without
# kernel drops and without lines LOSS_FN counts as lost after receipt, up to
# the first run with either; 0 if none) and CORES (CPU the PIDS used over
# that run, in cores).
udp_ladder() {
    local label=$1 port=$2 name=$3 loss=$4 rate e0 e1 l0 l1 c0 c1 t0 t1 out sent
    shift 4
    LADDER="" BEST=0 CORES=0
    for rate in $UDP_RATES; do
        e0=$(rcvbuf_errors) l0=$($loss) c0=$(cpu_ticks "$@") t0=$(now)
        out=$("$UDPGEN" --port "$port" --rate "$rate" --duration "$UDP_SECS" \
            --lines-per-datagram "$UDP_LINES" --series 100 --name "$name" 2>>"$LOGF") \
            || die "tally-udpgen against $label failed (log: $LOGF)"
        printf '%s %s\n' "$label" "$out" >>"$RUNS"
        sleep 2
        e1=$(rcvbuf_errors) l1=$($loss) c1=$(cpu_ticks "$@") t1=$(now)
        sent=$(field lines_per_s "$out")
        sent=${sent%.*}
        LADDER+="$rate:$((e1 - e0))$([[ $loss == no_loss ]] || echo "/$((l1 - l0))")@$sent "
        ((e1 == e0 && l1 == l0)) || break
        ((sent > BEST)) || continue
        BEST=$sent
        CORES=$(awk -v c="$((c1 - c0))" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", c / 100 / (b - a) }')
    done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

# Every line Tally received since (L0, S0) reached SQLite; sets UDP_GOT, UDP_RECEIVED, UDP_STORED.
udp_wait_stored() {
    local base="http://127.0.0.1:$INGEST_PORT" l1 s1 i
    for ((i = 0; i < 600; i++)); do
        l1=$(curl -fsS "$base/healthz" | jq .statsd.lines) s1=$(curl -fsS "$base/healthz" | jq .statsd.lines_stored)
        UDP_GOT=$(sqlite3 "$DB" "SELECT CAST(COALESCE(SUM(value), 0) AS INTEGER) FROM metrics WHERE name LIKE 'bench.udpt.%'" 2>/dev/null || echo 0)
        ((s1 - $2 == l1 - $1 && UDP_GOT == s1 - $2)) && break
        sleep 0.2
    done
    UDP_RECEIVED=$((l1 - $1)) UDP_STORED=$((s1 - $2))
}

udp_section() {
    udp_install
    [[ -x $UDPGEN ]] || die "$UDPGEN not built"
    local base="http://127.0.0.1:$INGEST_PORT" l0 s0 lost round rmem rcvbuf
    local -a t_best t_cores c_best c_cores d_best d_cores rows
    say "udp section: Tally's StatsD listener (127.0.0.1:$STATSD_PORT) vs collectd's statsd plugin (127.0.0.1:$COLLECTD_PORT), $UDP_LINES lines per datagram, $UDP_ROUNDS rounds"
    l0=$(curl -fsS "$base/healthz" | jq .statsd.lines) s0=$(curl -fsS "$base/healthz" | jq .statsd.lines_stored)
    # collectd twice: with the kernel's default receive buffer (what it gets
    # out of the box), and with Tally's (statsd.rcvbuf_bytes, given to it as
    # net.core.rmem_default for its run: the plugin has no setting of its own)
    rmem=$(sysctl -n net.core.rmem_default) rcvbuf=$(sed -nE 's/^[[:space:]]*rcvbuf_bytes[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$CONF")
    for ((round = 1; round <= UDP_ROUNDS; round++)); do
        udp_ladder tally-udp "$STATSD_PORT" bench.udpt tally_lost $(tally_pids)
        t_best+=("$BEST") t_cores+=("$CORES")
        rows+=("| $round | Tally | $BEST | $CORES | $LADDER |")
        udp_start_collectd
        udp_ladder collectd-udp "$COLLECTD_PORT" bench.udpc no_loss "$COLLECTD_PID"
        c_best+=("$BEST") c_cores+=("$CORES")
        rows+=("| $round | collectd, default buffer | $BEST | $CORES | $LADDER |")
        udp_stop_collectd
        sysctl -q -w net.core.rmem_default="${rcvbuf:-8388608}" || die "cannot raise net.core.rmem_default"
        udp_start_collectd
        udp_ladder collectd-udp-rcvbuf "$COLLECTD_PORT" bench.udpd no_loss "$COLLECTD_PID"
        d_best+=("$BEST") d_cores+=("$CORES")
        rows+=("| $round | collectd, Tally's buffer | $BEST | $CORES | $LADDER |")
        udp_stop_collectd
        sysctl -q -w net.core.rmem_default="$rmem"
        say "udp round $round: Tally ${t_best[-1]}, collectd ${c_best[-1]} (default buffer), ${d_best[-1]} (Tally's buffer) lines/s"
    done
    udp_wait_stored "$l0" "$s0"
    lost=$(curl -fsS "$base/healthz" | jq '.statsd.lost_busy + .statsd.lost_failed + .statsd.lost_unknown + .statsd.invalid')
    local tm cm dm
    tm=$(median "${t_best[@]}") cm=$(median "${c_best[@]}") dm=$(median "${d_best[@]}")
    {
        echo
        echo "## StatsD over UDP: Tally vs collectd $(collectd -h 2>/dev/null | sed -nE 's/^collectd ([0-9.]+).*/\1/p' | head -n1)"
        echo
        echo "tally-udpgen, counter lines, $UDP_LINES lines per datagram, 100 series, ${UDP_SECS} s per rate, $UDP_ROUNDS rounds"
        echo "(each: Tally, collectd, collectd with Tally's buffer). A rate passes when /proc/net/snmp"
        echo "RcvbufErrors did not move (and, for Tally, no received line was lost inside it). The figure is"
        echo "the most the generator really sent per second in a rate that passed, up to the first that failed"
        echo "(it shares the two cores, so it sends less than asked when the receiver takes CPU from it: a"
        echo "ladder passing its top rate was held back by the generator, not by the receiver). Tally: statsd.udp_readers"
        echo "as configured, receive buffer statsd.rcvbuf_bytes (${rcvbuf:-8388608} bytes), every line to Kafka, Redis and SQLite;"
        echo "collectd-core's statsd plugin (one thread, counts in memory) with the kernel's default buffer"
        echo "($rmem bytes), then with Tally's (net.core.rmem_default raised for that run). Cores: the CPU the"
        echo "receiver used at that rate (Tally: ingest, flusher, Kafka and Redis together)."
        echo
        echo "| system | median lines/s without drops | rounds |"
        echo "|---|---:|---|"
        echo "| Tally | $tm | ${t_best[*]} |"
        echo "| collectd, default buffer | $cm | ${c_best[*]} |"
        echo "| collectd, Tally's buffer | $dm | ${d_best[*]} |"
        echo
        echo "Ratio of the medians, Tally to collectd: $(ratio "$tm" "$cm") (collectd as installed, the kernel's default"
        echo "buffer); $(ratio "$tm" "$dm") (collectd given Tally's buffer)."
        echo
        echo "| round | system | lines/s without drops | cores at it | ladder (rate:drops[/lost]@sent) |"
        echo "|---|---|---:|---:|---|"
        printf '%s\n' "${rows[@]}"
        echo
        echo "Tally received $UDP_RECEIVED lines over its ladders; $UDP_STORED are in batches Kafka holds and SQLite's sum over"
        echo "them is $UDP_GOT (lines lost or dropped inside Tally: $lost)."
    } >"$UDP_MD"
    say "udp section: medians: Tally $tm lines/s, collectd $cm (default buffer), $dm (Tally's buffer); Tally received $UDP_RECEIVED, SQLite $UDP_GOT"
}
