#!/usr/bin/env bash
# The StatsD listeners with real, unchanged clients from PyPI (installed by
# deploy/install-deps into a virtualenv): Python's `statsd` 4.x over UDP and
# TCP, and `datadog`'s DogStatsD client over UDP, at a modest rate; the
# totals in Redis and SQLite are exact. A bad line in a datagram is dropped
# and counted while the good lines beside it are kept; the kernel dropped
# nothing; lines received just before SIGTERM are stored; counter lines are
# folded (and not with statsd.fold_counters = false), with SQLite's line
# counts and weights those of the lines as sent.
source "$(dirname "$0")/lib.sh"
PY=${TALLY_PYTHON:-${TALLY_CACHE:-$HOME/.cache/tally}/python/bin/python3}
"$PY" -c 'import statsd, datadog' 2>/dev/null || fail "$PY cannot import statsd and datadog: run deploy/install-deps"

SPORT=${STATSD_PORT:-18125}
STATSD_UDP=true STATSD_TCP=true STATSD_PORT=$SPORT write_config
start_ingest
start_flusher
P=$METRIC_PREFIX
stats() { curl -fsS "$BASE_URL/healthz" | jq -r ".statsd.$1"; }
metric() { # NAME{LABELS}: its value in a fresh scrape of /metrics ("" when absent)
    curl -fsS "$BASE_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}
dropped() { metric "tally_statsd_lines_dropped_total{reason=\"$1\"}"; }

# wait_live NAME JQ WANT: until GET /v1/counters/NAME | JQ gives WANT (15 s).
wait_live() {
    local got="" i
    for ((i = 0; i < 75; i++)); do
        got=$(curl -sS "$BASE_URL/v1/counters/$1" | jq -r "$2" 2>/dev/null || true)
        [[ $got == "$3" ]] && break
        sleep 0.2
    done
    check_eq "live $1 $2" "$3" "$got"
}

# 1. Python statsd 4.x, UDP: one line per datagram, and a pipeline (several
# lines per datagram).
"$PY" - "$SPORT" "$P" <<'PYEOF'
import sys, statsd
port, p = int(sys.argv[1]), sys.argv[2]
c = statsd.StatsClient('127.0.0.1', port)
for _ in range(200):
    c.incr(p + '.udp.c')
c.incr(p + '.udp.c', 5)
c.gauge(p + '.udp.g', 42)
for v in (10, 20, 30):
    c.timing(p + '.udp.t', v)
with c.pipeline() as pipe:
    for _ in range(100):
        pipe.incr(p + '.udp.pipe')
for m in ('alice', 'bob', 'alice'):
    c.set(p + '.udp.s', m)
PYEOF
wait_live "$P.udp.c" .value 205
wait_live "$P.udp.pipe" .value 100
wait_live "$P.udp.g" '.series[0].value' 42
wait_live "$P.udp.t" '"\(.count) \(.sum) \(.min) \(.max)"' "3 60 10 30"
wait_live "$P.udp.s" '.series[0].value' 2

# 2. Python statsd 4.x, TCP: lines on one connection, and a pipeline.
"$PY" - "$SPORT" "$P" <<'PYEOF'
import sys, statsd
port, p = int(sys.argv[1]), sys.argv[2]
c = statsd.TCPStatsClient('127.0.0.1', port)
for _ in range(150):
    c.incr(p + '.tcp.c')
with c.pipeline() as pipe:
    for _ in range(50):
        pipe.incr(p + '.tcp.c', 2)
c.close()
PYEOF
wait_live "$P.tcp.c" .value 250

# 3. DogStatsD (the datadog package), UDP, with tags and a sample rate.
"$PY" - "$SPORT" "$P" <<'PYEOF'
import sys
from datadog.dogstatsd import DogStatsd
port, p = int(sys.argv[1]), sys.argv[2]
d = DogStatsd(host='127.0.0.1', port=port, disable_telemetry=True, disable_buffering=True,
              origin_detection_enabled=False)
for _ in range(30):
    d.increment(p + '.dog.c', tags=['env:prod', 'team:a'])
d.increment(p + '.dog.c', 4, tags=['env:dev'], sample_rate=0.5)  # counts 8 if sent (random)
d.gauge(p + '.dog.g', 7.5, tags=['env:prod'])
for v in (1, 2, 3, 4):
    d.distribution(p + '.dog.d', v)
d.event('deploy', 'web 1.2 is out', alert_type='info', tags=['env:prod'])
d.service_check(p + '.dog.check', DogStatsd.OK, tags=['env:prod'], message='fine')
d.flush()
PYEOF
wait_live "$P.dog.g" '.series[0].value' 7.5
wait_live "$P.dog.d" '"\(.count) \(.sum)"' "4 10"
got=$(curl -sS "$BASE_URL/v1/counters/$P.dog.c" | jq -r '[.series[] | select(.tags == "env:prod,team:a") | .value][0]')
check_eq "DogStatsD counter with tags" 30 "$got"
check_eq "the client's event and service check: counted, not stored" "1 1" \
    "$(stats events_ignored) $(stats service_checks_ignored)"

# 4. A bad line among good ones in one datagram: dropped and counted, the
# good lines kept.
invalid0=$(stats invalid)
"$PY" - "$SPORT" "$P" <<'PYEOF'
import socket, sys
port, p = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto(('%s.mix:1|c\nno colon here\n%s.mix:2|c\r\n\n%s.mix:x|c\n%s.mix:4|c' % (p, p, p, p)).encode(),
         ('127.0.0.1', port))
PYEOF
wait_live "$P.mix" .value 7
check_eq "bad lines counted" 2 "$(( $(stats invalid) - invalid0 ))"

# 4b. One datagram mixing what DogStatsD clients send: good lines, packed
# values (one event each), a container id, |e: and |card:, an event, a
# service check, and bad lines, each dropped under its reason code.
zero0=$(dropped zero_rate) utf0=$(dropped bad_utf8) ev0=$(metric tally_statsd_events_ignored_total)
sc0=$(metric tally_statsd_service_checks_ignored_total)
"$PY" - "$SPORT" "$P" <<'PYEOF'
import socket, sys
port, p = int(sys.argv[1]), sys.argv[2]
lines = [
    '%s.dd:1|c' % p,
    '%s.dd:2:3|c|c:ci-1234:abcd:ef' % p,
    '%s.dd.d:1:2:3|d|e:it-false,cn-web|card:low' % p,
    '_e{6,10}:deploy|web 1.2 ok|t:success|#env:prod',
    '_sc|%s.dd.check|1|#env:prod|m:slow | but up' % p,
    '%s.dd:100|c|@0' % p,
    '%s.dd.caf\xc3:1|c' % p,
    '%s.dd:4|c|#,,' % p,
]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.sendto('\n'.join(lines).encode('latin-1'), ('127.0.0.1', port))
PYEOF
wait_live "$P.dd" .value 10
wait_live "$P.dd.d" '"\(.count) \(.sum) \(.min) \(.max)"' "3 6 1 3"
check_eq "dropped zero_rate, bad_utf8; events, service checks ignored" "1 1 1 1" \
    "$(( $(dropped zero_rate) - zero0 )) $(( $(dropped bad_utf8) - utf0 )) $(( $(metric tally_statsd_events_ignored_total) - ev0 )) $(( $(metric tally_statsd_service_checks_ignored_total) - sc0 ))"
check_eq "one sample per reason code" 19 \
    "$(curl -fsS "$BASE_URL/metrics" | grep -c '^tally_statsd_lines_dropped_total{')"
check_eq "/healthz invalid is the total of the codes" "$(stats invalid)" \
    "$(curl -fsS "$BASE_URL/metrics" | awk '/^tally_statsd_lines_dropped_total\{/ { s += $2 } END { print s }')"

# SQLite gets exactly what the listeners received.
wait_sqlite_counter "$P.udp.c" 205
wait_sqlite_counter "$P.udp.pipe" 100
wait_sqlite_counter "$P.tcp.c" 250
wait_sqlite_counter "$P.mix" 7
wait_sqlite_counter "$P.dd" 10
check_eq "sqlite distribution lines|sum" "3|6.0" \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines), SUM(value) FROM metrics WHERE name='$P.dd.d'")"
# Counter lines differing only in their value were folded into one event per
# batch (tally_statsd_lines_folded_total), yet SQLite counts every line sent:
# its lines and weight are those of the lines one by one.
check_eq "sqlite folded counters lines|value|weight" "100|100.0|100.0 200|250.0|200.0" \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines), SUM(value), SUM(weight) FROM metrics WHERE name='$P.udp.pipe'") $(sqlite3 "$WORK/tally.db" "SELECT SUM(lines), SUM(value), SUM(weight) FROM metrics WHERE name='$P.tcp.c'")"
folded=$(stats folded)
((folded >= 99)) || fail "expected the pipeline's 100 identical lines folded (at least 99), /healthz says $folded"
check_eq "/metrics folded lines" "$folded" "$(metric tally_statsd_lines_folded_total | awk '{ printf "%d", $1 }')"
check_eq "events and service checks reach no store" "0 0" \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM metrics WHERE name LIKE '%check%' OR name LIKE '\_e%' ESCAPE '\\'") $(redis-cli -p "$TALLY_REDIS_PORT" --raw KEYS "tally:{*}:$P.dd.check*" | awk NF | wc -l)"
check_eq "kernel drops, lost lines" "0 0 0 0" \
    "$(stats kernel_drops) $(stats lost_busy) $(stats lost_failed) $(stats lost_unknown)"

# 5. SIGTERM right after a burst: what the sockets hold is read, batched
# and stored before tally-ingest exits.
"$PY" - "$SPORT" "$P" <<'PYEOF'
import socket, sys
port, p = int(sys.argv[1]), sys.argv[2]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(20):
    u.sendto(('\n'.join(['%s.stop:1|c' % p] * 50)).encode(), ('127.0.0.1', port))
t = socket.create_connection(('127.0.0.1', port))
t.sendall(('%s.stop:1|c\n' % p).encode() * 500)
t.close()
PYEOF
stop_ingest
wait_sqlite_counter "$P.stop" 1500
check_eq "sqlite lines of the burst" 1500 \
    "$(sqlite3 "$WORK/tally.db" "SELECT SUM(lines) FROM metrics WHERE name='$P.stop'")"
log "ok: 1,500 lines sent just before SIGTERM are in SQLite"

# 5b. statsd.fold_counters = false (flushers older than the fold): every line
# is its own event, and the totals are the same.
STATSD_UDP=true STATSD_TCP=true STATSD_PORT=$SPORT STATSD_SETTINGS='fold_counters = false;' write_config
start_ingest
"$PY" - "$SPORT" "$P" <<'PYEOF'
import socket, sys
port, p = int(sys.argv[1]), sys.argv[2]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(('\n'.join(['%s.nofold:2|c' % p] * 100)).encode(), ('127.0.0.1', port))
PYEOF
wait_sqlite_counter "$P.nofold" 200
check_eq "fold off: folded, sqlite lines" "0 100" \
    "$(stats folded) $(sqlite3 "$WORK/tally.db" "SELECT SUM(lines) FROM metrics WHERE name='$P.nofold'")"
stop_ingest

# 6. No credentials in StatsD: a non-loopback address must be asked for; and
# a port another process holds (say a second tally-ingest) is refused, not
# shared through SO_REUSEPORT.
STATSD_UDP=true STATSD_TCP=true STATSD_PORT=$SPORT STATSD_SETTINGS='listen_address = "0.0.0.0";' write_config
expect_refusal "StatsD on 0.0.0.0 without statsd.allow_remote" "statsd.allow_remote = true" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
STATSD_UDP=true STATSD_TCP=true STATSD_PORT=$SPORT write_config
"$PY" -c "import socket, time, sys
s = socket.socket(); s.bind(('127.0.0.1', $SPORT)); s.listen(1)
print('bound', flush=True); time.sleep(60)" >"$WORK/holder.out" 2>&1 &
holder=$!
for ((i = 0; i < 50; i++)); do grep -q bound "$WORK/holder.out" && break; sleep 0.1; done
expect_refusal "StatsD port held by another process" "statsd TCP 127.0.0.1:$SPORT: Address already in use" \
    "$TALLY_BUILD/tally-ingest" -c "$CONF"
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true

stop_flusher
finish
