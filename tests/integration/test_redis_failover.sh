#!/usr/bin/env bash
# Redis loss and rebuild (DESIGN.md rule 5), and fail-open writes:
#  1. Redis is killed with SIGKILL under load and restarted from its AOF;
#     with redis.on_unavailable = accept no request that Kafka took fails,
#     answers say "live":"stale", reads say "stale":true, and
#     `tally-flusher --rebuild-redis`, run while the load goes on, makes the
#     live values equal SQLite + the unflushed tail: after the load, Redis
#     equals SQLite exactly, with no second rebuild.
#  2. Redis replaced by an empty node: the rebuild restores every value.
#  3. redis.on_unavailable = reject: Redis down means 503; the retry with the
#     same key after Redis is back counts once.
source "$(dirname "$0")/lib.sh"

STACK=$TALLY_SOURCE/deploy/stack
P=$METRIC_PREFIX
write_config
start_ingest
start_flusher

body="$(counter_lines "$P.live" 50 1)
$(counter_lines "$P.live" 10 2 | sed 's/|c$/|c|#k:v/')
$P.gauge:+1|g"
sent=0
stale=0
non200=0
loader() { # BATCHES [KEY_PREFIX]: posts without retrying, counts what happened
    local i prefix=${2:-r1-$RUN_ID}
    for ((i = 0; i < $1; i++)); do
        post "$body" "$prefix-$sent"
        if [[ $HTTP_CODE == 200 ]]; then
            [[ $(jq -r .live <<<"$HTTP_BODY") == stale ]] && stale=$((stale + 1))
        else
            non200=$((non200 + 1))
        fi
        sent=$((sent + 1))
    done
}

loader 100
log "kill -9 Redis under load"
"$STACK" kill redis >/dev/null
loader 50
"$STACK" up redis >/dev/null
loader 50
check_eq "reads flag the live view as stale" true \
    "$(curl -fsS "$BASE_URL/v1/counters/$P.live" | jq -r .stale)"
# (as an operator does: the rebuild runs once ingest uses Redis again; a
# batch ingest misses after the rebuild's last watermark, while it still
# waits for Redis, marks the view stale again, and takes another rebuild)
wait_ingest_redis_up
loader 20 "r1-$RUN_ID-bg" &   # its own keys: it runs in a subshell
loader_pid=$!
rebuild_out=$("$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis 2>>"$WORK/flusher.log") ||
    fail "rebuild under load failed: $rebuild_out"
log "$rebuild_out"
wait "$loader_pid"
loader 100
check_eq "requests refused while Redis was down (accept mode)" 0 "$non200"
((stale > 0)) || fail "no answer said the live view was stale while Redis was down"
log "answers with \"live\":\"stale\": $stale"

# 300 batches in the foreground, 20 from the background loader, all acknowledged.
wait_sqlite_counter "$P.live" $((320 * 70))
check_eq "every posted batch reached SQLite" 320 \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id LIKE 'r1-$RUN_ID-%'")"
check_eq "redis after the rebuild under load = SQLite" $((320 * 70)) "$(redis_counter "$P.live")"
check_eq "redis gauge = SQLite gauge" 320 "$(redis-cli -p "$TALLY_REDIS_PORT" --raw HGET "$(rkey "$P.gauge" gauge)" "")"
check_eq "stale mark cleared" false "$(curl -fsS "$BASE_URL/v1/counters/$P.live" | jq -r .stale)"

# 2. An empty Redis replaces the old one.
log "replace Redis with an empty node"
"$STACK" kill redis >/dev/null
rm -rf "$TALLY_VAR/redis/appendonlydir" "$TALLY_VAR"/redis/*.aof "$TALLY_VAR"/redis/*.rdb
"$STACK" up redis >/dev/null
loader 10
lost=$(redis_counter "$P.live")
((lost < 330 * 70)) || fail "the empty node still holds $lost"
log "empty node holds $lost of $((330 * 70)) before the rebuild"
# (ingest counted the series it admitted on the new node; forget that, so the
# count below is the rebuild's own)
redis-cli -p "$TALLY_REDIS_PORT" DEL "tally:{admission}:live:series" >/dev/null
rebuild_out=$("$TALLY_BUILD/tally-flusher" -c "$CONF" --rebuild-redis 2>>"$WORK/flusher.log") ||
    fail "rebuild of an empty node failed: $rebuild_out"
log "$rebuild_out"
wait_sqlite_counter "$P.live" $((330 * 70))
check_eq "empty node rebuilt: redis = SQLite" $((330 * 70)) "$(redis_counter "$P.live")"
check_eq "tagged series rebuilt" $((330 * 20)) \
    "$(redis-cli -p "$TALLY_REDIS_PORT" --raw HGET "$(rkey "$P.live" counter)" k:v)"
check_eq "dedup keys rebuilt: a retry of an old batch is a duplicate" duplicate \
    "$(post "$body" "r1-$RUN_ID-5" && jq -r .live <<<"$HTTP_BODY")"
# (the test's series: live, gauge, live with k:v)
series=$(redis-cli -p "$TALLY_REDIS_PORT" PFCOUNT "tally:{admission}:live:series")
((series >= 3)) || fail "the rebuild counted $series series in tally:{admission}:live:series, not the 3 of this test"
log "ok: the rebuild counted the series again: tally:{admission}:live:series ~ $series"

# 3. reject mode.
stop_ingest
sed -i 's/^redis = { /redis = { on_unavailable = "reject"; /' "$CONF"
start_ingest
"$STACK" kill redis >/dev/null
post "$P.rej:5|c" "rej-$RUN_ID"
check_eq "reject mode: Redis down gives 503" 503 "$HTTP_CODE"
"$STACK" up redis >/dev/null
post_keyed "rej-$RUN_ID" "$P.rej:5|c"
check_eq "reject mode: the retry is applied" 5 "$(redis_counter "$P.rej")"
wait_sqlite_counter "$P.rej" 5
check_eq "reject mode: SQLite counted the batch once" 1 \
    "$(sqlite3 "$WORK/tally.db" "SELECT COUNT(*) FROM batches WHERE batch_id='rej-$RUN_ID'")"

stop_flusher
stop_ingest
finish
