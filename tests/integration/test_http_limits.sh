#!/usr/bin/env bash
# The limits at the HTTP edge (design rule 8) against a real tally-ingest:
# every answer is JSON (unknown methods and routes, libevent's own error
# pages), each limit answers as README "Limits and security" says, a slow
# client is cut off, connections past the limit are refused, and clients that
# close, send chunked bodies or expect 100-continue get their answers.
source "$(dirname "$0")/lib.sh"

cat >"$CONF" <<CONF
ingest = { listen_address = "127.0.0.1"; listen_port = $HTTP_PORT;
           max_body_bytes = 65536L; max_connections = 40; client_timeout_seconds = 2;
           max_header_bytes = 4096L; max_header_count = 20; max_series_per_batch = 1000; };
kafka = { brokers = "127.0.0.1:$TALLY_KAFKA_PORT"; topic = "$TOPIC"; partitions = 1;
          max_message_bytes = 4096; };
redis = { host = "127.0.0.1"; port = $TALLY_REDIS_PORT; };
sqlite = { path = "$WORK/tally.db"; };
statsd = { udp_enabled = false; tcp_enabled = false; };
CONF
start_ingest
P=$METRIC_PREFIX

# raw REQUEST_FILE: sends the bytes of the file on a fresh connection, prints
# the whole answer (until the server closes, at most 10 s).
raw() {
    python3 - "$1" "$HTTP_PORT" <<'PY'
import socket, sys
data = open(sys.argv[1], "rb").read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[2])))
s.settimeout(10)
s.sendall(data)
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except OSError:
    pass
sys.stdout.write(out.decode(errors="replace"))
PY
}
status_of() { head -n1 <<<"$1" | tr -d '\r' | cut -d' ' -f2; }
json_error_of() { sed -n '/^\r\{0,1\}$/,$p' <<<"$1" | tail -n +2 | jq -r .error; }
is_json() { grep -qi '^Content-Type: application/json' <<<"$1"; }

# 1. Methods and routes.
code=$(curl -s -o "$WORK/r" -D "$WORK/h" -w '%{http_code}' -X PUT --data-binary 'x:1|c' "$BASE_URL/v1/events")
check_eq "PUT /v1/events" "405 POST" "$code $(grep -i '^Allow:' "$WORK/h" | tr -d '\r' | cut -d' ' -f2-)"
check_eq "405 body" "/v1/events takes POST only" "$(jq -r .error "$WORK/r")"
check_eq "DELETE /healthz" 405 "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$BASE_URL/healthz")"
check_eq "unknown route" "404 no such route" \
    "$(curl -s -o "$WORK/r" -w '%{http_code}' "$BASE_URL/nope") $(jq -r .error "$WORK/r")"

# 2. libevent's own error pages arrive as JSON.
printf 'BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n' >"$WORK/req"
a=$(raw "$WORK/req")
is_json "$a" || fail "unknown method not answered in JSON: $a"
check_eq "unknown method" "501 unknown HTTP method" "$(status_of "$a") $(json_error_of "$a")"
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nthis is no header\r\n\r\n' >"$WORK/req"
a=$(raw "$WORK/req")
is_json "$a" || fail "malformed request not answered in JSON: $a"
check_eq "malformed header line" 400 "$(status_of "$a")"
{ printf 'GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: '; head -c 8000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } >"$WORK/req"
a=$(raw "$WORK/req")
is_json "$a" || fail "oversized headers not answered in JSON: $a"
json_error_of "$a" | grep -q 'ingest.max_header_bytes' || fail "oversized headers: $a"
log "ok: headers over ingest.max_header_bytes: $(status_of "$a") $(json_error_of "$a")"

# 3. Limits with their own answers.
hdrs=()
for i in $(seq 1 25); do hdrs+=(-H "X-N$i: 1"); done
check_eq "too many header lines" "431" \
    "$(curl -s -o "$WORK/r" -w '%{http_code}' "${hdrs[@]}" "$BASE_URL/healthz")"
jq -e '.error | test("ingest.max_header_count")' "$WORK/r" >/dev/null || fail "431 body: $(cat "$WORK/r")"
head -c 70000 /dev/zero | tr '\0' a >"$WORK/big"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' --data-binary @"$WORK/big" "$BASE_URL/v1/events")
check_eq "body over ingest.max_body_bytes" 413 "$code"
jq -e '.error | test("ingest.max_body_bytes")' "$WORK/r" >/dev/null || fail "413 body: $(cat "$WORK/r")"
awk -v p="$P" 'BEGIN { for (i = 0; i < 1001; i++) print p ".s" i ":1|c" }' >"$WORK/series"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' --data-binary @"$WORK/series" "$BASE_URL/v1/events")
check_eq "series over ingest.max_series_per_batch" "413 not_stored" "$code $(jq -r .outcome "$WORK/r")"
jq -e '.error | test("1001 distinct series.*ingest.max_series_per_batch")' "$WORK/r" >/dev/null ||
    fail "413 body: $(cat "$WORK/r")"
awk -v p="$P" 'BEGIN { for (i = 0; i < 400; i++) print p ".k" i ":1|c" }' >"$WORK/wide"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' --data-binary @"$WORK/wide" "$BASE_URL/v1/events")
check_eq "record over kafka.max_message_bytes" 413 "$code"
jq -e '.error | test("kafka.max_message_bytes")' "$WORK/r" >/dev/null || fail "413 body: $(cat "$WORK/r")"
check_eq "nothing of the refused batches was applied" 0 "$(redis_counter "$P.k1")$(redis_counter "$P.s1" | sed 's/^0$//')"

# 4. Bodies as clients send them.
code=$(printf '%s:2|c\n%s:3|c\n' "$P.chunked" "$P.chunked" |
    curl -s -o "$WORK/r" -w '%{http_code}' -H 'Transfer-Encoding: chunked' --data-binary @- "$BASE_URL/v1/events")
check_eq "chunked body" "200 2" "$code $(jq -r .accepted "$WORK/r")"
check_eq "chunked body counted" 5 "$(redis_counter "$P.chunked")"
awk -v p="$P" 'BEGIN { for (i = 0; i < 500; i++) print p ".gz:" (i % 7) "|c" }' | gzip -c >"$WORK/body.gz"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary @"$WORK/body.gz" "$BASE_URL/v1/events")
check_eq "gzip body" "200 500" "$code $(jq -r .accepted "$WORK/r")"
check_eq "gzip body counted (sum of i % 7 over 500 lines)" 1494 "$(redis_counter "$P.gz")"
# a gzip bomb: 50 KB that inflate to 50 MB, far past ingest.max_body_bytes (64 KiB)
head -c 50000000 /dev/zero | tr '\0' 'a' | gzip -9 -c >"$WORK/bomb.gz"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary @"$WORK/bomb.gz" "$BASE_URL/v1/events")
check_eq "gzip bomb ($(stat -c %s "$WORK/bomb.gz") bytes)" 413 "$code"
jq -e '.error | test("inflates to more than 65536 bytes")' "$WORK/r" >/dev/null || fail "bomb answer: $(cat "$WORK/r")"
code=$(head -c $(($(stat -c %s "$WORK/body.gz") / 2)) "$WORK/body.gz" | curl -s -o "$WORK/r" -w '%{http_code}' -H 'Content-Encoding: gzip' --data-binary @- "$BASE_URL/v1/events")
check_eq "truncated gzip" 400 "$code"
check_eq "unknown Content-Encoding" 415 \
    "$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Encoding: br' --data-binary "$P.x:1|c" "$BASE_URL/v1/events")"
check_eq "nothing of the refused gzip bodies was applied" 1494 "$(redis_counter "$P.gz")"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' -H 'Expect: 100-continue' --data-binary "$P.cont:1|c" "$BASE_URL/v1/events")
check_eq "Expect: 100-continue" 200 "$code"
code=$(curl -s -o "$WORK/r" -w '%{http_code}' -H 'Connection: close' --data-binary "$P.close:1|c" "$BASE_URL/v1/events")
check_eq "answer on a connection the client closes" "200 1" "$code $(jq -r .accepted "$WORK/r")"
check_eq "HTTP/1.0 answer" 200 "$(curl -s -0 -o /dev/null -w '%{http_code}' "$BASE_URL/healthz")"

# 5. A slow client: a header line every 0.5 s never completes a request; it is
# answered 408 within the client timeout (2 s), however steadily it trickles.
slow=$(python3 - "$HTTP_PORT" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
t0 = time.time()
out = b""
s.settimeout(0.5)
while time.time() - t0 < 15:
    try:
        s.sendall(b"X-Slow: 1\r\n")
    except OSError:
        pass
    try:
        b = s.recv(4096)
        if not b:
            break
        out += b
    except socket.timeout:
        pass
    except OSError:
        break
print("%.1f" % (time.time() - t0))
print(out.decode(errors="replace"))
PY
)
secs=$(head -n1 <<<"$slow")
a=$(tail -n +2 <<<"$slow")
check_eq "slow client answered" 408 "$(status_of "$a")"
json_error_of "$a" | grep -q 'ingest.client_timeout_seconds' || fail "408 body: $a"
awk -v s="$secs" 'BEGIN { exit !(s >= 1.5 && s < 8) }' || fail "slow client cut off after $secs s (timeout 2 s)"
log "ok: slow client cut off after $secs s"

# 6. Connections past ingest.max_connections (40): 300 half-requests. Those
# over the limit are answered 503 at once; the rest are cut off by the client
# timeout; then ingest serves again and holds no more sockets than before.
fds_before=$(ls /proc/"$INGEST_PID"/fd | wc -l)
flood=$(python3 - "$HTTP_PORT" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
socks = []
for i in range(300):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nhalf")
    socks.append(s)
answers = {}
deadline = time.time() + 12
for s in socks:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        first = s.recv(4096).split(b"\r\n")[0].decode()
    except OSError:
        first = "none"
    answers[first] = answers.get(first, 0) + 1
for k in sorted(answers):
    print("%s=%d" % (k.replace(" ", "_"), answers[k]))
PY
)
log "flood answers: $(tr '\n' ' ' <<<"$flood")"
refused=$(grep -o 'HTTP/1.1_503_Service_Unavailable=[0-9]*' <<<"$flood" | cut -d= -f2)
late=$(grep -o 'HTTP/1.1_408_Request_Timeout=[0-9]*' <<<"$flood" | cut -d= -f2)
((${refused:-0} >= 260)) || fail "connections over the limit refused: ${refused:-0} of 300 (limit 40)"
check_eq "every flood connection answered (503 or 408)" 300 "$((${refused:-0} + ${late:-0}))"
check_eq "healthz after the flood" 200 "$(curl -s -o /dev/null -w '%{http_code}' "$BASE_URL/healthz")"
for ((i = 0; i < 50; i++)); do
    (($(ls /proc/"$INGEST_PID"/fd | wc -l) <= fds_before + 2)) && break
    sleep 0.2
done
(($(ls /proc/"$INGEST_PID"/fd | wc -l) <= fds_before + 2)) ||
    fail "ingest holds $(ls /proc/"$INGEST_PID"/fd | wc -l) files after the flood (before: $fds_before)"
kill -0 "$INGEST_PID" || fail "tally-ingest died"

stop_ingest
finish
