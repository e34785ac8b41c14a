# deploy/benchtool/cluster.sh — the scale-out section of deploy/bench
# (BENCH_CLUSTER_ONLY=1; sourced by it, uses its helpers and variables).
#
# How do acknowledged writes grow with ingest instances on this box? On a
# deploy/cluster of its own (three brokers, replication 3, min.insync.replicas
# 2, a Redis Cluster of three masters with a replica each and WAIT 1, two
# ingests sharing one port, two flushers), CLUSTER_PAIRS
# alternating runs of tally-bench (batch 1000, concurrency 16, CLUSTER_SECS)
# with both ingests up and with ingest2 stopped; then, once the bench's
# single-node stack is up, the same run against it. Medians of acknowledged
# events/s. Two cores share everything (the three brokers, both ingests, Redis,
# the flushers and the generator), so this shows what one more process costs
# and gains here, not what a second machine would. Writes $OUT/cluster.md.

CLUSTER_SECS=${BENCH_CLUSTER_SECONDS:-10}
CLUSTER_PAIRS=${BENCH_CLUSTER_PAIRS:-3}
CLUSTER_MD=$OUT/cluster.md
CLUSTER_VAR=$OUT/cluster
CLUSTER_PORT=${BENCH_CLUSTER_INGEST_PORT:-28380}
CLUSTER_STARTED=0
CLUSTER_ONES="" CLUSTER_TWOS=""

# cluster_cmd ARGS...: deploy/cluster on the bench's cluster (its own state dir and ports).
cluster_cmd() {
    TALLY_CLUSTER_VAR=$CLUSTER_VAR TALLY_BUILD=$BUILD TALLY_CLUSTER_INGEST_PORT=$CLUSTER_PORT \
        TALLY_CLUSTER_KAFKA1_PORT=29391 TALLY_CLUSTER_KAFKA2_PORT=29392 TALLY_CLUSTER_KAFKA3_PORT=29393 \
        TALLY_CLUSTER_CONTROLLER1_PORT=29491 TALLY_CLUSTER_CONTROLLER2_PORT=29492 TALLY_CLUSTER_CONTROLLER3_PORT=29493 \
        TALLY_CLUSTER_REDIS_PORT=27481 TALLY_CLUSTER_CACHE_PORT=27480 TALLY_CLUSTER_STATSD_PORT=28325 \
        TALLY_CLUSTER_FLUSHER1_METRICS_PORT=28381 TALLY_CLUSTER_FLUSHER2_METRICS_PORT=28382 \
        "$REPO/deploy/cluster" "$@" >>"$LOGF" 2>&1 || { tail -n 30 "$LOGF" >&2; die "deploy/cluster $* failed (log: $LOGF)"; }
}

cluster_stop() {
    ((CLUSTER_STARTED)) || return 0
    cluster_cmd down
    CLUSTER_STARTED=0
}

# cluster_run LABEL: one tally-bench run against the cluster's shared port;
# prints its acknowledged events/s.
cluster_run() {
    local url=$TALLY_URL expected=$EXPECTED
    TALLY_URL=http://127.0.0.1:$CLUSTER_PORT/v1/events
    run_bench "$1" 1000 16 "$CLUSTER_SECS" "$WARMUP" >/dev/null
    TALLY_URL=$url EXPECTED=$expected # (the bench stack's flusher never sees the cluster)
    field events_per_s "$RESULT"
}

# Before the bench stack starts: the cluster alone on the machine.
cluster_section() {
    [[ -d $CLUSTER_VAR/run ]] && cluster_cmd down
    rm -rf "$CLUSTER_VAR"
    say "cluster section: deploy/cluster up (3 brokers, 2 ingests on :$CLUSTER_PORT, 2 flushers)"
    CLUSTER_STARTED=1
    cluster_cmd up
    local pair two one
    for ((pair = 1; pair <= CLUSTER_PAIRS; pair++)); do
        two=$(cluster_run tally-cluster-2-ingests)
        cluster_cmd down ingest2
        one=$(cluster_run tally-cluster-1-ingest)
        cluster_cmd up ingest2
        CLUSTER_TWOS+="$two " CLUSTER_ONES+="$one "
        say "  pair $pair: $one ev/s with one ingest, $two with two"
    done
    cluster_stop
}

# Once the bench stack is up: the single-node figure, and the report.
cluster_report() {
    local pair single singles="" m1 m2 ms
    for ((pair = 1; pair <= CLUSTER_PAIRS; pair++)); do
        run_bench tally-single-node 1000 16 "$CLUSTER_SECS" "$WARMUP"
        single=$(field events_per_s "$RESULT")
        singles+="$single "
        wait_drained "$QUIESCE_MAX" || true
    done
    # shellcheck disable=SC2086
    m1=$(median $CLUSTER_ONES) m2=$(median $CLUSTER_TWOS) ms=$(median $singles)
    {
        echo "## Scale-out: acknowledged events/s by ingest instances"
        echo
        echo "tally-bench batch 1000, concurrency 16, ${CLUSTER_SECS} s per run, medians of $CLUSTER_PAIRS runs each."
        echo "Cluster: deploy/cluster (3 brokers, replication 3, min.insync.replicas 2, 4 partitions, 2 flushers, a Redis Cluster of 3 masters + 3 replicas, 12 shards, WAIT 1)."
        echo "Single node: the bench stack (1 broker, replication 1, 1 partition, 1 ingest, 1 flusher)."
        echo
        echo "| setup | events/s |"
        echo "|---|---:|"
        echo "| single node, 1 ingest | $ms |"
        echo "| cluster, 1 ingest | $m1 |"
        echo "| cluster, 2 ingests on one port | $m2 |"
        echo
        echo "Runs: single $singles; cluster 1 ingest $CLUSTER_ONES; 2 ingests $CLUSTER_TWOS."
        echo "Two cores run everything here: the second ingest competes with the first, the brokers and the generator."
    } >"$CLUSTER_MD"
    say "cluster: single node $ms ev/s; cluster 1 ingest $m1, 2 ingests $m2 (medians)"
}
