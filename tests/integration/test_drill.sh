#!/usr/bin/env bash
# The failover drill, short form: tally-drill runs every scenario (kill -9 of
# the flusher, Redis, the Kafka broker and tally-ingest, two kills each) under
# keyed load against ingest and flusher started through deploy/stack, and must
# report 0 lost, 0 duplicated, 0 unresolved, Redis equal to SQLite after the
# rebuild, and every planned kill done (exit 0).
# Redis and Kafka belong to deploy/test: the drill restarts them, and this test
# makes sure they are up again when it ends; ingest and flusher are stopped.
source "$(dirname "$0")/lib.sh"

STACK=$TALLY_SOURCE/deploy/stack
SEED=${TALLY_DRILL_SEED:-20261126}
export TALLY_BUILD

write_config

drill_cleanup() {
    local rc=$?
    "$STACK" up redis kafka >>"$WORK/stack.log" 2>&1 || log "warning: deploy/stack up redis kafka failed"
    TALLY_CONF=$CONF "$STACK" down ingest flusher >>"$WORK/stack.log" 2>&1 || log "warning: deploy/stack down ingest flusher failed"
    (exit "$rc")
    cleanup
}
trap drill_cleanup EXIT

drill_fail() {
    log "FAIL: $*"
    echo "---- drill stderr (last 40 lines) ----"
    tail -n 40 "$WORK/drill.err" 2>/dev/null || true
    for f in ingest flusher; do
        echo "---- last lines of $TALLY_VAR/log/$f.log ----"
        tail -n 15 "$TALLY_VAR/log/$f.log" 2>/dev/null || true
    done
    exit 1
}

TALLY_CONF=$CONF "$STACK" down ingest flusher >>"$WORK/stack.log" 2>&1 || drill_fail "deploy/stack down ingest flusher"
TALLY_CONF=$CONF "$STACK" up ingest flusher >>"$WORK/stack.log" 2>&1 || drill_fail "deploy/stack up ingest flusher: $(tail -n 5 "$WORK/stack.log")"

log "tally-drill --all --short --seed $SEED (about 90 s)"
rc=0
TALLY_CONF=$CONF "$TALLY_BUILD/tally-drill" -c "$CONF" --all --short --seed "$SEED" --stack "$STACK" \
    >"$WORK/drill.out" 2>"$WORK/drill.err" || rc=$?
cat "$WORK/drill.out"
check_eq "tally-drill exit status" 0 "$rc"

# column VALUE of the table row whose first cell is ROW
cell() { # ROW COLUMN
    awk -F'|' -v row="$1" -v col="$2" '
        NR == 1 { for (i = 2; i < NF; i++) { h = $i; gsub(/^ +| +$/, "", h); idx[h] = i } next }
        { r = $2; gsub(/^ +| +$|\*/, "", r); if (r == row) { v = $idx[col]; gsub(/^ +| +$/, "", v); print v } }
    ' "$WORK/drill.out"
}
check_eq "lost events" 0 "$(cell total lost)"
check_eq "duplicated events" 0 "$(cell total duplicated)"
check_eq "unresolved batches" 0 "$(cell total unresolved)"
check_eq "redis mismatches" 0 "$(cell total 'redis mismatches')"
check_eq "kills" 8/8 "$(cell total kills)"
for s in flusher redis kafka ingest; do
    acked=$(cell "$s" 'batches acked')
    ((${acked:-0} > 0)) || drill_fail "scenario $s acknowledged no batch"
    log "ok: $s acknowledged $acked batches"
done
# With Redis down ingest fails open: no request of the redis scenario fails.
check_eq "non-200 answers in the redis scenario" 0 "$(cell redis non-200)"

# The drill refuses to run on a stack that is not up.
TALLY_CONF=$CONF "$STACK" down ingest >>"$WORK/stack.log" 2>&1 || drill_fail "deploy/stack down ingest"
rc=0
TALLY_CONF=$CONF "$TALLY_BUILD/tally-drill" -c "$CONF" --scenario flusher --short --stack "$STACK" \
    >"$WORK/drill2.out" 2>"$WORK/drill2.err" || rc=$?
check_eq "exit status without ingest" 2 "$rc"
grep -q "run deploy/stack up first" "$WORK/drill2.err" || drill_fail "no 'run deploy/stack up first' message: $(cat "$WORK/drill2.err")"

rm -f "$TALLY_VAR/drill/ledger-$SEED.tsv"
finish
