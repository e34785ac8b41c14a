# deploy/benchtool/udp.sh — the UDP section of deploy/bench (sourced by it,
# after the bench stack is up; uses its helpers and variables).
#
# The same generator (tally-udpgen: counter lines, UDP_LINES per datagram,
# paced) against Tally's StatsD listener and against collectd's statsd plugin
# (Debian's collectd-core, started here on its own port), each over a ladder of
# rates (UDP_RATES lines/s, UDP_SECS each): the highest rate at which the
# kernel dropped nothing (/proc/net/snmp Udp RcvbufErrors, global, unchanged
# over the run and the second after it). For Tally, every line it received
# must then reach SQLite (the flusher's sum over the bench's names equals the
# listener's lines_stored, and nothing was lost). Writes $OUT/udp.md.

UDP_SECS=${BENCH_UDP_SECONDS:-5}
UDP_LINES=${BENCH_UDP_LINES_PER_DATAGRAM:-20}
UDP_RATES=${BENCH_UDP_RATES:-"100000 200000 400000 800000 1200000 1600000 2000000 2400000 3200000"}
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

# udp_ladder LABEL PORT NAME LOSS_FN: sets LADDER ("rate:drops[/lost] ...")
# and BEST (the highest rate without kernel drops and without lines LOSS_FN
# counts as lost after receipt, 0 if none).
udp_ladder() {
    local label=$1 port=$2 name=$3 loss=$4 rate e0 e1 l0 l1 out
    LADDER="" BEST=0
    for rate in $UDP_RATES; do
        e0=$(rcvbuf_errors) l0=$($loss)
        out=$("$UDPGEN" --port "$port" --rate "$rate" --duration "$UDP_SECS" \
            --lines-per-datagram "$UDP_LINES" --series 100 --name "$name" 2>>"$LOGF") \
            || die "tally-udpgen against $label failed (log: $LOGF)"
        printf '%s %s\n' "$label" "$out" >>"$RUNS"
        sleep 2
        e1=$(rcvbuf_errors) l1=$($loss)
        LADDER+="$rate:$((e1 - e0))$([[ $loss == no_loss ]] || echo "/$((l1 - l0))") "
        ((e1 == e0 && l1 == l0)) || break
        BEST=$rate
    done
}

udp_section() {
    udp_install
    [[ -x $UDPGEN ]] || die "$UDPGEN not built"
    local base="http://127.0.0.1:$INGEST_PORT" l0 s0 l1 s1 lost got
    say "udp section: Tally's StatsD listener (127.0.0.1:$STATSD_PORT) vs collectd's statsd plugin (127.0.0.1:$COLLECTD_PORT), $UDP_LINES lines per datagram"
    l0=$(curl -fsS "$base/healthz" | jq .statsd.lines) s0=$(curl -fsS "$base/healthz" | jq .statsd.lines_stored)
    udp_ladder tally-udp "$STATSD_PORT" bench.udpt tally_lost
    local tally_ladder=$LADDER tally_best=$BEST
    # every line received reaches SQLite
    for ((i = 0; i < 600; i++)); do
        l1=$(curl -fsS "$base/healthz" | jq .statsd.lines) s1=$(curl -fsS "$base/healthz" | jq .statsd.lines_stored)
        got=$(sqlite3 "$DB" "SELECT CAST(COALESCE(SUM(value), 0) AS INTEGER) FROM metrics WHERE name LIKE 'bench.udpt.%'" 2>/dev/null || echo 0)
        ((s1 - s0 == l1 - l0 && got == s1 - s0)) && break
        sleep 0.2
    done
    lost=$(curl -fsS "$base/healthz" | jq '.statsd.lost_busy + .statsd.lost_failed + .statsd.lost_unknown + .statsd.invalid')
    # collectd twice: with the kernel's default receive buffer (what it gets
    # out of the box), and with Tally's (statsd.rcvbuf_bytes, given to it as
    # net.core.rmem_default for its run: the plugin has no setting of its own)
    local rmem rcvbuf
    rmem=$(sysctl -n net.core.rmem_default) rcvbuf=$(sed -nE 's/^[[:space:]]*rcvbuf_bytes[[:space:]]*=[[:space:]]*([0-9]+).*/\1/p' "$CONF")
    udp_start_collectd
    udp_ladder collectd-udp "$COLLECTD_PORT" bench.udpc no_loss
    local collectd_ladder=$LADDER collectd_best=$BEST
    udp_stop_collectd
    sysctl -q -w net.core.rmem_default="${rcvbuf:-8388608}" || die "cannot raise net.core.rmem_default"
    udp_start_collectd
    udp_ladder collectd-udp-rcvbuf "$COLLECTD_PORT" bench.udpd no_loss
    local collectd2_ladder=$LADDER collectd2_best=$BEST
    udp_stop_collectd
    sysctl -q -w net.core.rmem_default="$rmem"
    {
        echo
        echo "## StatsD over UDP: Tally vs collectd $(collectd -h 2>/dev/null | sed -nE 's/^collectd ([0-9.]+).*/\1/p' | head -n1)"
        echo
        echo "tally-udpgen, counter lines, $UDP_LINES lines per datagram, 100 series, ${UDP_SECS} s per rate; a rate passes"
        echo "when /proc/net/snmp RcvbufErrors did not move (and, for Tally, no received line was lost inside it:"
        echo "drops/lost in the ladder). Tally: statsd.udp_readers as configured, receive buffer statsd.rcvbuf_bytes"
        echo "(${rcvbuf:-8388608} bytes); collectd-core's statsd plugin (one thread) with the kernel's default buffer"
        echo "($rmem bytes), then with Tally's (net.core.rmem_default raised for that run)."
        echo
        echo "| system | highest rate without kernel drops (lines/s) | ladder (rate:drops[/lost]) |"
        echo "|---|---:|---|"
        echo "| Tally | $tally_best | $tally_ladder |"
        echo "| collectd, default buffer | $collectd_best | $collectd_ladder |"
        echo "| collectd, Tally's buffer | $collectd2_best | $collectd2_ladder |"
        echo
        echo "Ratio to collectd with the same buffer: $(awk -v a="$tally_best" -v b="$collectd2_best" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }');" \
            "with its default buffer: $(awk -v a="$tally_best" -v b="$collectd_best" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }')."
        echo "Tally received $((l1 - l0)) lines over its ladder; $((s1 - s0)) are in batches Kafka holds and SQLite's sum over"
        echo "them is $got (lines lost or dropped inside Tally: $lost)."
    } >"$UDP_MD"
    say "udp section: Tally $tally_best lines/s, collectd $collectd2_best (its default buffer: $collectd_best) lines/s without drops; Tally received $((l1 - l0)), SQLite $got"
}
